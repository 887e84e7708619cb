//! End to end: a real `shoal server`, a real node (`shoal node`, or `shoal
//! cri` and `shoal kubelet` as two processes), sample Wasm guests imported
//! into the node's image store with `shoal image import`, pods created
//! through the API (and `kubectl`), and the runtime looked at through its
//! own CRI socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_cri::v1 as cri_api;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Event, Node, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use testbed::{NodeOptions, ShoalNode, ShoalServer, shoal};

/// How long any one wait may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// The node's address.
const NODE_IP: &str = "127.0.0.2";
const NODE: &str = "node-a";

/// The binary under test.
const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A pod CIDR no concurrently running test process shares.
fn pod_cidr() -> String {
    testbed::pod_cidr(0)
}

/// Imports the sample guests, then starts `shoal node` (or, with `split`,
/// `shoal cri` and `shoal kubelet`).
fn start_node(server: &ShoalServer, split: bool) -> anyhow::Result<ShoalNode> {
    ShoalNode::start(
        Path::new(SHOAL),
        &server.kubeconfig(),
        &NodeOptions {
            name: NODE,
            node_ip: NODE_IP,
            split,
            images: &[
                (artifacts::HELLO, "hello:v1"),
                (artifacts::BATCH_PI, "batch-pi:v1"),
                (artifacts::DEEP_RECURSION, "deep-recursion:v1"),
                (artifacts::INFINITE_LOOP, "infinite-loop:v1"),
                (artifacts::HELLO_HTTP, "hello-http:v1"),
            ],
            extra: &["--backoff-base", "1", "--backoff-max", "4"],
        },
    )
}

/// A CRI client on the node's runtime socket.
async fn cri(node: &ShoalNode) -> cri::client::RuntimeClient {
    cri::client::connect(node.socket()).await.unwrap().0
}

struct Cluster {
    server: ShoalServer,
    node: ShoalNode,
    client: kube::Client,
    pods: Api<Pod>,
}

impl Cluster {
    async fn start(split: bool) -> anyhow::Result<Cluster> {
        let server = ShoalServer::start(Path::new(SHOAL), &[])?;
        let client = kubelet::client_from_kubeconfig(&server.kubeconfig()).await?;
        let node = start_node(&server, split)?;
        let c = Cluster {
            pods: Api::namespaced(client.clone(), "default"),
            server,
            node,
            client,
        };
        let nodes: Api<Node> = Api::all(c.client.clone());
        c.wait("the node is Ready", || async {
            nodes
                .get(NODE)
                .await
                .is_ok_and(|n| condition(&n, "Ready") == Some("True"))
        })
        .await?;
        // Pods get IPs of their own: the runtime takes the node's pod CIDR.
        let cidr = pod_cidr();
        nodes
            .patch(
                NODE,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"podCIDR": cidr}})),
            )
            .await?;
        let mut rt = cri(&c.node).await;
        c.wait("the runtime has the node's pod CIDR", || {
            let mut rt = rt.clone();
            let cidr = cidr.clone();
            async move {
                rt.status(cri_api::StatusRequest { verbose: true })
                    .await
                    .is_ok_and(|r| {
                        r.into_inner()
                            .info
                            .get("config")
                            .is_some_and(|c| c.contains(&cidr))
                    })
            }
        })
        .await?;
        let _ = rt.version(cri_api::VersionRequest::default()).await?;
        Ok(c)
    }

    /// Waits until `condition` holds; on a timeout the error carries the
    /// node's logs.
    async fn wait<F, Fut>(&self, what: &str, condition: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        testbed::wait_until(what, DEADLINE, condition)
            .await
            .with_context(|| self.node.logs())
    }

    async fn create(&self, name: &str, spec: serde_json::Value) -> anyhow::Result<Pod> {
        let mut spec = spec;
        spec["nodeName"] = json!(NODE);
        spec.as_object_mut()
            .unwrap()
            .entry("terminationGracePeriodSeconds")
            .or_insert(json!(2));
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"test": name}},
            "spec": spec,
        }))?;
        Ok(self.pods.create(&PostParams::default(), &pod).await?)
    }

    /// Waits until the pod satisfies `f`; returns it.
    async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&Pod) -> bool,
    ) -> anyhow::Result<Pod> {
        let pods = self.pods.clone();
        let waited = self
            .wait(&format!("pod {name}: {what}"), || async {
                pods.get(name).await.is_ok_and(|p| f(&p))
            })
            .await;
        if let Err(e) = waited {
            let last = self
                .pods
                .get(name)
                .await
                .map(|p| serde_json::to_string_pretty(&p.status).unwrap_or_default())
                .unwrap_or_default();
            return Err(e.context(format!("the pod's status was: {last}")));
        }
        Ok(self.pods.get(name).await?)
    }

    /// The events about a pod, as `REASON: MESSAGE` lines.
    async fn events(&self, pod: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
        events
            .list(&lp)
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.reason.unwrap_or_default(),
                            e.message.unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let s = pod.status.as_ref()?;
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
}

