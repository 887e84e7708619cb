//! A node as the scheduler sees it: what it offers and where pods may go
//! (labels, taints, cordon, readiness, images), and what the pods bound or
//! assumed on it already take.

use crate::filters::HostPort;
use crate::pod::normalize_image;
use crate::resources::{PodRequests, Resources, node_allocatable};
use k8s_openapi::api::core::v1::{Node, Taint};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The node's `Ready` condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// `Ready` is `False`, or the node has not reported it yet.
    #[default]
    NotReady,
    /// `Ready` is `Unknown`: the node stopped reporting.
    Unknown,
}

/// Hashes a spreading group as itself: groups are hashes already, and the
/// spreading score looks one up per node per attempt.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupHasher(u64);

impl Hasher for GroupHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Pods per spreading group.
pub type Groups = HashMap<u64, u32, BuildHasherDefault<GroupHasher>>;

/// What one pod takes on its node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: PodRequests,
    /// The pod's spreading group ([`crate::pod::group_of`]).
    pub group: u64,
    /// The host ports it holds.
    pub host_ports: Vec<HostPort>,
}

/// One node and the pods on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// Whether the Node object exists (pods may name a node not seen yet).
    pub present: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (`kubectl cordon`).
    pub unschedulable: bool,
    pub readiness: Readiness,
    pub allocatable: Resources,
    /// The `pods` the node's allocatable allows.
    pub allowed_pods: i64,
    /// Every name of every image in `status.images`, normalized.
    pub images: HashSet<String>,
    /// The sum of the requests of the pods on the node.
    pub requested: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: usize,
    /// Pods on the node by spreading group.
    pub groups: Groups,
    /// The host ports the pods on the node hold, with how many hold each.
    pub host_ports: HashMap<HostPort, u32>,
}

impl NodeInfo {
    /// A node known only by name, with nothing on it.
    pub fn named(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        }
    }

    /// A node read from its object.
    #[cfg(test)]
    pub fn from_node(node: &Node) -> NodeInfo {
        let mut info = NodeInfo::named(node.metadata.name.as_deref().unwrap_or_default());
        info.set_node(node);
        info
    }

    /// Takes the node's current object; returns whether anything that
    /// decides where pods fit changed (images do not count).
    pub fn set_node(&mut self, node: &Node) -> bool {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let readiness = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map_or(Readiness::NotReady, |c| match c.status.as_str() {
                "True" => Readiness::Ready,
                "Unknown" => Readiness::Unknown,
                _ => Readiness::NotReady,
            });
        let (allocatable, allowed_pods) = node_allocatable(node);
        self.images = status
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| i.names.iter().flatten())
            .map(|n| normalize_image(n))
            .collect();
        let changed = !self.present
            || self.labels != labels
            || self.taints != taints
            || self.unschedulable != unschedulable
            || self.readiness != readiness
            || self.allocatable != allocatable
            || self.allowed_pods != allowed_pods;
        self.present = true;
        self.labels = labels;
        self.taints = taints;
        self.unschedulable = unschedulable;
        self.readiness = readiness;
        self.allocatable = allocatable;
        self.allowed_pods = allowed_pods;
        changed
    }

    pub fn add_pod(&mut self, usage: &Usage) {
        self.requested.add(&usage.requests.requests);
        self.non_zero_milli_cpu += usage.requests.non_zero_milli_cpu;
        self.non_zero_memory += usage.requests.non_zero_memory;
        self.pods += 1;
        *self.groups.entry(usage.group).or_default() += 1;
        for p in &usage.host_ports {
            *self.host_ports.entry(p.clone()).or_default() += 1;
        }
    }

    pub fn remove_pod(&mut self, usage: &Usage) {
        self.requested.sub(&usage.requests.requests);
        self.non_zero_milli_cpu -= usage.requests.non_zero_milli_cpu;
        self.non_zero_memory -= usage.requests.non_zero_memory;
        self.pods = self.pods.saturating_sub(1);
        if let Some(n) = self.groups.get_mut(&usage.group) {
            *n -= 1;
            if *n == 0 {
                self.groups.remove(&usage.group);
            }
        }
        for p in &usage.host_ports {
            if let Some(n) = self.host_ports.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.host_ports.remove(p);
                }
            }
        }
    }

    /// Pods of `group` on the node.
    pub fn group_count(&self, group: u64) -> u32 {
        self.groups.get(&group).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reads_a_node_and_notices_what_matters() {
        let n = node(json!({"metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "images": [{"names": ["docker.io/library/nginx:1.27", "registry.local/hello:v1"]}]}}));
        let mut info = NodeInfo::from_node(&n);
        assert_eq!(info.name, "n1");
        assert!(info.present);
        assert_eq!(info.readiness, Readiness::Ready);
        assert_eq!(info.allowed_pods, 110);
        assert_eq!(info.taints.len(), 1);
        assert!(info.images.contains("nginx:1.27"));
        assert!(info.images.contains("registry.local/hello:v1"));
        assert!(!info.set_node(&n), "the same node changes nothing");
        let mut cordoned = n.clone();
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        assert!(info.set_node(&cordoned));
        assert!(info.unschedulable);
        let mut new_image = cordoned.clone();
        new_image.status.as_mut().unwrap().images = None;
        assert!(!info.set_node(&new_image), "images only score");
        assert!(info.images.is_empty());
        for (status, want) in [
            ("False", Readiness::NotReady),
            ("Unknown", Readiness::Unknown),
        ] {
            let mut n = new_image.clone();
            n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = status.into();
            assert!(info.set_node(&n));
            assert_eq!(info.readiness, want);
        }
        let bare = node(json!({"metadata": {"name": "n2"}}));
        assert_eq!(NodeInfo::from_node(&bare).readiness, Readiness::NotReady);
    }

    #[test]
    fn pods_are_counted_in_and_out() {
        let mut info = NodeInfo::named("n");
        let mut usage = Usage {
            group: 7,
            ..Usage::default()
        };
        usage.requests.requests.milli_cpu = 100;
        usage.requests.non_zero_milli_cpu = 100;
        usage.requests.non_zero_memory = 200;
        info.add_pod(&usage);
        info.add_pod(&usage);
        assert_eq!(
            (info.pods, info.requested.milli_cpu, info.group_count(7)),
            (2, 200, 2)
        );
        info.remove_pod(&usage);
        info.remove_pod(&usage);
        assert_eq!(
            (info.pods, info.requested.milli_cpu, info.non_zero_memory),
            (0, 0, 0)
        );
        assert!(info.groups.is_empty());
    }
}
