//! `shoal-bench pods`: pod startup latency on a real node, as Kubernetes'
//! pod-startup SLI measures it: from the create request to the watch event
//! that shows the pod Running (phase Running and its container running).
//! Three forms, each a part of the suite:
//!
//! - `steady`: 100, then 1,000 pods created at a steady 20 pods/s, then
//!   1,000 at 100 pods/s, each create sent at its time whatever the earlier
//!   ones are doing (an open loop). Kubernetes' pod-startup SLO (p99 <= 5 s)
//!   is a steady-state SLO, and its definition of steady state is a cluster
//!   churn of at most 20 pod creations, updates, deletions and user requests
//!   per second (`sig-scalability/slos/slos.md`): this is that SLI at that
//!   churn, and at five times it, on one node, until 1,000 pods run on it
//!   (`steadyRATE_N_*`: startup and create-to-bound p50/p99, the rate
//!   achieved and the CPU per pod).
//! - `burst`: 100, then 1,000 pods created at once (50 create requests in
//!   flight), measuring how a batch queues behind the node's throughput
//!   (`burst_N_*`: startup and create-to-bound p50/p99, pods/s, and the
//!   CPU time the `shoal node` and `shoal server` processes spent per pod
//!   from the first create to the last pod Running, from `/proc`).
//! - `density`: as Kubernetes' node e2e density test, with 0, 100 and
//!   1,000 pods already Running on the node, 30 more created one at a
//!   time, each waited for (`density_N_*`: startup and create-to-bound
//!   p50/p99), measuring whether a pod's cost grows with the node's pods.
//!   `density_0` is the single-pod figure.
//!
//! What runs is what a user runs: a `shoal server` process (embedded store,
//! scheduler) and one `shoal node` process with the default kubelet
//! settings but `--max-pods 1100` (so that 1,000 pods and the measured ones
//! fit), both the `shoal` binary next to this one (or `$SHOAL_BIN`),
//! killed by PID at the end. The pods run the `hello-http` function
//! (imported with `shoal image import` under the sample's name), which
//! stays Running without using the CPU. A burst is deleted, and gone,
//! before the next starts, and every measured phase starts once the node
//! and server are idle again (`NAME_settle`: how long that took).

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
/// The node's `--max-pods`: room for the largest density background and
/// the pods measured on top of it.
const MAX_PODS: &str = "1100";
/// The parts of the suite, in the order they run.
const PARTS: [&str; 3] = ["steady", "burst", "density"];
/// The create rate of the `steady` part: the churn bound of Kubernetes'
/// steady state (pod creations per second).
const STEADY_RATE: f64 = 20.0;
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

fn pod(name: &str, batch: &str, form: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-pods", "batch": batch, "form": form}},
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

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on
/// every Linux architecture Shoal builds for).
const USER_HZ: f64 = 100.0;

/// The CPU time (user and system, all threads) of this process's child
/// started as `shoal ROLE` (`node`, `server`), if there is one.
fn child_cpu(role: &str) -> Option<Duration> {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // `PID (COMM) STATE PPID ...`: the fields after the command name.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields.get(1) != Some(&me.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let mut args = cmdline.split(|b| *b == 0);
        args.next();
        if args.next() != Some(role.as_bytes()) {
            continue;
        }
        // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
        let ticks: f64 = fields[11].parse::<f64>().ok()? + fields[12].parse::<f64>().ok()?;
        return Some(Duration::from_secs_f64(ticks / USER_HZ));
    }
    None
}

/// The CPU time of the node and server processes so far.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    node: Option<Duration>,
    server: Option<Duration>,
}

impl Cpu {
    fn now() -> Cpu {
        Cpu {
            node: child_cpu("node"),
            server: child_cpu("server"),
        }
    }

    /// The CPU spent since `before`.
    fn since(self, before: Cpu) -> Cpu {
        let d = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        Cpu {
            node: d(self.node, before.node),
            server: d(self.server, before.server),
        }
    }
}

