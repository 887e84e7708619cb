//! `Engine`: the one wasmtime engine of a node. Pooling allocator, epoch
//! interruption driven by a ticker thread, Cranelift at opt level `speed`,
//! parallel compilation, a compile cache keyed by content digest, and the
//! pools commands run on (`crate::priority`): a command starts at normal
//! priority and moves after its first tick to threads at a low OS priority
//! (a higher nice value), so that a spinning or flooding command cannot take
//! the CPU from HTTP functions served at normal priority while a short one
//! is not held back.
//!
//! The cache has two tiers and no `unsafe` of ours: compiled modules stay in
//! memory keyed by sha256(bytes ‖ engine compatibility hash), and with
//! [`EngineConfig::cache_dir`] wasmtime's own on-disk cache (keyed by the
//! module and the compiler configuration) keeps them across restarts.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{
    Cache, CacheConfig, Config, InstanceAllocationStrategy, Module, OptLevel,
    PoolingAllocationConfig,
};

use crate::error::{ShimError, chain};
use crate::host::{P1Host, P2Host};
use crate::priority::{Pools, RunHint};

/// How the node's engine is sized. The pooling allocator reserves virtual
/// address space for every memory slot up front (about 4 GiB each), so size
/// `total_memories` to the pods a node runs; it fails under `ulimit -v`.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Use the pooling allocator (fast instantiation); `false` allocates on demand.
    pub pooling: bool,
    /// Core instances alive at once, across all guests.
    pub total_instances: u32,
    /// Component instances alive at once.
    pub total_component_instances: u32,
    /// Linear memories alive at once.
    pub total_memories: u32,
    /// Tables alive at once.
    pub total_tables: u32,
    /// Async stacks (one per running guest).
    pub total_stacks: u32,
    /// The largest one linear memory may grow, in bytes; a sandbox's own
    /// memory limit applies below it.
    pub max_memory_per_instance: u64,
    /// The guest's native stack, in bytes (deeper recursion traps).
    pub max_wasm_stack: usize,
    /// The epoch tick: how often running guests are interrupted to yield, and
    /// the granularity of CPU limits, deadlines and kills.
    pub epoch_tick: Duration,
    /// Where wasmtime keeps compiled code across restarts; `None` keeps the
    /// cache in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Worker threads of each command pool (normal and low priority). The
    /// default, one fewer than the machine's cores (at least one), always
    /// leaves a core to HTTP serving, however many commands spin.
    pub guest_threads: usize,
    /// The nice value of the low-priority pool's threads (0 to 19; higher is
    /// a lower priority). HTTP functions are served on the caller's runtime
    /// at its own priority.
    pub guest_nice: i32,
    /// How long a command runs at normal priority before it moves to the
    /// low-priority pool (at its next epoch yield, so within a tick after).
    /// Short commands end at normal priority; zero runs every command at
    /// `guest_nice` from its start.
    pub normal_priority_budget: Duration,
    /// The most of a core all commands together get at normal priority,
    /// over time (a token bucket of two budgets): past it, commands start
    /// on the low-priority pool, so that a crash loop of short commands
    /// cannot become a normal-priority load.
    pub normal_priority_share: f64,
    /// A command whose module has ended cleanly (exit 0) within its first
    /// poll, in at most this long, runs its next first slices on the thread
    /// that starts it ([`Engine::run`], [`Prepared::start`]) instead of
    /// waking a pool thread, so a short command starts, runs and ends with
    /// no thread hand-off. Failing runs teach nothing; a module whose first
    /// poll once took longer never runs inline again. Zero turns this off.
    ///
    /// [`Prepared::start`]: crate::Prepared::start
    pub inline_slice: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            total_instances: 256,
            total_component_instances: 64,
            total_memories: 128,
            total_tables: 256,
            total_stacks: 64,
            max_memory_per_instance: 1 << 30,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(10),
            cache_dir: None,
            guest_threads: std::thread::available_parallelism()
                .map_or(1, |n| usize::from(n).saturating_sub(1).max(1)),
            guest_nice: 10,
            normal_priority_budget: Duration::from_millis(10),
            normal_priority_share: 0.25,
            inline_slice: Duration::from_micros(250),
        }
    }
}

/// Whether bytes hold a core module (WASI p1) or a component (WASI p2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// A core module (`\0asm` version 1).
    Core,
    /// A component (`\0asm` version 0x0d, layer 1).
    Component,
}

