//! [`CriError`]: every way a CRI call fails, and the one place where it
//! becomes a gRPC status (`From<CriError> for tonic::Status`).

use std::path::PathBuf;

use images::ImageError;
use tonic::Code;
use wasi_shim::ShimError;

/// Why a CRI call failed. Each message says what was wrong and, where there
/// is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CriError {
    /// A pod sandbox, container or image the call names is not there.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// `pod sandbox`, `container`, ...
        what: &'static str,
        /// The id or reference asked for.
        id: String,
    },
    /// The request itself is wrong (a missing field, a bad mount, a bad annotation).
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is fine but the object is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// An object with the same identity exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// Out of something: pod IPs, for example.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A deadline the caller set passed (ExecSync's timeout).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// An RPC this runtime does not serve.
    #[error("{0}")]
    Unimplemented(String),
    /// The socket is served by another live server.
    #[error("another CRI server is answering on {}: stop it or pick another --socket", socket.display())]
    SocketInUse {
        /// The socket path.
        socket: PathBuf,
    },
    /// An image store operation failed.
    #[error("image store")]
    Image(#[from] ImageError),
    /// The Wasm engine refused a guest.
    #[error("Wasm engine")]
    Shim(#[from] ShimError),
    /// CreateContainer names an image that is not in the store.
    #[error(
        "image {image:?} is not in this node's image store: pull it first (PullImage), \
         or import it with `shoal image import`"
    )]
    ImageNotPulled {
        /// The image asked for.
        image: String,
    },
    /// An image's module cannot be compiled or loaded.
    #[error("the module of image {image:?} cannot be loaded")]
    Module {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: ShimError,
    },
    /// A file operation of the runtime failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done (`write`, `create`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A pod sandbox's host port cannot be bound.
    #[error("cannot serve host port {addr}/TCP: {hint}")]
    HostPort {
        /// The host address and port asked for.
        addr: std::net::SocketAddr,
        /// What to do about it.
        hint: &'static str,
        /// Why the bind failed.
        #[source]
        source: std::io::Error,
    },
    /// A GetContainerEvents stream fell behind and events were dropped: the
    /// client must list again (the kubelet falls back to relisting).
    #[error(
        "this container event stream fell behind and {missed} events were dropped: \
         list the containers again and open a new stream"
    )]
    EventsLost {
        /// How many events were dropped.
        missed: u64,
    },
    /// Serving gRPC failed.
    #[error("gRPC transport")]
    Transport(#[from] tonic::transport::Error),
}

impl CriError {
    pub(crate) fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        CriError::NotFound {
            what,
            id: id.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> CriError {
        let path = path.into();
        move |source| CriError::Io {
            action,
            path,
            source,
        }
    }

    /// The gRPC code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            CriError::NotFound { .. } => Code::NotFound,
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::ResourceExhausted(_) => Code::ResourceExhausted,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::Unimplemented(_) => Code::Unimplemented,
            CriError::SocketInUse { .. } => Code::AlreadyExists,
            CriError::HostPort { .. } => Code::FailedPrecondition,
            CriError::EventsLost { .. } => Code::Aborted,
            CriError::Image(e) => image_code(e),
            CriError::ImageNotPulled { .. } => Code::NotFound,
            CriError::Shim(e) | CriError::Module { source: e, .. } => match e {
                ShimError::InvalidModule { .. } => Code::InvalidArgument,
                ShimError::Instantiation { .. }
                | ShimError::Preopen { .. }
                | ShimError::NoHttpListen
                | ShimError::Listen { .. } => Code::FailedPrecondition,
                ShimError::ReadModule { .. } => Code::NotFound,
                _ => Code::Internal,
            },
            CriError::Io { .. } | CriError::Transport(_) => Code::Internal,
        }
    }
}

fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::NotFound { .. } => Code::NotFound,
        ImageError::InvalidReference { .. } | ImageError::NotWasm { .. } => Code::InvalidArgument,
        ImageError::Ambiguous { .. } => Code::InvalidArgument,
        ImageError::DigestMismatch { .. } | ImageError::Corrupt { .. } => Code::DataLoss,
        ImageError::Unauthorized { .. } => Code::PermissionDenied,
        ImageError::Unreachable { .. } | ImageError::Registry { .. } => Code::Unavailable,
        ImageError::TooLarge { .. } => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

/// An error and its sources on one line, `a: b: c`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl From<CriError> for tonic::Status {
    fn from(e: CriError) -> Self {
        tonic::Status::new(e.code(), chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: CriError) -> tonic::Status {
        e.into()
    }

    #[test]
    fn every_kind_maps_to_its_code() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let cases: Vec<(CriError, Code)> = vec![
            (CriError::not_found("container", "abc"), Code::NotFound),
            (CriError::InvalidArgument("x".into()), Code::InvalidArgument),
            (
                CriError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (CriError::AlreadyExists("x".into()), Code::AlreadyExists),
            (
                CriError::ResourceExhausted("x".into()),
                Code::ResourceExhausted,
            ),
            (
                CriError::DeadlineExceeded("x".into()),
                Code::DeadlineExceeded,
            ),
            (CriError::Unimplemented("x".into()), Code::Unimplemented),
            (CriError::EventsLost { missed: 3 }, Code::Aborted),
            (
                CriError::SocketInUse {
                    socket: "/s".into(),
                },
                Code::AlreadyExists,
            ),
            (
                CriError::Image(ImageError::NotFound {
                    reference: "r".into(),
                }),
                Code::NotFound,
            ),
            (
                CriError::Image(ImageError::InvalidReference {
                    reference: "r".into(),
                    reason: "bad".into(),
                }),
                Code::InvalidArgument,
            ),
            (
                CriError::Image(ImageError::DigestMismatch {
                    expected: "a".into(),
                    actual: "b".into(),
                }),
                Code::DataLoss,
            ),
            (
                CriError::Image(ImageError::Unauthorized {
                    registry: "r".into(),
                    anonymous: true,
                }),
                Code::PermissionDenied,
            ),
            (
                CriError::Image(ImageError::Registry {
                    registry: "r".into(),
                    message: "m".into(),
                }),
                Code::Unavailable,
            ),
            (
                CriError::Shim(ShimError::InvalidModule {
                    message: "bad magic".into(),
                }),
                Code::InvalidArgument,
            ),
            (
                CriError::Shim(ShimError::Instantiation {
                    message: "no _start".into(),
                }),
                Code::FailedPrecondition,
            ),
            (
                CriError::HostPort {
                    addr: "127.0.0.1:8080".parse().unwrap(),
                    hint: "free it",
                    source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
                },
                Code::FailedPrecondition,
            ),
            (
                CriError::Io {
                    action: "write",
                    path: "/x".into(),
                    source: io(),
                },
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let text = chain(&err);
            let s = status(err);
            assert_eq!(s.code(), code, "{text}");
            assert_eq!(s.message(), text);
        }
    }

    #[test]
    fn the_status_message_carries_the_sources() {
        let e = CriError::Io {
            action: "open",
            path: "/var/log/x.log".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(e.to_string(), "cannot open /var/log/x.log");
        assert_eq!(status(e).message(), "cannot open /var/log/x.log: gone");
        let e = CriError::Shim(ShimError::InvalidModule {
            message: "no \\0asm magic".into(),
        });
        assert_eq!(
            status(e).message(),
            "Wasm engine: invalid Wasm module: no \\0asm magic"
        );
    }
}
