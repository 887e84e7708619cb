//! Events about pods (`core/v1`, as `kubectl describe` shows them):
//! `Scheduled` and `FailedScheduling`, from `default-scheduler`. Recording
//! never waits: events queue for one writer, and when the queue is full they
//! are dropped, as client-go's broadcaster drops them. A repeated warning
//! for the same pod and message bumps the count of the existing event.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Events waiting for the writer, at most.
const QUEUE: usize = 1000;
/// Warnings remembered for counting repeats, at most.
const REMEMBERED: usize = 4096;

/// One event to write.
#[derive(Debug, Clone)]
pub struct Record {
    pub pod: ObjectReference,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

impl Record {
    /// `FailedScheduling` with kube-scheduler's message.
    pub fn failed_scheduling(pod: &Pod, message: String) -> Record {
        Record {
            pod: reference(pod),
            warning: true,
            reason: "FailedScheduling",
            action: "Scheduling",
            message,
        }
    }

    /// `Scheduled`: `Successfully assigned NS/NAME to NODE`.
    pub fn scheduled(pod: &Pod, node: &str) -> Record {
        let r = reference(pod);
        let message = format!(
            "Successfully assigned {}/{} to {node}",
            r.namespace.as_deref().unwrap_or_default(),
            r.name.as_deref().unwrap_or_default()
        );
        Record {
            pod: r,
            warning: false,
            reason: "Scheduled",
            action: "Binding",
            message,
        }
    }
}

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Hands events to the writer task.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
}

impl Recorder {
    /// A recorder and its writer; run the writer (it ends when every
    /// recorder is dropped).
    pub fn new(
        client: kube::Client,
        component: &str,
        instance: &str,
    ) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            client,
            component: component.to_string(),
            instance: instance.to_string(),
            seen: HashMap::new(),
        };
        (Recorder { tx }, writer.run(rx))
    }

    /// Queues an event; drops it when the writer is too far behind.
    pub fn record(&self, record: Record) {
        if let Err(e) = self.tx.try_send(record) {
            tracing::debug!(
                reason = e.into_inner().reason,
                "event queue full, event dropped"
            );
        }
    }
}

struct Writer {
    client: kube::Client,
    component: String,
    instance: String,
    /// (pod uid, reason, message) -> (event name, count).
    seen: HashMap<(String, &'static str, String), (String, i32)>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Record>) {
        while let Some(record) = rx.recv().await {
            if let Err(e) = self.write(record).await {
                tracing::debug!(error = %e, "cannot write an event");
            }
        }
    }

    async fn write(&mut self, r: Record) -> Result<(), kube::Error> {
        let namespace = r.pod.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(Timestamp::now());
        let key = (
            r.pod.uid.clone().unwrap_or_default(),
            r.reason,
            r.message.clone(),
        );
        if r.warning
            && let Some((name, count)) = self.seen.get_mut(&key)
        {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": now});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            r.pod.name.as_deref().unwrap_or("pod"),
            now.0.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: r.pod,
            reason: Some(r.reason.into()),
            message: Some(r.message),
            type_: Some(if r.warning { "Warning" } else { "Normal" }.into()),
            action: Some(r.action.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        if r.warning {
            if self.seen.len() >= REMEMBERED {
                self.seen.clear();
            }
            self.seen.insert(key, (name, 1));
        }
        Ok(())
    }
}
