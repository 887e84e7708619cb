//! `shoal-bench runtime`: the Wasm runtime. Instantiate+run latency of
//! `hello` (compile cache warm and cold), CRI create+start to exit through
//! a real `shoal cri`-style server on a unix socket (`true` and `hello`, the
//! exit seen on the GetContainerEvents stream; `true` again with
//! ContainerStatus polled; beside them, the time to create one empty file
//! on the logs' filesystem, a start's floor there), `hello-http`
//! requests/s and p99 against the
//! upstream `wasmtime serve` 48.0.8 under the same `wrk` load, and a
//! container start (`true`) against `runc run` of busybox `true`.

use anyhow::Context as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasi_shim::{Engine, EngineConfig, ModuleSource, Output, Sandbox};

use crate::peers::{self, Killed};
use crate::report::{Better, Latencies, emit};
use crate::runtime_cri::Via;

const SUITE: &str = "runtime";
/// wrk settings, the same for both servers (facts.md's comparison).
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 32;
const WRK_SECONDS: u32 = 10;
/// Requests one HTTP function handles at once in the measured server.
const HTTP_CONCURRENCY: usize = 64;

/// The parts of the suite, in the order they run.
const PARTS: [&str; 4] = ["run", "cri", "runc", "http"];

/// Runs the parts named in `parts` (all of them when it is empty).
pub async fn run(scale: f64, parts: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
        anyhow::bail!("no runtime part {unknown:?}: the parts are {PARTS:?}");
    }
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let n = |x: f64| ((x * scale).round() as usize).max(1);

    if wanted("run") {
        let warm = hello_runs(n(500.0), false).await?;
        let cold = hello_runs(n(30.0), true).await?;
        report_latency("hello_run_warm", warm, None);
        report_latency("hello_run_cold", cold, None);
    }

    let mut cri = None;
    // The CRI parts' directories, removed when the suite ends (see
    // `runtime_cri::Bench::stop`).
    let mut dirs = Vec::new();
    if wanted("cri") {
        // From a task on the runtime's workers, as the kubelet makes its
        // CRI calls (its pod workers are tasks), not from the main thread.
        let counts = (n(200.0), n(1000.0));
        let (figures, left) = tokio::spawn(cri_part(counts.0, counts.1)).await??;
        cri = Some(figures);
        dirs = left;
    }

    // The container baseline: runc run of busybox true.
    if wanted("runc") {
        let mut runc = peers::runc_true(n(30.0))?;
        let peer = "runc 1.1.5 busybox true";
        emit(SUITE, "runc_true_mean", runc.mean_ms(), "ms", None);
        if let Some([local, socket]) = cri {
            // In process, as `shoal node`'s kubelet starts containers (and
            // as runc is run: no daemon between); over the socket, as
            // `shoal kubelet` calls `shoal cri`.
            for (via, (mean, p50)) in [("local", local), ("socket", socket)] {
                emit(
                    SUITE,
                    &format!("container_start_{via}_vs_runc_mean"),
                    mean,
                    "ms",
                    Some((peer, runc.mean_ms(), Better::Lower)),
                );
                emit(
                    SUITE,
                    &format!("container_start_{via}_vs_runc_p50"),
                    p50,
                    "ms",
                    Some((peer, runc.percentile_ms(50.0), Better::Lower)),
                );
            }
        }
    }

    if wanted("http") {
        http_vs_wasmtime_serve()?;
    }
    drop(dirs);
    Ok(())
}

/// The CRI rows, over each transport: `containers` of each program,
/// `versions` Version calls. Answers `true`'s create-to-exit mean and p50
/// (exits seen on the event stream) in process and over the socket.
/// Also gives back the benches' directories, to be removed at the end.
async fn cri_part(
    containers: usize,
    versions: usize,
) -> anyhow::Result<([(f64, f64); 2], Vec<tempfile::TempDir>)> {
    let (creates, probe_dir) = file_creates(containers)?;
    report_latency("fs_file_create", creates, None);
    let (local, local_dir) = cri_rows(Via::InProcess, containers, versions).await?;
    let (socket, socket_dir) = cri_rows(Via::Socket, containers, versions).await?;
    Ok(([local, socket], vec![probe_dir, local_dir, socket_dir]))
}

