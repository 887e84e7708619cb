//! The CRI part of the runtime suite: a `CriServer` on a unix socket in a
//! temporary data directory, driven by the CRI client as the kubelet drives
//! it: CreateContainer + StartContainer of a program, then its exit seen
//! either on the GetContainerEvents stream (CONTAINER_STOPPED, the evented
//! PLEG) or by polling ContainerStatus until EXITED.
//!
//! As the kubelet does before CreateContainer, the container's log
//! directory is created first (outside the timing); the runtime creates the
//! log file. The calls are made from a task on the runtime's workers (see
//! `runtime.rs`), as the kubelet's pod workers make them.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cri::client::{ImageClient, RuntimeClient};
use futures::{Stream, StreamExt as _};
use k8s_cri::v1 as api;

use crate::report::Latencies;

/// How long one container may take to exit before the run is a failure.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// The program a container runs.
#[derive(Clone, Copy, Debug)]
pub enum Program {
    /// `true`: does nothing, exits 0 (runc's busybox `true`).
    True,
    /// `hello one`: prints its argv and environment, exits 0.
    Hello,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::True => "true",
            Program::Hello => "hello",
        }
    }

    fn module(self) -> &'static str {
        match self {
            Program::True => artifacts::TRUE,
            Program::Hello => artifacts::HELLO,
        }
    }
}

/// How the client reaches the runtime.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// Over the unix socket (gRPC over HTTP/2), as `shoal kubelet` calls
    /// `shoal cri`.
    Socket,
    /// In process (`CriServer::in_process`), as `shoal node`'s kubelet
    /// calls its runtime.
    InProcess,
}

/// How the end of a container is seen.
#[derive(Clone, Copy, Debug)]
pub enum ExitSeen {
    /// CONTAINER_STOPPED on the GetContainerEvents stream.
    Events,
    /// ContainerStatus called in a loop until EXITED.
    Polling,
}

/// The CRI timings of `n` containers.
#[derive(Debug, Default)]
pub struct CriTimes {
    /// CreateContainer to the exit seen.
    pub total: Latencies,
    /// The CreateContainer call.
    pub create: Latencies,
    /// The StartContainer call.
    pub start: Latencies,
    /// From StartContainer's answer to the exit seen.
    pub exit: Latencies,
}

/// A CRI server in a temporary directory with a client, one pod sandbox
/// and the sample images pulled.
pub struct Bench {
    dir: tempfile::TempDir,
    rt: RuntimeClient,
    pod: String,
    pod_config: api::PodSandboxConfig,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), cri::CriError>>,
    runs: usize,
}

