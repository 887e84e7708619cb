//! The scores: how good a feasible node is for a pod, each 0..=100 after
//! normalizing over the feasible nodes, summed with kube-scheduler's default
//! weights. LeastAllocated (1), spreading a group's pods (2),
//! PreferNoSchedule taints (3), preferred node affinity (2), and
//! ImageLocality (1): a node already holding the pod's images (Wasm modules
//! compiled there) is preferred.

use crate::filters::{term_matches, tolerates};
use crate::node::NodeInfo;
use crate::pod::PodInfo;

/// The best score one scorer gives.
pub const MAX_SCORE: i64 = 100;

const LEAST_ALLOCATED_WEIGHT: i64 = 1;
const SPREAD_WEIGHT: i64 = 2;
const TAINT_WEIGHT: i64 = 3;
const AFFINITY_WEIGHT: i64 = 2;
const IMAGE_WEIGHT: i64 = 1;

/// NodeResourcesFit's LeastAllocated: the share of cpu and memory left free
/// once the pod is there (unset requests counted at the defaults).
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let free_share = |requested: i64, capacity: i64| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_SCORE / capacity
        }
    };
    let cpu = free_share(
        node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
        node.allocatable.milli_cpu,
    );
    let memory = free_share(
        node.non_zero_memory + pod.requests.non_zero_memory,
        node.allocatable.memory,
    );
    (cpu + memory) / 2
}

/// ImageLocality: the share of the pod's images the node reports holding.
pub fn image_locality(pod: &PodInfo, node: &NodeInfo) -> i64 {
    if pod.images.is_empty() {
        return 0;
    }
    let present = pod
        .images
        .iter()
        .filter(|i| node.images.contains(*i))
        .count() as i64;
    present * MAX_SCORE / pod.images.len() as i64
}

/// PreferNoSchedule taints the pod does not tolerate (raw; fewer is better).
pub fn intolerable_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    node.taints
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| {
            !pod.tolerations.iter().any(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                ) && tolerates(t, taint)
            })
        })
        .count() as i64
}

/// The summed weights of the preferred node affinity terms that match (raw).
pub fn preferred_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.preferred
        .iter()
        .filter(|p| term_matches(&p.preference, &node.name, &node.labels))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// Scales raw values to 0..=100 against the largest; `reverse` when fewer is better.
fn normalize(raw: &mut [i64], reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    for v in raw.iter_mut() {
        *v = match (max, reverse) {
            (0, true) => MAX_SCORE,
            (0, false) => 0,
            (max, true) => MAX_SCORE - *v * MAX_SCORE / max,
            (max, false) => *v * MAX_SCORE / max,
        };
    }
}

