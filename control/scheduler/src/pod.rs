//! A pod as the scheduler sees it: what it requests, where it may go (node
//! name, selector, affinity, tolerations, with its RuntimeClass's scheduling
//! merged in), the images it runs and the group it spreads within.

use crate::filters::{HostPort, host_ports};
use crate::resources::{PodRequests, pod_requests};
use k8s_openapi::api::core::v1::{NodeSelector, Pod, PodSpec, PreferredSchedulingTerm, Toleration};
use k8s_openapi::api::node::v1::RuntimeClass;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// The scheduling view of one pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub requests: PodRequests,
    /// `spec.nodeName` (the NodeName filter).
    pub node_name: Option<String>,
    /// `spec.nodeSelector` and the RuntimeClass's `scheduling.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// The two selectors ask one label for different values: no node fits
    /// (the RuntimeClass admission plugin would have refused the pod).
    pub selector_conflict: bool,
    /// Required node affinity.
    pub required: Option<NodeSelector>,
    /// Preferred node affinity (scores only).
    pub preferred: Vec<PreferredSchedulingTerm>,
    /// The pod's tolerations and its RuntimeClass's.
    pub tolerations: Vec<Toleration>,
    /// The containers' images, normalized (see [`normalize_image`]).
    pub images: Vec<String>,
    /// The host ports it asks for (the NodePorts filter).
    pub host_ports: Vec<HostPort>,
    /// The spreading group: the controlling owner, else namespace and labels.
    pub group: u64,
    /// A `runtimeClassName` that names no RuntimeClass.
    pub missing_runtime_class: Option<String>,
}

/// What a RuntimeClass lookup found for a pod.
#[derive(Debug, Clone, Copy)]
pub enum RuntimeClassLookup<'a> {
    /// The pod names no RuntimeClass.
    None,
    Found(&'a RuntimeClass),
    /// The pod names one that does not exist.
    Missing,
}

impl PodInfo {
    pub fn new(pod: &Pod, runtime_class: RuntimeClassLookup<'_>) -> PodInfo {
        let meta = &pod.metadata;
        let empty = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let rc = match runtime_class {
            RuntimeClassLookup::Found(rc) => Some(rc),
            _ => None,
        };
        let overhead = rc
            .and_then(|rc| rc.overhead.as_ref())
            .and_then(|o| o.pod_fixed.as_ref());
        let mut node_selector = spec.node_selector.clone().unwrap_or_default();
        let mut tolerations = spec.tolerations.clone().unwrap_or_default();
        let mut selector_conflict = false;
        if let Some(scheduling) = rc.and_then(|rc| rc.scheduling.as_ref()) {
            for (k, v) in scheduling.node_selector.iter().flatten() {
                if let Some(previous) = node_selector.insert(k.clone(), v.clone()) {
                    selector_conflict |= previous != *v;
                }
            }
            tolerations.extend(scheduling.tolerations.iter().flatten().cloned());
        }
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let images = spec
            .containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .map(normalize_image)
            .collect();
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            requests: pod_requests(spec, overhead),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            node_selector,
            selector_conflict,
            required: node_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            preferred: node_affinity
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            tolerations,
            images,
            host_ports: host_ports(spec),
            group: group_of(pod),
            missing_runtime_class: match runtime_class {
                RuntimeClassLookup::Missing => spec.runtime_class_name.clone(),
                _ => None,
            },
        }
    }
}

/// The spreading group of a pod: pods of one controller (a ReplicaSet, a
/// Job) spread together; pods without one spread with the pods of their
/// namespace that carry the same labels.
pub fn group_of(pod: &Pod) -> u64 {
    let meta = &pod.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(owner) => {
            "owner".hash(&mut h);
            owner.uid.hash(&mut h);
        }
        None => {
            "labels".hash(&mut h);
            meta.namespace.hash(&mut h);
            meta.labels.hash(&mut h);
        }
    }
    h.finish()
}

/// An image reference in one spelling: Docker Hub's implicit registry and
/// `library/` removed, `:latest` added when there is neither tag nor digest
/// (as the scheduler's ImageLocality plugin normalizes).
pub fn normalize_image(image: &str) -> String {
    let mut s = image.trim();
    for prefix in [
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
            break;
        }
    }
    let last = s.rsplit('/').next().unwrap_or(s);
    if last.contains(':') || s.contains('@') {
        s.to_string()
    } else {
        format!("{s}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn images_are_normalized() {
        for (input, want) in [
            ("nginx", "nginx:latest"),
            ("docker.io/library/nginx:1.27", "nginx:1.27"),
            ("docker.io/me/app", "me/app:latest"),
            (
                "registry.local:5000/hello",
                "registry.local:5000/hello:latest",
            ),
            (
                "registry.local:5000/hello:v1",
                "registry.local:5000/hello:v1",
            ),
            ("ghcr.io/x/y@sha256:abcd", "ghcr.io/x/y@sha256:abcd"),
        ] {
            assert_eq!(normalize_image(input), want, "{input}");
        }
    }

    #[test]
    fn groups_follow_the_controller_else_the_labels() {
        let owned = |uid: &str, labels: serde_json::Value| {
            pod(
                json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]},
                "spec": {"containers": []}}),
            )
        };
        let bare = |ns: &str, labels: serde_json::Value| {
            pod(
                json!({"metadata": {"name": "p", "namespace": ns, "labels": labels}, "spec": {"containers": []}}),
            )
        };
        assert_eq!(
            group_of(&owned("u1", json!({"a": "1"}))),
            group_of(&owned("u1", json!({"b": "2"})))
        );
        assert_ne!(
            group_of(&owned("u1", json!({}))),
            group_of(&owned("u2", json!({})))
        );
        assert_eq!(
            group_of(&bare("ns", json!({"app": "x"}))),
            group_of(&bare("ns", json!({"app": "x"})))
        );
        assert_ne!(
            group_of(&bare("ns", json!({"app": "x"}))),
            group_of(&bare("ns", json!({"app": "y"})))
        );
        assert_ne!(
            group_of(&bare("ns", json!({"app": "x"}))),
            group_of(&bare("other", json!({"app": "x"})))
        );
    }

    #[test]
    fn runtime_class_scheduling_is_merged() {
        let rc: RuntimeClass = serde_json::from_value(json!({
            "metadata": {"name": "wasm"}, "handler": "wasmtime",
            "overhead": {"podFixed": {"cpu": "10m"}},
            "scheduling": {"nodeSelector": {"wasm": "yes", "zone": "b"},
                           "tolerations": [{"key": "wasm-only", "operator": "Exists"}]}}))
        .unwrap();
        let p = pod(json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"runtimeClassName": "wasm", "nodeSelector": {"disk": "ssd", "zone": "a"},
                     "tolerations": [{"key": "k", "operator": "Exists"}],
                     "containers": [{"name": "c", "image": "hello", "resources": {"requests": {"cpu": "100m"}}}]}}));
        let info = PodInfo::new(&p, RuntimeClassLookup::Found(&rc));
        assert_eq!(info.node_selector["wasm"], "yes");
        assert_eq!(info.node_selector["disk"], "ssd");
        assert!(info.selector_conflict, "zone=a against zone=b");
        assert_eq!(info.tolerations.len(), 2);
        assert_eq!(info.requests.requests.milli_cpu, 110);
        assert_eq!(info.images, vec!["hello:latest".to_string()]);
        assert!(info.missing_runtime_class.is_none());
        let missing = PodInfo::new(&p, RuntimeClassLookup::Missing);
        assert_eq!(missing.missing_runtime_class.as_deref(), Some("wasm"));
    }
}
