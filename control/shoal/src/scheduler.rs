//! The scheduler: alone (`shoal scheduler`), or inside `shoal server`,
//! where it reaches the apiserver through the admin kubeconfig the server
//! writes. Either way it leads through the Lease `kube-system/shoal-scheduler`,
//! so several can run and only one binds.

use crate::cli::ComponentArgs;
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// `shoal scheduler`: runs until SIGTERM or SIGINT, then gives up the Lease.
pub async fn run(args: ComponentArgs) -> anyhow::Result<()> {
    let client = ::scheduler::connect(args.kubeconfig.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{}", crate::error_chain(&e)))?;
    let config = ::scheduler::Config::default();
    let shutdown = crate::shutdown_signal()?;
    eprintln!(
        "shoal scheduler is running as {}; it schedules while it holds the Lease kube-system/shoal-scheduler",
        config.identity
    );
    ::scheduler::Scheduler::new(client, config)
        .run(async move {
            shutdown.await;
            tracing::info!("stopping");
        })
        .await;
    Ok(())
}

/// The scheduler running inside `shoal server`.
#[derive(Debug)]
pub struct InServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl InServer {
    /// Starts it against the apiserver whose admin kubeconfig is `kubeconfig`.
    pub async fn start(kubeconfig: &Path) -> anyhow::Result<InServer> {
        let client = ::scheduler::connect(Some(kubeconfig))
            .await
            .map_err(|e| anyhow::anyhow!("{}", crate::error_chain(&e)))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let scheduler = ::scheduler::Scheduler::new(client, ::scheduler::Config::default());
        let task = tokio::spawn(
            async move {
                scheduler
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await;
            }
            .instrument(tracing::info_span!("scheduler")),
        );
        Ok(InServer { stop, task })
    }

    /// Stops scheduling and releases the Lease (while the apiserver still serves).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}
