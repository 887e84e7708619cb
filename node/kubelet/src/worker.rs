//! A pod worker: one task per pod on the node, reconciling the pod to what
//! its spec asks through CRI, every time the pod changes, the runtime
//! reports a change for it, a probe flips, an object it reads changes, or a
//! timer it asked for fires. Each reconcile runs in a span naming the pod
//! and returns what to do next ([`Action`]).
//!
//! A reconcile reads the runtime's state of the pod ([`runtime::observe`])
//! and moves it one step on: a sandbox, volumes, the image, init
//! containers in order (each to success), then the containers; restarts by
//! `restartPolicy` with CrashLoopBackOff; kills on a failed liveness or
//! startup probe; `activeDeadlineSeconds`; and, once the pod is deleted,
//! stops everything within the grace period and confirms the deletion.
//! The status is written (only when it changed) before and after the step.
//! Nothing is kept that the runtime does not hold, except back-off timers
//! and probe results, so a restarted kubelet adopts the pod as it is.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_cri::v1 as cri_api;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, PodStatus, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use crate::Shared;
use crate::backoff::Backoff;
use crate::changes;
use crate::cri::labels;
use crate::env::{self, Facts, Sources};
use crate::error::{KubeletError, chain, is_status};
use crate::events::{container_path, pod_ref};
use crate::images;
use crate::pleg::Waker;
use crate::probes::{self, Kind, Probes};
use crate::resources;
use crate::runtime::{self, Observed, Sandbox, State};
use crate::status::{self, Health, Inputs, Terminal, Waiting, phase, reason};
use crate::volumes::{self, Mounted};

/// How often a pod is reconciled when nothing happens (the kubelet's
/// `syncFrequency`), plus up to half of it at random so that pods started
/// together do not resync together. Changes do not wait for it: the
/// runtime, probes, objects and timers wake a worker.
pub const RESYNC: Duration = Duration::from_secs(60);
/// How often a finished pod is looked at.
const IDLE: Duration = Duration::from_secs(60);
/// The retry delay after a failed reconcile, doubled up to a minute.
const ERROR_DELAY: Duration = Duration::from_secs(1);
/// The retry delay after a status write the apiserver did not take,
/// doubled up to [`STATUS_RETRY_MAX`].
const STATUS_RETRY: Duration = Duration::from_secs(1);
const STATUS_RETRY_MAX: Duration = Duration::from_secs(10);
/// How long to wait before retrying a container whose configuration or
/// creation failed.
const CONFIG_RETRY: Duration = Duration::from_secs(5);
/// The longest a reconcile waits on the apiserver for a status write or a
/// list: pods must not wait on an apiserver that does not answer.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// The dead instances kept per container besides the newest (for
/// `lastState` and `kubectl logs --previous`).
const KEEP_DEAD: usize = 1;

/// The pod as the worker last heard of it.
#[derive(Clone, Debug)]
pub enum PodUpdate {
    /// In the API.
    Present(Arc<Pod>),
    /// Gone from the API (deleted without the kubelet confirming).
    Gone(Arc<Pod>),
}

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long (or sooner if something changes).
    Requeue(Duration),
    /// The pod is gone and cleaned up: the worker ends.
    Done,
}

/// The outcome of one container's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Succeeded,
    Failed,
    Running,
    /// Not running yet; try again after this long.
    Waiting(Duration),
    /// Something was done: look again.
    Changed,
}

/// A pod worker's state.
pub struct Worker {
    shared: Arc<Shared>,
    uid: String,
    updates: watch::Receiver<PodUpdate>,
    wake: Arc<Notify>,
    /// What the PLEG wakes this worker with, and what it last observed.
    waker: Arc<Waker>,
    waiting: HashMap<String, Waiting>,
    backoff: Backoff,
    probes: Probes,
    warned_probes: HashSet<(String, Kind)>,
    terminal: Option<Terminal>,
    /// The status as of our last write, with the resourceVersion it made.
    believed: Option<(u64, PodStatus)>,
    /// The status we last computed and wrote, with the resourceVersion the
    /// write made: an equal status is not written again.
    written: Option<(u64, PodStatus)>,
    /// When to retry a status write that failed.
    status_retry: Duration,
    volumes: BTreeMap<String, Mounted>,
    /// The containers this reconcile created, started or stopped.
    touched: Vec<String>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn name_of(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// `NAME_NAMESPACE(UID)`, as the kubelet names a pod in messages.
fn pod_label(pod: &Pod) -> String {
    let (ns, name) = name_of(pod);
    format!("{name}_{ns}({})", uid_of(pod))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some(phase::SUCCEEDED | phase::FAILED)
    )
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn ns_to_system(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// `10s`, `1m20s`, as Go prints a duration.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, 0) => format!("{}ms", d.as_millis()),
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m0s"),
        (m, s) => format!("{m}m{s}s"),
    }
}

fn rv_of(pod: &Pod) -> Option<u64> {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        uid: String,
        updates: watch::Receiver<PodUpdate>,
        waker: Arc<Waker>,
    ) -> Self {
        let backoff = Backoff::new(shared.config.backoff);
        let wake = waker.notify.clone();
        Worker {
            waker,
            probes: Probes::new(wake.clone()),
            shared,
            uid,
            updates,
            wake,
            waiting: HashMap::new(),
            backoff,
            warned_probes: HashSet::new(),
            terminal: None,
            believed: None,
            written: None,
            status_retry: STATUS_RETRY,
            volumes: BTreeMap::new(),
            touched: Vec::new(),
        }
    }

