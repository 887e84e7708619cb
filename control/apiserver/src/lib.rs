//! The apiserver: the Kubernetes API on the wire, the only door to the
//! cluster store.
//!
//! HTTPS with client-certificate authentication ([`pki`], [`tls`]); resource
//! paths parsed by [`request`] against the table in [`resources`]; the verbs
//! in [`rest`] and [`list`]; discovery in [`discovery`]; errors as `Status`
//! objects in [`status`]. Objects are JSON, checked by [`validation`] and
//! the `k8s-openapi` round trip in [`typed`], shaped per kind by
//! [`strategy`], patched by [`patch`], shown to `kubectl get` by [`table`].

pub mod alloc;
pub mod binding;
pub mod bootstrap;
pub mod decoders;
pub mod discovery;
pub mod join;
pub mod kubelet;
pub mod list;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod request;
pub mod resources;
pub mod rest;
pub mod selector;
pub mod status;
pub mod strategy;
pub mod table;
pub mod tls;
pub mod typed;
pub mod validation;

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use status::ApiError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use store::DynStore;
use tls::Identity;
use tracing::Instrument;

/// Shared by every request.
#[derive(Debug)]
pub struct State {
    pub store: DynStore,
    /// `host:port` clients use to reach this server.
    pub server_address: String,
    inflight: tokio::sync::Semaphore,
    /// Node joins (`/cacerts`, `/v1-shoal/join`); not served without it.
    joiner: Option<join::Joiner>,
    /// Connections to kubelets (`pods/log`, `pods/exec`); 503 without it.
    kubelets: Option<kubelet::KubeletClient>,
}

impl State {
    /// A state serving the API over `store`, without node joins or kubelets.
    pub fn new(store: DynStore, server_address: String, max_inflight: usize) -> Arc<State> {
        Arc::new(State {
            store,
            server_address,
            inflight: tokio::sync::Semaphore::new(max_inflight),
            joiner: None,
            kubelets: None,
        })
    }

    /// A state that also lets nodes join and reaches their kubelets.
    pub fn with_nodes(
        store: DynStore,
        server_address: String,
        max_inflight: usize,
        joiner: join::Joiner,
        kubelets: kubelet::KubeletClient,
    ) -> Arc<State> {
        Arc::new(State {
            store,
            server_address,
            inflight: tokio::sync::Semaphore::new(max_inflight),
            joiner: Some(joiner),
            kubelets: Some(kubelets),
        })
    }
}

