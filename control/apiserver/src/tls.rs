//! Serving the API over HTTPS: the shared loop (`https`) with the
//! apiserver's settings: HTTP/1.1 and HTTP/2 (up to 1000 streams, as
//! kube-apiserver), a 10 s grace on shutdown, and a client certificate that
//! names no user answered 401 `Status` on every request. A connection
//! without a client certificate is anonymous. There is no request timeout,
//! so watches stream as long as they like; only request headers have a
//! deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use tokio::net::TcpListener;

pub use https::{
    ANONYMOUS_USER, AUTHENTICATED_GROUP, Identity, IdentityError, UNAUTHENTICATED_GROUP,
    identity_from_cert,
};

/// How long in-flight connections may finish after shutdown is asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// As kube-apiserver's default `--http2-max-streams-per-connection`.
const MAX_H2_STREAMS: u32 = 1000;

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then
/// lets in-flight connections finish for up to [`DEFAULT_GRACE`].
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), https::Error> {
    serve_with_grace(listener, config, router, shutdown, DEFAULT_GRACE).await
}

/// [`serve`] with a chosen grace period; connections still open after it are closed.
pub async fn serve_with_grace(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), https::Error> {
    https::Server::https("apiserver", config)
        .http2_max_streams(MAX_H2_STREAMS)
        .grace(grace)
        .unusable_certificate(https::UnusableCertificate::Answer(
            Router::new().fallback(unauthorized),
        ))
        .serve(listener, router, shutdown)
        .await
}

/// A Kubernetes `Status` for a certificate that names no user.
async fn unauthorized() -> Response {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    });
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        status.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    //! The apiserver's settings over its own certificates; the loop itself
    //! is tested in the `https` crate.

    use super::*;
    use crate::pki::{ADMIN_GROUP, ADMIN_USER, Pki};
    use axum::Extension;
    use axum::routing::get;
    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore};
    use std::net::SocketAddr;
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
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
        done: tokio::task::JoinHandle<Result<(), https::Error>>,
    }

    /// [`serve`] with the cluster's certificates and a `/whoami` route.
    async fn start(pki: &Pki) -> anyhow::Result<Server> {
        let router = Router::new().route(
            "/whoami",
            get(|Extension(id): Extension<Identity>| async move {
                format!("{}|{}", id.user, id.groups.join(","))
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(serve(listener, pki.server_config()?, router, async {
            let _ = stopped.await;
        }));
        Ok(Server { addr, stop, done })
    }

    #[tokio::test]
    async fn identity_comes_from_the_client_certificate() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &[])?;
        let server = start(&pki).await?;
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
        for alpn in [&b"http/1.1"[..], b"h2"] {
            let config = client_config(pki.ca_pem(), Some((&cert, &key)), alpn)?;
            let (status, body) = fetch(server.addr, config, "/whoami").await?;
            assert_eq!(status, 401);
            let status: serde_json::Value = serde_json::from_str(&body)?;
            assert_eq!(status["kind"], "Status", "{body}");
            assert_eq!(status["reason"], "Unauthorized", "{body}");
        }

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
        let server = start(&pki).await?;

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
}
