//! The Node object: registration, and its status kept current: capacity and
//! allocatable (host cores and memory, `--max-pods`), addresses, node info
//! (the runtime's name and version from CRI Version), the Ready condition
//! (the runtime's own conditions) and the pressure conditions, and the
//! images the runtime holds (the scheduler prefers nodes that have a pod's
//! image), and the kubelet API's port (`daemonEndpoints`). The status is
//! recomputed every period and written when it changed, or at least every
//! [`REPORT_EVERY`]. A `spec.podCIDR` set by the controller-manager is
//! handed to the runtime (UpdateRuntimeConfig).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::Shared;
use crate::cri::Cri;
use crate::error::{KubeletError, chain, is_status};
use crate::events::node_ref;
use crate::resources::Allocatable;

/// The kubelet version a node reports (the apiserver's, with Shoal's).
pub const KUBELET_VERSION: &str = concat!("v1.37.0+shoal-", env!("CARGO_PKG_VERSION"));
/// The longest an unchanged status goes unwritten.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);
/// The most images listed in the status (as Kubernetes).
const MAX_IMAGES: usize = 50;
/// The most names listed per image.
const MAX_NAMES: usize = 5;
/// Below this much available memory the node reports MemoryPressure
/// (Kubernetes' default eviction threshold).
const MEMORY_PRESSURE_BELOW: u64 = 100 << 20;

/// What the host is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub cores: u64,
    pub memory_bytes: u64,
    pub hostname: String,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub system_uuid: String,
    pub architecture: &'static str,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A `/proc/meminfo` field, in bytes.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_field(&text, field)
}

fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// `PRETTY_NAME` from an os-release file.
fn pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
}

impl Host {
    /// Reads the host's facts from `/proc`, `/etc` and `/sys`.
    pub fn gather() -> Host {
        let machine_id = read_trimmed("/etc/machine-id");
        let system_uuid = Some(read_trimmed("/sys/class/dmi/id/product_uuid"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| machine_id.clone());
        Host {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_bytes: meminfo("MemTotal").unwrap_or(0),
            hostname: Some(read_trimmed("/proc/sys/kernel/hostname"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "localhost".into()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|t| pretty_name(&t))
                .unwrap_or_else(|| "Linux".into()),
            machine_id,
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            system_uuid,
            architecture: match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "arm" => "arm",
                "s390x" => "s390x",
                "powerpc64" => "ppc64le",
                other => other,
            },
        }
    }

    /// What pods may use.
    pub fn allocatable(&self, max_pods: u32) -> Allocatable {
        Allocatable {
            cpu_millis: i64::try_from(self.cores * 1000).unwrap_or(i64::MAX),
            memory_bytes: i64::try_from(self.memory_bytes).unwrap_or(i64::MAX),
            pods: i64::from(max_pods),
        }
    }
}

/// What changes from one status to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// `NAME://VERSION` from CRI Version, if the runtime answered.
    pub runtime_version: Option<String>,
    /// Why the runtime is not ready, if it is not.
    pub runtime_not_ready: Option<String>,
    pub images: Vec<ContainerImage>,
    pub memory_pressure: bool,
    pub pid_pressure: bool,
}

/// Reads what the runtime and the host say now.
pub async fn observe(cri: &Cri) -> Observed {
    let (runtime_version, mut not_ready) = match cri.version().await {
        Ok(v) => (
            Some(format!("{}://{}", v.runtime_name, v.runtime_version)),
            None,
        ),
        Err(e) => (
            None,
            Some(format!("container runtime is down: {}", chain(&e))),
        ),
    };
    if not_ready.is_none() {
        match cri.status().await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => not_ready = Some(format!("container runtime not ready: {why}")),
            Err(e) => {
                not_ready = Some(format!(
                    "container runtime status check may not have completed yet: {}",
                    chain(&e)
                ))
            }
        }
    }
    let images = match cri.list_images().await {
        Ok(list) => image_list(list),
        Err(_) => Vec::new(),
    };
    Observed {
        runtime_version,
        runtime_not_ready: not_ready,
        images,
        memory_pressure: meminfo("MemAvailable").is_some_and(|a| a < MEMORY_PRESSURE_BELOW),
        pid_pressure: pid_pressure(),
    }
}

/// Whether the host's process count is over 90% of `pid_max`.
fn pid_pressure() -> bool {
    let max: u64 = read_trimmed("/proc/sys/kernel/pid_max")
        .parse()
        .unwrap_or(0);
    let running = read_trimmed("/proc/loadavg")
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    max > 0 && running * 10 > max * 9
}

