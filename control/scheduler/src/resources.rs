//! What a pod asks for and what a node offers: cpu (millicores), memory and
//! ephemeral storage (bytes) and scalar resources by name, computed as
//! Kubernetes does (`component-helpers/resource.PodRequests`: init
//! containers, restartable sidecars, pod overhead, pod-level requests).

use crate::quantity;
use k8s_openapi::api::core::v1::{Container, Node, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The cpu a container without a cpu request counts as when scoring (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 << 20;

/// An amount of each resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Every other resource (hugepages, extended resources such as
    /// `example.com/gpu`), by name, sorted.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a resource list; quantities that do not parse count as zero.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, q: &str) {
        match name {
            "cpu" => self.milli_cpu = quantity::milli_value(q).unwrap_or(0),
            "memory" => self.memory = quantity::value(q).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = quantity::value(q).unwrap_or(0),
            // `pods` is a node's capacity, not a request.
            "pods" => {}
            other => self.set_scalar(other, quantity::value(q).unwrap_or(0)),
        }
    }

    /// The amount of a scalar resource (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.scalar[i].1)
    }

    fn set_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = v,
            Err(i) => self.scalar.insert(i, (name.to_string(), v)),
        }
    }

    fn combine(&mut self, other: &Resources, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let mine = self.scalar(name);
            self.set_scalar(name, f(mine, *v));
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_add);
    }

    pub fn sub(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_sub);
    }

    pub fn max_with(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }
}

/// A container's requests; a resource with a limit and no request
/// requests its limit (as the apiserver's defaulting does).
fn container_requests(c: &Container) -> Resources {
    let Some(res) = &c.resources else {
        return Resources::default();
    };
    let mut r = Resources::default();
    if let Some(limits) = &res.limits {
        for (name, q) in limits {
            r.set(name, &q.0);
        }
    }
    if let Some(requests) = &res.requests {
        for (name, q) in requests {
            r.set(name, &q.0);
        }
    }
    r
}

/// As [`container_requests`], with unset cpu and memory counted at the
/// scoring defaults (an explicit zero stays zero).
fn container_non_zero(c: &Container) -> Resources {
    let mut r = container_requests(c);
    let has = |name: &str| {
        c.resources.as_ref().is_some_and(|res| {
            res.requests.as_ref().is_some_and(|m| m.contains_key(name))
                || res.limits.as_ref().is_some_and(|m| m.contains_key(name))
        })
    };
    if !has("cpu") {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if !has("memory") {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

/// The Kubernetes sum: regular containers add up; an init container runs
/// alone, beside the restartable (sidecar) init containers started before
/// it; sidecars also run beside the regular containers.
fn combine_containers(spec: &PodSpec, per: impl Fn(&Container) -> Resources) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&per(c));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut reqs = per(c);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&reqs);
            sidecars.add(&reqs);
            reqs = sidecars.clone();
        } else {
            reqs.add(&sidecars);
        }
        init_peak.max_with(&reqs);
    }
    total.max_with(&init_peak);
    total
}

/// Pod-level requests (`spec.resources`) replace the containers' sum for
/// the resources they name (cpu and memory).
fn apply_pod_level(spec: &PodSpec, r: &mut Resources) {
    let Some(requests) = spec.resources.as_ref().and_then(|x| x.requests.as_ref()) else {
        return;
    };
    for name in ["cpu", "memory"] {
        if let Some(q) = requests.get(name) {
            r.set(name, &q.0);
        }
    }
}

/// What a pod requests on its node, and the same with the scoring
/// defaults for unset cpu and memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
}

/// A pod's requests. `overhead` is the pod's `spec.overhead`, or its
/// RuntimeClass's `overhead.podFixed` when the pod has none.
pub fn pod_requests(
    spec: &PodSpec,
    runtime_class_overhead: Option<&BTreeMap<String, Quantity>>,
) -> PodRequests {
    let mut requests = combine_containers(spec, container_requests);
    let mut non_zero = combine_containers(spec, container_non_zero);
    apply_pod_level(spec, &mut requests);
    apply_pod_level(spec, &mut non_zero);
    if let Some(overhead) = spec.overhead.as_ref().or(runtime_class_overhead) {
        let o = Resources::from_list(overhead);
        requests.add(&o);
        non_zero.add(&o);
    }
    PodRequests {
        requests,
        non_zero_milli_cpu: non_zero.milli_cpu,
        non_zero_memory: non_zero.memory,
    }
}

