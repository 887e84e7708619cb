//! The serving loop at its boundary: a real rustls client over loopback
//! against `Server::serve`, with certificates from a throwaway CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Extension};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use https::{
    ANONYMOUS_USER, AUTHENTICATED_GROUP, Identity, Server, UNAUTHENTICATED_GROUP,
    UnusableCertificate,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_rustls::TlsConnector;

/// How long any one wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

type Pair = (CertificateDer<'static>, PrivateKeyDer<'static>);

/// A throwaway CA, a serving certificate for `localhost` from it, and
/// client certificates on demand.
struct Pki {
    ca: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    serving: Pair,
}

impl Pki {
    fn new() -> anyhow::Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let key = KeyPair::generate()?;
        let ca = params.self_signed(&key)?.der().clone();
        let issuer = Issuer::new(params, key);
        let params = CertificateParams::new(vec!["localhost".to_string()])?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?.der().clone();
        let serving = (cert, pkcs8(&key));
        Ok(Pki {
            ca,
            issuer,
            serving,
        })
    }

    /// A client certificate with `cn` (none if `None`) and `org` as its O.
    fn client(&self, cn: Option<&str>, org: Option<&str>) -> anyhow::Result<Pair> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?.der().clone();
        Ok((cert, pkcs8(&key)))
    }

    /// The server side: client certificates optional, verified against the
    /// CA; ALPN h2 and http/1.1.
    fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()?;
        let (cert, key) = (self.serving.0.clone(), self.serving.1.clone_key());
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A client trusting the CA, presenting `cert` if given, offering `alpn`.
    fn client_config(&self, cert: Option<&Pair>, alpn: &[u8]) -> anyhow::Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                builder.with_client_auth_cert(vec![cert.clone()], key.clone_key())?
            }
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }
}

fn pkcs8(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// GETs `path` on an open connection, over HTTP/2 when ALPN chose it.
async fn get_on<I>(io: I, h2: bool, path: &str) -> anyhow::Result<(u16, String)>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
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

/// GETs `path` over TLS; returns status and body.
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
    get_on(tls, h2, path).await
}

/// A server running in a task, and the handles on its handlers.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Result<(), https::Error>>,
    /// Names of the paths whose handlers have started.
    arrived: mpsc::UnboundedReceiver<&'static str>,
    /// Lets `/held` answer, one request per permit.
    release: Arc<Semaphore>,
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.send(()).ok();
        tokio::time::timeout(DEADLINE, self.done).await???;
        Ok(())
    }
}

/// Serves, on a free loopback port: `/whoami` (`user|groups|peer IP`),
/// `/held` (answers when released), `/hang` (never answers), `/echo` (a
/// WebSocket echo).
async fn start(server: Server) -> anyhow::Result<Running> {
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
    let whoami = |Extension(id): Extension<Identity>,
                  ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
        format!("{}|{}|{}", id.user, id.groups.join(","), peer.ip())
    };
    let echo = |ws: WebSocketUpgrade| async move {
        ws.on_upgrade(|mut socket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                if socket.send(message).await.is_err() {
                    break;
                }
            }
        })
    };
    let router = Router::new()
        .route("/whoami", get(whoami))
        .route("/held", get(held))
        .route("/hang", get(hang))
        .route("/echo", get(echo));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.serve(listener, router, async {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        stop,
        done,
        arrived,
        release,
    })
}

#[tokio::test]
async fn the_client_certificate_names_the_caller_over_http1_and_http2() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let server = start(Server::https("test", pki.server_config()?)).await?;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let alice = pki.client(Some("alice"), Some("devs"))?;
        let config = pki.client_config(Some(&alice), alpn)?;
        let (status, body) = fetch(server.addr, config, "/whoami").await?;
        assert_eq!(status, 200);
        assert_eq!(body, format!("alice|devs,{AUTHENTICATED_GROUP}|127.0.0.1"));

        let config = pki.client_config(None, alpn)?;
        let (status, body) = fetch(server.addr, config, "/whoami").await?;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!("{ANONYMOUS_USER}|{UNAUTHENTICATED_GROUP}|127.0.0.1")
        );
    }
    server.stop().await
}

