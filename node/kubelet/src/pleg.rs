//! The pod lifecycle event generator (PLEG): tells each pod worker when
//! the runtime's state of its pod changed, as upstream's Evented PLEG.
//!
//! [`Pleg::run`] subscribes to the runtime's container events
//! (GetContainerEvents) and wakes a pod's worker on each event; it relists
//! the runtime every [`EVENTED_RELIST`] as a safety net. When the stream
//! cannot be opened, fails, ends or is aborted (the runtime dropped events
//! for it), it falls back to relisting every [`RELIST`] and subscribes
//! again (at once after an abort, with back-off while the runtime is
//! away), relisting once more as soon as it is back on events.
//!
//! A worker is woken only for a state it has not observed itself: it
//! records what it last observed ([`Waker::saw`]), each event or relist
//! records the runtime's latest state of the pod, and a wake whose state
//! the worker has seen meanwhile (its own create or start, reported while
//! it was still reconciling) is dropped ([`Waker::runtime_changed`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri_api;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::cri::{Cri, labels};
use crate::error::chain;
use crate::runtime::{self, Fingerprint};

/// How often the runtime is relisted while there is no event stream.
pub const RELIST: Duration = Duration::from_secs(1);
/// How often the runtime is relisted while events arrive (a safety net
/// and housekeeping's list).
pub const EVENTED_RELIST: Duration = Duration::from_secs(10);
/// The longest wait between two subscription attempts.
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(30);

/// The runtime's sandboxes and containers by pod UID, as one relist saw
/// them.
pub type Listed = HashMap<String, (Vec<cri_api::PodSandbox>, Vec<cri_api::Container>)>;

/// How a running worker is woken, and what it and the runtime last showed
/// of its pod.
#[derive(Debug, Default)]
pub struct Waker {
    /// Any other reason to look again (probes, objects).
    pub notify: Arc<Notify>,
    /// The runtime reported a state of the pod.
    runtime: Notify,
    marks: Mutex<Marks>,
}

#[derive(Debug, Default)]
struct Marks {
    /// What the worker last observed (`None`: nothing yet).
    seen: Option<Fingerprint>,
    /// What the runtime last reported (`None`: nothing yet).
    latest: Option<Fingerprint>,
}

impl Marks {
    /// Whether the runtime reported a state the worker has not seen.
    fn stale(&self) -> bool {
        match (&self.seen, &self.latest) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(seen), Some(latest)) => seen != latest,
        }
    }
}

impl Waker {
    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker observed this state of its pod.
    pub fn saw(&self, observed: Fingerprint) {
        self.marks().seen = Some(observed);
    }

    /// The runtime now holds `now` for the pod (empty: nothing); wakes
    /// the worker if it has not seen that.
    pub fn report(&self, now: Fingerprint) {
        let mut marks = self.marks();
        marks.latest = Some(now);
        if marks.stale() {
            self.runtime.notify_one();
        }
    }

    /// The runtime's latest state of the pod, as last reported.
    pub fn latest(&self) -> Option<Fingerprint> {
        self.marks().latest.clone()
    }

    /// Whether the runtime's latest state is one the worker has not seen.
    pub fn stale(&self) -> bool {
        self.marks().stale()
    }

    /// Resolves when the runtime reported a state the worker has not seen;
    /// reports of states it saw meanwhile are dropped.
    pub async fn runtime_changed(&self) {
        loop {
            self.runtime.notified().await;
            if self.stale() {
                return;
            }
        }
    }
}

/// The running workers, by pod UID.
pub type Registry = Arc<Mutex<HashMap<String, Arc<Waker>>>>;

/// Where the PLEG's state of the runtime comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Relisting every [`RELIST`] (no event stream).
    Relisting,
    /// On the runtime's event stream, relisting every [`EVENTED_RELIST`].
    Evented,
}

/// The fingerprint of the pod an event is about, and the pod's UID.
pub fn event_fingerprint(event: &cri_api::ContainerEventResponse) -> Option<(String, Fingerprint)> {
    let sandbox = event.pod_sandbox_status.as_ref()?;
    let uid = sandbox
        .labels
        .get(labels::POD_UID)
        .cloned()
        .or_else(|| sandbox.metadata.as_ref().map(|m| m.uid.clone()))
        .filter(|u| !u.is_empty())?;
    let deleted =
        event.container_event_type == cri_api::ContainerEventType::ContainerDeletedEvent as i32;
    let mut fp: Fingerprint = std::iter::once((sandbox.id.clone(), sandbox.state))
        .chain(
            event
                .containers_statuses
                .iter()
                .map(|c| (c.id.clone(), c.state + 10)),
        )
        .filter(|(id, _)| !(deleted && *id == event.container_id))
        .collect();
    fp.sort();
    Some((uid, fp))
}

