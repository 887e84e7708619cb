//! The scheduler: places pods that have no `spec.nodeName` on nodes, as
//! kube-scheduler does, talking only to the apiserver.
//!
//! Watches (`informers`) keep an in-memory [`cache`] of nodes and the pods
//! on them, and feed unbound pods into the [`queue`]. One loop takes a pod
//! at a time: [`filters`] rule nodes out, [`scores`] rank the rest, [`cycle`]
//! picks one; the pod is *assumed* on it in the cache at once and bound
//! ([`bind`]) concurrently, so the next pod need not wait for the binding or
//! the watch. A pod no node fits gets `PodScheduled=False` and a
//! `FailedScheduling` event ([`events`]) and waits in the queue for the
//! cluster to change. With leader election ([`leader`]) only the holder of
//! the Lease schedules.

mod bind;
mod cache;
mod cycle;
mod events;
mod filters;
mod informers;
mod leader;
mod node;
mod pod;
mod quantity;
mod queue;
mod resources;
mod scores;

pub use leader::{LeaseConfig, default_identity};
pub use queue::QueueConfig;

use crate::bind::BindError;
use crate::cycle::{Rng, Scratch};
use crate::events::{Record, Recorder};
use crate::informers::{Kind, Shared};
use crate::queue::{Popped, Queue};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the kubeconfig {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot find a kubeconfig (give --kubeconfig, or set KUBECONFIG)")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot create a client for the apiserver")]
    Client(#[source] kube::Error),
}

/// How to run a scheduler.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `spec.schedulerName` this scheduler serves (pods naming none too).
    pub scheduler_name: String,
    /// Who this process is, in the Lease and in events.
    pub identity: String,
    /// Lead through a Lease, or (None) schedule at once, alone.
    pub leader_election: Option<LeaseConfig>,
    pub queue: QueueConfig,
    /// Bindings sent at once; more wait.
    pub max_bindings_in_flight: usize,
    /// kube-scheduler's `percentageOfNodesToScore`: an attempt stops
    /// filtering once it has found this share of the nodes feasible, and
    /// scores only those (never fewer than 100 nodes; smaller clusters are
    /// searched whole). 0, the default, is adaptive: `50 - nodes/125`
    /// percent, at least 5 (42% of 1,000 nodes); 100 searches every node.
    pub percentage_of_nodes_to_score: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".into(),
            identity: default_identity(),
            leader_election: Some(LeaseConfig::default()),
            queue: QueueConfig::default(),
            max_bindings_in_flight: 128,
            percentage_of_nodes_to_score: 0,
        }
    }
}

/// A client from a kubeconfig file, or (None) from `KUBECONFIG`, `~/.kube/config`
/// or the in-cluster service account.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, Error> {
    // kube's TLS uses rustls' process-wide provider; when another crate in
    // the binary enables a second one (aws-lc-rs), rustls cannot pick, so
    // name ring (kube's) unless one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let err = |source| Error::Kubeconfig {
                path: path.to_path_buf(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::infer().await.map_err(Error::Infer)?,
    };
    kube::Client::try_from(config).map_err(Error::Client)
}

/// A scheduler, ready to run.
pub struct Scheduler {
    client: kube::Client,
    config: Config,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(client: kube::Client, config: Config) -> Scheduler {
        Scheduler { client, config }
    }

    /// Schedules (while leading) until `shutdown` resolves; then gives up
    /// the Lease.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let Some(lease) = self.config.leader_election.clone() else {
            tokio::select! {
                _ = lead(&self.client, &self.config) => {}
                _ = &mut shutdown => {}
            }
            return;
        };
        let mut elector =
            leader::Elector::new(self.client.clone(), lease, self.config.identity.clone());
        loop {
            tokio::select! {
                _ = elector.acquire() => {}
                _ = &mut shutdown => return,
            }
            tokio::select! {
                _ = lead(&self.client, &self.config) => {}
                _ = elector.hold() => {
                    tracing::warn!("stopped scheduling: not the leader any more");
                    continue;
                }
                _ = &mut shutdown => {}
            }
            elector.release().await;
            return;
        }
    }
}

/// What the scheduling loop and its binding tasks share.
struct Context {
    client: kube::Client,
    shared: Arc<Shared>,
    recorder: Recorder,
    bindings: Arc<Semaphore>,
    reports: Arc<Semaphore>,
    percentage_of_nodes_to_score: u32,
}

/// Status patches and events for unschedulable pods sent at once.
const REPORTS_IN_FLIGHT: usize = 32;