/// The weighted total of every score for each feasible node, in order.
/// `scratch` is reused between calls to spare allocations.
pub fn total(pod: &PodInfo, nodes: &[&NodeInfo], scratch: &mut Vec<i64>, out: &mut Vec<i64>) {
    out.clear();
    out.extend(nodes.iter().map(|n| {
        least_allocated(pod, n) * LEAST_ALLOCATED_WEIGHT + image_locality(pod, n) * IMAGE_WEIGHT
    }));
    let mut add_normalized = |raw: &dyn Fn(&NodeInfo) -> i64, reverse: bool, weight: i64| {
        scratch.clear();
        scratch.extend(nodes.iter().map(|n| raw(n)));
        normalize(scratch, reverse);
        for (t, s) in out.iter_mut().zip(scratch.iter()) {
            *t += s * weight;
        }
    };
    add_normalized(
        &|n| i64::from(n.group_count(pod.group)),
        true,
        SPREAD_WEIGHT,
    );
    add_normalized(
        &|n| intolerable_prefer_no_schedule(pod, n),
        true,
        TAINT_WEIGHT,
    );
    if !pod.preferred.is_empty() {
        add_normalized(&|n| preferred_affinity(pod, n), false, AFFINITY_WEIGHT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Usage;
    use crate::pod::RuntimeClassLookup;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    fn pod(spec: Value) -> PodInfo {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "a"}}, "spec": spec})).unwrap();
        PodInfo::new(&p, RuntimeClassLookup::None)
    }

    fn node(name: &str, labels: Value, spec: Value, images: Value) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels}, "spec": spec,
            "status": {"allocatable": {"cpu": "1", "memory": "1000Mi", "pods": "10"}, "images": images,
                       "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        NodeInfo::from_node(&n)
    }

    fn plain(name: &str) -> NodeInfo {
        node(name, json!({}), json!({}), json!([]))
    }

    #[test]
    fn least_allocated_scores() {
        let cases = [
            // node's requested cpu (m), memory (Mi); pod's cpu, memory; score
            ((0, 0), ("0", "0"), 100),
            ((0, 0), ("500m", "500Mi"), 50),
            ((500, 0), ("500m", "0"), 50),
            ((0, 0), ("1", "1000Mi"), 0),
            ((0, 0), ("2", "0"), 50),
            ((0, 0), ("250m", "750Mi"), 50),
        ];
        for ((node_cpu, node_mem), (cpu, mem), want) in cases {
            let mut n = plain("n");
            n.non_zero_milli_cpu = node_cpu;
            n.non_zero_memory = node_mem << 20;
            let p = pod(
                json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}),
            );
            assert_eq!(
                least_allocated(&p, &n),
                want,
                "{cpu} {mem} on {node_cpu}m {node_mem}Mi"
            );
        }
    }

    #[test]
    fn image_locality_scores() {
        let p = pod(
            json!({"containers": [{"name": "a", "image": "registry.local/hello:v1"}, {"name": "b", "image": "nginx"}]}),
        );
        let cases = [
            (json!([]), 0),
            (
                json!([{"names": ["registry.local/hello:v1"], "sizeBytes": 1000}]),
                50,
            ),
            (
                json!([{"names": ["registry.local/hello:v1"]}, {"names": ["docker.io/library/nginx:latest"]}]),
                100,
            ),
            (json!([{"names": ["registry.local/hello:v2"]}]), 0),
        ];
        for (images, want) in cases {
            let n = node("n", json!({}), json!({}), images.clone());
            assert_eq!(image_locality(&p, &n), want, "{images}");
        }
        let no_image = pod(json!({"containers": [{"name": "a"}]}));
        assert_eq!(image_locality(&no_image, &plain("n")), 0);
    }

    #[test]
    fn prefer_no_schedule_counts() {
        let taints = json!({"taints": [
            {"key": "a", "effect": "PreferNoSchedule"},
            {"key": "b", "effect": "PreferNoSchedule"},
            {"key": "c", "effect": "NoSchedule"}]});
        let cases = [
            (json!([]), 2),
            (json!([{"key": "a", "operator": "Exists"}]), 1),
            (
                json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}, {"key": "b", "operator": "Exists"}]),
                0,
            ),
            (
                json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]),
                2,
            ),
        ];
        for (tolerations, want) in cases {
            let p = pod(json!({"containers": [], "tolerations": tolerations.clone()}));
            let n = node("n", json!({}), taints.clone(), json!([]));
            assert_eq!(
                intolerable_prefer_no_schedule(&p, &n),
                want,
                "{tolerations}"
            );
        }
    }

    #[test]
    fn preferred_affinity_sums_weights() {
        let p = pod(
            json!({"containers": [], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}),
        );
        for (labels, want) in [
            (json!({}), 0),
            (json!({"zone": "a"}), 10),
            (json!({"zone": "a", "disk": "ssd"}), 15),
            (json!({"zone": "b", "disk": "ssd"}), 5),
        ] {
            let n = node("n", labels.clone(), json!({}), json!([]));
            assert_eq!(preferred_affinity(&p, &n), want, "{labels}");
        }
    }

    #[test]
    fn normalizing() {
        let cases: [(&[i64], bool, &[i64]); 4] = [
            (&[0, 0], true, &[100, 100]),
            (&[0, 0], false, &[0, 0]),
            (&[0, 1, 2], true, &[100, 50, 0]),
            (&[0, 5, 10], false, &[0, 50, 100]),
        ];
        for (raw, reverse, want) in cases {
            let mut v = raw.to_vec();
            normalize(&mut v, reverse);
            assert_eq!(v, want, "{raw:?} reverse={reverse}");
        }
    }

    /// Which node ranks first for a pod, by the totals.
    fn best(p: &PodInfo, nodes: &[NodeInfo]) -> String {
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        total(p, &refs, &mut scratch, &mut out);
        let i = (0..out.len()).max_by_key(|&i| out[i]).unwrap();
        nodes[i].name.clone()
    }

    #[test]
    fn the_totals_rank_nodes() {
        let p = pod(
            json!({"containers": [{"name": "c", "image": "hello:v1", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]}),
        );
        let usage = Usage {
            group: p.group,
            ..Usage::default()
        };
        // Spreading: the node without the group's pods wins.
        let mut a = plain("a");
        a.add_pod(&usage);
        assert_eq!(best(&p, &[a.clone(), plain("b")]), "b");
        // Less allocated wins among equals.
        let mut busy = plain("busy");
        busy.non_zero_milli_cpu = 900;
        assert_eq!(best(&p, &[busy.clone(), plain("idle")]), "idle");
        // The image outweighs a little load.
        let mut warm = node(
            "warm",
            json!({}),
            json!({}),
            json!([{"names": ["hello:v1"]}]),
        );
        warm.non_zero_milli_cpu = 100;
        assert_eq!(best(&p, &[plain("cold"), warm]), "warm");
        // A PreferNoSchedule taint pushes pods away.
        let tainted = node(
            "tainted",
            json!({}),
            json!({"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}),
            json!([]),
        );
        assert_eq!(best(&p, &[tainted, busy]), "busy");
    }
}
