//! [`ImageError`]: every way a pull, push, import or store read fails, and
//! the one place where `oci-client`'s errors are mapped onto it.

use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use std::path::PathBuf;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with an image. Each message says what was wrong and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The registry has no such repository, tag or digest (or the file of a
    /// `file://` reference does not exist).
    #[error("image {reference} not found: check the name and tag, or push it first")]
    NotFound { reference: String },
    /// Content did not hash to the digest that names it. Nothing was stored.
    #[error(
        "content does not match its digest: expected {expected}, got {actual}; \
         the registry's copy is damaged or was tampered with, and nothing was stored"
    )]
    DigestMismatch { expected: String, actual: String },
    /// The registry wants credentials, or refused the ones given.
    #[error("{}", unauthorized(registry, *anonymous))]
    Unauthorized { registry: String, anonymous: bool },
    /// The file or image does not hold a Wasm module or component.
    #[error("{what} is not a Wasm module: {reason}")]
    NotWasm { what: String, reason: String },
    /// The registry could not be reached (refused, timed out, TLS failed).
    #[error("cannot reach the registry at {url}: is it running, and does it speak {scheme}?")]
    Unreachable {
        url: String,
        scheme: &'static str,
        #[source]
        source: BoxError,
    },
    /// The registry answered with an error this crate has no better name for.
    #[error("registry {registry} answered with an error: {message}")]
    Registry { registry: String, message: String },
    /// A local file could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The reference (or import name) does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// A module (or the layer holding it) is over `RegistryConfig::max_module_bytes`.
    #[error(
        "{what} is {size} bytes, over the limit of {limit} bytes for a module \
         (RegistryConfig::max_module_bytes)"
    )]
    TooLarge { what: String, size: u64, limit: u64 },
    /// An id prefix names more than one image.
    #[error("{prefix} matches {count} images: give more of the id")]
    Ambiguous { prefix: String, count: usize },
    /// The store's index is not what this crate writes.
    #[error(
        "the image store index {} is damaged ({reason}); move the image store directory aside to start afresh",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
}

fn unauthorized(registry: &str, anonymous: bool) -> String {
    if anonymous {
        format!("registry {registry} requires credentials: give a username and password")
    } else {
        format!(
            "registry {registry} refused the credentials given: check the username and password"
        )
    }
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn not_wasm(what: impl Into<String>, reason: impl Into<String>) -> ImageError {
        ImageError::NotWasm {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Where an `oci-client` call went, to name it in errors.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// `host:port`, as the client resolved it.
    pub registry: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The reference the operation was for, normalised.
    pub reference: String,
    pub anonymous: bool,
}

impl Remote {
    pub(crate) fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.registry)
    }

    /// Maps an `oci-client` error onto [`ImageError`].
    pub(crate) fn error(&self, err: OciDistributionError) -> ImageError {
        match err {
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => ImageError::DigestMismatch { expected, actual },
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.unauthorized(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    self.not_found()
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    self.unauthorized()
                } else {
                    let message = envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    self.registry(message)
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                401 | 403 => self.unauthorized(),
                404 => self.not_found(),
                _ => self.registry(format!("HTTP {code}: {}", message.trim())),
            },
            OciDistributionError::RequestError(source) => ImageError::Unreachable {
                url: self.url(),
                scheme: self.scheme,
                source: Box::new(source),
            },
            OciDistributionError::IoError(source) => self.stream_error(source),
            other => self.registry(other.to_string()),
        }
    }

    /// Maps an error from a blob stream: `oci-client` reports a digest
    /// mismatch at the end of the stream as an I/O error wrapping it.
    pub(crate) fn stream_error(&self, err: std::io::Error) -> ImageError {
        if let Some(DigestError::VerificationError { expected, actual }) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<DigestError>())
        {
            return ImageError::DigestMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        ImageError::Unreachable {
            url: self.url(),
            scheme: self.scheme,
            source: Box::new(err),
        }
    }

    pub(crate) fn unauthorized(&self) -> ImageError {
        ImageError::Unauthorized {
            registry: self.registry.clone(),
            anonymous: self.anonymous,
        }
    }

    pub(crate) fn not_found(&self) -> ImageError {
        ImageError::NotFound {
            reference: self.reference.clone(),
        }
    }

    pub(crate) fn registry(&self, message: String) -> ImageError {
        ImageError::Registry {
            registry: self.registry.clone(),
            message,
        }
    }
}
