//! The scheduler's in-memory picture of the cluster: nodes, the pods bound
//! to them, the pods *assumed* bound (placed by this scheduler, binding in
//! flight or not yet seen bound by the watch), and RuntimeClasses. Assuming
//! lets the next pod see the room the last one took without waiting for the
//! watch; a failed binding forgets the assumption.

use crate::filters::host_ports;
use crate::node::{NodeInfo, Usage};
use crate::pod::{PodInfo, RuntimeClassLookup, group_of};
use crate::resources::pod_requests;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use k8s_openapi::api::node::v1::RuntimeClass;
use std::collections::{HashMap, HashSet};

#[derive(Debug)]
struct PodEntry {
    node: String,
    usage: Usage,
    /// Placed by this scheduler and not yet seen bound by the watch.
    assumed: bool,
}

/// The nodes, in a stable order (so an attempt can start where the last
/// one stopped), found by name through an index.
#[derive(Debug, Default)]
struct Nodes {
    list: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// How many of them exist (`present`).
    present: usize,
}

impl Nodes {
    #[cfg(test)]
    fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.list[i])
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.index.get(name).map(|&i| &mut self.list[i])
    }

    /// The node, added (not present) if unknown.
    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.list.push(NodeInfo::named(name));
                self.index.insert(name.to_string(), self.list.len() - 1);
                self.list.len() - 1
            }
        };
        &mut self.list[i]
    }

    fn remove(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let gone = self.list.swap_remove(i);
        if gone.present {
            self.present -= 1;
        }
        if let Some(moved) = self.list.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Nodes, pods on them, and RuntimeClasses.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Nodes,
    /// Bound and assumed pods, by UID.
    pods: HashMap<String, PodEntry>,
    runtime_classes: HashMap<String, RuntimeClass>,
}