/// The images of the node status: names (repo digests, then tags), sizes,
/// largest first.
pub fn image_list(images: Vec<k8s_cri::v1::Image>) -> Vec<ContainerImage> {
    let mut out: Vec<ContainerImage> = images
        .into_iter()
        .filter_map(|i| {
            let mut names: Vec<String> = i.repo_digests.into_iter().chain(i.repo_tags).collect();
            names.truncate(MAX_NAMES);
            (!names.is_empty()).then(|| ContainerImage {
                names: Some(names),
                size_bytes: Some(i64::try_from(i.size).unwrap_or(i64::MAX)),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.size_bytes
            .cmp(&a.size_bytes)
            .then_with(|| a.names.cmp(&b.names))
    });
    out.truncate(MAX_IMAGES);
    out
}

/// The node's labels.
fn labels(name: &str, host: &Host) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".into(), name.to_owned()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), host.architecture.to_owned()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        (
            "beta.kubernetes.io/arch".into(),
            host.architecture.to_owned(),
        ),
    ])
}

/// The node's status, keeping transition times of unchanged conditions.
pub fn status(
    node_ip: &str,
    kubelet_port: u16,
    host: &Host,
    max_pods: u32,
    observed: &Observed,
    old: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let now = Time(Timestamp::from_second(now.as_second()).unwrap_or(now));
    let cond = |type_: &str, status: bool, reason: &str, message: &str| {
        let s = if status { "True" } else { "False" };
        let since = old
            .and_then(|o| o.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == s)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: type_.to_owned(),
            status: s.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(since),
        }
    };
    let conditions = vec![
        if observed.memory_pressure {
            cond(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            cond(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        cond(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        if observed.pid_pressure {
            cond(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            cond(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        match &observed.runtime_not_ready {
            None => cond(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
            ),
            Some(why) => cond("Ready", false, "KubeletNotReady", why),
        },
    ];
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(host.cores.to_string())),
        (
            "memory".to_owned(),
            Quantity(format!("{}Ki", host.memory_bytes / 1024)),
        ),
        ("pods".to_owned(), Quantity(max_pods.to_string())),
    ]);
    let runtime_version = observed
        .runtime_version
        .clone()
        .or_else(|| {
            old.and_then(|o| o.node_info.as_ref())
                .map(|i| i.container_runtime_version.clone())
        })
        .unwrap_or_default();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: node_ip.to_owned(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: host.hostname.clone(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: host.architecture.to_owned(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: runtime_version,
            kernel_version: host.kernel.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_owned(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: host.os_image.clone(),
            system_uuid: host.system_uuid.clone(),
            ..Default::default()
        }),
        images: Some(observed.images.clone()),
        daemon_endpoints: if kubelet_port > 0 {
            Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(kubelet_port),
                }),
            })
        } else {
            old.and_then(|o| o.daemon_endpoints.clone())
        },
        ..old.cloned().unwrap_or_default()
    }
}

/// Whether two statuses differ in more than heartbeat times.
fn differs(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) != strip(b)
}

/// Registers the node, then keeps its status current until the task is
/// dropped. `registered` turns true once the Node exists.
pub(crate) async fn run(shared: Arc<Shared>, registered: watch::Sender<bool>) {
    let name = shared.config.node_name.clone();
    let api: Api<Node> = Api::all(shared.client.clone());
    let node_ip = shared.config.node_ip.to_string();
    let mut last: Option<(NodeStatus, Instant)> = None;
    let mut is_registered = false;
    let mut ready: Option<bool> = None;
    let mut tick = tokio::time::interval(shared.config.node_status_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let observed = observe(&shared.cri).await;
        let old = last.as_ref().map(|(s, _)| s);
        let new = status(
            &node_ip,
            shared.api_port,
            &shared.host,
            shared.config.max_pods,
            &observed,
            old,
            Timestamp::now(),
        );
        if !is_registered {
            match register(&api, &name, &shared.host, new.clone()).await {
                Ok(()) => {
                    is_registered = true;
                    registered.send_replace(true);
                    shared
                        .recorder
                        .normal(&node_ref(&name), "Starting", "Starting kubelet.");
                    tracing::info!(node = %name, "node registered");
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot register the node; retrying");
                    continue;
                }
            }
        }
        let due = match &last {
            None => true,
            Some((s, at)) => differs(s, &new) || at.elapsed() >= REPORT_EVERY,
        };
        if due {
            let patch = serde_json::json!({"status": &new});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    let now_ready = observed.runtime_not_ready.is_none();
                    if ready != Some(now_ready) {
                        let (reason, message) = if now_ready {
                            ("NodeReady", format!("Node {name} status is now: NodeReady"))
                        } else {
                            (
                                "NodeNotReady",
                                format!("Node {name} status is now: NodeNotReady"),
                            )
                        };
                        shared.recorder.normal(&node_ref(&name), reason, message);
                        ready = Some(now_ready);
                    }
                    last = Some((new, Instant::now()));
                }
                Err(e) if is_status(&e, 404) => {
                    tracing::warn!("the node object is gone; registering again");
                    is_registered = false;
                    last = None;
                }
                Err(e) => tracing::info!(error = %e, "cannot update the node status; will retry"),
            }
        }
    }
}

