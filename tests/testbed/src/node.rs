//! A real Shoal node: `shoal node` (the CRI runtime and the kubelet in one
//! process), or `shoal cri` and `shoal kubelet` as two, in a temporary data
//! directory, with modules loaded by `shoal image import`, reaching the
//! apiserver with a kubeconfig or joining with the node token; killed by
//! PID on drop. Also the loopback addresses tests give nodes and their pods.

use anyhow::{Context as _, bail};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use tempfile::TempDir;

use crate::shoal::{ShoalServer, shoal};

/// A child process with its stderr in a file, killed (SIGKILL) on drop.
#[derive(Debug)]
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(bin: &Path, args: &[OsString], log: PathBuf) -> anyhow::Result<Proc> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = shoal(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Proc { child, log })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Loads `wasm` into the image store of the node data directory `dir`
/// under `name` (`NAME:TAG`), with `BIN image import`.
pub fn import_image(bin: &Path, dir: &Path, wasm: &str, name: &str) -> anyhow::Result<()> {
    let out = shoal(bin)
        .args(["image", "import", wasm, name, "--data-dir"])
        .arg(dir)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "shoal image import {wasm} {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// How to start a [`ShoalNode`].
#[derive(Clone, Debug)]
pub struct NodeOptions<'a> {
    /// The node name.
    pub name: &'a str,
    /// The node's address (`--node-ip`).
    pub node_ip: &'a str,
    /// `shoal cri` and `shoal kubelet` as two processes instead of `shoal node`.
    pub split: bool,
    /// Modules imported before the node starts, as `(path, NAME:TAG)`.
    pub images: &'a [(&'a str, &'a str)],
    /// More flags for the kubelet (`shoal node` or `shoal kubelet`).
    pub extra: &'a [&'a str],
}

/// How the kubelet reaches the apiserver.
#[derive(Debug)]
enum Access {
    /// `--kubeconfig PATH`.
    Kubeconfig(PathBuf),
    /// `--server URL --token TOKEN`: the node joins, and the join leaves
    /// `kubelet.kubeconfig` in its data directory.
    Token { server: String, token: String },
}

/// A running node in a temporary data directory, pointed at an apiserver
/// with a kubeconfig or joined with the node token. The kubelet is killed
/// before the runtime.
#[derive(Debug)]
pub struct ShoalNode {
    bin: PathBuf,
    access: Access,
    name: String,
    node_ip: String,
    split: bool,
    extra: Vec<String>,
    /// `shoal cri`, when the kubelet runs alone.
    cri: Option<Proc>,
    /// `shoal node`, or `shoal kubelet`.
    kubelet: Option<Proc>,
    // Dropped last: the processes are killed before their directory goes.
    dir: TempDir,
}

impl ShoalNode {
    /// Imports `options.images`, then starts `BIN node` (or `BIN cri` and
    /// `BIN kubelet`). Does not wait: wait for the Node to be Ready through
    /// the API.
    pub fn start(
        bin: &Path,
        kubeconfig: &Path,
        options: &NodeOptions<'_>,
    ) -> anyhow::Result<ShoalNode> {
        Self::spawn_new(bin, Access::Kubeconfig(kubeconfig.to_owned()), options)
    }

    /// As [`ShoalNode::start`], but joining `server` with its node token:
    /// `BIN node --server URL --token TOKEN` (not `split`: `shoal kubelet`
    /// does not join).
    pub fn join(
        bin: &Path,
        server: &ShoalServer,
        options: &NodeOptions<'_>,
    ) -> anyhow::Result<ShoalNode> {
        if options.split {
            bail!("a node joins with the token only as `shoal node`, not split");
        }
        let access = Access::Token {
            server: server.url(),
            token: server.node_token()?,
        };
        Self::spawn_new(bin, access, options)
    }

