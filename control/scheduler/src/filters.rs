//! The filters: whether a pod may run on a node, and if not, why, in
//! kube-scheduler's words. They run in kube-scheduler's order
//! (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit), plus node readiness, which kube-scheduler leaves to
//! the `node.kubernetes.io/not-ready` taint the node lifecycle controller
//! adds; the first that fails decides.

use crate::node::{NodeInfo, Readiness};
use crate::pod::PodInfo;
use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The taint `kubectl cordon` implies.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
/// The taint a node whose `Ready` is `False` implies.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The taint a node whose `Ready` is `Unknown` implies.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Why a node does not fit a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// `spec.unschedulable`, not tolerated.
    Unschedulable,
    /// Not `Ready`, not tolerated.
    NotReady,
    /// The pod names another node.
    NodeName,
    /// A `NoSchedule` or `NoExecute` taint the pod does not tolerate.
    Taint,
    /// The node selector or required node affinity does not match.
    Affinity,
    /// A host port the pod asks for is taken on the node.
    Ports,
    /// Not enough room; one reason per resource, in kube-scheduler's order.
    Resources(Vec<String>),
}

impl Unfit {
    /// The reasons as kube-scheduler words them in `0/N nodes are available: ...`.
    pub fn reasons(&self) -> Vec<String> {
        let one = |s: &str| vec![s.to_string()];
        match self {
            Unfit::Unschedulable => one("node(s) were unschedulable"),
            Unfit::NotReady => one("node(s) were not ready"),
            Unfit::NodeName => one("node(s) didn't match the requested node name"),
            Unfit::Taint => one("node(s) had untolerated taint(s)"),
            Unfit::Affinity => one("node(s) didn't match Pod's node affinity/selector"),
            Unfit::Ports => one("node(s) didn't have free ports for the requested pod ports"),
            Unfit::Resources(r) => r.clone(),
        }
    }
}

/// Runs every filter; the first failure is the answer.
pub fn check(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    node_unschedulable(pod, node)?;
    node_ready(pod, node)?;
    node_name(pod, node)?;
    taint_toleration(pod, node)?;
    node_affinity(pod, node)?;
    node_ports(pod, node)?;
    resources_fit(pod, node)
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    if node.unschedulable && !tolerates_implied(&pod.tolerations, UNSCHEDULABLE_TAINT) {
        return Err(Unfit::Unschedulable);
    }
    Ok(())
}

/// A node that is not `Ready` takes only pods tolerating the taint its
/// condition implies (`not-ready`, or `unreachable` when `Unknown`).
pub fn node_ready(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    let key = match node.readiness {
        Readiness::Ready => return Ok(()),
        Readiness::NotReady => NOT_READY_TAINT,
        Readiness::Unknown => UNREACHABLE_TAINT,
    };
    if tolerates_implied(&pod.tolerations, key) {
        Ok(())
    } else {
        Err(Unfit::NotReady)
    }
}

fn tolerates_implied(tolerations: &[Toleration], key: &str) -> bool {
    let taint = Taint {
        key: key.to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    };
    tolerations.iter().any(|t| tolerates(t, &taint))
}

/// NodeName: a pod naming a node fits only there.
pub fn node_name(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    match &pod.node_name {
        Some(name) if *name != node.name => Err(Unfit::NodeName),
        _ => Ok(()),
    }
}

/// TaintToleration: every `NoSchedule` and `NoExecute` taint must be
/// tolerated (`PreferNoSchedule` only scores).
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    let untolerated = node.taints.iter().any(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !pod.tolerations.iter().any(|t| tolerates(t, taint))
    });
    if untolerated {
        Err(Unfit::Taint)
    } else {
        Ok(())
    }
}

/// Whether a toleration tolerates a taint (`core/v1 Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// NodeAffinity: `spec.nodeSelector` (with the RuntimeClass's) and the
/// required node affinity must both match.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    let selector_ok = !pod.selector_conflict
        && pod
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod
        .required
        .as_ref()
        .is_none_or(|sel| selector_matches(sel, &node.name, &node.labels));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(Unfit::Affinity)
    }
}

/// A node selector: any of its terms matches.
pub fn selector_matches(sel: &NodeSelector, name: &str, labels: &BTreeMap<String, String>) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|term| term_matches(term, name, labels))
}

/// A term: all of its expressions and fields match; an empty term matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // Only `metadata.name` is a node field selector.
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(name))
        })
}

