//! Events (core v1), recorded as the kubelet records them: source
//! `kubelet` on the node, reason and message in the kubelet's words, and a
//! repeat of the same event on the same object counted on the first one
//! (`count`, `lastTimestamp`) instead of written again.
//!
//! Recording never waits on the apiserver: events go through a bounded
//! queue to one sender task, which writes up to [`IN_FLIGHT`] at once (one
//! at a time per distinct event, so its count only grows), and are
//! dropped (with a log line) when the queue is full or the apiserver does
//! not take them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Events waiting to be sent; more are dropped.
const QUEUE: usize = 4096;
/// Event writes in flight at once.
const IN_FLIGHT: usize = 16;
/// Distinct events remembered for counting repeats.
const REMEMBERED: usize = 4096;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Record {
    regarding: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// Records events; cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
}

impl Recorder {
    /// Starts the sender task for `node`.
    pub fn spawn(client: kube::Client, node: String) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let span = tracing::info_span!("events");
        tokio::spawn(tracing::Instrument::instrument(
            send(client, node, rx),
            span,
        ));
        Recorder { tx }
    }

    /// Records an event about `regarding`.
    pub fn record(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let record = Record {
            regarding: regarding.clone(),
            type_,
            reason: reason.to_owned(),
            message: message.into(),
        };
        tracing::debug!(reason, message = %record.message, object = ?regarding.name, "event");
        if self.tx.try_send(record).is_err() {
            tracing::debug!(reason, "event queue full or closed: event dropped");
        }
    }

    pub fn normal(&self, regarding: &ObjectReference, reason: &str, message: impl Into<String>) {
        self.record(regarding, EventType::Normal, reason, message);
    }

    pub fn warning(&self, regarding: &ObjectReference, reason: &str, message: impl Into<String>) {
        self.record(regarding, EventType::Warning, reason, message);
    }
}

/// A reference to a pod, or (with a field path such as
/// `spec.containers{web}`) to one of its containers.
pub fn pod_ref(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

/// The field path of a container: `spec.containers{NAME}` or
/// `spec.initContainers{NAME}`.
pub fn container_path(name: &str, init: bool) -> String {
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

/// A reference to a node (the kubelet names the node's uid after it).
pub fn node_ref(name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(name.to_owned()),
        uid: Some(name.to_owned()),
        ..Default::default()
    }
}

type Key = (
    Option<String>,
    Option<String>,
    Option<String>,
    EventType,
    String,
    String,
);

/// An event written (or being written), for counting its repeats.
struct Seen {
    event: Event,
    /// Repeats so far, the first one included.
    count: i32,
    /// A write of it is in flight: a repeat only counts, and is written
    /// when that write is done (one write per event at a time, in order).
    busy: bool,
    /// Repeats not yet written.
    dirty: bool,
}

/// What a write did.
enum Write {
    Created,
    Counted,
    Failed(kube::Error),
}

/// Creates `event`.
async fn create(client: kube::Client, event: Event) -> Write {
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client, &namespace);
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => Write::Created,
        Err(e) => Write::Failed(e),
    }
}

/// Sets the count and last time of an event already written.
async fn count(client: kube::Client, event: &Event, count: i32) -> Write {
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    let name = event.metadata.name.clone().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client, &namespace);
    let patch = serde_json::json!({"count": count, "lastTimestamp": event.last_timestamp});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Write::Counted,
        Err(e) => Write::Failed(e),
    }
}

/// The event a record makes, named after its object and the time.
fn event_of(r: Record, node: &str, now: Time) -> Event {
    let namespace = r
        .regarding
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let base = r.regarding.name.clone().unwrap_or_else(|| "kubelet".into());
    let nanos = now.0.as_nanosecond();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{base}.{nanos:x}")),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: r.regarding,
        reason: Some(r.reason),
        message: Some(r.message),
        type_: Some(r.type_.as_str().into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.to_owned()),
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.to_owned()),
        ..Default::default()
    }
}

/// A write to make.
#[derive(Debug)]
enum Op {
    /// Create this event.
    Create(Key, Event),
    /// Set the count of this event (written already) to this.
    Count(Key, Event, i32),
}

/// Which records become new events and which count on one written, with
/// one write in flight per event (its repeats meanwhile make one count
/// write after it).
#[derive(Default)]
struct Correlator {
    seen: HashMap<Key, Seen>,
}

impl Correlator {
    /// The write a record needs now, if any.
    fn record(&mut self, r: Record, node: &str, now: Time) -> Option<Op> {
        let key: Key = (
            r.regarding.uid.clone(),
            r.regarding.name.clone(),
            r.regarding.field_path.clone(),
            r.type_,
            r.reason.clone(),
            r.message.clone(),
        );
        if let Some(s) = self.seen.get_mut(&key) {
            s.count += 1;
            s.event.last_timestamp = Some(now);
            if s.busy {
                s.dirty = true;
                return None;
            }
            s.busy = true;
            return Some(Op::Count(key, s.event.clone(), s.count));
        }
        if self.seen.len() >= REMEMBERED {
            self.seen.retain(|_, s| s.busy);
        }
        let event = event_of(r, node, now);
        self.seen.insert(
            key.clone(),
            Seen {
                event: event.clone(),
                count: 1,
                busy: true,
                dirty: false,
            },
        );
        Some(Op::Create(key, event))
    }

