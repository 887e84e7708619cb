//! What tests and benchmarks start for real: etcd members and clusters on
//! free loopback ports, each in its own temporary directory, killed by PID.
//!
//! Nothing here is mocked. An [`Etcd`] is one `etcd` process; an
//! [`EtcdCluster`] is several that form one cluster; a [`Registry`] is one
//! OCI registry (`docker-registry`); a [`ShoalServer`] and a [`ShoalNode`]
//! are the real `shoal` processes. All are killed
//! (SIGKILL) when dropped, and their data directories removed. Tests wait on
//! conditions with [`wait_until`], never on fixed sleeps.

mod node;
mod registry;
mod shoal;

pub use node::{NodeOptions, ShoalNode, import_image, node_ip, pod_cidr};
pub use registry::{REGISTRY_BIN_ENV, Registry};
pub use shoal::{Kubectl, Run, ShoalServer, kubectl_bin, shoal};

use anyhow::{Context as _, bail};
use etcd_client::{Client, ConnectOptions};
use std::fs::OpenOptions;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;
use tokio::time::{Instant, sleep, timeout, timeout_at};

/// The environment variable naming the etcd binary; `/usr/bin/etcd` if unset.
pub const ETCD_BIN_ENV: &str = "SHOAL_ETCD_BIN";
const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// How long a member (or cluster) may take to answer after it is started.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How often [`wait_until`] re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts at starting with fresh ports when a port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;
/// Large enough for a maximal Shoal value (1.5 MiB) plus its key.
const MAX_REQUEST_BYTES: &str = "4194304";

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Another process may take it before it is used; starters that use it
/// retry with fresh ports when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// Polls `condition` every few milliseconds until it returns true; fails,
/// naming `what`, if that has not happened within `deadline`.
pub async fn wait_until<F, Fut>(
    what: &str,
    deadline: Duration,
    mut condition: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let end = start + deadline;
    loop {
        if let Ok(true) = timeout_at(end, condition()).await {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting until {what}");
        }
        sleep(POLL_INTERVAL.min(end - Instant::now())).await;
    }
}

/// The etcd binary to run.
fn etcd_bin() -> PathBuf {
    std::env::var_os(ETCD_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN))
}

/// A cluster token no other cluster started by any test shares.
fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "shoal-test-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether `endpoints` answer a linearizable read (a write, with `write`).
async fn answers(endpoints: &[String], write: bool) -> bool {
    let probe = async {
        let options = ConnectOptions::new().with_connect_timeout(PROBE_TIMEOUT);
        let mut client = Client::connect(endpoints, Some(options)).await?;
        if write {
            client.put("/testbed/probe", "ok", None).await?;
        } else {
            client.get("/testbed/probe", None).await?;
        }
        Ok::<_, etcd_client::Error>(())
    };
    matches!(timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(())))
}

/// Where one member listens and how it joins its cluster.
struct Layout {
    name: String,
    client_port: u16,
    peer_port: u16,
}

