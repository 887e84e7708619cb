//! End to end: nodes joining a real `shoal server` with its node token
//! (`shoal node --server URL --token TOKEN`), and what a wrong token gets.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use testbed::{NodeOptions, ShoalNode, ShoalServer, node_ip, shoal, wait_until};

/// How long any one wait may take (debug builds, a loaded machine).
const DEADLINE: Duration = Duration::from_secs(120);

fn shoal_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

/// `shoal node --server --token` in `dir`, run to its exit (it must fail
/// before starting anything); returns its stderr.
fn join_fails(server: &str, token: &str, dir: &Path) -> anyhow::Result<String> {
    let mut child = shoal(shoal_bin())
        .args([
            "node", "--server", server, "--token", token, "--name", "bad",
        ])
        .args([
            "--node-ip",
            "127.0.0.1",
            "--kubelet-port",
            "0",
            "--data-dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("shoal node with a bad token did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "it should fail:\n{stderr}");
    assert!(
        !dir.join("kubelet.kubeconfig").exists(),
        "nothing is written for a refused join"
    );
    Ok(stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let server = ShoalServer::start(shoal_bin(), &[])?;
    let good = server.node_token()?;
    let token_file = server.data_dir().join("node-token");
    assert_eq!(mode(&token_file)?, 0o600);
    let (hash, secret) = good
        .strip_prefix("K10")
        .and_then(|t| t.split_once("::node:"))
        .context("the token is K10<hash>::node:<secret>")?;
    assert_eq!(hash.len(), 64);
    assert_eq!(secret.len(), 64);
    let dir = tempfile::tempdir()?;

    // The right CA hash, the wrong secret: the server says no.
    let wrong_secret = format!("K10{hash}::node:{}", "0".repeat(64));
    let err = join_fails(&server.url(), &wrong_secret, dir.path())?;
    assert!(err.contains("the server refused the token"), "{err}");
    assert!(err.contains("node-token"), "{err}");

    // A token for another cluster: the CA does not match, nothing is sent.
    let other_ca = format!("K10{}::node:{secret}", "ab".repeat(32));
    let err = join_fails(&server.url(), &other_ca, dir.path())?;
    assert!(
        err.contains("the server's CA does not match the token: is --server right?"),
        "{err}"
    );

    // Not a token at all.
    let err = join_fails(&server.url(), "hunter2", dir.path())?;
    assert!(
        err.contains("K10<sha256 hex of the cluster CA>::node:<secret>"),
        "{err}"
    );

    // The server logged the refusal, and never the token.
    wait_until("the server logs the refused join", DEADLINE, || async {
        server.log_text().contains("join refused")
    })
    .await?;
    let log = server.log_text();
    assert!(!log.contains(secret), "the secret is never logged");
    assert!(!log.contains("issued node certificates"), "{log}");

    // The token file is kept across restarts.
    let mut server = server;
    server.restart()?;
    assert_eq!(server.node_token()?, good);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn server_and_token_go_together() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (args, needle) in [
        (
            vec!["--server", "https://127.0.0.1:1"],
            "--server needs --token",
        ),
        (vec!["--token", "K10x::node:y"], "--token needs --server"),
    ] {
        let out = shoal(shoal_bin())
            .arg("node")
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    Ok(())
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_joins_with_the_token_and_runs_a_pod() -> anyhow::Result<()> {
    let server = ShoalServer::start(shoal_bin(), &[])?;
    let admin = kubelet::client_from_kubeconfig(&server.kubeconfig()).await?;
    let name = "joined-0";
    let node_ip = node_ip(0);
    let node = ShoalNode::join(
        shoal_bin(),
        &server,
        &NodeOptions {
            name,
            node_ip: &node_ip,
            split: false,
            images: &[(artifacts::HELLO, "hello:v1")],
            extra: &[],
        },
    )?;

    let nodes: Api<Node> = Api::all(admin.clone());
    wait_until("the joined node is Ready", DEADLINE, || async {
        nodes
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .is_some_and(|n| ready(&n))
    })
    .await
    .with_context(|| node.logs())?;

    // What the join left: the node's kubeconfig and serving pair, private.
    let kubeconfig = node.dir().join("kubelet.kubeconfig");
    for file in [
        kubeconfig.clone(),
        node.dir().join("pki/kubelet.crt"),
        node.dir().join("pki/kubelet.key"),
    ] {
        assert_eq!(mode(&file)?, 0o600, "{}", file.display());
    }

    // The node's identity is system:node:NAME in system:nodes, from the cluster CA.
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&kubeconfig)?)?;
    let cert_b64 = config["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .context("client-certificate-data")?;
    let cert_pem = String::from_utf8(BASE64.decode(cert_b64)?)?;
    let der = apiserver::join::cert_der(&cert_pem).context("a PEM certificate")?;
    let id = apiserver::tls::identity_from_cert(&der)?;
    assert_eq!(id.user, format!("system:node:{name}"));
    assert!(id.groups.iter().any(|g| g == "system:nodes"), "{id:?}");
    assert_eq!(config["clusters"][0]["cluster"]["server"], server.url());
    let out = server.kubectl().run(&[
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "get",
        "node",
        name,
    ]);
    assert!(out.ok().contains(name));
    assert!(
        server
            .log_text()
            .lines()
            .any(|l| l.contains("issued node certificates") && l.contains(name)),
        "{}",
        server.log_text()
    );

    // A pod scheduled onto it runs.
    let pods: Api<Pod> = Api::namespaced(admin, "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "hello", "image": "hello:v1", "args": ["joined"]}],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    wait_until("the pod succeeds on the joined node", DEADLINE, || async {
        pods.get_opt("hello").await.ok().flatten().is_some_and(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name)
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        })
    })
    .await
    .with_context(|| node.logs())?;
    Ok(())
}