/// A window in which the node and server count as idle when together they
/// used under a tenth of a core.
const SETTLE_WINDOW: Duration = Duration::from_millis(500);
/// How long the node and server may take to become idle.
const SETTLE_DEADLINE: Duration = Duration::from_secs(180);

/// Waits until the node and server processes are idle (under a tenth of a
/// core over [`SETTLE_WINDOW`]), so that a measured phase starts on a node
/// that has finished the work of the previous one: Events, status writes
/// and removals trail a burst by seconds. Prints `NAME_settle` (how long
/// that took); past [`SETTLE_DEADLINE`] it says so and measures anyway.
async fn settle(name: &str) {
    let started = Instant::now();
    let busy = |c: Cpu| c.node.unwrap_or_default() + c.server.unwrap_or_default();
    loop {
        let before = Cpu::now();
        tokio::time::sleep(SETTLE_WINDOW).await;
        let used = busy(Cpu::now().since(before));
        if used < SETTLE_WINDOW / 10 {
            break;
        }
        if started.elapsed() > SETTLE_DEADLINE {
            eprintln!(
                "{name}: the node and server still used {used:?} of CPU in {SETTLE_WINDOW:?} after {SETTLE_DEADLINE:?}; measuring anyway"
            );
            break;
        }
    }
    let took = started.elapsed();
    emit(
        SUITE,
        &format!("{name}_settle"),
        took.as_secs_f64() * 1000.0,
        "ms",
        None,
    );
}

/// One batch's figures.
struct Batch {
    startup: Latencies,
    bound: Latencies,
    elapsed: Duration,
    /// The node's and server's CPU from the first create to the last pod
    /// Running.
    cpu: Cpu,
}

/// How a batch's creates are sent.
#[derive(Clone, Copy)]
enum Pace {
    /// As fast as the server takes them, this many requests at once.
    InFlight(usize),
    /// The i-th create at i/rate seconds from the start (pods per second),
    /// whether or not the earlier ones have been answered.
    Rate(f64),
}

/// Creates `count` pods labelled `batch` as `pace` says, and waits until a
/// watch has seen every one Running.
async fn run_batch(
    pods: &Api<Pod>,
    batch: &str,
    form: &str,
    count: usize,
    pace: Pace,
) -> anyhow::Result<Batch> {
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watcher = tokio::spawn(watch_running(pods.clone(), batch.to_owned(), rv, count));
    let cpu_before = Cpu::now();
    let started = Instant::now();
    let (in_flight, gap) = match pace {
        Pace::InFlight(n) => (n, None),
        Pace::Rate(per_s) => (count, Some(Duration::from_secs_f64(1.0 / per_s))),
    };
    let created: HashMap<String, Instant> = futures::stream::iter(0..count)
        .map(|i| async move {
            let name = format!("bench-{batch}-{i:04}");
            let p = pod(&name, batch, form)?;
            if let Some(gap) = gap {
                let due = started + gap * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(due.into()).await;
            }
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
        cpu: Cpu::now().since(cpu_before),
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

/// Deletes the benchmark's pods matching `labels` and waits until they
/// are gone.
async fn delete_all(pods: &Api<Pod>, labels: &str) -> anyhow::Result<()> {
    let selector = ListParams::default().labels(labels);
    pods.delete_collection(&DeleteParams::default(), &selector)
        .await?;
    testbed::wait_until("the deleted pods are gone", BATCH_DEADLINE, || async {
        let one = selector.clone().limit(1);
        pods.list(&one).await.is_ok_and(|l| l.items.is_empty())
    })
    .await
}

/// Prints `PREFIX_startup_p50` and the rest of a batch's figures.
fn report(prefix: &str, mut b: Batch, throughput: Option<usize>) {
    let name = |what: &str| format!("{prefix}_{what}");
    for (what, samples) in [
        ("startup", &mut b.startup),
        ("create_to_bound", &mut b.bound),
    ] {
        for p in [50.0, 99.0] {
            emit(
                SUITE,
                &name(&format!("{what}_p{p}")),
                samples.percentile_ms(p),
                "ms",
                None,
            );
        }
    }
    if let Some(count) = throughput {
        emit(
            SUITE,
            &name("pods_per_s"),
            count as f64 / b.elapsed.as_secs_f64(),
            "pods/s",
            None,
        );
        for (process, cpu) in [("node", b.cpu.node), ("server", b.cpu.server)] {
            if let Some(cpu) = cpu {
                emit(
                    SUITE,
                    &name(&format!("{process}_cpu_per_pod")),
                    cpu.as_secs_f64() * 1000.0 / count as f64,
                    "ms",
                    None,
                );
            }
        }
    }
}

/// Runs the parts named in `parts` (all of them when it is empty).
pub async fn run(scale: f64, parts: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
        anyhow::bail!("no pods part {unknown:?}: the parts are {PARTS:?}");
    }
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
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
            extra: &["--max-pods", MAX_PODS],
        },
    )?;
    let result = measure(&server, n, &wanted).await;
    if result.is_err() {
        eprintln!("the node's logs:\n{}", node.logs());
    }
    // The node first (it stops its pods), then the server: both by PID.
    drop(node);
    drop(server);
    result
}

