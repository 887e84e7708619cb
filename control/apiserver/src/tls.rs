//! Serving HTTPS, with the client certificate as the caller's identity.
//!
//! [`serve`] accepts TLS connections, reads the verified client certificate
//! (CN = user, O = groups, as Kubernetes does) and serves an axum router over
//! HTTP/1.1 or HTTP/2, with upgrades. Each request carries the connection's
//! [`Identity`] and `ConnectInfo<SocketAddr>` as extensions. A connection
//! without a client certificate is anonymous; one whose certificate names no
//! user gets 401 on every request. There is no request timeout, so watches
//! stream as long as they like; only request headers have a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::Instrument;
use x509_parser::error::X509Error;

/// The user of a connection without a client certificate.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of every unauthenticated caller.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group of every authenticated caller.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// How long in-flight connections may finish after shutdown is asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// As kube-apiserver's `ReadHeaderTimeout`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// As kube-apiserver's default `--http2-max-streams-per-connection`.
const MAX_H2_STREAMS: u32 = 1000;

/// Who is calling, as Kubernetes authentication reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Identity {
        Identity {
            user: ANONYMOUS_USER.to_string(),
            groups: vec![UNAUTHENTICATED_GROUP.to_string()],
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.user == ANONYMOUS_USER
    }
}

/// Why a client certificate names no usable identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("client certificate is not valid X.509")]
    Parse(#[source] X509Error),
    #[error("client certificate has no common name")]
    NoCommonName,
    #[error("client certificate subject is not UTF-8")]
    NotUtf8(#[source] X509Error),
}

/// Reads a (verified) client certificate: CN is the user, each O a group,
/// plus `system:authenticated`.
pub fn identity_from_cert(der: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        IdentityError::Parse(match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        })
    })?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .ok_or(IdentityError::NoCommonName)?
        .as_str()
        .map_err(IdentityError::NotUtf8)?;
    if user.is_empty() {
        return Err(IdentityError::NoCommonName);
    }
    let mut groups = subject
        .iter_organization()
        .map(|o| o.as_str().map(str::to_string))
        .collect::<Result<Vec<_>, _>>()
        .map_err(IdentityError::NotUtf8)?;
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    Ok(Identity {
        user: user.to_string(),
        groups,
    })
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then
/// lets in-flight connections finish for up to [`DEFAULT_GRACE`].
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_grace(listener, config, router, shutdown, DEFAULT_GRACE).await
}

/// [`serve`] with a chosen grace period; connections still open after it are closed.
pub async fn serve_with_grace(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(config);
    let http = Arc::new(http_builder());
    let (stop_tx, stop_rx) = watch::channel(());
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    tracing::info!(%local, "serving HTTPS");

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let span = tracing::info_span!("conn", %peer, user = tracing::field::Empty);
                    let conn = connection(
                        tcp,
                        peer,
                        acceptor.clone(),
                        http.clone(),
                        router.clone(),
                        stop_rx.clone(),
                    );
                    conns.spawn(conn.instrument(span));
                }
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "accept failed");
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => log_panic(done),
        }
    }

    drop(listener);
    let _ = stop_tx.send(());
    tracing::info!(%local, open = conns.len(), "stopped accepting; draining connections");
    let drain = async {
        while let Some(done) = conns.join_next().await {
            log_panic(done);
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::info!(open = conns.len(), "grace period over; closing connections");
        conns.shutdown().await;
    }
    Ok(())
}

/// One connection: TLS handshake, identity, then HTTP until done or told to stop.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    http: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    mut stop: watch::Receiver<()>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let (identity, router) = match cert.map(|der| identity_from_cert(der)) {
        None => (Identity::anonymous(), router),
        Some(Ok(identity)) => (identity, router),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "unusable client certificate");
            (Identity::anonymous(), Router::new().fallback(unauthorized))
        }
    };
    tracing::Span::current().record("user", identity.user.as_str());

    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(identity.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let conn = http.serve_connection_with_upgrades(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS);
    builder
}

