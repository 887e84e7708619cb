//! The kubelet API against a real CRI runtime on a unix socket, over TLS
//! with client certificates made here: who may call, container logs (tail,
//! since, limits, previous, follow across rotation), exec (a WebSocket
//! proxied to the runtime's streaming server), stats and pods.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use common::{DEADLINE, Runtime, cri_config, sandbox_config};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as api;
use kubelet::ServingTls;
use kubelet::cri::labels;
use kubelet::server::ApiServer;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

/// A CA that signs leaf certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    fn leaf(&self, cn: &str, orgs: &[&str], server: bool) -> Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        if server {
            params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse()?)];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        Ok(Leaf {
            cert: params.signed_by(&key, &self.issuer)?.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// A CRI runtime and the kubelet API over it.
struct Node {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    ca: Ca,
    rt: cri::client::RuntimeClient,
    /// Stops the runtime when the node is dropped.
    _runtime: Runtime,
    api_stop: Option<oneshot::Sender<()>>,
}

impl Node {
    async fn start() -> Result<Node> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let mut config = cri_config(dir.path());
        config.log_max_bytes = 64 * 1024;
        config.log_max_files = 200;
        let socket = config.socket.clone();
        let runtime = Runtime::start(&config).await?;
        let rt = runtime.rt.clone();

        let ca = Ca::new("shoal-ca")?;
        let serving = ca.leaf("node-a", &["system:nodes"], true)?;
        let tls = ServingTls {
            cert_pem: serving.cert,
            key_pem: serving.key,
            client_ca_pem: ca.pem.clone(),
        };
        let kcri = kubelet::cri::Cri::connect_lazy(&socket);
        let api = ApiServer::bind("node-a", "127.0.0.1:0".parse()?, &tls, kcri).await?;
        let addr = api.local_addr();
        let (api_stop, api_stopped) = oneshot::channel::<()>();
        tokio::spawn(api.serve(async move {
            let _ = api_stopped.await;
        }));
        Ok(Node {
            dir,
            addr,
            ca,
            rt,
            _runtime: runtime,
            api_stop: Some(api_stop),
        })
    }

    fn import(&self, wasm: &str, name: &str) -> Result<String> {
        let store = images::ImageStore::open(self.dir.path().join("images"))?;
        Ok(store.import(Path::new(wasm), name)?.id)
    }

    /// A pod sandbox labelled as the kubelet labels it.
    async fn pod(&mut self, name: &str) -> Result<(String, api::PodSandboxConfig)> {
        let uid = format!("uid-{name}");
        let log_dir = self.dir.path().join(format!("logs/default_{name}_{uid}"));
        let config = sandbox_config(name, &log_dir, &[("app", name)]);
        let id = self
            .rt
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        Ok((id, config))
    }

    /// Creates and starts container `name` (instance `restarts`) in a pod.
    async fn run(
        &mut self,
        (pod, pod_config): &(String, api::PodSandboxConfig),
        name: &str,
        image: &str,
        args: &[&str],
        restarts: u32,
        cpu: Option<f64>,
    ) -> Result<String> {
        let meta = pod_config.metadata.clone().unwrap_or_default();
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt: restarts,
            }),
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            args: args.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/{restarts}.log"),
            labels: HashMap::from([
                (labels::POD_NAME.to_owned(), meta.name.clone()),
                (labels::POD_NAMESPACE.to_owned(), meta.namespace.clone()),
                (labels::POD_UID.to_owned(), meta.uid.clone()),
                (labels::CONTAINER_NAME.to_owned(), name.to_owned()),
            ]),
            annotations: HashMap::from([(labels::RESTART_COUNT.to_owned(), restarts.to_string())]),
            linux: cpu.map(|cores| api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: (cores * 100_000.0) as i64,
                    ..Default::default()
                }),
                security_context: None,
            }),
            ..Default::default()
        };
        let id = self
            .rt
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id;
        self.rt
            .start_container(api::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok(id)
    }

    async fn state(&self, id: &str) -> Result<i32> {
        let mut rt = self.rt.clone();
        Ok(rt
            .container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")?
            .state)
    }

    async fn wait_exited(&self, id: &str) -> Result<()> {
        testbed::wait_until(&format!("container {id} exits"), DEADLINE, || async {
            self.state(id).await.ok() == Some(api::ContainerState::ContainerExited as i32)
        })
        .await
    }

    fn admin(&self) -> Result<Arc<rustls::ClientConfig>> {
        let leaf = self
            .ca
            .leaf("kube-apiserver-kubelet-client", &["system:masters"], false)?;
        client(&self.ca.pem, Some(&leaf))
    }

    async fn get(&self, path: &str) -> Result<(u16, String)> {
        get(self.addr, self.admin()?, path).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.api_stop.take() {
            let _ = s.send(());
        }
    }
}

