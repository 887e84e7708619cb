//! hostPort through the CRI socket: an HTTP function answers on its
//! sandbox's host port; a second sandbox asking for a taken host port is
//! refused and leaves nothing bound; StopPodSandbox, RemovePodSandbox and a
//! runtime shutdown free the port.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use anyhow::{Context, Result};
use common::{Cri, container, pod_config};
use k8s_cri::v1 as api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// Whether nothing holds `addr` (a listener can take it).
fn is_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

fn tcp(container_port: u16, host_port: u16, host_ip: &str) -> api::PortMapping {
    api::PortMapping {
        protocol: api::Protocol::Tcp as i32,
        container_port: i32::from(container_port),
        host_port: i32::from(host_port),
        host_ip: host_ip.into(),
    }
}

async fn run_sandbox(
    cri: &mut Cri,
    config: &api::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    cri.rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_function_answers_on_its_host_port() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::HELLO_HTTP, "hello-http:v1")?;
    let (container_port, host_port) = (testbed::free_port(), testbed::free_port());
    let host = SocketAddr::from((Ipv4Addr::LOCALHOST, host_port));
    let mut config = pod_config("web", &cri.logs_dir().join("web"));
    config.port_mappings = vec![tcp(container_port, host_port, "127.0.0.1")];
    let pod = run_sandbox(&mut cri, &config).await?;
    assert!(!is_free(host), "RunPodSandbox binds the host port");
    cri.run(&pod, &config, container("web", &image, &[]))
        .await?;
    let reply = get(host).await?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("hello from"), "{reply}");
    // Several connections, one after the other and at once.
    let replies = futures::future::join_all((0..4).map(|_| get(host))).await;
    for r in replies {
        let r = r?;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }

    // A second sandbox asking for the same host port is refused, naming
    // it, and keeps nothing: its other, free port stays free.
    let other_port = testbed::free_port();
    let mut second = pod_config("web2", &cri.logs_dir().join("web2"));
    second.port_mappings = vec![
        tcp(container_port, other_port, "127.0.0.1"),
        tcp(container_port, host_port, "127.0.0.1"),
    ];
    let e = run_sandbox(&mut cri, &second).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&format!("127.0.0.1:{host_port}")),
        "{}",
        e.message()
    );
    assert!(is_free(SocketAddr::from((Ipv4Addr::LOCALHOST, other_port))));
    let listed = cri
        .rt
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1, "the refused sandbox is not kept");
    // Every address (an empty host IP) conflicts with the one taken too.
    second.port_mappings = vec![tcp(container_port, host_port, "")];
    let e = run_sandbox(&mut cri, &second).await.unwrap_err();
    assert!(
        e.message().contains(&format!("0.0.0.0:{host_port}")),
        "{e:?}"
    );

    // StopPodSandbox frees the port, and the same sandbox config can take
    // it again in a new attempt.
    cri.rt
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    assert!(is_free(host), "StopPodSandbox closes the host port");
    config.metadata.as_mut().unwrap().attempt = 1;
    let again = run_sandbox(&mut cri, &config).await?;
    assert!(!is_free(host));
    cri.rt
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: again,
        })
        .await?;
    assert!(is_free(host), "RemovePodSandbox closes the host port");
    cri.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_held_by_another_process_and_bad_mappings_are_refused() -> Result<()> {
    let mut cri = Cri::start().await?;
    let holder = TcpListener::bind("127.0.0.1:0")?;
    let held = holder.local_addr()?;
    let mut config = pod_config("p", &cri.logs_dir().join("p"));
    config.port_mappings = vec![tcp(8080, held.port(), "127.0.0.1")];
    let e = run_sandbox(&mut cri, &config).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&held.to_string()) && e.message().contains("in use"),
        "{}",
        e.message()
    );

    config.port_mappings = vec![api::PortMapping {
        protocol: api::Protocol::Udp as i32,
        container_port: 53,
        host_port: i32::from(testbed::free_port()),
        host_ip: String::new(),
    }];
    let e = run_sandbox(&mut cri, &config).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("only TCP"), "{}", e.message());

    // A port without a host port binds nothing on the host.
    let container_port = testbed::free_port();
    config.port_mappings = vec![tcp(container_port, 0, "")];
    run_sandbox(&mut cri, &config).await?;
    assert!(is_free(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        container_port
    ))));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_shutdown_frees_the_ports_and_a_new_sandbox_takes_them_again() -> Result<()> {
    let mut cri = Cri::start().await?;
    let host_port = testbed::free_port();
    let host = SocketAddr::from((Ipv4Addr::LOCALHOST, host_port));
    let mut config = pod_config("p", &cri.logs_dir().join("p"));
    config.port_mappings = vec![tcp(testbed::free_port(), host_port, "127.0.0.1")];
    let old = run_sandbox(&mut cri, &config).await?;
    assert!(!is_free(host));
    let dir = cri.stop().await?;
    assert!(
        is_free(host),
        "the runtime's shutdown closes the host ports"
    );

    // After the restart the old sandbox is NOTREADY (its guests are gone):
    // the kubelet makes a new attempt, which binds the port again.
    let mut cri = Cri::start_with(dir, |_| {}).await?;
    let st = cri
        .rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: old,
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no status")?;
    assert_eq!(st.state, api::PodSandboxState::SandboxNotready as i32);
    config.metadata.as_mut().unwrap().attempt = 1;
    run_sandbox(&mut cri, &config).await?;
    assert!(!is_free(host));
    cri.stop().await?;
    assert!(is_free(host));
    Ok(())
}
