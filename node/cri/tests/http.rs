//! HTTP functions: a component exporting `wasi:http/incoming-handler` is
//! served on (pod IP, port), the port from the container annotation or the
//! pod's first TCP port mapping; StopContainer drains it.

mod common;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use common::{Cri, container, log_records, pod_config};
use k8s_cri::v1 as api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_functions_are_served_on_the_pod_ip() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::HELLO_HTTP, "hello-http:v1")?;
    let (mapped, annotated) = (testbed::free_port(), testbed::free_port());
    let mut config = pod_config("web", &cri.logs_dir().join("web"));
    config.port_mappings = vec![api::PortMapping {
        protocol: api::Protocol::Tcp as i32,
        container_port: i32::from(mapped),
        ..Default::default()
    }];
    let pod = cri.run_pod(&config).await?;
    let ip: std::net::IpAddr = cri
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
        .ip
        .parse()?;

    // On the pod's first TCP port mapping.
    let mut c = container("web", &image, &[]);
    c.envs = vec![api::KeyValue {
        key: "POD_NAME".into(),
        value: "web".into(),
    }];
    let web = cri.run(&pod, &config, c).await?;
    // StartContainer returned once the function listens: no retry needed.
    let reply = get(SocketAddr::new(ip, mapped), "/").await?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("hello from web (request 1)"), "{reply}");

    // On the port its annotation names.
    let mut c = container("other", &image, &[]);
    c.annotations
        .insert(cri::HTTP_PORT_ANNOTATION.into(), annotated.to_string());
    let other = cri.run(&pod, &config, c).await?;
    let reply = get(SocketAddr::new(ip, annotated), "/healthz").await?;
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        reply.starts_with("HTTP/1.1 200") && body.contains("ok"),
        "{reply}"
    );
    let info = cri
        .rt
        .container_status(api::ContainerStatusRequest {
            container_id: other.clone(),
            verbose: true,
        })
        .await?
        .into_inner()
        .info;
    assert!(
        info["info"].contains(&format!("{ip}:{annotated}")),
        "{info:?}"
    );

    // Its output is logged, and it shows as running until stopped.
    let st = cri.status(&web).await?;
    assert_eq!(st.state, api::ContainerState::ContainerRunning as i32);
    let path = st.log_path.clone();
    testbed::wait_until("the request is logged", common::DEADLINE, || async {
        log_records(&path)
            .iter()
            .any(|r| r.2 == "hello-http: request 1")
    })
    .await?;

    // A graceful stop drains and ends with 0.
    cri.stop_container(&web, 5).await?;
    let st = cri.status(&web).await?;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (0, "Completed"),
        "{}",
        st.message
    );
    assert!(
        tokio::net::TcpStream::connect(SocketAddr::new(ip, mapped))
            .await
            .is_err(),
        "nothing listens after the stop"
    );
    // Exec of an HTTP function's own module is refused with the reason.
    let e = cri.exec(&other, &["hello-http"], 5).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    Ok(())
}