#[tokio::test]
async fn a_certificate_naming_no_user_is_anonymous_or_answered_as_configured() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let nameless = pki.client(None, Some("nobody"))?;

    let server = start(Server::https("test", pki.server_config()?)).await?;
    let config = pki.client_config(Some(&nameless), b"http/1.1")?;
    let (status, body) = fetch(server.addr, config, "/whoami").await?;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("{ANONYMOUS_USER}|{UNAUTHENTICATED_GROUP}|127.0.0.1")
    );
    server.stop().await?;

    let refuse = Router::new().fallback(|| async { (StatusCode::UNAUTHORIZED, "no user") });
    let server = start(
        Server::https("test", pki.server_config()?)
            .unusable_certificate(UnusableCertificate::Answer(refuse)),
    )
    .await?;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let config = pki.client_config(Some(&nameless), alpn)?;
        let (status, body) = fetch(server.addr, config, "/whoami").await?;
        assert_eq!((status, body.as_str()), (401, "no user"));
    }
    // Other callers are served as before.
    let config = pki.client_config(None, b"http/1.1")?;
    let (status, body) = fetch(server.addr, config, "/whoami").await?;
    assert_eq!(status, 200);
    assert!(body.starts_with(ANONYMOUS_USER), "{body}");
    server.stop().await
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_and_serving_goes_on() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let foreign = Pki::new()?;
    let server = start(Server::https("test", pki.server_config()?)).await?;

    let mallory = foreign.client(Some("mallory"), Some("system:masters"))?;
    let config = pki.client_config(Some(&mallory), b"http/1.1")?;
    assert!(fetch(server.addr, config, "/whoami").await.is_err());

    let alice = pki.client(Some("alice"), None)?;
    let config = pki.client_config(Some(&alice), b"http/1.1")?;
    let (status, body) = fetch(server.addr, config, "/whoami").await?;
    assert_eq!(status, 200);
    assert!(body.starts_with("alice|"), "{body}");
    server.stop().await
}

#[tokio::test]
async fn a_client_that_never_speaks_is_cut_at_the_handshake_deadline() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let deadline = Duration::from_millis(300);
    let server =
        start(Server::https("test", pki.server_config()?).handshake_timeout(deadline)).await?;

    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await?;
    let mut buf = [0u8; 64];
    // The server sends nothing before the ClientHello and then closes.
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buf)).await?;
    let elapsed = started.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection should be closed: {read:?}"
    );
    assert!(
        elapsed >= deadline,
        "closed after {elapsed:?}, before the deadline"
    );

    // Meanwhile and afterwards, others are served.
    let config = pki.client_config(None, b"http/1.1")?;
    let (status, _) = fetch(server.addr, config, "/whoami").await?;
    assert_eq!(status, 200);
    server.stop().await
}

#[tokio::test]
async fn websocket_upgrades_work_over_tls() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let server = start(Server::https("test", pki.server_config()?)).await?;
    let config = pki.client_config(None, b"http/1.1")?;
    let tcp = TcpStream::connect(server.addr).await?;
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut ws, response) = tokio_tungstenite::client_async("wss://localhost/echo", tls).await?;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(tokio_tungstenite::tungstenite::Message::text("ping"))
        .await?;
    let echoed = tokio::time::timeout(DEADLINE, ws.next()).await?;
    let echoed = echoed.ok_or_else(|| anyhow::anyhow!("the socket closed"))??;
    assert_eq!(echoed.into_text()?.as_str(), "ping");
    ws.close(None).await?;
    server.stop().await
}

#[tokio::test]
async fn plain_http_serves_everyone_as_anonymous() -> anyhow::Result<()> {
    let server = start(Server::http("health")).await?;
    for h2 in [false, true] {
        let tcp = TcpStream::connect(server.addr).await?;
        let (status, body) = get_on(tcp, h2, "/whoami").await?;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!("{ANONYMOUS_USER}|{UNAUTHENTICATED_GROUP}|127.0.0.1")
        );
    }
    server.stop().await
}

#[tokio::test]
async fn shutdown_lets_requests_finish_and_ends_after_the_grace() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let mut server =
        start(Server::https("test", pki.server_config()?).grace(Duration::from_millis(500)))
            .await?;
    let config = pki.client_config(None, b"h2")?;

    let held = tokio::spawn(fetch(server.addr, config.clone(), "/held"));
    let hang = tokio::spawn(fetch(server.addr, config.clone(), "/hang"));
    let mut arrived = Vec::new();
    for _ in 0..2 {
        let path = tokio::time::timeout(DEADLINE, server.arrived.recv()).await?;
        arrived.extend(path);
    }
    arrived.sort();
    assert_eq!(arrived, ["hang", "held"]);

    server.stop.send(()).ok();
    // Stopped accepting, while the held request is still in flight.
    let deadline = Instant::now() + DEADLINE;
    while fetch(server.addr, config.clone(), "/whoami").await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::task::yield_now().await;
    }
    assert!(!held.is_finished());
    server.release.add_permits(1);
    let (status, body) = held.await??;
    assert_eq!((status, body.as_str()), (200, "released"));

    // The hanging request is cut when the grace period ends.
    tokio::time::timeout(DEADLINE, server.done).await???;
    assert!(hang.await?.is_err());
    Ok(())
}
