//! [`Runtime`]: the state behind both CRI services. The tables of pod
//! sandboxes and containers live in memory behind one lock (never held across
//! an await) and are mirrored on disk by [`Records`]; the Wasm engine and the
//! image store are shared by every container.
//!
//! The operations are split by what they act on: `pods.rs`, `containers.rs`,
//! `exec.rs`, `stats.rs`; the tables and their indexes are in `tables.rs`,
//! the event broadcast in `events.rs`; this file holds the start-up recovery,
//! the runtime-wide calls (Version, Status, UpdateRuntimeConfig) and the
//! shutdown.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use images::ImageStore;
use k8s_cri::v1 as cri;
use tokio::sync::watch;
use wasi_shim::{Engine, KillHandle};

use crate::Config;
use crate::error::CriError;
use crate::events::Events;
use crate::ipam::{Cidr, Ipam};
use crate::logs::LogFile;
use crate::records::{
    ContainerRecord, Phase, PodRecord, RUNTIME_RESTARTED, Records, UNKNOWN_EXIT_CODE,
};
use crate::tables::Tables;

/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The runtime's name in Version.
pub const RUNTIME_NAME: &str = "shoal";

/// How long a StopContainer waits past the grace period, and past a kill,
/// for the guest to be gone.
pub(crate) const STOP_MARGIN: Duration = Duration::from_secs(1);

/// A container: its record, and while it runs, the handles to it.
#[derive(Debug)]
pub(crate) struct Container {
    pub rec: ContainerRecord,
    pub live: Option<Live>,
    /// Turns `true` when the container has exited.
    pub done: watch::Sender<bool>,
    /// Its module is a core module, so a command (only a component can be
    /// an HTTP function): StartContainer need not wait for a listener.
    /// Known from CreateContainer's load; `false` if unknown (recovered).
    pub core_module: bool,
}

/// A running container's handles.
#[derive(Debug)]
pub(crate) struct Live {
    pub kill: KillHandle,
    pub log: Option<Arc<LogFile>>,
    pub http_addr: Option<SocketAddr>,
}

/// The runtime.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub config: Config,
    pub engine: Engine,
    pub images: ImageStore,
    pub records: Records,
    /// `DATA_DIR/cri`: records, per-container files, exec scratch space.
    pub state_dir: PathBuf,
    /// The sandboxes' host ports.
    pub ports: crate::ports::HostPorts,
    /// GetContainerEvents' broadcast.
    pub events: Events,
    tables: Mutex<Tables>,
}

impl Runtime {
    /// Builds the engine, opens the image store and the records, and takes
    /// back what an earlier run of the runtime left.
    pub fn new(config: Config) -> Result<Arc<Self>, CriError> {
        let state_dir = config.data_dir.join("cri");
        let records = Records::open(&state_dir)?;
        // Scratch directories of execs an earlier run did not finish.
        let _ = std::fs::remove_dir_all(state_dir.join("exec"));
        let images =
            ImageStore::open(config.data_dir.join("images"))?.with_config(config.registry.clone());
        let mut engine_config = config.engine.clone();
        if engine_config.cache_dir.is_none() {
            engine_config.cache_dir = Some(config.data_dir.join("cache"));
        }
        let engine = Engine::new(engine_config)?;
        let cidr = Cidr::parse(&config.pod_cidr)?;
        let mut tables = Tables::new(Ipam::new(cidr));
        let (pods, containers) = records.load();
        let now = now_ns();
        for mut pod in pods {
            if pod.ready {
                pod.ready = false;
                let _ = records.save_pod(&pod);
            }
            if let Some(ip) = pod.ip {
                tables.ipam.reserve(ip);
            }
            tables.insert_pod(pod);
        }
        for mut rec in containers {
            if !tables.pods().contains_key(&rec.pod_id) {
                records.remove_container(&rec.id);
                continue;
            }
            if rec.phase == Phase::Running {
                rec.phase = Phase::Exited;
                rec.finished_at = now;
                rec.exit_code = UNKNOWN_EXIT_CODE;
                rec.reason = RUNTIME_RESTARTED.into();
                rec.message = "shoal cri stopped while the container ran (crashed or was killed); \
                               its guest was lost"
                    .into();
                let _ = records.save_container(&rec);
            }
            let done = watch::Sender::new(rec.phase == Phase::Exited);
            tables.insert_container(Container {
                rec,
                live: None,
                done,
                core_module: false,
            });
        }
        if !tables.pods().is_empty() {
            tracing::info!(
                pods = tables.pods().len(),
                containers = tables.containers().len(),
                "recovered the records of an earlier run: pods are NOTREADY, running containers EXITED"
            );
        }
        Ok(Arc::new(Self {
            config,
            engine,
            images,
            records,
            state_dir,
            ports: Default::default(),
            events: Events::default(),
            tables: Mutex::new(tables),
        }))
    }

    pub fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a container event (or a pod sandbox's, with `id` its own) if a
    /// stream is open: the pod's status and its containers' as they are in
    /// `t`.
    pub fn emit(&self, t: &Tables, pod: &PodRecord, id: &str, kind: cri::ContainerEventType) {
        if !self.events.wanted() {
            return;
        }
        self.events.send(cri::ContainerEventResponse {
            container_id: id.to_owned(),
            container_event_type: kind as i32,
            created_at: now_ns(),
            pod_sandbox_status: Some(crate::pods::pod_status(pod)),
            containers_statuses: t
                .pod_containers(&pod.id)
                .map(|c| self.container_status_of(c))
                .collect(),
        });
    }

    /// [`emit`](Self::emit) for the pod with this id, if it is there.
    pub fn emit_in(&self, t: &Tables, pod_id: &str, id: &str, kind: cri::ContainerEventType) {
        if let Some(pod) = t.pods().get(pod_id) {
            self.emit(t, pod, id, kind);
        }
    }

    /// A container's own directory (linked file mounts).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("files").join(id)
    }

