//! A container's environment, made as the kubelet makes it: the Kubernetes
//! service variables (`NAME_SERVICE_HOST`, `NAME_PORT_80_TCP_ADDR`, ...),
//! then `envFrom` (ConfigMaps and Secrets, with a prefix), then `env` in
//! order: literal values with `$(VAR)` expansion over what came before, and
//! `valueFrom` ConfigMap and Secret keys, pod fields (downward API) and
//! resource fields. `command`, `args` and `subPathExpr` are expanded with
//! the result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, ResourceFieldSelector, Secret, Service,
};

use crate::resources::{self, Allocatable, Which};

/// Why an environment cannot be made (the container waits with
/// `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { name: String },
    #[error("secret \"{name}\" not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("unsupported resource: {0}")]
    Resource(String),
    #[error("resourceFieldRef names container {0:?}, which the pod does not have")]
    NoSuchContainer(String),
    #[error("environment variable {0}: fileKeyRef is not supported by this kubelet")]
    FileKeyRef(String),
}

/// The objects an environment reads, fetched beforehand: `None` for one
/// that does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub configmaps: HashMap<String, Option<Arc<ConfigMap>>>,
    pub secrets: HashMap<String, Option<Arc<Secret>>>,
    /// The services whose variables the container gets.
    pub services: Vec<Service>,
}

/// What the downward API reads besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub allocatable: Allocatable,
}

/// The ConfigMaps and Secrets a container's environment names.
pub fn referenced(c: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut configmaps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in c.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            configmaps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for var in c.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            configmaps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (configmaps, secrets)
}

/// An ordered environment where a later definition replaces an earlier one.
#[derive(Debug, Default)]
struct Env {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl Env {
    fn set(&mut self, key: String, value: String) {
        if !self.values.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.values.insert(key, value);
    }

    fn into_vec(mut self) -> Vec<(String, String)> {
        self.order
            .into_iter()
            .map(|k| {
                let v = self.values.remove(&k).unwrap_or_default();
                (k, v)
            })
            .collect()
    }
}

/// The environment of container `c` of the pod.
pub fn make(
    facts: Facts<'_>,
    c: &Container,
    sources: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = facts.pod.metadata.namespace.clone().unwrap_or_default();
    let mut env = Env::default();
    for (k, v) in service_env(&sources.services) {
        env.set(k, v);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.configmaps.get(&r.name).cloned().flatten() {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::ConfigMapNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).cloned().flatten() {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        env.set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::SecretNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match sources.configmaps.get(&r.name).cloned().flatten() {
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapNotFound {
                            name: r.name.clone(),
                        });
                    }
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                key: r.key.clone(),
                                namespace,
                                name: r.name.clone(),
                            });
                        }
                    },
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match sources.secrets.get(&r.name).cloned().flatten() {
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretNotFound {
                            name: r.name.clone(),
                        });
                    }
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKey {
                                key: r.key.clone(),
                                namespace,
                                name: r.name.clone(),
                            });
                        }
                    },
                }
            } else if let Some(f) = &from.field_ref {
                field_value(facts, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(facts, &c.name, r)?
            } else if from.file_key_ref.is_some() {
                return Err(EnvError::FileKeyRef(var.name.clone()));
            } else {
                String::new()
            }
        } else {
            let raw = var.value.clone().unwrap_or_default();
            expand(&raw, |name| env.values.get(name).cloned())
        };
        env.set(var.name.clone(), value);
    }
    Ok(env.into_vec())
}

/// `command` or `args` with `$(VAR)` expanded over the environment.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    items
        .iter()
        .map(|s| expand(s, |name| map.get(name).map(|v| v.to_string())))
        .collect()
}

