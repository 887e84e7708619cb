//! `pods/log` and `pods/exec`, proxied to the kubelet of the pod's node.
//!
//! The pod names its node; the Node names the kubelet's address (its
//! `InternalIP`) and port (`status.daemonEndpoints.kubeletEndpoint.Port`,
//! 10250 by default). The apiserver connects with TLS, verifying the
//! kubelet's serving certificate against the cluster CA for that IP, and
//! presents `kube-apiserver-kubelet-client` (`system:masters`).
//!
//! Logs go to `/containerLogs/NS/POD/CONTAINER` and the body streams back
//! unchanged. Exec goes to `/exec/NS/POD/CONTAINER` as a WebSocket
//! (`v5.channel.k8s.io`): the kubelet's 101 is relayed to the client and
//! bytes are copied both ways. SPDY is not spoken. Kubelet errors become
//! `Status` errors with the kubelet's code and message.

use crate::State;
use crate::request::Target;
use crate::resources::{self, Resource};
use crate::rest;
use crate::status::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::Instrument;

/// Subresources served by a kubelet rather than the store.
pub const CONNECT_SUBRESOURCES: &[(&str, &str)] = &[("pods", "log"), ("pods", "exec")];
/// Where kubelets listen unless their Node says otherwise.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a kubelet's error body is read for the message.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// The headers of a WebSocket handshake, passed to the kubelet.
const UPGRADE_REQUEST_HEADERS: &[HeaderName] = &[
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
];
/// The headers of the kubelet's 101, passed back to the client.
const UPGRADE_RESPONSE_HEADERS: &[HeaderName] = &[
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
];

/// Whether `RESOURCE/NAME/sub` is proxied to a kubelet.
pub fn is_connect(res: &Resource, sub: &str) -> bool {
    res.group.is_empty()
        && CONNECT_SUBRESOURCES
            .iter()
            .any(|(plural, s)| *plural == res.plural && *s == sub)
}

/// Connections to kubelets, with the apiserver's client certificate.
#[derive(Clone)]
pub struct KubeletClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").finish_non_exhaustive()
    }
}

/// Where one node's kubelet listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    pub ip: IpAddr,
    pub port: u16,
}

impl KubeletClient {
    /// `config` from [`crate::pki::Pki::kubelet_client_config`].
    pub fn new(config: Arc<rustls::ClientConfig>) -> KubeletClient {
        KubeletClient {
            connector: TlsConnector::from(config),
        }
    }

    /// Sends one HTTP/1.1 request (upgrades allowed) to the kubelet at `to`.
    async fn send(
        &self,
        to: &Endpoint,
        path_and_query: &str,
        headers: HeaderMap,
    ) -> Result<hyper::Response<Incoming>, ApiError> {
        let addr = SocketAddr::new(to.ip, to.port);
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::internal(format!(
                "cannot {what} the kubelet of node {:?} at {addr}: {e}",
                to.node
            ))
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|e| unreachable("connect to", &e))?
            .map_err(|e| unreachable("connect to", &e))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.connector
                .connect(ServerName::IpAddress(to.ip.into()), tcp),
        )
        .await
        .map_err(|e| unreachable("reach", &e))?
        .map_err(|e| unreachable("verify", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable("talk to", &e))?;
        tokio::spawn(
            async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "kubelet connection ended with an error");
                }
            }
            .in_current_span(),
        );
        let mut req = http::Request::get(path_and_query)
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiError::bad_request(format!("cannot build the kubelet request: {e}")))?;
        *req.headers_mut() = headers;
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        req.headers_mut().insert(header::HOST, host);
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable("get an answer from", &e))
    }
}