impl Layout {
    fn new(name: String) -> Self {
        Layout {
            name,
            client_port: free_port(),
            peer_port: free_port(),
        }
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

/// One etcd member process, listening on loopback.
///
/// Killed with SIGKILL (by PID, through [`std::process::Child`]) on
/// [`Etcd::kill`] and on drop; its data directory lives as long as it does.
#[derive(Debug)]
pub struct Etcd {
    name: String,
    endpoint: String,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    // Dropped last: the process is killed before its directory goes.
    dir: TempDir,
}

impl Etcd {
    /// Starts a single-member etcd and waits until it answers a request.
    pub async fn start() -> anyhow::Result<Etcd> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let layout = Layout::new("m0".to_owned());
            let initial = format!("{}={}", layout.name, layout.peer_url());
            let mut etcd = Etcd::spawn(&layout, &initial, &unique_token())?;
            match etcd.wait_ready(false).await {
                Ok(()) => return Ok(etcd),
                Err(e) if etcd.port_was_taken() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt")).context("no free ports for etcd")
    }

    /// Starts one member of the cluster `initial` (`name=peer-url,...`).
    fn spawn(layout: &Layout, initial: &str, token: &str) -> anyhow::Result<Etcd> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("etcd-{}-", layout.name))
            .tempdir()
            .context("cannot create an etcd data directory")?;
        let data = dir.path().join("data");
        let log = dir.path().join("etcd.log");
        let args: Vec<String> = [
            "--name",
            &layout.name,
            "--data-dir",
            &data.to_string_lossy(),
            "--listen-client-urls",
            &layout.client_url(),
            "--advertise-client-urls",
            &layout.client_url(),
            "--listen-peer-urls",
            &layout.peer_url(),
            "--initial-advertise-peer-urls",
            &layout.peer_url(),
            "--initial-cluster",
            initial,
            "--initial-cluster-token",
            token,
            "--initial-cluster-state",
            "new",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--max-request-bytes",
            MAX_REQUEST_BYTES,
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut etcd = Etcd {
            name: layout.name.clone(),
            endpoint: layout.client_url(),
            bin: etcd_bin(),
            args,
            log,
            child: None,
            dir,
        };
        etcd.launch()?;
        Ok(etcd)
    }

    /// Runs the process (again), appending to its log.
    fn launch(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        tracing::debug!(member = %self.name, pid = child.id(), endpoint = %self.endpoint, "etcd started");
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the member answers a read (a write, with `write`) on its
    /// own endpoint; fails early, with the end of its log, if it exits.
    async fn wait_ready(&mut self, write: bool) -> anyhow::Result<()> {
        let endpoints = vec![self.endpoint.clone()];
        let end = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.exited()? {
                bail!(
                    "etcd {} exited early ({status}); end of its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if answers(&endpoints, write).await {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "etcd {} did not answer at {} within {START_DEADLINE:?}; end of its log:\n{}",
                    self.name,
                    self.endpoint,
                    self.log_tail()
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// The exit status, if the process has exited.
    fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("etcd {} is not running", self.name),
        }
    }

    fn port_was_taken(&self) -> bool {
        self.log_tail().contains("address already in use")
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The member name, `m0`, `m1`, ...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The member's directory (data and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the member's log.
    pub fn log_tail(&self) -> String {
        const LINES: usize = 30;
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LINES)..].join("\n")
    }

    /// Kills the process with SIGKILL and reaps it; a no-op once killed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            if let Err(e) = child.kill() {
                tracing::debug!(pid, error = %e, "etcd already exited");
            }
            let _ = child.wait();
            tracing::debug!(member = %self.name, pid, "etcd killed");
        }
    }

    /// Starts a killed member again on its data and ports, and waits until
    /// it answers a read (which needs its cluster to have a quorum).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.launch()?;
        self.wait_ready(false).await
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several etcd members forming one cluster, on loopback.
///
/// Tuned for fast failover (50 ms heartbeats, 500 ms elections). All
/// members are killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Etcd>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers a write (of
    /// the key `/testbed/probe`).
    pub async fn start(n: usize) -> anyhow::Result<EtcdCluster> {
        anyhow::ensure!(n > 0, "a cluster needs at least one member");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let layouts: Vec<Layout> = (0..n).map(|i| Layout::new(format!("m{i}"))).collect();
            let initial = layouts
                .iter()
                .map(|l| format!("{}={}", l.name, l.peer_url()))
                .collect::<Vec<_>>()
                .join(",");
            let token = unique_token();
            let members = layouts
                .iter()
                .map(|layout| Etcd::spawn(layout, &initial, &token))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut cluster = EtcdCluster { members };
            match cluster.wait_ready().await {
                Ok(()) => return Ok(cluster),
                Err(e) if cluster.members.iter().any(Etcd::port_was_taken) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt")).context("no free ports for etcd")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let endpoints = self.endpoints();
        let end = Instant::now() + START_DEADLINE;
        loop {
            for member in &mut self.members {
                if let Some(status) = member.exited()? {
                    bail!(
                        "etcd {} exited early ({status}); end of its log:\n{}",
                        member.name,
                        member.log_tail()
                    );
                }
            }
            if answers(&endpoints, true).await {
                return Ok(());
            }
            if Instant::now() >= end {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("--- {} ---\n{}", m.name, m.log_tail()))
                    .collect();
                bail!(
                    "the etcd cluster did not accept a write within {START_DEADLINE:?}; logs:\n{}",
                    logs.join("\n")
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Etcd::endpoint).collect()
    }

    pub fn members(&self) -> &[Etcd] {
        &self.members
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill_member(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again and waits until it answers a read.
    pub async fn restart_member(&mut self, i: usize) -> anyhow::Result<()> {
        self.members[i].restart().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn client(endpoint: String) -> anyhow::Result<Client> {
        let options = ConnectOptions::new().with_connect_timeout(PROBE_TIMEOUT);
        Ok(Client::connect([endpoint], Some(options)).await?)
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[tokio::test]
    async fn wait_until_names_what_it_waited_for() {
        let err = wait_until("pigs fly", Duration::from_millis(50), || async { false })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pigs fly"), "{err}");
        wait_until("true", Duration::from_millis(50), || async { true })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_killed_etcd_stops_answering() -> anyhow::Result<()> {
        let mut etcd = Etcd::start().await?;
        let mut kv = client(etcd.endpoint()).await?;
        kv.put("k", "v", None).await?;
        let got = kv.get("k", None).await?;
        assert_eq!(got.kvs()[0].value(), b"v");

        assert!(etcd.is_running());
        etcd.kill();
        assert!(!etcd.is_running());
        assert!(etcd.pid().is_none());
        let after = timeout(PROBE_TIMEOUT, kv.get("k", None)).await;
        assert!(!matches!(after, Ok(Ok(_))), "a killed etcd answered");
        Ok(())
    }

    #[tokio::test]
    async fn a_cluster_survives_losing_a_member() -> anyhow::Result<()> {
        let mut cluster = EtcdCluster::start(3).await?;
        assert_eq!(cluster.members().len(), 3);
        cluster.kill_member(0);
        let live = cluster.endpoints()[1..].to_vec();
        wait_until("two members accept a write", START_DEADLINE, || {
            answers(&live, true)
        })
        .await?;
        cluster.restart_member(0).await?;
        let mut first = client(cluster.endpoints()[0].clone()).await?;
        first.put("back", "yes", None).await?;
        Ok(())
    }
}