/// Creates the Node (or takes the one that exists, updating its labels and
/// addresses).
async fn register(
    api: &Api<Node>,
    name: &str,
    host: &Host,
    status: NodeStatus,
) -> Result<(), KubeletError> {
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels(name, host)),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(status.clone()),
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 409) => {
            let patch = serde_json::json!({"metadata": {"labels": labels(name, host)}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(KubeletError::api(format!(
                    "update the labels of node {name}"
                )))?;
        }
        Err(e) => return Err(KubeletError::api(format!("register node {name}"))(e)),
    }
    let patch = serde_json::json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(KubeletError::api(format!(
            "write the status of node {name}"
        )))?;
    Ok(())
}

/// Follows the Node's `spec.podCIDR` and hands it to the runtime.
pub(crate) async fn follow_pod_cidr(shared: Arc<Shared>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut stream = watcher::watch_object(api, &shared.config.node_name).boxed();
    let mut applied: Option<String> = None;
    let mut delay = Duration::from_millis(500);
    loop {
        match stream.next().await {
            Some(Ok(Some(node))) => {
                delay = Duration::from_millis(500);
                let cidr = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty());
                if let Some(cidr) = cidr
                    && applied.as_ref() != Some(&cidr)
                {
                    match shared.cri.update_pod_cidr(&cidr).await {
                        Ok(()) => {
                            tracing::info!(%cidr, "pod CIDR handed to the runtime");
                            applied = Some(cidr);
                        }
                        Err(e) => {
                            tracing::warn!(error = %chain(&e), "cannot hand the pod CIDR to the runtime")
                        }
                    }
                }
            }
            Some(Ok(None)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "node watch failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            cores: 4,
            memory_bytes: 8 << 30,
            hostname: "box".into(),
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            system_uuid: "u".into(),
            architecture: "amd64",
        }
    }

    fn observed() -> Observed {
        Observed {
            runtime_version: Some("shoal://0.1.0".into()),
            runtime_not_ready: None,
            images: vec![],
            memory_pressure: false,
            pid_pressure: false,
        }
    }

    #[test]
    fn status_reports_capacity_info_and_conditions() {
        let s = status(
            "127.0.0.2",
            10250,
            &host(),
            1000,
            &observed(),
            None,
            Timestamp::from_second(100).unwrap(),
        );
        let cap = s.capacity.clone().unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, format!("{}Ki", 8 << 20));
        assert_eq!(cap["pods"].0, "1000");
        assert_eq!(s.allocatable, s.capacity);
        let info = s.node_info.clone().unwrap();
        assert_eq!(info.container_runtime_version, "shoal://0.1.0");
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(
            (info.operating_system.as_str(), info.architecture.as_str()),
            ("linux", "amd64")
        );
        assert_eq!(
            s.daemon_endpoints
                .as_ref()
                .and_then(|d| d.kubelet_endpoint.as_ref()),
            Some(&DaemonEndpoint { port: 10250 })
        );
        let addrs = s.addresses.clone().unwrap();
        assert_eq!(
            (addrs[0].type_.as_str(), addrs[0].address.as_str()),
            ("InternalIP", "127.0.0.2")
        );
        let types: Vec<&str> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );

        // A later status with the same facts differs only in heartbeats.
        let later = status(
            "127.0.0.2",
            10250,
            &host(),
            1000,
            &observed(),
            Some(&s),
            Timestamp::from_second(200).unwrap(),
        );
        assert!(!differs(&s, &later));
        let mut down = observed();
        down.runtime_not_ready = Some("container runtime is down".into());
        down.runtime_version = None;
        let d = status(
            "127.0.0.2",
            10250,
            &host(),
            1000,
            &down,
            Some(&s),
            Timestamp::from_second(300).unwrap(),
        );
        assert!(differs(&s, &d));
        let r = d
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (r.status.as_str(), r.message.as_deref()),
            ("False", Some("container runtime is down"))
        );
        assert_eq!(
            r.last_transition_time,
            Some(Time(Timestamp::from_second(300).unwrap()))
        );
        assert_eq!(
            d.node_info.unwrap().container_runtime_version,
            "shoal://0.1.0",
            "the last version known"
        );
    }

    #[test]
    fn images_list_digests_then_tags_largest_first() {
        let img = |tags: &[&str], digests: &[&str], size| k8s_cri::v1::Image {
            id: "sha256:x".into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            size,
            ..Default::default()
        };
        let list = image_list(vec![
            img(&["docker.io/library/hello:v1"], &[], 10),
            img(&["r/big:1"], &["r/big@sha256:aa"], 99),
            img(&[], &[], 5),
        ]);
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].names.as_deref().unwrap(),
            ["r/big@sha256:aa", "r/big:1"]
        );
        assert_eq!(list[1].size_bytes, Some(10));
    }

    #[test]
    fn host_files_parse() {
        assert_eq!(
            meminfo_field(
                "MemTotal:       16384 kB\nMemAvailable: 2048 kB\n",
                "MemAvailable"
            ),
            Some(2 << 20)
        );
        assert_eq!(meminfo_field("MemTotal: 1 kB\n", "MemFree"), None);
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n").as_deref(),
            Some("Debian GNU/Linux 12")
        );
        let h = Host::gather();
        assert!(h.cores >= 1 && h.memory_bytes > 0, "{h:?}");
    }
}
