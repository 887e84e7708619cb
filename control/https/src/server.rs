//! [`Server`]: the settings, the accept loop, and one connection's life
//! (TLS handshake with a deadline, identity, HTTP until done or drained).
//!
//! Each request carries the connection's [`Identity`] and
//! `ConnectInfo<SocketAddr>` as extensions. There is no request timeout, so
//! watches and log follows stream as long as they like; only the handshake
//! and request headers have deadlines.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::Instrument;

use crate::Error;
use crate::identity::{Identity, identity_from_cert};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// As kube-apiserver's `ReadHeaderTimeout`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
const GRACE: Duration = Duration::from_secs(10);
/// As kube-apiserver's default `--http2-max-streams-per-connection`.
const MAX_H2_STREAMS: u32 = 1000;
/// How long the loop pauses after an accept error that is not the peer's
/// (out of file descriptors and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a connection whose (verified) client certificate names no user gets.
#[derive(Clone, Debug, Default)]
pub enum UnusableCertificate {
    /// It is served as anonymous; the router decides.
    #[default]
    Anonymous,
    /// Every request on it is answered by this router instead (the
    /// apiserver: 401 with a `Status`).
    Answer(Router),
}

/// A server's settings; [`Server::serve`] runs it.
///
/// Defaults: a 10 s TLS handshake deadline, 32 s to read request headers,
/// HTTP/2 with up to 1000 streams per connection beside HTTP/1.1, 10 s of
/// grace for open connections after shutdown, certificates naming no user
/// served as anonymous.
pub struct Server {
    name: &'static str,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    grace: Duration,
    http2_max_streams: u32,
    unusable: UnusableCertificate,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("grace", &self.grace)
            .field("http2_max_streams", &self.http2_max_streams)
            .field("unusable", &self.unusable)
            .finish()
    }
}

impl Server {
    /// HTTPS with `tls` (its certificates, client verifier and ALPN are the
    /// caller's); `name` tells its logs and spans apart.
    pub fn https(name: &'static str, tls: Arc<rustls::ServerConfig>) -> Server {
        Server {
            tls: Some(tls),
            ..Server::http(name)
        }
    }

    /// Plain HTTP (a health port): every caller is anonymous.
    pub fn http(name: &'static str) -> Server {
        Server {
            name,
            tls: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
            grace: GRACE,
            http2_max_streams: MAX_H2_STREAMS,
            unusable: UnusableCertificate::default(),
        }
    }

    /// How long a client has to finish the TLS handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Server {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client has to send an HTTP/1.1 request's headers.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Server {
        self.header_read_timeout = timeout;
        self
    }

    /// How long open connections may finish after shutdown; those still
    /// open then are closed.
    pub fn grace(mut self, grace: Duration) -> Server {
        self.grace = grace;
        self
    }

    /// At most `streams` concurrent HTTP/2 streams per connection.
    pub fn http2_max_streams(mut self, streams: u32) -> Server {
        self.http2_max_streams = streams;
        self
    }

    /// What a certificate naming no user gets.
    pub fn unusable_certificate(mut self, unusable: UnusableCertificate) -> Server {
        self.unusable = unusable;
        self
    }

    /// Serves `router` on `listener` until `shutdown` resolves; then stops
    /// accepting, asks open connections to finish (HTTP/1.1 after the
    /// request in flight, HTTP/2 with GOAWAY) and closes those still open
    /// when the grace period ends.
    pub async fn serve(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let local = listener.local_addr().map_err(Error::LocalAddr)?;
        let name = self.name;
        let grace = self.grace;
        let http = self.http_builder();
        let conn = Arc::new(Conn {
            tls: self.tls.map(TlsAcceptor::from),
            http,
            handshake_timeout: self.handshake_timeout,
            unusable: self.unusable,
        });
        let (stop_tx, stop_rx) = watch::channel(());
        let mut conns = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let scheme = if conn.tls.is_some() { "HTTPS" } else { "HTTP" };
        tracing::info!(server = name, %local, "serving {scheme}");

        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let span = tracing::info_span!(
                            "conn", server = name, %peer, user = tracing::field::Empty
                        );
                        let serve = conn.clone().serve(tcp, peer, router.clone(), stop_rx.clone());
                        conns.spawn(serve.instrument(span));
                    }
                    Err(e) if is_connection_error(&e) => {
                        tracing::debug!(server = name, error = %e, "accept failed");
                    }
                    Err(e) => {
                        tracing::error!(server = name, error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(done) = conns.join_next(), if !conns.is_empty() => log_panic(done),
            }
        }

        drop(listener);
        let _ = stop_tx.send(());
        tracing::info!(server = name, %local, open = conns.len(), "stopped accepting; draining connections");
        let drain = async {
            while let Some(done) = conns.join_next().await {
                log_panic(done);
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::info!(
                server = name,
                open = conns.len(),
                "grace period over; closing connections"
            );
            conns.shutdown().await;
        }
        Ok(())
    }

    fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_streams);
        builder
    }
}

/// What every connection of one server shares.
struct Conn {
    tls: Option<TlsAcceptor>,
    http: auto::Builder<TokioExecutor>,
    handshake_timeout: Duration,
    unusable: UnusableCertificate,
}

impl Conn {
    /// One connection: TLS handshake and identity, then HTTP.
    async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        router: Router,
        stop: watch::Receiver<()>,
    ) {
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = &self.tls else {
            return self
                .http(tcp, peer, Identity::anonymous(), router, stop)
                .await;
        };
        let tls = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await {
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
                match &self.unusable {
                    UnusableCertificate::Anonymous => (Identity::anonymous(), router),
                    UnusableCertificate::Answer(answer) => (Identity::anonymous(), answer.clone()),
                }
            }
        };
        self.http(tls, peer, identity, router, stop).await;
    }

    /// HTTP on an established connection until it ends, or until told to
    /// stop (then gracefully).
    async fn http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        identity: Identity,
        router: Router,
        mut stop: watch::Receiver<()>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tracing::Span::current().record("user", identity.user.as_str());
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(identity.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req)
        });
        let conn = self
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), service);
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
