//! What the runtime holds for one pod, read through CRI: its sandboxes and
//! its containers (found by the pod UID label), with their states, exit
//! codes, reasons and messages, the restart count and spec hash the
//! kubelet left on them, and the termination message each one wrote.
//!
//! This is all the state a pod worker needs beyond the pod itself, so a
//! kubelet that restarts takes over what the runtime still runs.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as api;

use crate::cri::{Cri, labels, selector};
use crate::error::KubeletError;

/// The most of a termination message file read (as Kubernetes).
pub const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// The most of a log read as a fallback termination message.
const MAX_LOG_TAIL_BYTES: u64 = 2048;
const MAX_LOG_TAIL_LINES: usize = 80;

/// A pod sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    /// The pod IP, empty for host-network pods.
    pub ip: String,
    pub created_at: i64,
}

/// A container's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: State,
    /// Nanoseconds since the epoch; 0 when not yet.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The image ref (a repo digest, else the image id).
    pub image_ref: String,
    /// The kubelet's annotations.
    pub restart_count: i32,
    pub hash: String,
    /// What the container wrote to its termination message file (or, with
    /// `FallbackToLogsOnError`, the end of its log after a failure).
    pub termination_message: String,
}

/// A pod's sandboxes (latest attempt first) and containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub sandboxes: Vec<Sandbox>,
    pub containers: Vec<Container>,
}

impl Observed {
    /// The sandbox with the highest attempt.
    pub fn current_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.first()
    }

    /// The instances of container `name`, newest first.
    pub fn instances(&self, name: &str) -> Vec<&Container> {
        let mut v: Vec<&Container> = self.containers.iter().filter(|c| c.name == name).collect();
        v.sort_by(|a, b| {
            (b.restart_count, b.created_at, b.attempt).cmp(&(
                a.restart_count,
                a.created_at,
                a.attempt,
            ))
        });
        v
    }

    /// The newest instance of container `name`.
    pub fn latest(&self, name: &str) -> Option<&Container> {
        self.instances(name).into_iter().next()
    }

    /// The instance before the newest one.
    pub fn previous(&self, name: &str) -> Option<&Container> {
        self.instances(name).into_iter().nth(1)
    }

    /// Containers still running.
    pub fn running(&self) -> impl Iterator<Item = &Container> {
        self.containers.iter().filter(|c| c.state == State::Running)
    }
}

/// A pod's sandboxes and containers with their states, sorted, to tell
/// whether anything changed: sandboxes as `(id, CRI sandbox state)`,
/// containers as `(id, 10 + CRI container state)`.
pub type Fingerprint = Vec<(String, i32)>;

/// The fingerprint of a pod's sandboxes and containers as listed.
pub fn fingerprint_of_lists(
    sandboxes: &[api::PodSandbox],
    containers: &[api::Container],
) -> Fingerprint {
    let mut v: Fingerprint = sandboxes
        .iter()
        .map(|s| (s.id.clone(), s.state))
        .chain(containers.iter().map(|c| (c.id.clone(), c.state + 10)))
        .collect();
    v.sort();
    v
}

impl Observed {
    /// The fingerprint of what was observed, comparable with
    /// [`fingerprint_of_lists`].
    pub fn fingerprint(&self) -> Fingerprint {
        let sandbox = |ready: bool| {
            if ready {
                api::PodSandboxState::SandboxReady as i32
            } else {
                api::PodSandboxState::SandboxNotready as i32
            }
        };
        let container = |state: State| {
            10 + match state {
                State::Created => api::ContainerState::ContainerCreated,
                State::Running => api::ContainerState::ContainerRunning,
                State::Exited => api::ContainerState::ContainerExited,
                State::Unknown => api::ContainerState::ContainerUnknown,
            } as i32
        };
        let mut v: Fingerprint = self
            .sandboxes
            .iter()
            .map(|s| (s.id.clone(), sandbox(s.ready)))
            .chain(
                self.containers
                    .iter()
                    .map(|c| (c.id.clone(), container(c.state))),
            )
            .collect();
        v.sort();
        v
    }
}