async fn measure(
    server: &ShoalServer,
    n: impl Fn(f64) -> usize,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
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
    let everything = "app=bench-pods";

    // Compiles the module on the node (cached from then on): not measured.
    run_batch(&pods, "warmup", "warmup", 1, Pace::InFlight(1)).await?;
    delete_all(&pods, everything).await?;

    // The steady and burst phases: (figure prefix, batch label, form,
    // pods, how they are sent), each on an idle node, removed after.
    let mut phases = Vec::new();
    if wanted("steady") {
        for (count, rate) in [
            (n(100.0), STEADY_RATE),
            (n(1000.0), STEADY_RATE),
            (n(1000.0), STEADY_RATE * 5.0),
        ] {
            let name = format!("steady{rate}_{count}");
            phases.push((
                name,
                format!("s{rate}-{count}"),
                "steady",
                count,
                Pace::Rate(rate),
            ));
        }
    }
    if wanted("burst") {
        for count in [n(100.0), n(1000.0)] {
            let pace = Pace::InFlight(IN_FLIGHT);
            phases.push((
                format!("burst_{count}"),
                format!("n{count}"),
                "burst",
                count,
                pace,
            ));
        }
    }
    for (name, batch, form, count, pace) in phases {
        settle(&name).await;
        let b = run_batch(&pods, &batch, form, count, pace).await?;
        report(&name, b, Some(count));
        delete_all(&pods, everything).await?;
    }
    if wanted("density") {
        let mut running = 0;
        for background in [0, n(100.0), n(1000.0)] {
            if background > running {
                // The background: started as a burst, not measured.
                let batch = format!("bg{background}");
                run_batch(
                    &pods,
                    &batch,
                    "background",
                    background - running,
                    Pace::InFlight(IN_FLIGHT),
                )
                .await?;
                running = background;
            }
            settle(&format!("density_{background}")).await;
            let mut measured = Batch {
                startup: Latencies::default(),
                bound: Latencies::default(),
                elapsed: Duration::ZERO,
                cpu: Cpu {
                    node: None,
                    server: None,
                },
            };
            for i in 0..n(30.0) {
                let b = run_batch(
                    &pods,
                    &format!("d{background}-{i}"),
                    "density",
                    1,
                    Pace::InFlight(1),
                )
                .await?;
                measured.startup.extend(b.startup);
                measured.bound.extend(b.bound);
            }
            report(&format!("density_{background}"), measured, None);
            delete_all(&pods, "app=bench-pods,form=density").await?;
        }
        delete_all(&pods, everything).await?;
    }
    Ok(())
}
