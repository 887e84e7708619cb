//! `ShimError`: why a guest could not be started. How a started guest ended
//! (exit code, trap, limits) is not an error: see [`crate::Exit`].

use std::net::SocketAddr;
use std::path::PathBuf;

/// A failure before or around a guest's run, typed by who is to blame: the
/// module's bytes, the sandbox's grants, or the node.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The bytes are not a valid Wasm module or component (bad magic, unknown
    /// version, malformed or truncated sections, failed validation).
    #[error("invalid Wasm module: {message}")]
    InvalidModule {
        /// A readable reason, with the validator's message when there is one.
        message: String,
    },
    /// The module is valid but could not be instantiated in this sandbox:
    /// missing imports, no `_start` / `wasi:cli/run`, limits below its initial
    /// memory, or a full instance pool.
    #[error("cannot instantiate the guest: {message}")]
    Instantiation {
        /// The instantiation error with its context chain.
        message: String,
    },
    /// A preopened directory could not be opened on the host.
    #[error("cannot preopen {host} as {guest}")]
    Preopen {
        /// The host directory.
        host: PathBuf,
        /// Where the guest would have seen it.
        guest: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the module file failed.
    #[error("cannot read module {path}")]
    ReadModule {
        /// The module file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not be built from its configuration.
    #[error("cannot build the Wasm engine: {message}")]
    Engine {
        /// The engine's configuration error.
        message: String,
    },
    /// The component is an HTTP function (it exports
    /// `wasi:http/incoming-handler` and no `wasi:cli/run`) but its sandbox
    /// says nowhere to serve it.
    #[error(
        "the guest is an HTTP function (it exports wasi:http/incoming-handler) but its sandbox has \
         no listen address: set one with SandboxBuilder::http_listen (for a pod, its IP and containerPort)"
    )]
    NoHttpListen,
    /// The HTTP function's listen address could not be bound.
    #[error("cannot listen on {addr} to serve the HTTP function")]
    Listen {
        /// The address from the sandbox.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The run's task ended without a result (it panicked or its runtime shut
    /// down).
    #[error("the guest's task failed: {message}")]
    Task {
        /// The join error.
        message: String,
    },
}

/// Renders a wasmtime error with its context chain on one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in err.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