/// One requirement against a label's value (`None` when absent).
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let listed = |v: &str| values.iter().any(|x| x == v);
    match r.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => value.is_none_or(|v| !listed(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let [bound] = values else { return false };
            let (Ok(bound), Some(Ok(have))) = (bound.parse::<i64>(), value.map(str::parse::<i64>))
            else {
                return false;
            };
            if op == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// A host port, as kube-scheduler keys them: an empty or unspecified host
/// IP is `0.0.0.0` (every address), an empty protocol is `TCP`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

/// The wildcard host IP.
const ANY_IP: &str = "0.0.0.0";

impl HostPort {
    pub fn new(ip: Option<&str>, protocol: Option<&str>, port: i32) -> HostPort {
        let ip = match ip.map(str::trim).filter(|ip| !ip.is_empty()) {
            None => ANY_IP.to_string(),
            Some(ip) => match ip.parse::<IpAddr>() {
                Ok(a) if a.is_unspecified() => ANY_IP.to_string(),
                Ok(a) => a.to_string(),
                Err(_) => ip.to_string(),
            },
        };
        let protocol = protocol.filter(|p| !p.is_empty()).unwrap_or("TCP");
        HostPort {
            ip,
            protocol: protocol.to_string(),
            port,
        }
    }

    /// Whether two host ports cannot both be bound: the same protocol and
    /// port, on the same IP or with either on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// The host ports a pod asks for: the ports with a `hostPort` of its
/// containers and of its restartable init containers (sidecars), as
/// kube-scheduler's `GetHostPorts`.
pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    sidecars
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&hp| hp > 0)?;
            Some(HostPort::new(
                p.host_ip.as_deref(),
                p.protocol.as_deref(),
                port,
            ))
        })
        .collect()
}

/// NodePorts: every host port the pod asks for must be free of the host
/// ports of the pods bound or assumed on the node.
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    let taken = pod
        .host_ports
        .iter()
        .any(|want| node.host_ports.keys().any(|used| want.conflicts(used)));
    if taken { Err(Unfit::Ports) } else { Ok(()) }
}

