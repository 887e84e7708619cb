//! The in-process transport (`CriServer::in_process`, as `shoal node`'s
//! kubelet calls its runtime) against the socket: the same calls reach the
//! same runtime, with the same answers, errors and event stream, and calls
//! made in process do not go through the socket at all.

mod common;

use anyhow::{Context, Result};
use common::{Cri, DEADLINE, container};
use k8s_cri::v1 as api;
use k8s_cri::v1::ContainerEventType as Kind;

/// The next event for `id`, which must be `kind`.
async fn expect(
    events: &mut tonic::Streaming<api::ContainerEventResponse>,
    id: &str,
    kind: Kind,
) -> Result<api::ContainerEventResponse> {
    loop {
        let e = tokio::time::timeout(DEADLINE, events.message())
            .await
            .context("no event within the deadline")??
            .context("the event stream ended")?;
        if e.container_id != id {
            continue;
        }
        anyhow::ensure!(
            e.container_event_type == kind as i32,
            "expected {kind:?} for {id}, got {:?}",
            Kind::try_from(e.container_event_type)
        );
        return Ok(e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_runs_through_the_in_process_clients_as_through_the_socket() -> Result<()> {
    let mut cri = Cri::start_in_process().await?;
    let image = cri.import(artifacts::HELLO, "hello:v1")?;
    let (mut socket_rt, _) = cri::client::connect(&cri.socket).await?;
    let mut events = cri
        .rt
        .get_container_events(api::GetEventsRequest {})
        .await?
        .into_inner();

    let (pod, pod_config) = cri.pod("local").await?;
    let mut config = container("hello", &image, &["one", "two"]);
    config.envs.push(api::KeyValue {
        key: "WHERE".into(),
        value: "in-process".into(),
    });
    let id = cri.run(&pod, &pod_config, config).await?;
    expect(&mut events, &id, Kind::ContainerCreatedEvent).await?;
    expect(&mut events, &id, Kind::ContainerStartedEvent).await?;
    let stopped = expect(&mut events, &id, Kind::ContainerStoppedEvent).await?;
    let status = stopped
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .context("the STOPPED event has no status for the container")?;
    assert_eq!(status.exit_code, 0);
    assert_eq!(status.reason, "Completed");

    // Both transports see the same container, with the same status.
    let local = cri.status(&id).await?;
    let remote = socket_rt
        .container_status(api::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no status over the socket")?;
    assert_eq!(local, remote);
    assert_eq!(local.state, api::ContainerState::ContainerExited as i32);
    let listed = |r: api::ListContainersResponse| {
        let mut ids: Vec<_> = r.containers.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let local_list = listed(
        cri.rt
            .list_containers(api::ListContainersRequest::default())
            .await?
            .into_inner(),
    );
    let remote_list = listed(
        socket_rt
            .list_containers(api::ListContainersRequest::default())
            .await?
            .into_inner(),
    );
    assert_eq!(local_list, vec![id.clone()]);
    assert_eq!(local_list, remote_list);

    // The guest's output is in its CRI log.
    let records = common::log_records(&local.log_path);
    let out: String = records.iter().map(|(_, _, line)| line.as_str()).collect();
    assert!(out.contains("one") && out.contains("two"), "{records:?}");
    assert!(out.contains("WHERE=in-process"), "{records:?}");

    // With the socket file gone, nothing can dial the runtime, and the
    // in-process clients go on.
    std::fs::remove_file(&cri.socket)?;
    assert!(cri::client::connect(&cri.socket).await.is_err());
    cri.rt
        .remove_container(api::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    expect(&mut events, &id, Kind::ContainerDeletedEvent).await?;
    assert!(cri.status(&id).await.is_err());
    cri.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_the_same_statuses_in_process_and_over_the_socket() -> Result<()> {
    let mut cri = Cri::start_in_process().await?;
    let (mut socket_rt, _) = cri::client::connect(&cri.socket).await?;
    let image = cri.import(artifacts::TRUE, "true:v1")?;
    let (pod, pod_config) = cri.pod("errors").await?;
    let id = cri
        .create(&pod, &pod_config, container("t", &image, &[]))
        .await?;

    let unknown = || api::ContainerStatusRequest {
        container_id: "no-such-container".into(),
        verbose: false,
    };
    let local = cri.rt.container_status(unknown()).await.unwrap_err();
    let remote = socket_rt.container_status(unknown()).await.unwrap_err();
    assert_eq!(local.code(), tonic::Code::NotFound);
    assert_eq!(
        (local.code(), local.message()),
        (remote.code(), remote.message())
    );

    let start = || api::StartContainerRequest {
        container_id: id.clone(),
    };
    cri.rt.start_container(start()).await?;
    let local = cri.rt.start_container(start()).await.unwrap_err();
    let remote = socket_rt.start_container(start()).await.unwrap_err();
    assert_eq!(local.code(), tonic::Code::FailedPrecondition);
    assert_eq!(local.code(), remote.code());
    assert!(local.message().contains(&id), "{}", local.message());

    // A call the runtime does not serve says so, in process too.
    let local = cri
        .rt
        .checkpoint_container(api::CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(local.code(), tonic::Code::Unimplemented);
    assert!(!local.message().is_empty());

    let version = cri
        .rt
        .version(api::VersionRequest::default())
        .await?
        .into_inner();
    let over_socket = socket_rt
        .version(api::VersionRequest::default())
        .await?
        .into_inner();
    assert_eq!(version, over_socket);
    assert_eq!(version.runtime_name, cri::RUNTIME_NAME);
    cri.stop().await?;
    Ok(())
}