/// How to run an apiserver.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub port: u16,
    /// Requests served at once (watches excepted); more get 429.
    pub max_inflight: usize,
    /// How long history is kept for watches and consistent paging before
    /// it is compacted (kube-apiserver: 5 minutes).
    pub compaction_interval: std::time::Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            bind_address: IpAddr::from([127, 0, 0, 1]),
            port: 6443,
            max_inflight: 400,
            compaction_interval: std::time::Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the cluster certificates")]
    Pki(#[from] pki::PkiError),
    #[error("cannot set up the node token")]
    Token(#[from] join::JoinError),
    #[error("cannot create the built-in objects: {0}")]
    Bootstrap(ApiError),
    #[error("the HTTPS server failed")]
    Serve(#[source] https::Error),
}

/// A bound, ready apiserver.
#[derive(Debug)]
pub struct ApiServer {
    state: Arc<State>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    kubeconfig: PathBuf,
    compaction_interval: std::time::Duration,
}

impl ApiServer {
    /// Binds the port, loads or creates the certificates, writes
    /// `DATA_DIR/admin.kubeconfig` and `DATA_DIR/node-token` (kept once
    /// made) and creates the built-in objects.
    pub async fn build(config: Config, store: DynStore) -> Result<ApiServer, Error> {
        let addr = SocketAddr::new(config.bind_address, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let mut hosts = vec![config.bind_address.to_string()];
        if config.bind_address.is_unspecified() {
            hosts.push("127.0.0.1".into());
        }
        let pki = pki::Pki::load_or_create(&config.data_dir, &hosts)?;
        let host = if config.bind_address.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            config.bind_address.to_string()
        };
        let server_address = format!("{host}:{}", local.port());
        let kubeconfig = config.data_dir.join("admin.kubeconfig");
        pki::write_kubeconfig(
            &kubeconfig,
            &format!("https://{server_address}"),
            pki.ca_pem(),
            pki.admin_cert_pem(),
            pki.admin_key_pem(),
        )?;
        let token = join::NodeToken::load_or_create(&config.data_dir, pki.ca_der())?;
        let kubelets = kubelet::KubeletClient::new(pki.kubelet_client_config()?);
        let tls = pki.server_config()?;
        let state = State::with_nodes(
            store,
            server_address,
            config.max_inflight,
            join::Joiner::new(pki, token),
            kubelets,
        );
        bootstrap::run(&state, &host, local.port())
            .await
            .map_err(Error::Bootstrap)?;
        Ok(ApiServer {
            tls,
            state,
            listener,
            kubeconfig,
            compaction_interval: config.compaction_interval,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the node token was written.
    pub fn node_token_path(&self) -> PathBuf {
        self.kubeconfig.with_file_name(join::TOKEN_FILE)
    }

    /// Where the admin kubeconfig was written.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        tokio::spawn(bootstrap::reap_expired_pods(Arc::downgrade(&self.state)));
        tokio::spawn(bootstrap::compact_history(
            Arc::downgrade(&self.state),
            self.compaction_interval,
        ));
        tls::serve(self.listener, self.tls, router(self.state), shutdown)
            .await
            .map_err(Error::Serve)
    }
}

/// The whole API as a router; identity comes from the [`Identity`] request
/// extension (set by the TLS layer).
pub fn router(state: Arc<State>) -> Router {
    let open = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route(
            join::CACERTS_PATH,
            get(|Extension(state): Extension<Arc<State>>| async move {
                match &state.joiner {
                    Some(joiner) => join::cacerts(joiner).await,
                    None => not_found(join::CACERTS_PATH),
                }
            }),
        )
        .route(
            join::JOIN_PATH,
            post(
                |Extension(state): Extension<Arc<State>>, req: Request| async move {
                    match &state.joiner {
                        Some(joiner) => join::join(joiner, req).await,
                        None => not_found(join::JOIN_PATH),
                    }
                },
            ),
        );
    let openapi = Router::new()
        .route("/openapi/v2", get(discovery::openapi_v2))
        .route("/openapi/v3", get(openapi::index))
        .route("/openapi/v3/{*path}", get(openapi::group_version));
    let api = Router::new()
        .route(
            "/api",
            get(|Extension(state): Extension<Arc<State>>| async move {
                axum::Json(discovery::api_versions(&state.server_address))
            }),
        )
        .route(
            "/apis",
            get(|| async { axum::Json(discovery::api_groups()) }),
        )
        .route(
            "/api/v1",
            get(|| async { axum::Json(discovery::resource_list("", "v1")) }),
        )
        .route(
            "/apis/{group}",
            get(|Path(group): Path<String>| async move {
                discovery::api_group(&group)
                    .map(axum::Json)
                    .ok_or_else(|| ApiError::no_route(&format!("/apis/{group}")))
            }),
        )
        .route(
            "/apis/{group}/{version}",
            get(
                |Path((group, version)): Path<(String, String)>| async move {
                    discovery::resource_list(&group, &version)
                        .map(axum::Json)
                        .ok_or_else(|| ApiError::no_route(&format!("/apis/{group}/{version}")))
                },
            ),
        )
        .fallback(resource)
        .layer(middleware::from_fn(authenticate));
    open.merge(api.merge(openapi.layer(middleware::from_fn(authenticate))))
        .layer(Extension(state))
        .layer(middleware::from_fn(trace))
}

/// Every resource path; `pods/log` and `pods/exec` go to the kubelet
/// (long-running, outside the in-flight limit).
async fn resource(Extension(state): Extension<Arc<State>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let target = match request::parse_target(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return ApiError::no_route(&path).into_response(),
        Err(e) => return e.into_response(),
    };
    if let Some(sub) = &target.sub
        && kubelet::is_connect(target.res, sub)
    {
        return kubelet::connect(state, target, req).await;
    }
    let (parts, body) = req.into_parts();
    let result = async {
        let params = request::Params::parse(parts.uri.query())?;
        let long_running = params.watch && parts.method == Method::GET;
        let _permit = if long_running {
            None
        } else {
            Some(
                state
                    .inflight
                    .try_acquire()
                    .map_err(|_| ApiError::too_many_requests())?,
            )
        };
        rest::handle(
            state.clone(),
            parts.method.clone(),
            target,
            params,
            parts.headers,
            body,
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Anonymous requests get 401 outside the open paths.
async fn authenticate(req: Request, next: Next) -> Response {
    let anonymous = req
        .extensions()
        .get::<Identity>()
        .is_none_or(Identity::is_anonymous);
    if anonymous {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// A span per request naming the method, path and user.
async fn trace(req: Request, next: Next) -> Response {
    let user = req
        .extensions()
        .get::<Identity>()
        .map_or_else(|| "system:anonymous".to_string(), |i| i.user.clone());
    let span =
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), user);
    async move {
        let resp = next.run(req).await;
        let code = resp.status();
        if code.is_server_error() {
            tracing::warn!(code = code.as_u16(), "request failed");
        } else {
            tracing::debug!(code = code.as_u16(), "request done");
        }
        resp
    }
    .instrument(span)
    .await
}

/// Answers for paths nothing else served.
pub fn not_found(path: &str) -> Response {
    let mut r = ApiError::no_route(path).into_response();
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

#[doc(hidden)]
pub fn empty_body() -> Body {
    Body::empty()
}
