//! `shoal up` end to end, as the quick start runs it: the real binary on a
//! free port and a fresh data directory; the hello-http module imported
//! with `shoal image import` while the cluster runs; samples/hello-http.yaml
//! applied with the real kubectl (its hostPort and containerPort rewritten
//! to free ports, so that tests run side by side); the answer over the
//! hostPort on 127.0.0.1; a second pod asking for the same host port left
//! unschedulable by the NodePorts filter; SIGTERM stops the node, then the control plane,
//! and frees the port.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use testbed::{ShoalServer, wait_until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const DEADLINE: Duration = Duration::from_secs(120);
const IMAGE: &str = "localhost:5000/shoal/hello-http:v1";

async fn get(port: u16) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await??;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_hello_http_on_its_host_port() -> anyhow::Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_shoal"));
    // The kubelet API on a free port: another cluster may hold 10250.
    let mut up = ShoalServer::up(bin, &["--kubelet-port", "0"])?;
    let kubectl = up.kubectl();
    assert!(up.kubeconfig().exists());
    let nodes = kubectl
        .run(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"])
        .ok();
    assert_eq!(nodes.split_whitespace().count(), 1, "one node: {nodes}");

    // Into the running node's image store.
    testbed::import_image(bin, up.data_dir(), artifacts::HELLO_HTTP, IMAGE)?;

    let (host_port, container_port) = (testbed::free_port(), testbed::free_port());
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/hello-http.yaml");
    let manifest = std::fs::read_to_string(&sample)
        .with_context(|| format!("reading {}", sample.display()))?;
    assert!(manifest.contains("image: localhost:5000/shoal/hello-http:v1"));
    let manifest = manifest
        .replace(
            "containerPort: 8080",
            &format!("containerPort: {container_port}"),
        )
        .replace("hostPort: 8080", &format!("hostPort: {host_port}"));
    assert!(
        manifest.contains(&format!("hostPort: {host_port}")),
        "{manifest}"
    );
    let applied = kubectl
        .run_with_stdin(&["apply", "-f", "-"], Some(&manifest))
        .ok();
    assert!(applied.contains("pod/hello-http created"), "{applied}");

    wait_until("pod/hello-http is Ready", DEADLINE, || async {
        kubectl
            .run(&[
                "get",
                "pod",
                "hello-http",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .stdout
            == "True"
    })
    .await
    .with_context(|| up.log_text())?;
    let answer = get(host_port).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("hello from hello-http (request "),
        "{answer}"
    );

    // A second pod asking for the same host port fits no node.
    let second = manifest.replace("name: hello-http\n", "name: hello-http-2\n");
    assert!(second.contains("name: hello-http-2"), "{second}");
    kubectl
        .run_with_stdin(&["apply", "-f", "-"], Some(&second))
        .ok();
    wait_until("pod/hello-http-2 is unschedulable", DEADLINE, || async {
        kubectl
            .run(&[
                "get",
                "pod",
                "hello-http-2",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
            ])
            .stdout
            .contains("node(s) didn't have free ports for the requested pod ports")
    })
    .await
    .with_context(|| up.log_text())?;

    assert!(
        up.terminate(Duration::from_secs(60))?,
        "shoal up stops cleanly on SIGTERM:\n{}",
        up.log_text()
    );
    assert!(
        TcpListener::bind(("127.0.0.1", host_port)).is_ok(),
        "the host port is free once shoal up has stopped"
    );
    Ok(())
}
