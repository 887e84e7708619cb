//! `kubelet`: the node agent. It registers its Node and heartbeats with a
//! Lease, runs the pods bound to the node through a CRI v1 runtime on a
//! unix socket, probes them, and writes their status back. It talks only to
//! the apiserver (kube-rs) and to the runtime (the standard CRI client).
//!
//! [`Config`] -> [`Kubelet::build`] -> [`Kubelet::run`] (until shutdown).
//! The parts, one concept each:
//!
//! - `node`: the Node object and its status; `lease`: the heartbeat.
//! - `pods`: the watch over the node's pods, one worker per pod and
//!   housekeeping; `pleg`: the runtime's container events (relisting as
//!   a fallback) waking the workers; `admission`: whether the node
//!   takes a pod, on running totals; `worker`: the per-pod
//!   reconcile (sandbox, image, init containers, containers, restarts,
//!   probes, deletion); `runtime`: what the runtime holds for a pod.
//! - `status`: the pod status from what is observed; `events`: Events;
//!   `changes`: which pod updates a worker acts on.
//! - `volumes`: emptyDir, configMap, secret, downwardAPI, projected and
//!   hostPath volumes and the container mounts; `objects`: the watched
//!   ConfigMaps and Secrets; `env`: container environments.
//! - `probes`, `backoff`, `images` (pull policy and credentials),
//!   `resources`, `quantity`, `cri` (the client).
//! - `server`: the kubelet API on port 10250 (HTTPS, client certificates):
//!   `/containerLogs`, `/exec`, `/stats/summary`, `/pods`, `/healthz`,
//!   bound by [`Kubelet::build`] when [`Config::serving`] is given.
//!
//! Stopping the kubelet stops no pod: a kubelet that starts again adopts
//! the sandboxes and containers the runtime still runs.

mod admission;
pub mod backoff;
mod changes;
pub mod cri;
pub mod env;
mod error;
pub mod events;
pub mod images;
mod lease;
mod node;
mod objects;
pub mod pleg;
mod pods;
pub mod probes;
pub mod quantity;
pub mod resources;
pub mod runtime;
pub mod server;
mod services;
pub mod status;
pub mod volumes;
mod worker;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use backoff::BackoffConfig;
pub use error::{KubeletError, chain};
pub use lease::NAMESPACE as LEASE_NAMESPACE;
pub use node::KUBELET_VERSION;

use crate::cri::Cri;
use crate::events::Recorder;
use crate::node::Host;
use crate::objects::Objects;
use crate::resources::Allocatable;

/// The default `--max-pods` (Kubernetes' is 110; Wasm pods are small).
pub const DEFAULT_MAX_PODS: u32 = 1000;

/// How the kubelet is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// The node's address (InternalIP); everything the node binds is on it.
    pub node_ip: IpAddr,
    /// Pod directories (`pods/UID/volumes/...`) and logs (`logs/pods/...`).
    pub data_dir: PathBuf,
    /// The CRI runtime's socket.
    pub cri_socket: PathBuf,
    /// The runtime's in-process clients, when it runs in this process
    /// (`shoal node`): calls go through them instead of the socket.
    pub cri_in_process: Option<(::cri::client::RuntimeClient, ::cri::client::ImageClient)>,
    /// The most pods the node runs.
    pub max_pods: u32,
    /// CrashLoopBackOff and ImagePullBackOff.
    pub backoff: BackoffConfig,
    /// How often the node status is recomputed.
    pub node_status_period: Duration,
    /// How often the lease is renewed.
    pub lease_period: Duration,
    /// The lease's duration.
    pub lease_duration: Duration,
    /// The kubelet API's port on `node_ip` (10250; 0 picks a free one).
    pub kubelet_port: u16,
    /// The kubelet API's certificates; without them the API is not served.
    pub serving: Option<ServingTls>,
}

/// The kubelet API's TLS material, all PEM.
#[derive(Clone)]
pub struct ServingTls {
    /// The node's serving certificate (chain), signed by the cluster CA.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// The CA client certificates must chain to.
    pub client_ca_pem: String,
}

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingTls").finish_non_exhaustive()
    }
}

/// The kubelet API's default port.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

impl Config {
    /// The defaults for a node.
    pub fn new(
        node_name: impl Into<String>,
        data_dir: impl AsRef<Path>,
        cri_socket: impl AsRef<Path>,
    ) -> Self {
        Config {
            node_name: node_name.into(),
            node_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            data_dir: data_dir.as_ref().to_owned(),
            cri_socket: cri_socket.as_ref().to_owned(),
            cri_in_process: None,
            max_pods: DEFAULT_MAX_PODS,
            backoff: BackoffConfig::default(),
            node_status_period: Duration::from_secs(10),
            lease_period: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            kubelet_port: DEFAULT_KUBELET_PORT,
            serving: None,
        }
    }
}

