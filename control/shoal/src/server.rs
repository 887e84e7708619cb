//! The control plane: the store, the apiserver over it and (for `shoal
//! server` and `shoal up`) the scheduler, started once the apiserver is
//! bound. [`ControlPlane::start`] -> [`ControlPlane::serve`] is shared by
//! `shoal server`, `shoal apiserver` and `shoal up`. The controller-manager
//! joins when it is built.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::cli::ServerArgs;
use crate::{error_chain, scheduler, shutdown_signal, store};

/// What the control plane is started with.
#[derive(Debug)]
pub struct Settings<'a> {
    pub data_dir: &'a Path,
    /// etcd client URLs; none for the embedded store.
    pub etcd_endpoints: &'a [String],
    pub etcd_prefix: &'a str,
    pub bind_address: IpAddr,
    pub https_port: u16,
    pub with_scheduler: bool,
}

/// A bound apiserver over an open store, with its scheduler running.
#[derive(Debug)]
pub struct ControlPlane {
    api: apiserver::ApiServer,
    scheduler: Option<scheduler::InServer>,
    addr: SocketAddr,
    /// What the store is, for messages.
    store: String,
}

impl ControlPlane {
    /// Opens the store, binds the apiserver (writing the certificates and
    /// `DATA_DIR/admin.kubeconfig`) and starts the scheduler.
    pub async fn start(s: Settings<'_>) -> anyhow::Result<ControlPlane> {
        std::fs::create_dir_all(s.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                s.data_dir.display()
            )
        })?;
        let (db, what) = store::open(s.data_dir, s.etcd_endpoints, s.etcd_prefix).await?;
        let revision = store::revision(&db).await?;
        tracing::info!(store = %what, revision, "store ready");
        let mut config = apiserver::Config::new(s.data_dir);
        config.bind_address = s.bind_address;
        config.port = s.https_port;
        let api = apiserver::ApiServer::build(config, db)
            .await
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
        let addr = api.local_addr()?;
        tracing::info!(%addr, kubeconfig = %api.kubeconfig().display(), "apiserver listening");
        let scheduler = if s.with_scheduler {
            Some(scheduler::InServer::start(api.kubeconfig()).await?)
        } else {
            None
        };
        Ok(ControlPlane {
            api,
            scheduler,
            addr,
            store: what,
        })
    }

    /// Where the apiserver listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin kubeconfig it wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.api.kubeconfig().to_path_buf()
    }

    /// What the store is (`embedded store in ...`, `etcd at ...`).
    pub fn store(&self) -> &str {
        &self.store
    }

    /// Serves until `shutdown` resolves; then stops the scheduler (which
    /// gives up its Lease while the apiserver still answers) and drains.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let scheduler = self.scheduler;
        self.api
            .serve(async move {
                shutdown.await;
                tracing::info!("stopping the control plane");
                if let Some(s) = scheduler {
                    s.stop().await;
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
    }
}

/// `shoal server` (with the scheduler unless `--disable-scheduler`) and
/// `shoal apiserver` (`with_scheduler` false): until SIGTERM or SIGINT.
pub async fn run(args: ServerArgs, with_scheduler: bool) -> anyhow::Result<()> {
    let data_dir = args.data_dir.resolve();
    let plane = ControlPlane::start(Settings {
        data_dir: &data_dir,
        etcd_endpoints: &args.etcd_endpoints,
        etcd_prefix: &args.etcd_prefix,
        bind_address: args.bind_address,
        https_port: args.https_port,
        with_scheduler: with_scheduler && !args.disable_scheduler,
    })
    .await?;
    let shutdown = shutdown_signal()?;
    eprintln!(
        "shoal server is up: https://{}, {}.\nUse it with:  export KUBECONFIG={}; kubectl get namespaces",
        plane.addr(),
        plane.store(),
        plane.kubeconfig().display()
    );
    plane.serve(shutdown).await
}