/// A sandbox from its status (as [`observe`] reads it).
pub fn sandbox_of(s: api::PodSandboxStatus) -> Sandbox {
    let ready = s.state == api::PodSandboxState::SandboxReady as i32;
    Sandbox {
        attempt: s.metadata.as_ref().map_or(0, |m| m.attempt),
        ip: if ready {
            s.network.map(|n| n.ip).unwrap_or_default()
        } else {
            String::new()
        },
        id: s.id,
        ready,
        created_at: s.created_at,
    }
}

/// Reads again the containers `ids` of a pod observed before (those a
/// reconcile created, started or stopped), the new ones in `sandbox_id`:
/// one ContainerStatus each instead of a fresh [`observe`]. A change to
/// any other container is the PLEG's to report.
pub async fn refresh(
    cri: &Cri,
    observed: &mut Observed,
    ids: &[String],
    sandbox_id: &str,
) -> Result<(), KubeletError> {
    for id in ids {
        let status = match cri.container_status(id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let at = observed.containers.iter().position(|c| c.id == *id);
        match (status, at) {
            (Some(s), Some(i)) => {
                let sandbox = observed.containers[i].sandbox_id.clone();
                observed.containers[i] = from_status(&sandbox, s);
            }
            (Some(s), None) => observed.containers.push(from_status(sandbox_id, s)),
            (None, Some(i)) => {
                observed.containers.remove(i);
            }
            (None, None) => {}
        }
    }
    Ok(())
}

/// Reads what the runtime has for the pod with `uid`.
pub async fn observe(cri: &Cri, uid: &str) -> Result<Observed, KubeletError> {
    let by_uid = selector(labels::POD_UID, uid);
    let mut sandboxes = Vec::new();
    for s in cri.list_pod_sandboxes(by_uid.clone()).await? {
        let ready = s.state == api::PodSandboxState::SandboxReady as i32;
        let mut ip = String::new();
        if ready {
            match cri.pod_sandbox_status(&s.id).await {
                Ok(Some(st)) => ip = st.network.map(|n| n.ip).unwrap_or_default(),
                Ok(None) => {}
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        sandboxes.push(Sandbox {
            attempt: s.metadata.map_or(0, |m| m.attempt),
            id: s.id,
            ready,
            ip,
            created_at: s.created_at,
        });
    }
    sandboxes.sort_by_key(|s| std::cmp::Reverse((s.attempt, s.created_at)));
    let mut containers = Vec::new();
    for c in cri.list_containers(by_uid).await? {
        let status = match cri.container_status(&c.id).await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        containers.push(from_status(&c.pod_sandbox_id, status));
    }
    Ok(Observed {
        sandboxes,
        containers,
    })
}

fn from_status(sandbox_id: &str, s: api::ContainerStatus) -> Container {
    let ann = |k: &str| s.annotations.get(k).cloned().unwrap_or_default();
    let state = match api::ContainerState::try_from(s.state) {
        Ok(api::ContainerState::ContainerCreated) => State::Created,
        Ok(api::ContainerState::ContainerRunning) => State::Running,
        Ok(api::ContainerState::ContainerExited) => State::Exited,
        _ => State::Unknown,
    };
    let mut termination_message = String::new();
    if state == State::Exited {
        let file = ann(labels::TERMINATION_LOG);
        if !file.is_empty() {
            termination_message = read_capped(Path::new(&file), MAX_TERMINATION_MESSAGE);
        }
        if termination_message.is_empty()
            && s.exit_code != 0
            && ann(labels::TERMINATION_POLICY) == "FallbackToLogsOnError"
            && !s.log_path.is_empty()
        {
            termination_message = log_tail(Path::new(&s.log_path));
        }
    }
    Container {
        id: s.id.clone(),
        sandbox_id: sandbox_id.to_owned(),
        name: s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .or_else(|| s.labels.get(labels::CONTAINER_NAME).cloned())
            .unwrap_or_default(),
        attempt: s.metadata.as_ref().map_or(0, |m| m.attempt),
        state,
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
        exit_code: s.exit_code,
        reason: s.reason.clone(),
        message: s.message.clone(),
        image_ref: if s.image_ref.is_empty() {
            s.image_id.clone()
        } else {
            s.image_ref.clone()
        },
        restart_count: ann(labels::RESTART_COUNT).parse().unwrap_or(0),
        hash: ann(labels::CONTAINER_HASH),
        termination_message,
    }
}

fn read_capped(path: &Path, max: u64) -> String {
    let Ok(f) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last lines of a CRI-format log (`TIME STREAM TAG CONTENT`), content
/// only.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(MAX_LOG_TAIL_BYTES * 4);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let mut out = String::new();
    for line in lines.iter().rev().take(MAX_LOG_TAIL_LINES).rev() {
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, content) = (parts.next(), parts.next(), parts.next(), parts.next());
        out.push_str(content.unwrap_or(""));
        if tag != Some("P") {
            out.push('\n');
        }
    }
    let bytes = out.as_bytes();
    let cut = bytes
        .len()
        .saturating_sub(usize::try_from(MAX_LOG_TAIL_BYTES).unwrap_or(usize::MAX));
    String::from_utf8_lossy(&bytes[cut..]).into_owned()
}

/// Sandboxes and containers of every pod on the runtime, by pod UID.
pub async fn by_pod(
    cri: &Cri,
) -> Result<HashMap<String, (Vec<api::PodSandbox>, Vec<api::Container>)>, KubeletError> {
    let mut out: HashMap<String, (Vec<api::PodSandbox>, Vec<api::Container>)> = HashMap::new();
    for s in cri.list_pod_sandboxes(HashMap::new()).await? {
        if let Some(uid) = s.labels.get(labels::POD_UID).cloned() {
            out.entry(uid).or_default().0.push(s);
        }
    }
    for c in cri.list_containers(HashMap::new()).await? {
        if let Some(uid) = c.labels.get(labels::POD_UID).cloned() {
            out.entry(uid).or_default().1.push(c);
        }
    }
    Ok(out)
}

/// Where a container's termination message file lives on the host.
pub fn termination_log_path(pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(container)
        .join(format!("{restart_count}-termination-log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, restart_count: i32, created_at: i64) -> Container {
        Container {
            id: format!("{name}-{restart_count}"),
            sandbox_id: "s".into(),
            name: name.into(),
            attempt: u32::try_from(restart_count).unwrap(),
            state: State::Exited,
            created_at,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image_ref: String::new(),
            restart_count,
            hash: String::new(),
            termination_message: String::new(),
        }
    }

    #[test]
    fn instances_newest_first() {
        let o = Observed {
            sandboxes: vec![],
            containers: vec![c("a", 0, 10), c("b", 0, 11), c("a", 2, 30), c("a", 1, 20)],
        };
        assert_eq!(o.latest("a").unwrap().id, "a-2");
        assert_eq!(o.previous("a").unwrap().id, "a-1");
        assert_eq!(o.previous("b"), None);
        assert_eq!(o.latest("z"), None);
    }

    #[test]
    fn a_sandbox_status_reads_as_observe_reads_it() {
        let status = |state: api::PodSandboxState| api::PodSandboxStatus {
            id: "s1".into(),
            state: state as i32,
            created_at: 7,
            metadata: Some(api::PodSandboxMetadata {
                attempt: 2,
                ..Default::default()
            }),
            network: Some(api::PodSandboxNetworkStatus {
                ip: "127.43.0.5".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ready = sandbox_of(status(api::PodSandboxState::SandboxReady));
        assert_eq!(
            ready,
            Sandbox {
                id: "s1".into(),
                attempt: 2,
                ready: true,
                ip: "127.43.0.5".into(),
                created_at: 7,
            }
        );
        let stopped = sandbox_of(status(api::PodSandboxState::SandboxNotready));
        assert!(!stopped.ready);
        assert_eq!(stopped.ip, "", "no IP for a sandbox that is not ready");
    }

    #[test]
    fn log_tails_strip_the_cri_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.000000000Z stdout F starting\n\
             2026-01-01T00:00:00.100000000Z stderr P panic: \n\
             2026-01-01T00:00:00.200000000Z stderr F boom\n",
        )
        .unwrap();
        assert_eq!(log_tail(&path), "starting\npanic: boom\n");
        assert_eq!(log_tail(&dir.path().join("missing")), "");
    }
}
