//! End to end: the scheduler inside `shoal server`, and `shoal scheduler`
//! processes, placing pods on hollow nodes (Node objects with capacity and a
//! Ready condition, plus their Leases; no kubelet) that the tests create.
//! Pods are checked through kube-rs and the real kubectl.

use anyhow::{Context as _, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testbed::{ShoalServer, wait_until};

/// How long any one wait may take.
const DEADLINE: Duration = Duration::from_secs(60);

fn shoal_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// A kube-rs client from the server's admin kubeconfig (through the
/// scheduler's own `connect`, which also picks rustls' crypto provider).
async fn client(s: &ShoalServer) -> anyhow::Result<Client> {
    Ok(scheduler::connect(Some(&s.kubeconfig())).await?)
}

/// A hollow node: a Node with allocatable cpu, memory and pods, Ready, and
/// its Lease in `kube-node-lease`, as a kubelet would register it.
async fn hollow_node(client: &Client, name: &str, cpu: &str, extra: Value) -> anyhow::Result<()> {
    let mut node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "hollow"}],
        }
    });
    merge(&mut node, extra);
    let node: Node = serde_json::from_value(node)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let created = nodes.create(&PostParams::default(), &node).await?;
    if created.status != node.status {
        // A server that drops status on create: set it through the subresource.
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": node.status})),
            )
            .await?;
    }
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}
    }))?;
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease)
        .await?;
    Ok(())
}

/// Merges `extra` into `base` (objects key by key).
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A pod requesting `cpu`, with `extra` merged into it.
fn pod(name: &str, cpu: &str, extra: Value) -> anyhow::Result<Pod> {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "fn", "image": "registry.local/hello:v1",
                 "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}}}]}
    });
    merge(&mut p, extra);
    Ok(serde_json::from_value(p)?)
}

async fn create_pod(pods: &Api<Pod>, p: &Pod) -> anyhow::Result<()> {
    pods.create(&PostParams::default(), p).await?;
    Ok(())
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// Waits until the pod is bound; returns its node.
async fn bound(pods: &Api<Pod>, name: &str) -> anyhow::Result<String> {
    let node = Arc::new(Mutex::new(None));
    wait_until(&format!("pod {name} is bound"), DEADLINE, || {
        let node = node.clone();
        async move {
            let got = pods.get(name).await.ok().as_ref().and_then(node_of);
            let done = got.is_some();
            *node.lock().unwrap() = got;
            done
        }
    })
    .await?;
    let node = node.lock().unwrap().clone();
    node.context("bound")
}

/// The pod's `PodScheduled` condition: (status, reason, message).
fn scheduled_condition(p: &Pod) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Waits until the pod reports `PodScheduled=False` with reason
/// `Unschedulable`; returns the message.
async fn unschedulable(pods: &Api<Pod>, name: &str) -> anyhow::Result<String> {
    let message = Arc::new(Mutex::new(String::new()));
    wait_until(
        &format!("pod {name} is reported unschedulable"),
        DEADLINE,
        || {
            let message = message.clone();
            async move {
                let Ok(p) = pods.get(name).await else {
                    return false;
                };
                match scheduled_condition(&p) {
                    Some((status, reason, m)) if status == "False" && reason == "Unschedulable" => {
                        *message.lock().unwrap() = m;
                        true
                    }
                    _ => false,
                }
            }
        },
    )
    .await?;
    Ok(message.lock().unwrap().clone())
}

/// Waits until an event with `reason` about pod `name` exists; returns its message.
async fn event(client: &Client, ns: &str, name: &str, reason: &str) -> anyhow::Result<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let found = Arc::new(Mutex::new(None));
    let selector = format!("involvedObject.name={name},reason={reason}");
    wait_until(&format!("a {reason} event for {name}"), DEADLINE, || {
        let (events, found, selector) = (events.clone(), found.clone(), selector.clone());
        async move {
            let Ok(list) = events.list(&ListParams::default().fields(&selector)).await else {
                return false;
            };
            let first = list.items.into_iter().next();
            let done = first.is_some();
            *found.lock().unwrap() = first;
            done
        }
    })
    .await?;
    let e = found.lock().unwrap().take();
    e.context("an event")
}

