//! The command line: `shoal COMMAND`, a contract users and tests rely on
//! (design brief §2).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "A Kubernetes-compatible orchestrator whose workloads are WebAssembly",
    long_about = "A Kubernetes-compatible orchestrator whose workloads are WebAssembly.\n\n\
        `shoal up` starts a whole cluster in one process; `shoal server` and `shoal node` \
        split it over machines; every component can also run alone."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "SHOAL_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, as RUST_LOG (e.g. `info`, `store=debug`).
    #[arg(long, global = true, default_value = "info", env = "SHOAL_LOG")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A whole cluster in one process: server and one node, embedded store.
    Up(UpArgs),
    /// The control plane: apiserver, scheduler and controller-manager over a store.
    Server(ServerArgs),
    /// A worker node: kubelet, CRI runtime and proxy, joining a server.
    Node(NodeArgs),
    /// The apiserver alone.
    Apiserver(ServerArgs),
    /// The scheduler alone.
    Scheduler(ComponentArgs),
    /// The controller-manager alone.
    ControllerManager(ComponentArgs),
    /// The kubelet alone.
    Kubelet(KubeletArgs),
    /// The wasmtime CRI runtime alone.
    Cri(CriArgs),
    /// The userspace service proxy alone.
    Proxy(ComponentArgs),
    /// Push a Wasm module to an OCI registry as an artifact.
    Push(PushArgs),
    /// Manage a node's image store.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// Where this process keeps its state [default: $SHOAL_DATA_DIR, else ~/.local/share/shoal]
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDir {
    pub fn resolve(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/var/lib"), PathBuf::from);
            home.join(".local/share/shoal")
        })
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The apiserver's HTTPS port (on 127.0.0.1).
    #[arg(long, default_value_t = 6443)]
    pub https_port: u16,
    /// The kubelet API's port (logs, exec) on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// etcd client URLs (comma-separated); without them the embedded store is used.
    #[arg(long, value_delimiter = ',', env = "SHOAL_ETCD_ENDPOINTS")]
    pub etcd_endpoints: Vec<String>,
    /// The key prefix for everything Shoal stores in etcd.
    #[arg(long, default_value = "/registry/")]
    pub etcd_prefix: String,
    /// The address the apiserver listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// The apiserver's HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub https_port: u16,
    /// Run no scheduler inside the server (run `shoal scheduler` instead).
    #[arg(long)]
    pub disable_scheduler: bool,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The apiserver URL to join, e.g. https://10.0.0.1:6443 (with --token; or give --kubeconfig).
    #[arg(long, env = "SHOAL_SERVER")]
    pub server: Option<String>,
    /// The node join token: the server's `DATA_DIR/node-token`.
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub node: NodeFlags,
}

#[derive(Debug, Args)]
pub struct KubeletArgs {
    /// The CRI runtime's socket, as `shoal cri` serves it [default: DATA_DIR/cri.sock]
    #[arg(long)]
    pub cri_socket: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeFlags,
}

/// What `shoal node` and `shoal kubelet` share.
#[derive(Debug, Args)]
pub struct NodeFlags {
    /// A kubeconfig for reaching the apiserver [default: $KUBECONFIG, else
    /// DATA_DIR/admin.kubeconfig]
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The node name [default: the host name]
    #[arg(long)]
    pub name: Option<String>,
    /// The node's address: its InternalIP, and where everything the node binds listens.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: IpAddr,
    /// The kubelet API's port on the node's address (logs, exec); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The most pods the node runs.
    #[arg(long, default_value_t = 1000)]
    pub max_pods: u32,
    /// The first CrashLoopBackOff and ImagePullBackOff delay, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub backoff_base: f64,
    /// The longest CrashLoopBackOff and ImagePullBackOff delay, in seconds.
    #[arg(long, default_value_t = 300.0)]
    pub backoff_max: f64,
}

#[derive(Debug, Args)]
pub struct ComponentArgs {
    /// A kubeconfig for reaching the apiserver.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CriArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The CRI socket the kubelet connects to [default: DATA_DIR/cri.sock]
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The `.wasm` file.
    pub file: PathBuf,
    /// The OCI reference to push to, e.g. 127.0.0.1:5000/hello:v1.
    pub reference: String,
    /// The registry user; the password comes from --password-stdin or $SHOAL_REGISTRY_PASSWORD.
    #[arg(long, short = 'u', env = "SHOAL_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Speak plain HTTP to this registry (loopback registries always are).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load a module into a node's image store (DATA_DIR/images) without a registry.
    Import {
        /// The `.wasm` file.
        file: PathBuf,
        /// The image name it answers to, NAME:TAG.
        name: String,
        #[command(flatten)]
        data_dir: DataDir,
    },
}

impl Command {
    /// The name of the component behind the command, for messages.
    pub fn component(&self) -> &'static str {
        match self {
            Command::Up(_) => "up",
            Command::Server(_) => "server",
            Command::Node(_) => "node",
            Command::Apiserver(_) => "apiserver",
            Command::Scheduler(_) => "scheduler",
            Command::ControllerManager(_) => "controller-manager",
            Command::Kubelet(_) => "kubelet",
            Command::Cri(_) => "cri",
            Command::Proxy(_) => "proxy",
            Command::Push(_) => "push",
            Command::Image(_) => "image",
        }
    }
}