/// Kubernetes' `$(VAR)` expansion: a defined `$(VAR)` becomes its value, an
/// undefined one stays as written, `$$` is a literal `$`, and a `$`
/// followed by anything else stays as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = String::from_utf8_lossy(&rest[1..close]);
                        match lookup(&name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => {
                                out.extend_from_slice(b"$(");
                                out.extend_from_slice(name.as_bytes());
                                out.push(b')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The service variables of `services` (those with a cluster IP), as the
/// kubelet makes them for service links.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by_key(|s| s.metadata.name.clone());
    for svc in sorted {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{name}_SERVICE_HOST"), ip.to_owned()));
        if let Some(first) = ports.first() {
            out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        if let Some(first) = ports.first() {
            let proto = first.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            out.push((
                format!("{name}_PORT"),
                format!("{proto}://{ip}:{}", first.port),
            ));
        }
        for p in ports {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let lower = proto.to_lowercase();
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((prefix.clone(), format!("{lower}://{ip}:{}", p.port)));
            out.push((format!("{prefix}_PROTO"), lower));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_owned()));
        }
    }
    out
}

fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

/// A `fieldRef` value: `metadata.name`, `metadata.namespace`,
/// `metadata.uid`, `metadata.labels['k']`, `metadata.annotations['k']`,
/// `metadata.labels` and `metadata.annotations` (as `k="v"` lines),
/// `spec.nodeName`, `spec.serviceAccountName`, `status.hostIP(s)`,
/// `status.podIP(s)`.
pub fn field_value(facts: Facts<'_>, path: &str) -> Result<String, EnvError> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").or_else(|| r.strip_prefix("[\"")))
            .and_then(|r| r.strip_suffix("']").or_else(|| r.strip_suffix("\"]")))
            .map(str::to_owned)
    };
    if let Some(key) = subscript("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|m| m.get(&key))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|m| m.get(&key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_owned(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_owned(),
        other => return Err(EnvError::FieldPath(other.to_owned())),
    })
}