    pub fn version(&self) -> cri::VersionResponse {
        cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }
    }

    pub fn status(&self, verbose: bool) -> cri::StatusResponse {
        let cidr = self.tables().ipam.cidr();
        let condition = |kind: &str| cri::RuntimeCondition {
            r#type: kind.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        let mut info = HashMap::new();
        if verbose {
            info.insert(
                "config".into(),
                serde_json::json!({
                    "podCIDR": cidr.to_string(),
                    "dataDir": self.config.data_dir,
                    "logMaxBytes": self.config.log_max_bytes,
                    "logMaxFiles": self.config.log_max_files,
                })
                .to_string(),
            );
            let cache = self.engine.cache_stats();
            let inline = self.engine.inline_stats();
            info.insert(
                "engine".into(),
                serde_json::json!({
                    "compiled": cache.compiled,
                    "diskHits": cache.disk_hits,
                    "memoryHits": cache.memory_hits,
                    "inlineStarts": inline.started,
                    "inlineEnds": inline.ended,
                })
                .to_string(),
            );
        }
        cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![condition("RuntimeReady"), condition("NetworkReady")],
            }),
            info,
            runtime_handlers: vec![cri::RuntimeHandler {
                name: String::new(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: false,
            }),
        }
    }

    /// Takes the node's pod CIDR for the pods to come.
    pub fn update_runtime_config(
        &self,
        req: cri::UpdateRuntimeConfigRequest,
    ) -> Result<(), CriError> {
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if cidr.is_empty() {
            return Ok(());
        }
        let cidr = Cidr::parse(&cidr)?;
        self.tables().ipam.set_cidr(cidr);
        tracing::info!(%cidr, "pod CIDR updated");
        Ok(())
    }

    /// Stops every running container (terminate with `grace`, then kill)
    /// and syncs the records.
    pub async fn shutdown(self: &Arc<Self>, grace: Duration) {
        let running: Vec<String> = self
            .tables()
            .containers()
            .values()
            .filter(|c| c.live.is_some())
            .map(|c| c.rec.id.clone())
            .collect();
        if !running.is_empty() {
            tracing::info!(count = running.len(), "stopping the running containers");
        }
        let stops = running.iter().map(|id| {
            let rt = self.clone();
            async move {
                if let Err(e) = rt.stop_container(id, grace).await {
                    tracing::warn!(container = %id, error = %crate::error::chain(&e), "cannot stop");
                }
            }
        });
        futures::future::join_all(stops).await;
        self.ports.close_all().await;
        if let Err(e) = self.records.sync() {
            tracing::warn!(error = %crate::error::chain(&e), "cannot sync the records");
        }
    }
}

/// Finds a key by exact id or unique prefix (as crictl and containerd do).
/// `Ok(None)` if nothing matches.
pub(crate) fn find<V>(
    map: &BTreeMap<String, V>,
    id: &str,
    what: &str,
) -> Result<Option<String>, CriError> {
    if id.is_empty() {
        return Err(CriError::InvalidArgument(format!("the {what} id is empty")));
    }
    if map.contains_key(id) {
        return Ok(Some(id.to_owned()));
    }
    let mut matches = map
        .range::<str, _>((std::ops::Bound::Included(id), std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(id))
        .map(|(k, _)| k);
    match (matches.next(), matches.next()) {
        (Some(k), None) => Ok(Some(k.clone())),
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(CriError::InvalidArgument(format!(
            "{what} id prefix {id:?} matches more than one {what}: give more of the id"
        ))),
    }
}

/// A new 64-hex-digit id, as containerd's.
pub(crate) fn new_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Now, in nanoseconds since the epoch.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Whether `labels` hold every pair of `selector`.
pub(crate) fn selects(
    selector: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_by_id_and_prefix() {
        let mut m = BTreeMap::new();
        m.insert("abc123".to_owned(), ());
        m.insert("abd456".to_owned(), ());
        assert_eq!(
            find(&m, "abc123", "pod").unwrap().as_deref(),
            Some("abc123")
        );
        assert_eq!(find(&m, "abd", "pod").unwrap().as_deref(), Some("abd456"));
        assert_eq!(find(&m, "zz", "pod").unwrap(), None);
        assert!(matches!(
            find(&m, "ab", "pod"),
            Err(CriError::InvalidArgument(_))
        ));
        assert!(matches!(
            find(&m, "", "pod"),
            Err(CriError::InvalidArgument(_))
        ));
    }

    #[test]
    fn label_selectors() {
        let labels: HashMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "x".into())].into();
        assert!(selects(&HashMap::new(), &labels));
        assert!(selects(&[("app".into(), "web".into())].into(), &labels));
        assert!(!selects(&[("app".into(), "db".into())].into(), &labels));
        assert!(!selects(&[("zone".into(), "a".into())].into(), &labels));
        assert_eq!(new_id().len(), 64);
    }
}