/// NodeResourcesFit: the pod count, then cpu, memory, ephemeral storage and
/// scalar resources against what is left of the node's allocatable.
pub fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    let mut reasons = Vec::new();
    if node.pods as i64 + 1 > node.allowed_pods {
        reasons.push("Too many pods".to_string());
    }
    let want = &pod.requests.requests;
    let free = |alloc: i64, used: i64| alloc.saturating_sub(used);
    if want.milli_cpu > 0
        && want.milli_cpu > free(node.allocatable.milli_cpu, node.requested.milli_cpu)
    {
        reasons.push("Insufficient cpu".to_string());
    }
    if want.memory > 0 && want.memory > free(node.allocatable.memory, node.requested.memory) {
        reasons.push("Insufficient memory".to_string());
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage
            > free(
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage,
            )
    {
        reasons.push("Insufficient ephemeral-storage".to_string());
    }
    for (name, v) in &want.scalar {
        if *v > 0 && *v > free(node.allocatable.scalar(name), node.requested.scalar(name)) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Unfit::Resources(reasons))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Usage;
    use crate::pod::{PodInfo, RuntimeClassLookup};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    fn pod(spec: Value) -> PodInfo {
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}),
        )
        .unwrap();
        PodInfo::new(&p, RuntimeClassLookup::None)
    }

    fn node(spec: Value, labels: Value) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": labels},
            "spec": spec,
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "3", "example.com/gpu": "1"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        NodeInfo::from_node(&n)
    }

    fn c(requests: Value) -> Value {
        json!([{"name": "c", "image": "x", "resources": {"requests": requests}}])
    }

    /// What, pod spec, node spec, node labels, result.
    type Case = (&'static str, Value, Value, Value, Result<(), Unfit>);

    #[test]
    fn each_filter() {
        let none = json!({});
        let cases: Vec<Case> = vec![
            // what, pod spec, node spec, node labels, result
            (
                "fits",
                json!({"containers": c(json!({"cpu": "500m"}))}),
                json!({}),
                none.clone(),
                Ok(()),
            ),
            (
                "cordoned",
                json!({"containers": c(none.clone())}),
                json!({"unschedulable": true}),
                none.clone(),
                Err(Unfit::Unschedulable),
            ),
            (
                "cordoned, tolerated",
                json!({"containers": c(none.clone()),
                "tolerations": [{"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]}),
                json!({"unschedulable": true}),
                none.clone(),
                Ok(()),
            ),
            (
                "cordoned, tolerated by everything",
                json!({"containers": c(none.clone()), "tolerations": [{"operator": "Exists"}]}),
                json!({"unschedulable": true}),
                none.clone(),
                Ok(()),
            ),
            (
                "another node's name",
                json!({"containers": c(none.clone()), "nodeName": "n2"}),
                json!({}),
                none.clone(),
                Err(Unfit::NodeName),
            ),
            (
                "its own name",
                json!({"containers": c(none.clone()), "nodeName": "n1"}),
                json!({}),
                none.clone(),
                Ok(()),
            ),
            (
                "NoSchedule taint",
                json!({"containers": c(none.clone())}),
                json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
                none.clone(),
                Err(Unfit::Taint),
            ),
            (
                "NoExecute taint",
                json!({"containers": c(none.clone())}),
                json!({"taints": [{"key": "dedicated", "effect": "NoExecute"}]}),
                none.clone(),
                Err(Unfit::Taint),
            ),
            (
                "PreferNoSchedule only scores",
                json!({"containers": c(none.clone())}),
                json!({"taints": [{"key": "dedicated", "effect": "PreferNoSchedule"}]}),
                none.clone(),
                Ok(()),
            ),
            (
                "taint tolerated with Equal",
                json!({"containers": c(none.clone()),
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
                json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
                none.clone(),
                Ok(()),
            ),
            (
                "toleration with the wrong value",
                json!({"containers": c(none.clone()),
                "tolerations": [{"key": "dedicated", "value": "cpu"}]}),
                json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
                none.clone(),
                Err(Unfit::Taint),
            ),
            (
                "toleration for another effect",
                json!({"containers": c(none.clone()),
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}),
                json!({"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}),
                none.clone(),
                Err(Unfit::Taint),
            ),
            (
                "one of two taints tolerated",
                json!({"containers": c(none.clone()),
                "tolerations": [{"key": "a", "operator": "Exists"}]}),
                json!({"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]}),
                none.clone(),
                Err(Unfit::Taint),
            ),
            (
                "nodeSelector matches",
                json!({"containers": c(none.clone()), "nodeSelector": {"disk": "ssd"}}),
                json!({}),
                json!({"disk": "ssd", "zone": "a"}),
                Ok(()),
            ),
            (
                "nodeSelector does not",
                json!({"containers": c(none.clone()), "nodeSelector": {"disk": "ssd"}}),
                json!({}),
                json!({"disk": "hdd"}),
                Err(Unfit::Affinity),
            ),
            (
                "nodeSelector on a missing label",
                json!({"containers": c(none.clone()), "nodeSelector": {"disk": "ssd"}}),
                json!({}),
                none.clone(),
                Err(Unfit::Affinity),
            ),
            (
                "too much cpu",
                json!({"containers": c(json!({"cpu": "1500m"}))}),
                json!({}),
                none.clone(),
                Err(Unfit::Resources(vec!["Insufficient cpu".into()])),
            ),
            (
                "too much of everything",
                json!({"containers": c(json!({"cpu": "2", "memory": "2Gi", "example.com/gpu": "2", "example.com/fpga": "1"}))}),
                json!({}),
                none.clone(),
                Err(Unfit::Resources(vec![
                    "Insufficient cpu".into(),
                    "Insufficient memory".into(),
                    "Insufficient example.com/fpga".into(),
                    "Insufficient example.com/gpu".into(),
                ])),
            ),
            (
                "exactly all of it",
                json!({"containers": c(json!({"cpu": "1", "memory": "1Gi", "example.com/gpu": "1"}))}),
                json!({}),
                none.clone(),
                Ok(()),
            ),
            (
                "init containers count",
                json!({"containers": c(json!({"cpu": "100m"})),
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}),
                json!({}),
                none.clone(),
                Err(Unfit::Resources(vec!["Insufficient cpu".into()])),
            ),
            (
                "cordon is checked before taints",
                json!({"containers": c(none.clone())}),
                json!({"unschedulable": true, "taints": [{"key": "a", "effect": "NoSchedule"}]}),
                none.clone(),
                Err(Unfit::Unschedulable),
            ),
        ];
        for (what, pod_spec, node_spec, labels, want) in cases {
            assert_eq!(
                check(&pod(pod_spec), &node(node_spec, labels)),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn pods_already_on_the_node_count() {
        let mut n = node(json!({}), json!({}));
        let mut usage = Usage::default();
        usage.requests.requests.milli_cpu = 400;
        usage.requests.requests.memory = 1 << 29;
        n.add_pod(&usage);
        n.add_pod(&usage);
        let small = pod(json!({"containers": c(json!({"cpu": "200m"}))}));
        assert_eq!(check(&small, &n), Ok(()));
        let big = pod(json!({"containers": c(json!({"cpu": "300m", "memory": "1Mi"}))}));
        assert_eq!(
            check(&big, &n),
            Err(Unfit::Resources(vec![
                "Insufficient cpu".into(),
                "Insufficient memory".into()
            ]))
        );
        n.add_pod(&Usage::default());
        assert_eq!(
            check(&small, &n),
            Err(Unfit::Resources(vec!["Too many pods".into()]))
        );
    }

    #[test]
    fn node_ports() {
        let port = |ip: &str, protocol: &str, port: i32| {
            let mut p = json!({"containerPort": 80, "hostPort": port});
            if !ip.is_empty() {
                p["hostIP"] = json!(ip);
            }
            if !protocol.is_empty() {
                p["protocol"] = json!(protocol);
            }
            p
        };
        let with_ports = |ports: Vec<Value>| json!({"containers": [{"name": "c", "ports": ports}]});
        // what, the port a pod on the node holds, the port asked for, result
        let cases = [
            (
                "same port, both on every IP",
                port("", "", 8080),
                port("", "", 8080),
                Err(Unfit::Ports),
            ),
            (
                "another port",
                port("", "", 8080),
                port("", "", 8081),
                Ok(()),
            ),
            (
                "another protocol",
                port("", "TCP", 53),
                port("", "UDP", 53),
                Ok(()),
            ),
            (
                "TCP is the default protocol",
                port("", "", 53),
                port("", "TCP", 53),
                Err(Unfit::Ports),
            ),
            (
                "same IP",
                port("127.0.0.1", "", 80),
                port("127.0.0.1", "", 80),
                Err(Unfit::Ports),
            ),
            (
                "another IP",
                port("127.0.0.1", "", 80),
                port("127.0.0.2", "", 80),
                Ok(()),
            ),
            (
                "held on every IP, asked on one",
                port("0.0.0.0", "", 80),
                port("127.0.0.2", "", 80),
                Err(Unfit::Ports),
            ),
            (
                "held on one IP, asked on every",
                port("127.0.0.1", "", 80),
                port("", "", 80),
                Err(Unfit::Ports),
            ),
            (
                "held on ::, asked on one",
                port("::", "", 80),
                port("127.0.0.1", "", 80),
                Err(Unfit::Ports),
            ),
        ];
        for (what, held, wanted, want) in cases {
            let holder = pod(with_ports(vec![held]));
            let mut n = node(json!({}), json!({}));
            n.add_pod(&Usage {
                host_ports: holder.host_ports.clone(),
                ..Usage::default()
            });
            let p = pod(with_ports(vec![wanted.clone()]));
            assert_eq!(check(&p, &n), want, "{what}");
            n.remove_pod(&Usage {
                host_ports: holder.host_ports,
                ..Usage::default()
            });
            assert_eq!(check(&p, &n), Ok(()), "{what}: freed when the holder goes");
        }

        // Ports without a hostPort hold nothing; sidecars' host ports count,
        // other init containers' do not.
        let spec = json!({
            "initContainers": [
                {"name": "once", "ports": [{"containerPort": 1, "hostPort": 9001}]},
                {"name": "side", "restartPolicy": "Always", "ports": [{"containerPort": 2, "hostPort": 9002}]}],
            "containers": [{"name": "c", "ports": [{"containerPort": 8080}, {"containerPort": 3, "hostPort": 9003, "protocol": "UDP"}]}]});
        let ports: Vec<(String, String, i32)> = pod(spec)
            .host_ports
            .into_iter()
            .map(|p| (p.ip, p.protocol, p.port))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("0.0.0.0".into(), "TCP".into(), 9002),
                ("0.0.0.0".into(), "UDP".into(), 9003)
            ]
        );
        assert_eq!(
            Unfit::Ports.reasons(),
            vec!["node(s) didn't have free ports for the requested pod ports".to_string()]
        );
    }

    #[test]
    fn readiness() {
        let mut n = node(json!({}), json!({}));
        let p = pod(json!({"containers": c(json!({}))}));
        for (readiness, want) in [
            (Readiness::Ready, Ok(())),
            (Readiness::NotReady, Err(Unfit::NotReady)),
            (Readiness::Unknown, Err(Unfit::NotReady)),
        ] {
            n.readiness = readiness;
            assert_eq!(check(&p, &n), want, "{readiness:?}");
        }
        n.readiness = Readiness::NotReady;
        let tolerant = pod(json!({"containers": c(json!({})),
            "tolerations": [{"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoSchedule"}]}));
        assert_eq!(check(&tolerant, &n), Ok(()));
        n.readiness = Readiness::Unknown;
        assert_eq!(check(&tolerant, &n), Err(Unfit::NotReady));
    }

    #[test]
    fn node_affinity_operators() {
        let labels: BTreeMap<String, String> = [
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
            ("name".to_string(), "x".to_string()),
        ]
        .into();
        let expr = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let cases = [
            (expr("zone", "In", &["a", "b"]), true),
            (expr("zone", "In", &["b"]), false),
            (expr("gpu", "In", &["b"]), false),
            (expr("zone", "NotIn", &["b"]), true),
            (expr("zone", "NotIn", &["a"]), false),
            (expr("gpu", "NotIn", &["a"]), true),
            (expr("zone", "Exists", &[]), true),
            (expr("gpu", "Exists", &[]), false),
            (expr("gpu", "DoesNotExist", &[]), true),
            (expr("zone", "DoesNotExist", &[]), false),
            (expr("cores", "Gt", &["4"]), true),
            (expr("cores", "Gt", &["8"]), false),
            (expr("cores", "Lt", &["16"]), true),
            (expr("cores", "Lt", &["8"]), false),
            (expr("zone", "Gt", &["1"]), false),
            (expr("gpu", "Gt", &["1"]), false),
            (expr("cores", "Gt", &["1", "2"]), false),
            (expr("cores", "Gt", &["x"]), false),
            (expr("zone", "Bogus", &["a"]), false),
        ];
        for (r, want) in cases {
            let value = labels.get(&r.key).map(String::as_str);
            assert_eq!(requirement_matches(&r, value), want, "{r:?}");
        }

        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: Some(exprs),
                match_fields: Some(fields),
            }
        };
        let terms = [
            (term(vec![], vec![]), false),
            (term(vec![expr("zone", "In", &["a"])], vec![]), true),
            (
                term(
                    vec![expr("zone", "In", &["a"]), expr("gpu", "Exists", &[])],
                    vec![],
                ),
                false,
            ),
            (
                term(vec![], vec![expr("metadata.name", "In", &["n1"])]),
                true,
            ),
            (
                term(vec![], vec![expr("metadata.name", "In", &["n2"])]),
                false,
            ),
            (
                term(vec![], vec![expr("metadata.name", "NotIn", &["n2"])]),
                true,
            ),
            (
                term(vec![], vec![expr("metadata.uid", "In", &["n1"])]),
                false,
            ),
            (
                term(
                    vec![expr("zone", "In", &["a"])],
                    vec![expr("metadata.name", "In", &["n1"])],
                ),
                true,
            ),
        ];
        for (t, want) in &terms {
            assert_eq!(term_matches(t, "n1", &labels), *want, "{t:?}");
        }
        let any = NodeSelector {
            node_selector_terms: vec![terms[2].0.clone(), terms[3].0.clone()],
        };
        assert!(selector_matches(&any, "n1", &labels), "terms are ORed");
        assert!(!selector_matches(&NodeSelector::default(), "n1", &labels));
    }

    #[test]
    fn required_affinity_in_a_pod() {
        let p = pod(
            json!({"containers": c(json!({})), "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}),
        );
        assert_eq!(check(&p, &node(json!({}), json!({"zone": "a"}))), Ok(()));
        assert_eq!(
            check(&p, &node(json!({}), json!({"zone": "b"}))),
            Err(Unfit::Affinity)
        );
    }

    #[test]
    fn toleration_matching() {
        let taint = |key: &str, value: &str, effect: &str| Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.into(),
            time_added: None,
        };
        let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: (!op.is_empty()).then(|| op.to_string()),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: None,
        };
        let cases = [
            (
                tol("k", "Equal", "v", "NoSchedule"),
                taint("k", "v", "NoSchedule"),
                true,
            ),
            (tol("k", "", "v", ""), taint("k", "v", "NoExecute"), true),
            (
                tol("k", "Equal", "w", ""),
                taint("k", "v", "NoSchedule"),
                false,
            ),
            (
                tol("k", "Exists", "", ""),
                taint("k", "v", "NoSchedule"),
                true,
            ),
            (
                tol("", "Exists", "", ""),
                taint("any", "v", "NoExecute"),
                true,
            ),
            (
                tol("", "Exists", "", "NoSchedule"),
                taint("any", "", "NoExecute"),
                false,
            ),
            (
                tol("j", "Exists", "", ""),
                taint("k", "", "NoSchedule"),
                false,
            ),
            (
                tol("k", "Equal", "", ""),
                taint("k", "", "NoSchedule"),
                true,
            ),
            (
                tol("k", "Gt", "1", ""),
                taint("k", "2", "NoSchedule"),
                false,
            ),
        ];
        for (t, taint, want) in cases {
            assert_eq!(tolerates(&t, &taint), want, "{t:?} vs {taint:?}");
        }
    }
}
