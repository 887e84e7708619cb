//! End to end with the real kubectl: `kubectl logs` (`-f`, `--previous`,
//! `--tail`) and `kubectl exec`, through the apiserver's `pods/log` and
//! `pods/exec` to the kubelet API of a node joined with the node token
//! (`shoal node --server --token`: its serving certificate comes from the
//! join, the apiserver verifies it against the cluster CA).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use testbed::{NodeOptions, ShoalNode, ShoalServer, node_ip, wait_until};

/// How long any one wait may take (debug builds, a loaded machine).
const DEADLINE: Duration = Duration::from_secs(120);

fn shoal_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// A server and one node joined to it with the token, killed on drop
/// (the node first).
struct Cluster {
    node: ShoalNode,
    server: ShoalServer,
    pods: Api<Pod>,
}

const NODE: &str = "streams-0";

impl Cluster {
    async fn start() -> anyhow::Result<Cluster> {
        let server = ShoalServer::start(shoal_bin(), &[])?;
        let node_ip = node_ip(0);
        let node = ShoalNode::join(
            shoal_bin(),
            &server,
            &NodeOptions {
                name: NODE,
                node_ip: &node_ip,
                split: false,
                images: &[
                    (artifacts::HELLO, "hello:v1"),
                    (artifacts::LOG_FLOOD, "log-flood:v1"),
                ],
                extra: &["--backoff-base", "1", "--backoff-max", "2"],
            },
        )?;
        let admin = kubelet::client_from_kubeconfig(&server.kubeconfig()).await?;
        let c = Cluster {
            pods: Api::namespaced(admin.clone(), "default"),
            node,
            server,
        };
        let nodes: Api<Node> = Api::all(admin);
        wait_until("the node is Ready", DEADLINE, || async {
            nodes.get_opt(NODE).await.ok().flatten().is_some_and(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
        })
        .await
        .with_context(|| c.logs())?;
        Ok(c)
    }

    fn logs(&self) -> String {
        format!(
            "--- node\n{}\n--- server\n{}",
            self.node.kubelet_log(),
            self.server.log_text()
        )
    }

    async fn create(&self, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": spec,
        }))?;
        self.pods.create(&PostParams::default(), &pod).await?;
        Ok(())
    }

    async fn wait_pod(
        &self,
        what: &str,
        name: &str,
        f: impl Fn(&Pod) -> bool,
    ) -> anyhow::Result<()> {
        wait_until(what, DEADLINE, || async {
            self.pods
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .is_some_and(|p| f(&p))
        })
        .await
        .with_context(|| self.logs())
    }
}

fn running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

/// A slow, endless writer: log-flood held to a sliver of a CPU.
fn flood_spec() -> serde_json::Value {
    json!({
        "containers": [{
            "name": "flood",
            "image": "log-flood:v1",
            "resources": {"limits": {"cpu": "20m"}},
        }],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_reads_follows_and_reads_the_previous_instance() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let kubectl = c.server.kubectl();

    // A finished pod's log.
    c.create(
        "hello",
        json!({
            "restartPolicy": "Always",
            "containers": [{"name": "hello", "image": "hello:v1", "args": ["first"]}],
        }),
    )
    .await?;
    c.wait_pod("hello has restarted", "hello", |p| restarts(p) >= 1)
        .await?;
    let out = kubectl.run(&["logs", "hello"]).ok();
    assert!(out.contains("arg: first"), "{out}");
    let out = kubectl.run(&["logs", "hello", "--tail=1"]).ok();
    assert_eq!(out.lines().count(), 1, "{out}");

    // The instance before the last restart.
    let out = kubectl.run(&["logs", "hello", "--previous"]).ok();
    assert!(out.contains("arg: first"), "{out}");

    // Errors come back as kubectl prints them.
    let err = kubectl.run(&["logs", "nope"]).err();
    assert!(err.contains("pods \"nope\" not found"), "{err}");
    let err = kubectl.run(&["logs", "hello", "-c", "other"]).err();
    assert!(
        err.contains("container other is not valid for pod hello"),
        "{err}"
    );

    // Following sees lines written after it started.
    c.create("flood", flood_spec()).await?;
    c.wait_pod("flood runs", "flood", running).await?;
    let mut follow = kubectl
        .command(&["logs", "-f", "--tail=1", "flood"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = follow.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let number = |line: &str| -> Option<u64> { line.split_whitespace().nth(2)?.parse().ok() };
    let first = rx
        .recv_timeout(DEADLINE)
        .context("kubectl logs -f printed nothing")?;
    let start = number(&first).with_context(|| format!("a log-flood line: {first:?}"))?;
    let later = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .context("kubectl logs -f stopped following")?;
        if let Some(n) = number(&line)
            && n > start + 10
        {
            break n;
        }
    };
    assert!(later > start);
    let _ = follow.kill();
    let _ = follow.wait();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_runs_toolbox_commands_and_propagates_exit_codes() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let kubectl = c.server.kubectl();
    c.create("flood", flood_spec()).await?;
    c.wait_pod("flood runs", "flood", running).await?;

    let out = kubectl.run(&["exec", "flood", "--", "ls", "/"]);
    let status = out.status;
    let stdout = out.ok();
    assert!(status.success(), "{stdout}");
    let out = kubectl.run(&["exec", "flood", "--", "env"]).ok();
    assert!(out.contains("KUBERNETES_SERVICE_HOST="), "{out}");
    let out = kubectl.run(&["exec", "flood", "--", "ps"]).ok();
    assert!(out.contains("flood"), "{out}");

    // The command's exit code is kubectl's.
    let out = kubectl.run(&["exec", "flood", "--", "cat", "/no/such/file"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("command terminated with exit code 1"),
        "{}",
        out.stderr
    );
    let out = kubectl.run(&["exec", "flood", "--", "ls", "/missing"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("/missing"), "{}", out.stderr);

    // Exec on a pod that does not exist.
    let err = kubectl.run(&["exec", "nope", "--", "ls"]).err();
    assert!(err.contains("pods \"nope\" not found"), "{err}");

    // The raw API: SPDY (no WebSocket upgrade) is refused with the reason,
    // and a pod of two containers needs one named.
    let client = kubelet::client_from_kubeconfig(&c.server.kubeconfig()).await?;
    let status = |r: Result<String, kube::Error>| match r {
        Err(kube::Error::Api(s)) => Some((s.code, s.message)),
        _ => None,
    };
    let spdy =
        http::Request::post("/api/v1/namespaces/default/pods/flood/exec?command=ls&stdout=true")
            .header("Upgrade", "SPDY/3.1")
            .body(Vec::new())?;
    let (code, message) = status(client.request_text(spdy).await).context("a Status")?;
    assert_eq!(code, 400);
    assert!(message.contains("v5.channel.k8s.io"), "{message}");
    c.create(
        "two",
        json!({
            "restartPolicy": "Never",
            "containers": [
                {"name": "a", "image": "hello:v1"},
                {"name": "b", "image": "hello:v1"},
            ],
        }),
    )
    .await?;
    let logs = http::Request::get("/api/v1/namespaces/default/pods/two/log").body(Vec::new())?;
    let (code, message) = status(client.request_text(logs).await).context("a Status")?;
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    Ok(())
}
