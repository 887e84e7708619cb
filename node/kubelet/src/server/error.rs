//! [`ServerError`]: why the kubelet API cannot start; [`Reply`]: a request
//! that fails, answered as the kubelet does, with a status code and a
//! plain-text message (the apiserver passes the message on to the client).

use std::net::SocketAddr;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::{KubeletError, chain};

/// Why the kubelet API cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} for the kubelet API")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the kubelet API's {what} is not usable PEM")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the kubelet API's {what} holds no certificate")]
    NoCertificate { what: &'static str },
    #[error("the kubelet API's client CA is not usable")]
    ClientCa(#[source] rustls::server::VerifierBuilderError),
    #[error("the kubelet API's TLS configuration is not usable")]
    Tls(#[source] rustls::Error),
}

/// A failed request: the status and what to tell the caller.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub message: String,
}

impl Reply {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Reply {
        Reply::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Reply {
        Reply::new(StatusCode::BAD_REQUEST, message)
    }

    /// The runtime failed a call: 404 for what it does not hold, else 500.
    pub fn runtime(e: KubeletError) -> Reply {
        let status = if e.is_not_found() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Reply::new(status, chain(&e))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut message = self.message;
        message.push('\n');
        (
            self.status,
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response()
    }
}
