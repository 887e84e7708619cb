//! Outgoing `wasi:http` under the sandbox's network grants: every request a
//! guest sends passes [`Outgoing::send_request`], which lets it through only
//! to an address a connect grant allows and refuses everything else: the
//! guest gets `destination-IP-prohibited` for an address that is not granted,
//! and a `DNS-error` saying so when it names a host but name lookup is not
//! granted. This hook is also the seam where a virtual pod network will route
//! Service addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::sandbox::{NetGrant, Sandbox};

/// The hooks of one guest store.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    grants: Arc<[NetGrant]>,
    name_lookup: bool,
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl Outgoing {
    pub(crate) fn new(sandbox: &Sandbox) -> Self {
        Self {
            grants: sandbox
                .network
                .iter()
                .copied()
                .filter(NetGrant::is_connect)
                .collect(),
            name_lookup: sandbox.name_lookup,
        }
    }

    fn granted(&self, addr: SocketAddr) -> bool {
        self.grants.iter().any(|g| g.allows_connect(addr))
    }

    /// Checks the request's destination; a plain-HTTP request to a name is
    /// pinned to the granted address it resolved to, so that the connection
    /// goes where the check looked.
    async fn check(
        &self,
        mut request: http::Request<WasiBody>,
    ) -> Result<http::Request<WasiBody>, Error> {
        let uri = request.uri().clone();
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            let addr = SocketAddr::new(ip, port);
            if self.granted(addr) {
                return Ok(request);
            }
            tracing::info!(%addr, "outgoing HTTP refused: the address is not granted");
            return Err(Error::DestinationIpProhibited);
        }
        if !self.name_lookup {
            tracing::info!(host, "outgoing HTTP refused: name lookup is not granted");
            return Err(Error::DnsError {
                rcode: Some(format!("name lookup is not granted (resolving {host})")),
                info_code: None,
            });
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })?
            .collect();
        if https {
            // TLS needs the name in the URI (SNI, certificate check), so the
            // connection resolves again: allow it only if every address the
            // name has is granted.
            if !addrs.is_empty() && addrs.iter().all(|a| self.granted(*a)) {
                return Ok(request);
            }
        } else if let Some(addr) = addrs.iter().copied().find(|a| self.granted(*a)) {
            // The Host header already holds the name.
            let mut parts = uri.into_parts();
            parts.authority = Some(
                Authority::try_from(addr.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?,
            );
            *request.uri_mut() =
                http::Uri::from_parts(parts).map_err(|_| Error::HttpRequestUriInvalid)?;
            return Ok(request);
        }
        tracing::info!(host, ?addrs, "outgoing HTTP refused: no granted address");
        Err(Error::DestinationIpProhibited)
    }
}

impl WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let policy = self.clone();
        Box::new(async move {
            let request = policy.check(request).await?;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}
