//! Pod sandboxes and containers through their life, over the real socket:
//! pull, run, create, start, exit, logs, remove; idempotence; filters; bad
//! input; the RPCs not served; a restart of the runtime.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::Result;
use common::{Cri, DEADLINE, container, limits, log_records};
use k8s_cri::v1 as api;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn a_container_runs_to_completion_and_logs_in_cri_format() -> Result<()> {
    let mut cri = Cri::start().await?;
    let mode = std::fs::metadata(&cri.socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is private");
    let mode = std::fs::metadata(cri.dir.path().join("cri"))?
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "the records (environments) are private");

    let v = cri
        .rt
        .version(api::VersionRequest::default())
        .await?
        .into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("shoal", "v1")
    );
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    let status = cri
        .rt
        .status(api::StatusRequest::default())
        .await?
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    for kind in ["RuntimeReady", "NetworkReady"] {
        assert!(
            conditions.iter().any(|c| c.r#type == kind && c.status),
            "{kind}: {conditions:?}"
        );
    }

    // Pull from a file:// reference.
    let reference = format!("file://{}", artifacts::HELLO);
    let image_ref = cri
        .img
        .pull_image(api::PullImageRequest {
            image: Some(api::ImageSpec {
                image: reference.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .image_ref;
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let listed = cri
        .img
        .list_images(api::ListImagesRequest::default())
        .await?
        .into_inner()
        .images;
    assert!(listed.iter().any(|i| i.id == image_ref), "{listed:?}");
    let st = cri
        .img
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image_ref.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner();
    let image = st.image.expect("the pulled image has a status");
    assert_eq!(image.size, std::fs::metadata(artifacts::HELLO)?.len());
    let fs = cri
        .img
        .image_fs_info(api::ImageFsInfoRequest {})
        .await?
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value >= image.size);

    // A pod with an IP from the pod CIDR.
    let (pod, pod_config) = cri.pod("hello").await?;
    let ps = cri
        .rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .unwrap();
    assert_eq!(ps.state, api::PodSandboxState::SandboxReady as i32);
    let ip: std::net::Ipv4Addr = ps.network.unwrap().ip.parse()?;
    assert_eq!(ip.octets()[0], 127, "{ip}");

    // A container of the pulled image (by id, as the kubelet does).
    let mut config = container("hello", &image_ref, &["one", "two"]);
    config.command = vec!["hello".into()];
    config.envs = vec![api::KeyValue {
        key: "GREETING".into(),
        value: "hi".into(),
    }];
    let id = cri.create(&pod, &pod_config, config).await?;
    let created = cri.status(&id).await?;
    assert_eq!(created.state, api::ContainerState::ContainerCreated as i32);
    assert_eq!(created.image_id, image_ref);
    cri.rt
        .start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;

    // The exit is recorded by the runtime itself: the record on disk turns
    // EXITED with no CRI call made.
    // The records journal: the last line about the container wins.
    let journal = cri.dir.path().join("cri/records.jsonl");
    testbed::wait_until("the record says the container exited", DEADLINE, || async {
        std::fs::read_to_string(&journal).is_ok_and(|s| {
            s.lines()
                .rfind(|l| l.contains(&format!("\"id\":\"{id}\"")))
                .is_some_and(|l| l.contains("\"phase\":\"Exited\""))
        })
    })
    .await?;

    let st = cri.wait_exited(&id).await?;
    assert_eq!(st.exit_code, 0);
    assert_eq!(st.reason, "Completed");
    assert!(st.started_at >= st.created_at && st.finished_at >= st.started_at);
    assert!(st.created_at > 1_600_000_000_000_000_000, "nanoseconds");
    let records = log_records(&st.log_path);
    let lines: Vec<&str> = records.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        &lines[..3],
        ["arg: hello", "arg: one", "arg: two"],
        "{records:?}"
    );
    assert!(lines.contains(&"env: GREETING=hi"), "{lines:?}");
    assert!(records.iter().all(|r| r.0 == "stdout" && r.1 == "F"));

    let listed = cri
        .rt
        .list_containers(api::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, api::ContainerState::ContainerExited as i32);

    cri.rt
        .remove_container(api::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    let listed = cri
        .rt
        .list_containers(api::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "{listed:?}");
    cri.rt
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    cri.rt
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    let pods = cri
        .rt
        .list_pod_sandbox(api::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    assert!(pods.is_empty());

    cri.img
        .remove_image(api::RemoveImageRequest {
            image: Some(api::ImageSpec {
                image: image_ref.clone(),
                ..Default::default()
            }),
        })
        .await?;
    let gone = cri
        .img
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image_ref,
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner();
    assert!(gone.image.is_none());

    let dir = cri.stop().await?;
    assert!(
        !dir.path().join("cri.sock").exists(),
        "the socket is removed at shutdown"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_idempotent_as_containerd_makes_them() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::HELLO, "hello:v1")?;
    let (pod, pod_config) = cri.pod("web").await?;

    // The same metadata again: AlreadyExists, naming the existing sandbox.
    let again = cri
        .rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    assert!(again.message().contains(&pod), "{}", again.message());

    // A new attempt is a new sandbox with its own IP.
    let mut next = pod_config.clone();
    next.metadata.as_mut().unwrap().attempt = 1;
    let pod2 = cri.run_pod(&next).await?;
    assert_ne!(pod, pod2);
    let ip = |cri: &mut Cri, id: String| {
        let mut rt = cri.rt.clone();
        async move {
            rt.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .network
            .unwrap()
            .ip
        }
    };
    assert_ne!(
        ip(&mut cri, pod.clone()).await,
        ip(&mut cri, pod2.clone()).await
    );

    // The same container name and attempt in one pod: AlreadyExists.
    cri.create(&pod, &pod_config, container("c", &image, &[]))
        .await?;
    let dup = cri
        .create(&pod, &pod_config, container("c", &image, &[]))
        .await
        .unwrap_err();
    let dup = dup.downcast::<tonic::Status>()?;
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    // Stop and remove of unknown ids succeed.
    let unknown = "0123456789abcdef".to_owned();
    cri.rt
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await?;
    cri.rt
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await?;
    cri.rt
        .remove_container(api::RemoveContainerRequest {
            container_id: unknown.clone(),
        })
        .await?;
    // Twice is fine too.
    for _ in 0..2 {
        cri.rt
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
    }
    for _ in 0..2 {
        cri.rt
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
    }
    // Its containers went with it.
    let left = cri
        .rt
        .list_containers(api::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_filter_by_id_state_pod_and_labels() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::HELLO, "hello:v1")?;
    let (a, a_config) = cri.pod("alpha").await?;
    let (b, b_config) = cri.pod("beta").await?;
    let done = cri
        .run(&a, &a_config, container("done", &image, &[]))
        .await?;
    cri.wait_exited(&done).await?;
    let created = cri
        .create(&b, &b_config, container("idle", &image, &[]))
        .await?;
    cri.rt
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: b.clone(),
        })
        .await?;

    let pods = |filter: api::PodSandboxFilter| {
        let mut rt = cri.rt.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_pod_sandbox(api::ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        pods(api::PodSandboxFilter {
            id: a[..12].to_owned(),
            ..Default::default()
        })
        .await,
        vec![a.clone()]
    );
    assert_eq!(
        pods(api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue {
                state: api::PodSandboxState::SandboxNotready as i32
            }),
            ..Default::default()
        })
        .await,
        vec![b.clone()]
    );
    assert_eq!(
        pods(api::PodSandboxFilter {
            label_selector: [("app".to_owned(), "alpha".to_owned())].into(),
            ..Default::default()
        })
        .await,
        vec![a.clone()]
    );

    let containers = |filter: api::ContainerFilter| {
        let mut rt = cri.rt.clone();
        async move {
            rt.list_containers(api::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .unwrap()
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        containers(api::ContainerFilter {
            pod_sandbox_id: b.clone(),
            ..Default::default()
        })
        .await,
        vec![created.clone()]
    );
    assert_eq!(
        containers(api::ContainerFilter {
            state: Some(api::ContainerStateValue {
                state: api::ContainerState::ContainerExited as i32
            }),
            ..Default::default()
        })
        .await,
        vec![done.clone()]
    );
    assert_eq!(
        containers(api::ContainerFilter {
            label_selector: [("container".to_owned(), "idle".to_owned())].into(),
            ..Default::default()
        })
        .await,
        vec![created.clone()]
    );
    assert_eq!(
        containers(api::ContainerFilter {
            id: done[..10].to_owned(),
            ..Default::default()
        })
        .await,
        vec![done]
    );
    // A container cannot be created in, nor started from, a stopped pod.
    let e = cri
        .create(&b, &b_config, container("late", &image, &[]))
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = cri
        .rt
        .start_container(api::StartContainerRequest {
            container_id: created,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error() -> Result<()> {
    let mut cri = Cri::start().await?;
    let hello = cri.import(artifacts::HELLO, "hello:v1")?;
    let malformed = cri.import(artifacts::MALFORMED, "malformed:v1")?;
    let truncated = cri.import(artifacts::TRUNCATED, "truncated:v1").ok();
    let (pod, pod_config) = cri.pod("bad").await?;
    let status = |r: Result<String>| r.unwrap_err().downcast::<tonic::Status>().unwrap();

    // Unknown ids.
    let e = cri
        .rt
        .container_status(api::ContainerStatusRequest {
            container_id: "nope".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = cri
        .rt
        .start_container(api::StartContainerRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = cri
        .rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: "nope".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = status(
        cri.create("nope", &pod_config, container("x", &hello, &[]))
            .await,
    );
    assert_eq!(e.code(), Code::NotFound);

    // An image that was never pulled.
    let e = status(
        cri.create(&pod, &pod_config, container("x", "never-pulled:v9", &[]))
            .await,
    );
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("pull it first"), "{}", e.message());

    // A module that does not compile: refused at CreateContainer.
    let e = status(
        cri.create(&pod, &pod_config, container("m", &malformed, &[]))
            .await,
    );
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("invalid Wasm module"),
        "{}",
        e.message()
    );
    if let Some(truncated) = truncated {
        let e = status(
            cri.create(&pod, &pod_config, container("t", &truncated, &[]))
                .await,
        );
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }

    // A mount whose host path is missing.
    let mut c = container("m2", &hello, &[]);
    c.mounts = vec![api::Mount {
        host_path: "/nonexistent/shoal-test".into(),
        container_path: "/data".into(),
        ..Default::default()
    }];
    let e = status(cri.create(&pod, &pod_config, c).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("/nonexistent/shoal-test"),
        "{}",
        e.message()
    );

    // Bad annotations.
    let mut c = container("m3", &hello, &[]);
    c.annotations
        .insert(cri::EGRESS_ANNOTATION.into(), "db.example:5432".into());
    let e = status(cri.create(&pod, &pod_config, c).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains(cri::EGRESS_ANNOTATION),
        "{}",
        e.message()
    );

    // Missing fields.
    let e = cri
        .rt
        .run_pod_sandbox(api::RunPodSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut c = container("", &hello, &[]);
    c.metadata = None;
    let e = status(cri.create(&pod, &pod_config, c).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = cri
        .img
        .pull_image(api::PullImageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = cri
        .img
        .pull_image(api::PullImageRequest {
            image: Some(api::ImageSpec {
                image: "file:///nonexistent/x.wasm".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Starting twice.
    let id = cri
        .run(&pod, &pod_config, container("once", &hello, &[]))
        .await?;
    let e = cri
        .rt
        .start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // A bad pod CIDR.
    let e = cri
        .rt
        .update_runtime_config(api::UpdateRuntimeConfigRequest {
            runtime_config: Some(api::RuntimeConfig {
                network_config: Some(api::NetworkConfig {
                    pod_cidr: "fd00::/64".into(),
                }),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn update_runtime_config_sets_the_pod_cidr() -> Result<()> {
    let mut cri = Cri::start().await?;
    cri.rt
        .update_runtime_config(api::UpdateRuntimeConfigRequest {
            runtime_config: Some(api::RuntimeConfig {
                network_config: Some(api::NetworkConfig {
                    pod_cidr: "127.77.3.0/24".into(),
                }),
            }),
        })
        .await?;
    let (pod, _) = cri.pod("p").await?;
    let st = cri
        .rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: pod,
            verbose: false,
        })
        .await?
        .into_inner();
    assert_eq!(st.status.unwrap().network.unwrap().ip, "127.77.3.2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unserved_rpcs_say_what_and_why() -> Result<()> {
    let mut cri = Cri::start().await?;
    let e = cri
        .rt
        .exec(api::ExecRequest {
            container_id: "x".into(),
            cmd: vec!["ls".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    // Exec is served (by the streaming server): an unknown container is
    // NotFound, not Unimplemented.
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    let e = cri
        .rt
        .attach(api::AttachRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e = cri
        .rt
        .update_container_resources(api::UpdateContainerResourcesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("recreate"), "{}", e.message());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_runtime_lists_what_it_had() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::INFINITE_LOOP, "spin:v1")?;
    let hello = cri.import(artifacts::HELLO, "hello:v1")?;
    let (pod, pod_config) = cri.pod("keep").await?;
    let done = cri
        .run(&pod, &pod_config, container("done", &hello, &[]))
        .await?;
    cri.wait_exited(&done).await?;
    let spin = cri
        .run(
            &pod,
            &pod_config,
            limits(container("spin", &image, &[]), 0.1, 0),
        )
        .await?;
    let pod_ip = cri
        .rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;

    // A graceful stop stops the running container.
    let dir = cri.stop().await?;
    let mut cri = Cri::start_with(dir, |_| {}).await?;
    let st = cri.status(&spin).await?;
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_ne!(st.exit_code, 0);
    let st = cri.status(&done).await?;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let ps = cri
        .rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .unwrap();
    assert_eq!(ps.state, api::PodSandboxState::SandboxNotready as i32);
    // The old pod keeps its IP until removed: a new pod gets another.
    let (_, _) = cri.pod("fresh").await?;
    let ips: Vec<String> = {
        let items = cri
            .rt
            .list_pod_sandbox(api::ListPodSandboxRequest::default())
            .await?
            .into_inner()
            .items;
        let mut ips = Vec::new();
        for p in items {
            ips.push(
                cri.rt
                    .pod_sandbox_status(api::PodSandboxStatusRequest {
                        pod_sandbox_id: p.id,
                        verbose: false,
                    })
                    .await?
                    .into_inner()
                    .status
                    .unwrap()
                    .network
                    .unwrap()
                    .ip,
            );
        }
        ips
    };
    assert_eq!(ips.len(), 2);
    assert!(ips.contains(&pod_ip));
    assert_ne!(ips[0], ips[1]);
    // And it can be cleaned up as usual.
    cri.rt
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    assert!(
        cri.rt
            .list_containers(api::ListContainersRequest::default())
            .await?
            .into_inner()
            .containers
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_is_refused_while_another_server_answers() -> Result<()> {
    let cri = Cri::start().await?;
    // A second server on the same socket (another data directory).
    let other = tempfile::tempdir()?;
    let mut config = common::test_config(other.path());
    config.socket = cri.socket.clone();
    let e = cri::CriServer::build(config).await.unwrap_err();
    assert!(matches!(e, cri::CriError::SocketInUse { .. }), "{e}");
    // A second server on the same data directory.
    let mut config = common::test_config(cri.dir.path());
    config.socket = other.path().join("x.sock");
    let e = cri::CriServer::build(config).await.unwrap_err();
    assert!(e.to_string().contains("another shoal cri"), "{e}");

    // A stale socket file (nothing answering) is replaced.
    let dir = cri.stop().await?;
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    assert!(stale.exists());
    let cri = Cri::start_with(dir, |c| c.socket = stale.clone()).await?;
    assert_eq!(cri.socket, stale);
    let _ = tokio::time::timeout(Duration::from_secs(5), cri.stop()).await??;
    Ok(())
}
