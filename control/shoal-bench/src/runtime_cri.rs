//! The CRI part of the runtime suite: a `CriServer` on a unix socket in a
//! temporary data directory, driven by the CRI client as the kubelet drives
//! it: CreateContainer + StartContainer of `hello`, then ContainerStatus
//! until EXITED.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_cri::v1 as api;

use crate::report::Latencies;

/// How long one container may take to exit before the run is a failure.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// The CRI timings of `n` containers.
#[derive(Debug, Default)]
pub struct CriTimes {
    /// CreateContainer to EXITED seen in ContainerStatus.
    pub total: Latencies,
    /// The CreateContainer call.
    pub create: Latencies,
    /// The StartContainer call.
    pub start: Latencies,
    /// From StartContainer's answer to EXITED seen in ContainerStatus.
    pub exit: Latencies,
}

/// Times `n` containers from CreateContainer to EXITED (the first one is a
/// warm-up that compiles the module, and is not counted).
pub async fn create_start_exit(n: usize) -> anyhow::Result<CriTimes> {
    let dir = tempfile::tempdir()?;
    let server = cri::CriServer::build(cri::Config::new(dir.path())).await?;
    let socket = server.socket().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let (mut rt, mut img) = cri::client::connect(&socket).await?;

    let image = format!("file://{}", artifacts::HELLO);
    img.pull_image(api::PullImageRequest {
        image: Some(api::ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .context("pulling hello")?;
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

    let mut times = CriTimes::default();
    for i in 0..=n {
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: format!("hello-{i}"),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            args: vec!["one".into()],
            log_path: format!("hello-{i}/0.log"),
            labels: HashMap::new(),
            ..Default::default()
        };
        let started = Instant::now();
        let id = rt
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id;
        let created = Instant::now();
        rt.start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
        let begun = Instant::now();
        let status = loop {
            let status = rt
                .container_status(api::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("no container status")?;
            if status.state == api::ContainerState::ContainerExited as i32 {
                break status;
            }
            anyhow::ensure!(
                started.elapsed() < EXIT_DEADLINE,
                "container {id} did not exit within {EXIT_DEADLINE:?}"
            );
            tokio::task::yield_now().await;
        };
        let exited = Instant::now();
        anyhow::ensure!(
            status.exit_code == 0,
            "hello exited with {}: {}",
            status.exit_code,
            status.message
        );
        if i > 0 {
            times.total.push(exited - started);
            times.create.push(created - started);
            times.start.push(begun - created);
            times.exit.push(exited - begun);
        }
        rt.remove_container(api::RemoveContainerRequest { container_id: id })
            .await?;
    }
    let _ = stop.send(());
    task.await??;
    Ok(times)
}
