//! `cri`: the node's container runtime, serving the Kubernetes CRI v1
//! `RuntimeService` and `ImageService` over gRPC on a unix socket, and
//! running each container as a Wasm guest through `wasi-shim`.
//!
//! - [`Config`] -> [`CriServer::build`] (socket, image store, engine, the
//!   records of an earlier run) -> [`CriServer::serve`] (until shutdown, then
//!   drain, stop every container, remove the socket).
//! - A pod sandbox is a record and a pod IP from the pod CIDR (`ipam`); a
//!   container is a guest whose sandbox (`spec`) holds its argv, environment,
//!   mounts, limits and grants, whose output goes to CRI-format log files
//!   (`logs`), watched until it exits (`containers`).
//! - ExecSync runs the embedded toolbox (`ls`, `cat`, `env`, `ps`, `help`) or
//!   the container's own module in the container's sandbox (`exec`).
//! - Exec answers a single-use URL of the streaming server (`streaming`, on
//!   [`Config::stream_address`], as containerd's): a WebSocket on it runs
//!   the command the same way, streaming stdin, stdout, stderr and the exit
//!   Status in the Kubernetes channel protocol ([`channel`], v5 and v4).
//! - GetContainerEvents streams every container's (and pod sandbox's)
//!   CREATED, STARTED, STOPPED and DELETED with the pod's statuses, the
//!   kubelet's evented PLEG (`events`).
//! - Errors map to gRPC codes in one place (`error`); [`client::connect`]
//!   gives clients over the socket.
//!
//! Annotations Shoal reads: [`EGRESS_ANNOTATION`] (outgoing connections a
//! pod or container may make, until pod networking) and
//! [`HTTP_PORT_ANNOTATION`] (the port an HTTP function is served on).

pub mod channel;
pub mod client;
mod containers;
mod error;
mod events;
mod exec;
mod image_service;
mod ipam;
mod logs;
mod pods;
mod ports;
mod records;
mod runtime;
mod server;
mod service;
mod spec;
mod stats;
mod streaming;
mod tables;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use containers::START_ERROR_EXIT_CODE;
pub use error::CriError;
pub use events::EVENT_BUFFER;
pub use exec::{MAX_EXEC_OUTPUT, TOOLBOX_COMMANDS, TOOLBOX_DIR, toolbox_module};
pub use ipam::DEFAULT_POD_CIDR;
pub use logs::MAX_LINE;
pub use records::{RUNTIME_RESTARTED, UNKNOWN_EXIT_CODE};
pub use runtime::{RUNTIME_API_VERSION, RUNTIME_NAME};
pub use server::{CriServer, DRAIN_TIMEOUT, SHUTDOWN_GRACE};
pub use spec::{DEFAULT_HTTP_PORT, EGRESS_ANNOTATION, HTTP_PORT_ANNOTATION};
pub use streaming::{MAX_PENDING, MAX_QUEUED_OUTPUT, TOKEN_TTL};

/// The default cap of one container log file (10 MiB, as the kubelet's
/// `containerLogMaxSize`).
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;
/// The default number of log files kept per container, the current one
/// included (as the kubelet's `containerLogMaxFiles`).
pub const DEFAULT_LOG_MAX_FILES: usize = 5;

/// How the runtime is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node's data directory: the image store (`images/`), the compile
    /// cache (`cache/`) and the runtime's records (`cri/`) live under it.
    pub data_dir: PathBuf,
    /// The CRI socket (default `DATA_DIR/cri.sock`).
    pub socket: PathBuf,
    /// The Wasm engine; its `cache_dir` defaults to `DATA_DIR/cache`.
    pub engine: wasi_shim::EngineConfig,
    /// The size at which a container's log file is rotated.
    pub log_max_bytes: u64,
    /// The log files kept per container, the current one included
    /// (`path`, `path.1`, ... `path.{log_max_files-1}`).
    pub log_max_files: usize,
    /// The network pod IPs come from until UpdateRuntimeConfig sets the
    /// node's (default [`DEFAULT_POD_CIDR`], inside 127.0.0.0/8).
    pub pod_cidr: String,
    /// How registries are reached by PullImage.
    pub registry: images::RegistryConfig,
    /// Where the streaming server (Exec URLs) listens (default
    /// `127.0.0.1:0`, a free port on loopback: only the node's kubelet
    /// connects to it).
    pub stream_address: SocketAddr,
}

impl Config {
    /// The defaults for a data directory.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        let data_dir = data_dir.as_ref().to_owned();
        Self {
            socket: data_dir.join("cri.sock"),
            engine: wasi_shim::EngineConfig {
                cache_dir: Some(data_dir.join("cache")),
                ..Default::default()
            },
            data_dir,
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_max_files: DEFAULT_LOG_MAX_FILES,
            pod_cidr: DEFAULT_POD_CIDR.into(),
            registry: images::RegistryConfig::default(),
            stream_address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }
}