fn client(ca_pem: &str, leaf: Option<&Leaf>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = match leaf {
        None => builder.with_no_client_auth(),
        Some(l) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(l.cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(l.key.as_bytes())?,
        )?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Sends a GET over HTTP/1.1 on TLS; the response with its body unread.
async fn send(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<http::Response<Incoming>> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    Ok(sender.send_request(req).await?)
}

async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, String)> {
    let response = send(addr, config, path).await?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .context("the body did not end")??
        .to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_apiserver_and_masters_may_call() -> Result<()> {
    let node = Node::start().await?;
    let anonymous = client(&node.ca.pem, None)?;
    assert_eq!(
        get(node.addr, anonymous.clone(), "/healthz").await?,
        (200, "ok".into())
    );
    let (status, body) = get(node.addr, anonymous, "/containerLogs/default/x/y").await?;
    assert_eq!((status, body.trim()), (401, "Unauthorized"));

    // A node's own certificate from the right CA: authenticated, not allowed.
    let node_cert = node
        .ca
        .leaf("system:node:node-b", &["system:nodes"], false)?;
    let (status, body) = get(node.addr, client(&node.ca.pem, Some(&node_cert))?, "/pods").await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("user=system:node:node-b"), "{body}");

    // system:masters is enough, whatever the CN.
    let master = node.ca.leaf("someone", &["system:masters"], false)?;
    let (status, body) = get(node.addr, client(&node.ca.pem, Some(&master))?, "/pods").await?;
    assert_eq!(status, 200, "{body}");

    // The apiserver's CN is enough without the group.
    let apiserver = node.ca.leaf("kube-apiserver-kubelet-client", &[], false)?;
    let (status, body) = get(node.addr, client(&node.ca.pem, Some(&apiserver))?, "/pods").await?;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("PodList"), Some("v1"))
    );

    // A certificate from another CA fails the handshake.
    let other = Ca::new("other-ca")?;
    let foreign = other.leaf("kube-apiserver-kubelet-client", &["system:masters"], false)?;
    let result = get(node.addr, client(&node.ca.pem, Some(&foreign))?, "/pods").await;
    assert!(result.is_err(), "{result:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn container_logs_with_tail_since_limit_and_previous() -> Result<()> {
    let mut node = Node::start().await?;
    let hello = node.import(artifacts::HELLO, "hello:v1")?;
    let pod = node.pod("web").await?;
    let first = node.run(&pod, "main", &hello, &["first"], 0, None).await?;
    node.wait_exited(&first).await?;

    let (status, body) = node.get("/containerLogs/default/web/main").await?;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[..2], ["arg: hello", "arg: first"], "{body}");
    assert!(lines[2..].iter().all(|l| l.starts_with("env: ")), "{body}");

    let (_, tail) = node
        .get("/containerLogs/default/web/main?tailLines=2")
        .await?;
    assert_eq!(tail, lines[lines.len() - 2..].join("\n") + "\n");
    let (_, cut) = node
        .get("/containerLogs/default/web/main?limitBytes=7")
        .await?;
    assert_eq!(cut, "arg: he");
    let (_, stamped) = node
        .get("/containerLogs/default/web/main?timestamps=true")
        .await?;
    for (line, plain) in stamped.lines().zip(&lines) {
        let (ts, rest) = line.split_once(' ').context("no timestamp")?;
        ts.parse::<k8s_openapi::jiff::Timestamp>()
            .with_context(|| format!("timestamp {ts:?}"))?;
        assert_eq!(rest, *plain);
    }
    // Everything is older than a future sinceTime, and younger than an hour.
    let (_, none) = node
        .get("/containerLogs/default/web/main?sinceTime=2999-01-01T00:00:00Z")
        .await?;
    assert_eq!(none, "");
    let (_, recent) = node
        .get("/containerLogs/default/web/main?sinceSeconds=3600")
        .await?;
    assert_eq!(recent, body);

    let (status, message) = node
        .get("/containerLogs/default/web/main?previous=true")
        .await?;
    assert_eq!(
        (status, message.trim()),
        (
            400,
            "previous terminated container \"main\" in pod \"web\" not found"
        )
    );
    let (status, message) = node.get("/containerLogs/default/nope/main").await?;
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("default/nope"), "{message}");
    let (status, message) = node.get("/containerLogs/default/web/nope").await?;
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("\"nope\""), "{message}");

    // A restart: the current instance is the new one, previous the old.
    let second = node.run(&pod, "main", &hello, &["second"], 1, None).await?;
    node.wait_exited(&second).await?;
    let (_, current) = node
        .get("/containerLogs/default/web/main?tailLines=-1")
        .await?;
    assert!(
        current.starts_with("arg: hello\narg: second\n"),
        "{current}"
    );
    let (status, previous) = node
        .get("/containerLogs/default/web/main?previous=1")
        .await?;
    assert_eq!((status, previous), (200, body));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_streams_across_rotation_until_the_container_exits() -> Result<()> {
    const LINES: usize = 20_000;
    let mut node = Node::start().await?;
    let flood = node.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let pod = node.pod("flood").await?;
    let n = LINES.to_string();
    let id = node
        .run(&pod, "flood", &flood, &[&n], 0, Some(0.05))
        .await?;

    let response = send(
        node.addr,
        node.admin()?,
        "/containerLogs/default/flood/flood?follow=true",
    )
    .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[http::header::CONTENT_TYPE], "text/plain");
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .context("the followed log did not end")??
        .to_bytes();
    // The stream ended, so the container has exited.
    assert_eq!(
        node.state(&id).await?,
        api::ContainerState::ContainerExited as i32
    );
    let text = String::from_utf8(body.to_vec())?;
    let numbers: Vec<usize> = text
        .lines()
        .map(|l| {
            l.strip_prefix("log-flood line ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("line {l:?}"))
        })
        .collect::<Result<_>>()?;
    assert_eq!(
        numbers,
        (0..LINES).collect::<Vec<_>>(),
        "every line once, in order"
    );
    let log_dir = node.dir.path().join("logs/default_flood_uid-flood/flood");
    assert!(
        log_dir.join("0.log.1").exists(),
        "the log rotated: {:?}",
        std::fs::read_dir(&log_dir)?.collect::<Vec<_>>()
    );

    // A tail with follow on an exited container: the last lines, then the end.
    let (status, tail) = node
        .get("/containerLogs/default/flood/flood?follow=true&tailLines=2")
        .await?;
    assert_eq!(status, 200);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(
        tail.starts_with(&format!("log-flood line {} ", LINES - 2)),
        "{tail}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followed_running_container_streams_up_to_limit_bytes() -> Result<()> {
    let mut node = Node::start().await?;
    let flood = node.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let pod = node.pod("slow").await?;
    // A flood that never ends, slowed to a trickle.
    let id = node.run(&pod, "slow", &flood, &[], 0, Some(0.02)).await?;
    let response = send(
        node.addr,
        node.admin()?,
        "/containerLogs/default/slow/slow?follow=true&limitBytes=200000",
    )
    .await?;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while got.len() < 200_000 {
            match body.frame().await {
                Some(Ok(f)) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
                _ => break,
            }
        }
    })
    .await
    .context("no 200000 bytes followed")?;
    // limitBytes ends the stream exactly there, while the container runs on.
    assert_eq!(got.len(), 200_000);
    assert!(
        body.frame().await.is_none(),
        "the stream goes on past limitBytes"
    );
    assert_eq!(
        node.state(&id).await?,
        api::ContainerState::ContainerRunning as i32
    );
    let text = String::from_utf8(got)?;
    assert!(text.starts_with("log-flood line 0 "), "{}", &text[..80]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_summary_and_pods_come_from_the_runtime() -> Result<()> {
    let mut node = Node::start().await?;
    let flood = node.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let pod = node.pod("busy").await?;
    node.run(&pod, "app", &flood, &[], 0, Some(0.1)).await?;

    let (status, body) = node.get("/stats/summary").await?;
    assert_eq!(status, 200, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(first["node"]["nodeName"], "node-a");
    assert!(
        first["node"]["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{body}"
    );
    assert!(
        first["node"]["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{body}"
    );
    let pods = first["pods"].as_array().context("pods")?;
    assert_eq!(pods.len(), 1, "{body}");
    assert_eq!(
        pods[0]["podRef"],
        serde_json::json!({"name": "busy", "namespace": "default", "uid": "uid-busy"})
    );
    assert_eq!(pods[0]["containers"][0]["name"], "app");

    // A second summary once the guest has used CPU gives rates.
    let deadline = std::time::Instant::now() + DEADLINE;
    let last = loop {
        let (_, body) = node.get("/stats/summary").await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        if v["pods"][0]["containers"][0]["cpu"]["usageNanoCores"].as_u64() > Some(0) {
            break v;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the container's CPU use never showed as a rate: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let c = &last["pods"][0]["containers"][0];
    assert!(c["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0), "{c}");
    assert!(c["memory"]["workingSetBytes"].as_u64() > Some(0), "{c}");
    assert!(last["node"]["cpu"]["usageNanoCores"].is_u64(), "{last}");

    let (status, body) = node.get("/pods").await?;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body)?;
    let p = &list["items"][0];
    assert_eq!(
        (
            p["metadata"]["name"].as_str(),
            p["metadata"]["uid"].as_str()
        ),
        (Some("busy"), Some("uid-busy"))
    );
    assert_eq!(p["metadata"]["labels"], serde_json::json!({"app": "busy"}));
    assert_eq!(p["spec"]["nodeName"], "node-a");
    assert_eq!(p["status"]["phase"], "Running");
    assert!(
        p["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("127.")),
        "{p}"
    );
    assert_eq!(p["status"]["containerStatuses"][0]["name"], "app");
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    Ok(())
}

/// Opens a WebSocket on the kubelet API's `path` with a client certificate.
async fn websocket(
    node: &Node,
    path: &str,
) -> Result<(
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>,
    http::Response<Option<Vec<u8>>>,
)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tcp = TcpStream::connect(node.addr).await?;
    let tls = TlsConnector::from(node.admin()?)
        .connect(ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    let mut req = format!("wss://{}{path}", node.addr).into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", "v5.channel.k8s.io".parse()?);
    Ok(tokio_tungstenite::client_async(req, tls).await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_proxies_the_websocket_to_the_runtime() -> Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut node = Node::start().await?;
    let flood = node.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let pod = node.pod("sh").await?;
    node.run(&pod, "app", &flood, &[], 0, Some(0.05)).await?;

    let (mut ws, response) = websocket(
        &node,
        "/exec/default/sh/app?command=cat&input=1&output=1&stderr=true",
    )
    .await?;
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    ws.send(Message::binary(b"\x00hello\n".to_vec())).await?;
    ws.send(Message::binary(vec![255, 0])).await?;
    let (mut stdout, mut status) = (Vec::new(), None);
    tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            match msg? {
                Message::Binary(b) => match b.split_first() {
                    Some((1, data)) => stdout.extend_from_slice(data),
                    Some((3, data)) => {
                        status = Some(serde_json::from_slice::<serde_json::Value>(data)?)
                    }
                    other => anyhow::bail!("unexpected frame {other:?}"),
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("the exec did not end")??;
    assert_eq!(String::from_utf8(stdout)?, "hello\n");
    assert_eq!(status.context("no Status")?["status"], "Success");

    // A non-zero exit comes back as the runtime words it.
    let (mut ws, _) = websocket(
        &node,
        "/exec/default/sh/app?command=cat&command=/nope&stdout=1&stderr=1",
    )
    .await?;
    let mut status = None;
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Binary(b) = msg
            && b.first() == Some(&3)
        {
            status = Some(serde_json::from_slice::<serde_json::Value>(&b[1..])?);
        }
    }
    let status = status.context("no Status")?;
    assert_eq!(
        (status["status"].as_str(), status["reason"].as_str()),
        (Some("Failure"), Some("NonZeroExitCode")),
        "{status}"
    );

    // Without an upgrade, and for what is not there.
    let (code, body) = node.get("/exec/default/sh/app?command=ls&stdout=1").await?;
    assert_eq!(
        (code, body.trim()),
        (400, "exec needs a WebSocket upgrade (v5.channel.k8s.io)")
    );
    let err = websocket(&node, "/exec/default/sh/nope?command=ls&stdout=1")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("404"), "{err:#}");
    Ok(())
}
