//! `shoal-bench pods`: pod startup latency on a real node, as Kubernetes'
//! pod-startup SLI measures it: from the create request to the watch event
//! that shows the pod Running (phase Running and its container running).
//! One pod at a time (20 times), then 100 and 1,000 pods created with 50
//! requests in flight; p50 and p99 in ms, pods/s, and create-to-bound to
//! tell the scheduler's share from the node's.
//!
//! What runs is what a user runs: a `shoal server` process (embedded store,
//! scheduler) and one `shoal node` process with the default kubelet
//! settings, both the `shoal` binary next to this one (or `$SHOAL_BIN`),
//! killed by PID at the end. The pods run the `hello-http` function
//! (imported with `shoal image import` under the sample's name), which
//! stays Running without using the CPU. A batch is deleted, and gone,
//! before the next starts.

use crate::report::{Latencies, emit};
use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testbed::{NodeOptions, ShoalNode, ShoalServer};

const SUITE: &str = "pods";
/// The environment variable naming the `shoal` binary to measure.
const BIN_ENV: &str = "SHOAL_BIN";
/// The image the pods run, as the `hello-http` sample names it.
const IMAGE: &str = "localhost:5000/shoal/hello-http:v1";
const NODE: &str = "bench-node";
/// Create requests in flight at once.
const IN_FLIGHT: usize = 50;
/// How long a batch may take to start, or to be deleted.
const BATCH_DEADLINE: Duration = Duration::from_secs(600);

/// The `shoal` binary: `$SHOAL_BIN`, else the one beside this binary.
fn shoal_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("shoal");
    if !bin.exists() {
        anyhow::bail!(
            "no shoal binary at {}: build it with the same profile first \
             (cargo build [--release] -p shoal), or name one in ${BIN_ENV}",
            bin.display()
        );
    }
    Ok(bin)
}

fn pod(name: &str, batch: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-pods", "batch": batch}},
        "spec": {"containers": [{
            "name": "fn",
            "image": IMAGE,
            "ports": [{"name": "http", "containerPort": 8080}],
        }]}
    }))?)
}

fn is_running(p: &Pod) -> bool {
    let Some(s) = p.status.as_ref() else {
        return false;
    };
    s.phase.as_deref() == Some("Running")
        && s.container_statuses
            .iter()
            .flatten()
            .any(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
}

/// When each pod was first seen bound and first seen Running.
#[derive(Debug, Default)]
struct Seen {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

/// Watches the pods of `batch` from `rv` until `total` are Running.
async fn watch_running(
    pods: Api<Pod>,
    batch: String,
    mut rv: String,
    total: usize,
) -> anyhow::Result<Seen> {
    let mut seen = Seen::default();
    let params = WatchParams::default().labels(&format!("batch={batch}"));
    while seen.running.len() < total {
        let mut stream = pods.watch(&params, &rv).await?.boxed();
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            let p = match event? {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("the pod watch failed: {e:?}"),
            };
            if let Some(v) = &p.metadata.resource_version {
                rv.clone_from(v);
            }
            let Some(name) = p.metadata.name.clone() else {
                continue;
            };
            if p.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
                seen.bound.entry(name.clone()).or_insert(now);
            }
            if is_running(&p) {
                seen.running.entry(name).or_insert(now);
                if seen.running.len() == total {
                    break;
                }
            }
        }
    }
    Ok(seen)
}

/// One batch's figures.
struct Batch {
    startup: Latencies,
    bound: Latencies,
    elapsed: Duration,
}