impl ModuleKind {
    /// Reads the preamble: the magic, then the version and layer.
    pub fn detect(bytes: &[u8]) -> Result<Self, ShimError> {
        let invalid = |message: &str| ShimError::InvalidModule {
            message: message.to_owned(),
        };
        if bytes.len() < 8 {
            return Err(invalid("shorter than the 8-byte Wasm preamble"));
        }
        if &bytes[..4] != b"\0asm" {
            return Err(invalid("no \\0asm magic: not a WebAssembly binary"));
        }
        match [bytes[4], bytes[5], bytes[6], bytes[7]] {
            [0x01, 0x00, 0x00, 0x00] => Ok(Self::Core),
            [0x0d, 0x00, 0x01, 0x00] => Ok(Self::Component),
            [a, b, c, d] => Err(ShimError::InvalidModule {
                message: format!("unknown Wasm version/layer {a:#04x} {b:#04x} {c:#04x} {d:#04x}"),
            }),
        }
    }
}

/// Where a module comes from.
#[derive(Clone, Debug)]
pub enum ModuleSource {
    /// Bytes in memory.
    Bytes(Arc<[u8]>),
    /// A `.wasm` file.
    File(PathBuf),
    /// A `.wasm` file whose content digest its owner knows (an image
    /// store's blob, named by it): a load finds the compiled code in memory
    /// by the digest without reading or hashing the file, and checks the
    /// digest when it does read it.
    Verified {
        /// The module file.
        path: PathBuf,
        /// `sha256:` and 64 hex digits.
        digest: String,
    },
}

impl ModuleSource {
    /// A module file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// Module bytes.
    pub fn bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self::Bytes(bytes.into())
    }

    /// A module file whose sha256 `digest` (`sha256:HEX`) its owner has
    /// checked.
    pub fn verified(path: impl Into<PathBuf>, digest: impl Into<String>) -> Self {
        Self::Verified {
            path: path.into(),
            digest: digest.into(),
        }
    }

    async fn read(&self) -> Result<Arc<[u8]>, ShimError> {
        match self {
            Self::Bytes(b) => Ok(b.clone()),
            Self::File(path) | Self::Verified { path, .. } => tokio::fs::read(path)
                .await
                .map(Into::into)
                .map_err(|source| ShimError::ReadModule {
                    path: path.clone(),
                    source,
                }),
        }
    }

    /// The digest a [`Verified`](Self::Verified) source names.
    pub(crate) fn known_digest(&self) -> Result<Option<[u8; 32]>, ShimError> {
        let Self::Verified { digest, .. } = self else {
            return Ok(None);
        };
        parse_digest(digest)
            .map(Some)
            .ok_or_else(|| ShimError::InvalidModule {
                message: format!("{digest:?} is not a sha256 digest (sha256: and 64 hex digits)"),
            })
    }
}

/// Where a load found its compiled code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Already compiled by this engine.
    Memory,
    /// Loaded from the on-disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

/// Counters of the compile cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from memory.
    pub memory_hits: u64,
    /// Loads served from disk.
    pub disk_hits: u64,
    /// Loads that compiled.
    pub compiled: u64,
}

/// Commands started inline, since the engine was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InlineStats {
    /// Commands whose first slice ran on the thread that started them.
    pub started: u64,
    /// Those that ended in it (their exit recorded before the start
    /// returned).
    pub ended: u64,
}

/// Compiled code, ready to instantiate.
#[derive(Clone)]
pub(crate) enum Compiled {
    Core(Module),
    Component(Component),
}

/// A loaded module: its kind, its digest and where it came from.
#[derive(Clone)]
pub struct Loaded {
    pub(crate) compiled: Compiled,
    /// How the module's runs went, shared by all of them.
    pub(crate) hint: Arc<RunHint>,
    /// Core module or component.
    pub kind: ModuleKind,
    /// `sha256:` hex digest of the module bytes.
    pub digest: String,
    /// Memory, disk or freshly compiled.
    pub cache: CacheOutcome,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .field("cache", &self.cache)
            .finish()
    }
}

/// The node's shared engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The in-memory compile cache: by [`Engine::key`], the compiled code and
/// what its runs have shown.
type InMemory = HashMap<[u8; 32], (ModuleKind, Compiled, Arc<RunHint>)>;