/// `k="v"` lines, sorted by key, as the downward API writes a map.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `resourceFieldRef` value: a container's cpu or memory (or
/// ephemeral-storage) limit or request, divided by the divisor and rounded
/// up; a limit that is not set is the node's allocatable amount.
pub fn resource_value(
    facts: Facts<'_>,
    own: &str,
    sel: &ResourceFieldSelector,
) -> Result<String, EnvError> {
    let name = sel
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(own);
    let spec = facts.pod.spec.as_ref();
    let c = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == name)
        .ok_or_else(|| EnvError::NoSuchContainer(name.to_owned()))?;
    let (which, resource) = match sel.resource.split_once('.') {
        Some(("limits", r)) => (Which::Limits, r),
        Some(("requests", r)) => (Which::Requests, r),
        _ => return Err(EnvError::Resource(sel.resource.clone())),
    };
    let divisor = sel.divisor.as_ref();
    match resource {
        "cpu" => {
            let millis = match which {
                Which::Limits => {
                    resources::amount(c, which, "cpu").unwrap_or(facts.allocatable.cpu_millis)
                }
                Which::Requests => resources::amount(c, which, "cpu").unwrap_or(0),
            };
            let d = divisor
                .and_then(crate::quantity::millicores)
                .filter(|&d| d > 0)
                .unwrap_or(1000);
            Ok(div_ceil(millis, d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match which {
                Which::Limits => {
                    resources::amount(c, which, resource).unwrap_or(if resource == "memory" {
                        facts.allocatable.memory_bytes
                    } else {
                        0
                    })
                }
                Which::Requests => resources::amount(c, which, resource).unwrap_or(0),
            };
            let d = divisor
                .and_then(crate::quantity::units)
                .filter(|&d| d > 0)
                .unwrap_or(1);
            Ok(div_ceil(bytes, d).to_string())
        }
        r if r.starts_with("hugepages-") => Ok("0".into()),
        _ => Err(EnvError::Resource(sel.resource.clone())),
    }
}

fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, PodSpec, ResourceRequirements, SecretKeySelector, ServicePort,
        ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = [("A", "1"), ("B", "two"), ("EMPTY", "")];
        for (input, want) in [
            ("$(A)", "1"),
            ("x$(A)y$(B)z", "x1ytwoz"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(A)", "$(A)"),
            ("$$", "$"),
            ("$", "$"),
            ("a$b", "a$b"),
            ("$(A", "$(A"),
            ("$(EMPTY)-", "-"),
            ("$()", "$()"),
            ("héllo $(B) ü", "héllo two ü"),
            ("$$$(A)", "$1"),
        ] {
            assert_eq!(expand(input, lookup(&vars)), want, "{input}");
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([
                    ("app".into(), "web".into()),
                    ("tier".into(), "a\"b".into()),
                ])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                service_account_name: Some("sa".into()),
                containers: vec![Container {
                    name: "main".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
                        requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn facts(pod: &Pod) -> Facts<'_> {
        Facts {
            pod,
            pod_ip: "127.42.0.5",
            host_ip: "127.0.0.2",
            allocatable: Allocatable {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                pods: 1000,
            },
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(source),
            ..Default::default()
        }
    }

    fn field(path: &str) -> EnvVarSource {
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn env_from_everything_in_order() {
        let pod = pod();
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("color".into(), "blue".into()),
                ("size".into(), "L".into()),
            ])),
            ..Default::default()
        };
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "token".into(),
                ByteString(b"s3cret".to_vec()),
            )])),
            ..Default::default()
        };
        let sources = Sources {
            configmaps: HashMap::from([("cfg".into(), Some(Arc::new(cm))), ("gone".into(), None)]),
            secrets: HashMap::from([("sec".into(), Some(Arc::new(secret)))]),
            services: vec![Service {
                metadata: ObjectMeta {
                    name: Some("db-main".into()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    cluster_ip: Some("10.96.0.7".into()),
                    ports: Some(vec![ServicePort {
                        name: Some("sql".into()),
                        port: 5432,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        let c = Container {
            name: "main".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                secret_ref: None,
            }]),
            env: Some(vec![
                var("GREETING", "hello $(CFG_color) at $(DB_MAIN_SERVICE_HOST)"),
                from(
                    "TOKEN",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "sec".into(),
                            key: "token".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "MAYBE",
                    EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "gone".into(),
                            key: "x".into(),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    },
                ),
                from("POD", field("metadata.name")),
                from("NS", field("metadata.namespace")),
                from("UID", field("metadata.uid")),
                from("APP", field("metadata.labels['app']")),
                from("NODE", field("spec.nodeName")),
                from("IP", field("status.podIP")),
                from("HOST", field("status.hostIP")),
                from("SA", field("spec.serviceAccountName")),
                from(
                    "MEM",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.memory".into(),
                            divisor: Some(Quantity("1Mi".into())),
                            container_name: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "CPU",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.cpu".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "CPU_REQ_M",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "requests.cpu".into(),
                            divisor: Some(Quantity("1m".into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                var("CFG_size", "overridden"),
            ]),
            ..Default::default()
        };
        let env: HashMap<String, String> = make(facts(&pod), &c, &sources)
            .unwrap()
            .into_iter()
            .collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("GREETING"), Some("hello blue at 10.96.0.7"));
        assert_eq!(get("CFG_size"), Some("overridden"));
        assert_eq!(get("TOKEN"), Some("s3cret"));
        assert_eq!(get("MAYBE"), None);
        assert_eq!(get("POD"), Some("web"));
        assert_eq!(get("NS"), Some("prod"));
        assert_eq!(get("UID"), Some("u-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("IP"), Some("127.42.0.5"));
        assert_eq!(get("HOST"), Some("127.0.0.2"));
        assert_eq!(get("SA"), Some("sa"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU"), Some("4"), "no limit: the node's allocatable");
        assert_eq!(get("CPU_REQ_M"), Some("250"));
        assert_eq!(get("DB_MAIN_SERVICE_PORT"), Some("5432"));
        assert_eq!(get("DB_MAIN_SERVICE_PORT_SQL"), Some("5432"));
        assert_eq!(get("DB_MAIN_PORT"), Some("tcp://10.96.0.7:5432"));
        assert_eq!(get("DB_MAIN_PORT_5432_TCP_ADDR"), Some("10.96.0.7"));
        assert_eq!(get("DB_MAIN_PORT_5432_TCP_PROTO"), Some("tcp"));
        assert_eq!(
            referenced(&c),
            (
                BTreeSet::from(["cfg".into(), "gone".into()]),
                BTreeSet::from(["sec".into()])
            )
        );
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let pod = pod();
        let sources = Sources {
            configmaps: HashMap::from([(
                "cfg".into(),
                Some(Arc::new(ConfigMap {
                    data: Some(BTreeMap::new()),
                    ..Default::default()
                })),
            )]),
            ..Default::default()
        };
        let key = |name: &str, key: &str| Container {
            name: "main".into(),
            env: Some(vec![from(
                "X",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: name.into(),
                        key: key.into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let e = make(facts(&pod), &key("absent", "k"), &sources).unwrap_err();
        assert_eq!(e.to_string(), "configmap \"absent\" not found");
        let e = make(facts(&pod), &key("cfg", "k"), &sources).unwrap_err();
        assert_eq!(e.to_string(), "couldn't find key k in ConfigMap prod/cfg");
        let bad = Container {
            name: "main".into(),
            env: Some(vec![from("X", field("spec.bogus"))]),
            ..Default::default()
        };
        assert_eq!(
            make(facts(&pod), &bad, &sources).unwrap_err(),
            EnvError::FieldPath("spec.bogus".into())
        );
    }

    #[test]
    fn downward_maps_and_commands() {
        let pod = pod();
        assert_eq!(
            field_value(facts(&pod), "metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"a\\\"b\""
        );
        let env = vec![("NAME".to_owned(), "x".to_owned())];
        assert_eq!(
            expand_all(
                &["run".into(), "--name=$(NAME)".into(), "$(NOPE)".into()],
                &env
            ),
            ["run", "--name=x", "$(NOPE)"]
        );
    }
}
