//! `Sandbox`: what a guest may see and use, as plain data. Deny by default,
//! grant by builder: a fresh sandbox has no arguments, no environment, no
//! files, no network, no name lookup, stdin closed and output discarded.

use std::fmt;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::AsyncRead;
use wasmtime_wasi::cli::AsyncStdinStream;

/// Whether a preopened directory may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and list only.
    ReadOnly,
    /// Read, write, create and remove.
    ReadWrite,
}

/// A host directory the guest sees at `guest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    /// The host directory (opened through cap-std: nothing above it is reachable).
    pub host: PathBuf,
    /// The guest path, for example `/data`.
    pub guest: String,
    /// Read-only or read-write.
    pub access: Access,
}

/// A network grant. Connect grants let the guest reach an address over TCP
/// or UDP (and through outgoing `wasi:http`); a listen grant lets it bind,
/// listen and accept on one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetGrant {
    /// Connect to one IP and port.
    Addr(SocketAddr),
    /// Connect to every port of one IP.
    Ip(IpAddr),
    /// Listen on one address (TCP bind, listen, accept). Port 0 allows any
    /// port of that IP. The IP is matched exactly: a grant for the pod's IP
    /// does not allow binding the wildcard `0.0.0.0`.
    Listen(SocketAddr),
}

impl NetGrant {
    /// Whether this grant lets the guest connect or send to `addr`.
    pub(crate) fn allows_connect(&self, addr: SocketAddr) -> bool {
        match *self {
            NetGrant::Addr(a) => a == addr,
            NetGrant::Ip(ip) => ip == addr.ip(),
            NetGrant::Listen(_) => false,
        }
    }

    /// Whether this grant lets the guest bind and listen on `addr`.
    pub(crate) fn allows_listen(&self, addr: SocketAddr) -> bool {
        match *self {
            NetGrant::Listen(a) => {
                a.ip() == addr.ip() && (a.port() == 0 || a.port() == addr.port())
            }
            NetGrant::Addr(_) | NetGrant::Ip(_) => false,
        }
    }

    /// Whether this is a connect grant.
    pub(crate) fn is_connect(&self) -> bool {
        !matches!(self, NetGrant::Listen(_))
    }
}

/// Where a guest's stdout or stderr goes.
#[derive(Clone, Default)]
pub enum Output {
    /// Discarded (the default).
    #[default]
    Null,
    /// Appended to a file the caller opened (for example a CRI log file).
    File(Arc<File>),
    /// Kept in memory (tests, small jobs).
    Memory(MemoryOutput),
    /// Handed to the caller's sink (for example a CRI log writer that
    /// timestamps lines and rotates files).
    Sink(Arc<dyn OutputSink>),
}

/// A destination for guest output that the caller implements. `write` gets
/// the bytes of one guest write, in order; an error is reported to the
/// guest as a failed write.
pub trait OutputSink: Send + Sync + 'static {
    /// Takes all of `bytes`.
    fn write(&self, bytes: &[u8]) -> std::io::Result<()>;
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Null => f.write_str("Null"),
            Output::File(file) => f.debug_tuple("File").field(file).finish(),
            Output::Memory(m) => f.debug_tuple("Memory").field(&m.len()).finish(),
            Output::Sink(_) => f.write_str("Sink"),
        }
    }
}

/// Where a guest's stdin comes from.
#[derive(Clone, Default)]
pub enum Input {
    /// Closed: the guest reads end-of-file at once (the default).
    #[default]
    Closed,
    /// Read from the caller's stream (see [`Input::stream`]).
    Stream(InputStream),
}

impl Input {
    /// Stdin fed from `reader`: the guest reads what it yields, as it
    /// yields it, and end-of-file when it ends.
    pub fn stream(reader: impl AsyncRead + Send + Sync + Unpin + 'static) -> Self {
        Input::Stream(InputStream {
            inner: Arc::new(InputInner {
                reader: Mutex::new(Some(Box::new(reader))),
                started: OnceLock::new(),
            }),
        })
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Closed => f.write_str("Closed"),
            Input::Stream(s) => f.debug_tuple("Stream").field(s).finish(),
        }
    }
}

/// One stdin stream, shared by the clones of a [`Sandbox`]: the first guest
/// instance started from the sandbox starts reading it, and every instance
/// of that sandbox reads from the same position (as processes sharing a
/// pipe do).
#[derive(Clone)]
pub struct InputStream {
    inner: Arc<InputInner>,
}

impl fmt::Debug for InputStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputStream")
            .field("started", &self.inner.started.get().is_some())
            .finish()
    }
}

type Reader = Box<dyn AsyncRead + Send + Sync + Unpin>;

struct InputInner {
    reader: Mutex<Option<Reader>>,
    started: OnceLock<Arc<AsyncStdinStream>>,
}

impl InputStream {
    /// The WASI stdin of this stream, started on first use (inside a tokio
    /// runtime: reading runs on a task of it).
    pub(crate) fn wasi(&self) -> Arc<AsyncStdinStream> {
        self.inner
            .started
            .get_or_init(|| {
                let reader = self
                    .inner
                    .reader
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                match reader {
                    Some(r) => Arc::new(AsyncStdinStream::new(r)),
                    None => Arc::new(AsyncStdinStream::new(tokio::io::empty())),
                }
            })
            .clone()
    }
}

/// An in-memory output buffer, shared by its clones, holding at most
/// `capacity` bytes; writes past it fail (the guest sees an I/O error).
#[derive(Clone, Debug)]
pub struct MemoryOutput {
    pub(crate) inner: Arc<Mutex<Vec<u8>>>,
    pub(crate) capacity: usize,
}

