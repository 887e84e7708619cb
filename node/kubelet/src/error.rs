//! [`KubeletError`]: what can go wrong, by where it went wrong. Errors that
//! end up in a pod's status or an Event are shown with [`chain`].

use std::path::PathBuf;

/// A kubelet error.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// A CRI call answered with an error status.
    #[error("CRI {call} failed ({code:?}): {message}")]
    Cri {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// An apiserver request failed.
    #[error("cannot {action}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The kubeconfig cannot be read or used.
    #[error("cannot use the kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client cannot be built from the kubeconfig.
    #[error("cannot build an apiserver client from {path}")]
    Client {
        path: PathBuf,
        #[source]
        source: kube::Error,
    },
    /// A file system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A pod's volumes cannot be set up.
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    /// A container's environment cannot be worked out.
    #[error(transparent)]
    Env(#[from] crate::env::EnvError),
    /// The configuration is not usable.
    #[error("invalid kubelet configuration: {0}")]
    Config(String),
    /// The kubelet API cannot be served.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
}

impl KubeletError {
    /// An `Io` error maker for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> KubeletError {
        let path = path.into();
        move |source| KubeletError::Io {
            action,
            path,
            source,
        }
    }

    /// An `Api` error maker for `map_err`.
    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeletError {
        let action = action.into();
        move |source| KubeletError::Api { action, source }
    }

    /// Whether this is the apiserver saying the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeletError::Api { source, .. } if is_status(source, 404))
            || matches!(
                self,
                KubeletError::Cri {
                    code: tonic::Code::NotFound,
                    ..
                }
            )
    }
}

/// Whether a kube error is an API status with this HTTP code.
pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// An error and its sources, joined with `: `, for Events and statuses.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