pub(crate) struct Inner {
    pub(crate) wasmtime: wasmtime::Engine,
    pub(crate) config: EngineConfig,
    pub(crate) p1_linker: wasmtime::Linker<P1Host>,
    pub(crate) p2_linker: wasmtime::component::Linker<P2Host>,
    compat: u64,
    compiled: Mutex<InMemory>,
    disk: Option<Cache>,
    stats: [AtomicU64; 3],
    stop_ticker: Arc<AtomicBool>,
    pub(crate) pools: Pools,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, ShimError> {
        let err = |e: wasmtime::Error| ShimError::Engine { message: chain(&e) };
        let mut c = Config::new();
        c.epoch_interruption(true)
            .parallel_compilation(true)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(config.max_wasm_stack)
            .async_stack_size(config.max_wasm_stack + (1 << 20));
        if config.pooling {
            let mut p = PoolingAllocationConfig::default();
            p.total_core_instances(config.total_instances)
                .total_component_instances(config.total_component_instances)
                .total_memories(config.total_memories)
                .total_tables(config.total_tables)
                .total_stacks(config.total_stacks)
                .max_memory_size(
                    usize::try_from(config.max_memory_per_instance).unwrap_or(usize::MAX),
                )
                // Reset the first MiB of a slot by zeroing it rather than
                // giving it back to the kernel: an HTTP function's fresh
                // instance per request then takes no page faults there (and
                // no mmap lock shared with other guests growing memory).
                .linear_memory_keep_resident(1 << 20)
                .table_keep_resident(64 << 10)
                // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only
                // the pages an instance dirtied instead of the whole first
                // MiB: a fresh instance per request then costs a few pages.
                .pagemap_scan(wasmtime::Enabled::Auto);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
        }
        let disk = match &config.cache_dir {
            Some(dir) => {
                let mut cc = CacheConfig::new();
                cc.with_directory(dir);
                let cache = Cache::new(cc).map_err(err)?;
                c.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };
        let wasmtime = wasmtime::Engine::new(&c).map_err(err)?;

        let mut p1_linker = wasmtime::Linker::new(&wasmtime);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |h: &mut P1Host| &mut h.wasi)
            .map_err(err)?;
        // All of p2 plus wasi:http: Rust-built HTTP functions import
        // wasi:cli too, and commands may send HTTP requests.
        let mut p2_linker = wasmtime::component::Linker::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2_linker).map_err(err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2_linker).map_err(err)?;

