//! [`CriServer`]: the unix socket and the gRPC server on it.
//!
//! The socket is created with mode 0600 under a temporary name and renamed
//! into place, so it is never reachable with wider permissions. A stale
//! socket file (nothing answers on it) is removed; a live one is refused,
//! and so is a data directory another `shoal cri` holds (an advisory lock on
//! `DATA_DIR/cri/lock`). On shutdown the server stops accepting, lets the
//! calls in flight finish (for at most [`DRAIN_TIMEOUT`]; the container
//! event streams end at once), stops every
//! container (terminate with [`SHUTDOWN_GRACE`], then kill) and removes the
//! socket.
//!
//! Beside the socket it binds the streaming server (`streaming`) on
//! [`Config::stream_address`](crate::Config::stream_address), which serves
//! the URLs Exec answers and ends, its commands killed, when the calls in
//! flight have drained.

use std::fs;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tracing::Instrument;

use crate::Config;
use crate::client::{ImageClient, RuntimeClient, Transport};
use crate::error::CriError;
use crate::runtime::Runtime;
use crate::service::{ImageApi, RuntimeApi};
use crate::streaming::{self, Streams};

/// How long the calls in flight may take to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The grace period of the containers stopped at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The longest unix socket path Linux accepts (`sun_path` holds 108 bytes
/// with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A CRI server bound to its socket, ready to serve.
#[derive(Debug)]
pub struct CriServer {
    rt: Arc<Runtime>,
    listener: UnixListener,
    socket: PathBuf,
    stream_listener: tokio::net::TcpListener,
    streams: Arc<Streams>,
    /// The socket file's inode, to remove only our own socket at the end.
    inode: u64,
    /// Held for the life of the server.
    _lock: fs::File,
}

impl CriServer {
    /// Takes the data directory (`DATA_DIR/cri/lock`), opens the image store
    /// and the engine, takes back the records of an earlier run, and binds
    /// the socket.
    pub async fn build(config: Config) -> Result<Self, CriError> {
        let socket = config.socket.clone();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(CriError::InvalidArgument(format!(
                "the socket path {} is {} bytes, over the {MAX_SOCKET_PATH} a unix socket allows: pick a shorter --socket",
                socket.display(),
                socket.as_os_str().len()
            )));
        }
        // The records hold the containers' environments (which may come
        // from Secrets): the directory is the runtime's alone.
        let cri_dir = config.data_dir.join("cri");
        fs::create_dir_all(&cri_dir).map_err(CriError::io("create", &cri_dir))?;
        fs::set_permissions(&cri_dir, fs::Permissions::from_mode(0o700))
            .map_err(CriError::io("restrict", &cri_dir))?;
        let lock_path = cri_dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(CriError::io("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(CriError::FailedPrecondition(format!(
                    "another shoal cri is using the data directory {} (it holds {}): stop it or pick another --data-dir",
                    config.data_dir.display(),
                    lock_path.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(CriError::io("lock", &lock_path)(e)),
        }
        check_socket(&socket).await?;
        let stream_listener = streaming::bind(config.stream_address).await?;
        let stream_addr = stream_listener.local_addr().map_err(CriError::io(
            "read the address of",
            config.stream_address.to_string(),
        ))?;
        let streams = Arc::new(Streams::new(stream_addr));
        let rt = Runtime::new(config)?;
        let (listener, inode) = bind(&socket)?;
        tracing::info!(socket = %socket.display(), streaming = %stream_addr, "CRI socket bound");
        Ok(Self {
            rt,
            listener,
            socket,
            stream_listener,
            streams,
            inode,
            _lock: lock,
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Clients that call this runtime's services in the caller's task, with
    /// no socket: the same gRPC calls, encoded and decoded, with the same
    /// spans and errors (see `client`). They hold the runtime, not the
    /// server: calls made in process are not part of the shutdown's drain,
    /// so their caller stops before [`serve`](Self::serve) ends (as `shoal
    /// node` stops its kubelet before its runtime).
    pub fn in_process(&self) -> (RuntimeClient, ImageClient) {
        let rt = RuntimeServiceServer::new(RuntimeApi(self.rt.clone(), self.streams.clone()));
        let img = ImageServiceServer::new(ImageApi(self.rt.clone()));
        (
            RuntimeServiceClient::new(boxed(rt)),
            ImageServiceClient::new(boxed(img)),
        )
    }

    /// The streaming server's address (port 0 resolved).
    pub fn stream_address(&self) -> SocketAddr {
        self.streams.addr()
    }

    /// Serves until `shutdown` resolves, then drains, stops every container
    /// and removes the socket.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CriError> {
        let CriServer {
            rt,
            listener,
            socket,
            stream_listener,
            streams,
            inode,
            _lock,
        } = self;
        let stream_server = tokio::spawn(
            streaming::serve(stream_listener, rt.clone(), streams.clone())
                .instrument(tracing::info_span!("cri_streaming")),
        );
        let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
        let events = rt.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new calls; draining the calls in flight");
            // Event streams never end by themselves: end them, so the drain
            // does not wait for them.
            events.events.close();
            let _ = signalled_tx.send(());
        };
        let server = tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(RuntimeApi(
                rt.clone(),
                streams.clone(),
            )))
            .add_service(ImageServiceServer::new(ImageApi(rt.clone())))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal);
        let result = tokio::select! {
            r = server => r.map_err(CriError::from),
            () = async {
                if signalled.await.is_ok() {
                    tokio::time::sleep(DRAIN_TIMEOUT).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(timeout = ?DRAIN_TIMEOUT, "calls still in flight after the drain timeout: closing them");
                Ok(())
            }
        };
        streams.shutdown();
        let _ = stream_server.await;
        rt.shutdown(SHUTDOWN_GRACE).await;
        if fs::metadata(&socket).is_ok_and(|m| m.ino() == inode) {
            let _ = fs::remove_file(&socket);
        }
        tracing::info!("CRI server stopped");
        result
    }
}

/// A service of this crate as a client [`Transport`].
fn boxed<S>(service: S) -> Transport
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Transport::new(tower::ServiceExt::map_err(service, |e| match e {}))
}

/// Clears the way for the socket: nothing there, or a stale socket file
/// (removed). A live server or a file that is not a socket is an error.
async fn check_socket(path: &Path) -> Result<(), CriError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CriError::io("inspect", path)(e)),
        Ok(m) if !m.file_type().is_socket() => Err(CriError::FailedPrecondition(format!(
            "{} exists and is not a socket: move it away or pick another --socket",
            path.display()
        ))),
        Ok(_) => match UnixStream::connect(path).await {
            Ok(_) => Err(CriError::SocketInUse {
                socket: path.to_owned(),
            }),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale socket");
                fs::remove_file(path).map_err(CriError::io("remove the stale socket", path))
            }
        },
    }
}

/// Binds under a temporary name, sets mode 0600, renames into place.
fn bind(path: &Path) -> Result<(UnixListener, u64), CriError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(CriError::io("create", dir))?;
    let tmp = dir.join(format!(".cri-{}.sock", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener =
        std::os::unix::net::UnixListener::bind(&tmp).map_err(CriError::io("bind", &tmp))?;
    let done = (|| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        listener.set_nonblocking(true)?;
        fs::metadata(path).map(|m| m.ino())
    })();
    let inode = match done {
        Ok(i) => i,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(CriError::io("create the socket", path)(e));
        }
    };
    let listener = UnixListener::from_std(listener).map_err(CriError::io("listen on", path))?;
    Ok((listener, inode))
}
