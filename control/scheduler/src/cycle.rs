//! One scheduling attempt: filter nodes until enough fit, score those,
//! pick the best (a random one among equals), or say why nothing fits in
//! kube-scheduler's words. As kube-scheduler, a large cluster is not
//! searched whole: an attempt stops filtering once it has found
//! `percentageOfNodesToScore` of the nodes feasible (adaptive by default:
//! 42% of 1,000 nodes, never fewer than 100), and the next attempt starts
//! where it stopped, so every node gets its turn.

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

/// What attempts carry over: reused buffers, and where the next one
/// starts looking.
#[derive(Debug, Default)]
pub struct Scratch {
    scores: Vec<i64>,
    normalize: Vec<i64>,
    next_start: usize,
}

/// Nodes below which a cluster is searched whole, and the fewest an
/// attempt looks for (kube-scheduler's `minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES: usize = 100;
/// The adaptive percentage never goes below this (`minFeasibleNodesPercentageToFind`).
const MIN_ADAPTIVE_PERCENT: usize = 5;

/// How many feasible nodes an attempt looks for before it stops filtering,
/// out of `all` (kube-scheduler's `numFeasibleNodesToFind`). `percentage`
/// is `percentageOfNodesToScore`: 0 is adaptive, `50 - all/125` percent
/// but at least 5; above 100 counts as 100.
pub fn feasible_nodes_to_find(all: usize, percentage: u32) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let percent = match percentage.min(100) as usize {
        0 => 50usize.saturating_sub(all / 125).max(MIN_ADAPTIVE_PERCENT),
        p => p,
    };
    (all * percent / 100).clamp(MIN_FEASIBLE_NODES, all)
}