        let mut h = DefaultHasher::new();
        wasmtime.precompile_compatibility_hash().hash(&mut h);
        let compat = h.finish();

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (engine, stop, tick) = (wasmtime.clone(), stop_ticker.clone(), config.epoch_tick);
        std::thread::Builder::new()
            .name("wasi-shim-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| ShimError::Engine {
                message: format!("cannot start the epoch ticker: {e}"),
            })?;

        let pools = Pools::new(
            config.guest_threads,
            config.guest_nice,
            config.normal_priority_budget,
            config.normal_priority_share,
            config.inline_slice,
        )?;

        Ok(Self {
            inner: Arc::new(Inner {
                wasmtime,
                config,
                p1_linker,
                p2_linker,
                compat,
                compiled: Mutex::default(),
                disk,
                stats: Default::default(),
                stop_ticker,
                pools,
            }),
        })
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// How many commands took their first slice inline
    /// ([`EngineConfig::inline_slice`]), and how many of them ended in it.
    pub fn inline_stats(&self) -> InlineStats {
        let (started, ended) = self.inner.pools.inline_counts();
        InlineStats { started, ended }
    }

    /// The compile cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        let [m, d, c] = &self.inner.stats;
        CacheStats {
            memory_hits: m.load(Ordering::Relaxed),
            disk_hits: d.load(Ordering::Relaxed),
            compiled: c.load(Ordering::Relaxed),
        }
    }

    /// Reads, checks and compiles a module or component (once per digest).
    /// A [`ModuleSource::Verified`] already compiled is not read at all.
    pub async fn load(&self, source: &ModuleSource) -> Result<Loaded, ShimError> {
        if let Some(digest) = source.known_digest()?
            && let Some(loaded) = self.memory_hit(&digest)
        {
            return Ok(loaded);
        }
        let bytes = source.read().await?;
        let kind = ModuleKind::detect(&bytes)?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(known) = source.known_digest()?
            && known != digest
        {
            return Err(ShimError::InvalidModule {
                message: format!(
                    "the module file holds sha256:{}, not the sha256:{} it is named by",
                    hex(&digest),
                    hex(&known)
                ),
            });
        }
        if let Some(loaded) = self.memory_hit(&digest) {
            return Ok(loaded);
        }
        let key = self.key(&digest);
        let digest = format!("sha256:{}", hex(&digest));

        let engine = self.inner.wasmtime.clone();
        let disk_hits = || self.inner.disk.as_ref().map_or(0, Cache::cache_hits);
        let before = disk_hits();
        let compiled = tokio::task::spawn_blocking(move || match kind {
            ModuleKind::Core => Module::new(&engine, &bytes).map(Compiled::Core),
            ModuleKind::Component => Component::new(&engine, &bytes).map(Compiled::Component),
        })
        .await
        .map_err(|e| ShimError::Task {
            message: e.to_string(),
        })?
        .map_err(|e| ShimError::InvalidModule { message: chain(&e) })?;
        let hint = Arc::<RunHint>::default();
        let cache = if disk_hits() > before {
            self.inner.stats[1].fetch_add(1, Ordering::Relaxed);
            CacheOutcome::Disk
        } else {
            self.inner.stats[2].fetch_add(1, Ordering::Relaxed);
            CacheOutcome::Compiled
        };
        self.inner
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (kind, compiled.clone(), hint.clone()));
        Ok(Loaded {
            compiled,
            hint,
            kind,
            digest,
            cache,
        })
    }

    /// The in-memory cache's key of a module: its digest and the engine's
    /// compatibility hash.
    fn key(&self, digest: &[u8; 32]) -> [u8; 32] {
        let mut k = Sha256::new();
        k.update(digest);
        k.update(self.inner.compat.to_le_bytes());
        k.finalize().into()
    }

    /// The compiled code of the module with this digest, if in memory,
    /// counted as a memory hit.
    fn memory_hit(&self, digest: &[u8; 32]) -> Option<Loaded> {
        let loaded = self.memory_lookup(digest)?;
        self.count_memory_hit();
        Some(loaded)
    }

    /// Counts a use of the in-memory compiled code.
    pub(crate) fn count_memory_hit(&self) {
        self.inner.stats[0].fetch_add(1, Ordering::Relaxed);
    }

    /// The compiled code of the module with this digest, if in memory,
    /// not counted (the caller counts it if it uses it).
    pub(crate) fn memory_lookup(&self, digest: &[u8; 32]) -> Option<Loaded> {
        let (kind, compiled, hint) = self
            .inner
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.key(digest))
            .cloned()?;
        Some(Loaded {
            compiled,
            hint,
            kind,
            digest: format!("sha256:{}", hex(digest)),
            cache: CacheOutcome::Memory,
        })
    }

    /// Forgets the in-memory compiled code (the disk cache stays).
    pub fn clear_memory_cache(&self) {
        self.inner
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:` and 64 hex digits, as bytes.
fn parse_digest(digest: &str) -> Option<[u8; 32]> {
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> EngineConfig {
        EngineConfig {
            pooling: false,
            ..EngineConfig::default()
        }
    }

    fn digest_of(path: &str) -> String {
        let bytes = std::fs::read(path).unwrap();
        format!("sha256:{}", hex(&Sha256::digest(&bytes)))
    }

    #[test]
    fn digests_parse_only_in_full() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(parse_digest(&d), Some([0xab; 32]));
        assert_eq!(parse_digest(&d[..d.len() - 2]), None);
        assert_eq!(parse_digest(&d.replace("sha256:", "sha512:")), None);
        assert_eq!(parse_digest(&d.replace("ab", "zz")), None);
    }

    #[tokio::test]
    async fn a_verified_module_is_found_by_digest_without_reading_it() {
        let engine = Engine::new(small()).unwrap();
        let digest = digest_of(artifacts::HELLO);
        let first = engine
            .load(&ModuleSource::verified(artifacts::HELLO, &digest))
            .await
            .unwrap();
        assert_eq!(first.cache, CacheOutcome::Compiled);
        assert_eq!(first.digest, digest);
        // Compiled once: the same digest is found in memory even where no
        // file is, and a plain load of the file finds it too.
        let again = engine
            .load(&ModuleSource::verified("/nonexistent/hello.wasm", &digest))
            .await
            .unwrap();
        assert_eq!(again.cache, CacheOutcome::Memory);
        let plain = engine
            .load(&ModuleSource::file(artifacts::HELLO))
            .await
            .unwrap();
        assert_eq!(plain.cache, CacheOutcome::Memory);
        assert_eq!(engine.cache_stats().compiled, 1);
    }

    #[tokio::test]
    async fn a_verified_module_with_other_bytes_is_refused() {
        let engine = Engine::new(small()).unwrap();
        let wrong = format!("sha256:{}", "00".repeat(32));
        let err = engine
            .load(&ModuleSource::verified(artifacts::HELLO, &wrong))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ShimError::InvalidModule { message } if message.contains("not the sha256:0000")),
            "{err:?}"
        );
        let err = engine
            .load(&ModuleSource::verified(artifacts::HELLO, "sha256:xyz"))
            .await
            .unwrap_err();
        assert!(matches!(err, ShimError::InvalidModule { .. }), "{err:?}");
        assert_eq!(engine.cache_stats().compiled, 0);
    }
}
