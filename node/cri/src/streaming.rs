//! The streaming server, as containerd has one: `Exec` registers the request
//! under a random single-use token (expiring after [`TOKEN_TTL`]) and answers
//! its URL, `http://ADDR/exec/TOKEN`; a WebSocket upgrade on that URL
//! (subprotocol [`channel::V5`] or [`channel::V4`], echoed) runs the command
//! in the container's sandbox (`exec::prepare_exec`, as ExecSync) and streams
//! it in the channel protocol (`channel`): stdin from the client, stdout and
//! stderr as the guest writes them, then the exit Status and a normal close.
//!
//! The client going away kills the command; so does the runtime shutting
//! down. An unknown, used or expired token is a 404; an upgrade offering
//! neither subprotocol is a 400. The server answers forwarded requests (the
//! kubelet relays the client's upgrade as is): nothing depends on `Host`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use k8s_cri::v1 as cri;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use wasi_shim::{Input, Output, OutputSink, Sandbox};

use crate::channel::{self, ClientFrame};
use crate::error::{CriError, chain};
use crate::exec::trap_note;
use crate::runtime::Runtime;

/// How long an Exec URL may wait for its connection.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// The most Exec URLs waiting for their connection at once.
pub const MAX_PENDING: usize = 1000;
/// The most output a command may have queued for a slow client; a write
/// past it fails (the guest sees an I/O error, as with a full pipe it
/// cannot wait on).
pub const MAX_QUEUED_OUTPUT: usize = 16 << 20;
/// The largest frame sent; longer writes are split.
const MAX_FRAME: usize = 64 << 10;
/// How long the server waits for the client's close after its own.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// The stdin pipe's buffer.
const STDIN_BUFFER: usize = 64 << 10;

/// The Exec requests waiting for their connection, by token, and the
/// address their URLs point to.
#[derive(Debug)]
pub(crate) struct Streams {
    addr: SocketAddr,
    base: String,
    pending: Mutex<HashMap<String, Pending>>,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug)]
struct Pending {
    req: cri::ExecRequest,
    expires: Instant,
}

impl Streams {
    /// The registry for a server listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Self {
            addr,
            base: format!("http://{}", SocketAddr::new(ip, addr.port())),
            pending: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Checks an Exec request and registers it: its URL.
    pub fn exec(&self, rt: &Runtime, req: cri::ExecRequest) -> Result<cri::ExecResponse, CriError> {
        if req.cmd.is_empty() {
            return Err(CriError::InvalidArgument(
                "Exec needs a command (cmd is empty)".into(),
            ));
        }
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(CriError::InvalidArgument(
                "Exec needs one of stdin, stdout or stderr".into(),
            ));
        }
        let id = rt.exec_target(&req.container_id)?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING {
            return Err(CriError::ResourceExhausted(format!(
                "{MAX_PENDING} Exec URLs are waiting for their connection: connect to them or \
                 let them expire ({}s)",
                TOKEN_TTL.as_secs()
            )));
        }
        pending.insert(
            token.clone(),
            Pending {
                req: cri::ExecRequest {
                    container_id: id,
                    ..req
                },
                expires: now + TOKEN_TTL,
            },
        );
        Ok(cri::ExecResponse {
            url: format!("{}/exec/{token}", self.base),
        })
    }

    /// The request of `token`, which is used up; `None` if unknown, used or
    /// expired.
    fn take(&self, token: &str) -> Option<cri::ExecRequest> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = pending.remove(token)?;
        (p.expires > Instant::now()).then_some(p.req)
    }

    /// Ends every stream: their commands are killed.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
struct App {
    rt: Arc<Runtime>,
    streams: Arc<Streams>,
}

/// Binds the streaming server's listener.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, CriError> {
    TcpListener::bind(addr)
        .await
        .map_err(CriError::io("bind the streaming address", addr.to_string()))
}

/// Serves the streaming URLs on `listener` until [`Streams::shutdown`].
pub(crate) async fn serve(listener: TcpListener, rt: Arc<Runtime>, streams: Arc<Streams>) {
    let mut stopped = streams.shutdown.subscribe();
    let app = Router::new()
        .route("/exec/{token}", get(exec))
        .with_state(App { rt, streams });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "the streaming server failed");
    }
}

