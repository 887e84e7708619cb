//! Issue 4's hostile load, driven through the CRI socket only: a
//! well-behaved HTTP function (`hello-http`) keeps its p99 latency while
//! every hostile sample (`samples/hostile/*.yaml`, same limits) runs in the
//! same runtime, and each hostile one ends with a clear status.
//!
//! The hostile set: `infinite-loop` twice (the sample's 100m CPU limit, and
//! none at all), `log-flood` (250m) with a small log rotation, and
//! `memory-bomb`, `deep-recursion`, `path-escape` and `connect-out`
//! restarted every 500 ms (a crash loop with a twentieth of the kubelet's
//! shortest back-off); `malformed` is refused at CreateContainer. An exec of
//! the spinning module with a 1 s timeout ends at its deadline.
//!
//! The p99 of sequential GETs on one keep-alive connection to the pod IP is
//! measured unloaded, then loaded, each as the median of five batches' p99
//! (1,000 requests each), and the test asserts loaded <= max(2 x unloaded,
//! unloaded + 2 ms), as `wasi-shim/tests/isolation.rs` does at the engine
//! level: the median keeps a burst of noise from another process (up to two
//! batches long) from deciding it while starvation, which lasts as long as
//! the hostile guests run, still does; the absolute floor keeps a sub-millisecond p99, which
//! one scheduler hiccup can double, from failing for noise rather than for
//! starvation. Both figures are printed. `.config/nextest.toml` runs this
//! test alone, so that other tests' guests are not measured too.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use common::{Cri, DEADLINE, container, limits, log_records, pod_config};
use cri::client::RuntimeClient;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as api;
use tokio::net::TcpStream;

/// Requests in one batch.
const REQUESTS: usize = 1000;
/// The log rotation of this runtime: small, so that the flood rotates often.
const LOG_MAX_BYTES: u64 = 64 << 10;
const LOG_MAX_FILES: usize = 3;
const MI: i64 = 1 << 20;
/// How often a crash-looping guest is started again: twenty times as often
/// as the kubelet's shortest back-off (10 s) allows, so a crash loop still,
/// but one that loads the runtime with guests rather than with CRI calls
/// (with no pacing at all, about 60 create/start/status/remove cycles a
/// second share the runtime's threads with the HTTP function and its p99
/// grows tenfold; every 100 ms, often past 2x).
const RESTART_EVERY: Duration = Duration::from_millis(500);

/// One keep-alive HTTP/1.1 client connection (hyper's).
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    async fn get(&mut self, path: &str) -> Result<(StatusCode, String)> {
        self.sender.ready().await?;
        let req = Request::get(path)
            .header(http::header::HOST, "web")
            .body(Empty::new())?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The p99 of one batch of sequential requests.
async fn batch_p99(conn: &mut Conn) -> Result<Duration> {
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let (status, body) = conn.get("/").await?;
        times.push(t.elapsed());
        ensure!(status == StatusCode::OK, "{status}: {body}");
    }
    times.sort();
    Ok(times[REQUESTS * 99 / 100])
}

/// Batches in a phase.
const BATCHES: usize = 5;

/// A phase's p99: the median of the batches' p99s.
async fn phase_p99(conn: &mut Conn) -> Result<(Duration, [Duration; BATCHES])> {
    let mut batches = [Duration::ZERO; BATCHES];
    for b in &mut batches {
        *b = batch_p99(conn).await?;
    }
    let mut sorted = batches;
    sorted.sort();
    Ok((sorted[BATCHES / 2], batches))
}

