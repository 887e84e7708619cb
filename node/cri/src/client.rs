//! CRI clients, for the kubelet, tests and benchmarks: the runtime and image
//! service clients over a [`Transport`], which is either the unix socket
//! ([`connect`], [`connect_lazy`]: gRPC over HTTP/2) or the runtime's own
//! services in the same process ([`CriServer::in_process`]).
//!
//! In process, a call is the same gRPC call (the request and answer are
//! encoded and decoded, the service code and its errors are the same), made
//! in the caller's task: no socket, no HTTP/2 framing and no hop to another
//! task or thread. `shoal node` runs its kubelet that way; `shoal kubelet`
//! talks to `shoal cri` over the socket.
//!
//! [`CriServer::in_process`]: crate::CriServer::in_process

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

/// How CRI calls reach the runtime: a boxed gRPC service, the socket's
/// channel or the runtime's services in process.
pub type Transport = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;
/// The runtime service client.
pub type RuntimeClient = RuntimeServiceClient<Transport>;
/// The image service client.
pub type ImageClient = ImageServiceClient<Transport>;

/// A transport's failure under a call (dialling the socket, a lost
/// connection), shown as the underlying error. A type of its own rather
/// than a boxed error: tonic's clients need `Into<StdError>` of it, which a
/// plain type meets for every lifetime, so calls stay usable in spawned
/// tasks.
#[derive(Debug)]
pub struct TransportError(tonic::codegen::StdError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// How long dialling the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the CRI server at `socket`.
pub async fn connect(
    socket: impl AsRef<Path>,
) -> Result<(RuntimeClient, ImageClient), tonic::transport::Error> {
    let channel = endpoint()
        .connect_with_connector(Dialer(socket.as_ref().to_owned()))
        .await?;
    Ok(clients(socket_transport(channel)))
}

/// Clients for the CRI server at `socket` that dial it at the first call
/// and again, by themselves, after the connection is lost (a runtime
/// restarted under a running kubelet).
pub fn connect_lazy(socket: impl AsRef<Path>) -> (RuntimeClient, ImageClient) {
    let channel = endpoint().connect_with_connector_lazy(Dialer(socket.as_ref().to_owned()));
    clients(socket_transport(channel))
}

/// The runtime and image clients over one transport.
fn clients(transport: Transport) -> (RuntimeClient, ImageClient) {
    (
        RuntimeServiceClient::new(transport.clone()),
        ImageServiceClient::new(transport),
    )
}

/// The socket channel as a [`Transport`].
fn socket_transport(channel: Channel) -> Transport {
    BoxCloneSyncService::new(channel.map_err(|e| TransportError(e.into())))
}

/// The endpoint every socket client uses (the URI is a placeholder: every
/// connection goes to the socket).
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://[::1]:50051").connect_timeout(CONNECT_TIMEOUT)
}

/// Dials the unix socket at its path (whatever the URI).
#[derive(Clone, Debug)]
struct Dialer(PathBuf);

impl tower::Service<Uri> for Dialer {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let socket = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(socket).await?)) })
    }
}
