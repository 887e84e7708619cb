//! Pod admission: whether the node can take one more pod (`OutOfpods`,
//! `OutOfcpu`, `OutOfmemory`, in the kubelet's words), against running
//! totals of what the admitted, still active pods request, so admitting a
//! pod costs the same with 1,000 pods on the node as with none.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::resources::{self, Allocatable, Requests};

/// The requests of the active pods (admitted, not finished, not being
/// deleted), by UID, and their sums.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    by_uid: HashMap<String, Requests>,
    total: Requests,
}

/// Whether a pod holds the node's resources: it has not finished and is
/// not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

impl Tally {
    /// Counts `pod` (once, however often it is added).
    pub fn add(&mut self, uid: &str, pod: &Pod) {
        if self.by_uid.contains_key(uid) {
            return;
        }
        let r = resources::pod_requests(pod);
        self.total.cpu_millis += r.cpu_millis;
        self.total.memory_bytes += r.memory_bytes;
        self.by_uid.insert(uid.to_owned(), r);
    }

    /// Stops counting the pod with `uid`, if it was counted.
    pub fn remove(&mut self, uid: &str) {
        if let Some(r) = self.by_uid.remove(uid) {
            self.total.cpu_millis -= r.cpu_millis;
            self.total.memory_bytes -= r.memory_bytes;
        }
    }

    /// Counts `pod` while it is active, and no longer once it is not.
    pub fn update(&mut self, uid: &str, pod: &Pod) {
        if is_active(pod) {
            self.add(uid, pod);
        } else {
            self.remove(uid);
        }
    }

    /// Whether a node offering `alloc` can take `pod` besides the counted
    /// ones: `Some((reason, message))` if not.
    pub fn admit(&self, alloc: Allocatable, pod: &Pod) -> Option<(String, String)> {
        let refuse = |resource: &str, requested: i64, used: i64, capacity: i64| {
            Some((
                format!("OutOf{resource}"),
                format!(
                    "Pod was rejected: Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
                ),
            ))
        };
        let count = i64::try_from(self.by_uid.len()).unwrap_or(i64::MAX);
        if count + 1 > alloc.pods {
            return refuse("pods", 1, count, alloc.pods);
        }
        let want = resources::pod_requests(pod);
        let Requests {
            cpu_millis: cpu,
            memory_bytes: memory,
        } = self.total;
        if want.cpu_millis > 0 && cpu + want.cpu_millis > alloc.cpu_millis {
            return refuse("cpu", want.cpu_millis, cpu, alloc.cpu_millis);
        }
        if want.memory_bytes > 0 && memory + want.memory_bytes > alloc.memory_bytes {
            return refuse("memory", want.memory_bytes, memory, alloc.memory_bytes);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        }))
        .unwrap()
    }

    const ALLOC: Allocatable = Allocatable {
        cpu_millis: 2000,
        memory_bytes: 1 << 30,
        pods: 2,
    };

    #[test]
    fn admission_counts_pods_cpu_and_memory() {
        let small = pod("500m", "100Mi");
        let mut tally = Tally::default();
        assert_eq!(tally.admit(ALLOC, &small), None);
        tally.add("a", &small);
        assert_eq!(tally.admit(ALLOC, &small), None);
        let (reason, message) = tally.admit(ALLOC, &pod("1600m", "1Mi")).unwrap();
        assert_eq!(reason, "OutOfcpu");
        assert!(
            message.ends_with("cpu, requested: 1600, used: 500, capacity: 2000"),
            "{message}"
        );
        let (reason, _) = tally.admit(ALLOC, &pod("1m", "1000Mi")).unwrap();
        assert_eq!(reason, "OutOfmemory");
        tally.add("b", &small);
        let (reason, message) = tally.admit(ALLOC, &small).unwrap();
        assert_eq!(reason, "OutOfpods");
        assert_eq!(
            message,
            "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
        );
    }

    #[test]
    fn running_totals_follow_pods_that_finish_or_go() {
        let small = pod("500m", "100Mi");
        let mut tally = Tally::default();
        tally.add("a", &small);
        tally.add("a", &small);
        tally.add("b", &small);
        assert_eq!(
            tally.total,
            Requests {
                cpu_millis: 1000,
                memory_bytes: 200 << 20
            },
            "a pod added twice counts once"
        );
        let mut done = small.clone();
        done.status =
            Some(serde_json::from_value(serde_json::json!({"phase": "Succeeded"})).unwrap());
        tally.update("a", &done);
        assert_eq!(tally.total.cpu_millis, 500);
        assert_eq!(
            tally.admit(ALLOC, &small),
            None,
            "a finished pod frees its slot"
        );
        let mut deleting = small.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
            ));
        tally.update("b", &deleting);
        tally.remove("nobody");
        assert_eq!(tally.total, Requests::default());
        assert!(tally.by_uid.is_empty());
    }
}
