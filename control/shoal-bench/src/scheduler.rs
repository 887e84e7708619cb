//! `shoal-bench scheduler`: pods bound per second, with 1,000 hollow nodes
//! (Node objects with capacity, allocatable and a Ready condition, plus
//! their Leases; no kubelet) and 10,000 pending pods, as the issue states
//! it: the pods are created (by 64 clients) before the scheduler starts,
//! and the rate is measured from the scheduler's start to the last pod a
//! watch sees bound, so it is the scheduler's own rate, not the create
//! path's. The create rate is reported beside it, and so are the
//! `Scheduled` events: how many were written by the time the last pod was
//! bound, and how long after that the last of them came (the scheduler
//! writes them after the bindings it reports; see `scheduler::events`).
//!
//! The apiserver and the scheduler run in a child process (this binary
//! re-executed as `shoal-bench serve-scheduler`), as `shoal server` runs
//! them: the scheduler in-process, through the admin kubeconfig, with
//! leader election; it starts when the parent writes `schedule` on the
//! child's stdin.

use crate::report::{Latencies, emit};
use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Concurrent clients creating nodes and pods.
const CLIENTS: usize = 64;

/// Runs the apiserver and the scheduler in this process until killed (the child side).
pub async fn serve(data_dir: &Path, port: u16) -> anyhow::Result<()> {
    let store: store::DynStore = Arc::new(store::embedded::EmbeddedStore::open(
        store::embedded::EmbeddedConfig::new(data_dir.join("store")),
    )?);
    let mut config = apiserver::Config::new(data_dir);
    config.port = port;
    config.max_inflight = 4096;
    let server = apiserver::ApiServer::build(config, store).await?;
    let client = ::scheduler::connect(Some(server.kubeconfig())).await?;
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "schedule" {
                ::scheduler::Scheduler::new(client, ::scheduler::Config::default())
                    .run(std::future::pending())
                    .await;
                return;
            }
        }
    });
    eprintln!("ready");
    server.serve(std::future::pending()).await?;
    Ok(())
}

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the child's scheduler.
    fn schedule(&mut self) -> anyhow::Result<()> {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().context("the child's stdin")?;
        stdin.write_all(b"schedule\n")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-scheduler")
        .tempdir_in("/var/tmp")?;
    let port = testbed::free_port();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve-scheduler", "--data-dir"])
        .arg(dir.path())
        .args(["--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line == "ready" => break,
            Some(Ok(_)) => continue,
            _ => anyhow::bail!("the benchmark apiserver did not start"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Server { child, dir })
}

fn hollow_node(name: &str) -> anyhow::Result<Node> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "shoal.dev/hollow": "true"}},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        }
    }))?)
}

fn node_lease(name: &str) -> anyhow::Result<Lease> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}
    }))?)
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "fn", "image": "registry.local/hello-http:v1",
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))?)
}

/// The CPU time (user and system) a process has used so far, from
/// `/proc/PID/stat`: a steadier figure than the rate when the machine is shared.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("utime and stime")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture it supports.
    Ok(Duration::from_millis(ticks * 10))
}

