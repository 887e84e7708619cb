//! The kubelet API (port 10250, HTTPS), the paths the apiserver proxies
//! `kubectl logs`, `exec` and `top` to, as the real kubelet serves them:
//!
//! - `GET /healthz`: `ok`, to anyone.
//! - `GET /containerLogs/{namespace}/{pod}/{container}` (`logs`).
//! - `GET|POST /exec/{namespace}/{pod}/{container}` (`exec`): CRI Exec, then
//!   the WebSocket proxied to the runtime's streaming server.
//! - `GET /stats/summary` (`stats`), `GET /pods` (`pods`).
//!
//! [`ApiServer::bind`] -> [`ApiServer::serve`]. `tls` holds the rustls
//! configuration and the accept loop; every other path needs a client
//! certificate (401 without one) naming `system:masters` in its O or
//! `kube-apiserver-kubelet-client` as its CN (403 otherwise). Each request
//! runs in a span with its method, path and user. Everything is read from
//! the runtime over CRI: the API holds no state of its own beyond the last
//! CPU samples (for usage rates).

mod crilog;
mod error;
mod exec;
mod instances;
mod logs;
mod pods;
mod stats;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use tokio::net::TcpListener;
use tracing::Instrument;

pub use crilog::{Filter, Line, Record, RecordError, Stream, parse, render};
pub use error::ServerError;
pub use https::{Identity, identity_from_cert};

use crate::ServingTls;
use crate::cri::Cri;

/// The group whose members may use every path.
pub const ADMIN_GROUP: &str = "system:masters";
/// The CN the apiserver's kubelet client certificate carries.
pub const APISERVER_CLIENT: &str = "kube-apiserver-kubelet-client";

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub node_name: String,
    pub cri: Cri,
    pub rates: stats::Rates,
}

/// The kubelet API, bound and ready to serve.
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<State>,
}

impl ApiServer {
    /// Checks the certificates and binds `addr` (port 0: any free port).
    pub async fn bind(
        node_name: &str,
        addr: SocketAddr,
        serving: &ServingTls,
        cri: Cri,
    ) -> Result<ApiServer, ServerError> {
        let tls = tls::server_config(serving)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(ApiServer {
            listener,
            addr,
            tls,
            state: Arc::new(State {
                node_name: node_name.to_owned(),
                cri,
                rates: stats::Rates::default(),
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        tracing::info!(addr = %self.addr, "serving the kubelet API");
        if let Err(e) = tls::serve(self.listener, self.tls, router(self.state), shutdown).await {
            tracing::error!(error = %crate::chain(&e), "the kubelet API stopped");
        }
    }
}

fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(exec::exec).post(exec::exec),
        )
        .route("/stats/summary", get(stats::summary))
        .route("/pods", get(pods::list))
        .with_state(state)
        .layer(middleware::from_fn(authorize))
        .layer(middleware::from_fn(span))
}

/// A span per request: method, path and user.
async fn span(req: Request, next: Next) -> Response {
    let user = req
        .extensions()
        .get::<Identity>()
        .map_or("system:anonymous", |i| i.user.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "kubelet_request",
        method = %req.method(),
        path = %req.uri().path(),
        user = %user,
    );
    async move {
        let response = next.run(req).await;
        tracing::debug!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// Whether an identity may use the API.
pub fn allowed(identity: &Identity) -> bool {
    identity.user == APISERVER_CLIENT || identity.groups.iter().any(|g| g == ADMIN_GROUP)
}

/// 401 without a client certificate (or one naming no user), 403 for one
/// that may not; `/healthz` is open.
async fn authorize(req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let identity = req.extensions().get::<Identity>();
    match identity.filter(|id| !id.is_anonymous()) {
        None => (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response(),
        Some(id) if !allowed(id) => {
            let message = format!(
                "Forbidden (user={}, verb={}, resource=nodes, subresource=proxy)\n",
                id.user,
                req.method().as_str().to_lowercase()
            );
            (StatusCode::FORBIDDEN, message).into_response()
        }
        Some(_) => next.run(req).await,
    }
}
