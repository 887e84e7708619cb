//! A real `shoal server` (or `shoal up`: a whole cluster) process on a free
//! loopback port, and the real `kubectl` pointed at it with a fresh
//! discovery cache.

use anyhow::{Context as _, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The environment variables through which `shoal` would pick up a data
/// directory, store, apiserver or credentials other than a test's own.
const SHOAL_ENV: &[&str] = &[
    "SHOAL_DATA_DIR",
    "SHOAL_ETCD_ENDPOINTS",
    "SHOAL_SERVER",
    "SHOAL_TOKEN",
    "KUBECONFIG",
];

/// A command running the `shoal` binary `bin` (a test's
/// `env!("CARGO_BIN_EXE_shoal")`) with none of [`SHOAL_ENV`] inherited:
/// what it uses is what the test passes.
pub fn shoal(bin: impl AsRef<Path>) -> Command {
    let mut cmd = Command::new(bin.as_ref());
    for var in SHOAL_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// A running `shoal server` or `shoal up`, killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct ShoalServer {
    /// `server` or `up`.
    command: &'static str,
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    bin: PathBuf,
    extra: Vec<String>,
}

impl ShoalServer {
    /// Starts `BIN server` with the embedded store in a temporary data
    /// directory, plus `extra` arguments, and waits until it says it is up.
    pub fn start(bin: &Path, extra: &[&str]) -> anyhow::Result<ShoalServer> {
        let dir = tempfile::Builder::new().prefix("shoal-server").tempdir()?;
        Self::start_in(bin, dir, extra)
    }

    /// As [`ShoalServer::start`], in a given data directory.
    pub fn start_in(bin: &Path, dir: TempDir, extra: &[&str]) -> anyhow::Result<ShoalServer> {
        Self::spawn_new("server", bin, dir, extra)
    }

    /// Starts `BIN up` (the control plane and one node, named for the host,
    /// at 127.0.0.1) in a temporary data directory, plus `extra` arguments,
    /// and waits until it says it is ready (its node is Ready).
    pub fn up(bin: &Path, extra: &[&str]) -> anyhow::Result<ShoalServer> {
        let dir = tempfile::Builder::new().prefix("shoal-up").tempdir()?;
        Self::spawn_new("up", bin, dir, extra)
    }

    fn spawn_new(
        command: &'static str,
        bin: &Path,
        dir: TempDir,
        extra: &[&str],
    ) -> anyhow::Result<ShoalServer> {
        let mut server = ShoalServer {
            command,
            child: None,
            dir,
            port: crate::free_port(),
            log: Arc::new(Mutex::new(Vec::new())),
            bin: bin.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// Stops the process (SIGKILL) and starts it again on the same data
    /// directory and port, waiting until it says it is up.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Starts the process and waits until it says it is up.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let (bin, dir, port, extra) = (&self.bin, self.dir.path(), self.port, &self.extra);
        let (ready, deadline) = match self.command {
            "up" => ("shoal up is ready", Duration::from_secs(120)),
            _ => ("shoal server is up", Duration::from_secs(60)),
        };
        let mut cmd = shoal(bin);
        cmd.arg(self.command);
        if self.command == "server" {
            cmd.args(["--bind-address", "127.0.0.1"]);
        }
        let mut child = cmd
            .args(["--https-port", &port.to_string(), "--data-dir"])
            .arg(dir)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().context("no stderr")?;
        let sink = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    let _ = tx.send(());
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(deadline) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.kill();
                bail!(
                    "shoal {} did not come up:\n{}",
                    self.command,
                    self.log_text()
                )
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// The node join token (`DATA_DIR/node-token`), trimmed.
    pub fn node_token(&self) -> anyhow::Result<String> {
        let path = self.dir.path().join("node-token");
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(token.trim().to_owned())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// A `kubectl` for this server.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig())
    }

    /// Sends SIGTERM and waits (at most `deadline`, then SIGKILL) for the
    /// process to exit; returns whether it exited by itself, successfully.
    pub fn terminate(&mut self, deadline: Duration) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(false)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process and hands back its data directory.
    pub fn stop(mut self) -> TempDir {
        self.kill();
        let tmp = tempfile::Builder::new()
            .prefix("shoal-moved")
            .tempdir()
            .expect("a temp dir");
        std::mem::replace(&mut self.dir, tmp)
    }
}

impl Drop for ShoalServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The kubectl binary: `$SHOAL_KUBECTL`, else `kubectl` from the repository's
/// `.venv`, else from `PATH`.
pub fn kubectl_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_KUBECTL") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/kubectl");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("kubectl")
}

/// The real kubectl with a kubeconfig and its own discovery cache.
#[derive(Debug)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: TempDir,
}

/// What one kubectl run gave.
#[derive(Debug)]
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless kubectl succeeded; returns stdout.
    pub fn ok(self) -> String {
        assert!(
            self.status.success(),
            "kubectl failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// Panics unless kubectl failed; returns stderr.
    pub fn err(self) -> String {
        assert!(
            !self.status.success(),
            "kubectl should have failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self.stderr
    }
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            cache: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args);
        cmd.env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl to completion (bounded by a deadline).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    /// Runs kubectl with `stdin` as its standard input (for `-f -`).
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("kubectl runs (is the kubectl wheel installed? run tests/scripts/setup.sh)");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("wait").is_some() {
                return Run::from(child.wait_with_output().expect("output"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "kubectl {args:?} took over 60 s: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