/// `GET /exec/TOKEN` with a WebSocket upgrade.
async fn exec(State(app): State<App>, Path(token): Path<String>, ws: WebSocketUpgrade) -> Response {
    let ws = ws.protocols(channel::PROTOCOLS);
    let Some(protocol) = ws.selected_protocol().cloned() else {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "offer one of the WebSocket subprotocols {} (Sec-WebSocket-Protocol)\n",
                channel::PROTOCOLS.join(", ")
            ),
        )
            .into_response();
    };
    let Some(req) = app.streams.take(&token) else {
        return (
            StatusCode::NOT_FOUND,
            "unknown or expired exec URL: call Exec again for a new one\n",
        )
            .into_response();
    };
    let v5 = protocol.as_bytes() == channel::V5.as_bytes();
    let span = tracing::info_span!(
        "cri_stream",
        container = %req.container_id,
        cmd = ?req.cmd,
        protocol = ?protocol,
    );
    ws.on_upgrade(move |socket| session(app, req, socket, v5).instrument(span))
}

/// Output frames from the guest's writes, split at [`MAX_FRAME`], with a
/// shared budget of [`MAX_QUEUED_OUTPUT`] bytes not yet sent.
struct FrameSink {
    stream: u8,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl OutputSink for FrameSink {
    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        if self.queued.fetch_add(bytes.len(), Ordering::AcqRel) + bytes.len() > MAX_QUEUED_OUTPUT {
            self.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the exec client is not reading its output",
            ));
        }
        for chunk in bytes.chunks(MAX_FRAME) {
            self.tx
                .send(channel::frame(self.stream, chunk))
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        }
        Ok(())
    }
}

/// Why a session ended before its command did.
enum Cut {
    ClientGone,
    Shutdown,
}