/// The pod lifecycle event generator.
#[derive(Debug)]
pub struct Pleg {
    cri: Cri,
    registry: Registry,
    mode: watch::Sender<Mode>,
    relist: Duration,
    evented_relist: Duration,
}

impl Pleg {
    /// A PLEG over `cri` waking the workers in `registry`.
    pub fn new(cri: Cri, registry: Registry) -> Self {
        Pleg {
            cri,
            registry,
            mode: watch::Sender::new(Mode::Relisting),
            relist: RELIST,
            evented_relist: EVENTED_RELIST,
        }
    }

    /// Sets the relist periods without and with events (tests).
    pub fn with_periods(mut self, relist: Duration, evented_relist: Duration) -> Self {
        self.relist = relist;
        self.evented_relist = evented_relist;
        self
    }

    /// Follows the mode (events or relisting).
    pub fn mode(&self) -> watch::Receiver<Mode> {
        self.mode.subscribe()
    }

    fn wake(&self, uid: &str, now: Fingerprint) {
        let waker = self
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned();
        if let Some(w) = waker {
            w.report(now);
        }
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.send_if_modified(|m| {
            let changed = *m != mode;
            *m = mode;
            changed
        });
    }

    /// Runs until dropped; `after_relist` gets every successful relist.
    pub async fn run(self, mut after_relist: impl AsyncFnMut(Listed)) {
        let mut previous: HashMap<String, Fingerprint> = HashMap::new();
        let mut stream: Option<tonic::Streaming<cri_api::ContainerEventResponse>> = None;
        let mut subscribe_at = Instant::now();
        let mut subscribe_delay = self.relist;
        let mut subscribe_warned = false;
        let mut next_relist = Instant::now();
        let mut list_failing = false;
        loop {
            if stream.is_none() && Instant::now() >= subscribe_at {
                match self.cri.container_events().await {
                    Ok(s) => {
                        tracing::info!("on the runtime's container events");
                        stream = Some(s);
                        self.set_mode(Mode::Evented);
                        subscribe_delay = self.relist;
                        subscribe_warned = false;
                        // Catch up on what changed while off the stream.
                        next_relist = Instant::now();
                    }
                    Err(e) => {
                        if !subscribe_warned {
                            tracing::warn!(
                                error = %chain(&e),
                                "no container event stream: relisting every {:?}",
                                self.relist
                            );
                            subscribe_warned = true;
                        }
                        subscribe_at = Instant::now() + subscribe_delay;
                        subscribe_delay = (subscribe_delay * 2).min(RESUBSCRIBE_MAX);
                    }
                }
            }
            let event = async {
                match stream.as_mut() {
                    Some(s) => s.message().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = event => match event {
                    Ok(Some(e)) => {
                        if let Some((uid, fp)) = event_fingerprint(&e) {
                            self.wake(&uid, fp);
                        }
                    }
                    Ok(None) | Err(_) => {
                        let aborted = matches!(&event, Err(s) if s.code() == tonic::Code::Aborted);
                        match &event {
                            Err(s) => tracing::warn!(code = ?s.code(), message = %s.message(), "the container event stream failed: relisting"),
                            _ => tracing::warn!("the runtime ended the container event stream: relisting"),
                        }
                        stream = None;
                        self.set_mode(Mode::Relisting);
                        next_relist = Instant::now();
                        // Fallen behind: events again after one relist.
                        // Ended or failed: the runtime may be going away.
                        subscribe_at = Instant::now() + if aborted { Duration::ZERO } else { self.relist };
                    }
                },
                () = tokio::time::sleep_until(next_relist) => {
                    let period = if stream.is_some() { self.evented_relist } else { self.relist };
                    next_relist = Instant::now() + period;
                    match runtime::by_pod(&self.cri).await {
                        Ok(listed) => {
                            if list_failing {
                                tracing::info!("the container runtime answers again");
                                list_failing = false;
                            }
                            self.relisted(&mut previous, &listed);
                            after_relist(listed).await;
                        }
                        Err(e) => {
                            if !list_failing {
                                tracing::warn!(error = %chain(&e), "cannot list the runtime's containers");
                                list_failing = true;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Wakes the workers of pods whose sandboxes or containers changed
    /// since the previous relist.
    fn relisted(&self, previous: &mut HashMap<String, Fingerprint>, listed: &Listed) {
        let now: HashMap<String, Fingerprint> = listed
            .iter()
            .map(|(uid, (sandboxes, containers))| {
                (
                    uid.clone(),
                    runtime::fingerprint_of_lists(sandboxes, containers),
                )
            })
            .collect();
        for (uid, fp) in &now {
            if previous.get(uid) != Some(fp) {
                self.wake(uid, fp.clone());
            }
        }
        for uid in previous.keys() {
            if !now.contains_key(uid) {
                self.wake(uid, Vec::new());
            }
        }
        *previous = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(states: &[(&str, i32)]) -> Fingerprint {
        states.iter().map(|(id, s)| ((*id).into(), *s)).collect()
    }

    #[tokio::test]
    async fn a_worker_is_woken_only_for_a_state_it_has_not_seen() {
        let running = fp(&[("c1", 11), ("s1", 0)]);
        let exited = fp(&[("c1", 12), ("s1", 0)]);
        let w = Waker::default();
        assert!(w.stale(), "a worker that saw nothing yet");
        w.saw(running.clone());
        assert!(!w.stale(), "nothing reported yet");
        w.report(running.clone());
        assert!(!w.stale(), "what it made itself");
        w.report(exited.clone());
        assert!(w.stale(), "the container exited since");
        tokio::time::timeout(Duration::from_secs(5), w.runtime_changed())
            .await
            .expect("woken for the exit");
        w.report(Vec::new());
        assert!(w.stale(), "everything is gone from the runtime");
        w.saw(Vec::new());
        assert!(!w.stale());
    }

    #[tokio::test]
    async fn a_report_the_worker_caught_up_with_does_not_wake_it() {
        let created = fp(&[("c1", 10), ("s1", 0)]);
        let running = fp(&[("c1", 11), ("s1", 0)]);
        let w = Waker::default();
        w.saw(fp(&[("s1", 0)]));
        // Its own create and start, reported while it reconciles...
        w.report(created);
        w.report(running.clone());
        // ...which ends having observed the container running.
        w.saw(running);
        let woken = tokio::time::timeout(Duration::from_millis(50), w.runtime_changed()).await;
        assert!(woken.is_err(), "woken for a state it had seen");
    }

    #[test]
    fn an_event_names_its_pod_and_the_states_after_it() {
        let sandbox = cri_api::PodSandboxStatus {
            id: "s1".into(),
            state: cri_api::PodSandboxState::SandboxReady as i32,
            labels: HashMap::from([(labels::POD_UID.to_owned(), "u1".to_owned())]),
            ..Default::default()
        };
        let status = |id: &str, state: cri_api::ContainerState| cri_api::ContainerStatus {
            id: id.into(),
            state: state as i32,
            ..Default::default()
        };
        let stopped = cri_api::ContainerEventResponse {
            container_id: "c1".into(),
            container_event_type: cri_api::ContainerEventType::ContainerStoppedEvent as i32,
            pod_sandbox_status: Some(sandbox.clone()),
            containers_statuses: vec![
                status("c1", cri_api::ContainerState::ContainerExited),
                status("c0", cri_api::ContainerState::ContainerExited),
            ],
            ..Default::default()
        };
        let (uid, got) = event_fingerprint(&stopped).unwrap();
        assert_eq!(uid, "u1");
        assert_eq!(got, fp(&[("c0", 12), ("c1", 12), ("s1", 0)]));
        let sandbox_deleted = cri_api::ContainerEventResponse {
            container_id: "s1".into(),
            container_event_type: cri_api::ContainerEventType::ContainerDeletedEvent as i32,
            pod_sandbox_status: Some(sandbox),
            ..Default::default()
        };
        assert_eq!(event_fingerprint(&sandbox_deleted).unwrap().1, Vec::new());
        let unlabelled = cri_api::ContainerEventResponse::default();
        assert!(event_fingerprint(&unlabelled).is_none());
    }
}
