//! One scheduling attempt: filter every node, score the feasible ones, pick
//! the best (a random one among equals), or say why nothing fits in
//! kube-scheduler's words.

use crate::cache::Cache;
use crate::filters;
use crate::node::NodeInfo;
use crate::pod::PodInfo;
use crate::scores;
use std::collections::BTreeMap;

/// Why no node fits a pod.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("no nodes available to schedule pods")]
    NoNodes,
    /// The pod cannot run anywhere, whatever the node (a missing RuntimeClass).
    #[error("0/{nodes} nodes are available: {message}.")]
    Pod { nodes: usize, message: String },
    /// Each node failed a filter: how many nodes each reason ruled out.
    #[error("0/{nodes} nodes are available: {}.", histogram(.reasons))]
    Filters {
        nodes: usize,
        reasons: BTreeMap<String, usize>,
    },
}

/// `count reason` items, sorted as strings, joined (kube-scheduler's `FitError.Error`).
fn histogram(reasons: &BTreeMap<String, usize>) -> String {
    let mut items: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    items.sort();
    items.join(", ")
}

/// A small xorshift generator for tie-breaking.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n.max(1)
    }
}

/// Reused buffers, so an attempt allocates little.
#[derive(Debug, Default)]
pub struct Scratch {
    scores: Vec<i64>,
    normalize: Vec<i64>,
}

/// Picks a node for `pod`, or says why none fits.
pub fn schedule(
    cache: &Cache,
    pod: &PodInfo,
    rng: &mut Rng,
    scratch: &mut Scratch,
) -> Result<String, FitError> {
    let total_nodes = cache.node_count();
    if total_nodes == 0 {
        return Err(FitError::NoNodes);
    }
    if let Some(rc) = &pod.missing_runtime_class {
        return Err(FitError::Pod {
            nodes: total_nodes,
            message: format!("RuntimeClass {rc:?} not found"),
        });
    }
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(total_nodes);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for node in cache.nodes() {
        match filters::check(pod, node) {
            Ok(()) => feasible.push(node),
            Err(unfit) => {
                for r in unfit.reasons() {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    match feasible.len() {
        0 => Err(FitError::Filters {
            nodes: total_nodes,
            reasons,
        }),
        1 => Ok(feasible[0].name.clone()),
        _ => {
            scores::total(pod, &feasible, &mut scratch.normalize, &mut scratch.scores);
            // Reservoir sampling over the best: each tie equally likely.
            let mut best = i64::MIN;
            let mut chosen = 0;
            let mut ties = 0u64;
            for (i, s) in scratch.scores.iter().enumerate() {
                if *s > best {
                    best = *s;
                    chosen = i;
                    ties = 1;
                } else if *s == best {
                    ties += 1;
                    if rng.below(ties) == 0 {
                        chosen = i;
                    }
                }
            }
            Ok(feasible[chosen].name.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};
    use std::collections::HashMap;

    fn node(name: &str, cpu: &str, spec: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec,
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    }

    fn pod(name: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .unwrap()
    }

    #[test]
    fn explains_in_kube_scheduler_words() {
        let mut cache = Cache::default();
        let p = pod("p", "1");
        let mut rng = Rng::new(1);
        let mut scratch = Scratch::default();
        let err = schedule(&cache, &cache.pod_info(&p), &mut rng, &mut scratch).unwrap_err();
        assert_eq!(err.to_string(), "no nodes available to schedule pods");

        cache.upsert_node(&node("cordoned", "4", json!({"unschedulable": true})));
        cache.upsert_node(&node("small-1", "500m", json!({})));
        cache.upsert_node(&node("small-2", "500m", json!({})));
        let err = schedule(&cache, &cache.pod_info(&p), &mut rng, &mut scratch).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
        );

        let mut with_rc = p.clone();
        with_rc.spec.as_mut().unwrap().runtime_class_name = Some("wasm".into());
        let err = schedule(&cache, &cache.pod_info(&with_rc), &mut rng, &mut scratch).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: RuntimeClass \"wasm\" not found."
        );

        cache.upsert_node(&node("big", "2", json!({})));
        assert_eq!(
            schedule(&cache, &cache.pod_info(&p), &mut rng, &mut scratch).unwrap(),
            "big"
        );
    }

    #[test]
    fn a_group_spreads_over_equal_nodes() {
        let mut cache = Cache::default();
        for n in ["a", "b", "c"] {
            cache.upsert_node(&node(n, "4", json!({})));
        }
        let mut rng = Rng::new(7);
        let mut scratch = Scratch::default();
        let mut placed: HashMap<String, usize> = HashMap::new();
        for i in 0..30 {
            let info = cache.pod_info(&pod(&format!("p{i}"), "10m"));
            let node = schedule(&cache, &info, &mut rng, &mut scratch).unwrap();
            cache.assume(&info, &node);
            *placed.entry(node).or_default() += 1;
        }
        assert_eq!(placed.len(), 3);
        assert!(placed.values().all(|n| *n == 10), "{placed:?}");
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut cache = Cache::default();
        for n in ["a", "b", "c", "d"] {
            cache.upsert_node(&node(n, "4", json!({})));
        }
        let mut rng = Rng::new(42);
        let mut scratch = Scratch::default();
        let info = cache.pod_info(&pod("p", "10m"));
        let picked: std::collections::HashSet<String> = (0..200)
            .map(|_| schedule(&cache, &info, &mut rng, &mut scratch).unwrap())
            .collect();
        assert_eq!(picked.len(), 4, "{picked:?}");
    }
}
