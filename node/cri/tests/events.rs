//! GetContainerEvents through the real socket: a pod sandbox's and a
//! container's CREATED, STARTED, STOPPED and DELETED arrive in order with
//! the pod's status and its containers' statuses, the STOPPED of a guest
//! that ends by itself with its exit code, and open streams end when the
//! server shuts down, without holding up its drain.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{Cri, DEADLINE, container};
use k8s_cri::v1 as api;
use k8s_cri::v1::ContainerEventType as Kind;

async fn next(
    events: &mut tonic::Streaming<api::ContainerEventResponse>,
) -> Result<api::ContainerEventResponse> {
    tokio::time::timeout(DEADLINE, events.message())
        .await
        .context("no event within the deadline")??
        .context("the event stream ended")
}

/// The next event, which must be `kind` for `id`.
async fn expect(
    events: &mut tonic::Streaming<api::ContainerEventResponse>,
    id: &str,
    kind: Kind,
) -> Result<api::ContainerEventResponse> {
    let e = next(events).await?;
    anyhow::ensure!(
        e.container_id == id && e.container_event_type == kind as i32,
        "expected {kind:?} for {id}, got {:?} for {}",
        Kind::try_from(e.container_event_type),
        e.container_id
    );
    Ok(e)
}

fn state_of(e: &api::ContainerEventResponse, id: &str) -> Option<api::ContainerState> {
    e.containers_statuses
        .iter()
        .find(|s| s.id == id)
        .map(|s| api::ContainerState::try_from(s.state).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_and_container_changes_are_streamed_in_order() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::TRUE, "true:v1")?;
    let mut events = cri
        .rt
        .get_container_events(api::GetEventsRequest {})
        .await?
        .into_inner();

    let (pod, pod_config) = cri.pod("events").await?;
    for kind in [Kind::ContainerCreatedEvent, Kind::ContainerStartedEvent] {
        let e = expect(&mut events, &pod, kind).await?;
        let status = e.pod_sandbox_status.context("no pod status")?;
        assert_eq!(status.id, pod);
        assert_eq!(status.state, api::PodSandboxState::SandboxReady as i32);
        assert_eq!(status.metadata.unwrap().name, "events");
        assert!(e.containers_statuses.is_empty());
        assert!(e.created_at > 0);
    }

    let id = cri
        .run(&pod, &pod_config, container("t", &image, &[]))
        .await?;
    let e = expect(&mut events, &id, Kind::ContainerCreatedEvent).await?;
    assert_eq!(
        state_of(&e, &id),
        Some(api::ContainerState::ContainerCreated)
    );
    assert_eq!(e.pod_sandbox_status.unwrap().id, pod);
    expect(&mut events, &id, Kind::ContainerStartedEvent).await?;
    // `true` ends by itself: STOPPED comes with its exit, nobody polling.
    let e = expect(&mut events, &id, Kind::ContainerStoppedEvent).await?;
    let status = e
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .context("no status of the container")?;
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    assert!(status.finished_at >= status.started_at && status.started_at > 0);

    cri.rt
        .remove_container(api::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    let e = expect(&mut events, &id, Kind::ContainerDeletedEvent).await?;
    assert_eq!(state_of(&e, &id), None, "a deleted container is not listed");

    cri.rt
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    let e = expect(&mut events, &pod, Kind::ContainerStoppedEvent).await?;
    assert_eq!(
        e.pod_sandbox_status.unwrap().state,
        api::PodSandboxState::SandboxNotready as i32
    );
    cri.rt
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    expect(&mut events, &pod, Kind::ContainerDeletedEvent).await?;

    // Shutdown ends the stream at once, well within the drain timeout.
    let stopping = Instant::now();
    cri.stop().await?;
    assert!(
        stopping.elapsed() < cri::DRAIN_TIMEOUT / 2,
        "the server took {:?} to stop with an event stream open",
        stopping.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), events.message()).await?;
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "the stream did not end: {end:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_open_stream_sees_a_stop_of_a_running_container() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::INFINITE_LOOP, "loop:v1")?;
    let mut a = cri
        .rt
        .get_container_events(api::GetEventsRequest {})
        .await?
        .into_inner();
    let mut b = cri
        .rt
        .get_container_events(api::GetEventsRequest {})
        .await?
        .into_inner();
    let (pod, pod_config) = cri.pod("stops").await?;
    let id = cri
        .run(&pod, &pod_config, container("spin", &image, &[]))
        .await?;
    cri.stop_container(&id, 0).await?;
    for events in [&mut a, &mut b] {
        let e = loop {
            let e = next(events).await?;
            if e.container_id == id && e.container_event_type == Kind::ContainerStoppedEvent as i32
            {
                break e;
            }
        };
        let status = e.containers_statuses.iter().find(|s| s.id == id).unwrap();
        assert_eq!(status.exit_code, 137, "{status:?}");
    }
    cri.stop().await?;
    Ok(())
}