/// Picks a node for `pod`, or says why none fits; `percentage` is
/// `percentageOfNodesToScore` (see [`feasible_nodes_to_find`]).
pub fn schedule(
    cache: &Cache,
    pod: &PodInfo,
    percentage: u32,
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
    let want = feasible_nodes_to_find(total_nodes, percentage);
    let slots = cache.node_slots();
    let start = scratch.next_start % slots.len();
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut visited = slots.len();
    for (i, node) in slots[start..].iter().chain(&slots[..start]).enumerate() {
        if !node.present {
            continue;
        }
        match filters::check(pod, node) {
            Ok(()) => {
                feasible.push(node);
                if feasible.len() >= want {
                    visited = i + 1;
                    break;
                }
            }
            Err(unfit) => {
                for r in unfit.reasons() {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    scratch.next_start = (start + visited) % slots.len();
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

    const ADAPTIVE: u32 = 0;

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
        let err = schedule(
            &cache,
            &cache.pod_info(&p),
            ADAPTIVE,
            &mut rng,
            &mut scratch,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "no nodes available to schedule pods");

        cache.upsert_node(&node("cordoned", "4", json!({"unschedulable": true})));
        cache.upsert_node(&node("small-1", "500m", json!({})));
        cache.upsert_node(&node("small-2", "500m", json!({})));
        let err = schedule(
            &cache,
            &cache.pod_info(&p),
            ADAPTIVE,
            &mut rng,
            &mut scratch,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
        );

        let mut with_rc = p.clone();
        with_rc.spec.as_mut().unwrap().runtime_class_name = Some("wasm".into());
        let err = schedule(
            &cache,
            &cache.pod_info(&with_rc),
            ADAPTIVE,
            &mut rng,
            &mut scratch,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: RuntimeClass \"wasm\" not found."
        );

        cache.upsert_node(&node("big", "2", json!({})));
        assert_eq!(
            schedule(
                &cache,
                &cache.pod_info(&p),
                ADAPTIVE,
                &mut rng,
                &mut scratch
            )
            .unwrap(),
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
            let node = schedule(&cache, &info, ADAPTIVE, &mut rng, &mut scratch).unwrap();
            cache.assume(&info, &node);
            *placed.entry(node).or_default() += 1;
        }
        assert_eq!(placed.len(), 3);
        assert!(placed.values().all(|n| *n == 10), "{placed:?}");
    }

    #[test]
    fn how_many_feasible_nodes_an_attempt_looks_for() {
        // nodes, percentageOfNodesToScore, nodes looked for
        for (all, percentage, want) in [
            (0, ADAPTIVE, 0),
            (3, ADAPTIVE, 3),
            (99, ADAPTIVE, 99),
            (100, ADAPTIVE, 100),
            (200, ADAPTIVE, 100),
            (1000, ADAPTIVE, 420),
            (5000, ADAPTIVE, 500),
            (10000, ADAPTIVE, 500),
            (100_000, ADAPTIVE, 5000),
            (50, 10, 50),
            (1000, 10, 100),
            (1000, 50, 500),
            (1000, 100, 1000),
            (1000, 250, 1000),
        ] {
            assert_eq!(
                feasible_nodes_to_find(all, percentage),
                want,
                "{all} nodes at {percentage}%"
            );
        }
    }

    #[test]
    fn every_node_gets_its_turn() {
        // With 200 equal nodes an attempt looks at 100, and the next one at
        // the other 100.
        let mut cache = Cache::default();
        for i in 0..200 {
            cache.upsert_node(&node(&format!("n{i:03}"), "4", json!({})));
        }
        let mut rng = Rng::new(3);
        let mut scratch = Scratch::default();
        let info = cache.pod_info(&pod("p", "10m"));
        let halves: Vec<usize> = (0..4)
            .map(|_| {
                let n = schedule(&cache, &info, ADAPTIVE, &mut rng, &mut scratch).unwrap();
                n[1..].parse::<usize>().unwrap() / 100
            })
            .collect();
        assert_eq!(halves, [0, 1, 0, 1]);
    }

    #[test]
    fn unfit_nodes_do_not_count_and_a_miss_searches_everything() {
        // 300 nodes, the first 250 too small: an attempt looks for 144
        // feasible ones, finds only the 50 big ones, and takes one of them;
        // a pod nothing fits hears about all 300.
        let mut cache = Cache::default();
        for i in 0..300 {
            let cpu = if i < 250 { "100m" } else { "4" };
            cache.upsert_node(&node(&format!("n{i:03}"), cpu, json!({})));
        }
        let mut rng = Rng::new(5);
        let mut scratch = Scratch::default();
        let fits = cache.pod_info(&pod("p", "1"));
        for _ in 0..5 {
            let n = schedule(&cache, &fits, ADAPTIVE, &mut rng, &mut scratch).unwrap();
            assert!(n.as_str() >= "n250", "{n}");
        }
        let huge = cache.pod_info(&pod("huge", "64"));
        let err = schedule(&cache, &huge, ADAPTIVE, &mut rng, &mut scratch).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/300 nodes are available: 300 Insufficient cpu."
        );
    }

    #[test]
    fn sampled_spreading_stays_even() {
        // 1,000 equal nodes and 10,000 pods of one group, each attempt
        // scoring 420 of them: every node ends within one pod of the mean
        // (searching every node gives exactly 10 each; kube-scheduler's
        // sampling has the same slack, its spreading scores only the sample).
        let mut cache = Cache::default();
        for i in 0..1000 {
            cache.upsert_node(&node(&format!("n{i:04}"), "4", json!({})));
        }
        let mut rng = Rng::new(11);
        let mut scratch = Scratch::default();
        let mut placed: HashMap<String, usize> = HashMap::new();
        for i in 0..10_000 {
            let info = cache.pod_info(&pod(&format!("p{i}"), "10m"));
            let node = schedule(&cache, &info, ADAPTIVE, &mut rng, &mut scratch).unwrap();
            cache.assume(&info, &node);
            *placed.entry(node).or_default() += 1;
        }
        assert_eq!(placed.len(), 1000);
        assert!(placed.values().all(|n| (9..=11).contains(n)), "{placed:?}");
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
            .map(|_| schedule(&cache, &info, ADAPTIVE, &mut rng, &mut scratch).unwrap())
            .collect();
        assert_eq!(picked.len(), 4, "{picked:?}");
    }
}
