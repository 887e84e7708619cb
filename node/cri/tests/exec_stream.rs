//! The streaming Exec: the CRI call answers a single-use URL of the
//! streaming server; a WebSocket on it (`v5.channel.k8s.io`) runs the
//! command in the container's sandbox and streams it in the Kubernetes
//! channel protocol, ending with the exit Status on channel 3.

mod common;

use anyhow::{Context, Result, bail};
use common::{Cri, DEADLINE, container, limits};
use cri::channel;
use futures::{SinkExt, StreamExt};
use k8s_cri::v1 as api;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tonic::Code;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running container (a slow log flood) with `/data` mounted read-only.
async fn setup() -> Result<(Cri, String, tempfile::TempDir)> {
    let mut cri = Cri::start().await?;
    let flood = cri.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let data = tempfile::tempdir()?;
    std::fs::write(data.path().join("a.txt"), "alpha\n")?;
    std::fs::create_dir(data.path().join("sub"))?;
    let (pod, pod_config) = cri.pod("stream").await?;
    let mut c = limits(container("app", &flood, &[]), 0.05, 64 << 20);
    c.mounts = vec![api::Mount {
        host_path: data.path().display().to_string(),
        container_path: "/data".into(),
        readonly: true,
        ..Default::default()
    }];
    let app = cri.run(&pod, &pod_config, c).await?;
    Ok((cri, app, data))
}

fn request(id: &str, cmd: &[&str]) -> api::ExecRequest {
    api::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    }
}

async fn exec_url(cri: &mut Cri, req: api::ExecRequest) -> Result<String, tonic::Status> {
    Ok(cri.rt.exec(req).await?.into_inner().url)
}

/// Opens a WebSocket on `url` offering `protocols`, with the `Host` a proxy
/// in front would send.
async fn connect(url: &str, protocols: &str) -> Result<(Ws, Option<String>), WsError> {
    // The CRI answers an http:// URL, as containerd does; the upgrade is a
    // WebSocket one.
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.into_client_request()?;
    req.headers_mut()
        .insert("host", HeaderValue::from_static("kubelet.example:10250"));
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, chosen))
}

/// What a session sent: the bytes of each stream, the Status, the close code.
#[derive(Debug, Default)]
struct Transcript {
    stdout: String,
    stderr: String,
    status: Option<serde_json::Value>,
    close: Option<CloseCode>,
}

/// Reads `ws` to its close, within the deadline.
async fn read_all(ws: &mut Ws, t: &mut Transcript) -> Result<()> {
    tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            match msg? {
                Message::Binary(b) => record(t, &b)?,
                Message::Close(f) => {
                    t.close = f.map(|f| f.code);
                    break;
                }
                Message::Text(_) => bail!("a text frame"),
                _ => {}
            }
        }
        Ok(())
    })
    .await
    .context("the session did not end")?
}

fn record(t: &mut Transcript, b: &[u8]) -> Result<()> {
    let (stream, data) = b.split_first().context("an empty frame")?;
    let text = String::from_utf8_lossy(data);
    match *stream {
        channel::STDOUT => t.stdout.push_str(&text),
        channel::STDERR => t.stderr.push_str(&text),
        channel::ERROR => {
            if t.status.is_some() {
                bail!("a second Status");
            }
            t.status = Some(serde_json::from_slice(data)?);
        }
        s => bail!("a frame on stream {s}"),
    }
    Ok(())
}

async fn run(url: &str) -> Result<Transcript> {
    let (mut ws, chosen) = connect(url, channel::V5).await?;
    assert_eq!(chosen.as_deref(), Some(channel::V5));
    let mut t = Transcript::default();
    read_all(&mut ws, &mut t).await?;
    Ok(t)
}

