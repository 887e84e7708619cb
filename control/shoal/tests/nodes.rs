//! End to end with real nodes: a real `shoal server` and `shoal node`
//! processes, each on its own loopback address and pod CIDR, with the sample
//! modules imported under the names the manifests use
//! (`localhost:5000/shoal/NAME:v1`, with `shoal image import`). The
//! scheduler spreads pods over three nodes; every sample manifest, the
//! hostile guests' (`samples/hostile/`) included, is applied with the real
//! kubectl and followed to its expected state, read back with `kubectl
//! describe` where a user would look.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use testbed::{Kubectl, NodeOptions, ShoalNode, ShoalServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long any one wait may take (debug builds, a loaded machine).
const DEADLINE: Duration = Duration::from_secs(120);

fn shoal_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

/// The image name a sample manifest uses for guest `name`.
fn image(name: &str) -> String {
    format!("localhost:5000/shoal/{name}:v1")
}

/// A server and its nodes, `node-0`, `node-1`, ...
struct Cluster {
    server: ShoalServer,
    nodes: Vec<ShoalNode>,
    pods: Api<Pod>,
    kubectl: Kubectl,
}

impl Cluster {
    /// Starts a server and `count` nodes holding `images` (`(path, name)`),
    /// each with a pod CIDR of its own in the runtime; waits until every
    /// node is Ready.
    async fn start(count: u32, images: &[(&str, String)]) -> anyhow::Result<Cluster> {
        let server = ShoalServer::start(shoal_bin(), &[])?;
        let client = kubelet::client_from_kubeconfig(&server.kubeconfig()).await?;
        let images: Vec<(&str, &str)> = images.iter().map(|(p, n)| (*p, n.as_str())).collect();
        let mut nodes = Vec::new();
        for slot in 0..count {
            let name = format!("node-{slot}");
            let ip = testbed::node_ip(slot);
            let options = NodeOptions {
                name: &name,
                node_ip: &ip,
                split: false,
                images: &images,
                extra: &[],
            };
            nodes.push(ShoalNode::start(
                shoal_bin(),
                &server.kubeconfig(),
                &options,
            )?);
        }
        let c = Cluster {
            kubectl: server.kubectl(),
            pods: Api::namespaced(client.clone(), "default"),
            server,
            nodes,
        };
        let api: Api<Node> = Api::all(client);
        for (slot, node) in (0..).zip(&c.nodes) {
            let name = node.name().to_owned();
            c.wait(&format!("{name} is Ready"), || async {
                api.get(&name).await.is_ok_and(|n| ready_node(&n))
            })
            .await?;
            // What a controller-manager's node IPAM would do: a pod CIDR
            // per node, so pod IPs are unique over the cluster.
            let cidr = testbed::pod_cidr(slot);
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"podCIDR": cidr}})),
            )
            .await?;
            c.wait(&format!("{name}'s runtime has {cidr}"), || async {
                node.kubelet_log()
                    .lines()
                    .any(|l| l.contains("pod CIDR handed to the runtime") && l.contains(&cidr))
            })
            .await?;
        }
        Ok(c)
    }

    /// The end of every node's logs and the server's, for failure messages.
    fn logs(&self) -> String {
        let mut out: String = self.nodes.iter().map(ShoalNode::logs).collect();
        let server = self.server.log_text();
        let lines: Vec<&str> = server.lines().collect();
        out.push_str("--- shoal server (last 40 lines)\n");
        out.push_str(&lines[lines.len().saturating_sub(40)..].join("\n"));
        out
    }

    /// Waits until `condition` holds; on a timeout the error carries the logs.
    async fn wait<F, Fut>(&self, what: &str, condition: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        testbed::wait_until(what, DEADLINE, condition)
            .await
            .with_context(|| self.logs())
    }

    /// Waits until pod `name` satisfies `f`; returns it.
    async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&Pod) -> bool,
    ) -> anyhow::Result<Pod> {
        let pods = self.pods.clone();
        if let Err(e) = self
            .wait(&format!("pod {name}: {what}"), || async {
                pods.get(name).await.is_ok_and(|p| f(&p))
            })
            .await
        {
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

    /// Runs `kubectl describe pod NAME` until its text satisfies `f`;
    /// returns the text.
    async fn describe_until(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let text = Arc::new(Mutex::new(String::new()));
        let waited = self
            .wait(&format!("kubectl describe pod {name} shows {what}"), || {
                let run = self.kubectl.run(&["describe", "pod", name]);
                let ok = run.status.success() && f(&run.stdout);
                *text.lock().unwrap() = run.stdout;
                async move { ok }
            })
            .await;
        let text = text.lock().unwrap().clone();
        waited.with_context(|| format!("the last description:\n{text}"))?;
        Ok(text)
    }

    fn node(&self, name: &str) -> &ShoalNode {
        self.nodes.iter().find(|n| n.name() == name).unwrap()
    }

    /// What the pod's container wrote, from its log file on its node.
    fn log(&self, pod: &Pod, container: &str) -> String {
        std::fs::read_to_string(self.log_dir(pod, container).join("0.log")).unwrap_or_default()
    }

    /// The directory of the container's log files on its node.
    fn log_dir(&self, pod: &Pod, container: &str) -> PathBuf {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        self.node(&node.unwrap_or_default()).dir().join(format!(
            "logs/pods/default_{}_{}/{container}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default()
        ))
    }

    /// `kubectl apply -f FILE` of a sample, with every `hostPort` moved to
    /// a free port (the node binds it on its own address).
    fn apply(&self, sample: &str) -> anyhow::Result<String> {
        let path = samples().join(sample);
        let text = std::fs::read_to_string(&path)?;
        if !text.contains("hostPort:") {
            return Ok(self
                .kubectl
                .run(&["apply", "-f", &path.to_string_lossy()])
                .ok());
        }
        let rewritten: String = text
            .lines()
            .map(|l| match l.split_once("hostPort:") {
                Some((indent, _)) if !indent.trim_start().starts_with('#') => {
                    format!("{indent}hostPort: {}\n", testbed::free_port())
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let dir = tempfile::tempdir()?;
        let copy = dir
            .path()
            .join(Path::new(sample).file_name().context("a file")?);
        std::fs::write(&copy, rewritten)?;
        Ok(self
            .kubectl
            .run(&["apply", "-f", &copy.to_string_lossy()])
            .ok())
    }
}

fn ready_node(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
}

fn running(pod: &Pod) -> bool {
    phase(pod) == "Running"
        && pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                !cs.is_empty()
                    && cs
                        .iter()
                        .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            })
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn waiting_reason(pod: &Pod, name: &str) -> Option<String> {
    container(pod, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// Whether `kubectl describe` printed `KEY:` followed by `value` on one line.
fn described(text: &str, key: &str, value: &str) -> bool {
    text.lines().any(|l| {
        l.trim_start()
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .is_some_and(|r| r.trim() == value)
    })
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// `GET /` on the pod's port 8080; the whole answer.
async fn http_get(ip: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect((ip, 8080)).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: fn\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_share_thirty_pods() -> anyhow::Result<()> {
    let c = Cluster::start(3, &[(artifacts::HELLO_HTTP, image("hello-http"))]).await?;
    for i in 0..30 {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("spread-{i:02}"), "labels": {"app": "spread"}},
            "spec": {"containers": [{
                "name": "fn",
                "image": image("hello-http"),
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }]}
        }))?;
        c.pods.create(&PostParams::default(), &pod).await?;
    }
    let selector = ListParams::default().labels("app=spread");
    let pods = c.pods.clone();
    c.wait("all 30 pods are Running", || async {
        pods.list(&selector)
            .await
            .is_ok_and(|l| l.items.len() == 30 && l.items.iter().all(running))
    })
    .await?;

    let listed = c.pods.list(&selector).await?.items;
    let mut per_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &listed {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        per_node
            .entry(node.unwrap_or_default())
            .or_default()
            .push(p);
    }
    let counts: BTreeMap<&String, usize> = per_node.iter().map(|(n, v)| (n, v.len())).collect();
    assert_eq!(counts.len(), 3, "every node runs pods: {counts:?}");
    assert!(counts.values().all(|&n| n >= 5), "{counts:?}");

    // Each pod runs where it says, with an IP from its node's pod CIDR,
    // and answers on it.
    for (slot, node) in (0..).zip(&c.nodes) {
        let on_node = &per_node[node.name()];
        let cidr = testbed::pod_cidr(slot);
        let prefix = cidr.trim_end_matches("0/24");
        for p in on_node {
            let s = p.status.as_ref().unwrap();
            assert_eq!(s.host_ip.as_deref(), Some(node.node_ip()), "{s:?}");
            assert!(pod_ip(p).starts_with(prefix), "{} in {cidr}", pod_ip(p));
        }
        let first = on_node[0];
        let answer = http_get(&pod_ip(first)).await?;
        let name = first.metadata.name.as_deref().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(&format!("hello from {name}")), "{answer}");
    }
    let ips: std::collections::HashSet<String> = listed.iter().map(pod_ip).collect();
    assert_eq!(ips.len(), 30, "pod IPs are unique over the cluster");
    Ok(())
}

/// Every sample guest, imported under the name the manifests use.
fn sample_images() -> Vec<(&'static str, String)> {
    artifacts::ALL
        .iter()
        .filter(|(name, _)| *name != "truncated")
        .map(|(name, path)| (*path, image(name)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_manifests_reach_their_states() -> anyhow::Result<()> {
    let c = Cluster::start(1, &sample_images()).await?;
    for sample in [
        "hello.yaml",
        "batch-pi.yaml",
        "echo-tcp.yaml",
        "hello-http.yaml",
        "fanout-http.yaml",
    ] {
        let out = c.apply(sample)?;
        assert!(out.contains("created"), "{sample}: {out}");
    }

    let hello = c
        .wait_pod("hello", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let log = c.log(&hello, "hello");
    for line in ["arg: two words", "env: GREETING=hello from shoal"] {
        assert!(log.contains(line), "{line:?} in:\n{log}");
    }
    let pi = c
        .wait_pod("batch-pi", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let log = c.log(&pi, "batch-pi");
    assert!(
        log.contains("3.1415926535897932384626433832795028841971693993751"),
        "{log}"
    );

    let echo = c
        .wait_pod("echo-tcp", "Running and Ready", |p| running(p) && ready(p))
        .await?;
    let mut stream = tokio::net::TcpStream::connect((pod_ip(&echo).as_str(), 7000)).await?;
    stream.write_all(b"ping from the test\n").await?;
    let mut back = vec![0; 19];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut back)).await??;
    assert_eq!(back, b"ping from the test\n");

    let web = c
        .wait_pod("hello-http", "Running and Ready", |p| {
            running(p) && ready(p)
        })
        .await?;
    let answer = http_get(&pod_ip(&web)).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("hello from hello-http (request "),
        "{answer}"
    );

    // fanout-http runs and is Ready. It is not called here: its backend is
    // the hello-http Service's ClusterIP (outside loopback), which only the
    // proxy (a later issue) routes.
    let fanout = c
        .wait_pod("fanout-http", "Running and Ready", |p| {
            running(p) && ready(p)
        })
        .await?;
    let status = fanout
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let restarts = status.map_or(-1, |cs| cs[0].restart_count);
    assert_eq!(restarts, 0, "fanout-http restarted: {status:?}");

    let listed = c.kubectl.run(&["get", "pods"]).ok();
    for (name, status) in [
        ("hello ", "Completed"),
        ("batch-pi ", "Completed"),
        ("echo-tcp ", "Running"),
        ("hello-http ", "Running"),
        ("fanout-http ", "Running"),
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(name) && l.contains(status)),
            "{name}{status} in:\n{listed}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_guests_end_with_a_readable_reason() -> anyhow::Result<()> {
    let c = Cluster::start(1, &sample_images()).await?;
    let dir = samples().join("hostile");
    let out = c.kubectl.run(&["apply", "-f", &dir.to_string_lossy()]).ok();
    for name in [
        "memory-bomb",
        "infinite-loop",
        "deep-recursion",
        "path-escape",
        "log-flood",
        "connect-out",
        "malformed",
    ] {
        assert!(out.contains(&format!("pod/{name} created")), "{out}");
    }

    // The memory bomb is stopped at its limit.
    c.wait_pod("memory-bomb", "Failed", |p| phase(p) == "Failed")
        .await?;
    let text = c
        .describe_until("memory-bomb", "OOMKilled", |d| {
            described(d, "Reason", "OOMKilled") && described(d, "Exit Code", "137")
        })
        .await?;
    assert!(described(&text, "Status", "Failed"), "{text}");
    assert!(text.contains("memory limit"), "{text}");

    // The infinite loop runs out its deadline.
    c.wait_pod("infinite-loop", "Failed", |p| phase(p) == "Failed")
        .await?;
    c.describe_until("infinite-loop", "DeadlineExceeded", |d| {
        described(d, "Reason", "DeadlineExceeded")
            && described(
                d,
                "Message",
                "Pod was active on the node longer than the specified deadline",
            )
    })
    .await?;

    // The deep recursion traps, and is restarted with back-off.
    c.wait_pod("deep-recursion", "in CrashLoopBackOff", |p| {
        waiting_reason(p, "deep-recursion").as_deref() == Some("CrashLoopBackOff")
    })
    .await?;
    let text = c
        .describe_until("deep-recursion", "the trap", |d| {
            described(d, "Reason", "CrashLoopBackOff") && described(d, "Reason", "Trapped")
        })
        .await?;
    assert!(text.contains("stack overflow"), "{text}");
    assert!(text.contains("wasm backtrace"), "{text}");
    assert!(text.contains("deep_recursion"), "{text}");

    // Every path escape is denied: the guest exits 0 only then.
    let escape = c
        .wait_pod("path-escape", "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let log = c.log(&escape, "path-escape");
    assert!(log.contains("path-escape: all denied"), "{log}");
    assert!(!log.contains("READ "), "{log}");
    assert!(log.contains("DENIED /etc/passwd"), "{log}");

    // The connection out is refused, and describe says so.
    c.wait_pod("connect-out", "Failed", |p| phase(p) == "Failed")
        .await?;
    let text = c
        .describe_until("connect-out", "the denial", |d| {
            described(d, "Reason", "Error") && described(d, "Exit Code", "1")
        })
        .await?;
    assert!(text.contains("DENIED 1.1.1.1:443"), "{text}");

    // The malformed module is never created.
    c.wait_pod("malformed", "waiting in CreateContainerError", |p| {
        waiting_reason(p, "malformed").as_deref() == Some("CreateContainerError")
    })
    .await?;
    let text = c
        .describe_until("malformed", "the compile error", |d| {
            described(d, "Reason", "CreateContainerError")
        })
        .await?;
    assert!(text.contains("invalid Wasm module"), "{text}");
    assert!(described(&text, "Status", "Pending"), "{text}");

    // The log flood is cut by its deadline, its logs bounded by rotation.
    let flood = c
        .wait_pod("log-flood", "Failed", |p| phase(p) == "Failed")
        .await?;
    c.describe_until("log-flood", "DeadlineExceeded", |d| {
        described(d, "Reason", "DeadlineExceeded")
    })
    .await?;
    let files: Vec<(String, u64)> = std::fs::read_dir(c.log_dir(&flood, "log-flood"))?
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert!(!files.is_empty() && files.len() <= 5, "{files:?}");
    let cap = 10 * 1024 * 1024 + cri::MAX_LINE as u64 + 64;
    assert!(files.iter().all(|(_, len)| *len <= cap), "{files:?}");
    assert!(files.iter().any(|(_, len)| *len > 0), "{files:?}");
    Ok(())
}
