//! A CRI client over the unix socket, for the kubelet, tests and
//! benchmarks: [`connect`] gives the runtime and image service clients on
//! one HTTP/2 connection.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The runtime service client.
pub type RuntimeClient = RuntimeServiceClient<Channel>;
/// The image service client.
pub type ImageClient = ImageServiceClient<Channel>;

/// Connects to the CRI server at `socket`.
pub async fn connect(
    socket: impl AsRef<Path>,
) -> Result<(RuntimeClient, ImageClient), tonic::transport::Error> {
    let channel = channel(socket).await?;
    Ok((
        RuntimeServiceClient::new(channel.clone()),
        ImageServiceClient::new(channel),
    ))
}

/// A channel to the CRI server at `socket` (the URI is a placeholder: every
/// connection goes to the socket).
pub async fn channel(socket: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
    let socket: PathBuf = socket.as_ref().to_owned();
    Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
}