/// Serves `pods/log` and `pods/exec` for `target`.
pub async fn connect(state: Arc<State>, target: Target, req: Request) -> Response {
    let sub = target.sub.clone().unwrap_or_default();
    let pod = format!(
        "{}/{}",
        target.namespace.as_deref().unwrap_or(""),
        target.name.as_deref().unwrap_or("")
    );
    let span = tracing::info_span!("kubelet", %pod, sub, node = tracing::field::Empty);
    async move {
        match (sub.as_str(), req.method()) {
            ("log", &Method::GET) => logs(&state, &target, req).await,
            ("exec", &Method::GET | &Method::POST) => exec(&state, &target, req).await,
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({} pods/{sub})",
                req.method()
            ))),
        }
        .unwrap_or_else(IntoResponse::into_response)
    }
    .instrument(span)
    .await
}

/// The pod's container, its kubelet and the query to pass on.
struct Resolved {
    container: String,
    endpoint: Endpoint,
    query: String,
}

async fn resolve(
    state: &State,
    target: &Target,
    query: Option<&str>,
) -> Result<Resolved, ApiError> {
    kubelets(state)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let wanted = pairs
        .iter()
        .find(|(k, v)| k == "container" && !v.is_empty())
        .map(|(_, v)| v.as_str());
    let name = target.name.as_deref().unwrap_or("");
    let (_, pod) = rest::read(state, target, name).await?;
    let container = container(&pod, name, wanted)?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    tracing::Span::current().record("node", node);
    let nodes = resources::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("the nodes resource is not served"))?;
    let node_target = Target {
        res: nodes,
        namespace: None,
        name: Some(node.to_string()),
        sub: None,
    };
    let (_, node_obj) = rest::read(state, &node_target, node).await?;
    let endpoint = endpoint(node, &node_obj)?;
    let rest: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| k != "container")
        .collect();
    let query = serde_urlencoded::to_string(&rest)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    Ok(Resolved {
        container,
        endpoint,
        query,
    })
}

fn kubelets(state: &State) -> Result<&KubeletClient, ApiError> {
    state
        .kubelets
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this apiserver has no kubelet client"))
}