    fn spawn_new(
        bin: &Path,
        access: Access,
        options: &NodeOptions<'_>,
    ) -> anyhow::Result<ShoalNode> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("shoal-node-{}-", options.name))
            .tempdir()
            .context("cannot create a node data directory")?;
        for (wasm, name) in options.images {
            import_image(bin, dir.path(), wasm, name)?;
        }
        let mut node = ShoalNode {
            bin: bin.to_owned(),
            access,
            name: options.name.to_owned(),
            node_ip: options.node_ip.to_owned(),
            split: options.split,
            extra: options.extra.iter().map(|s| s.to_string()).collect(),
            cri: None,
            kubelet: None,
            dir,
        };
        if node.split {
            let args = ["cri".into(), "--data-dir".into(), node.dir.path().into()];
            node.cri = Some(Proc::spawn(bin, &args, node.dir.path().join("cri.log"))?);
        }
        node.start_kubelet()?;
        Ok(node)
    }

    /// Starts the kubelet (`shoal node`, or `shoal kubelet` when split)
    /// again, after [`ShoalNode::kill_kubelet`].
    pub fn start_kubelet(&mut self) -> anyhow::Result<()> {
        let command = if self.split { "kubelet" } else { "node" };
        let mut args: Vec<OsString> = vec![command.into()];
        match &self.access {
            Access::Kubeconfig(path) => args.extend(["--kubeconfig".into(), path.into()]),
            Access::Token { server, token } => args.extend([
                "--server".into(),
                server.into(),
                "--token".into(),
                token.into(),
            ]),
        }
        args.extend([
            "--data-dir".into(),
            self.dir.path().into(),
            "--name".into(),
            self.name.clone().into(),
            "--node-ip".into(),
            self.node_ip.clone().into(),
        ]);
        // The kubelet API port, when this build has one: any free port, so
        // nodes of concurrent tests never meet on it.
        if self.has_flag(command, "--kubelet-port")? {
            args.extend(["--kubelet-port".into(), "0".into()]);
        }
        args.extend(self.extra.iter().map(OsString::from));
        let log = self.dir.path().join("kubelet.log");
        self.kubelet = Some(Proc::spawn(&self.bin, &args, log)?);
        Ok(())
    }

    /// Whether `BIN COMMAND --help` lists `flag`.
    fn has_flag(&self, command: &str, flag: &str) -> anyhow::Result<bool> {
        let out = shoal(&self.bin)
            .args([command, "--help"])
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        Ok(String::from_utf8_lossy(&out.stdout).contains(flag))
    }

    /// Kills the kubelet (SIGKILL); with `split`, the runtime keeps running.
    pub fn kill_kubelet(&mut self) {
        if let Some(mut p) = self.kubelet.take() {
            p.kill();
        }
    }

    /// Kills every process of the node, the kubelet first.
    pub fn kill(&mut self) {
        self.kill_kubelet();
        if let Some(mut p) = self.cri.take() {
            p.kill();
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn node_ip(&self) -> &str {
        &self.node_ip
    }

    /// The node's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CRI runtime's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    /// The kubelet's (or `shoal node`'s) process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.kubelet.as_ref().map(|p| p.child.id())
    }

    /// Everything the kubelet (or `shoal node`) logged so far.
    pub fn kubelet_log(&self) -> String {
        self.kubelet
            .as_ref()
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The last 80 lines of every log of the node, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in self.kubelet.iter().chain(self.cri.iter()) {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 80 lines)\n", p.log.display()));
            for l in &lines[lines.len().saturating_sub(80)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for ShoalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Slots per process in [`pod_cidr`] and [`node_ip`].
const SLOTS: u32 = 4;

/// A pod CIDR (a /24 in 127.43.0.0-127.242.255.0) for node `slot` (0..4)
/// of this process, which no concurrently running test process shares
/// (the scheme of the CRI tests for slot 0 of pids below 12,800).
pub fn pod_cidr(slot: u32) -> String {
    assert!(slot < SLOTS, "pod_cidr: slot {slot} is not below {SLOTS}");
    let n = (std::process::id().wrapping_mul(SLOTS) + slot) % (200 * 256);
    format!("127.{}.{}.0/24", 43 + n / 256, n % 256)
}

/// A node address in 127.1.0.0/16 for node `slot` (0..4) of this process,
/// which no concurrently running test process shares.
pub fn node_ip(slot: u32) -> String {
    assert!(slot < SLOTS, "node_ip: slot {slot} is not below {SLOTS}");
    let n = (std::process::id().wrapping_mul(SLOTS) + slot) % (256 * 254);
    format!("127.1.{}.{}", n / 254, n % 254 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_distinct_addresses_inside_loopback() {
        let cidrs: Vec<String> = (0..SLOTS).map(pod_cidr).collect();
        let ips: Vec<String> = (0..SLOTS).map(node_ip).collect();
        for (i, c) in cidrs.iter().enumerate() {
            assert!(c.starts_with("127.") && c.ends_with(".0/24"), "{c}");
            assert!(!cidrs[i + 1..].contains(c), "{cidrs:?}");
        }
        for (i, ip) in ips.iter().enumerate() {
            let addr: std::net::Ipv4Addr = ip.parse().unwrap();
            assert!(addr.is_loopback(), "{ip}");
            assert!(!ips[i + 1..].contains(ip), "{ips:?}");
        }
    }
}