/// Times the creation of `n` empty files in a new directory where the CRI
/// benches keep their logs (the temporary directory's filesystem): every
/// container start creates its log file, so this is the floor that
/// filesystem puts under a start in this run. (On ext4 without a journal it
/// is several times higher for minutes after many files were deleted.)
fn file_creates(n: usize) -> anyhow::Result<(Latencies, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut times = Latencies::default();
    for i in 0..n {
        let path = dir.path().join(format!("{i}.log"));
        let t = Instant::now();
        std::fs::File::create_new(&path).with_context(|| format!("creating {}", path.display()))?;
        times.push(t.elapsed());
    }
    Ok((times, dir))
}

/// The CRI rows of one transport (prefix `cri_` over the socket,
/// `cri_local_` in process).
async fn cri_rows(
    via: Via,
    containers: usize,
    versions: usize,
) -> anyhow::Result<((f64, f64), tempfile::TempDir)> {
    use crate::runtime_cri::{Bench, ExitSeen, Program};
    let p = match via {
        Via::Socket => "cri",
        Via::InProcess => "cri_local",
    };
    let mut bench = Bench::start(via).await?;
    let mut times = bench
        .create_start_exit(containers, Program::True, ExitSeen::Events)
        .await?;
    let cri = (times.total.mean_ms(), times.total.percentile_ms(50.0));
    report_cri(&format!("{p}_true"), times);
    let times = bench
        .create_start_exit(containers, Program::Hello, ExitSeen::Events)
        .await?;
    report_cri(&format!("{p}_hello"), times);
    let times = bench
        .create_start_exit(containers, Program::True, ExitSeen::Polling)
        .await?;
    report_latency(
        &format!("{p}_true_polled_create_start_exit"),
        times.total,
        None,
    );
    report_latency(
        &format!("{p}_true_polled_start_to_exited"),
        times.exit,
        None,
    );
    let version = bench.version_calls(versions).await?;
    report_latency(&format!("{p}_version_call"), version, None);
    let dir = bench.stop().await?;
    Ok((cri, dir))
}

/// `hello-http` through our server (a child process) against `wasmtime
/// serve`, one at a time, under the same wrk load.
fn http_vs_wasmtime_serve() -> anyhow::Result<()> {
    let ours = {
        let addr = free_addr()?;
        let _server = serve_child(addr)?;
        peers::wait_for_port(addr, Duration::from_secs(30))?;
        warm_up(addr)?;
        peers::wrk(
            &format!("http://{addr}/"),
            WRK_THREADS,
            WRK_CONNECTIONS,
            WRK_SECONDS,
        )?
    };
    let theirs = {
        let addr = free_addr()?;
        let _server = peers::wasmtime_serve(Path::new(artifacts::HELLO_HTTP), addr)?;
        warm_up(addr)?;
        peers::wrk(
            &format!("http://{addr}/"),
            WRK_THREADS,
            WRK_CONNECTIONS,
            WRK_SECONDS,
        )?
    };
    let peer = "wasmtime serve -Scli 48.0.8";
    emit(
        SUITE,
        "hello_http_requests_per_s",
        ours.requests_per_s,
        "requests/s",
        Some((peer, theirs.requests_per_s, Better::Higher)),
    );
    emit(
        SUITE,
        "hello_http_p99",
        ours.p99_ms,
        "ms",
        Some((peer, theirs.p99_ms, Better::Lower)),
    );
    emit(
        SUITE,
        "hello_http_p50",
        ours.p50_ms,
        "ms",
        Some((peer, theirs.p50_ms, Better::Lower)),
    );
    Ok(())
}