/// What a node offers pods: `status.allocatable` (else `capacity`), and how
/// many pods it takes.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref())
        .filter(|m| !m.is_empty())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    let Some(list) = list else {
        return (Resources::default(), 0);
    };
    let pods = list
        .get("pods")
        .and_then(|q| quantity::value(&q.0))
        .unwrap_or(0);
    (Resources::from_list(list), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_requests_follow_kubernetes() {
        let cases = [
            (
                "no requests: zero, scored at the defaults",
                json!({"containers": [{"name": "a"}]}),
                (0, 0, DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST),
            ),
            (
                "containers add up",
                json!({"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "1Mi"}}}]}),
                (350, 17 << 20, 350, 17 << 20),
            ),
            (
                "a limit without a request is the request",
                json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
                (1000, 1 << 30, 1000, 1 << 30),
            ),
            (
                "an explicit zero is not defaulted when scoring",
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "0"}}}]}),
                (0, 0, 0, DEFAULT_MEMORY_REQUEST),
            ),
            (
                "the largest init container wins over a smaller sum",
                json!({"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}}],
                       "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "20Mi"}}}]}),
                (2000, 20 << 20, 2000, 20 << 20),
            ),
            (
                "sidecars run beside later init containers and the regular ones",
                json!({"initContainers": [
                        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m", "memory": "8Mi"}}},
                        {"name": "init", "resources": {"requests": {"cpu": "1", "memory": "4Mi"}}}],
                       "containers": [{"name": "a", "resources": {"requests": {"cpu": "300m", "memory": "8Mi"}}}]}),
                // init phase: 1000 + 200 = 1200m, 12Mi; running: 300 + 200 = 500m, 16Mi
                (1200, 16 << 20, 1200, 16 << 20),
            ),
            (
                "overhead is added",
                json!({"overhead": {"cpu": "50m", "memory": "1Mi"},
                       "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}}]}),
                (150, 2 << 20, 150, 2 << 20),
            ),
            (
                "pod-level requests replace the containers' sum",
                json!({"resources": {"requests": {"cpu": "2"}},
                       "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}}]}),
                (2000, 1 << 20, 2000, 1 << 20),
            ),
        ];
        for (what, s, (cpu, mem, nz_cpu, nz_mem)) in cases {
            let r = pod_requests(&spec(s), None);
            assert_eq!(
                (
                    r.requests.milli_cpu,
                    r.requests.memory,
                    r.non_zero_milli_cpu,
                    r.non_zero_memory
                ),
                (cpu, mem, nz_cpu, nz_mem),
                "{what}"
            );
        }
    }

    #[test]
    fn runtime_class_overhead_applies_when_the_pod_has_none() {
        let overhead: BTreeMap<String, Quantity> =
            [("cpu".to_string(), Quantity("25m".into()))].into();
        let s = spec(
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}),
        );
        assert_eq!(pod_requests(&s, Some(&overhead)).requests.milli_cpu, 125);
        let own = spec(
            json!({"overhead": {"cpu": "5m"}, "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}),
        );
        assert_eq!(pod_requests(&own, Some(&overhead)).requests.milli_cpu, 105);
    }

    #[test]
    fn scalar_resources() {
        let s = spec(json!({"containers": [
            {"name": "a", "resources": {"requests": {"example.com/gpu": "1", "hugepages-2Mi": "4Mi"}}},
            {"name": "b", "resources": {"limits": {"example.com/gpu": "2"}}}]}));
        let r = pod_requests(&s, None).requests;
        assert_eq!(r.scalar("example.com/gpu"), 3);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(r.scalar("absent"), 0);
    }

    #[test]
    fn node_allocatable_falls_back_to_capacity() {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "3500m", "memory": "7Gi", "pods": "100"}}}))
        .unwrap();
        let (r, pods) = node_allocatable(&n);
        assert_eq!((r.milli_cpu, r.memory, pods), (3500, 7 << 30, 100));
        let n: Node = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2", "pods": "10"}}}),
        )
        .unwrap();
        assert_eq!(node_allocatable(&n).0.milli_cpu, 2000);
        assert_eq!(node_allocatable(&n).1, 10);
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        assert_eq!(node_allocatable(&bare), (Resources::default(), 0));
    }
}