fn running(pod: &Pod, name: &str) -> bool {
    status(pod, name).is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

fn waiting_reason(pod: &Pod, name: &str) -> Option<String> {
    status(pod, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// The runtime id of a container (`shoal://ID` in its status).
fn container_id(pod: &Pod, name: &str) -> String {
    status(pod, name)
        .and_then(|c| c.container_id.clone())
        .unwrap_or_default()
        .trim_start_matches("shoal://")
        .to_owned()
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The pod's containers as the runtime lists them.
async fn runtime_containers(
    rt: &mut cri::client::RuntimeClient,
    pod_uid: &str,
) -> Vec<cri_api::Container> {
    rt.list_containers(cri_api::ListContainersRequest {
        filter: Some(cri_api::ContainerFilter {
            label_selector: [("io.kubernetes.pod.uid".to_string(), pod_uid.to_string())].into(),
            ..Default::default()
        }),
    })
    .await
    .map(|r| r.into_inner().containers)
    .unwrap_or_default()
}

async fn exec(
    rt: &mut cri::client::RuntimeClient,
    id: &str,
    cmd: &[&str],
) -> anyhow::Result<(i32, String)> {
    let r = rt
        .exec_sync(cri_api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await?
        .into_inner();
    Ok((r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned()))
}

/// The container's log file under the node's data directory.
fn log_file(node: &ShoalNode, pod: &Pod, container: &str, restarts: i32) -> PathBuf {
    node.dir().join(format!(
        "logs/pods/default_{}_{}/{container}/{restarts}.log",
        pod.metadata.name.as_deref().unwrap_or_default(),
        uid(pod)
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_registers_and_hello_runs_to_completion() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;

    // The Node: capacity, addresses, node info, conditions, images.
    let node = Api::<Node>::all(c.client.clone()).get(NODE).await?;
    let st = node.status.clone().unwrap();
    let cap = st.capacity.clone().unwrap();
    assert_eq!(cap["pods"].0, "1000");
    let cores = std::thread::available_parallelism()?.get();
    assert_eq!(cap["cpu"].0, cores.to_string());
    assert!(cap["memory"].0.ends_with("Ki"), "{:?}", cap["memory"]);
    assert_eq!(st.allocatable, st.capacity);
    let addrs = st.addresses.clone().unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == NODE_IP),
        "{addrs:?}"
    );
    assert!(addrs.iter().any(|a| a.type_ == "Hostname"), "{addrs:?}");
    let info = st.node_info.clone().unwrap();
    assert!(
        info.container_runtime_version.starts_with("shoal://"),
        "{info:?}"
    );
    assert_eq!(info.kubelet_version, kubelet::KUBELET_VERSION);
    assert_eq!(info.operating_system, "linux");
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&node, kind), Some("False"), "{kind}");
    }
    let images = st.images.clone().unwrap_or_default();
    assert!(
        images.iter().any(|i| i
            .names
            .iter()
            .flatten()
            .any(|n| n == "docker.io/library/hello:v1")
            && i.size_bytes > Some(0)),
        "{images:?}"
    );
    assert_eq!(
        node.spec.unwrap().pod_cidr.as_deref(),
        Some(pod_cidr().as_str())
    );

    // The heartbeat, taken once the Node is registered.
    let leases = Api::<Lease>::namespaced(c.client.clone(), kubelet::LEASE_NAMESPACE);
    c.wait("the node holds its lease", || async {
        leases.get_opt(NODE).await.is_ok_and(|l| l.is_some())
    })
    .await?;
    let lease = leases.get(NODE).await?;
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert_eq!(
        lease.metadata.owner_references.unwrap()[0].uid,
        node.metadata.uid.clone().unwrap()
    );

    // A pod that runs to completion, with its arguments and environment.
    c.create(
        "hello",
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "hello",
                "image": "hello:v1",
                "args": ["one", "$(WHO)"],
                "env": [
                    {"name": "WHO", "value": "world"},
                    {"name": "GREETING", "value": "hi $(WHO)"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                ],
            }],
        }),
    )
    .await?;
    let pod = c
        .wait_pod("hello", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let cs = status(&pod, "hello").unwrap();
    let term = cs.state.clone().unwrap().terminated.unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert!(term.started_at.is_some() && term.finished_at.is_some());
    assert!(cs.container_id.as_deref().unwrap().starts_with("shoal://"));
    assert!(cs.image_id.starts_with("sha256:"), "{cs:?}");
    assert_eq!(cs.image, "hello:v1");
    let s = pod.status.clone().unwrap();
    assert_eq!(s.host_ip.as_deref(), Some(NODE_IP));
    let pod_ip = s.pod_ip.clone().unwrap();
    assert!(
        pod_cidr().starts_with(pod_ip.rsplit_once('.').unwrap().0),
        "{pod_ip} in {}",
        pod_cidr()
    );
    assert!(s.start_time.is_some());
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    let conditions: Vec<(String, String)> = s
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    for (t, want) in [
        ("Initialized", "True"),
        ("Ready", "False"),
        ("PodScheduled", "True"),
    ] {
        assert!(
            conditions.contains(&(t.into(), want.into())),
            "{t}: {conditions:?}"
        );
    }
    let log = std::fs::read_to_string(log_file(&c.node, &pod, "hello", 0))?;
    for line in [
        "stdout F arg: one",
        "stdout F arg: world",
        "env: GREETING=hi world",
        "env: POD_NAME=hello",
        &format!("env: POD_IP={pod_ip}"),
        &format!("env: NODE_NAME={NODE}"),
        "env: KUBERNETES_SERVICE_HOST=",
    ] {
        assert!(log.contains(line), "{line:?} in:\n{log}");
    }
    let events = c.events("hello").await;
    for reason in [
        "Pulled: ",
        "Created: Created container: hello",
        "Started: Started container hello",
    ] {
        assert!(
            events.iter().any(|e| e.starts_with(reason)),
            "{reason} in {events:?}"
        );
    }
    Ok(())
}