fn http_status(e: WsError) -> Option<StatusCode> {
    match e {
        WsError::Http(resp) => Some(resp.status()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_toolbox_output_then_success() -> Result<()> {
    let (mut cri, app, _data) = setup().await?;
    let url = exec_url(&mut cri, request(&app, &["ls", "/data"])).await?;
    let base = format!("http://{}/exec/", cri_stream_addr(&url));
    assert!(
        url.starts_with(&base) && url.len() > base.len() + 16,
        "{url}"
    );

    let t = run(&url).await?;
    assert_eq!(t.stdout, "a.txt\nsub\n", "{t:?}");
    assert_eq!(t.stderr, "");
    assert_eq!(
        t.status,
        Some(serde_json::json!({"metadata": {}, "status": "Success"}))
    );
    assert_eq!(t.close, Some(CloseCode::Normal));

    // Used once: the same URL is gone.
    let e = connect(&url, channel::V5)
        .await
        .err()
        .context("a second use")?;
    assert_eq!(http_status(e), Some(StatusCode::NOT_FOUND));
    let unknown = format!("{base}0123456789abcdef0123456789abcdef");
    let e = connect(&unknown, channel::V5)
        .await
        .err()
        .context("an unknown token")?;
    assert_eq!(http_status(e), Some(StatusCode::NOT_FOUND));
    cri.stop().await?;
    Ok(())
}

/// `host:port` of an exec URL.
fn cri_stream_addr(url: &str) -> &str {
    url.trim_start_matches("http://").split('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_zero_exit_is_a_failure_status_with_the_code_and_v4_is_served() -> Result<()> {
    let (mut cri, app, _data) = setup().await?;
    let url = exec_url(&mut cri, request(&app, &["cat", "/data/nope"])).await?;
    let (mut ws, chosen) = connect(&url, "v4.channel.k8s.io, v3.channel.k8s.io").await?;
    assert_eq!(chosen.as_deref(), Some(channel::V4));
    let mut t = Transcript::default();
    read_all(&mut ws, &mut t).await?;
    assert_eq!(t.stdout, "");
    assert!(t.stderr.contains("can't open '/data/nope'"), "{t:?}");
    assert_eq!(
        t.status,
        Some(serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: 1",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "1"}]},
        }))
    );
    assert_eq!(t.close, Some(CloseCode::Normal));

    // With a TTY, stderr arrives on stdout.
    let mut req = request(&app, &["cat", "/data/nope"]);
    (req.tty, req.stderr) = (true, false);
    let t = run(&exec_url(&mut cri, req).await?).await?;
    assert!(t.stdout.contains("can't open '/data/nope'"), "{t:?}");
    assert_eq!(t.status.as_ref().unwrap()["reason"], "NonZeroExitCode");
    cri.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_reaches_the_command_as_sent_and_close_is_eof() -> Result<()> {
    let (mut cri, app, _data) = setup().await?;
    let mut req = request(&app, &["cat"]);
    req.stdin = true;
    let url = exec_url(&mut cri, req).await?;
    let (mut ws, _) = connect(&url, channel::V5).await?;
    let mut t = Transcript::default();

    ws.send(Message::binary(channel::frame(channel::STDIN, b"hello\n")))
        .await?;
    // Echoed while the session is still open: output streams.
    tokio::time::timeout(DEADLINE, async {
        while t.stdout != "hello\n" {
            match ws.next().await.context("closed early")?? {
                Message::Binary(b) => record(&mut t, &b)?,
                m => bail!("unexpected {m:?}"),
            }
        }
        Ok(())
    })
    .await
    .context("no echo")??;
    assert!(t.status.is_none());
    // A resize and a ping are fine mid-stream.
    ws.send(Message::binary(channel::frame(
        channel::RESIZE,
        br#"{"Width":80,"Height":24}"#,
    )))
    .await?;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await?;
    ws.send(Message::binary(channel::frame(channel::STDIN, b"world\n")))
        .await?;
    ws.send(Message::binary(vec![channel::CLOSE, channel::STDIN]))
        .await?;
    let mut ponged = false;
    tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            match msg? {
                Message::Binary(b) => record(&mut t, &b)?,
                Message::Pong(p) => ponged = &p[..] == b"are you there",
                Message::Close(f) => {
                    t.close = f.map(|f| f.code);
                    break;
                }
                m => bail!("unexpected {m:?}"),
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("the session did not end")??;
    assert!(ponged, "no pong");
    assert_eq!(t.stdout, "hello\nworld\n");
    assert_eq!(
        t.status,
        Some(serde_json::json!({"metadata": {}, "status": "Success"}))
    );
    assert_eq!(t.close, Some(CloseCode::Normal));
    cri.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_going_away_kills_the_command() -> Result<()> {
    let (mut cri, app, _data) = setup().await?;
    let mut req = request(&app, &["cat"]);
    req.stdin = true;
    let url = exec_url(&mut cri, req).await?;
    let (ws, _) = connect(&url, channel::V5).await?;
    // A toolbox command has its `/.shoal` scratch directory while it runs.
    let scratch = cri.dir.path().join("cri/exec");
    let entries = move |dir: &std::path::Path| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let s = scratch.clone();
    testbed::wait_until("the exec runs", DEADLINE, move || {
        let n = entries(&s);
        async move { n == 1 }
    })
    .await?;
    drop(ws);
    testbed::wait_until("the exec is gone", DEADLINE, move || {
        let n = entries(&scratch);
        async move { n == 0 }
    })
    .await?;
    cri.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused() -> Result<()> {
    let (mut cri, app, _data) = setup().await?;

    // No subprotocol: refused, and the URL stays usable.
    let url = exec_url(&mut cri, request(&app, &["ls", "/"])).await?;
    let e = connect(&url, "").await.err().context("no subprotocol")?;
    assert_eq!(http_status(e), Some(StatusCode::BAD_REQUEST));
    let e = connect(&url, "v1.channel.k8s.io")
        .await
        .err()
        .context("v1 only")?;
    assert_eq!(http_status(e), Some(StatusCode::BAD_REQUEST));
    let t = run(&url).await?;
    assert_eq!(t.stdout, "data\n", "{t:?}");

    let e = exec_url(&mut cri, request(&app, &[])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let mut req = request(&app, &["ls"]);
    (req.stdout, req.stderr) = (false, false);
    let e = exec_url(&mut cri, req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = exec_url(&mut cri, request("nope", &["ls"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    cri.stop_container(&app, 0).await?;
    cri.wait_exited(&app).await?;
    let e = exec_url(&mut cri, request(&app, &["ls"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Attach and PortForward say why they are not served.
    let e = cri
        .rt
        .attach(api::AttachRequest {
            container_id: app.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("Exec"), "{e:?}");
    cri.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_shutdown_ends_the_streams_with_a_failure() -> Result<()> {
    let (mut cri, app, _data) = setup().await?;
    let mut req = request(&app, &["cat"]);
    req.stdin = true;
    let url = exec_url(&mut cri, req).await?;
    let (mut ws, _) = connect(&url, channel::V5).await?;
    // The first frame says the session runs.
    let first = tokio::time::timeout(DEADLINE, ws.next())
        .await?
        .context("closed")??;
    assert_eq!(first, Message::binary(vec![channel::STDOUT]));
    let reader = tokio::spawn(async move {
        let mut t = Transcript::default();
        read_all(&mut ws, &mut t).await.map(|()| t)
    });
    cri.stop().await?;
    let t = reader.await??;
    let status = t.status.context("no Status")?;
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["message"], "the container runtime is shutting down");
    Ok(())
}
