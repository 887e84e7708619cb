//! Events about pods (`core/v1`, as `kubectl describe` shows them):
//! `Scheduled` and `FailedScheduling`, from `default-scheduler`. Recording
//! never waits: events queue for one writer, and when a queue is full they
//! are dropped, as client-go's broadcaster drops them. Warnings go first.
//! `Normal` events (one `Scheduled` per pod) yield to the scheduling they
//! report: while the scheduler is busy (bindings in flight) they are written
//! at a trickle ([`BUSY_RATE`] a second), and at full speed once it is idle,
//! so a burst of pods spends the apiserver on bindings first and gets its
//! events right after; each event keeps the time it was recorded. A repeated
//! warning for the same pod and message bumps the count of the existing event.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Warnings waiting for the writer, at most (client-go's queue length).
const WARNINGS_QUEUED: usize = 1000;
/// `Normal` events waiting for the writer, at most: a burst of 16,384 pods
/// gets all its `Scheduled` events.
const NORMAL_QUEUED: usize = 16_384;
/// `Normal` events written per second while the scheduler is busy, and in a burst.
pub const BUSY_RATE: f64 = 50.0;
const BUSY_BURST: f64 = 100.0;
/// How often a writer held back by a busy scheduler looks again.
const RECHECK: Duration = Duration::from_millis(50);
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
    /// When it happened.
    pub at: Timestamp,
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
            at: Timestamp::now(),
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
            at: Timestamp::now(),
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

/// Whether the scheduler is busy: `Normal` events wait while it is.
pub type Busy = Arc<dyn Fn() -> bool + Send + Sync>;

/// Hands events to the writer task.
#[derive(Debug, Clone)]
pub struct Recorder {
    warnings: mpsc::Sender<Record>,
    normal: mpsc::Sender<Record>,
}

impl Recorder {
    /// A recorder and its writer; run the writer (it ends when every
    /// recorder is dropped).
    pub fn new(
        client: kube::Client,
        component: &str,
        instance: &str,
        busy: Busy,
    ) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let (warnings, warnings_rx) = mpsc::channel(WARNINGS_QUEUED);
        let (normal, normal_rx) = mpsc::channel(NORMAL_QUEUED);
        let writer = Writer {
            client,
            component: component.to_string(),
            instance: instance.to_string(),
            seen: HashMap::new(),
        };
        let pace = Pace {
            busy,
            bucket: Bucket::full(Instant::now()),
        };
        (
            Recorder { warnings, normal },
            writer.run(warnings_rx, normal_rx, pace),
        )
    }

    /// Queues an event; drops it when the writer is too far behind.
    pub fn record(&self, record: Record) {
        let queue = if record.warning {
            &self.warnings
        } else {
            &self.normal
        };
        if let Err(e) = queue.try_send(record) {
            tracing::debug!(
                reason = e.into_inner().reason,
                "event queue full, event dropped"
            );
        }
    }
}

/// A token bucket: [`BUSY_RATE`] a second, [`BUSY_BURST`] at once.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(now: Instant) -> Bucket {
        Bucket {
            tokens: BUSY_BURST,
            last: now,
        }
    }

    /// Takes a token, or says how long until there is one.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * BUSY_RATE;
        self.tokens = (self.tokens + refill).min(BUSY_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / BUSY_RATE))
        }
    }
}

/// When the next `Normal` event may be written.
struct Pace {
    busy: Busy,
    bucket: Bucket,
}

impl Pace {
    /// Returns at once while the scheduler is idle; while it is busy, when
    /// the bucket has a token.
    async fn turn(&mut self) {
        loop {
            if !(self.busy)() {
                return;
            }
            match self.bucket.take(Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.min(RECHECK)).await,
            }
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
    async fn run(
        mut self,
        mut warnings: mpsc::Receiver<Record>,
        mut normal: mpsc::Receiver<Record>,
        mut pace: Pace,
    ) {
        loop {
            let record = tokio::select! {
                biased;
                Some(r) = warnings.recv() => r,
                Some(r) = async {
                    pace.turn().await;
                    normal.recv().await
                } => r,
                else => return,
            };
            if let Err(e) = self.write(record).await {
                tracing::debug!(error = %e, "cannot write an event");
            }
        }
    }

    async fn write(&mut self, r: Record) -> Result<(), kube::Error> {
        let namespace = r.pod.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(r.at);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::full(start);
        let burst = (0..1000).filter(|_| bucket.take(start).is_ok()).count();
        assert_eq!(burst, BUSY_BURST as usize);
        assert_eq!(
            bucket.take(start),
            Err(Duration::from_secs_f64(1.0 / BUSY_RATE))
        );
        let later = start + Duration::from_secs(1);
        let refilled = (0..1000).filter(|_| bucket.take(later).is_ok()).count();
        assert_eq!(refilled, BUSY_RATE as usize);
        let much_later = later + Duration::from_secs(3600);
        let capped = (0..1000)
            .filter(|_| bucket.take(much_later).is_ok())
            .count();
        assert_eq!(capped, BUSY_BURST as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn normal_events_trickle_while_busy_and_flow_when_idle() {
        let busy = Arc::new(AtomicBool::new(true));
        let mut pace = Pace {
            busy: {
                let busy = busy.clone();
                Arc::new(move || busy.load(Ordering::Relaxed))
            },
            bucket: Bucket::full(Instant::now()),
        };
        // Busy: the burst at once, then BUSY_RATE a second.
        let start = Instant::now();
        for _ in 0..(BUSY_BURST + BUSY_RATE) as usize {
            pace.turn().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(980) && took <= Duration::from_millis(1100),
            "{took:?}"
        );
        // Idle: no waiting, however many.
        busy.store(false, Ordering::Relaxed);
        let start = Instant::now();
        for _ in 0..10_000 {
            pace.turn().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