/// The CRI figures of one program, exits seen on the event stream.
fn report_cri(prefix: &str, times: crate::runtime_cri::CriTimes) {
    report_latency(&format!("{prefix}_create_start_exit"), times.total, None);
    report_latency(&format!("{prefix}_create"), times.create, None);
    report_latency(&format!("{prefix}_start"), times.start, None);
    report_latency(&format!("{prefix}_start_to_exited"), times.exit, None);
}

fn report_latency(name: &str, mut l: Latencies, peer: Option<(&str, f64, Better)>) {
    emit(
        SUITE,
        &format!("{name}_p50"),
        l.percentile_ms(50.0),
        "ms",
        None,
    );
    emit(
        SUITE,
        &format!("{name}_p99"),
        l.percentile_ms(99.0),
        "ms",
        peer,
    );
}

/// Runs `hello` `n` times in one engine. Warm: the module is compiled once
/// and every run hits the cache. Cold: every run gets bytes never seen
/// before (a custom section with a fresh name appended), so each one
/// compiles.
async fn hello_runs(n: usize, cold: bool) -> anyhow::Result<Latencies> {
    let engine = Engine::new(EngineConfig::default())?;
    let bytes = std::fs::read(artifacts::HELLO)?;
    let sandbox = Sandbox::builder().arg("hello").stdout(Output::Null).build();
    if !cold {
        engine.load(&ModuleSource::bytes(bytes.clone())).await?;
    }
    let mut times = Latencies::default();
    for i in 0..n {
        let source = if cold {
            ModuleSource::bytes(with_custom_section(&bytes, &format!("shoal-bench-{i}")))
        } else {
            ModuleSource::bytes(bytes.clone())
        };
        let t = Instant::now();
        let exit = engine.run(source, &sandbox).await?;
        times.push(t.elapsed());
        anyhow::ensure!(exit.success(), "hello failed: {exit:?}");
    }
    Ok(times)
}

/// `module` with an empty custom section named `name` appended (valid at
/// the end of any core module; changes the content digest).
fn with_custom_section(module: &[u8], name: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    let mut out = module.to_vec();
    out.push(0);
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts `shoal-bench serve-http` (this binary) on `addr`.
fn serve_child(addr: SocketAddr) -> anyhow::Result<Killed> {
    let me = std::env::current_exe()?;
    let child = Command::new(me)
        .args(["serve-http", "--addr", &addr.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the serve-http child")?;
    Ok(Killed(child))
}

/// A few requests so both servers have compiled and pooled before wrk starts.
fn warm_up(addr: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        anyhow::ensure!(
            buf.starts_with(b"HTTP/1.1 200"),
            "warm-up request failed: {}",
            String::from_utf8_lossy(&buf)
        );
    }
    Ok(())
}

/// The `serve-http` child: `hello-http` served by wasi-shim, as a pod's
/// HTTP function is, until killed.
pub async fn serve_http(addr: SocketAddr) -> anyhow::Result<()> {
    let engine = Engine::new(EngineConfig::default())?;
    let sandbox = Sandbox::builder()
        .env("POD_NAME", "bench")
        .http_listen(addr)
        .http_concurrency(HTTP_CONCURRENCY)
        .build();
    let running =
        wasi_shim::Runtime::spawn(&engine, ModuleSource::file(artifacts::HELLO_HTTP), &sandbox);
    running
        .http_addr()
        .await
        .context("the HTTP function did not start")?;
    let exit = running.wait().await?;
    anyhow::bail!("the HTTP function ended: {exit:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_section_keeps_the_module_valid_and_changes_it() {
        let hello = std::fs::read(artifacts::HELLO).unwrap();
        let a = with_custom_section(&hello, "a");
        let b = with_custom_section(&hello, "b");
        assert_ne!(a, b);
        assert_eq!(&a[..hello.len()], &hello[..]);
        assert_eq!(&a[hello.len()..], &[0, 2, 1, b'a']);
        let mut big = Vec::new();
        leb128(&mut big, 300);
        assert_eq!(big, [0xac, 0x02]);
    }
}