#[tokio::test]
async fn spreads_pods_over_nodes_and_reports_them_scheduled() -> anyhow::Result<()> {
    let s = ShoalServer::start(shoal_bin(), &[])?;
    let client = client(&s).await?;
    for n in ["n1", "n2", "n3"] {
        hollow_node(&client, n, "4", json!({})).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..30 {
        create_pod(
            &pods,
            &pod(
                &format!("web-{i}"),
                "50m",
                json!({"metadata": {"labels": {"app": "web"}}}),
            )?,
        )
        .await?;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..30 {
        *per_node
            .entry(bound(&pods, &format!("web-{i}")).await?)
            .or_default() += 1;
    }
    assert_eq!(
        per_node.keys().collect::<Vec<_>>(),
        ["n1", "n2", "n3"],
        "{per_node:?}"
    );
    assert!(
        per_node.values().all(|n| *n >= 5),
        "spread evenly: {per_node:?}"
    );

    let p = pods.get("web-0").await?;
    let (status, _, _) = scheduled_condition(&p).context("PodScheduled")?;
    assert_eq!(status, "True");
    let e = event(&client, "default", "web-0", "Scheduled").await?;
    let node = node_of(&p).context("bound")?;
    assert_eq!(
        e.message.as_deref(),
        Some(format!("Successfully assigned default/web-0 to {node}").as_str())
    );
    assert_eq!(
        e.source.and_then(|s| s.component).as_deref(),
        Some("default-scheduler")
    );
    Ok(())
}

#[tokio::test]
async fn unschedulable_pod_says_why_until_a_node_fits() -> anyhow::Result<()> {
    let s = ShoalServer::start(shoal_bin(), &[])?;
    let client = client(&s).await?;
    hollow_node(&client, "cordoned", "8", json!({})).await?;
    hollow_node(&client, "small-1", "500m", json!({})).await?;
    hollow_node(&client, "small-2", "500m", json!({})).await?;
    let kubectl = s.kubectl();
    kubectl.run(&["cordon", "cordoned"]).ok();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pod(&pods, &pod("big", "1", json!({}))?).await?;

    let want = "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu.";
    assert_eq!(unschedulable(&pods, "big").await?, want);
    let e = event(&client, "default", "big", "FailedScheduling").await?;
    assert_eq!(e.message.as_deref(), Some(want));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    let describe = kubectl.run(&["describe", "pod", "big"]).ok();
    assert!(describe.contains("FailedScheduling"), "{describe}");
    assert!(describe.contains(want), "{describe}");
    assert!(describe.contains("default-scheduler"), "{describe}");
    assert!(node_of(&pods.get("big").await?).is_none());

    // A node that fits appears: the pod goes there.
    hollow_node(&client, "large", "2", json!({})).await?;
    assert_eq!(bound(&pods, "big").await?, "large");
    let (status, reason, message) =
        scheduled_condition(&pods.get("big").await?).context("PodScheduled")?;
    assert_eq!(status, "True", "{reason} {message}");

    // Uncordoned, the cordoned node takes pods again.
    kubectl.run(&["uncordon", "cordoned"]).ok();
    create_pod(&pods, &pod("bigger", "3", json!({}))?).await?;
    assert_eq!(bound(&pods, "bigger").await?, "cordoned");
    Ok(())
}

#[tokio::test]
async fn cordon_and_taints_are_honoured_and_tolerated() -> anyhow::Result<()> {
    let s = ShoalServer::start(shoal_bin(), &[])?;
    let client = client(&s).await?;
    hollow_node(&client, "a", "4", json!({})).await?;
    hollow_node(&client, "b", "4", json!({})).await?;
    let kubectl = s.kubectl();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Cordoned: nothing new lands on a.
    kubectl.run(&["cordon", "a"]).ok();
    wait_until("the cordon is in place", DEADLINE, || async {
        Api::<Node>::all(client.clone())
            .get("a")
            .await
            .is_ok_and(|n| n.spec.and_then(|s| s.unschedulable) == Some(true))
    })
    .await?;
    for i in 0..6 {
        create_pod(
            &pods,
            &pod(
                &format!("c-{i}"),
                "10m",
                json!({"metadata": {"labels": {"app": "c"}}}),
            )?,
        )
        .await?;
    }
    for i in 0..6 {
        assert_eq!(bound(&pods, &format!("c-{i}")).await?, "b");
    }
    // ...unless the pod tolerates the cordon.
    let on_a = json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "a"},
        "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}});
    create_pod(&pods, &pod("cordon-tolerant", "10m", on_a)?).await?;
    assert_eq!(bound(&pods, "cordon-tolerant").await?, "a");
    kubectl.run(&["uncordon", "a"]).ok();

    // A NoSchedule taint keeps pods off b...
    kubectl
        .run(&["taint", "nodes", "b", "dedicated=gpu:NoSchedule"])
        .ok();
    wait_until("the taint is in place", DEADLINE, || async {
        Api::<Node>::all(client.clone())
            .get("b")
            .await
            .is_ok_and(|n| n.spec.and_then(|s| s.taints).is_some_and(|t| !t.is_empty()))
    })
    .await?;
    for i in 0..6 {
        create_pod(
            &pods,
            &pod(
                &format!("t-{i}"),
                "10m",
                json!({"metadata": {"labels": {"app": "t"}}}),
            )?,
        )
        .await?;
    }
    for i in 0..6 {
        assert_eq!(bound(&pods, &format!("t-{i}")).await?, "a");
    }
    let only_b = json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "b"}}});
    create_pod(&pods, &pod("untolerated", "10m", only_b.clone())?).await?;
    assert_eq!(
        unschedulable(&pods, "untolerated").await?,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint(s)."
    );
    // ...and a pod that tolerates it may go there.
    let mut tolerant = only_b;
    merge(
        &mut tolerant,
        json!({"spec": {"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
    );
    create_pod(&pods, &pod("tolerant", "10m", tolerant)?).await?;
    assert_eq!(bound(&pods, "tolerant").await?, "b");
    Ok(())
}

#[tokio::test]
async fn node_selector_affinity_runtime_class_and_image_locality() -> anyhow::Result<()> {
    let s = ShoalServer::start(shoal_bin(), &[])?;
    let client = client(&s).await?;
    hollow_node(
        &client,
        "ssd-a",
        "4",
        json!({"metadata": {"labels": {"disk": "ssd", "zone": "a", "cores": "8"}}}),
    )
    .await?;
    hollow_node(
        &client,
        "hdd-b",
        "4",
        json!({"metadata": {"labels": {"disk": "hdd", "zone": "b", "cores": "2"}}}),
    )
    .await?;
    hollow_node(
        &client,
        "wasm-c",
        "4",
        json!({
        "metadata": {"labels": {"zone": "c", "wasm": "true"}},
        "status": {"images": [{"names": ["registry.local/warm:v1"], "sizeBytes": 123456}]}}),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let affinity = |terms: Value| {
        json!({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})
    };
    let cases = [
        (
            "selector",
            json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
            "ssd-a",
        ),
        (
            "in",
            affinity(
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]),
            ),
            "hdd-b",
        ),
        (
            "notin-exists",
            affinity(json!([{"matchExpressions": [
            {"key": "zone", "operator": "NotIn", "values": ["a", "b"]},
            {"key": "wasm", "operator": "Exists"}]}])),
            "wasm-c",
        ),
        (
            "gt",
            affinity(
                json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]),
            ),
            "ssd-a",
        ),
        (
            "lt",
            affinity(
                json!([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}]),
            ),
            "hdd-b",
        ),
        (
            "doesnotexist",
            affinity(json!([{"matchExpressions": [
            {"key": "cores", "operator": "DoesNotExist"}]}])),
            "wasm-c",
        ),
        (
            "fields",
            affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["hdd-b"]}]}]),
            ),
            "hdd-b",
        ),
        (
            "terms-ored",
            affinity(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["nowhere"]}]},
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}])),
            "ssd-a",
        ),
    ];
    for (name, extra, _) in &cases {
        create_pod(&pods, &pod(name, "10m", extra.clone())?).await?;
    }
    for (name, _, want) in &cases {
        assert_eq!(bound(&pods, name).await?, *want, "{name}");
    }
    create_pod(
        &pods,
        &pod(
            "nowhere",
            "10m",
            json!({"spec": {"nodeSelector": {"disk": "nvme"}}}),
        )?,
    )
    .await?;
    assert_eq!(
        unschedulable(&pods, "nowhere").await?,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );

    // ImageLocality: the node that holds the image (its module compiled there) wins.
    let warm = json!({"spec": {"containers": [{"name": "fn", "image": "registry.local/warm:v1",
        "resources": {"requests": {"cpu": "10m"}}}]}});
    create_pod(&pods, &pod("warm", "10m", warm)?).await?;
    assert_eq!(bound(&pods, "warm").await?, "wasm-c");

    // RuntimeClass: it must exist; its nodeSelector and tolerations apply.
    let rc_pod = json!({"spec": {"runtimeClassName": "wasmtime"}});
    create_pod(&pods, &pod("rc", "10m", rc_pod)?).await?;
    assert_eq!(
        unschedulable(&pods, "rc").await?,
        "0/3 nodes are available: RuntimeClass \"wasmtime\" not found."
    );
    let rc: RuntimeClass = serde_json::from_value(json!({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": "wasmtime"}, "handler": "wasmtime",
        "scheduling": {"nodeSelector": {"wasm": "true"}}}))?;
    Api::<RuntimeClass>::all(client.clone())
        .create(&PostParams::default(), &rc)
        .await?;
    assert_eq!(bound(&pods, "rc").await?, "wasm-c");
    Ok(())
}

