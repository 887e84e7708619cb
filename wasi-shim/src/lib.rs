//! `wasi-shim`: the Wasm sandbox of a Shoal node, and the only crate that
//! depends on wasmtime.
//!
//! - [`Engine`] (`engine`): one per node; pooling allocator, epoch ticker,
//!   compile cache keyed by content digest.
//! - [`Sandbox`] (`sandbox`): what a guest may see, as data; deny by default,
//!   grant by builder.
//! - [`Engine::run`] / [`Engine::spawn`] (`run`): run a WASI p1 module or a
//!   p2 command component to its [`Exit`], stoppable by a [`KillHandle`].
//! - [`Runtime`]: the seam a CRI runtime sits on (runwasi's engine trait).
//!
//! ```no_run
//! # async fn demo() -> Result<(), wasi_shim::ShimError> {
//! use wasi_shim::{Engine, EngineConfig, ModuleSource, Output, MemoryOutput, Sandbox};
//! let engine = Engine::new(EngineConfig::default())?;
//! let out = MemoryOutput::new(1 << 20);
//! let sandbox = Sandbox::builder().arg("hello").stdout(Output::Memory(out.clone())).build();
//! let exit = engine.run(ModuleSource::file("hello.wasm"), &sandbox).await?;
//! assert!(exit.success());
//! # Ok(()) }
//! ```

mod engine;
mod error;
mod limits;
mod run;
mod sandbox;
mod wasi;

pub use engine::{
    CacheOutcome, CacheStats, Engine, EngineConfig, Loaded, ModuleKind, ModuleSource,
};
pub use error::ShimError;
pub use run::{Exit, ExitReason, KILLED_EXIT_CODE, KillHandle, Running, TRAP_EXIT_CODE};
pub use sandbox::{
    Access, DEFAULT_MAX_INSTANCES, MemoryOutput, NetGrant, Output, OutputSink, Preopen, Sandbox,
    SandboxBuilder,
};

/// What a container runtime needs from a Wasm engine: start a guest in a
/// sandbox and get back a handle to stop it and await its exit.
pub trait Runtime: Send + Sync + 'static {
    /// Starts `source` in `sandbox` (inside a tokio runtime).
    fn spawn(&self, source: ModuleSource, sandbox: &Sandbox) -> Running;
}

impl Runtime for Engine {
    fn spawn(&self, source: ModuleSource, sandbox: &Sandbox) -> Running {
        Engine::spawn(self, source, sandbox)
    }
}