/// The container a request means, as kube-apiserver picks it: the one
/// named (a container, init container or ephemeral container of the pod),
/// else the only one.
pub fn container(pod: &Value, pod_name: &str, wanted: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (main, init, ephemeral) = (
        names("containers"),
        names("initContainers"),
        names("ephemeralContainers"),
    );
    match wanted {
        Some(c) if main.iter().chain(&init).chain(&ephemeral).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None if main.len() == 1 => Ok(main[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Where a Node's kubelet listens: its InternalIP and kubelet port.
pub fn endpoint(name: &str, node: &Value) -> Result<Endpoint, ApiError> {
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .find_map(|a| {
            a.get("address")
                .and_then(Value::as_str)?
                .parse::<IpAddr>()
                .ok()
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "node {name} has no InternalIP address: has its kubelet registered?"
            ))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(Endpoint {
        node: name.to_string(),
        ip,
        port,
    })
}

fn kubelet_path(kind: &str, target: &Target, r: &Resolved) -> String {
    let mut path = format!(
        "/{kind}/{}/{}/{}",
        target.namespace.as_deref().unwrap_or(""),
        target.name.as_deref().unwrap_or(""),
        r.container
    );
    if !r.query.is_empty() {
        path.push('?');
        path.push_str(&r.query);
    }
    path
}

async fn logs(state: &State, target: &Target, req: Request) -> Result<Response, ApiError> {
    let r = resolve(state, target, req.uri().query()).await?;
    let client = kubelets(state)?;
    let path = kubelet_path("containerLogs", target, &r);
    let resp = client.send(&r.endpoint, &path, HeaderMap::new()).await?;
    if !resp.status().is_success() {
        return Err(kubelet_error(resp).await);
    }
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

async fn exec(state: &State, target: &Target, mut req: Request) -> Result<Response, ApiError> {
    let r = resolve(state, target, req.uri().query()).await?;
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Err(ApiError::bad_request(
            "Shoal serves exec over WebSockets (v5.channel.k8s.io) only, not SPDY: \
             upgrade the request to a WebSocket (kubectl 1.30 and later do)",
        ));
    }
    let client = kubelets(state)?;
    let mut headers = HeaderMap::new();
    for name in UPGRADE_REQUEST_HEADERS {
        for value in req.headers().get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let path = kubelet_path("exec", target, &r);
    let mut resp = client.send(&r.endpoint, &path, headers).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let kubelet_upgrade = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in UPGRADE_RESPONSE_HEADERS {
        for value in resp.headers().get_all(name) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    let span = tracing::info_span!("exec relay", container = %r.container);
    tokio::spawn(
        async move {
            let (kubelet, client) = match tokio::try_join!(kubelet_upgrade, client_upgrade) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "the exec upgrade failed");
                    return;
                }
            };
            let (mut kubelet, mut client) = (TokioIo::new(kubelet), TokioIo::new(client));
            match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                Ok((up, down)) => tracing::debug!(up, down, "exec stream closed"),
                Err(e) => tracing::debug!(error = %e, "exec stream ended with an error"),
            }
        }
        .instrument(span),
    );
    Ok(out)
}

/// A kubelet's error answer as a `Status` with its code and message.
async fn kubelet_error(resp: hyper::Response<Incoming>) -> ApiError {
    let code = resp.status();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY);
    let body = limited
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    error_from_kubelet(code, &body)
}

/// Maps a kubelet's answer (a `Status`, or text) to a `Status` error.
pub fn error_from_kubelet(code: StatusCode, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let message = if message.is_empty() {
        format!("the kubelet answered {code}")
    } else {
        message
    };
    let reason = match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    let code = if code.is_client_error() || code.is_server_error() {
        code.as_u16()
    } else {
        500
    };
    ApiError {
        code,
        reason,
        message,
        details: None,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_named_or_the_only_one() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(container(&one, "p", None).unwrap(), "app");
        assert_eq!(container(&one, "p", Some("app")).unwrap(), "app");
        let err = container(&one, "p", Some("nope")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "container nope is not valid for pod p")
        );

        let two = json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "setup"}],
        }});
        let err = container(&two, "p", None).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b] \
             or one of the init containers: [setup]"
        );
        assert_eq!(container(&two, "p", Some("setup")).unwrap(), "setup");
        assert_eq!(container(&two, "p", Some("b")).unwrap(), "b");
    }

    #[test]
    fn the_endpoint_is_the_internal_ip_and_kubelet_port() {
        let node = json!({"status": {
            "addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "127.0.0.2"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 41234}},
        }});
        assert_eq!(
            endpoint("n1", &node).unwrap(),
            Endpoint {
                node: "n1".into(),
                ip: "127.0.0.2".parse().unwrap(),
                port: 41234
            }
        );
        let no_port = json!({"status": {"addresses": [{"type": "InternalIP", "address": "::1"}]}});
        assert_eq!(endpoint("n1", &no_port).unwrap().port, DEFAULT_KUBELET_PORT);
        let err = endpoint("n1", &json!({"status": {}})).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("InternalIP"), "{}", err.message);
    }

    #[test]
    fn kubelet_errors_keep_their_code_and_message() {
        let status = json!({"kind": "Status", "code": 404, "message": "container \"x\" not found"});
        let err = error_from_kubelet(StatusCode::NOT_FOUND, status.to_string().as_bytes());
        assert_eq!(
            (err.code, err.reason, err.message.as_str()),
            (404, "NotFound", "container \"x\" not found")
        );
        let err = error_from_kubelet(
            StatusCode::BAD_REQUEST,
            b"previous terminated container not found\n",
        );
        assert_eq!(
            (err.code, err.reason, err.message.as_str()),
            (400, "BadRequest", "previous terminated container not found")
        );
        let err = error_from_kubelet(StatusCode::BAD_GATEWAY, b"");
        assert_eq!((err.code, err.reason), (502, "InternalError"));
        assert!(err.message.contains("502"), "{}", err.message);
    }

    #[test]
    fn only_pods_log_and_exec_are_proxied() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let nodes = resources::find("", "v1", "nodes").unwrap();
        assert!(is_connect(pods, "log"));
        assert!(is_connect(pods, "exec"));
        assert!(!is_connect(pods, "attach"));
        assert!(!is_connect(nodes, "log"));
    }
}