/// A Kubernetes `Status` for a certificate that names no user.
async fn unauthorized() -> Result<Response<axum::body::Body>, Infallible> {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    });
    let mut response = Response::new(axum::body::Body::from(status.to_string()));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "connection task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ADMIN_GROUP, ADMIN_USER, Pki};
    use axum::Extension;
    use axum::routing::get;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore};
    use tokio::sync::{Semaphore, mpsc, oneshot};
    use tokio_rustls::TlsConnector;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn client_config(
        ca_pem: &str,
        cert: Option<(&str, &str)>,
        alpn: &[u8],
    ) -> anyhow::Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder.with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
                PrivateKeyDer::from_pem_slice(key.as_bytes())?,
            )?,
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }

    /// GETs `path` over HTTP/1.1 or HTTP/2 (by ALPN); returns status and body.
    async fn fetch(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        path: &str,
    ) -> anyhow::Result<(u16, String)> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let req = Request::get(format!("https://localhost{path}")).body(Empty::<Bytes>::new())?;
        let response = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8(body.to_vec())?))
    }

    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        done: tokio::task::JoinHandle<io::Result<()>>,
        /// Names of the paths whose handlers have started.
        arrived: mpsc::UnboundedReceiver<&'static str>,
        /// Lets `/held` answer, one request per permit.
        release: Arc<Semaphore>,
    }

    async fn start(pki: &Pki, grace: Duration) -> anyhow::Result<Server> {
        let (arrivals, arrived) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        let held = {
            let (arrivals, release) = (arrivals.clone(), release.clone());
            move || async move {
                let _ = arrivals.send("held");
                release.acquire().await.map(|p| p.forget()).ok();
                "released"
            }
        };
        let hang = move || async move {
            let _ = arrivals.send("hang");
            std::future::pending::<String>().await
        };
        let router = Router::new()
            .route(
                "/whoami",
                get(|Extension(id): Extension<Identity>| async move {
                    format!("{}|{}", id.user, id.groups.join(","))
                }),
            )
            .route("/held", get(held))
            .route("/hang", get(hang));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(serve_with_grace(
            listener,
            pki.server_config()?,
            router,
            async {
                let _ = stopped.await;
            },
            grace,
        ));
        Ok(Server {
            addr,
            stop,
            done,
            arrived,
            release,
        })
    }

    #[tokio::test]
    async fn identity_comes_from_the_client_certificate() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &[])?;
        let server = start(&pki, DEFAULT_GRACE).await?;
        let admin = Some((pki.admin_cert_pem(), pki.admin_key_pem()));

        for alpn in [&b"http/1.1"[..], b"h2"] {
            let config = client_config(pki.ca_pem(), admin, alpn)?;
            let (status, body) = fetch(server.addr, config, "/whoami").await?;
            assert_eq!(status, 200);
            assert_eq!(
                body,
                format!("{ADMIN_USER}|{ADMIN_GROUP},{AUTHENTICATED_GROUP}")
            );

            let config = client_config(pki.ca_pem(), None, alpn)?;
            let (status, body) = fetch(server.addr, config, "/whoami").await?;
            assert_eq!(status, 200);
            assert_eq!(body, format!("{ANONYMOUS_USER}|{UNAUTHENTICATED_GROUP}"));
        }

        // A certificate with no CN: signed by our CA, but it names no user.
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "nobody");
        let ca_key = std::fs::read_to_string(dir.path().join("pki/ca.key"))?;
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(pki.ca_pem(), rcgen::KeyPair::from_pem(&ca_key)?)?;
        let (cert, key) = (params.signed_by(&key, &issuer)?.pem(), key.serialize_pem());
        let config = client_config(pki.ca_pem(), Some((&cert, &key)), b"http/1.1")?;
        let (status, body) = fetch(server.addr, config, "/whoami").await?;
        assert_eq!(status, 401);
        assert!(body.contains("Unauthorized"), "{body}");

        server.stop.send(()).ok();
        server.done.await??;
        Ok(())
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let other = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &[])?;
        let foreign = Pki::load_or_create(other.path(), &[])?;
        let server = start(&pki, DEFAULT_GRACE).await?;

        let bad = Some((foreign.admin_cert_pem(), foreign.admin_key_pem()));
        let config = client_config(pki.ca_pem(), bad, b"http/1.1")?;
        assert!(fetch(server.addr, config, "/whoami").await.is_err());

        // The server keeps serving.
        let good = Some((pki.admin_cert_pem(), pki.admin_key_pem()));
        let config = client_config(pki.ca_pem(), good, b"http/1.1")?;
        let (status, body) = fetch(server.addr, config, "/whoami").await?;
        assert_eq!(status, 200);
        assert!(body.starts_with(ADMIN_USER), "{body}");

        server.stop.send(()).ok();
        server.done.await??;
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_lets_requests_finish_and_ends_after_grace() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &[])?;
        let mut server = start(&pki, Duration::from_millis(500)).await?;
        let config = client_config(pki.ca_pem(), None, b"h2")?;

        let held = tokio::spawn(fetch(server.addr, config.clone(), "/held"));
        let hang = tokio::spawn(fetch(server.addr, config.clone(), "/hang"));
        let mut arrived = Vec::new();
        for _ in 0..2 {
            let path = tokio::time::timeout(Duration::from_secs(5), server.arrived.recv()).await?;
            arrived.extend(path);
        }
        arrived.sort();
        assert_eq!(arrived, ["hang", "held"]);

        server.stop.send(()).ok();
        // Stopped accepting, while the held request is still in flight.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while fetch(server.addr, config.clone(), "/whoami").await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still accepting");
            tokio::task::yield_now().await;
        }
        assert!(!held.is_finished());
        server.release.add_permits(1);
        let (status, body) = held.await??;
        assert_eq!((status, body.as_str()), (200, "released"));

        // The hanging request is cut when the grace period ends.
        tokio::time::timeout(Duration::from_secs(5), server.done).await???;
        assert!(hang.await?.is_err());
        Ok(())
    }
}