    /// Reconciles until the pod is gone and cleaned up.
    pub async fn run(mut self) {
        let mut error_delay = ERROR_DELAY;
        loop {
            let update = self.updates.borrow_and_update().clone();
            let pod = match &update {
                PodUpdate::Present(p) | PodUpdate::Gone(p) => p.clone(),
            };
            let (namespace, name) = name_of(&pod);
            let span = tracing::info_span!("reconcile", %namespace, %name, uid = %self.uid);
            let result = self.reconcile(&update).instrument(span.clone()).await;
            let delay = match result {
                Ok(Action::Done) => {
                    span.in_scope(|| tracing::info!("pod cleaned up; worker done"));
                    return;
                }
                Ok(Action::Requeue(d)) => {
                    error_delay = ERROR_DELAY;
                    d
                }
                Err(e) => {
                    span.in_scope(|| tracing::warn!(error = %chain(&e), retry = ?error_delay, "reconcile failed"));
                    let d = error_delay;
                    error_delay = (error_delay * 2).min(Duration::from_secs(60));
                    d
                }
            };
            let deadline = tokio::time::Instant::now() + delay;
            loop {
                tokio::select! {
                    changed = self.updates.changed() => {
                        if changed.is_err() {
                            // The manager is gone (shutdown): the pods keep running.
                            return;
                        }
                        let matters = match &*self.updates.borrow() {
                            PodUpdate::Gone(_) => true,
                            PodUpdate::Present(new) => {
                                changes::matters(&pod, new, self.believed.as_ref())
                            }
                        };
                        if matters {
                            break;
                        }
                    }
                    () = self.wake.notified() => break,
                    () = self.waker.runtime_changed() => break,
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    }

    /// Tells the PLEG what the runtime held when last observed, so that
    /// this worker is woken only for what changed since.
    fn saw(&self, observed: &Observed) {
        self.waker.saw(observed.fingerprint());
    }

    /// [`RESYNC`] and up to half of it again, at random.
    fn resync() -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u8(0);
        let half = RESYNC.as_millis() as u64 / 2;
        RESYNC + Duration::from_millis(h.finish() % (half + 1))
    }

    /// One idempotent reconcile.
    pub async fn reconcile(&mut self, update: &PodUpdate) -> Result<Action, KubeletError> {
        match update {
            PodUpdate::Gone(pod) => self.terminate(pod, true).await,
            PodUpdate::Present(pod) if pod.metadata.deletion_timestamp.is_some() => {
                self.terminate(pod, false).await
            }
            PodUpdate::Present(pod) => self.sync(pod).await.map(Action::Requeue),
        }
    }

    /// Moves the pod on, then writes its status once, carrying whatever
    /// the steps changed (one patch per reconcile, not one per step).
    async fn sync(&mut self, pod: &Pod) -> Result<Duration, KubeletError> {
        let mut observed = runtime::observe(&self.shared.cri, &self.uid).await?;
        let result = self.advance(pod, &mut observed).await;
        self.saw(&observed);
        if self.write_status(pod, &observed, false).await {
            self.status_retry = STATUS_RETRY;
            result
        } else {
            let retry = self.status_retry;
            self.status_retry = (retry * 2).min(STATUS_RETRY_MAX);
            result.map(|d| d.min(retry))
        }
    }

    /// One step of the pod's sandbox and containers; `observed` is kept
    /// up to date with what the runtime holds after it.
    async fn advance(
        &mut self,
        pod: &Pod,
        observed: &mut Observed,
    ) -> Result<Duration, KubeletError> {
        let cri = self.shared.cri.clone();
        let terminal = is_terminal(&self.current(pod));
        if self.terminal.is_none() && !terminal {
            self.check_deadline(pod);
        }
        if terminal || self.terminal.is_some() {
            if self.stop_all(pod, observed, grace_of(pod)).await? {
                *observed = runtime::observe(&cri, &self.uid).await?;
            }
            return Ok(IDLE);
        }

        // The sandbox.
        let sandbox = match observed.current_sandbox() {
            Some(s) if s.ready => s.clone(),
            previous => {
                let previous = previous.cloned();
                if previous.is_some()
                    && restart_policy(pod) == "Never"
                    && !observed.containers.is_empty()
                {
                    // The sandbox died after its containers ran; a Never pod
                    // is not started again.
                    return Ok(Self::resync());
                }
                if self.stop_all(pod, observed, grace_of(pod)).await? {
                    *observed = runtime::observe(&cri, &self.uid).await?;
                }
                if let Err(e) = self.setup_volumes(pod, "").await {
                    return Ok(self.volume_failed(pod, &e));
                }
                let attempt = previous.as_ref().map_or(0, |s| s.attempt + 1);
                if previous.is_some() {
                    self.shared.recorder.normal(
                        &pod_ref(pod, None),
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.",
                    );
                }
                let config = self.sandbox_config(pod, attempt);
                let id = match cri.run_pod_sandbox(config).await {
                    Ok(id) => {
                        tracing::info!(sandbox = %id, attempt, "pod sandbox created");
                        id
                    }
                    Err(e) => {
                        self.shared.recorder.warning(
                            &pod_ref(pod, None),
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {}", chain(&e)),
                        );
                        return Err(e);
                    }
                };
                // The new sandbox is all that changed: its status, not a
                // fresh look at the whole pod.
                match cri.pod_sandbox_status(&id).await {
                    Ok(Some(status)) => observed.sandboxes.insert(0, runtime::sandbox_of(status)),
                    Ok(None) => *observed = runtime::observe(&cri, &self.uid).await?,
                    Err(e) if e.is_not_found() => return Ok(ERROR_DELAY),
                    Err(e) => return Err(e),
                }
                match observed.current_sandbox() {
                    Some(s) if s.ready => s.clone(),
                    _ => return Ok(ERROR_DELAY),
                }
            }
        };

        if let Err(e) = self.setup_volumes(pod, &sandbox.ip).await {
            return Ok(self.volume_failed(pod, &e));
        }
        self.sync_probes(pod, observed, &sandbox);

        let spec = pod.spec.clone().unwrap_or_default();
        let mut changed = false;
        let mut requeue = Self::resync();
        let mut initialized = true;
        self.touched.clear();
        for c in spec.init_containers.iter().flatten() {
            match self.step(pod, c, true, observed, &sandbox).await? {
                Step::Succeeded => continue,
                Step::Failed | Step::Running => {}
                Step::Waiting(d) => requeue = requeue.min(d),
                Step::Changed => changed = true,
            }
            initialized = false;
            break;
        }
        if initialized {
            for c in &spec.containers {
                match self.step(pod, c, false, observed, &sandbox).await? {
                    Step::Waiting(d) => requeue = requeue.min(d),
                    Step::Changed => changed = true,
                    _ => {}
                }
            }
        }
        self.collect_garbage(observed).await;
        if changed {
            let touched = std::mem::take(&mut self.touched);
            runtime::refresh(&cri, observed, &touched, &sandbox.id).await?;
            self.sync_probes(pod, observed, &sandbox);
            // Look again at once unless every container now runs (then
            // the PLEG wakes the worker when one stops).
            if !(initialized && all_running(&spec.containers, observed)) {
                requeue = Duration::ZERO;
            }
        }
        if let Some(left) = self.deadline_left(pod) {
            requeue = requeue.min(left);
        }
        Ok(requeue)
    }

    /// When `activeDeadlineSeconds` has passed, marks the pod Failed.
    fn check_deadline(&mut self, pod: &Pod) {
        if self.deadline_left(pod) == Some(Duration::ZERO) {
            self.shared.recorder.normal(
                &pod_ref(pod, None),
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            );
            self.terminal = Some(Terminal {
                phase: phase::FAILED,
                reason: "DeadlineExceeded".into(),
                message: "Pod was active on the node longer than the specified deadline".into(),
            });
        }
    }

    fn deadline_left(&self, pod: &Pod) -> Option<Duration> {
        let secs = pod.spec.as_ref()?.active_deadline_seconds?;
        let start = self
            .current(pod)
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .map_or_else(Timestamp::now, |t| t.0);
        let end = start.as_second().saturating_add(secs);
        let now = Timestamp::now().as_second();
        Some(Duration::from_secs(u64::try_from(end - now).unwrap_or(0)))
    }

    fn volume_failed(&mut self, pod: &Pod, e: &KubeletError) -> Duration {
        let message = chain(e);
        tracing::info!(error = %message, "volumes cannot be set up");
        self.shared
            .recorder
            .warning(&pod_ref(pod, None), "FailedMount", message);
        CONFIG_RETRY
    }

    /// One container's step: start, restart or kill it, or leave it be.
    async fn step(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        observed: &Observed,
        sandbox: &Sandbox,
    ) -> Result<Step, KubeletError> {
        let policy = restart_policy(pod).to_owned();
        let latest = observed.latest(&c.name);
        let here = latest.filter(|l| l.sandbox_id == sandbox.id);
        let Some(l) = here else {
            // A new sandbox: everything starts again, but a container that
            // succeeded stays done unless the policy is Always.
            if !init
                && policy != "Always"
                && latest.is_some_and(|l| l.state == State::Exited && l.exit_code == 0)
            {
                return Ok(Step::Succeeded);
            }
            let restarts = latest.map_or(0, |l| l.restart_count + 1);
            return self.start(pod, c, init, observed, sandbox, restarts).await;
        };
        let regarding = pod_ref(pod, Some(container_path(&c.name, init)));
        match l.state {
            State::Running => {
                let grace = self.kill_grace(pod, c);
                let why = if !l.hash.is_empty() && l.hash != images::container_hash(c) {
                    Some(format!(
                        "Container {} definition changed, will be restarted",
                        c.name
                    ))
                } else if self.probes.result(&l.id, Kind::Startup) == Some(false) {
                    Some(format!(
                        "Container {} failed startup probe, will be restarted",
                        c.name
                    ))
                } else if self.probes.result(&l.id, Kind::Liveness) == Some(false) {
                    Some(format!(
                        "Container {} failed liveness probe, will be restarted",
                        c.name
                    ))
                } else {
                    None
                };
                if let Some(message) = why {
                    self.shared.recorder.normal(&regarding, "Killing", message);
                    self.probes.retain(
                        &observed
                            .running()
                            .filter(|r| r.id != l.id)
                            .map(|r| r.id.clone())
                            .collect(),
                    );
                    self.shared.cri.stop_container(&l.id, grace).await?;
                    self.touched.push(l.id.clone());
                    return Ok(Step::Changed);
                }
                self.waiting.remove(&c.name);
                Ok(Step::Running)
            }
            State::Created => {
                let id = l.id.clone();
                self.run_created(pod, c, init, &id).await
            }
            State::Unknown => Ok(Step::Waiting(ERROR_DELAY)),
            State::Exited => {
                let restart = match (init, policy.as_str()) {
                    (_, "Never") => false,
                    (false, "Always") => true,
                    _ => l.exit_code != 0,
                };
                if !restart {
                    self.waiting.remove(&c.name);
                    return Ok(if l.exit_code == 0 {
                        Step::Succeeded
                    } else {
                        Step::Failed
                    });
                }
                let key = format!("container/{}", c.name);
                let failed_at = ns_to_system(l.finished_at);
                if let Some(left) = self.backoff.remaining(&key, failed_at, SystemTime::now()) {
                    let delay = go_duration(self.backoff.delay(&key));
                    self.waiting.insert(
                        c.name.clone(),
                        Waiting {
                            reason: reason::CRASH_LOOP_BACK_OFF.into(),
                            message: format!(
                                "back-off {delay} restarting failed container={} pod={}",
                                c.name,
                                pod_label(pod)
                            ),
                        },
                    );
                    self.shared.recorder.warning(
                        &regarding,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            c.name,
                            pod_label(pod)
                        ),
                    );
                    return Ok(Step::Waiting(left));
                }
                self.backoff.retried(&key, failed_at);
                let restarts = l.restart_count + 1;
                self.start(pod, c, init, observed, sandbox, restarts).await
            }
        }
    }

    fn kill_grace(&self, pod: &Pod, c: &Container) -> Duration {
        let probe = c
            .liveness_probe
            .as_ref()
            .and_then(|p| p.termination_grace_period_seconds)
            .or_else(|| {
                c.startup_probe
                    .as_ref()
                    .and_then(|p| p.termination_grace_period_seconds)
            });
        match probe {
            Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
            None => grace_of(pod),
        }
    }

    async fn run_created(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        id: &str,
    ) -> Result<Step, KubeletError> {
        let regarding = pod_ref(pod, Some(container_path(&c.name, init)));
        self.touched.push(id.to_owned());
        match self.shared.cri.start_container(id).await {
            Ok(()) => {
                self.shared.recorder.normal(
                    &regarding,
                    "Started",
                    format!("Started container {}", c.name),
                );
                self.waiting.remove(&c.name);
            }
            Err(e) => {
                let message = chain(&e);
                self.shared
                    .recorder
                    .warning(&regarding, "Failed", format!("Error: {message}"));
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: reason::RUN_CONTAINER_ERROR.into(),
                        message,
                    },
                );
            }
        }
        Ok(Step::Changed)
    }

    /// Pulls the image if needed, creates the container and starts it.
    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        observed: &Observed,
        sandbox: &Sandbox,
        restarts: i32,
    ) -> Result<Step, KubeletError> {
        let regarding = pod_ref(pod, Some(container_path(&c.name, init)));
        let sandbox_config = self.sandbox_config(pod, sandbox.attempt);
        let image = match self
            .ensure_image(pod, c, &regarding, observed, &sandbox_config)
            .await
        {
            Ok(image) => image,
            Err((waiting, retry)) => {
                self.waiting.insert(c.name.clone(), waiting);
                return Ok(Step::Waiting(retry));
            }
        };
        let config = match self
            .container_config(pod, c, sandbox, restarts, &image)
            .await
        {
            Ok(config) => config,
            Err(e) => {
                let message = chain(&e);
                self.shared
                    .recorder
                    .warning(&regarding, "Failed", format!("Error: {message}"));
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: reason::CREATE_CONTAINER_CONFIG_ERROR.into(),
                        message,
                    },
                );
                return Ok(Step::Waiting(CONFIG_RETRY));
            }
        };
        let id = match self
            .shared
            .cri
            .create_container(&sandbox.id, config, sandbox_config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let message = chain(&e);
                self.shared
                    .recorder
                    .warning(&regarding, "Failed", format!("Error: {message}"));
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: reason::CREATE_CONTAINER_ERROR.into(),
                        message,
                    },
                );
                return Ok(Step::Waiting(CONFIG_RETRY));
            }
        };
        self.shared.recorder.normal(
            &regarding,
            "Created",
            format!("Created container: {}", c.name),
        );
        self.run_created(pod, c, init, &id).await
    }

    /// The image to create the container from, pulled as its policy says;
    /// `Err` with why the container waits and when to try again.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        c: &Container,
        regarding: &ObjectReference,
        observed: &Observed,
        sandbox: &cri_api::PodSandboxConfig,
    ) -> Result<String, (Waiting, Duration)> {
        let recorder = self.shared.recorder.clone();
        let image = c.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err((
                Waiting {
                    reason: "InvalidImageName".into(),
                    message: "the container has no image".into(),
                },
                IDLE,
            ));
        }
        let policy = images::pull_policy(c);
        let present = match self.shared.cri.image_status(&image).await {
            Ok(p) => p,
            Err(e) => {
                return Err((
                    Waiting {
                        reason: reason::CONTAINER_CREATING.into(),
                        message: chain(&e),
                    },
                    ERROR_DELAY,
                ));
            }
        };
        match (policy.as_str(), present) {
            ("Never", None) => {
                let message =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                recorder.warning(regarding, reason::ERR_IMAGE_NEVER_PULL, message.clone());
                return Err((
                    Waiting {
                        reason: reason::ERR_IMAGE_NEVER_PULL.into(),
                        message,
                    },
                    CONFIG_RETRY,
                ));
            }
            ("Never" | "IfNotPresent", Some(found)) => {
                recorder.normal(
                    regarding,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(found.id);
            }
            _ => {}
        }
        let key = format!("pull/{image}");
        let now = SystemTime::now();
        if let Some(left) = self.backoff.remaining_since_last(&key, now) {
            let previous = self
                .waiting
                .get(&c.name)
                .map(|w| w.message.clone())
                .unwrap_or_default();
            let message = format!("Back-off pulling image \"{image}\": {previous}");
            recorder.normal(
                regarding,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
            recorder.warning(
                regarding,
                "Failed",
                format!("Error: {}", reason::IMAGE_PULL_BACK_OFF),
            );
            let message = if previous.starts_with("Back-off pulling image") {
                previous
            } else {
                message
            };
            return Err((
                Waiting {
                    reason: reason::IMAGE_PULL_BACK_OFF.into(),
                    message,
                },
                left,
            ));
        }
        // A pull may take long: show the pod as it is (ContainerCreating)
        // first, as the reconcile writes its status only at its end.
        self.write_status(pod, observed, false).await;
        recorder.normal(regarding, "Pulling", format!("Pulling image \"{image}\""));
        let auth = self.pull_auth(pod, &image).await;
        let started = std::time::Instant::now();
        match self
            .shared
            .cri
            .pull_image(&image, auth, Some(sandbox.clone()))
            .await
        {
            Ok(id) => {
                self.backoff.reset(&key);
                let size = match self.shared.cri.image_status(&id).await {
                    Ok(Some(i)) => format!(" Image size: {} bytes.", i.size),
                    _ => String::new(),
                };
                recorder.normal(
                    regarding,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s.{size}",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(id)
            }
            Err(e) => {
                let message = match &e {
                    KubeletError::Cri { message, .. } => message.clone(),
                    other => chain(other),
                };
                self.backoff.retried(&key, now);
                recorder.warning(
                    regarding,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {message}"),
                );
                recorder.warning(
                    regarding,
                    "Failed",
                    format!("Error: {}", reason::ERR_IMAGE_PULL),
                );
                // Look again soon: the container then waits in
                // ImagePullBackOff until the back-off ends.
                let left = self
                    .backoff
                    .remaining_since_last(&key, SystemTime::now())
                    .unwrap_or(ERROR_DELAY)
                    .min(ERROR_DELAY);
                Err((
                    Waiting {
                        reason: reason::ERR_IMAGE_PULL.into(),
                        message,
                    },
                    left,
                ))
            }
        }
    }

    /// Credentials from the pod's imagePullSecrets for the image's registry.
    async fn pull_auth(&self, pod: &Pod, image: &str) -> Option<cri_api::AuthConfig> {
        let (ns, _) = name_of(pod);
        let names: Vec<String> = pod
            .spec
            .as_ref()?
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        for name in names {
            match self
                .shared
                .objects
                .secrets
                .get(&ns, &name, &self.uid, &self.wake)
                .await
            {
                Ok(Some(secret)) => {
                    if let Some(a) = images::auth_from_secret(&secret, image) {
                        return Some(a);
                    }
                }
                Ok(None) => tracing::info!(secret = %name, "image pull secret not found"),
                Err(e) => tracing::info!(error = %e, "image pull secret unavailable"),
            }
        }
        None
    }

    /// The pod's sandbox config for an attempt.
    fn sandbox_config(&self, pod: &Pod, attempt: u32) -> cri_api::PodSandboxConfig {
        let (ns, name) = name_of(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut labels: HashMap<String, String> = pod
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        labels.insert(labels::POD_NAME.into(), name.clone());
        labels.insert(labels::POD_NAMESPACE.into(), ns.clone());
        labels.insert(labels::POD_UID.into(), self.uid.clone());
        let node_ip = self.shared.config.node_ip.to_string();
        let port_mappings = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| cri_api::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri_api::Protocol::Udp,
                    Some("SCTP") => cri_api::Protocol::Sctp,
                    _ => cri_api::Protocol::Tcp,
                } as i32,
                container_port: p.container_port,
                host_port: p.host_port.unwrap_or(0),
                host_ip: match (&p.host_ip, p.host_port) {
                    (Some(ip), _) if !ip.is_empty() => ip.clone(),
                    (_, Some(hp)) if hp > 0 => node_ip.clone(),
                    _ => String::new(),
                },
            })
            .collect();
        let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
        hostname.truncate(63);
        let hostname = hostname.trim_end_matches(['-', '.']).to_owned();
        let network = if spec.host_network == Some(true) {
            cri_api::NamespaceMode::Node
        } else {
            cri_api::NamespaceMode::Pod
        };
        cri_api::PodSandboxConfig {
            metadata: Some(cri_api::PodSandboxMetadata {
                name,
                uid: self.uid.clone(),
                namespace: ns,
                attempt,
            }),
            hostname,
            log_directory: self.log_dir(pod).display().to_string(),
            dns_config: None,
            port_mappings,
            labels,
            annotations: pod
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            linux: Some(cri_api::LinuxPodSandboxConfig {
                security_context: Some(cri_api::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri_api::NamespaceOption {
                        network: network as i32,
                        pid: cri_api::NamespaceMode::Pod as i32,
                        ipc: cri_api::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            windows: None,
        }
    }

    /// `DATA_DIR/logs/pods/NAMESPACE_NAME_UID`.
    fn log_dir(&self, pod: &Pod) -> std::path::PathBuf {
        let (ns, name) = name_of(pod);
        self.shared
            .config
            .data_dir
            .join("logs/pods")
            .join(format!("{ns}_{name}_{}", self.uid))
    }

    fn pod_dir(&self) -> std::path::PathBuf {
        volumes::pod_dir(&self.shared.config.data_dir, &self.uid)
    }

    fn facts<'a>(&self, pod: &'a Pod, pod_ip: &'a str, host_ip: &'a str) -> Facts<'a> {
        Facts {
            pod,
            pod_ip,
            host_ip,
            allocatable: self.shared.allocatable(),
        }
    }

    /// Fetches the ConfigMaps and Secrets `names` (through the watched
    /// objects).
    async fn fetch(
        &self,
        namespace: &str,
        configmaps: impl IntoIterator<Item = String>,
        secrets: impl IntoIterator<Item = String>,
    ) -> Result<Sources, KubeletError> {
        let mut sources = Sources::default();
        for name in configmaps {
            let cm = self
                .shared
                .objects
                .configmaps
                .get(namespace, &name, &self.uid, &self.wake)
                .await
                .map_err(|e| KubeletError::Config(e.to_string()))?;
            sources.configmaps.insert(name, cm);
        }
        for name in secrets {
            let s = self
                .shared
                .objects
                .secrets
                .get(namespace, &name, &self.uid, &self.wake)
                .await
                .map_err(|e| KubeletError::Config(e.to_string()))?;
            sources.secrets.insert(name, s);
        }
        Ok(sources)
    }

    /// Sets up (or refreshes) the pod's volumes.
    async fn setup_volumes(&mut self, pod: &Pod, pod_ip: &str) -> Result<(), KubeletError> {
        let (ns, _) = name_of(pod);
        let (cms, secrets) = volumes::referenced(pod);
        let sources = self.fetch(&ns, cms, secrets).await?;
        let host_ip = self.shared.config.node_ip.to_string();
        let dir = self.pod_dir();
        let facts = self.facts(pod, pod_ip, &host_ip);
        self.volumes = volumes::setup(&dir, facts, &sources)?;
        Ok(())
    }

    /// The services whose variables a container gets: the pod namespace's
    /// (with `enableServiceLinks`, the default) and `default/kubernetes`,
    /// from the watched Services (the last known while the apiserver is
    /// out of reach).
    async fn services(&self, pod: &Pod) -> Vec<Service> {
        let (ns, _) = name_of(pod);
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        self.shared.objects.services.for_pod(&ns, links).await
    }

    /// The CRI config of a new container instance.
    async fn container_config(
        &mut self,
        pod: &Pod,
        c: &Container,
        sandbox: &Sandbox,
        restarts: i32,
        image: &str,
    ) -> Result<cri_api::ContainerConfig, KubeletError> {
        let (ns, name) = name_of(pod);
        let (cms, secrets) = env::referenced(c);
        let mut sources = self.fetch(&ns, cms, secrets).await?;
        sources.services = self.services(pod).await;
        let host_ip = self.shared.config.node_ip.to_string();
        let pod_ip = if sandbox.ip.is_empty() {
            host_ip.clone()
        } else {
            sandbox.ip.clone()
        };
        let envs = env::make(self.facts(pod, &pod_ip, &host_ip), c, &sources)?;
        let mut mounts = volumes::mounts(c, &self.volumes, &envs)?;

        let termination_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let mut annotations = HashMap::from([
            (labels::RESTART_COUNT.to_owned(), restarts.to_string()),
            (labels::CONTAINER_HASH.to_owned(), images::container_hash(c)),
            (
                labels::GRACE_PERIOD.to_owned(),
                grace_of(pod).as_secs().to_string(),
            ),
            (
                labels::TERMINATION_POLICY.to_owned(),
                c.termination_message_policy
                    .clone()
                    .unwrap_or_else(|| "File".into()),
            ),
        ]);
        if !termination_path.is_empty() {
            let file = runtime::termination_log_path(&self.pod_dir(), &c.name, restarts);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(KubeletError::io("create", parent))?;
            }
            std::fs::write(&file, b"").map_err(KubeletError::io("create", &file))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
                .map_err(KubeletError::io("chmod", &file))?;
            mounts.push(cri_api::Mount {
                container_path: termination_path,
                host_path: file.display().to_string(),
                readonly: false,
                ..Default::default()
            });
            annotations.insert(
                labels::TERMINATION_LOG.to_owned(),
                file.display().to_string(),
            );
        }
        let labels = HashMap::from([
            (labels::POD_NAME.to_owned(), name),
            (labels::POD_NAMESPACE.to_owned(), ns),
            (labels::POD_UID.to_owned(), self.uid.clone()),
            (labels::CONTAINER_NAME.to_owned(), c.name.clone()),
        ]);
        std::fs::create_dir_all(self.log_dir(pod).join(&c.name))
            .map_err(KubeletError::io("create", self.log_dir(pod).join(&c.name)))?;
        Ok(cri_api::ContainerConfig {
            metadata: Some(cri_api::ContainerMetadata {
                name: c.name.clone(),
                attempt: u32::try_from(restarts).unwrap_or(0),
            }),
            image: Some(cri_api::ImageSpec {
                image: image.to_owned(),
                user_specified_image: c.image.clone().unwrap_or_default(),
                ..Default::default()
            }),
            command: env::expand_all(c.command.as_deref().unwrap_or_default(), &envs),
            args: env::expand_all(c.args.as_deref().unwrap_or_default(), &envs),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs: envs
                .into_iter()
                .map(|(key, value)| cri_api::KeyValue { key, value })
                .collect(),
            mounts,
            labels,
            annotations,
            log_path: format!("{}/{restarts}.log", c.name),
            stdin: c.stdin == Some(true),
            stdin_once: c.stdin_once == Some(true),
            tty: c.tty == Some(true),
            linux: Some(cri_api::LinuxContainerConfig {
                resources: Some(resources::linux_resources(c)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Makes sure the probes of the running containers run, and warns once
    /// about probes that cannot be run.
    fn sync_probes(&mut self, pod: &Pod, observed: &Observed, sandbox: &Sandbox) {
        let running: HashSet<String> = observed.running().map(|c| c.id.clone()).collect();
        self.probes.retain(&running);
        let spec = pod.spec.clone().unwrap_or_default();
        let ip = if sandbox.ip.is_empty() {
            self.shared.config.node_ip.to_string()
        } else {
            sandbox.ip.clone()
        };
        let ctx = probes::Context {
            cri: self.shared.cri.clone(),
            recorder: self.shared.recorder.clone(),
            wake: self.wake.clone(),
            kubelet_started: self.shared.started,
        };
        for c in &spec.containers {
            let Some(rt) = observed
                .latest(&c.name)
                .filter(|l| l.state == State::Running)
            else {
                continue;
            };
            let (specs, skipped) = probes::container_probes(c);
            let regarding = pod_ref(pod, Some(container_path(&c.name, false)));
            for (kind, why) in skipped {
                if self.warned_probes.insert((c.name.clone(), kind)) {
                    self.shared.recorder.warning(
                        &regarding,
                        "ProbeWarning",
                        format!("{} probe is not run: {why}", kind.name()),
                    );
                }
            }
            self.probes.ensure(
                &ctx,
                &rt.id,
                &specs,
                ns_to_system(rt.started_at),
                &ip,
                &regarding,
            );
        }
    }

    /// Started and ready, by running container id, from the probes.
    fn health(&self, pod: &Pod, observed: &Observed) -> HashMap<String, Health> {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut out = HashMap::new();
        for c in &spec.containers {
            let Some(rt) = observed
                .latest(&c.name)
                .filter(|l| l.state == State::Running)
            else {
                continue;
            };
            let started = self.probes.result(&rt.id, Kind::Startup).unwrap_or(true);
            let ready = self.probes.result(&rt.id, Kind::Readiness).unwrap_or(true);
            out.insert(rt.id.clone(), Health { started, ready });
        }
        out
    }

    /// The pod with the newest status we know: ours if the watch has not
    /// caught up with our last write yet.
    fn current<'a>(&self, pod: &'a Pod) -> Cow<'a, Pod> {
        match (&self.believed, rv_of(pod)) {
            (Some((written, status)), Some(seen)) if seen < *written => {
                let mut p = pod.clone();
                p.status = Some(status.clone());
                Cow::Owned(p)
            }
            _ => Cow::Borrowed(pod),
        }
    }

    /// Computes the status and writes what changed; false if the
    /// apiserver did not take it. `deleting`: the pod is being deleted, so
    /// its phase is final.
    async fn write_status(&mut self, pod: &Pod, observed: &Observed, deleting: bool) -> bool {
        let current = self.current(pod).into_owned();
        let health = self.health(&current, observed);
        let host_ip = self.shared.config.node_ip.to_string();
        let mut terminal = self.terminal.clone();
        if deleting && terminal.is_none() {
            let ok = observed
                .containers
                .iter()
                .all(|c| c.state == State::Exited && c.exit_code == 0)
                && !observed.containers.is_empty();
            terminal = Some(Terminal {
                phase: if ok { phase::SUCCEEDED } else { phase::FAILED },
                reason: String::new(),
                message: String::new(),
            });
        }
        let new = status::compute(&Inputs {
            pod: &current,
            observed,
            waiting: &self.waiting,
            health: &health,
            host_ip: &host_ip,
            terminal: terminal.as_ref(),
            now: Timestamp::now(),
        });
        if status::repeats_last_write(self.written.as_ref(), rv_of(pod), &new) {
            return true;
        }
        let Some(patch) = status::patch(current.status.as_ref(), &new) else {
            return true;
        };
        let (ns, name) = name_of(pod);
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let write = api.patch_status(&name, &params, &patch);
        match tokio::time::timeout(API_TIMEOUT, write).await {
            Err(_) => {
                tracing::info!("the apiserver did not take the pod status in time; will retry");
                false
            }
            Ok(Ok(updated)) if updated.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                tracing::debug!(phase = ?new.phase, "status written");
                if let (Some(rv), Some(status)) = (rv_of(&updated), updated.status) {
                    self.written = Some((rv, new));
                    self.believed = Some((rv, status));
                }
                true
            }
            Ok(Ok(_)) => {
                tracing::info!("the pod was replaced by another of the same name; status not ours");
                true
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "cannot write the pod status; will retry");
                false
            }
        }
    }

    /// Kills every running container (with `grace`) and stops the ready
    /// sandboxes; returns whether anything was done.
    async fn stop_all(
        &mut self,
        pod: &Pod,
        observed: &Observed,
        grace: Duration,
    ) -> Result<bool, KubeletError> {
        self.probes.stop_all();
        let spec = pod.spec.clone().unwrap_or_default();
        let init_names: HashSet<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        let mut kills = Vec::new();
        for c in observed.running() {
            let init = init_names.contains(c.name.as_str());
            let message = format!("Stopping container {}", c.name);
            self.shared.recorder.normal(
                &pod_ref(pod, Some(container_path(&c.name, init))),
                "Killing",
                message,
            );
            let cri = self.shared.cri.clone();
            let id = c.id.clone();
            kills.push(async move { cri.stop_container(&id, grace).await });
        }
        let mut did = !kills.is_empty();
        for r in futures::future::join_all(kills).await {
            match r {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        for s in observed.sandboxes.iter().filter(|s| s.ready) {
            self.shared.cri.stop_pod_sandbox(&s.id).await?;
            did = true;
        }
        Ok(did)
    }

    /// The pod is being deleted (or is gone): stop everything within the
    /// grace period, confirm the deletion, clean up.
    async fn terminate(&mut self, pod: &Pod, gone: bool) -> Result<Action, KubeletError> {
        let cri = self.shared.cri.clone();
        let observed = runtime::observe(&cri, &self.uid).await?;
        let grace = grace_of(pod);
        if !observed.running().collect::<Vec<_>>().is_empty()
            || observed.sandboxes.iter().any(|s| s.ready)
        {
            tracing::info!(?grace, gone, "stopping the pod");
        }
        self.stop_all(pod, &observed, grace).await?;
        if !gone {
            let observed = runtime::observe(&cri, &self.uid).await?;
            self.write_status(pod, &observed, true).await;
            let (ns, name) = name_of(pod);
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => tracing::info!("deletion confirmed"),
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => {
                    return Err(KubeletError::api(format!(
                        "confirm the deletion of pod {ns}/{name}"
                    ))(e));
                }
            }
        }
        self.cleanup().await?;
        Ok(Action::Done)
    }

    /// Removes the pod's containers, sandboxes, volumes and logs.
    async fn cleanup(&mut self) -> Result<(), KubeletError> {
        self.probes.stop_all();
        let cri = self.shared.cri.clone();
        let observed = runtime::observe(&cri, &self.uid).await?;
        for c in &observed.containers {
            match cri.remove_container(&c.id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        for s in &observed.sandboxes {
            match cri.remove_pod_sandbox(&s.id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        self.shared.objects.release_all(&self.uid);
        remove_pod_files(&self.shared.config.data_dir, &self.uid);
        Ok(())
    }

    /// Removes dead container instances beyond the newest and
    /// [`KEEP_DEAD`] more per container, and stopped sandboxes left empty.
    async fn collect_garbage(&mut self, observed: &Observed) {
        let cri = &self.shared.cri;
        let names: HashSet<&str> = observed
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let mut removed = HashSet::new();
        for name in names {
            for c in observed.instances(name).into_iter().skip(1 + KEEP_DEAD) {
                if c.state == State::Exited {
                    match cri.remove_container(&c.id).await {
                        Ok(()) => {
                            removed.insert(c.id.clone());
                        }
                        Err(e) => {
                            tracing::debug!(error = %chain(&e), "cannot remove a dead container")
                        }
                    }
                }
            }
        }
        self.touched.extend(removed.iter().cloned());
        let current = observed.current_sandbox().map(|s| s.id.clone());
        for s in &observed.sandboxes {
            if Some(&s.id) == current.as_ref() || s.ready {
                continue;
            }
            let left = observed
                .containers
                .iter()
                .any(|c| c.sandbox_id == s.id && !removed.contains(&c.id));
            if !left && let Err(e) = cri.remove_pod_sandbox(&s.id).await {
                tracing::debug!(error = %chain(&e), "cannot remove an old sandbox");
            }
        }
    }
}

/// Whether the newest instance of every one of `containers` runs.
fn all_running(containers: &[Container], observed: &Observed) -> bool {
    containers.iter().all(|c| {
        observed
            .latest(&c.name)
            .is_some_and(|l| l.state == State::Running)
    })
}

/// Removes a pod's directory and logs.
pub fn remove_pod_files(data_dir: &std::path::Path, uid: &str) {
    let _ = std::fs::remove_dir_all(volumes::pod_dir(data_dir, uid));
    if let Ok(entries) = std::fs::read_dir(data_dir.join("logs/pods")) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .ends_with(&format!("_{uid}"))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    }
}