/// A `shoal scheduler` process, killed on drop; its stderr is collected.
struct SchedulerProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl SchedulerProcess {
    fn start(kubeconfig: &Path) -> anyhow::Result<SchedulerProcess> {
        let mut child = Command::new(shoal_bin())
            .arg("scheduler")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Ok(SchedulerProcess { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Lease holder's process id (identities are `host_pid_random`).
async fn leader_pid(client: &Client) -> Option<u32> {
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("shoal-scheduler")
        .await
        .ok()?;
    let holder = lease.spec?.holder_identity?;
    holder.rsplit('_').nth(1)?.parse().ok()
}

/// The scheduler that reported pod `name` scheduled (the event's `reportingInstance`).
async fn scheduled_by(client: &Client, name: &str) -> anyhow::Result<String> {
    let e = event(client, "default", name, "Scheduled").await?;
    e.reporting_instance.context("reportingInstance")
}

#[tokio::test]
async fn two_schedulers_one_leader_and_a_takeover() -> anyhow::Result<()> {
    let s = ShoalServer::start(shoal_bin(), &["--disable-scheduler"])?;
    let client = client(&s).await?;
    for n in ["n1", "n2"] {
        hollow_node(&client, n, "4", json!({})).await?;
    }
    let mut schedulers = [
        SchedulerProcess::start(&s.kubeconfig())?,
        SchedulerProcess::start(&s.kubeconfig())?,
    ];
    let pids = [schedulers[0].pid(), schedulers[1].pid()];
    wait_until("one scheduler holds the Lease", DEADLINE, || async {
        leader_pid(&client).await.is_some_and(|p| pids.contains(&p))
    })
    .await?;
    let leader = leader_pid(&client).await.context("a leader")?;
    let (lead, follow) = if leader == pids[0] { (0, 1) } else { (1, 0) };

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..10 {
        create_pod(&pods, &pod(&format!("first-{i}"), "10m", json!({}))?).await?;
    }
    for i in 0..10 {
        bound(&pods, &format!("first-{i}")).await?;
        let by = scheduled_by(&client, &format!("first-{i}")).await?;
        assert!(
            by.contains(&format!("_{}_", pids[lead])),
            "bound by the leader, not {by}"
        );
    }
    wait_until("the follower says it waits", DEADLINE, || {
        let waits = schedulers[follow].log().contains("another scheduler leads");
        async move { waits }
    })
    .await?;
    assert!(
        !schedulers[follow].log().contains("caches synced"),
        "{}",
        schedulers[follow].log()
    );

    // The leader dies without releasing the Lease: the other takes over once it expires.
    schedulers[lead].kill();
    for i in 0..5 {
        create_pod(&pods, &pod(&format!("second-{i}"), "10m", json!({}))?).await?;
    }
    wait_until("the other scheduler takes the Lease", DEADLINE, || async {
        leader_pid(&client).await == Some(pids[follow])
    })
    .await?;
    for i in 0..5 {
        bound(&pods, &format!("second-{i}")).await?;
        let by = scheduled_by(&client, &format!("second-{i}")).await?;
        assert!(
            by.contains(&format!("_{}_", pids[follow])),
            "bound by the new leader, not {by}"
        );
    }
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("shoal-scheduler")
        .await?;
    let spec = lease.spec.context("spec")?;
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(1), "{spec:?}");
    Ok(())
}

#[tokio::test]
async fn a_stopped_leader_releases_the_lease() -> anyhow::Result<()> {
    let s = ShoalServer::start(shoal_bin(), &["--disable-scheduler"])?;
    let client = client(&s).await?;
    let mut first = SchedulerProcess::start(&s.kubeconfig())?;
    let first_pid = first.pid();
    wait_until("the scheduler holds the Lease", DEADLINE, || async {
        leader_pid(&client).await == Some(first_pid)
    })
    .await?;
    let second = SchedulerProcess::start(&s.kubeconfig())?;
    wait_until("the second scheduler sees the first lead", DEADLINE, || {
        let waits = second.log().contains("another scheduler leads");
        async move { waits }
    })
    .await?;
    // SIGTERM: the leader gives the Lease up, so the other need not wait out 15 s.
    let status = Command::new("kill").arg(first_pid.to_string()).status()?;
    assert!(status.success());
    wait_until("the stopped scheduler exits", DEADLINE, || {
        let exited = first.child.try_wait().ok().flatten().is_some();
        async move { exited }
    })
    .await?;
    let started = std::time::Instant::now();
    wait_until("the other scheduler takes the Lease", DEADLINE, || async {
        leader_pid(&client).await == Some(second.pid())
    })
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "taken over in {:?}, before the 15 s lease ran out:\n{}",
        started.elapsed(),
        first.log()
    );
    Ok(())
}

#[tokio::test]
async fn deleted_pods_free_their_room() -> anyhow::Result<()> {
    let s = ShoalServer::start(shoal_bin(), &[])?;
    let client = client(&s).await?;
    hollow_node(&client, "only", "1", json!({})).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pod(&pods, &pod("first", "800m", json!({}))?).await?;
    assert_eq!(bound(&pods, "first").await?, "only");
    create_pod(&pods, &pod("second", "800m", json!({}))?).await?;
    assert_eq!(
        unschedulable(&pods, "second").await?,
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    pods.delete("first", &DeleteParams::default().grace_period(0))
        .await?;
    assert_eq!(bound(&pods, "second").await?, "only");
    Ok(())
}

#[test]
fn scheduler_without_a_reachable_kubeconfig_says_so() -> anyhow::Result<()> {
    let out = Command::new(shoal_bin())
        .args(["scheduler", "--kubeconfig", "/nonexistent/admin.kubeconfig"])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    if !err.contains("/nonexistent/admin.kubeconfig") {
        bail!("the error names the kubeconfig: {err}");
    }
    Ok(())
}