impl MemoryOutput {
    /// An empty buffer holding up to `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Vec::new())),
            capacity,
        }
    }

    /// The bytes written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bytes written so far, as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.contents()).into_owned()
    }

    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A guest's sandbox. Build one with [`Sandbox::builder`].
#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) preopens: Vec<Preopen>,
    pub(crate) stdin: Input,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) max_instances: usize,
    pub(crate) cpu_limit: Option<f64>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) network: Vec<NetGrant>,
    pub(crate) name_lookup: bool,
    pub(crate) http_listen: Option<SocketAddr>,
    pub(crate) http_concurrency: usize,
    pub(crate) http_queue: usize,
}

impl Sandbox {
    /// A builder starting from nothing granted.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder {
            sandbox: Sandbox {
                max_instances: DEFAULT_MAX_INSTANCES,
                http_concurrency: DEFAULT_HTTP_CONCURRENCY,
                http_queue: DEFAULT_HTTP_QUEUE,
                ..Sandbox::default()
            },
        }
    }

    /// argv, including argv\[0\].
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The environment.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The preopened directories.
    pub fn preopens(&self) -> &[Preopen] {
        &self.preopens
    }

    /// The cap on all linear memories together, in bytes.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// The CPU limit, in cores.
    pub fn cpu_limit(&self) -> Option<f64> {
        self.cpu_limit
    }

    /// The wall-clock limit of a run.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The addresses the guest may reach.
    pub fn network(&self) -> &[NetGrant] {
        &self.network
    }

    /// Whether the guest may resolve names with the host's resolver.
    pub fn name_lookup(&self) -> bool {
        self.name_lookup
    }

    /// Where an HTTP function is served (ignored for commands).
    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.http_listen
    }

    /// How many requests an HTTP function handles at once.
    pub fn http_concurrency(&self) -> usize {
        self.http_concurrency
    }

    /// How many requests may wait for a free slot before the rest get 503.
    pub fn http_queue(&self) -> usize {
        self.http_queue
    }
}

/// Requests an HTTP function handles at once unless told otherwise.
pub const DEFAULT_HTTP_CONCURRENCY: usize = 8;
/// Requests that may wait for a slot unless told otherwise.
pub const DEFAULT_HTTP_QUEUE: usize = 64;

/// Core instances a guest may create unless told otherwise (a Rust wasip2
/// component needs a handful).
pub const DEFAULT_MAX_INSTANCES: usize = 32;

/// Grants capabilities to a [`Sandbox`], one call each.
#[derive(Debug)]
pub struct SandboxBuilder {
    sandbox: Sandbox,
}

impl SandboxBuilder {
    /// Appends one argument (the first one is argv\[0\], the program name).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.sandbox.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sandbox.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.sandbox.env.push((key.into(), value.into()));
        self
    }

    /// Preopens `host` as `guest`.
    pub fn preopen(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        access: Access,
    ) -> Self {
        self.sandbox.preopens.push(Preopen {
            host: host.into(),
            guest: guest.into(),
            access,
        });
        self
    }

    /// Feeds stdin from `input` (closed unless set).
    pub fn stdin(mut self, input: Input) -> Self {
        self.sandbox.stdin = input;
        self
    }

    /// Sends stdout to `out`.
    pub fn stdout(mut self, out: Output) -> Self {
        self.sandbox.stdout = out;
        self
    }

    /// Sends stderr to `out`.
    pub fn stderr(mut self, out: Output) -> Self {
        self.sandbox.stderr = out;
        self
    }

    /// Caps the guest's linear memories (all together) at `bytes`; a
    /// `memory.grow` past it ends the guest as out of memory. For an HTTP
    /// function the cap holds for each instance.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.sandbox.memory_limit = Some(bytes);
        self
    }

    /// Caps how many core instances the guest may create.
    pub fn max_instances(mut self, n: usize) -> Self {
        self.sandbox.max_instances = n;
        self
    }

    /// Limits the guest to `cores` of CPU (for example 0.5); values of 1 or
    /// more only make it yield at every epoch. For an HTTP function the
    /// limit holds for each instance.
    pub fn cpu_limit(mut self, cores: f64) -> Self {
        self.sandbox.cpu_limit = Some(cores);
        self
    }

    /// Ends the run after `limit` of wall-clock time. For an HTTP function
    /// this is a per-request limit: each instance gets `limit`.
    pub fn deadline(mut self, limit: Duration) -> Self {
        self.sandbox.deadline = Some(limit);
        self
    }

    /// Grants network access: a connect grant lets the guest reach an
    /// address over TCP, UDP or outgoing `wasi:http`; a listen grant lets it
    /// listen on one.
    pub fn allow_network(mut self, grant: NetGrant) -> Self {
        self.sandbox.network.push(grant);
        self
    }

    /// Lets the guest resolve names with the host's resolver.
    pub fn allow_name_lookup(mut self) -> Self {
        self.sandbox.name_lookup = true;
        self
    }

    /// Serves the guest, if it is an HTTP function, on `addr` (port 0 picks a
    /// free port: see [`crate::Running::http_addr`]). The host listens there,
    /// not the guest, so this needs no [`NetGrant`].
    pub fn http_listen(mut self, addr: SocketAddr) -> Self {
        self.sandbox.http_listen = Some(addr);
        self
    }

    /// Lets an HTTP function handle up to `n` requests at once (at least 1),
    /// each in its own instance.
    pub fn http_concurrency(mut self, n: usize) -> Self {
        self.sandbox.http_concurrency = n.max(1);
        self
    }

    /// Lets up to `n` requests wait for a free slot; requests beyond it are
    /// answered 503 at once.
    pub fn http_queue(mut self, n: usize) -> Self {
        self.sandbox.http_queue = n;
        self
    }

    /// The sandbox.
    pub fn build(self) -> Sandbox {
        self.sandbox
    }
}
