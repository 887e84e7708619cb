//! The peers the runtime suite compares against, started by the suite
//! itself: `wrk` (load), the upstream `wasmtime serve`, and `runc` running a
//! busybox-static bundle.

use anyhow::{Context as _, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::Latencies;

/// Where `tests/scripts/bench-setup.sh` installs the upstream wasmtime CLI.
const DEFAULT_TOOLS: &str = "/var/tmp/shoal-tools";
/// The wasmtime release Shoal embeds, and so the one to compare against.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// One `wrk` run's figures.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs `wrk -t{threads} -c{connections} -d{secs}s --latency URL`.
pub fn wrk(url: &str, threads: u32, connections: u32, secs: u32) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .context("running wrk (install it with tests/scripts/bench-setup.sh)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text)
}

fn parse_wrk(text: &str) -> anyhow::Result<WrkResult> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => rps = Some(v.parse::<f64>()?),
            (Some("50%"), Some(v)) => p50 = Some(duration_ms(v)?),
            (Some("99%"), Some(v)) => p99 = Some(duration_ms(v)?),
            (Some("Non-2xx"), _) => {
                errors += line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(1);
            }
            _ => {}
        }
    }
    if errors > 0 {
        bail!("wrk saw {errors} non-2xx answers:\n{text}");
    }
    match (rps, p50, p99) {
        (Some(requests_per_s), Some(p50_ms), Some(p99_ms)) => Ok(WrkResult {
            requests_per_s,
            p50_ms,
            p99_ms,
        }),
        _ => bail!("could not read wrk's output:\n{text}"),
    }
}

/// `1.23ms`, `456.00us`, `1.01s` in milliseconds.
fn duration_ms(v: &str) -> anyhow::Result<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("not a wrk duration: {v}")
    };
    Ok(num.parse::<f64>()? * factor)
}

/// The upstream `wasmtime` CLI: `$SHOAL_WASMTIME`, else the one
/// bench-setup.sh installs, else `wasmtime` on PATH; it must be 48.0.8.
pub fn wasmtime_bin() -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("SHOAL_WASMTIME").map(PathBuf::from),
        Some(Path::new(DEFAULT_TOOLS).join("bin/wasmtime")),
        Some(PathBuf::from("wasmtime")),
    ];
    for bin in candidates.into_iter().flatten() {
        let Ok(out) = Command::new(&bin).arg("--version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&out.stdout);
        if version.contains(WASMTIME_VERSION) {
            return Ok(bin);
        }
    }
    bail!(
        "no wasmtime {WASMTIME_VERSION} CLI found: run tests/scripts/bench-setup.sh (or set SHOAL_WASMTIME)"
    )
}

/// A child process killed on drop.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wasmtime serve -Scli` on `component` at `addr`, waiting until it
/// accepts connections.
pub fn wasmtime_serve(component: &Path, addr: SocketAddr) -> anyhow::Result<Killed> {
    let child = Command::new(wasmtime_bin()?)
        .args(["serve", "-Scli", "--addr", &addr.to_string()])
        .arg(component)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting wasmtime serve")?;
    let child = Killed(child);
    wait_for_port(addr, Duration::from_secs(30))?;
    Ok(child)
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_port(addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listened on {addr} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Times `runc run` of a busybox-static bundle whose process is `/bin/true`,
/// `n` times in a row (each a fresh container).
pub fn runc_true(n: usize) -> anyhow::Result<Latencies> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("busybox-static is missing: run tests/scripts/bench-setup.sh")?;
    let bundle = tempfile::tempdir()?;
    let bin = bundle.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(busybox, bin.join("busybox"))?;
    std::os::unix::fs::symlink("busybox", bin.join("true"))?;
    let spec = Command::new("runc")
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .context("running runc (install it with tests/scripts/bench-setup.sh)")?;
    if !spec.success() {
        bail!("runc spec failed");
    }
    let config_path = bundle.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    config["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&config_path, serde_json::to_vec(&config)?)?;

    let mut times = Latencies::default();
    for i in 0..n {
        let id = format!("shoal-bench-{}-{i}", std::process::id());
        let t = Instant::now();
        let status = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        times.push(t.elapsed());
        if !status.success() {
            bail!("runc run failed ({status}); it needs root");
        }
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.33ms  512.00us  12.01ms   80.00%
  Latency Distribution
     50%    3.21ms
     75%    3.50ms
     90%    3.90ms
     99%  850.00us
  96000 requests in 10.00s, 9.00MB read
Requests/sec:   9600.50
Transfer/sec:      0.90MB
";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.requests_per_s, 9600.5);
        assert!((r.p50_ms - 3.21).abs() < 1e-9);
        assert!((r.p99_ms - 0.85).abs() < 1e-9);
        assert!(parse_wrk("garbage").is_err());
        let bad = format!("{text}  Non-2xx or 3xx responses: 12\n");
        assert!(
            parse_wrk(&bad)
                .unwrap_err()
                .to_string()
                .contains("12 non-2xx")
        );
    }
}
