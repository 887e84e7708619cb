//! `shoal-bench api`: the apiserver over HTTPS, driven by a real client
//! (kube-rs), with the embedded store and with a real etcd.
//!
//! The server runs in a child process (this binary re-executed as
//! `shoal-bench serve-api`) so its resident memory is its own.

use crate::report::{Latencies, emit};
use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the apiserver in this process until killed (the child side).
pub async fn serve(data_dir: &Path, port: u16, etcd: Option<String>) -> anyhow::Result<()> {
    let store: store::DynStore = match etcd {
        Some(endpoint) => std::sync::Arc::new(
            store::etcd::EtcdStore::connect(store::etcd::EtcdConfig::new([endpoint])).await?,
        ),
        None => std::sync::Arc::new(store::embedded::EmbeddedStore::open(
            store::embedded::EmbeddedConfig::new(data_dir.join("store")),
        )?),
    };
    let mut config = apiserver::Config::new(data_dir);
    config.port = port;
    config.max_inflight = 4096;
    let server = apiserver::ApiServer::build(config, store).await?;
    eprintln!("ready");
    server.serve(std::future::pending()).await?;
    Ok(())
}

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(etcd: Option<&str>) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-api")
        .tempdir_in("/var/tmp")?;
    let port = testbed::free_port();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["serve-api", "--data-dir"])
        .arg(dir.path())
        .args(["--port", &port.to_string()]);
    if let Some(e) = etcd {
        cmd.args(["--etcd", e]);
    }
    let mut child = cmd.stderr(Stdio::piped()).spawn()?;
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

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "shard": format!("{}", name.len() % 7)}},
        "spec": {"containers": [{"name": "fn", "image": "registry.local/hello-http:v1", "ports": [{"containerPort": 8080}],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
    .expect("a valid pod")
}

/// Runs `op(0..total)` from 64 concurrent clients; returns operations/s.
async fn per_second<F, Fut>(total: usize, op: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    const CLIENTS: usize = 64;
    let started = Instant::now();
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
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(scale: f64) -> anyhow::Result<()> {
    let n = |x: f64| ((x * scale).round() as usize).max(1);
    let etcd = testbed::Etcd::start().await?;
    for (label, endpoint) in [("embedded", None), ("etcd", Some(etcd.endpoint()))] {
        let server = start(endpoint.as_deref())?;
        let kube = client(&server.dir.path().join("admin.kubeconfig")).await?;
        let pods: Api<Pod> = Api::namespaced(kube.clone(), "default");
        let suite = |name: &str| format!("{name}_{label}");

        // Create: sequential, then 64 clients at once.
        let mut create = Latencies::default();
        for i in 0..n(1000.0) {
            let t = Instant::now();
            pods.create(&PostParams::default(), &pod(&format!("seq-{i}")))
                .await?;
            create.push(t.elapsed());
        }
        emit(
            "api",
            &suite("create_p50"),
            create.percentile_ms(50.0),
            "ms",
            None,
        );
        emit(
            "api",
            &suite("create_p99"),
            create.percentile_ms(99.0),
            "ms",
            None,
        );
        let total = n(9000.0);
        let rate = per_second(total, {
            let pods = pods.clone();
            move |i| {
                let pods = pods.clone();
                async move {
                    pods.create(&PostParams::default(), &pod(&format!("par-{i}")))
                        .await?;
                    anyhow::Ok(())
                }
            }
        })
        .await?;
        emit(
            "api",
            &suite("create_per_s_64_clients"),
            rate,
            "requests/s",
            None,
        );

        // Get, with every pod stored.
        let mut get = Latencies::default();
        for i in 0..n(1000.0) {
            let t = Instant::now();
            pods.get(&format!("seq-{i}")).await?;
            get.push(t.elapsed());
        }
        emit(
            "api",
            &suite("get_p50"),
            get.percentile_ms(50.0),
            "ms",
            None,
        );
        emit(
            "api",
            &suite("get_p99"),
            get.percentile_ms(99.0),
            "ms",
            None,
        );
        let gets = n(20000.0);
        let seq = n(1000.0);
        let rate = per_second(gets, {
            let pods = pods.clone();
            move |i| {
                let pods = pods.clone();
                async move {
                    pods.get(&format!("seq-{}", i % seq)).await?;
                    anyhow::Ok(())
                }
            }
        })
        .await?;
        emit(
            "api",
            &suite("get_per_s_64_clients"),
            rate,
            "requests/s",
            None,
        );

        // List: a page of 100, and all of them.
        let stored = n(1000.0) + total;
        let mut list100 = Latencies::default();
        for _ in 0..n(200.0) {
            let t = Instant::now();
            let l = pods.list(&ListParams::default().limit(100)).await?;
            list100.push(t.elapsed());
            anyhow::ensure!(l.items.len() == 100.min(stored), "a page of 100");
        }
        emit(
            "api",
            &suite("list_100_p50"),
            list100.percentile_ms(50.0),
            "ms",
            None,
        );
        emit(
            "api",
            &suite("list_100_p99"),
            list100.percentile_ms(99.0),
            "ms",
            None,
        );
        let mut list_all = Latencies::default();
        for _ in 0..n(20.0) {
            let t = Instant::now();
            let l = pods.list(&ListParams::default()).await?;
            list_all.push(t.elapsed());
            anyhow::ensure!(l.items.len() == stored, "all {stored} pods listed");
        }
        emit(
            "api",
            &suite(&format!("list_{stored}_p50")),
            list_all.percentile_ms(50.0),
            "ms",
            None,
        );
        emit(
            "api",
            &suite(&format!("list_{stored}_p99")),
            list_all.percentile_ms(99.0),
            "ms",
            None,
        );

        // Watch delivery: create to the watcher seeing it.
        let rv = pods
            .list(&ListParams::default().limit(1))
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let mut stream = pods
            .watch(&WatchParams::default().labels("app=watched"), &rv)
            .await?
            .boxed();
        let mut watch = Latencies::default();
        for i in 0..n(500.0) {
            let mut p = pod(&format!("w-{i}"));
            p.metadata
                .labels
                .get_or_insert_default()
                .insert("app".into(), "watched".into());
            let t = Instant::now();
            pods.create(&PostParams::default(), &p).await?;
            loop {
                match tokio::time::timeout(Duration::from_secs(10), stream.next()).await? {
                    Some(Ok(WatchEvent::Added(got)))
                        if got.metadata.name.as_deref() == Some(&format!("w-{i}")) =>
                    {
                        break;
                    }
                    Some(Ok(_)) => continue,
                    other => anyhow::bail!("the watch ended: {other:?}"),
                }
            }
            watch.push(t.elapsed());
        }
        emit(
            "api",
            &suite("watch_delivery_p50"),
            watch.percentile_ms(50.0),
            "ms",
            None,
        );
        emit(
            "api",
            &suite("watch_delivery_p99"),
            watch.percentile_ms(99.0),
            "ms",
            None,
        );
        emit(
            "api",
            &suite(&format!("rss_with_{stored}_pods")),
            rss_mib(server.child.id())?,
            "MiB",
            None,
        );
    }
    Ok(())
}
