//! Containers: CREATED -> RUNNING -> EXITED. CreateContainer checks the image
//! is pulled and its module compiles, and works out the guest's [`Spec`];
//! StartContainer records the start, then starts the guest (outside the
//! tables' lock) with its log sinks and a callback that records the exit
//! (code, reason, message) the moment the guest ends, on the thread where
//! it ended, with nobody polling and no task woken for it. A short command
//! (one whose module has ended cleanly and quickly before) runs inline in
//! StartContainer, so it may have exited, STOPPED sent, when that returns.
//! StopContainer terminates with the grace period, then kills.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::sync::watch;
use tracing::Instrument;
use wasi_shim::{Exit, ExitReason, ModuleKind, ModuleSource, Output, Prepared, ShimError};

use crate::error::{CriError, chain};
use crate::logs::{LogFile, StreamSink};
use crate::records::{ContainerRecord, ImageInfo, Phase};
use crate::runtime::{Container, Live, Runtime, STOP_MARGIN, find, new_id, now_ns, selects};
use crate::spec::{Spec, short_name};

/// The exit code of a container whose guest could not be started.
pub const START_ERROR_EXIT_CODE: i32 = 128;

impl Runtime {
    pub async fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> Result<String, CriError> {
        let config = req
            .config
            .ok_or_else(|| CriError::InvalidArgument("CreateContainer needs a config".into()))?;
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                CriError::InvalidArgument("CreateContainer: config.metadata.name is empty".into())
            })?;
        let asked = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                CriError::InvalidArgument("CreateContainer: config.image.image is empty".into())
            })?;
        let (pod_id, pod_config) = {
            let t = self.tables();
            let pod_id = find(t.pods(), &req.pod_sandbox_id, "pod sandbox")?
                .ok_or_else(|| CriError::not_found("pod sandbox", &req.pod_sandbox_id))?;
            let pod = &t.pods()[&pod_id];
            if !pod.ready {
                return Err(CriError::FailedPrecondition(format!(
                    "pod sandbox {pod_id} is not ready (stopped): create a new pod sandbox"
                )));
            }
            let key = ContainerRecord::name_key(&pod_id, &config);
            if let Some(existing) = t.container_named(&key) {
                return Err(CriError::AlreadyExists(format!(
                    "container {name} (attempt {}) already exists in pod {pod_id} as {existing}: remove it first",
                    config.metadata.as_ref().map_or(0, |m| m.attempt)
                )));
            }
            (pod_id, pod.config.clone())
        };

        let image = self
            .images
            .status(&asked)?
            .ok_or_else(|| CriError::ImageNotPulled {
                image: asked.clone(),
            })?;
        // Compile now: a bad module is refused here, and the start is fast
        // (the image's id is its module's digest: found in memory by it).
        let loaded = self
            .engine
            .load(&ModuleSource::verified(&image.path, &image.id))
            .await
            .map_err(|source| CriError::Module {
                image: asked.clone(),
                source,
            })?;
        let display = config
            .image
            .as_ref()
            .map(|i| i.user_specified_image.clone())
            .filter(|i| !i.is_empty())
            .or_else(|| image.repo_tags.first().cloned())
            .unwrap_or_else(|| asked.clone());
        let info = ImageInfo {
            id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            name: image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| asked.clone()),
            path: image.path.clone(),
        };

        let id = new_id();
        let dir = self.container_dir(&id);
        let spec = match Spec::new(&config, &pod_config, &short_name(&display), &dir) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let log_path = (!pod_config.log_directory.is_empty() && !config.log_path.is_empty())
            .then(|| PathBuf::from(&pod_config.log_directory).join(&config.log_path));
        let rec = ContainerRecord::created(
            id.clone(),
            pod_id.clone(),
            config,
            info,
            spec,
            log_path,
            now_ns(),
        );

        let mut t = self.tables();
        let key = ContainerRecord::name_key(&pod_id, &rec.config);
        if !t.pods().get(&pod_id).is_some_and(|p| p.ready) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(CriError::FailedPrecondition(format!(
                "pod sandbox {pod_id} was stopped or removed while the container was being created"
            )));
        }
        if t.container_named(&key).is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(CriError::AlreadyExists(format!(
                "container {name} was created in pod {pod_id} at the same time: remove it first"
            )));
        }
        self.records.save_container(&rec)?;
        tracing::info!(container = %id, pod = %pod_id, name = %name, image = %rec.image.id, "container created");
        t.insert_container(Container {
            rec,
            live: None,
            done: watch::Sender::new(false),
            core_module: loaded.kind == ModuleKind::Core,
        });
        self.emit_in(
            &t,
            &pod_id,
            &id,
            cri::ContainerEventType::ContainerCreatedEvent,
        );
        Ok(id)
    }

    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<(), CriError> {
        let log = self.open_log(id);
        let (id, prepared, core_module) = {
            let mut t = self.tables();
            let id = find(t.containers(), id, "container")?
                .ok_or_else(|| CriError::not_found("container", id))?;
            let c = &t.containers()[&id];
            match c.rec.phase {
                Phase::Created => {}
                Phase::Running => {
                    return Err(CriError::FailedPrecondition(format!(
                        "container {id} is already running"
                    )));
                }
                Phase::Exited => {
                    return Err(CriError::FailedPrecondition(format!(
                        "container {id} has exited; a container starts once: create a new one"
                    )));
                }
            }
            let Some(pod) = t.pods().get(&c.rec.pod_id).filter(|p| p.ready) else {
                return Err(CriError::FailedPrecondition(format!(
                    "pod sandbox {} of container {id} is not ready: create a new pod sandbox",
                    c.rec.pod_id
                )));
            };
            let pod_ip = pod.ip.map(IpAddr::V4);
            match self.launch(&c.rec, pod_ip, log) {
                Ok(Launched { prepared, log }) => {
                    let c = t.container_mut(&id).expect("looked up above");
                    c.rec.phase = Phase::Running;
                    c.rec.started_at = now_ns();
                    c.live = Some(Live {
                        kill: prepared.kill_handle(),
                        log,
                        http_addr: None,
                    });
                    if let Err(e) = self.records.save_container(&c.rec) {
                        tracing::warn!(container = %id, error = %chain(&e), "cannot record the start");
                    }
                    let pod_id = c.rec.pod_id.clone();
                    let core_module = c.core_module;
                    self.emit_in(
                        &t,
                        &pod_id,
                        &id,
                        cri::ContainerEventType::ContainerStartedEvent,
                    );
                    (id, prepared, core_module)
                }
                Err(e) => {
                    let c = t.container_mut(&id).expect("looked up above");
                    c.rec.phase = Phase::Exited;
                    c.rec.started_at = now_ns();
                    c.rec.finished_at = c.rec.started_at;
                    c.rec.exit_code = START_ERROR_EXIT_CODE;
                    c.rec.reason = "StartError".into();
                    c.rec.message = chain(&e);
                    let _ = self.records.save_container(&c.rec);
                    c.done.send_replace(true);
                    let pod_id = c.rec.pod_id.clone();
                    self.emit_in(
                        &t,
                        &pod_id,
                        &id,
                        cri::ContainerEventType::ContainerStoppedEvent,
                    );
                    return Err(e);
                }
            }
        };
        // Started with the lock released: the exit callback (`launch`) takes
        // it, and may run right here for a short command.
        let running = prepared.start();
        // Wait until the guest is loaded and, for an HTTP function, listening,
        // so that the kubelet's first probe finds it. A core module is a
        // command, found in memory: nothing to wait for. The exit is
        // recorded by the guest's end (`launch`), not by a task here.
        let addr = if core_module {
            None
        } else {
            let span = tracing::info_span!("container", container = %id);
            running.http_addr().instrument(span).await
        };
        if let Some(addr) = addr {
            let mut t = self.tables();
            if let Some(live) = t.container_mut(&id).and_then(|c| c.live.as_mut()) {
                live.http_addr = Some(addr);
            }
        }
        tracing::info!(container = %id, http = ?addr, "container started");
        Ok(())
    }

    /// Opens the log file of a container that has not started, before the
    /// tables are locked for the start: creating its inode is the slowest
    /// step of a start on a busy disk, and no other call should wait on it.
    /// The file is opened for appending, so a start that then fails (or
    /// loses a race with another) leaves at most an empty file.
    fn open_log(&self, id: &str) -> Result<Option<Arc<LogFile>>, CriError> {
        let path = {
            let t = self.tables();
            let Ok(Some(id)) = find(t.containers(), id, "container") else {
                return Ok(None);
            };
            let c = &t.containers()[&id];
            match (&c.rec.phase, &c.rec.log_path) {
                (Phase::Created, Some(path)) => path.clone(),
                _ => return Ok(None),
            }
        };
        LogFile::open(&path, self.config.log_max_bytes, self.config.log_max_files)
            .map(|log| Some(Arc::new(log)))
            .map_err(CriError::io("open the container log", &path))
    }

    /// Builds the sandbox, with its output to the opened `log`, and
    /// prepares the guest, with the callback that records its exit.
    fn launch(
        self: &Arc<Self>,
        rec: &ContainerRecord,
        pod_ip: Option<IpAddr>,
        log: Result<Option<Arc<LogFile>>, CriError>,
    ) -> Result<Launched, CriError> {
        if !rec.image.path.is_file() {
            return Err(CriError::FailedPrecondition(format!(
                "the module of image {} ({}) is gone from the image store: pull the image again and create a new container",
                rec.image.name,
                rec.image.path.display()
            )));
        }
        for m in &rec.spec.mounts {
            if !m.host.is_dir() {
                return Err(CriError::FailedPrecondition(format!(
                    "mount {} -> {}: the host directory is gone",
                    m.host.display(),
                    m.guest
                )));
            }
        }
        let mut builder = rec
            .spec
            .sandbox(pod_ip)
            .http_listen(std::net::SocketAddr::new(
                pod_ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                rec.spec.http_port,
            ));
        let mut sinks: Vec<Arc<StreamSink>> = Vec::new();
        let log = match log? {
            Some(log) => {
                let out = Arc::new(StreamSink::new(log.clone(), "stdout"));
                let err = Arc::new(StreamSink::new(log.clone(), "stderr"));
                builder = builder
                    .stdout(Output::Sink(out.clone()))
                    .stderr(Output::Sink(err.clone()));
                sinks.push(out);
                sinks.push(err);
                Some(log)
            }
            None => None,
        };
        // The exit is recorded where the guest ends (its pool's thread, or
        // StartContainer's for a command run inline): the sinks closed
        // first, so the log is complete when the STOPPED event goes out.
        let rt = Arc::downgrade(self);
        let id = rec.id.clone();
        let prepared = self.engine.prepare_then(
            ModuleSource::verified(&rec.image.path, &rec.image.id),
            &builder.build(),
            move |result| {
                for s in &sinks {
                    s.close();
                }
                if let Some(rt) = rt.upgrade() {
                    rt.exited(&id, result);
                }
            },
        );
        Ok(Launched { prepared, log })
    }

    /// Records the end of a run.
    fn exited(&self, id: &str, result: &Result<Exit, ShimError>) {
        let mut t = self.tables();
        let Some(c) = t.container_mut(id) else {
            return;
        };
        if c.rec.phase != Phase::Running {
            return;
        }
        let (code, reason, message) = match result {
            Ok(exit) => describe_exit(exit),
            Err(e) => (START_ERROR_EXIT_CODE, "StartError".to_owned(), chain(e)),
        };
        let usage = c.live.as_ref().map(|l| l.kill.usage());
        if let Ok(exit) = result {
            c.rec.cpu_nanos = u64::try_from(exit.cpu_time.as_nanos()).unwrap_or(u64::MAX);
            c.rec.memory_bytes = exit.peak_memory_bytes;
        } else if let Some(u) = usage {
            c.rec.cpu_nanos = u64::try_from(u.cpu_time.as_nanos()).unwrap_or(u64::MAX);
            c.rec.memory_bytes = u.memory_bytes;
        }
        c.rec.phase = Phase::Exited;
        c.rec.finished_at = now_ns();
        c.rec.exit_code = code;
        c.rec.reason = reason;
        c.rec.message = message;
        c.live = None;
        if let Err(e) = self.records.save_container(&c.rec) {
            tracing::warn!(container = %id, error = %chain(&e), "cannot record the exit");
        }
        tracing::info!(container = %id, code = c.rec.exit_code, reason = %c.rec.reason, "container exited");
        c.done.send_replace(true);
        let pod_id = c.rec.pod_id.clone();
        self.emit_in(
            &t,
            &pod_id,
            id,
            cri::ContainerEventType::ContainerStoppedEvent,
        );
    }

    /// Stops a running container: terminate with `grace` (zero: kill at
    /// once), kill what is left when it runs out, and wait for the end. A
    /// container that is not running is left as it is.
    pub async fn stop_container(
        self: &Arc<Self>,
        id: &str,
        grace: Duration,
    ) -> Result<(), CriError> {
        let (id, kill, mut done) = {
            let t = self.tables();
            let id = find(t.containers(), id, "container")?
                .ok_or_else(|| CriError::not_found("container", id))?;
            let c = &t.containers()[&id];
            let Some(live) = &c.live else {
                return Ok(());
            };
            (id, live.kill.clone(), c.done.subscribe())
        };
        if grace.is_zero() {
            kill.kill();
        } else {
            kill.terminate(grace);
            let ended = tokio::time::timeout(grace + STOP_MARGIN, done.wait_for(|d| *d)).await;
            if ended.is_ok() {
                return Ok(());
            }
            tracing::info!(container = %id, "still running after the grace period: killing");
            kill.kill();
        }
        match tokio::time::timeout(STOP_MARGIN * 2, done.wait_for(|d| *d)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(CriError::DeadlineExceeded(format!(
                "container {id} did not stop within {:?} of being killed",
                STOP_MARGIN * 2
            ))),
        }
    }

    /// Removes a container, killing it first if it runs. Unknown ids
    /// succeed. The log files stay (the kubelet removes them).
    pub async fn remove_container(self: &Arc<Self>, id: &str) -> Result<(), CriError> {
        let id = {
            let t = self.tables();
            match find(t.containers(), id, "container")? {
                Some(id) => id,
                None => return Ok(()),
            }
        };
        self.stop_container(&id, Duration::ZERO).await?;
        let mut t = self.tables();
        if let Some(c) = t.remove_container(&id) {
            self.records.remove_container(&id);
            tracing::info!(container = %id, "container removed");
            self.emit_in(
                &t,
                &c.rec.pod_id,
                &id,
                cri::ContainerEventType::ContainerDeletedEvent,
            );
            drop(t);
            let dir = self.container_dir(&id);
            if c.rec.spec.mounts.iter().any(|m| m.host.starts_with(&dir)) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok(())
    }

    pub fn container_status(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> Result<cri::ContainerStatusResponse, CriError> {
        let t = self.tables();
        let id = find(t.containers(), &req.container_id, "container")?
            .ok_or_else(|| CriError::not_found("container", &req.container_id))?;
        let c = &t.containers()[&id];
        let mut info = HashMap::new();
        if req.verbose {
            let mut v = serde_json::to_value(&c.rec).unwrap_or_default();
            if let Some(addr) = c.live.as_ref().and_then(|l| l.http_addr) {
                v["httpAddr"] = serde_json::json!(addr.to_string());
            }
            info.insert("info".into(), v.to_string());
        }
        Ok(cri::ContainerStatusResponse {
            status: Some(self.container_status_of(c)),
            info,
        })
    }

    pub(crate) fn container_status_of(&self, c: &Container) -> cri::ContainerStatus {
        let r = &c.rec;
        cri::ContainerStatus {
            id: r.id.clone(),
            metadata: r.config.metadata.clone(),
            state: state(r.phase) as i32,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            exit_code: r.exit_code,
            image: Some(image_spec(r)),
            image_ref: r.image.image_ref.clone(),
            reason: r.reason.clone(),
            message: r.message.clone(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            mounts: r.config.mounts.clone(),
            log_path: r
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: r.config.linux.as_ref().map(|l| cri::ContainerResources {
                linux: l.resources.clone(),
                windows: None,
            }),
            image_id: r.image.id.clone(),
            user: None,
        }
    }

    pub fn list_containers(&self, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
        let t = self.tables();
        let f = filter.unwrap_or_default();
        t.container_candidates(&f.id, &f.pod_sandbox_id, &f.label_selector)
            .into_iter()
            .map(|c| &c.rec)
            .filter(|r| f.id.is_empty() || r.id.starts_with(&f.id))
            .filter(|r| f.pod_sandbox_id.is_empty() || r.pod_id.starts_with(&f.pod_sandbox_id))
            .filter(|r| {
                f.state
                    .as_ref()
                    .is_none_or(|s| s.state == state(r.phase) as i32)
            })
            .filter(|r| selects(&f.label_selector, &r.config.labels))
            .map(|r| cri::Container {
                id: r.id.clone(),
                pod_sandbox_id: r.pod_id.clone(),
                metadata: r.config.metadata.clone(),
                image: Some(image_spec(r)),
                image_ref: r.image.image_ref.clone(),
                state: state(r.phase) as i32,
                created_at: r.created_at,
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
                image_id: r.image.id.clone(),
            })
            .collect()
    }

    /// Reopens the log file of a running container (after the kubelet
    /// rotated it by renaming).
    pub fn reopen_container_log(&self, id: &str) -> Result<(), CriError> {
        let t = self.tables();
        let id = find(t.containers(), id, "container")?
            .ok_or_else(|| CriError::not_found("container", id))?;
        let c = &t.containers()[&id];
        let Some(live) = &c.live else {
            return Err(CriError::FailedPrecondition(format!(
                "container {id} is not running: only a running container's log can be reopened"
            )));
        };
        match &live.log {
            Some(log) => log
                .reopen()
                .map_err(CriError::io("reopen the container log", log.path())),
            None => Err(CriError::FailedPrecondition(format!(
                "container {id} has no log file (its config had no log_path)"
            ))),
        }
    }
}

/// A guest ready to start, with its log.
struct Launched {
    prepared: Prepared,
    log: Option<Arc<LogFile>>,
}

/// Exit code, reason and message as the kubelet shows them.
pub(crate) fn describe_exit(exit: &Exit) -> (i32, String, String) {
    match &exit.reason {
        ExitReason::Exited if exit.code == 0 => (0, "Completed".into(), String::new()),
        ExitReason::Exited => (exit.code, "Error".into(), String::new()),
        ExitReason::Trapped { message } => {
            let mut m = message.clone();
            if let Some(bt) = &exit.backtrace {
                m.push('\n');
                m.push_str(bt);
            }
            (exit.code, "Trapped".into(), m)
        }
        ExitReason::OutOfMemory { message } => (exit.code, "OOMKilled".into(), message.clone()),
        ExitReason::Deadline => (
            exit.code,
            "DeadlineExceeded".into(),
            "the guest ran past its deadline".into(),
        ),
        ExitReason::Killed => (
            exit.code,
            "Error".into(),
            "killed (a forced stop, or its grace period ran out)".into(),
        ),
        ExitReason::Terminated => (
            exit.code,
            "Error".into(),
            "terminated: a Wasm command cannot catch SIGTERM, so it ended at once".into(),
        ),
        other => (
            exit.code,
            "Error".into(),
            format!("{other:?}").to_lowercase(),
        ),
    }
}

fn state(phase: Phase) -> cri::ContainerState {
    match phase {
        Phase::Created => cri::ContainerState::ContainerCreated,
        Phase::Running => cri::ContainerState::ContainerRunning,
        Phase::Exited => cri::ContainerState::ContainerExited,
    }
}

fn image_spec(r: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec {
        image: r.image.name.clone(),
        annotations: r
            .config
            .image
            .as_ref()
            .map(|i| i.annotations.clone())
            .unwrap_or_default(),
        user_specified_image: r
            .config
            .image
            .as_ref()
            .map(|i| i.user_specified_image.clone())
            .unwrap_or_default(),
        runtime_handler: String::new(),
    }
}
