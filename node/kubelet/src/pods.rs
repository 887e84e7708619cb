//! The pods of this node: a kube-runtime watcher over the pods bound to it
//! (`fieldSelector=spec.nodeName=NODE`) feeds one [`Worker`] per pod UID;
//! admission (`admission`) refuses a new pod the node cannot hold; the
//! PLEG (`pleg`: the runtime's container events, relisting as a fallback)
//! wakes the workers of pods whose containers changed; housekeeping, on
//! the PLEG's relists, removes what the runtime still holds for pods that
//! are gone.
//!
//! When the apiserver is out of reach the watcher retries with back-off and
//! the workers keep the last pod they were given, so pods keep running and
//! crashed containers keep being restarted. Nothing is cleaned up until
//! the pods have been listed once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_cri::v1 as cri_api;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::Shared;
use crate::admission::{self, Tally};
use crate::cri::labels;
use crate::error::chain;
use crate::events::pod_ref;
use crate::pleg::{Listed, Pleg, Registry, Waker};
use crate::worker::{PodUpdate, Worker, remove_pod_files};

/// How often housekeeping runs.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

struct Handle {
    updates: watch::Sender<PodUpdate>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Runs the pod watcher and the workers until `shutdown`.
pub(crate) async fn run(shared: Arc<Shared>, shutdown: impl std::future::Future<Output = ()>) {
    let registry: Registry = Arc::default();
    let synced = Arc::new(AtomicBool::new(false));
    let pleg = Pleg::new(shared.cri.clone(), registry.clone());
    let relister = tokio::spawn({
        let (shared, registry, synced) = (shared.clone(), registry.clone(), synced.clone());
        let mut last_housekeeping = tokio::time::Instant::now();
        pleg.run(async move |listed: Listed| {
            if synced.load(Ordering::SeqCst) && last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = tokio::time::Instant::now();
                housekeeping(&shared, &registry, listed).await;
            }
        })
        .instrument(tracing::info_span!("pleg"))
    });
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node_name));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut manager = Manager {
        shared,
        registry,
        workers: HashMap::new(),
        rejected: HashSet::new(),
        listing: None,
        tally: Tally::default(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(Event::Init)) => manager.listing = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let Some(l) = manager.listing.as_mut() {
                        l.insert(uid_of(&pod));
                    }
                    manager.apply(pod, &done_tx).await;
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(listed) = manager.listing.take() {
                        manager.forget_unlisted(&listed);
                    }
                    if !synced.swap(true, Ordering::SeqCst) {
                        tracing::info!(pods = manager.workers.len(), "pods listed");
                    }
                }
                Some(Ok(Event::Apply(pod))) => manager.apply(pod, &done_tx).await,
                Some(Ok(Event::Delete(pod))) => manager.gone(pod),
                Some(Err(e)) => tracing::warn!(error = %chain(&e), "pod watch failed; retrying"),
                None => break,
            },
            Some(uid) = done_rx.recv() => {
                manager.workers.remove(&uid);
                manager.tally.remove(&uid);
                manager.registry.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
            }
            () = &mut shutdown => break,
        }
    }
    relister.abort();
}

struct Manager {
    shared: Arc<Shared>,
    registry: Registry,
    workers: HashMap<String, Handle>,
    /// Pods refused by admission (no worker).
    rejected: HashSet<String>,
    /// The UIDs listed since the last `Init`.
    listing: Option<HashSet<String>>,
    /// What the active pods with a worker request.
    tally: Tally,
}