/// Whether a pod has finished and holds nothing on its node.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The UID a pod is known by (its `namespace/name` if it has none).
pub fn uid_of(pod: &Pod) -> String {
    match &pod.metadata.uid {
        Some(uid) => uid.clone(),
        None => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

impl Cache {
    /// Every node slot, with what its pods take, in a stable order (nodes
    /// added go last; a removed one's slot takes the last one). Slots whose
    /// node does not exist (`!present`) are to be skipped.
    pub fn node_slots(&self) -> &[NodeInfo] {
        &self.nodes.list
    }

    #[cfg(test)]
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|n| n.present)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.present
    }

    /// Adds or updates a node; returns whether where pods fit may have changed.
    pub fn upsert_node(&mut self, node: &Node) -> bool {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let info = self.nodes.entry(name);
        let was_present = info.present;
        let changed = info.set_node(node);
        if !was_present {
            self.nodes.present += 1;
        }
        changed
    }

    /// Removes a node; its pods' accounting stays until they go.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(n) = self.nodes.get_mut(name) {
            if n.pods == 0 {
                self.nodes.remove(name);
            } else if n.present {
                n.present = false;
                self.nodes.present -= 1;
            }
        }
    }

    /// Keeps only the named nodes (after a re-list).
    pub fn retain_nodes(&mut self, names: &HashSet<String>) {
        let gone: Vec<String> = self
            .nodes
            .names()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
    }

    pub fn runtime_class(&self, name: Option<&str>) -> RuntimeClassLookup<'_> {
        match name.filter(|n| !n.is_empty()) {
            None => RuntimeClassLookup::None,
            Some(n) => match self.runtime_classes.get(n) {
                Some(rc) => RuntimeClassLookup::Found(rc),
                None => RuntimeClassLookup::Missing,
            },
        }
    }

    pub fn upsert_runtime_class(&mut self, rc: RuntimeClass) {
        let name = rc.metadata.name.clone().unwrap_or_default();
        self.runtime_classes.insert(name, rc);
    }

    pub fn remove_runtime_class(&mut self, name: &str) {
        self.runtime_classes.remove(name);
    }

    pub fn retain_runtime_classes(&mut self, names: &HashSet<String>) {
        self.runtime_classes.retain(|n, _| names.contains(n));
    }

    /// The scheduling view of a pod, with its RuntimeClass.
    pub fn pod_info(&self, pod: &Pod) -> PodInfo {
        let rc = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref());
        PodInfo::new(pod, self.runtime_class(rc))
    }

    fn usage_of(&self, pod: &Pod) -> Usage {
        let empty = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let overhead = match self.runtime_class(spec.runtime_class_name.as_deref()) {
            RuntimeClassLookup::Found(rc) => {
                rc.overhead.as_ref().and_then(|o| o.pod_fixed.as_ref())
            }
            _ => None,
        };
        Usage {
            requests: pod_requests(spec, overhead),
            group: group_of(pod),
            host_ports: host_ports(spec),
        }
    }

    fn insert(&mut self, uid: String, entry: PodEntry) {
        self.nodes.entry(&entry.node).add_pod(&entry.usage);
        self.pods.insert(uid, entry);
    }

    /// Takes a pod off the books; returns whether it was on them.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(entry) = self.pods.remove(uid) else {
            return false;
        };
        if let Some(n) = self.nodes.get_mut(&entry.node) {
            n.remove_pod(&entry.usage);
            if !n.present && n.pods == 0 {
                self.nodes.remove(&entry.node);
            }
        }
        true
    }

    /// Records a pod the watch shows bound (confirming an assumed one).
    pub fn add_bound_pod(&mut self, pod: &Pod) {
        let uid = uid_of(pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let usage = self.usage_of(pod);
        if let Some(e) = self.pods.get_mut(&uid)
            && e.node == node
            && e.usage == usage
        {
            e.assumed = false;
            return;
        }
        self.remove_pod(&uid);
        self.insert(
            uid,
            PodEntry {
                node,
                usage,
                assumed: false,
            },
        );
    }

    /// Places a pod on a node before its binding is done.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        self.remove_pod(&pod.uid);
        self.insert(
            pod.uid.clone(),
            PodEntry {
                node: node.to_string(),
                usage: Usage {
                    requests: pod.requests.clone(),
                    group: pod.group,
                    host_ports: pod.host_ports.clone(),
                },
                assumed: true,
            },
        );
    }

    /// Undoes [`Cache::assume`] after a failed binding (a pod the watch has
    /// meanwhile shown bound stays).
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|e| e.assumed) {
            self.remove_pod(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|e| e.assumed)
    }

    /// After a re-list: drops bound pods that are gone; assumed ones stay
    /// until their binding is seen or fails.
    pub fn retain_pods(&mut self, uids: &HashSet<String>) {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, e)| !e.assumed && !uids.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.remove_pod(&uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    }

    fn pod(uid: &str, node: Option<&str>) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}}))
        .unwrap()
    }

    fn cpu(c: &Cache, node: &str) -> i64 {
        c.nodes.get(node).map_or(0, |n| n.requested.milli_cpu)
    }

    #[test]
    fn assume_confirm_forget() {
        let mut c = Cache::default();
        c.upsert_node(&node("n1"));
        c.upsert_node(&node("n2"));
        let p = pod("u1", None);
        let info = c.pod_info(&p);
        c.assume(&info, "n1");
        assert!(c.is_assumed("u1"));
        assert_eq!(cpu(&c, "n1"), 100);
        // The watch shows it bound: confirmed, counted once.
        c.add_bound_pod(&pod("u1", Some("n1")));
        assert!(!c.is_assumed("u1"));
        assert_eq!(cpu(&c, "n1"), 100);
        // Forgetting a confirmed pod changes nothing.
        c.forget("u1");
        assert_eq!(cpu(&c, "n1"), 100);
        // A failed binding forgets the assumption.
        let info2 = c.pod_info(&pod("u2", None));
        c.assume(&info2, "n2");
        assert_eq!(cpu(&c, "n2"), 100);
        c.forget("u2");
        assert_eq!(cpu(&c, "n2"), 0);
        // Bound elsewhere than assumed (another scheduler won): moved.
        c.assume(&info2, "n2");
        c.add_bound_pod(&pod("u2", Some("n1")));
        assert_eq!((cpu(&c, "n1"), cpu(&c, "n2")), (200, 0));
        assert!(c.remove_pod("u1"));
        assert!(!c.remove_pod("u1"));
        assert_eq!(cpu(&c, "n1"), 100);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_them() {
        let mut c = Cache::default();
        c.add_bound_pod(&pod("u1", Some("later")));
        assert_eq!(
            c.node_count(),
            0,
            "a node known only from its pods is not offered"
        );
        c.upsert_node(&node("later"));
        assert_eq!(c.node("later").unwrap().requested.milli_cpu, 100);
        c.remove_node("later");
        assert!(c.node("later").is_none());
        c.upsert_node(&node("later"));
        assert_eq!(
            c.node("later").unwrap().pods,
            1,
            "its pods' accounting stayed"
        );
        c.remove_node("later");
        c.remove_pod("u1");
        assert!(c.nodes.is_empty());
    }

    #[test]
    fn relists_drop_what_is_gone() {
        let mut c = Cache::default();
        c.upsert_node(&node("a"));
        c.upsert_node(&node("b"));
        c.add_bound_pod(&pod("bound", Some("a")));
        let info = c.pod_info(&pod("assumed", None));
        c.assume(&info, "a");
        c.retain_pods(&HashSet::new());
        assert_eq!(cpu(&c, "a"), 100, "the assumed pod stays");
        c.retain_nodes(&["b".to_string()].into());
        assert!(c.node("a").is_none());
        assert!(c.node("b").is_some());
    }
}
