//! The resources this apiserver serves: one row per resource, the single
//! source for routing, storage keys, discovery and kind-specific behaviour.

/// A subresource served under `RESOURCE/NAME/SUB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Status,
    Scale,
    Binding,
}

impl Sub {
    pub fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Binding => "binding",
        }
    }
}

/// One served resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Sub],
    /// Names must be DNS labels (63 chars, no dots) rather than subdomains.
    pub dns_label_names: bool,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has(&self, sub: Sub) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key prefix of this resource: `pods/` or `apps/deployments/`.
    pub fn key_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("{}/", self.plural)
        } else {
            format!("{}/{}/", self.group, self.plural)
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// The store prefix of a list: all namespaces, or one.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! resource {
    ($group:literal, $version:literal, $plural:literal, $singular:literal, $kind:literal,
     namespaced: $ns:literal, short: [$($short:literal),*], categories: $cat:expr,
     subresources: [$($sub:ident),*] $(, dns_label: $label:literal)?) => {
        Resource {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: $cat,
            subresources: &[$(Sub::$sub),*],
            dns_label_names: false $(|| $label)?,
        }
    };
}

/// Every resource served, in discovery order.
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "namespaces", "namespace", "Namespace", namespaced: false, short: ["ns"], categories: NONE, subresources: [Status], dns_label: true),
    resource!("", "v1", "pods", "pod", "Pod", namespaced: true, short: ["po"], categories: ALL, subresources: [Status, Binding]),
    resource!("", "v1", "nodes", "node", "Node", namespaced: false, short: ["no"], categories: NONE, subresources: [Status]),
    resource!("", "v1", "services", "service", "Service", namespaced: true, short: ["svc"], categories: ALL, subresources: [Status], dns_label: true),
    resource!("", "v1", "endpoints", "endpoints", "Endpoints", namespaced: true, short: ["ep"], categories: NONE, subresources: []),
    resource!("", "v1", "configmaps", "configmap", "ConfigMap", namespaced: true, short: ["cm"], categories: NONE, subresources: []),
    resource!("", "v1", "secrets", "secret", "Secret", namespaced: true, short: [], categories: NONE, subresources: []),
    resource!("", "v1", "events", "event", "Event", namespaced: true, short: ["ev"], categories: NONE, subresources: []),
    resource!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", namespaced: true, short: ["sa"], categories: NONE, subresources: []),
    resource!("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", namespaced: true, short: ["quota"], categories: NONE, subresources: [Status]),
    resource!("", "v1", "limitranges", "limitrange", "LimitRange", namespaced: true, short: ["limits"], categories: NONE, subresources: []),
    resource!("apps", "v1", "deployments", "deployment", "Deployment", namespaced: true, short: ["deploy"], categories: ALL, subresources: [Status, Scale]),
    resource!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", namespaced: true, short: ["rs"], categories: ALL, subresources: [Status, Scale]),
    resource!("batch", "v1", "jobs", "job", "Job", namespaced: true, short: [], categories: ALL, subresources: [Status]),
    resource!("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", namespaced: true, short: ["hpa"], categories: ALL, subresources: [Status]),
    resource!("coordination.k8s.io", "v1", "leases", "lease", "Lease", namespaced: true, short: [], categories: NONE, subresources: []),
    resource!("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", namespaced: true, short: [], categories: NONE, subresources: []),
    resource!("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", namespaced: true, short: ["netpol"], categories: NONE, subresources: []),
    resource!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", namespaced: true, short: [], categories: NONE, subresources: []),
    resource!("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", namespaced: false, short: [], categories: NONE, subresources: []),
    resource!("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", namespaced: true, short: [], categories: NONE, subresources: []),
    resource!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", namespaced: false, short: [], categories: NONE, subresources: []),
    resource!("node.k8s.io", "v1", "runtimeclasses", "runtimeclass", "RuntimeClass", namespaced: false, short: [], categories: NONE, subresources: []),
];

/// The resource at `group`/`version` named `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind within a group.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// Every group (in order, core first as "") with its one version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.iter().any(|(g, v)| *g == r.group && *v == r.version) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_by_group_resource_namespace_and_name() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "pods/default/web");
        assert_eq!(pods.list_prefix(Some("default")), "pods/default/");
        assert_eq!(pods.list_prefix(None), "pods/");
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.key(Some("ns"), "d"), "apps/deployments/ns/d");
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "kube-system"),
            "namespaces/kube-system"
        );
    }

    #[test]
    fn no_two_resources_share_a_name_or_short_name() {
        let mut seen = std::collections::HashSet::new();
        for r in RESOURCES {
            assert!(seen.insert((r.group, r.plural)), "{}", r.plural);
            for s in r.short_names {
                assert!(seen.insert(("short", s)), "{s}");
            }
        }
        assert_eq!(groups()[0], ("", "v1"));
        assert!(groups().contains(&("apps", "v1")));
    }
}
