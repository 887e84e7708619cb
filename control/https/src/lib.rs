//! Serving an axum router over HTTPS, as the apiserver (6443), the kubelet
//! API (10250) and the health ports do: one accept loop, a TLS handshake
//! with a deadline, the verified client certificate as the caller's
//! [`Identity`], HTTP/1.1 (with upgrades, for exec's WebSocket) and HTTP/2,
//! and a graceful drain on shutdown.
//!
//! [`Server::https`] (or [`Server::http`], for plain health ports) ->
//! settings -> [`Server::serve`]. What each caller keeps to itself: its
//! rustls configuration (certificates, client CA, ALPN), its router, and
//! the span it opens per request.

mod identity;
mod server;

pub use identity::{
    ANONYMOUS_USER, AUTHENTICATED_GROUP, Identity, IdentityError, UNAUTHENTICATED_GROUP,
    identity_from_cert,
};
pub use server::{Server, UnusableCertificate};

/// Why a server could not serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the listening socket's address")]
    LocalAddr(#[source] std::io::Error),
}