/// What every part of the kubelet shares.
pub(crate) struct Shared {
    pub config: Config,
    pub client: kube::Client,
    pub cri: Cri,
    pub recorder: Recorder,
    pub objects: Objects,
    pub host: Host,
    /// When this kubelet started.
    pub started: SystemTime,
    /// The kubelet API's port (`status.daemonEndpoints`), 0 if not served.
    pub api_port: u16,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn allocatable(&self) -> Allocatable {
        self.host.allocatable(self.config.max_pods)
    }
}

/// A kubelet, ready to run.
#[derive(Debug)]
pub struct Kubelet {
    shared: Arc<Shared>,
    api: Option<server::ApiServer>,
}

/// The host name, as the default node name.
pub fn hostname() -> String {
    Host::gather().hostname.to_lowercase()
}

/// An apiserver client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, KubeletError> {
    // Several rustls providers may be linked in: pick ring, as the rest of Shoal.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| KubeletError::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|source| KubeletError::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    kube::Client::try_from(config).map_err(|source| KubeletError::Client {
        path: path.to_owned(),
        source,
    })
}

impl Kubelet {
    /// Prepares the data directory and the runtime client (which connects
    /// on first use).
    pub async fn build(config: Config, client: kube::Client) -> Result<Kubelet, KubeletError> {
        if config.node_name.is_empty() {
            return Err(KubeletError::Config(
                "the node name is empty: give --name".into(),
            ));
        }
        if config.max_pods == 0 {
            return Err(KubeletError::Config("--max-pods must be at least 1".into()));
        }
        for dir in [
            config.data_dir.join("pods"),
            config.data_dir.join("logs/pods"),
        ] {
            std::fs::create_dir_all(&dir).map_err(KubeletError::io("create", &dir))?;
        }
        let cri = match &config.cri_in_process {
            Some(clients) => Cri::in_process(clients.clone(), &config.cri_socket),
            None => Cri::connect_lazy(&config.cri_socket),
        };
        let api = match &config.serving {
            Some(tls) => {
                let addr = SocketAddr::new(config.node_ip, config.kubelet_port);
                Some(server::ApiServer::bind(&config.node_name, addr, tls, cri.clone()).await?)
            }
            None => {
                tracing::warn!(
                    "no serving certificate: the kubelet API (logs, exec, stats) is not served"
                );
                None
            }
        };
        let recorder = Recorder::spawn(client.clone(), config.node_name.clone());
        Ok(Kubelet {
            shared: Arc::new(Shared {
                objects: Objects::new(client.clone()),
                host: Host::gather(),
                started: SystemTime::now(),
                api_port: api.as_ref().map_or(0, |a| a.local_addr().port()),
                config,
                client,
                cri,
                recorder,
            }),
            api,
        })
    }

    /// Where the kubelet API listens, if it is served.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(server::ApiServer::local_addr)
    }

    /// Runs until `shutdown` resolves. The pods keep running after it.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), KubeletError> {
        let shared = self.shared;
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let api = self.api.map(|api| {
            tokio::spawn(tracing::Instrument::instrument(
                api.serve(async move {
                    let _ = api_stopped.await;
                }),
                tracing::info_span!("kubelet_api"),
            ))
        });
        tokio::pin!(shutdown);
        // Wait for the runtime.
        let mut logged = false;
        loop {
            match shared.cri.version().await {
                Ok(v) => {
                    tracing::info!(
                        runtime = %v.runtime_name,
                        version = %v.runtime_version,
                        api = %v.runtime_api_version,
                        "container runtime ready"
                    );
                    break;
                }
                Err(e) => {
                    if !logged {
                        tracing::warn!(
                            socket = %shared.cri.socket().display(),
                            error = %chain(&e),
                            "waiting for the container runtime"
                        );
                        logged = true;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        let (registered, is_registered) = tokio::sync::watch::channel(false);
        let tasks = [
            tokio::spawn(tracing::Instrument::instrument(
                node::run(shared.clone(), registered),
                tracing::info_span!("node_status"),
            )),
            tokio::spawn(tracing::Instrument::instrument(
                lease::run(shared.clone(), is_registered),
                tracing::info_span!("lease"),
            )),
            tokio::spawn(tracing::Instrument::instrument(
                node::follow_pod_cidr(shared.clone()),
                tracing::info_span!("pod_cidr"),
            )),
        ];
        tracing::info!(
            node = %shared.config.node_name,
            ip = %shared.config.node_ip,
            data_dir = %shared.config.data_dir.display(),
            "kubelet running"
        );
        pods::run(shared.clone(), shutdown).await;
        for t in tasks {
            t.abort();
        }
        let _ = stop_api.send(());
        if let Some(api) = api {
            let _ = api.await;
        }
        tracing::info!("kubelet stopped; the pods keep running");
        Ok(())
    }
}