/// The unix stream connections `pid` accepted (on any listening socket; the
/// runtime's is bound under a temporary name and renamed), as `ss -xpn`
/// shows them: for each, the PIDs holding its peer end.
fn accepted_connections(pid: u32) -> anyhow::Result<Vec<Vec<u32>>> {
    let out = std::process::Command::new("ss").args(["-xpn"]).output()?;
    anyhow::ensure!(out.status.success(), "ss -xpn failed: {out:?}");
    let text = String::from_utf8(out.stdout)?;
    let pids = |line: &str| -> Vec<u32> {
        line.split("pid=")
            .skip(1)
            .filter_map(|s| s.split(',').next()?.parse().ok())
            .collect()
    };
    // Netid State Recv-Q Send-Q Local Port Peer Port Process; a client's
    // end has no local address (`*`), an accepted end its listener's path.
    let mut by_inode = std::collections::HashMap::new();
    let mut accepted = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "ESTAB" {
            continue;
        }
        by_inode.insert(f[5].to_owned(), pids(line));
        if f[4] != "*" && pids(line).contains(&pid) {
            accepted.push(f[7].to_owned());
        }
    }
    Ok(accepted
        .into_iter()
        .map(|peer| by_inode.get(&peer).cloned().unwrap_or_default())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn shoal_node_s_kubelet_calls_its_runtime_in_process() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    // The kubelet has registered the node (Version, Status) and now runs a
    // pod to its end: every CRI call a pod needs.
    c.create(
        "local",
        json!({
            "restartPolicy": "Never",
            "containers": [{"name": "hello", "image": "hello:v1", "args": ["one"]}],
        }),
    )
    .await?;
    c.wait_pod("local", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let mut rt = cri(&c.node).await;
    rt.version(cri_api::VersionRequest::default()).await?;
    let node = c.node.pid().context("the node's PID")?;
    let me = std::process::id();
    let peers = accepted_connections(node)?;
    // This test's own client is seen: the check can see a connection and
    // who holds its other end.
    assert!(
        peers.iter().any(|p| p.contains(&me)),
        "the test's own connection to the runtime is not seen: {peers:?}"
    );
    // No connection the node accepted comes from the node's own process.
    assert!(
        !peers.iter().any(|p| p.contains(&node)),
        "the node's kubelet dialled its runtime's socket: {peers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_pi_prints_digits_and_fails_on_a_bad_argument() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    for (name, arg) in [("pi", "5"), ("pi-bad", "0")] {
        c.create(
            name,
            json!({
                "restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "batch-pi:v1", "args": [arg]}],
            }),
        )
        .await?;
    }
    let ok = c
        .wait_pod("pi", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let log = std::fs::read_to_string(log_file(&c.node, &ok, "pi", 0))?;
    assert!(log.contains("stdout F 3.1415"), "{log}");

    let bad = c
        .wait_pod("pi-bad", "Failed", |p| phase(p) == "Failed")
        .await?;
    let term = status(&bad, "pi")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (2, Some("Error")));
    let ready = bad.status.unwrap().conditions.unwrap();
    assert!(
        ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_guest_crash_loops_with_the_trap_in_describe() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    c.create(
        "deep",
        json!({"containers": [{"name": "deep", "image": "deep-recursion:v1"}]}),
    )
    .await?;
    let pod = c
        .wait_pod("deep", "in CrashLoopBackOff after a restart", |p| {
            waiting_reason(p, "deep").as_deref() == Some("CrashLoopBackOff")
                && status(p, "deep").is_some_and(|s| s.restart_count >= 1)
        })
        .await?;
    assert_eq!(
        phase(&pod),
        "Running",
        "restartPolicy Always keeps the pod Running"
    );
    let cs = status(&pod, "deep").unwrap();
    let waiting = cs.state.clone().unwrap().waiting.unwrap();
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("back-off "),
        "{waiting:?}"
    );
    let last = cs.last_state.clone().unwrap().terminated.unwrap();
    assert_eq!(last.reason.as_deref(), Some("Trapped"));
    assert_eq!(last.exit_code, 1);
    assert!(
        last.message
            .as_deref()
            .unwrap_or_default()
            .contains("deep_recursion"),
        "{last:?}"
    );

    // kubectl describe shows the state, the trap and its backtrace.
    let kubectl = c.server.kubectl();
    let mut described = String::new();
    c.wait("kubectl describe shows the crash loop", || {
        described = kubectl.run(&["describe", "pod", "deep"]).ok();
        let d = described.clone();
        async move {
            d.contains("CrashLoopBackOff")
                && d.lines().any(|l| {
                    let l = l.trim();
                    l.starts_with("Reason:") && l.ends_with(" Trapped")
                })
        }
    })
    .await
    .with_context(|| described.clone())?;
    assert!(described.contains("wasm backtrace"), "{described}");
    assert!(
        described.contains("Back-off restarting failed container deep"),
        "{described}"
    );
    let listed = kubectl.run(&["get", "pod", "deep"]).ok();
    assert!(listed.contains("deep"), "{listed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn configmap_volumes_and_env_reach_the_guest_and_follow_updates() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg"},
        "data": {"greeting": "hello-world", "color": "blue", "size": "L"},
    }))?;
    cms.create(&PostParams::default(), &cm).await?;
    c.create(
        "web",
        json!({
            "initContainers": [{"name": "setup", "image": "hello:v1", "args": ["init"]}],
            "volumes": [
                {"name": "config", "configMap": {"name": "cfg", "items": [{"key": "greeting", "path": "g.txt", "mode": 0o600}]}},
                {"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o640}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "scratch", "emptyDir": {}},
            ],
            "containers": [{
                "name": "web",
                "image": "infinite-loop:v1",
                "env": [{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}}],
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/config"},
                    {"name": "all", "mountPath": "/etc/all", "readOnly": true},
                    {"name": "info", "mountPath": "/etc/info"},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
            }],
        }),
    )
    .await?;
    let pod = c.wait_pod("web", "Running", |p| running(p, "web")).await?;
    let init = status(&pod, "setup")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(init.reason.as_deref(), Some("Completed"));
    let log = std::fs::read_to_string(log_file(&c.node, &pod, "setup", 0))?;
    assert!(log.contains("arg: init"), "{log}");

    let mut rt = cri(&c.node).await;
    let id = container_id(&pod, "web");
    let (code, out) = exec(&mut rt, &id, &["cat", "/etc/config/g.txt"]).await?;
    assert_eq!((code, out.as_str()), (0, "hello-world"));
    let (_, out) = exec(&mut rt, &id, &["cat", "/etc/all/size"]).await?;
    assert_eq!(out, "L");
    let (_, out) = exec(&mut rt, &id, &["cat", "/etc/info/labels"]).await?;
    assert_eq!(out, "test=\"web\"");
    let (_, env) = exec(&mut rt, &id, &["env"]).await?;
    for var in ["COLOR=blue", "CFG_greeting=hello-world", "CFG_size=L"] {
        assert!(env.lines().any(|l| l == var), "{var} in:\n{env}");
    }
    // The files are as the items and modes say, behind the atomic writer's links.
    let vol = c.node.dir().join(format!(
        "pods/{}/volumes/kubernetes.io~configmap",
        uid(&pod)
    ));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(vol.join("config/g.txt")), 0o600);
    assert_eq!(mode(vol.join("all/color")), 0o640);
    assert!(
        std::fs::symlink_metadata(vol.join("config/..data"))?
            .file_type()
            .is_symlink()
    );

    // An update of the ConfigMap, and of the pod's labels, reaches the files.
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"greeting": "updated"}})),
    )
    .await?;
    c.pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "yes"}}})),
        )
        .await?;
    c.wait("the guest sees the new values", || {
        let mut rt = rt.clone();
        let id = id.clone();
        async move {
            let g = exec(&mut rt, &id, &["cat", "/etc/config/g.txt"])
                .await
                .map(|r| r.1);
            let l = exec(&mut rt, &id, &["cat", "/etc/info/labels"])
                .await
                .map(|r| r.1);
            g.is_ok_and(|g| g == "updated") && l.is_ok_and(|l| l == "extra=\"yes\"\ntest=\"web\"")
        }
    })
    .await?;
    // The environment is the one the container started with.
    let (_, env) = exec(&mut rt, &id, &["env"]).await?;
    assert!(
        env.lines().any(|l| l == "CFG_greeting=hello-world"),
        "{env}"
    );
    let pod = c.pods.get("web").await?;
    assert_eq!(status(&pod, "web").unwrap().restart_count, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_configmap_holds_the_pod_until_it_exists() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    c.create(
        "needs",
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "hello",
                "image": "hello:v1",
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}],
            }],
        }),
    )
    .await?;
    c.wait_pod("needs", "waiting on its ConfigMap", |p| {
        waiting_reason(p, "hello").as_deref() == Some("CreateContainerConfigError")
    })
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "later"}, "data": {"x": "42"}}))?;
    cms.create(&PostParams::default(), &cm).await?;
    let pod = c
        .wait_pod("needs", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let log = std::fs::read_to_string(log_file(&c.node, &pod, "hello", 0))?;
    assert!(log.contains("env: X=42"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_stops_the_container_and_confirms_before_the_grace_runs_out() -> anyhow::Result<()>
{
    let c = Cluster::start(false).await?;
    c.create(
        "loop",
        json!({
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "loop", "image": "infinite-loop:v1"}],
        }),
    )
    .await?;
    let pod = c
        .wait_pod("loop", "Running", |p| running(p, "loop"))
        .await?;
    let uid = uid(&pod);
    let mut rt = cri(&c.node).await;
    assert_eq!(runtime_containers(&mut rt, &uid).await.len(), 1);

    let started = Instant::now();
    c.server
        .kubectl()
        .run(&["delete", "pod", "loop", "--wait=false"])
        .ok();
    let pods = c.pods.clone();
    c.wait("the pod is gone", || async {
        pods.get_opt("loop").await.is_ok_and(|p| p.is_none())
    })
    .await?;
    let took = started.elapsed();
    // The apiserver would remove the pod only when its 30 s grace ran out:
    // the kubelet stopped the container and confirmed the deletion first.
    assert!(took < Duration::from_secs(20), "gone after {took:?}");
    let pod_dir = c.node.dir().join("pods").join(&uid);
    c.wait("the container, sandbox and volumes are removed", || {
        let mut rt = rt.clone();
        let uid = uid.clone();
        let pod_dir = pod_dir.clone();
        async move {
            let sandboxes = rt
                .list_pod_sandbox(cri_api::ListPodSandboxRequest { filter: None })
                .await
                .map(|r| r.into_inner().items)
                .unwrap_or_default();
            runtime_containers(&mut rt, &uid).await.is_empty()
                && !sandboxes
                    .iter()
                    .any(|s| s.labels.get("io.kubernetes.pod.uid") == Some(&uid))
                && !pod_dir.exists()
        }
    })
    .await?;
    let events = c.events("loop").await;
    assert!(
        events
            .iter()
            .any(|e| e == "Killing: Stopping container loop"),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_liveness_probes_restart_the_container() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    c.create(
        "sick",
        json!({
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "exec",
                    "image": "infinite-loop:v1",
                    "livenessProbe": {"exec": {"command": ["cat", "/no/such/file"]}, "periodSeconds": 1, "failureThreshold": 2},
                },
                {
                    "name": "tcp",
                    "image": "infinite-loop:v1",
                    "livenessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 2},
                },
                {
                    "name": "fine",
                    "image": "infinite-loop:v1",
                    "readinessProbe": {"exec": {"command": ["ls", "/"]}, "periodSeconds": 1, "timeoutSeconds": 10},
                    "livenessProbe": {"exec": {"command": ["ls", "/"]}, "periodSeconds": 1, "timeoutSeconds": 10},
                },
            ],
        }),
    )
    .await?;
    let first = c
        .wait_pod("sick", "running", |p| {
            running(p, "exec") && running(p, "tcp")
        })
        .await?;
    let pod = c
        .wait_pod("sick", "both sick containers restarted", |p| {
            ["exec", "tcp"]
                .iter()
                .all(|n| status(p, n).is_some_and(|s| s.restart_count >= 1))
        })
        .await?;
    assert_ne!(container_id(&first, "exec"), container_id(&pod, "exec"));
    let pod = c
        .wait_pod("sick", "the healthy container is ready", |p| {
            status(p, "fine").is_some_and(|s| s.ready)
        })
        .await?;
    assert_eq!(status(&pod, "fine").unwrap().restart_count, 0);
    let events = c.events("sick").await;
    for want in [
        "Killing: Container exec failed liveness probe, will be restarted",
        "Killing: Container tcp failed liveness probe, will be restarted",
    ] {
        assert!(events.iter().any(|e| e == want), "{want} in {events:?}");
    }
    assert!(
        events.iter().any(
            |e| e.starts_with("Unhealthy: Liveness probe failed: dial tcp ")
                && e.ends_with(":9: connect: connection refused")
        ),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Unhealthy: Liveness probe failed: ")),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_active_deadline_fails_the_pod() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    c.create(
        "late",
        json!({
            "activeDeadlineSeconds": 2,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "loop", "image": "infinite-loop:v1"}],
        }),
    )
    .await?;
    let pod = c
        .wait_pod("late", "Failed", |p| phase(p) == "Failed")
        .await?;
    let s = pod.status.clone().unwrap();
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    let uid = uid(&pod);
    let mut rt = cri(&c.node).await;
    c.wait("the container is stopped", || {
        let mut rt = rt.clone();
        let uid = uid.clone();
        async move {
            runtime_containers(&mut rt, &uid)
                .await
                .iter()
                .all(|c| c.state == cri_api::ContainerState::ContainerExited as i32)
        }
    })
    .await?;
    assert!(!runtime_containers(&mut rt, &uid).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_kubelet_restarts_no_container() -> anyhow::Result<()> {
    let mut c = Cluster::start(true).await?;
    c.create(
        "steady",
        json!({
            "volumes": [{"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
            "containers": [{
                "name": "loop",
                "image": "infinite-loop:v1",
                "volumeMounts": [{"name": "info", "mountPath": "/etc/info"}],
            }],
        }),
    )
    .await?;
    let before = c
        .wait_pod("steady", "Running", |p| running(p, "loop"))
        .await?;
    let id = container_id(&before, "loop");
    let started_at = status(&before, "loop")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .running
        .unwrap()
        .started_at;

    // Kill the kubelet (the runtime keeps running), start it again.
    c.node.kill_kubelet();
    c.node.start_kubelet()?;
    c.wait("the new kubelet listed its pods", || async {
        c.node.kubelet_log().matches("pods listed").count() >= 2
    })
    .await?;
    // A change only the new kubelet can carry out: the labels file.
    c.pods
        .patch(
            "steady",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"gen": "2"}}})),
        )
        .await?;
    let labels = c.node.dir().join(format!(
        "pods/{}/volumes/kubernetes.io~downward-api/info/labels",
        uid(&before)
    ));
    c.wait("the new kubelet reconciled the pod", || async {
        std::fs::read_to_string(&labels).is_ok_and(|l| l.contains("gen=\"2\""))
    })
    .await?;

    let after = c.pods.get("steady").await?;
    let cs = status(&after, "loop").unwrap();
    assert_eq!(container_id(&after, "loop"), id, "the same container");
    assert_eq!(cs.restart_count, 0);
    assert_eq!(
        cs.state.clone().unwrap().running.unwrap().started_at,
        started_at
    );
    let mut rt = cri(&c.node).await;
    let listed = runtime_containers(&mut rt, &uid(&after)).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(
        listed[0].state,
        cri_api::ContainerState::ContainerRunning as i32
    );
    let sandboxes = rt
        .list_pod_sandbox(cri_api::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert_eq!(sandboxes.len(), 1, "no new sandbox: {sandboxes:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_keep_running_while_the_apiserver_is_down() -> anyhow::Result<()> {
    let mut c = Cluster::start(false).await?;
    c.create(
        "steady",
        json!({"containers": [{"name": "loop", "image": "infinite-loop:v1"}]}),
    )
    .await?;
    // A container that exits at once: restarted with back-off, forever.
    c.create(
        "blinker",
        json!({"containers": [{"name": "hello", "image": "hello:v1"}]}),
    )
    .await?;
    let steady = c
        .wait_pod("steady", "Running", |p| running(p, "loop"))
        .await?;
    let blinker = c
        .wait_pod("blinker", "restarted once", |p| {
            status(p, "hello").is_some_and(|s| s.restart_count >= 1)
        })
        .await?;
    let id = container_id(&steady, "loop");
    let mut rt = cri(&c.node).await;
    let max_attempt = |listed: Vec<cri_api::Container>| {
        listed
            .iter()
            .filter_map(|c| c.metadata.as_ref().map(|m| m.attempt))
            .max()
            .unwrap_or(0)
    };
    let before = max_attempt(runtime_containers(&mut rt, &uid(&blinker)).await);

    c.server.kill();
    let killed = Instant::now();
    c.wait("the kubelet notices the apiserver is gone", || async {
        let log = c.node.kubelet_log();
        log.contains("cannot renew the node lease") || log.contains("pod watch failed")
    })
    .await?;
    // The kubelet keeps restarting the blinker without the apiserver.
    c.wait(
        "the blinker is restarted while the apiserver is down",
        || {
            let mut rt = rt.clone();
            let uid = uid(&blinker);
            async move { max_attempt(runtime_containers(&mut rt, &uid).await) >= before + 2 }
        },
    )
    .await?;
    // The apiserver stays down for 30 s (the figure) while the
    // steady container keeps running.
    c.wait("30 s without the apiserver, steady still running", || {
        let mut rt = rt.clone();
        let id = id.clone();
        async move {
            let st = rt
                .container_status(cri_api::ContainerStatusRequest {
                    container_id: id,
                    verbose: false,
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().status);
            let running =
                st.is_some_and(|s| s.state == cri_api::ContainerState::ContainerRunning as i32);
            assert!(running, "steady stopped while the apiserver was down");
            killed.elapsed() >= Duration::from_secs(30)
        }
    })
    .await?;
    let during = max_attempt(runtime_containers(&mut rt, &uid(&blinker)).await);
    let st = rt
        .container_status(cri_api::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        st.state,
        cri_api::ContainerState::ContainerRunning as i32,
        "steady still runs"
    );

    // The apiserver comes back on the same data and port: the status catches up.
    c.server.restart()?;
    c.wait_pod("blinker", "its status caught up", |p| {
        status(p, "hello").is_some_and(|s| s.restart_count >= i32::try_from(during).unwrap())
    })
    .await?;
    let steady = c
        .wait_pod("steady", "still Running", |p| running(p, "loop"))
        .await?;
    assert_eq!(container_id(&steady, "loop"), id);
    assert_eq!(status(&steady, "loop").unwrap().restart_count, 0);
    let nodes: Api<Node> = Api::all(c.client.clone());
    c.wait("the lease is renewed again", || async {
        let leases: Api<Lease> = Api::namespaced(c.client.clone(), kubelet::LEASE_NAMESPACE);
        let renewed = leases
            .get(NODE)
            .await
            .ok()
            .and_then(|l| l.spec?.renew_time)
            .is_some_and(|t| {
                k8s_openapi::jiff::Timestamp::now()
                    .duration_since(t.0)
                    .as_secs()
                    < 15
            });
        renewed
            && nodes
                .get(NODE)
                .await
                .is_ok_and(|n| condition(&n, "Ready") == Some("True"))
    })
    .await?;
    Ok(())
}

/// The attempt number and log of the pod's newest exited `hello` attempt
/// numbered `first` or later, if the runtime lists one and its log is
/// still there.
async fn exited_hello(
    rt: &mut cri::client::RuntimeClient,
    node: &ShoalNode,
    pod: &Pod,
    first: u32,
) -> Option<(u32, String)> {
    let attempt = runtime_containers(rt, &uid(pod))
        .await
        .iter()
        .filter(|c| c.state == cri_api::ContainerState::ContainerExited as i32)
        .filter_map(|c| c.metadata.as_ref().map(|m| m.attempt))
        .filter(|&a| a >= first)
        .max()?;
    let restarts = i32::try_from(attempt).ok()?;
    let log = std::fs::read_to_string(log_file(node, pod, "hello", restarts)).ok()?;
    Some((attempt, log))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_restarted_while_the_apiserver_is_down_gets_the_last_known_services()
-> anyhow::Result<()> {
    let mut c = Cluster::start(false).await?;
    let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let web: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "protocol": "TCP"}]},
    }))?;
    let web = services.create(&PostParams::default(), &web).await?;
    let ip = web
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the Service has a cluster IP")?;
    let want = [
        format!("env: WEB_SERVICE_HOST={ip}"),
        "env: WEB_SERVICE_PORT=8080".to_string(),
        format!("env: WEB_PORT=tcp://{ip}:8080"),
        "env: KUBERNETES_SERVICE_HOST=".to_string(),
    ];
    // hello prints its environment and exits: restarted with back-off, forever.
    let blinker = c
        .create(
            "blinker",
            json!({"containers": [{"name": "hello", "image": "hello:v1"}]}),
        )
        .await?;
    let mut rt = cri(&c.node).await;

    // With the apiserver up, an attempt sees the Service: the kubelet's
    // store holds it.
    c.wait("an attempt of the blinker sees the web Service", || {
        let mut rt = rt.clone();
        let (node, pod, line) = (&c.node, &blinker, &want[0]);
        async move {
            exited_hello(&mut rt, node, pod, 0)
                .await
                .is_some_and(|(_, log)| log.contains(line.as_str()))
        }
    })
    .await?;

    c.server.kill();
    c.wait("the kubelet notices the apiserver is gone", || async {
        let log = c.node.kubelet_log();
        log.contains("cannot renew the node lease") || log.contains("pod watch failed")
    })
    .await?;
    // Every attempt created from now on is created without the apiserver.
    let noticed = runtime_containers(&mut rt, &uid(&blinker))
        .await
        .iter()
        .filter_map(|c| c.metadata.as_ref().map(|m| m.attempt))
        .max()
        .unwrap_or(0);
    let during = std::sync::Mutex::new(None);
    c.wait(
        "the blinker restarts and exits while the apiserver is down",
        || {
            let (mut rt, during) = (rt.clone(), &during);
            let (node, pod) = (&c.node, &blinker);
            async move {
                let found = exited_hello(&mut rt, node, pod, noticed + 1).await;
                let done = found.is_some();
                *during.lock().unwrap() = found;
                done
            }
        },
    )
    .await?;
    let (attempt, log) = during
        .into_inner()
        .unwrap()
        .context("an attempt started during the outage")?;
    assert!(
        attempt > noticed,
        "attempt {attempt} started after {noticed}"
    );
    for line in &want {
        assert!(
            log.contains(line.as_str()),
            "attempt {attempt}, started while the apiserver was down, lacks {line:?}:\n{log}"
        );
    }
    Ok(())
}