/// Schedules until dropped: starts the watches, waits for their first
/// lists, then drains the queue. Everything it spawned stops with it.
async fn lead(client: &kube::Client, config: &Config) {
    let shared = Arc::new(Shared {
        cache: Mutex::default(),
        queue: Queue::new(config.queue),
        scheduler_name: config.scheduler_name.clone(),
    });
    let mut tasks = JoinSet::new();
    let (synced_tx, mut synced) = watch::channel(0u32);
    let kinds = [Kind::Nodes, Kind::Pods, Kind::RuntimeClasses];
    for kind in kinds {
        let watch = informers::run(kind, client.clone(), shared.clone(), synced_tx.clone());
        tasks.spawn(watch.instrument(tracing::info_span!("watch", ?kind)));
    }
    let max_bindings = config.max_bindings_in_flight.max(1);
    let bindings = Arc::new(Semaphore::new(max_bindings));
    let busy: events::Busy = {
        let bindings = bindings.clone();
        Arc::new(move || bindings.available_permits() < max_bindings)
    };
    let (recorder, writer) = Recorder::new(
        client.clone(),
        &config.scheduler_name,
        &config.identity,
        busy,
    );
    tasks.spawn(writer.instrument(tracing::info_span!("events")));
    if synced
        .wait_for(|n| *n as usize >= kinds.len())
        .await
        .is_err()
    {
        return;
    }
    tracing::info!(
        nodes = shared.cache().node_count(),
        pending = shared.queue.len(),
        "caches synced; scheduling"
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        shared: shared.clone(),
        recorder,
        bindings,
        reports: Arc::new(Semaphore::new(REPORTS_IN_FLIGHT)),
        percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
    });
    let mut rng = Rng::new(uuid::Uuid::new_v4().as_u64_pair().0);
    let mut scratch = Scratch::default();
    while let Some(popped) = shared.queue.pop().await {
        while tasks.try_join_next().is_some() {}
        attempt(&ctx, popped, &mut rng, &mut scratch, &mut tasks).await;
    }
}

/// One scheduling attempt, in a span naming the pod: decide, assume, and
/// hand the binding (or the failure report) to a task.
async fn attempt(
    ctx: &Arc<Context>,
    popped: Popped,
    rng: &mut Rng,
    scratch: &mut Scratch,
    tasks: &mut JoinSet<()>,
) {
    let meta = &popped.pod.metadata;
    let span = tracing::info_span!(
        "schedule",
        pod = %format_args!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default()),
        attempt = popped.failures + 1,
    );
    let (info, decision) = span.in_scope(|| {
        let mut cache = ctx.shared.cache();
        let info = cache.pod_info(&popped.pod);
        let percentage = ctx.percentage_of_nodes_to_score;
        let decision = cycle::schedule(&cache, &info, percentage, rng, scratch);
        if let Ok(node) = &decision {
            cache.assume(&info, node);
        }
        (info, decision)
    });
    match decision {
        Ok(node) => {
            let Ok(permit) = ctx.bindings.clone().acquire_owned().await else {
                return;
            };
            let ctx = ctx.clone();
            let bind_span = tracing::info_span!(parent: &span, "bind", node = %node);
            tasks.spawn(
                async move {
                    let _permit = permit;
                    finish_binding(&ctx, &popped, &info, &node).await;
                }
                .instrument(bind_span),
            );
        }
        Err(fit) => {
            let message = fit.to_string();
            span.in_scope(|| {
                if popped.failures == 0 {
                    tracing::info!(reason = %message, "unschedulable");
                } else {
                    tracing::debug!(reason = %message, "still unschedulable");
                }
            });
            ctx.shared.queue.unschedulable(&popped.uid);
            let Ok(permit) = ctx.reports.clone().acquire_owned().await else {
                return;
            };
            let ctx = ctx.clone();
            tasks.spawn(
                async move {
                    let _permit = permit;
                    if let Err(e) =
                        bind::mark_unschedulable(&ctx.client, &popped.pod, &message).await
                    {
                        tracing::warn!(error = %e, "cannot set the PodScheduled condition");
                    }
                    ctx.recorder
                        .record(Record::failed_scheduling(&popped.pod, message));
                }
                .instrument(span),
            );
        }
    }
}

/// Binds, then settles the cache and the queue with the outcome.
async fn finish_binding(ctx: &Context, popped: &Popped, info: &pod::PodInfo, node: &str) {
    let queue = &ctx.shared.queue;
    match bind::bind(&ctx.client, info, node).await {
        Ok(()) => {
            queue.done(&popped.uid);
            tracing::debug!("bound");
            ctx.recorder.record(Record::scheduled(&popped.pod, node));
        }
        Err(e @ (BindError::Gone | BindError::AlreadyBound)) => {
            tracing::debug!(error = %e, "not bound");
            ctx.shared.cache().forget(&popped.uid);
            queue.done(&popped.uid);
        }
        Err(e) => {
            tracing::warn!(error = %e, source = %source_of(&e), "binding failed; will retry");
            ctx.shared.cache().forget(&popped.uid);
            queue.retry(&popped.uid);
        }
    }
}

fn source_of(e: &dyn std::error::Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}
