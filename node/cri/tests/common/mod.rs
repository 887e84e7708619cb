//! The harness: a real `CriServer` on a real unix socket in a temporary data
//! directory, driven through the tonic CRI clients of `cri::client`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use cri::client::{ImageClient, RuntimeClient};
use cri::{Config, CriServer};
use k8s_cri::v1 as api;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a container may take to reach a state in tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Cri {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub rt: RuntimeClient,
    pub img: ImageClient,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), cri::CriError>>>,
}

/// A test configuration: a small engine, and a pod CIDR of its own (tests
/// run in parallel processes, each with its own runtime).
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.engine.total_instances = 64;
    c.engine.total_component_instances = 32;
    c.engine.total_memories = 32;
    c.engine.total_tables = 64;
    c.engine.total_stacks = 32;
    c.pod_cidr = testbed::pod_cidr(0);
    c
}

impl Cri {
    pub async fn start() -> Result<Cri> {
        Self::start_with(tempfile::tempdir()?, |_| {}).await
    }

    pub async fn start_with(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> Result<Cri> {
        Self::start_via(dir, tweak, false).await
    }

    /// A server whose `rt` and `img` are its in-process clients
    /// (`CriServer::in_process`); the socket serves other clients.
    pub async fn start_in_process() -> Result<Cri> {
        Self::start_via(tempfile::tempdir()?, |_| {}, true).await
    }

    async fn start_via(
        dir: TempDir,
        tweak: impl FnOnce(&mut Config),
        in_process: bool,
    ) -> Result<Cri> {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = CriServer::build(config)
            .await
            .context("building the CRI server")?;
        let socket = server.socket().to_owned();
        let local = server.in_process();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let (rt, img) = if in_process {
            local
        } else {
            cri::client::connect(&socket).await?
        };
        Ok(Cri {
            dir,
            socket,
            rt,
            img,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Shuts the server down as SIGTERM would, and gives back its directory.
    pub async fn stop(mut self) -> Result<TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .context("the server did not stop")???;
        }
        Ok(self.dir)
    }

    /// Imports a module into the node's image store, as `shoal image import` does.
    pub fn import(&self, wasm: &str, name: &str) -> Result<String> {
        let store = images::ImageStore::open(self.dir.path().join("images"))?;
        Ok(store.import(Path::new(wasm), name)?.id)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("pod-logs")
    }

    /// Runs a pod sandbox named `name` with its log directory in the data dir.
    pub async fn pod(&mut self, name: &str) -> Result<(String, api::PodSandboxConfig)> {
        let config = pod_config(name, &self.logs_dir().join(name));
        let id = self.run_pod(&config).await?;
        Ok((id, config))
    }

    /// Runs a pod sandbox from `config` (port mappings and all); its id.
    pub async fn run_pod(&mut self, config: &api::PodSandboxConfig) -> Result<String> {
        Ok(self
            .rt
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        pod_config: &api::PodSandboxConfig,
        config: api::ContainerConfig,
    ) -> Result<String> {
        Ok(self
            .rt
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id)
    }

    /// Creates and starts a container.
    pub async fn run(
        &mut self,
        pod: &str,
        pod_config: &api::PodSandboxConfig,
        config: api::ContainerConfig,
    ) -> Result<String> {
        let id = self.create(pod, pod_config, config).await?;
        self.rt
            .start_container(api::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok(id)
    }

    pub async fn status(&mut self, id: &str) -> Result<api::ContainerStatus> {
        self.rt
            .container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")
    }

    /// Waits until the container is EXITED, and returns its status.
    pub async fn wait_exited(&mut self, id: &str) -> Result<api::ContainerStatus> {
        let rt = self.rt.clone();
        let id2 = id.to_owned();
        testbed::wait_until(&format!("container {id} exits"), DEADLINE, move || {
            let mut rt = rt.clone();
            let id = id2.clone();
            async move {
                rt.container_status(api::ContainerStatusRequest {
                    container_id: id,
                    verbose: false,
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().status)
                .is_some_and(|s| s.state == api::ContainerState::ContainerExited as i32)
            }
        })
        .await?;
        self.status(id).await
    }

    pub async fn stop_container(&mut self, id: &str, timeout: i64) -> Result<()> {
        self.rt
            .stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await?;
        Ok(())
    }

    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<api::ExecSyncResponse, tonic::Status> {
        self.rt
            .exec_sync(api::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await
            .map(|r| r.into_inner())
    }
}

pub fn pod_config(name: &str, log_dir: &Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([("app".to_owned(), name.to_owned())]),
        ..Default::default()
    }
}

/// A container config: `name` from `image` with `args`, logging to `NAME/0.log`.
pub fn container(name: &str, image: &str, args: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        args: args.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("container".to_owned(), name.to_owned())]),
        ..Default::default()
    }
}

/// Sets CPU (in cores) and memory limits.
pub fn limits(mut c: api::ContainerConfig, cores: f64, memory: i64) -> api::ContainerConfig {
    c.linux = Some(api::LinuxContainerConfig {
        resources: Some(api::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: (cores * 100_000.0) as i64,
            memory_limit_in_bytes: memory,
            ..Default::default()
        }),
        security_context: None,
    });
    c
}

/// The CRI records of a log file: (stream, tag, content).
pub fn log_records(path: &str) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap_or_default();
            assert!(
                ts.parse::<jiff::Timestamp>().is_ok(),
                "bad timestamp in {l:?}"
            );
            (
                it.next().unwrap_or_default().to_owned(),
                it.next().unwrap_or_default().to_owned(),
                it.next().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
