//! What the runtime knows about its pod sandboxes and containers, as records
//! kept in memory and mirrored on disk (`DATA_DIR/cri/pods/ID.json`,
//! `DATA_DIR/cri/containers/ID.json`, each written to a temporary file and
//! renamed into place), so that after a restart of `shoal cri` the old pods
//! are listed as NOTREADY and the containers that were running as EXITED
//! with reason [`RUNTIME_RESTARTED`], instead of vanishing.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::CriError;
use crate::spec::Spec;

/// The reason of a container that was running when `shoal cri` stopped
/// without stopping it (a crash, `kill -9`).
pub const RUNTIME_RESTARTED: &str = "RuntimeRestarted";

/// The exit code of a container whose end was not seen (containerd's
/// "unknown exit code").
pub const UNKNOWN_EXIT_CODE: i32 = 255;

/// A pod sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PodRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub runtime_handler: String,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub ready: bool,
    /// The pod IP; `None` for a host-network pod.
    pub ip: Option<Ipv4Addr>,
}

impl PodRecord {
    /// The identity RunPodSandbox is idempotent on:
    /// `name_namespace_uid_attempt`, as containerd names sandboxes.
    pub fn name_key(config: &PodSandboxConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
    }

    /// Whether the pod asked for the host's network.
    pub fn host_network(config: &PodSandboxConfig) -> bool {
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == k8s_cri::v1::NamespaceMode::Node as i32)
    }
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    Created,
    Running,
    Exited,
}

/// The image a container was created from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ImageInfo {
    /// `sha256:` id of the module.
    pub id: String,
    /// What status shows as the image: its first tag, else what was asked.
    pub name: String,
    /// A repo digest if there is one, else the id.
    pub image_ref: String,
    /// The module file.
    pub path: PathBuf,
}

/// A container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: ContainerConfig,
    pub image: ImageInfo,
    pub spec: Spec,
    /// `log_directory/log_path`, if both were given.
    pub log_path: Option<PathBuf>,
    pub phase: Phase,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// CPU time and memory at the end of the run.
    pub cpu_nanos: u64,
    pub memory_bytes: u64,
}

impl ContainerRecord {
    /// The identity CreateContainer is idempotent on: pod, name, attempt.
    pub fn name_key(pod_id: &str, config: &ContainerConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{pod_id}/{}/{}", m.name, m.attempt)
    }
}

/// The on-disk mirror.
#[derive(Debug)]
pub(crate) struct Records {
    pods: PathBuf,
    containers: PathBuf,
}

impl Records {
    /// Opens (creating) the record directories under `dir`.
    pub fn open(dir: &Path) -> Result<Self, CriError> {
        let pods = dir.join("pods");
        let containers = dir.join("containers");
        for d in [&pods, &containers] {
            fs::create_dir_all(d).map_err(CriError::io("create", d))?;
        }
        Ok(Self { pods, containers })
    }

    pub fn save_pod(&self, pod: &PodRecord) -> Result<(), CriError> {
        write(&self.pods, &pod.id, pod)
    }

    pub fn save_container(&self, c: &ContainerRecord) -> Result<(), CriError> {
        write(&self.containers, &c.id, c)
    }

    pub fn remove_pod(&self, id: &str) {
        let _ = fs::remove_file(self.pods.join(format!("{id}.json")));
    }

    pub fn remove_container(&self, id: &str) {
        let _ = fs::remove_file(self.containers.join(format!("{id}.json")));
    }

    /// Every record on disk. A file that does not parse is skipped with a
    /// warning (and left in place for a person to look at).
    pub fn load(&self) -> (Vec<PodRecord>, Vec<ContainerRecord>) {
        (read_all(&self.pods), read_all(&self.containers))
    }
}

fn write<T: Serialize>(dir: &Path, id: &str, value: &T) -> Result<(), CriError> {
    let path = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!(".{id}.json.tmp"));
    let bytes = serde_json::to_vec(value).map_err(|e| CriError::Io {
        action: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    fs::write(&tmp, bytes).map_err(CriError::io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(CriError::io("rename into place", &path))
}

fn read_all<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json")
            || path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<T>(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => out.push(v),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable record")
            }
        }
    }
    out
}