/// Runs `op(0..total)` from [`CLIENTS`] concurrent tasks.
async fn concurrently<F, Fut>(total: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in (w..total).step_by(CLIENTS) {
                    op(i).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Watches pods from `rv` until `total` are seen bound; returns when each
/// was first seen bound, by name, and the bound count per node.
async fn watch_bound(
    pods: Api<Pod>,
    mut rv: String,
    total: usize,
) -> anyhow::Result<(HashMap<String, Instant>, HashMap<String, usize>)> {
    let mut bound: HashMap<String, Instant> = HashMap::with_capacity(total);
    let mut per_node: HashMap<String, usize> = HashMap::new();
    while bound.len() < total {
        let mut stream = pods.watch(&WatchParams::default(), &rv).await?.boxed();
        while let Some(event) = stream.next().await {
            let p = match event? {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("the watch failed: {e:?}"),
            };
            if let Some(v) = &p.metadata.resource_version {
                rv.clone_from(v);
            }
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            if let (Some(node), Some(name)) = (node, p.metadata.name)
                && !bound.contains_key(&name)
            {
                bound.insert(name, Instant::now());
                *per_node.entry(node).or_default() += 1;
                if bound.len() == total {
                    break;
                }
            }
        }
    }
    Ok((bound, per_node))
}

/// Watches events from `rv`, sending when each `Scheduled` one was seen.
async fn watch_scheduled_events(
    events: Api<Event>,
    mut rv: String,
    seen: tokio::sync::mpsc::UnboundedSender<Instant>,
) -> anyhow::Result<()> {
    loop {
        let mut stream = events.watch(&WatchParams::default(), &rv).await?.boxed();
        while let Some(event) = stream.next().await {
            let e = match event? {
                WatchEvent::Added(e) => e,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Modified(_) | WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("the event watch failed: {e:?}"),
            };
            if let Some(v) = &e.metadata.resource_version {
                rv.clone_from(v);
            }
            if e.reason.as_deref() == Some("Scheduled") && seen.send(Instant::now()).is_err() {
                return Ok(());
            }
        }
    }
}

pub async fn run(scale: f64) -> anyhow::Result<()> {
    let n = |x: f64| ((x * scale).round() as usize).max(1);
    let (node_count, pod_count) = (n(1000.0), n(10000.0));
    let mut server = start()?;
    let client = ::scheduler::connect(Some(&server.dir.path().join("admin.kubeconfig"))).await?;

    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    concurrently(node_count, move |i| {
        let (nodes, leases) = (nodes.clone(), leases.clone());
        async move {
            let name = format!("hollow-{i:04}");
            nodes
                .create(&PostParams::default(), &hollow_node(&name)?)
                .await?;
            leases
                .create(&PostParams::default(), &node_lease(&name)?)
                .await?;
            anyhow::Ok(())
        }
    })
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watcher = tokio::spawn(watch_bound(pods.clone(), rv.clone(), pod_count));
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let events = tokio::spawn(watch_scheduled_events(
        Api::namespaced(client.clone(), "default"),
        rv,
        events_tx,
    ));

    let started = Instant::now();
    concurrently(pod_count, {
        let pods = pods.clone();
        move |i| {
            let pods = pods.clone();
            async move {
                let name = format!("bench-{i:05}");
                pods.create(&PostParams::default(), &pod(&name)?).await?;
                anyhow::Ok(())
            }
        }
    })
    .await?;
    let create_done = started.elapsed();
    // All pods are pending now: start the scheduler and time it alone.
    let released = Instant::now();
    let cpu_before = cpu_time(server.child.id())?;
    server.schedule()?;
    let (bound, per_node) = tokio::time::timeout(Duration::from_secs(600), watcher)
        .await
        .context("not every pod was bound within 10 minutes")???;
    let cpu_used = cpu_time(server.child.id())?.saturating_sub(cpu_before);
    let last = bound.values().max().copied().context("no pod bound")?;
    let elapsed = last - released;
    // The events: those written by the last binding, then the rest.
    let mut event_times = Vec::with_capacity(pod_count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while event_times.len() < pod_count {
        match tokio::time::timeout_at(deadline, events_rx.recv()).await {
            Ok(Some(at)) => event_times.push(at),
            Ok(None) => break,
            Err(_) => break,
        }
    }
    events.abort();
    let events_by_last_bound = event_times.iter().filter(|at| **at <= last).count();
    let last_event_after = event_times
        .iter()
        .max()
        .map_or(Duration::ZERO, |at| at.saturating_duration_since(last));

    let mut latency = Latencies::default();
    for at in bound.values() {
        latency.push(at.saturating_duration_since(released));
    }
    emit(
        "scheduler",
        "pods_bound_per_s",
        pod_count as f64 / elapsed.as_secs_f64(),
        "pods/s",
        None,
    );
    emit(
        "scheduler",
        "server_cpu_per_pod",
        cpu_used.as_secs_f64() * 1e6 / pod_count as f64,
        "us",
        None,
    );
    emit(
        "scheduler",
        "pods_created_per_s",
        pod_count as f64 / create_done.as_secs_f64(),
        "pods/s",
        None,
    );
    emit(
        "scheduler",
        "start_to_bound_p50",
        latency.percentile_ms(50.0),
        "ms",
        None,
    );
    emit(
        "scheduler",
        "start_to_bound_p99",
        latency.percentile_ms(99.0),
        "ms",
        None,
    );
    let most = per_node.values().max().copied().unwrap_or(0);
    let least = if per_node.len() < node_count {
        0
    } else {
        per_node.values().min().copied().unwrap_or(0)
    };
    emit("scheduler", "pods_per_node_max", most as f64, "pods", None);
    emit("scheduler", "pods_per_node_min", least as f64, "pods", None);
    emit(
        "scheduler",
        "scheduled_events_by_last_bound",
        events_by_last_bound as f64,
        "events",
        None,
    );
    emit(
        "scheduler",
        "scheduled_events_written",
        event_times.len() as f64,
        "events",
        None,
    );
    emit(
        "scheduler",
        "last_scheduled_event_after_last_bound",
        last_event_after.as_secs_f64() * 1000.0,
        "ms",
        None,
    );
    Ok(())
}
