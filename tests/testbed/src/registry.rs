//! A real OCI registry (Debian's `docker-registry`, distribution 2.8) on a
//! free loopback port, with filesystem storage in a temporary directory,
//! optionally behind htpasswd (bcrypt) basic auth.

use anyhow::{Context as _, bail};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// The environment variable naming the registry binary; `/usr/bin/docker-registry` if unset.
pub const REGISTRY_BIN_ENV: &str = "SHOAL_REGISTRY_BIN";
const DEFAULT_REGISTRY_BIN: &str = "/usr/bin/docker-registry";

const START_DEADLINE: Duration = Duration::from_secs(30);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One `docker-registry serve` process on `127.0.0.1:PORT`, killed (SIGKILL,
/// by PID) on [`Registry::kill`] and on drop; its storage lives as long as
/// it does.
#[derive(Debug)]
pub struct Registry {
    port: u16,
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    // Dropped last: the process is killed before its directory goes.
    dir: TempDir,
}

impl Registry {
    /// Starts a registry that serves anyone, and waits until `/v2/` answers.
    pub async fn start() -> anyhow::Result<Registry> {
        Self::start_inner(None).await
    }

    /// Starts a registry that serves only `username` with `password`
    /// (htpasswd with bcrypt, made by `htpasswd -Bbn`), and waits until
    /// `/v2/` answers (with 401).
    pub async fn start_with_htpasswd(username: &str, password: &str) -> anyhow::Result<Registry> {
        Self::start_inner(Some((username, password))).await
    }

    async fn start_inner(htpasswd: Option<(&str, &str)>) -> anyhow::Result<Registry> {
        let mut last_error = None;
        for _ in 0..crate::PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("registry-")
                .tempdir()
                .context("cannot create a registry directory")?;
            let mut auth = String::new();
            if let Some((user, pass)) = htpasswd {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .context("cannot run htpasswd (Debian package apache2-utils)")?;
                anyhow::ensure!(
                    out.status.success(),
                    "htpasswd failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout)?;
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: shoal-testbed\n    path: {}\n",
                    file.display()
                );
            }
            let port = crate::free_port();
            let storage = dir.path().join("storage");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: info\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                     maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: shoal-testbed\n\
                     {auth}",
                    storage.display()
                ),
            )?;
            let bin = std::env::var_os(REGISTRY_BIN_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRY_BIN));
            let mut registry = Registry {
                port,
                bin,
                config,
                log: dir.path().join("registry.log"),
                child: None,
                dir,
            };
            registry.launch()?;
            match registry.wait_ready().await {
                Ok(()) => return Ok(registry),
                Err(e) if registry.log_text().contains("address already in use") => {
                    last_error = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt")).context("no free port for the registry")
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (Debian package docker-registry)",
                    self.bin.display()
                )
            })?;
        tracing::debug!(pid = child.id(), port = self.port, "registry started");
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `GET /v2/` gets an HTTP answer; fails early, with the end
    /// of the log, if the process exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let end = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the registry exited early ({status}); end of its log:\n{}",
                    self.log_tail()
                );
            }
            if self.v2_status().await.is_some() {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "the registry did not answer on {} within {START_DEADLINE:?}; end of its log:\n{}",
                    self.addr(),
                    self.log_tail()
                );
            }
            sleep(crate::POLL_INTERVAL).await;
        }
    }

    /// The HTTP status of `GET /v2/`, if the registry answers.
    pub async fn v2_status(&self) -> Option<u16> {
        let probe = async {
            let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
            let request = format!(
                "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr()
            );
            stream.write_all(request.as_bytes()).await?;
            let mut head = vec![0u8; 12];
            stream.read_exact(&mut head).await?;
            Ok::<_, std::io::Error>(head)
        };
        let head = timeout(PROBE_TIMEOUT, probe).await.ok()?.ok()?;
        let text = String::from_utf8_lossy(&head);
        text.strip_prefix("HTTP/1.1 ")?.trim().parse().ok()
    }

    /// `127.0.0.1:PORT`, the registry part of references to it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The storage root: blobs are at
    /// `docker/registry/v2/blobs/sha256/<first two hex>/<hex>/data` under it.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file holding the blob `sha256:<hex>` (manifests are blobs too).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// The registry's directory (config, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many requests the access log shows whose request line starts
    /// with `METHOD PATH_PREFIX`, e.g. `requests("GET", "/v2/shoal/hello/blobs/")`.
    pub fn requests(&self, method: &str, path_prefix: &str) -> usize {
        let needle = format!("\"{method} {path_prefix}");
        self.log_text()
            .lines()
            .filter(|line| line.contains(&needle))
            .count()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        const LINES: usize = 30;
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LINES)..].join("\n")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (SIGKILL) and reaps it; a no-op once killed. The
    /// storage stays for [`Registry::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            tracing::debug!(pid, "registry killed");
        }
    }

    /// Starts a killed registry again on its storage and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.launch()?;
        self.wait_ready().await
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registry_answers_and_stops_answering_when_killed() -> anyhow::Result<()> {
        let mut registry = Registry::start().await?;
        assert_eq!(registry.v2_status().await, Some(200));
        assert!(
            registry.requests("GET", "/v2/") >= 1,
            "{}",
            registry.log_text()
        );
        registry.kill();
        assert_eq!(registry.v2_status().await, None);
        registry.restart().await?;
        assert_eq!(registry.v2_status().await, Some(200));
        Ok(())
    }

    #[tokio::test]
    async fn an_htpasswd_registry_wants_credentials() -> anyhow::Result<()> {
        let registry = Registry::start_with_htpasswd("alice", "s3cret").await?;
        assert_eq!(registry.v2_status().await, Some(401));
        Ok(())
    }
}