impl Manager {
    async fn apply(&mut self, pod: Pod, done: &mpsc::UnboundedSender<String>) {
        let uid = uid_of(&pod);
        if uid.is_empty() || self.rejected.contains(&uid) {
            return;
        }
        if let Some(h) = self.workers.get(&uid) {
            if !admission::is_active(&pod) {
                self.tally.remove(&uid);
            }
            h.updates.send_replace(PodUpdate::Present(Arc::new(pod)));
            return;
        }
        if admission::is_active(&pod)
            && pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .is_none()
            && let Some((reason, message)) = self.tally.admit(self.shared.allocatable(), &pod)
        {
            self.reject(&pod, &uid, reason, message).await;
            return;
        }
        self.tally.update(&uid, &pod);
        let (tx, rx) = watch::channel(PodUpdate::Present(Arc::new(pod)));
        let waker = Arc::new(Waker::default());
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone(), waker.clone());
        let worker = Worker::new(self.shared.clone(), uid.clone(), rx, waker);
        self.workers.insert(uid.clone(), Handle { updates: tx });
        let done = done.clone();
        let span = tracing::info_span!("pod_worker", %uid);
        tokio::spawn(
            async move {
                worker.run().await;
                let _ = done.send(uid);
            }
            .instrument(span),
        );
    }

    fn gone(&mut self, pod: Pod) {
        let uid = uid_of(&pod);
        self.rejected.remove(&uid);
        self.tally.remove(&uid);
        if let Some(h) = self.workers.get(&uid) {
            h.updates.send_replace(PodUpdate::Gone(Arc::new(pod)));
        }
    }

    /// Pods not in a fresh list were deleted while the watch was down.
    fn forget_unlisted(&mut self, listed: &HashSet<String>) {
        for (uid, h) in &self.workers {
            if !listed.contains(uid) {
                self.tally.remove(uid);
                let last = match &*h.updates.borrow() {
                    PodUpdate::Present(p) | PodUpdate::Gone(p) => p.clone(),
                };
                h.updates.send_replace(PodUpdate::Gone(last));
            }
        }
        self.rejected.retain(|uid| listed.contains(uid));
    }

    async fn reject(&mut self, pod: &Pod, uid: &str, reason: String, message: String) {
        tracing::info!(%uid, %reason, %message, "pod rejected");
        self.shared
            .recorder
            .warning(&pod_ref(pod, None), &reason, message.clone());
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let patch = serde_json::json!({"status": {"phase": "Failed", "reason": reason, "message": message}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.rejected.insert(uid.to_owned());
            }
            Err(e) => tracing::warn!(error = %e, "cannot mark the rejected pod Failed; will retry"),
        }
    }
}

/// Stops and removes the sandboxes and containers of pods that have no
/// worker (deleted while the kubelet was away), and their files.
async fn housekeeping(shared: &Shared, registry: &Registry, listed: Listed) {
    let known: HashSet<String> = registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    for (uid, (sandboxes, containers)) in listed {
        if known.contains(&uid) {
            continue;
        }
        let name = sandboxes
            .first()
            .and_then(|s| s.labels.get(labels::POD_NAME).cloned())
            .unwrap_or_default();
        tracing::info!(%uid, pod = %name, "removing the sandboxes of a pod that is gone");
        for c in &containers {
            if c.state == cri_api::ContainerState::ContainerRunning as i32 {
                let grace = c
                    .annotations
                    .get(labels::GRACE_PERIOD)
                    .and_then(|g| g.parse().ok())
                    .map_or(Duration::from_secs(2), Duration::from_secs);
                if let Err(e) = shared.cri.stop_container(&c.id, grace).await {
                    tracing::warn!(error = %chain(&e), "cannot stop an orphaned container");
                }
            }
            let _ = shared.cri.remove_container(&c.id).await;
        }
        for s in &sandboxes {
            if let Err(e) = shared.cri.remove_pod_sandbox(&s.id).await {
                tracing::warn!(error = %chain(&e), "cannot remove an orphaned sandbox");
            }
        }
        remove_pod_files(&shared.config.data_dir, &uid);
    }
    // Pod directories with neither a worker nor a sandbox.
    if let Ok(entries) = std::fs::read_dir(shared.config.data_dir.join("pods")) {
        for e in entries.flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if !known.contains(&uid) {
                remove_pod_files(&shared.config.data_dir, &uid);
            }
        }
    }
}