/// Creates `count` pods labelled `batch` with `in_flight` requests at once,
/// and waits until a watch has seen every one Running.
async fn run_batch(
    pods: &Api<Pod>,
    batch: &str,
    count: usize,
    in_flight: usize,
) -> anyhow::Result<Batch> {
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watcher = tokio::spawn(watch_running(pods.clone(), batch.to_owned(), rv, count));
    let started = Instant::now();
    let created: HashMap<String, Instant> = futures::stream::iter(0..count)
        .map(|i| async move {
            let name = format!("bench-{batch}-{i:04}");
            let p = pod(&name, batch)?;
            let at = Instant::now();
            pods.create(&PostParams::default(), &p)
                .await
                .with_context(|| format!("cannot create pod {name}"))?;
            anyhow::Ok((name, at))
        })
        .buffer_unordered(in_flight)
        .try_collect()
        .await?;
    let seen = tokio::time::timeout(BATCH_DEADLINE, watcher)
        .await
        .with_context(|| {
            format!("batch {batch}: not every pod was Running within {BATCH_DEADLINE:?}")
        })???;
    let mut out = Batch {
        startup: Latencies::default(),
        bound: Latencies::default(),
        elapsed: Duration::ZERO,
    };
    for (name, at) in &created {
        let running = seen
            .running
            .get(name)
            .context("a pod was never seen Running")?;
        out.startup.push(running.saturating_duration_since(*at));
        if let Some(bound) = seen.bound.get(name) {
            out.bound.push(bound.saturating_duration_since(*at));
        }
    }
    let last = seen.running.values().max().copied().unwrap_or(started);
    out.elapsed = last - started;
    Ok(out)
}

/// Deletes the benchmark's pods and waits until they are gone.
async fn delete_all(pods: &Api<Pod>) -> anyhow::Result<()> {
    let selector = ListParams::default().labels("app=bench-pods");
    pods.delete_collection(&DeleteParams::default(), &selector)
        .await?;
    testbed::wait_until("the deleted pods are gone", BATCH_DEADLINE, || async {
        let one = selector.clone().limit(1);
        pods.list(&one).await.is_ok_and(|l| l.items.is_empty())
    })
    .await
}

fn report(count: usize, mut b: Batch, throughput: bool) {
    let name = |what: &str| format!("{what}_{count}");
    emit(
        SUITE,
        &name("startup_p50"),
        b.startup.percentile_ms(50.0),
        "ms",
        None,
    );
    emit(
        SUITE,
        &name("startup_p99"),
        b.startup.percentile_ms(99.0),
        "ms",
        None,
    );
    emit(
        SUITE,
        &name("create_to_bound_p50"),
        b.bound.percentile_ms(50.0),
        "ms",
        None,
    );
    emit(
        SUITE,
        &name("create_to_bound_p99"),
        b.bound.percentile_ms(99.0),
        "ms",
        None,
    );
    if throughput {
        emit(
            SUITE,
            &name("pods_per_s"),
            count as f64 / b.elapsed.as_secs_f64(),
            "pods/s",
            None,
        );
    }
}

pub async fn run(scale: f64) -> anyhow::Result<()> {
    let n = |x: f64| ((x * scale).round() as usize).max(1);
    let bin = shoal_bin()?;
    let server = ShoalServer::start(&bin, &[])?;
    let node_ip = testbed::node_ip(0);
    let node = ShoalNode::start(
        &bin,
        &server.kubeconfig(),
        &NodeOptions {
            name: NODE,
            node_ip: &node_ip,
            split: false,
            images: &[(artifacts::HELLO_HTTP, IMAGE)],
            extra: &[],
        },
    )?;
    let result = measure(&server, n).await;
    if result.is_err() {
        eprintln!("the node's logs:\n{}", node.logs());
    }
    // The node first (it stops its pods), then the server: both by PID.
    drop(node);
    drop(server);
    result
}

async fn measure(server: &ShoalServer, n: impl Fn(f64) -> usize) -> anyhow::Result<()> {
    let client = ::scheduler::connect(Some(&server.kubeconfig())).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    testbed::wait_until("the node is Ready", Duration::from_secs(120), || async {
        nodes.get(NODE).await.is_ok_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");

    // Compiles the module on the node (cached from then on): not measured.
    run_batch(&pods, "warmup", 1, 1).await?;
    delete_all(&pods).await?;

    let mut single = Batch {
        startup: Latencies::default(),
        bound: Latencies::default(),
        elapsed: Duration::ZERO,
    };
    for i in 0..n(20.0) {
        let b = run_batch(&pods, &format!("one{i}"), 1, 1).await?;
        single.startup.extend(b.startup);
        single.bound.extend(b.bound);
    }
    report(1, single, false);
    delete_all(&pods).await?;

    for count in [n(100.0), n(1000.0)] {
        let b = run_batch(&pods, &format!("n{count}"), count, IN_FLIGHT).await?;
        report(count, b, true);
        delete_all(&pods).await?;
    }
    Ok(())
}