/// One exec: runs the command, relays the streams, sends the exit Status.
async fn session(app: App, req: cri::ExecRequest, socket: WebSocket, v5: bool) {
    let (mut tx, mut rx) = socket.split();
    let mut prepared = match app.rt.prepare_exec(&req.container_id, &req.cmd) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %chain(&e), "exec cannot start");
            let status = channel::failure_status(&chain(&e));
            let _ = tx
                .send(Message::binary(channel::frame(channel::ERROR, &status)))
                .await;
            close(tx, rx).await;
            return;
        }
    };

    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let sink = |stream| {
        Output::Sink(Arc::new(FrameSink {
            stream,
            tx: out_tx.clone(),
            queued: queued.clone(),
        }))
    };
    // With a TTY, stderr goes to stdout, as a terminal merges them.
    let stderr_stream = match (req.tty, req.stdout, req.stderr) {
        (true, true, _) => Some(channel::STDOUT),
        (false, _, true) => Some(channel::STDERR),
        _ => None,
    };
    let mut builder = prepared.take_builder();
    if req.stdout {
        builder = builder.stdout(sink(channel::STDOUT));
    }
    if let Some(s) = stderr_stream {
        builder = builder.stderr(sink(s));
    }
    let stdin = if req.stdin {
        let (reader, writer) = tokio::io::duplex(STDIN_BUFFER);
        builder = builder.stdin(Input::stream(reader));
        Some(writer)
    } else {
        None
    };
    drop(out_tx);
    let sandbox: Sandbox = builder.build();
    let running = app.rt.engine.spawn(prepared.source.clone(), &sandbox);
    drop(sandbox);
    let kill = running.kill_handle();
    tracing::debug!("exec started");

    // The client's frames: stdin, resizes, close signals; the end of the
    // connection is reported on `gone`.
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(
        async move {
            let mut stdin = stdin;
            while let Some(Ok(msg)) = rx.next().await {
                match msg {
                    Message::Binary(data) => match channel::decode(&data, v5) {
                        ClientFrame::Stdin(bytes) => {
                            if let Some(w) = &mut stdin
                                && w.write_all(bytes).await.is_err()
                            {
                                // The command no longer reads stdin.
                                stdin = None;
                            }
                        }
                        ClientFrame::Close(channel::STDIN) => stdin = None,
                        ClientFrame::Resize(_) | ClientFrame::Close(_) | ClientFrame::Other => {}
                    },
                    Message::Close(_) => break,
                    Message::Text(_) | Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            drop(stdin);
            let _ = gone_tx.send(());
            rx
        }
        .in_current_span(),
    );

    // Send the first frame on the first output stream, as the kubelet does,
    // so the client knows the streams are open.
    let first = if req.stdout {
        Some(channel::STDOUT)
    } else {
        stderr_stream
    };
    let mut cut = None;
    if let Some(s) = first
        && tx
            .send(Message::binary(channel::frame(s, &[])))
            .await
            .is_err()
    {
        cut = Some(Cut::ClientGone);
    }
    let mut stopped = app.streams.shutdown.subscribe();
    let wait = running.wait();
    tokio::pin!(wait);
    let exit = loop {
        if cut.is_some() {
            kill.kill();
            let _ = (&mut wait).await;
            break None;
        }
        tokio::select! {
            biased;
            frame = out_rx.recv(), if !out_rx.is_closed() || !out_rx.is_empty() => {
                let Some(frame) = frame else { continue };
                queued.fetch_sub(frame.len() - 1, Ordering::AcqRel);
                if tx.send(Message::binary(frame)).await.is_err() {
                    cut = Some(Cut::ClientGone);
                }
            }
            exit = &mut wait => break Some(exit),
            _ = &mut gone => cut = Some(Cut::ClientGone),
            () = stopping(&mut stopped) => cut = Some(Cut::Shutdown),
        }
    };

    let Some(exit) = exit else {
        match cut {
            Some(Cut::Shutdown) => {
                tracing::info!("exec killed: the runtime is shutting down");
                let status = channel::failure_status("the container runtime is shutting down");
                let _ = tx
                    .send(Message::binary(channel::frame(channel::ERROR, &status)))
                    .await;
                reader.abort();
                let _ = tx.send(Message::Close(None)).await;
            }
            _ => tracing::info!("exec killed: the client went away"),
        }
        return;
    };
    // Everything the guest wrote is queued by now.
    while let Ok(frame) = out_rx.try_recv() {
        if tx.send(Message::binary(frame)).await.is_err() {
            tracing::info!("the client went away before the end of the output");
            reader.abort();
            return;
        }
    }
    let status = match exit {
        Ok(exit) => {
            tracing::debug!(code = exit.code, reason = ?exit.reason, "exec ended");
            if let (Some(note), Some(s)) = (trap_note(&exit), stderr_stream) {
                let _ = tx.send(Message::binary(channel::frame(s, &note))).await;
            }
            channel::exit_status(exit.code)
        }
        Err(e) => {
            let e = prepared.error(e);
            tracing::info!(error = %chain(&e), "exec failed");
            channel::failure_status(&chain(&e))
        }
    };
    let _ = tx
        .send(Message::binary(channel::frame(channel::ERROR, &status)))
        .await;
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    // Wait a little for the client's close, so the connection ends cleanly.
    let _ = tokio::time::timeout(CLOSE_WAIT, reader).await;
}

/// Resolves when the runtime shuts down.
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    if stopped.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Closes normally after an error Status and waits a little for the client.
async fn close(
    mut tx: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: futures::stream::SplitStream<WebSocket>,
) {
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(streams: &Streams, token: &str, expires: Instant) {
        streams.pending.lock().unwrap().insert(
            token.into(),
            Pending {
                req: cri::ExecRequest {
                    container_id: "c1".into(),
                    cmd: vec!["ls".into()],
                    stdout: true,
                    ..Default::default()
                },
                expires,
            },
        );
    }

    #[test]
    fn a_token_is_used_once() {
        let streams = Streams::new("127.0.0.1:10010".parse().unwrap());
        pending(&streams, "t1", Instant::now() + TOKEN_TTL);
        assert_eq!(
            streams.take("t1").map(|r| r.container_id),
            Some("c1".into())
        );
        assert!(streams.take("t1").is_none());
        assert!(streams.take("nope").is_none());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let streams = Streams::new("127.0.0.1:10010".parse().unwrap());
        pending(&streams, "old", Instant::now() - Duration::from_millis(1));
        assert!(streams.take("old").is_none());
    }

    #[test]
    fn urls_name_a_reachable_address() {
        let s = Streams::new("0.0.0.0:4000".parse().unwrap());
        assert_eq!(s.base, "http://127.0.0.1:4000");
        let s = Streams::new("[::]:4000".parse().unwrap());
        assert_eq!(s.base, "http://[::1]:4000");
        let s = Streams::new("10.0.0.5:4000".parse().unwrap());
        assert_eq!(s.base, "http://10.0.0.5:4000");
    }
}
