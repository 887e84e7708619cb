//! Many callers at once, on one shared connection and on connections of
//! their own, are all answered while event streams stay open and see every
//! exit; and a server started from a current-thread runtime (the other
//! shape a caller may have) serves and stops as well.

mod common;

use std::collections::HashSet;

use anyhow::{Context, Result};
use common::{Cri, DEADLINE, container};
use k8s_cri::v1 as api;
use k8s_cri::v1::ContainerEventType as Kind;

/// Callers at once, and containers each caller runs.
const CALLERS: usize = 8;
const EACH: usize = 4;

async fn next(
    events: &mut tonic::Streaming<api::ContainerEventResponse>,
) -> Result<api::ContainerEventResponse> {
    tokio::time::timeout(DEADLINE, events.message())
        .await
        .context("no event within the deadline")??
        .context("the event stream ended")
}

/// Reads `events` until every container of `ids` has stopped with exit 0.
async fn all_stopped(
    events: &mut tonic::Streaming<api::ContainerEventResponse>,
    ids: &HashSet<String>,
) -> Result<()> {
    let mut stopped = HashSet::new();
    while stopped.len() < ids.len() {
        let e = next(events).await?;
        if e.container_event_type != Kind::ContainerStoppedEvent as i32
            || !ids.contains(&e.container_id)
        {
            continue;
        }
        let status = e
            .containers_statuses
            .iter()
            .find(|s| s.id == e.container_id)
            .context("a STOPPED event without the container's status")?;
        anyhow::ensure!(
            status.exit_code == 0 && status.reason == "Completed",
            "{} ended with {} {}",
            e.container_id,
            status.exit_code,
            status.reason
        );
        stopped.insert(e.container_id);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_callers_are_answered_while_event_streams_stay_open() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::TRUE, "true:v1")?;
    // One stream on the shared connection, one on a connection of its own.
    let mut shared = cri
        .rt
        .get_container_events(api::GetEventsRequest {})
        .await?
        .into_inner();
    let (mut own_rt, _) = cri::client::connect(&cri.socket).await?;
    let mut own = own_rt
        .get_container_events(api::GetEventsRequest {})
        .await?
        .into_inner();
    let (pod, pod_config) = cri.pod("calls").await?;

    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let mut rt = if caller % 2 == 0 {
            cri.rt.clone()
        } else {
            cri::client::connect(&cri.socket).await?.0
        };
        let (pod, pod_config, image) = (pod.clone(), pod_config.clone(), image.clone());
        callers.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let version = rt.version(api::VersionRequest::default()).await?;
                anyhow::ensure!(version.into_inner().runtime_name == cri::RUNTIME_NAME);
                let id = rt
                    .create_container(api::CreateContainerRequest {
                        pod_sandbox_id: pod.clone(),
                        config: Some(container(&format!("c{caller}-{i}"), &image, &[])),
                        sandbox_config: Some(pod_config.clone()),
                    })
                    .await?
                    .into_inner()
                    .container_id;
                rt.start_container(api::StartContainerRequest {
                    container_id: id.clone(),
                })
                .await?;
                let listed = rt
                    .list_containers(api::ListContainersRequest {
                        filter: Some(api::ContainerFilter {
                            id: id.clone(),
                            ..Default::default()
                        }),
                    })
                    .await?
                    .into_inner()
                    .containers;
                anyhow::ensure!(listed.len() == 1, "{id} listed {} times", listed.len());
                ids.push(id);
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = HashSet::new();
    while let Some(joined) = callers.join_next().await {
        ids.extend(joined??);
    }
    assert_eq!(ids.len(), CALLERS * EACH);
    all_stopped(&mut shared, &ids).await?;
    all_stopped(&mut own, &ids).await?;
    for id in &ids {
        assert_eq!(
            cri.status(id).await?.state,
            api::ContainerState::ContainerExited as i32
        );
    }

    // Shutdown ends both streams.
    cri.stop().await?;
    for events in [&mut shared, &mut own] {
        let end = tokio::time::timeout(DEADLINE, events.message()).await?;
        assert!(!matches!(end, Ok(Some(_))), "a stream went on: {end:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_started_from_a_current_thread_runtime_serves_and_stops() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::HELLO, "hello:v1")?;
    let (pod, pod_config) = cri.pod("single").await?;
    let id = cri
        .run(&pod, &pod_config, container("hello", &image, &["one"]))
        .await?;
    let status = cri.wait_exited(&id).await?;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    let log = std::fs::read_to_string(&status.log_path)?;
    assert!(log.contains("one"), "{log}");
    cri.stop().await?;
    Ok(())
}