/// A short command (its module's runs known short) runs inline in
/// StartContainer: by the time the call answers, the container is EXITED
/// with its whole log written, and the stream still says CREATED, STARTED,
/// STOPPED in that order.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_command_has_ended_with_its_log_when_start_answers() -> Result<()> {
    let mut cri = Cri::start_with(tempfile::tempdir()?, |c| {
        // Far above a debug build's run on a busy machine; no epoch tick
        // within the test (a tick during an inline poll sends the rest of
        // the run to the pools, which a slow debug run on a loaded machine
        // can meet); and an allowance the test does not spend (a spent one
        // starts commands lowered).
        c.engine.inline_slice = Duration::from_secs(1);
        c.engine.epoch_tick = Duration::from_secs(600);
        c.engine.normal_priority_budget = Duration::from_secs(600);
    })
    .await?;
    let image = cri.import(artifacts::HELLO, "hello:v1")?;
    let mut events = cri
        .rt
        .get_container_events(api::GetEventsRequest {})
        .await?
        .into_inner();
    let (pod, pod_config) = cri.pod("inline").await?;
    expect(&mut events, &pod, Kind::ContainerCreatedEvent).await?;
    expect(&mut events, &pod, Kind::ContainerStartedEvent).await?;

    for run in 0..3u64 {
        let id = cri
            .run(
                &pod,
                &pod_config,
                container(&format!("hello-{run}"), &image, &["one"]),
            )
            .await?;
        // The first run is on the pools and teaches the engine that the
        // module is short; each later one has ended inline by now.
        assert_eq!(inline_ends(&mut cri).await?, run, "run {run}");
        let status = if run == 0 {
            cri.wait_exited(&id).await?
        } else {
            let st = cri.status(&id).await?;
            assert_eq!(
                st.state,
                api::ContainerState::ContainerExited as i32,
                "run {run}: not ended inline"
            );
            st
        };
        assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
        let lines: Vec<_> = common::log_records(&status.log_path);
        assert!(
            lines.contains(&("stdout".into(), "F".into(), "arg: one".into())),
            "run {run}: {lines:?}"
        );
        expect(&mut events, &id, Kind::ContainerCreatedEvent).await?;
        expect(&mut events, &id, Kind::ContainerStartedEvent).await?;
        let e = expect(&mut events, &id, Kind::ContainerStoppedEvent).await?;
        assert_eq!(
            state_of(&e, &id),
            Some(api::ContainerState::ContainerExited)
        );
    }
    assert_eq!(inline_ends(&mut cri).await?, 2);
    cri.stop().await?;
    Ok(())
}

/// The commands that ended inline, from the runtime's verbose Status.
async fn inline_ends(cri: &mut Cri) -> Result<u64> {
    let info = cri
        .rt
        .status(api::StatusRequest { verbose: true })
        .await?
        .into_inner()
        .info;
    let engine: serde_json::Value =
        serde_json::from_str(info.get("engine").context("no engine info")?)?;
    engine["inlineEnds"].as_u64().context("no inlineEnds")
}
