//! `GET|POST /exec/{namespace}/{pod}/{container}?command=..&stdin=..`: a
//! command in a running container, over a WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`). The kubelet asks the runtime for the exec (CRI
//! `Exec` answers with a URL of the runtime's streaming server), sends the
//! client's upgrade request there over HTTP/1.1, relays the runtime's
//! answer, and once both sides have switched protocols copies bytes both
//! ways until either side closes. The kubelet does not look inside the
//! stream: the runtime speaks the channel protocol.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, Request, State as Shared};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri_api;
use tokio::net::TcpStream;
use tracing::Instrument;

use super::State;
use super::error::Reply;
use super::instances::Instances;

/// The headers of a WebSocket handshake, passed through both ways.
const HANDSHAKE: [&str; 7] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "sec-websocket-extensions",
];
/// The most of a refusal's body relayed from the runtime.
const MAX_REFUSAL: usize = 64 * 1024;

/// What the client asked to run, and with which streams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecQuery {
    /// Parses the query (`input`/`output`/`error` as aliases, `1` or `true`).
    pub fn parse(query: Option<&str>) -> Result<ExecQuery, Reply> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| Reply::bad_request(format!("the query is not URL-encoded: {e}")))?;
        let mut q = ExecQuery::default();
        for (k, v) in pairs {
            let on = matches!(v.as_str(), "1" | "true" | "True" | "TRUE");
            match k.as_str() {
                "command" => q.command.push(v),
                "stdin" | "input" => q.stdin = on,
                "stdout" | "output" => q.stdout = on,
                "stderr" | "error" => q.stderr = on,
                "tty" => q.tty = on,
                _ => {}
            }
        }
        if q.command.is_empty() {
            return Err(Reply::bad_request("you must specify a command"));
        }
        if !(q.stdin || q.stdout || q.stderr) {
            return Err(Reply::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(q)
    }
}

/// Whether the request asks for a WebSocket.
fn wants_websocket(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

pub(super) async fn exec(
    Shared(state): Shared<Arc<State>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    mut req: Request,
) -> Result<Response, Reply> {
    let q = ExecQuery::parse(query.as_deref())?;
    if !wants_websocket(req.headers()) {
        return Err(Reply::bad_request(
            "exec needs a WebSocket upgrade (v5.channel.k8s.io)",
        ));
    }
    let instances = Instances::find(&state.cri, &namespace, &pod, &container).await?;
    let current = instances.current();
    if !current.running() {
        return Err(Reply::bad_request(format!(
            "container \"{container}\" in pod \"{namespace}/{pod}\" is not running"
        )));
    }
    let url = state
        .cri
        .exec(cri_api::ExecRequest {
            container_id: current.id.clone(),
            cmd: q.command,
            tty: q.tty,
            stdin: q.stdin,
            stdout: q.stdout,
            stderr: q.stderr,
        })
        .await
        .map_err(Reply::runtime)?;
    let url: http::Uri = url.parse().map_err(|_| {
        Reply::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime's exec URL {url:?} is not a URL"),
        )
    })?;
    let Some(authority) = url.authority().cloned() else {
        return Err(Reply::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime's exec URL {url} names no host"),
        ));
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        Reply::new(
            StatusCode::BAD_GATEWAY,
            format!("cannot reach the runtime's streaming server at {authority}: {e}"),
        )
    };

    // The client's handshake, to the runtime.
    let tcp = TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(
        async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "exec connection to the runtime failed");
            }
        }
        .in_current_span(),
    );
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = http::Request::get(path)
        .header(header::HOST, authority.as_str())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| Reply::bad_request(e.to_string()))?;
    copy_handshake(req.headers(), upstream.headers_mut());
    let mut answer = sender
        .send_request(upstream)
        .await
        .map_err(|e| unreachable(&e))?;

    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Relay the refusal as it is.
        let status = answer.status();
        let headers = answer.headers().clone();
        let body = Limited::new(answer.into_body(), MAX_REFUSAL)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut response = (status, body).into_response();
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, ct.clone());
        }
        return Ok(response);
    }

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    copy_handshake(answer.headers(), response.headers_mut());
    let from_client = hyper::upgrade::on(&mut req);
    let from_runtime = hyper::upgrade::on(&mut answer);
    tokio::spawn(
        async move {
            let (client, runtime) = match tokio::try_join!(from_client, from_runtime) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "exec upgrade failed");
                    return;
                }
            };
            let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
            match tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
                Ok((up, down)) => tracing::debug!(up, down, "exec stream ended"),
                Err(e) => tracing::debug!(error = %e, "exec stream ended with an error"),
            }
        }
        .in_current_span(),
    );
    Ok(response)
}

fn copy_handshake(from: &HeaderMap, to: &mut HeaderMap) {
    for name in HANDSHAKE {
        for v in from.get_all(name) {
            to.append(name, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse() {
        let q =
            ExecQuery::parse(Some("command=ls&command=-l&stdout=true&error=1&tty=false")).unwrap();
        assert_eq!(
            q,
            ExecQuery {
                command: vec!["ls".into(), "-l".into()],
                stdout: true,
                stderr: true,
                ..ExecQuery::default()
            }
        );
        assert!(ExecQuery::parse(Some("command=ls&input=1")).unwrap().stdin);
        for bad in ["stdout=true", "command=ls", "command=ls&stdout=false"] {
            assert_eq!(
                ExecQuery::parse(Some(bad)).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn websocket_requests_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!wants_websocket(&h));
        h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(wants_websocket(&h));
        h.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
        assert!(!wants_websocket(&h));
    }
}