    /// A write of the event under `key` is done; the write it needs next.
    fn done(&mut self, key: Key, write: Write, now: Time) -> Option<Op> {
        let s = self.seen.get_mut(&key)?;
        s.busy = false;
        match write {
            Write::Created | Write::Counted => {
                if !s.dirty {
                    return None;
                }
                s.dirty = false;
                s.busy = true;
                Some(Op::Count(key, s.event.clone(), s.count))
            }
            Write::Failed(e) if s.count == 1 => {
                tracing::debug!(error = %e, "cannot record an event; dropped");
                self.seen.remove(&key);
                None
            }
            Write::Failed(e) => {
                // Not created, or counting failed (the event expired?):
                // record it anew.
                tracing::debug!(error = %e, "cannot count a repeated event; recording it anew");
                let base = s
                    .event
                    .involved_object
                    .name
                    .clone()
                    .unwrap_or_else(|| "kubelet".into());
                s.event.metadata.name = Some(format!("{base}.{:x}", now.0.as_nanosecond()));
                s.event.count = Some(1);
                s.event.first_timestamp = Some(now.clone());
                s.event.last_timestamp = Some(now);
                s.count = 1;
                s.dirty = false;
                s.busy = true;
                Some(Op::Create(key, s.event.clone()))
            }
        }
    }
}

/// Writes the records, up to [`IN_FLIGHT`] at once.
async fn send(client: kube::Client, node: String, mut rx: mpsc::Receiver<Record>) {
    let mut correlator = Correlator::default();
    let mut writes: JoinSet<(Key, Write)> = JoinSet::new();
    let spawn = |writes: &mut JoinSet<(Key, Write)>, op: Op| {
        let client = client.clone();
        match op {
            Op::Create(key, event) => {
                writes.spawn(async move { (key, create(client, event).await) })
            }
            Op::Count(key, event, n) => {
                writes.spawn(async move { (key, count(client, &event, n).await) })
            }
        };
    };
    let mut open = true;
    while open || !writes.is_empty() {
        tokio::select! {
            r = rx.recv(), if open && writes.len() < IN_FLIGHT => match r {
                Some(r) => {
                    if let Some(op) = correlator.record(r, &node, Time(Timestamp::now())) {
                        spawn(&mut writes, op);
                    }
                }
                None => open = false,
            },
            Some(done) = writes.join_next(), if !writes.is_empty() => {
                if let Ok((key, write)) = done
                    && let Some(op) = correlator.done(key, write, Time(Timestamp::now()))
                {
                    spawn(&mut writes, op);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reason: &str) -> Record {
        Record {
            regarding: ObjectReference {
                kind: Some("Pod".into()),
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            type_: EventType::Normal,
            reason: reason.into(),
            message: format!("{reason} it"),
        }
    }

    fn now() -> Time {
        Time(Timestamp::now())
    }

    fn failed() -> Write {
        Write::Failed(kube::Error::LinesCodecMaxLineLengthExceeded)
    }

    #[test]
    fn distinct_events_are_created_at_once() {
        let mut c = Correlator::default();
        for reason in ["Pulled", "Created", "Started"] {
            match c.record(record(reason), "n1", now()) {
                Some(Op::Create(_, e)) => {
                    assert_eq!(e.reason.as_deref(), Some(reason));
                    assert_eq!(e.count, Some(1));
                    assert_eq!(e.source.unwrap().host.as_deref(), Some("n1"));
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
    }

    #[test]
    fn repeats_during_a_write_make_one_count_after_it() {
        let mut c = Correlator::default();
        let Some(Op::Create(key, _)) = c.record(record("BackOff"), "n1", now()) else {
            panic!("not created")
        };
        assert!(c.record(record("BackOff"), "n1", now()).is_none());
        assert!(c.record(record("BackOff"), "n1", now()).is_none());
        match c.done(key.clone(), Write::Created, now()) {
            Some(Op::Count(_, _, 3)) => {}
            other => panic!("{other:?}"),
        }
        assert!(c.done(key.clone(), Write::Counted, now()).is_none());
        match c.record(record("BackOff"), "n1", now()) {
            Some(Op::Count(_, _, 4)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_create_is_dropped_and_a_failed_count_recorded_anew() {
        let mut c = Correlator::default();
        let Some(Op::Create(key, _)) = c.record(record("Failed"), "n1", now()) else {
            panic!("not created")
        };
        assert!(c.done(key.clone(), failed(), now()).is_none());
        let Some(Op::Create(key, first)) = c.record(record("Failed"), "n1", now()) else {
            panic!("forgotten after the failure: created again")
        };
        assert!(c.done(key.clone(), Write::Created, now()).is_none());
        let Some(Op::Count(key, _, 2)) = c.record(record("Failed"), "n1", now()) else {
            panic!("not counted")
        };
        match c.done(key, failed(), now()) {
            Some(Op::Create(_, e)) => {
                assert_eq!(e.count, Some(1));
                assert_ne!(e.metadata.name, first.metadata.name);
            }
            other => panic!("{other:?}"),
        }
    }
}
