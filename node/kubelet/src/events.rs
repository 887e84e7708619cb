//! Events (core v1), recorded as the kubelet records them: source
//! `kubelet` on the node, reason and message in the kubelet's words, and a
//! repeat of the same event on the same object counted on the first one
//! (`count`, `lastTimestamp`) instead of written again.
//!
//! Recording never waits on the apiserver: events go through a bounded
//! queue to one sender task, and are dropped (with a log line) when the
//! queue is full or the apiserver does not take them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

/// Events waiting to be sent; more are dropped.
const QUEUE: usize = 1024;
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

struct Seen {
    namespace: String,
    name: String,
    count: i32,
}

async fn send(client: kube::Client, node: String, mut rx: mpsc::Receiver<Record>) {
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    while let Some(r) = rx.recv().await {
        let key: Key = (
            r.regarding.uid.clone(),
            r.regarding.name.clone(),
            r.regarding.field_path.clone(),
            r.type_,
            r.reason.clone(),
            r.message.clone(),
        );
        let now = Time(Timestamp::now());
        if let Some(s) = seen.get_mut(&key) {
            let api: Api<Event> = Api::namespaced(client.clone(), &s.namespace);
            let patch = serde_json::json!({"count": s.count + 1, "lastTimestamp": now});
            match api
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    s.count += 1;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot count a repeated event; recording it anew");
                    seen.remove(&key);
                }
            }
        }
        let namespace = r
            .regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let base = r.regarding.name.clone().unwrap_or_else(|| "kubelet".into());
        let nanos = now.0.as_nanosecond();
        let name = format!("{base}.{nanos:x}");
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: r.regarding,
            reason: Some(r.reason),
            message: Some(r.message),
            type_: Some(r.type_.as_str().into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() >= REMEMBERED {
                    seen.clear();
                }
                seen.insert(
                    key,
                    Seen {
                        namespace,
                        name,
                        count: 1,
                    },
                );
            }
            Err(e) => tracing::debug!(error = %e, "cannot record an event; dropped"),
        }
    }
}