impl Bench {
    pub async fn start(via: Via) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let server = cri::CriServer::build(cri::Config::new(dir.path())).await?;
        let socket = server.socket().to_owned();
        let local = server.in_process();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let (mut rt, mut img) = match via {
            Via::Socket => cri::client::connect(&socket).await?,
            Via::InProcess => local,
        };
        for program in [Program::True, Program::Hello] {
            pull(&mut img, program).await?;
        }
        let pod_config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "bench".into(),
                uid: "uid-bench".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: dir.path().join("pod-logs").display().to_string(),
            ..Default::default()
        };
        let pod = rt
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        Ok(Self {
            dir,
            rt,
            pod,
            pod_config,
            stop,
            task,
            runs: 0,
        })
    }

    /// Times `n` containers of `program` from CreateContainer to the exit
    /// seen (after one warm-up that compiles the module, not counted).
    pub async fn create_start_exit(
        &mut self,
        n: usize,
        program: Program,
        seen: ExitSeen,
    ) -> anyhow::Result<CriTimes> {
        let mut events = match seen {
            ExitSeen::Events => Some(
                self.rt
                    .get_container_events(api::GetEventsRequest {})
                    .await
                    .context("opening GetContainerEvents")?
                    .into_inner(),
            ),
            ExitSeen::Polling => None,
        };
        let mut times = CriTimes::default();
        for i in 0..=n {
            self.runs += 1;
            let name = format!("{}-{}", program.name(), self.runs);
            let log_path = format!("{name}/0.log");
            let log_dir = Path::new(&self.pod_config.log_directory).join(&name);
            std::fs::create_dir_all(&log_dir)
                .with_context(|| format!("creating {}", log_dir.display()))?;
            let config = api::ContainerConfig {
                metadata: Some(api::ContainerMetadata { name, attempt: 0 }),
                image: Some(api::ImageSpec {
                    image: image(program),
                    ..Default::default()
                }),
                args: match program {
                    Program::True => Vec::new(),
                    Program::Hello => vec!["one".into()],
                },
                log_path,
                labels: HashMap::new(),
                ..Default::default()
            };
            let started = Instant::now();
            let id = self
                .rt
                .create_container(api::CreateContainerRequest {
                    pod_sandbox_id: self.pod.clone(),
                    config: Some(config),
                    sandbox_config: Some(self.pod_config.clone()),
                })
                .await?
                .into_inner()
                .container_id;
            let created = Instant::now();
            self.rt
                .start_container(api::StartContainerRequest {
                    container_id: id.clone(),
                })
                .await?;
            let begun = Instant::now();
            let status = match events.as_mut() {
                Some(events) => tokio::time::timeout(EXIT_DEADLINE, stopped(events, &id))
                    .await
                    .with_context(|| {
                        format!("container {id} did not stop within {EXIT_DEADLINE:?}")
                    })??,
                None => self.poll_until_exited(&id, started).await?,
            };
            let exited = Instant::now();
            anyhow::ensure!(
                status.exit_code == 0,
                "{} exited with {}: {}",
                program.name(),
                status.exit_code,
                status.message
            );
            if i > 0 {
                times.total.push(exited - started);
                times.create.push(created - started);
                times.start.push(begun - created);
                times.exit.push(exited - begun);
            }
            self.rt
                .remove_container(api::RemoveContainerRequest { container_id: id })
                .await?;
        }
        Ok(times)
    }

    /// Times `n` Version calls: the floor of one CRI call on this socket
    /// (gRPC over HTTP/2 on a unix socket, no runtime work).
    pub async fn version_calls(&mut self, n: usize) -> anyhow::Result<Latencies> {
        let mut times = Latencies::default();
        for _ in 0..n {
            let t = Instant::now();
            self.rt.version(api::VersionRequest::default()).await?;
            times.push(t.elapsed());
        }
        Ok(times)
    }

    async fn poll_until_exited(
        &mut self,
        id: &str,
        started: Instant,
    ) -> anyhow::Result<api::ContainerStatus> {
        loop {
            let status = self
                .rt
                .container_status(api::ContainerStatusRequest {
                    container_id: id.to_owned(),
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("no container status")?;
            if status.state == api::ContainerState::ContainerExited as i32 {
                return Ok(status);
            }
            anyhow::ensure!(
                started.elapsed() < EXIT_DEADLINE,
                "container {id} did not exit within {EXIT_DEADLINE:?}"
            );
            tokio::task::yield_now().await;
        }
    }

    /// Stops the server and removes its directory.
    /// Stops the server; gives back its directory, to be removed once
    /// nothing is measured any more (on this machine's ext4, mounted
    /// without a journal, new inodes are slow to allocate for about 30 s
    /// after many were deleted, which would charge one measurement with the
    /// clean-up of the one before).
    pub async fn stop(self) -> anyhow::Result<tempfile::TempDir> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(self.dir)
    }
}

fn image(program: Program) -> String {
    format!("file://{}", program.module())
}

async fn pull(img: &mut ImageClient, program: Program) -> anyhow::Result<()> {
    img.pull_image(api::PullImageRequest {
        image: Some(api::ImageSpec {
            image: image(program),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .with_context(|| format!("pulling {}", program.name()))?;
    Ok(())
}

/// Reads events until CONTAINER_STOPPED for `id`; answers its status.
async fn stopped<E>(
    events: &mut (impl Stream<Item = Result<api::ContainerEventResponse, E>> + Unpin),
    id: &str,
) -> anyhow::Result<api::ContainerStatus>
where
    E: std::error::Error + Send + Sync + 'static,
{
    loop {
        let event = events.next().await.context("the event stream ended")??;
        if event.container_id == id
            && event.container_event_type == api::ContainerEventType::ContainerStoppedEvent as i32
        {
            return event
                .containers_statuses
                .into_iter()
                .find(|s| s.id == id)
                .context("a STOPPED event without the container's status");
        }
    }
}
