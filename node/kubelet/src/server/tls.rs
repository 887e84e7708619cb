//! HTTPS for the kubelet API: the rustls configuration from [`ServingTls`]
//! (client certificates verified against the client CA, optional so that
//! `/healthz` answers anyone), served by the shared loop (`https`): HTTP/1.1
//! (with upgrades, for exec) or HTTP/2, each request carrying the
//! connection's [`https::Identity`] (anonymous without a usable certificate).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;

use super::error::ServerError;
use crate::ServingTls;

/// How long open connections may finish once the server stops.
const GRACE: Duration = Duration::from_secs(5);

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ServerError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(ServerError::NoCertificate { what });
    }
    Ok(certs)
}

/// The server side: the node's certificate, and client certificates
/// verified against the client CA when given.
pub fn server_config(tls: &ServingTls) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&tls.client_ca_pem, "client CA")? {
        roots.add(ca).map_err(ServerError::Tls)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(ServerError::ClientCa)?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|source| {
        ServerError::Pem {
            what: "serving key",
            source,
        }
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServerError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&tls.cert_pem, "serving certificate")?, key)
        .map_err(ServerError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` on `listener` until `shutdown`, then gives open
/// connections a short grace.
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), https::Error> {
    https::Server::https("kubelet", config)
        .grace(GRACE)
        .serve(listener, router, shutdown)
        .await
}
