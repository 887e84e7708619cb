//! `wasi-shim`: the Wasm sandbox of a Shoal node, and the only crate that
//! depends on wasmtime.
//!
//! - [`Engine`] (`engine`): one per node; pooling allocator, epoch ticker,
//!   compile cache keyed by content digest, and the pools commands run on
//!   (`priority`: normal priority for a command's first tick, within a
//!   share of a core for all of them, then a low one).
//! - [`Sandbox`] (`sandbox`): what a guest may see, as data; deny by default,
//!   grant by builder: argv, env, preopens, stdin ([`Input`]: closed, or
//!   fed from an async reader), outputs, limits, network grants
//!   ([`NetGrant`]: connect, or listen on one address), and for an HTTP
//!   function where to serve it and how many requests at once.
//! - [`Engine::spawn`] (`run`): starts a guest and returns a [`Running`]. What
//!   the module exports decides what it is:
//!   - a **command** (a p1 module's `_start`, a p2 component's
//!     `wasi:cli/run`) runs until it exits, on the command pools (a low OS
//!     priority after its first tick, so spinning or flooding
//!     commands leave the CPU to HTTP serving while short ones are not held
//!     back);
//!   - an **HTTP function** (a component exporting
//!     `wasi:http/incoming-handler` and no `wasi:cli/run`, `serve`) is served
//!     on [`SandboxBuilder::http_listen`] (an error without one:
//!     [`ShimError::NoHttpListen`]) by the calling runtime: HTTP/1.1 with
//!     keep-alive, one fresh instance per request from a pre-instantiated
//!     template, the sandbox's memory limit, CPU limit and deadline applied
//!     per request, [`SandboxBuilder::http_concurrency`] requests at once,
//!     [`SandboxBuilder::http_queue`] more waiting, 503 beyond.
//!
//!   [`Engine::run`] is spawn then wait. [`Engine::prepare_then`] gives a
//!   [`Prepared`] guest whose kill handle exists before it starts; its
//!   [`Prepared::start`], like `run`, lets a command whose runs have been
//!   short take its first slice on the calling thread (`priority`), so it
//!   may end, and its exit callback run, before `start` returns.
//! - [`Running`] (`control`): [`Running::http_addr`] (awaitable: the bound
//!   address, port 0 resolved), [`Running::usage`] (live [`Usage`]: CPU time,
//!   memory now and at peak, requests served and in flight),
//!   [`Running::wait`] for the [`Exit`]. [`KillHandle::kill`] stops at once
//!   (137, [`ExitReason::Killed`]); [`KillHandle::terminate`] stops
//!   gracefully: an HTTP function drains within the grace period (0,
//!   [`ExitReason::Exited`]; 137 `Killed` if the grace ran out), a command
//!   ends at once as a process with default SIGTERM handling (143,
//!   [`ExitReason::Terminated`]).
//! - Outgoing `wasi:http` from any component goes through the sandbox's
//!   connect grants (`outgoing`); sockets through its socket policy (`wasi`).
//! - [`Runtime`]: the seam a CRI runtime sits on (runwasi's engine trait).
//!
//! ```no_run
//! # async fn demo() -> Result<(), wasi_shim::ShimError> {
//! use std::time::Duration;
//! use wasi_shim::{Engine, EngineConfig, ModuleSource, Output, MemoryOutput, Sandbox};
//! let engine = Engine::new(EngineConfig::default())?;
//! let out = MemoryOutput::new(1 << 20);
//! let sandbox = Sandbox::builder().arg("hello").stdout(Output::Memory(out.clone())).build();
//! let exit = engine.run(ModuleSource::file("hello.wasm"), &sandbox).await?;
//! assert!(exit.success());
//!
//! let function = Sandbox::builder()
//!     .http_listen("127.0.0.1:0".parse().unwrap())
//!     .http_concurrency(4)
//!     .build();
//! let running = engine.spawn(ModuleSource::file("hello-http.wasm"), &function);
//! let addr = running.http_addr().await.expect("an HTTP function");
//! println!("serving on {addr}, {} requests so far", running.usage().requests_served);
//! running.kill_handle().terminate(Duration::from_secs(30));
//! assert_eq!(running.wait().await?.code, 0);
//! # Ok(()) }
//! ```

mod control;
mod engine;
mod error;
mod host;
mod limits;
mod outgoing;
mod priority;
mod run;
mod sandbox;
mod serve;
mod usage;
mod wasi;

pub use control::{KillHandle, Running};
pub use engine::{
    CacheOutcome, CacheStats, Engine, EngineConfig, InlineStats, Loaded, ModuleKind, ModuleSource,
};
pub use error::ShimError;
pub use run::{Exit, ExitReason, KILLED_EXIT_CODE, Prepared, TERMINATED_EXIT_CODE, TRAP_EXIT_CODE};
pub use sandbox::{
    Access, DEFAULT_HTTP_CONCURRENCY, DEFAULT_HTTP_QUEUE, DEFAULT_MAX_INSTANCES, Input,
    InputStream, MemoryOutput, NetGrant, Output, OutputSink, Preopen, Sandbox, SandboxBuilder,
};
pub use usage::Usage;

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