/// The container's status.
async fn status(rt: &mut RuntimeClient, id: &str) -> Result<api::ContainerStatus> {
    rt.container_status(api::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await?
    .into_inner()
    .status
    .context("no status")
}

/// The container's CPU time so far, from ContainerStats.
async fn cpu_time(rt: &mut RuntimeClient, id: &str) -> Result<Duration> {
    let stats = rt
        .container_stats(api::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await?
        .into_inner()
        .stats
        .context("no stats")?;
    let nanos = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .context("no CPU usage")?
        .value;
    Ok(Duration::from_nanos(nanos))
}

/// A pod of the hostile set, and how to run its container again.
#[derive(Clone)]
struct Restarted {
    pod: String,
    pod_config: api::PodSandboxConfig,
    config: api::ContainerConfig,
}

impl Restarted {
    /// Creates, starts and awaits one attempt, as a kubelet restarting it
    /// would (the next attempt number each time).
    async fn run(&self, rt: &mut RuntimeClient, attempt: u32) -> Result<api::ContainerStatus> {
        let mut config = self.config.clone();
        let name = config
            .metadata
            .as_ref()
            .context("no metadata")?
            .name
            .clone();
        if let Some(m) = config.metadata.as_mut() {
            m.attempt = attempt;
        }
        config.log_path = format!("{name}/{attempt}.log");
        let id = rt
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: self.pod.clone(),
                config: Some(config),
                sandbox_config: Some(self.pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id;
        rt.start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
        let exited = api::ContainerState::ContainerExited as i32;
        let what = format!("{name} attempt {attempt} exits");
        testbed::wait_until(&what, DEADLINE, || {
            let (mut rt, id) = (rt.clone(), id.clone());
            async move { status(&mut rt, &id).await.is_ok_and(|s| s.state == exited) }
        })
        .await?;
        let st = status(rt, &id).await?;
        rt.remove_container(api::RemoveContainerRequest { container_id: id })
            .await?;
        Ok(st)
    }
}

/// Restarts `guest` until `stop`, checking every attempt's status with
/// `check` and counting them in `runs`; returns how many ran.
fn restart_loop(
    mut rt: RuntimeClient,
    guest: Restarted,
    (stop, runs): (Arc<AtomicBool>, Arc<AtomicU32>),
    check: impl Fn(&api::ContainerStatus) -> Result<()> + Send + 'static,
) -> tokio::task::JoinHandle<Result<u32>> {
    tokio::spawn(async move {
        let mut attempt = 0;
        let mut pace = tokio::time::interval(RESTART_EVERY);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            pace.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let st = guest.run(&mut rt, attempt).await?;
            check(&st).with_context(|| {
                format!(
                    "attempt {attempt}: exit {} reason {:?} message {:?}, log {:?}",
                    st.exit_code,
                    st.reason,
                    st.message,
                    log_records(&st.log_path)
                )
            })?;
            attempt += 1;
            runs.store(attempt, Ordering::Relaxed);
        }
        Ok(attempt)
    })
}

/// The lines a container logged.
fn logged(st: &api::ContainerStatus) -> String {
    log_records(&st.log_path)
        .into_iter()
        .map(|r| r.2 + "\n")
        .collect()
}

fn mtime(path: &Path) -> Result<SystemTime> {
    Ok(std::fs::metadata(path)?.modified()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained_and_http_latency_holds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cri = Cri::start_with(dir, |c| {
        c.log_max_bytes = LOG_MAX_BYTES;
        c.log_max_files = LOG_MAX_FILES;
    })
    .await?;
    let hello_http = cri.import(artifacts::HELLO_HTTP, "hello-http:v1")?;
    let infinite_loop = cri.import(artifacts::INFINITE_LOOP, "infinite-loop:v1")?;
    let log_flood = cri.import(artifacts::LOG_FLOOD, "log-flood:v1")?;
    let memory_bomb = cri.import(artifacts::MEMORY_BOMB, "memory-bomb:v1")?;
    let deep_recursion = cri.import(artifacts::DEEP_RECURSION, "deep-recursion:v1")?;
    let path_escape = cri.import(artifacts::PATH_ESCAPE, "path-escape:v1")?;
    let connect_out = cri.import(artifacts::CONNECT_OUT, "connect-out:v1")?;
    let malformed = cri.import(artifacts::MALFORMED, "malformed:v1")?;

    // The host side of path-escape: /data is a host directory holding a
    // control file and a symlink to /etc; a canary sits beside it.
    let host = tempfile::tempdir()?;
    let data = host.path().join("data");
    std::fs::create_dir(&data)?;
    std::fs::write(data.join("inside"), "hello")?;
    std::os::unix::fs::symlink("/etc", data.join("escape"))?;
    let canary = host.path().join("secret");
    std::fs::write(&canary, "top secret")?;
    let canary_mtime = mtime(&canary)?;
    // What connect-out tries to reach: a real listener it was not granted.
    let target = TcpListener::bind("127.0.0.1:0")?;
    target.set_nonblocking(true)?;
    let target_addr = target.local_addr()?;

    // The well-behaved function, on its pod IP and port.
    let port = testbed::free_port();
    let mut web_config = pod_config("web", &cri.logs_dir().join("web"));
    web_config.port_mappings = vec![api::PortMapping {
        protocol: api::Protocol::Tcp as i32,
        container_port: i32::from(port),
        ..Default::default()
    }];
    let web_pod = cri.run_pod(&web_config).await?;
    let ip: IpAddr = cri
        .rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: web_pod.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .and_then(|s| s.network)
        .context("the pod has no network status")?
        .ip
        .parse()?;
    let mut web = container("web", &hello_http, &[]);
    web.envs = vec![api::KeyValue {
        key: "POD_NAME".into(),
        value: "web".into(),
    }];
    let web = cri.run(&web_pod, &web_config, web).await?;
    let mut conn = Conn::open(SocketAddr::new(ip, port)).await?;
    let (st, body) = conn.get("/").await?;
    ensure!(
        st == StatusCode::OK && body.contains("hello from web"),
        "{st}: {body}"
    );
    for _ in 0..200 {
        conn.get("/").await?;
    }
    let (unloaded, unloaded_batches) = phase_p99(&mut conn).await?;

    // The hostile set, each in its own pod as in samples/hostile.
    let (pod, pod_cfg) = cri.pod("malformed").await?;
    let e = cri
        .create(
            &pod,
            &pod_cfg,
            limits(container("malformed", &malformed, &[]), 0.1, 16 * MI),
        )
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    ensure!(
        e.code() == tonic::Code::InvalidArgument && e.message().contains("invalid Wasm module"),
        "malformed: {e:?}"
    );

    let (pod, pod_cfg) = cri.pod("infinite-loop").await?;
    let spin_limited = cri
        .run(
            &pod,
            &pod_cfg,
            limits(container("limited", &infinite_loop, &[]), 0.1, 16 * MI),
        )
        .await?;
    let spin_free = cri
        .run(&pod, &pod_cfg, container("unlimited", &infinite_loop, &[]))
        .await?;
    let (flood_pod, flood_cfg) = cri.pod("log-flood").await?;
    let flood = cri
        .run(
            &flood_pod,
            &flood_cfg,
            limits(container("log-flood", &log_flood, &[]), 0.25, 16 * MI),
        )
        .await?;
    let limited_since = (Instant::now(), cpu_time(&mut cri.rt, &spin_limited).await?);

    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for (name, config, check) in [
        (
            "memory-bomb",
            limits(container("memory-bomb", &memory_bomb, &[]), 0.25, 64 * MI),
            (|st: &api::ContainerStatus| {
                ensure!(
                    (st.exit_code, st.reason.as_str()) == (137, "OOMKilled")
                        && st.message.contains("memory limit"),
                    "not OOM-killed at its memory limit"
                );
                Ok(())
            }) as fn(&api::ContainerStatus) -> Result<()>,
        ),
        (
            "deep-recursion",
            limits(
                container("deep-recursion", &deep_recursion, &[]),
                0.25,
                32 * MI,
            ),
            |st| {
                ensure!(
                    (st.exit_code, st.reason.as_str()) == (wasi_shim::TRAP_EXIT_CODE, "Trapped")
                        && st.message.contains("stack overflow")
                        && st.message.contains("wasm backtrace"),
                    "not a stack-overflow trap with its backtrace"
                );
                Ok(())
            },
        ),
        (
            "path-escape",
            {
                let mut c = limits(container("path-escape", &path_escape, &[]), 0.25, 16 * MI);
                c.mounts = vec![api::Mount {
                    host_path: data.display().to_string(),
                    container_path: "/data".into(),
                    readonly: false,
                    ..Default::default()
                }];
                c
            },
            |st| {
                let out = logged(st);
                ensure!(
                    (st.exit_code, st.reason.as_str()) == (0, "Completed")
                        && out.contains("INSIDE /data/inside: 5 bytes")
                        && out.matches("DENIED ").count() == 7
                        && !out.contains("READ ")
                        && out.contains("path-escape: all denied"),
                    "an escape was not denied"
                );
                Ok(())
            },
        ),
        (
            "connect-out",
            limits(
                container("connect-out", &connect_out, &[&target_addr.to_string()]),
                0.25,
                16 * MI,
            ),
            |st| {
                ensure!(
                    (st.exit_code, st.reason.as_str()) == (1, "Error")
                        && logged(st).contains("DENIED 127.0.0.1:"),
                    "the connect was not denied"
                );
                Ok(())
            },
        ),
    ] {
        let (pod, pod_config) = cri.pod(name).await?;
        let guest = Restarted {
            pod,
            pod_config,
            config,
        };
        let runs = Arc::new(AtomicU32::new(0));
        let task = restart_loop(cri.rt.clone(), guest, (stop.clone(), runs.clone()), check);
        loops.push((name, task, runs));
    }

    // Every long-running one is running before the loaded phase.
    for (id, what) in [(&spin_limited, "limited"), (&spin_free, "unlimited")] {
        let rt = cri.rt.clone();
        testbed::wait_until(&format!("the {what} loop spins"), DEADLINE, || {
            let mut rt = rt.clone();
            async move {
                cpu_time(&mut rt, id)
                    .await
                    .is_ok_and(|c| c >= Duration::from_millis(20))
            }
        })
        .await?;
    }
    // Each crash loop has run once (its module compiled at its first
    // CreateContainer, on every core).
    for (name, _, runs) in &loops {
        testbed::wait_until(&format!("{name} runs once"), DEADLINE, || async {
            runs.load(Ordering::Relaxed) >= 1
        })
        .await?;
    }
    let flood_log = status(&mut cri.rt, &flood).await?.log_path;
    testbed::wait_until("the log flood rotates", DEADLINE, || async {
        Path::new(&format!("{flood_log}.1")).exists()
    })
    .await?;

    let (loaded, loaded_batches) = phase_p99(&mut conn).await?;

    // A deadline: an exec of the spinning module with a 1 s timeout.
    let asked = Instant::now();
    let e = cri
        .exec(&spin_limited, &["infinite-loop"], 1)
        .await
        .unwrap_err();
    ensure!(
        e.code() == tonic::Code::DeadlineExceeded && e.message().contains("timed out after 1s"),
        "exec past its timeout: {e:?}"
    );
    ensure!(
        asked.elapsed() < Duration::from_secs(5),
        "the exec deadline took {:?}",
        asked.elapsed()
    );

    // The CPU limit held the limited loop to about a tenth of a core (the
    // throttle works per tick: allow half again, and a tick of slack).
    let (since, cpu_before) = limited_since;
    let used = cpu_time(&mut cri.rt, &spin_limited).await? - cpu_before;
    let wall = since.elapsed();
    ensure!(
        used <= wall.mul_f64(0.15) + Duration::from_millis(20),
        "the 100m loop used {used:?} of CPU in {wall:?}"
    );
    let free_cpu = cpu_time(&mut cri.rt, &spin_free).await?;

    // The crash loops end, each having run and ended as it should.
    stop.store(true, Ordering::Relaxed);
    let mut runs = Vec::new();
    for (name, task, _) in loops {
        let n = tokio::time::timeout(DEADLINE, task)
            .await
            .with_context(|| format!("the {name} loop did not stop"))???;
        ensure!(n >= 1, "{name} never ran");
        runs.push((name, n));
    }

    // Stopped as the kubelet stops them at their deadline: a grace period
    // ends a command at once (143, it cannot catch SIGTERM), none kills it.
    cri.stop_container(&spin_limited, 1).await?;
    cri.stop_container(&flood, 1).await?;
    cri.stop_container(&spin_free, 0).await?;
    for (id, code, says) in [
        (&spin_limited, 143, "terminated"),
        (&flood, 143, "terminated"),
        (&spin_free, 137, "killed"),
    ] {
        let st = cri.status(id).await?;
        ensure!(
            st.state == api::ContainerState::ContainerExited as i32
                && st.exit_code == code
                && st.message.contains(says),
            "{id}: state {} exit {} reason {:?} message {:?}",
            st.state,
            st.exit_code,
            st.reason,
            st.message
        );
    }

    // The flood's log is bounded on disk: at most LOG_MAX_FILES files, each
    // within the limit (plus one record).
    ensure!(
        !Path::new(&format!("{flood_log}.{LOG_MAX_FILES}")).exists(),
        "more than {LOG_MAX_FILES} log files"
    );
    for i in 0..LOG_MAX_FILES {
        let p = if i == 0 {
            flood_log.clone()
        } else {
            format!("{flood_log}.{i}")
        };
        let len = std::fs::metadata(&p)?.len();
        ensure!(len <= LOG_MAX_BYTES + 200, "{p} is {len} bytes");
    }

    // Nothing outside the preopen changed, and nothing reached the target.
    ensure!(std::fs::read_to_string(&canary)? == "top secret");
    ensure!(mtime(&canary)? == canary_mtime, "the canary was modified");
    ensure!(std::fs::read_to_string(data.join("inside"))? == "hello");
    match target.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => bail!("connect-out reached {target_addr} from {peer}"),
        Err(e) => bail!("accept on {target_addr}: {e}"),
    }

    // The function still answers, and is still running.
    let (st, _) = conn.get("/healthz").await?;
    ensure!(st == StatusCode::OK);
    ensure!(cri.status(&web).await?.state == api::ContainerState::ContainerRunning as i32);
    cri.stop_container(&web, 5).await?;
    cri.stop().await?;

    let bound = (unloaded * 2).max(unloaded + Duration::from_millis(2));
    eprintln!(
        "hello-http p99 of {REQUESTS} sequential requests through the pod IP, median of \
         {BATCHES} batches: unloaded {unloaded:?} {unloaded_batches:?}, loaded {loaded:?} \
         {loaded_batches:?} (bound {bound:?}); 100m loop {used:?} CPU in {wall:?}, unlimited \
         loop {free_cpu:?}; crash-loop runs {runs:?}"
    );
    ensure!(
        loaded <= bound,
        "loaded p99 {loaded:?} exceeds {bound:?} (unloaded p99 {unloaded:?})"
    );
    Ok(())
}