#[test]
fn the_kubelet_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = shoal(SHOAL)
        .args(["kubelet", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no kubeconfig at") && err.contains("--kubeconfig"),
        "{err}"
    );
    let out = shoal(SHOAL)
        .args([
            "node",
            "--server",
            "https://127.0.0.1:6443",
            "--token",
            "x",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token: a node token must look like K10"),
        "{err}"
    );
    let out = shoal(SHOAL)
        .args(["kubelet", "--backoff-base", "0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--backoff-base"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn images_are_pulled_with_the_pods_pull_secret() -> anyhow::Result<()> {
    let registry = testbed::Registry::start_with_htpasswd("alice", "s3cret").await?;
    let image = format!("{}/private/hello:v1", registry.addr());
    let out = shoal(SHOAL)
        .args(["push", artifacts::HELLO, &image])
        .env("SHOAL_REGISTRY_USERNAME", "alice")
        .env("SHOAL_REGISTRY_PASSWORD", "s3cret")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let c = Cluster::start(false).await?;
    c.server
        .kubectl()
        .run(&[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            &format!("--docker-server={}", registry.addr()),
            "--docker-username=alice",
            "--docker-password=s3cret",
        ])
        .ok();
    c.create(
        "private",
        json!({
            "restartPolicy": "Never",
            "imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "hello", "image": image, "args": ["pulled"]}],
        }),
    )
    .await?;
    c.create(
        "denied",
        json!({
            "restartPolicy": "Never",
            // Always: the image is on the node once the other pod has
            // pulled it, but this pod must pull it itself.
            "containers": [{"name": "hello", "image": image, "imagePullPolicy": "Always"}],
        }),
    )
    .await?;
    let pod = c
        .wait_pod("private", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let log = std::fs::read_to_string(log_file(&c.node, &pod, "hello", 0))?;
    assert!(log.contains("arg: pulled"), "{log}");
    let events = c.events("private").await;
    for want in [
        format!("Pulling: Pulling image \"{image}\""),
        format!("Pulled: Successfully pulled image \"{image}\" in "),
    ] {
        assert!(
            events.iter().any(|e| e.starts_with(&want)),
            "{want} in {events:?}"
        );
    }

    // Without the secret: ErrImagePull, then ImagePullBackOff.
    c.wait_pod("denied", "in ImagePullBackOff", |p| {
        waiting_reason(p, "hello").as_deref() == Some("ImagePullBackOff")
    })
    .await?;
    let events = c.events("denied").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("Failed: Failed to pull image \"{image}\": "))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "Failed: Error: ErrImagePull"),
        "{events:?}"
    );

    // The node lists the pulled image.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let repo = format!("{}/private/hello", registry.addr());
    c.wait("the node status lists the pulled image", || async {
        nodes.get(NODE).await.is_ok_and(|n| {
            n.status
                .and_then(|s| s.images)
                .unwrap_or_default()
                .iter()
                .any(|i| i.names.iter().flatten().any(|n| n.starts_with(&repo)))
        })
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn http_functions_are_probed_on_the_pod_ip() -> anyhow::Result<()> {
    let c = Cluster::start(false).await?;
    let container = |probe_path: &str| {
        json!({
            "name": "fn",
            "image": "hello-http:v1",
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "readinessProbe": {"httpGet": {"path": probe_path, "port": "http"}, "periodSeconds": 1},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        })
    };
    c.create("web-fn", json!({"containers": [container("/healthz")]}))
        .await?;
    c.create("never-ready", json!({"containers": [container("/slow")]}))
        .await?;
    let pod = c
        .wait_pod("web-fn", "Ready", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .await?;
    assert!(status(&pod, "fn").unwrap().ready);
    let ip = pod.status.unwrap().pod_ip.unwrap();

    // The function answers on its pod IP.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect((ip.as_str(), 8080)).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: fn\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("hello from web-fn"), "{answer}");

    // A readiness probe that fails keeps the pod out of Ready, and restarts nothing.
    c.wait("the failing readiness probe is reported", || async {
        c.events("never-ready").await.iter().any(|e| {
            e == "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 400"
        })
    })
    .await?;
    let pod = c.pods.get("never-ready").await?;
    let cs = status(&pod, "fn").unwrap();
    assert!(
        running(&pod, "fn") && !cs.ready && cs.restart_count == 0,
        "{cs:?}"
    );
    let ready = pod.status.unwrap().conditions.unwrap();
    let ready = ready.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    Ok(())
}
