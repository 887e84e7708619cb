//! Nodes joining the cluster with a token, as k3s does it.
//!
//! [`ApiServer::build`](crate::ApiServer::build) keeps a node token in
//! `DATA_DIR/node-token` (mode 0600, made once):
//! `K10<sha256 hex of the CA certificate DER>::node:<secret>`. Two paths are
//! served without authentication:
//!
//! - `GET /cacerts`: the cluster CA, PEM. A node fetches it without
//!   verification and checks it against the hash in its token.
//! - `POST /v1-shoal/join` with `{"nodeName", "addresses"}`: answers the CA,
//!   a client certificate for `system:node:NAME` (`system:nodes`) and a
//!   serving certificate for the node's addresses and name. Allowed with
//!   `Authorization: Bearer TOKEN` (the whole token or its secret), compared
//!   in constant time; or for a client certificate in `system:masters`; or
//!   for the node `system:node:NAME` itself (renewal).

use crate::pki::{self, ADMIN_GROUP, NODE_USER_PREFIX, NODES_GROUP, Pki, PkiError};
use crate::request::read_body;
use crate::rest::json_response;
use crate::status::ApiError;
use crate::tls::Identity;
use crate::validation::dns_subdomain_problem;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;
use tracing::Instrument;

/// The token file under the data directory.
pub const TOKEN_FILE: &str = "node-token";
/// Where the CA certificate is served, unauthenticated.
pub const CACERTS_PATH: &str = "/cacerts";
/// Where nodes ask for their certificates.
pub const JOIN_PATH: &str = "/v1-shoal/join";

const TOKEN_PREFIX: &str = "K10";
const TOKEN_USER: &str = "::node:";
const SECRET_BYTES: usize = 32;
const MAX_ADDRESSES: usize = 16;
/// What a node token looks like, for error messages.
pub const TOKEN_FORMAT: &str = "K10<sha256 hex of the cluster CA>::node:<secret>";

/// A node join token: the hash that pins the cluster CA, and the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeToken {
    ca_hash: String,
    secret: String,
}

impl fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for NodeToken {
    /// The whole token, secret included: for the token file only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}{}{TOKEN_USER}{}",
            self.ca_hash, self.secret
        )
    }
}

/// Why a token could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a node token must look like {TOKEN_FORMAT}: it does not start with K10")]
    Prefix,
    #[error("a node token must look like {TOKEN_FORMAT}: it has no \"::node:\" part")]
    NoSecret,
    #[error("a node token must look like {TOKEN_FORMAT}: the CA hash is not 64 hex digits")]
    Hash,
    #[error("a node token must look like {TOKEN_FORMAT}: the secret is empty or not printable")]
    Secret,
}

impl NodeToken {
    /// A new token for the CA whose DER is `ca_der`, with a random secret.
    pub fn generate(ca_der: &[u8]) -> Result<NodeToken, JoinError> {
        let mut secret = [0u8; SECRET_BYTES];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut secret)
            .map_err(|_| JoinError::Random)?;
        Ok(NodeToken {
            ca_hash: ca_hash(ca_der),
            secret: hex(&secret),
        })
    }

    /// Reads `K10<hash>::node:<secret>`.
    pub fn parse(text: &str) -> Result<NodeToken, TokenError> {
        let rest = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::Prefix)?;
        let (hash, secret) = rest.split_once(TOKEN_USER).ok_or(TokenError::NoSecret)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Hash);
        }
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Secret);
        }
        Ok(NodeToken {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }

    /// The sha256 hex of the CA certificate this token pins.
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// Whether `ca_der` is the CA this token pins.
    pub fn pins(&self, ca_der: &[u8]) -> bool {
        ca_hash(ca_der) == self.ca_hash
    }

    /// The secret part, for `Authorization: Bearer`.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is this token, whole or its secret part, in
    /// constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        let whole = self.to_string();
        let as_whole = presented.as_bytes().ct_eq(whole.as_bytes());
        let as_secret = presented.as_bytes().ct_eq(self.secret.as_bytes());
        bool::from(as_whole | as_secret)
    }

    /// Loads `DATA_DIR/node-token`, or makes it (mode 0600) for this CA.
    /// A token pinning another CA is an error naming the file.
    pub fn load_or_create(data_dir: &Path, ca_der: &[u8]) -> Result<NodeToken, JoinError> {
        let path = data_dir.join(TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let token = NodeToken::parse(&text).map_err(|source| JoinError::BadToken {
                    path: path.clone(),
                    source,
                })?;
                if !token.pins(ca_der) {
                    return Err(JoinError::OtherCa { path });
                }
                Ok(token)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let token = NodeToken::generate(ca_der)?;
                pki::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
                tracing::info!(file = %path.display(), "created the node token");
                Ok(token)
            }
            Err(source) => Err(JoinError::Read { path, source }),
        }
    }
}

/// Why the node token could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} holds no usable node token; delete it to have a new one made", path.display())]
    BadToken {
        path: PathBuf,
        #[source]
        source: TokenError,
    },
    #[error(
        "{} pins another cluster CA; delete it to have a new one made (nodes then need the new token)",
        path.display()
    )]
    OtherCa { path: PathBuf },
    #[error("cannot get random bytes for the node token")]
    Random,
    #[error("cannot write the node token")]
    Write(#[from] PkiError),
}

/// The sha256 of a certificate's DER, lowercase hex.
pub fn ca_hash(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// The DER of the first certificate in `pem`, if there is one.
pub fn cert_der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The body of `POST /v1-shoal/join`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// The answer to a join: everything PEM.
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
}

impl fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinResponse").finish_non_exhaustive()
    }
}

/// What the apiserver needs to let nodes join.
pub struct Joiner {
    pub(crate) pki: Pki,
    token: NodeToken,
}

impl fmt::Debug for Joiner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Joiner").finish_non_exhaustive()
    }
}

impl Joiner {
    pub fn new(pki: Pki, token: NodeToken) -> Joiner {
        Joiner { pki, token }
    }
}

/// Who a join was allowed for, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The node token, as a bearer token.
    Token,
    /// A client certificate in `system:masters`.
    Admin(String),
    /// The node's own client certificate.
    Node(String),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Token => f.write_str("node-token"),
            Caller::Admin(user) | Caller::Node(user) => f.write_str(user),
        }
    }
}

/// Decides whether a join for `node` is allowed: a bearer token must be the
/// node token (a wrong one is refused whatever the certificate); without one,
/// the certificate must be in `system:masters`, or be the node itself.
pub fn authorize(
    token: &NodeToken,
    headers: &HeaderMap,
    identity: Option<&Identity>,
    node: &str,
) -> Result<Caller, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        return if token.accepts(presented) {
            Ok(Caller::Token)
        } else {
            Err(ApiError::unauthorized())
        };
    }
    let Some(id) = identity.filter(|id| !id.is_anonymous()) else {
        return Err(ApiError::unauthorized());
    };
    if id.groups.iter().any(|g| g == ADMIN_GROUP) {
        return Ok(Caller::Admin(id.user.clone()));
    }
    if id.groups.iter().any(|g| g == NODES_GROUP)
        && id.user.strip_prefix(NODE_USER_PREFIX) == Some(node)
    {
        return Ok(Caller::Node(id.user.clone()));
    }
    Err(ApiError::forbidden(format!(
        "user {:?} cannot join nodes: use the node token, or a certificate in {ADMIN_GROUP}",
        id.user
    )))
}

/// Checks a join request: the name a DNS-1123 subdomain, every address an IP.
pub fn validate(req: &JoinRequest) -> Result<Vec<IpAddr>, ApiError> {
    if req.node_name.is_empty() {
        return Err(ApiError::bad_request("nodeName is required"));
    }
    if let Some(problem) = dns_subdomain_problem(&req.node_name) {
        return Err(ApiError::bad_request(format!(
            "nodeName {:?} is invalid: {problem}",
            req.node_name
        )));
    }
    if req.addresses.len() > MAX_ADDRESSES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ADDRESSES} addresses may be given"
        )));
    }
    req.addresses
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|_| ApiError::bad_request(format!("address {a:?} is not an IP address")))
        })
        .collect()
}

/// `GET /cacerts`.
pub async fn cacerts(joiner: &Joiner) -> Response {
    let mut resp = joiner.pki.ca_pem().to_string().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    resp
}

/// `POST /v1-shoal/join`.
pub async fn join(joiner: &Joiner, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let identity = parts.extensions.get::<Identity>();
    let result = async {
        // A bearer token, or no credentials at all, is judged before the body is read.
        if parts.headers.contains_key(header::AUTHORIZATION)
            || identity.is_none_or(Identity::is_anonymous)
        {
            authorize(&joiner.token, &parts.headers, identity, "")?;
        }
        let request = parse_request(body).await?;
        let caller = authorize(&joiner.token, &parts.headers, identity, &request.node_name)?;
        let addresses = validate(&request)?;
        let span = tracing::info_span!("join", node = %request.node_name, by = %caller);
        async {
            let certs = joiner.pki.issue_node(&request.node_name, &addresses)?;
            tracing::info!(?addresses, "issued node certificates");
            Ok::<_, PkiError>(JoinResponse {
                ca_pem: joiner.pki.ca_pem().to_string(),
                client_cert_pem: certs.client_cert_pem,
                client_key_pem: certs.client_key_pem,
                serving_cert_pem: certs.serving_cert_pem,
                serving_key_pem: certs.serving_key_pem,
            })
        }
        .instrument(span)
        .await
        .map_err(|e| ApiError::internal(format!("cannot issue the node certificates: {e}")))
    }
    .await;
    match result {
        Ok(answer) => match serde_json::to_value(&answer) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => ApiError::internal(e.to_string()).into_response(),
        },
        Err(e) => {
            if e.code == 401 || e.code == 403 {
                tracing::info!(code = e.code, "join refused");
            }
            e.into_response()
        }
    }
}

async fn parse_request(body: Body) -> Result<JoinRequest, ApiError> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the join request must be JSON {{\"nodeName\": NAME, \"addresses\": [IP, ...]}}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{AUTHENTICATED_GROUP, Identity};

    fn token() -> NodeToken {
        NodeToken::generate(b"a CA").unwrap()
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn id(user: &str, groups: &[&str]) -> Identity {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push(AUTHENTICATED_GROUP.into());
        Identity {
            user: user.into(),
            groups,
        }
    }

    #[test]
    fn tokens_round_trip_and_pin_their_ca() {
        let t = token();
        let text = t.to_string();
        assert!(text.starts_with("K10"), "{text}");
        assert_eq!(t.secret().len(), 64);
        assert_eq!(NodeToken::parse(&format!("  {text}\n")).unwrap(), t);
        assert!(t.pins(b"a CA"));
        assert!(!t.pins(b"another CA"));
        assert_eq!(t.ca_hash(), ca_hash(b"a CA"));
        assert!(cert_der("not PEM").is_none());
        assert_ne!(token().secret(), t.secret(), "secrets are random");
        assert!(
            !format!("{t:?}").contains(t.secret()),
            "Debug hides the secret"
        );
    }

    #[test]
    fn malformed_tokens_say_what_a_token_looks_like() {
        let hash = "ab".repeat(32);
        for (text, want) in [
            ("", TokenError::Prefix),
            ("K20abc::node:x", TokenError::Prefix),
            (&format!("K10{hash}:node:x") as &str, TokenError::NoSecret),
            ("K10abc::node:x", TokenError::Hash),
            (&format!("K10{}::node:x", "zz".repeat(32)), TokenError::Hash),
            (&format!("K10{hash}::node:"), TokenError::Secret),
            (&format!("K10{hash}::node:a b"), TokenError::Secret),
        ] {
            let err = NodeToken::parse(text).unwrap_err();
            assert_eq!(err, want, "{text:?}");
            assert!(err.to_string().contains(TOKEN_FORMAT), "{err}");
        }
    }

    #[test]
    fn the_token_file_is_made_once_and_kept() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let first = NodeToken::load_or_create(dir.path(), b"ca")?;
        let path = dir.path().join(TOKEN_FILE);
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        let second = NodeToken::load_or_create(dir.path(), b"ca")?;
        assert_eq!(first, second);
        let err = NodeToken::load_or_create(dir.path(), b"another ca").unwrap_err();
        assert!(matches!(err, JoinError::OtherCa { .. }), "{err:?}");
        std::fs::write(&path, "garbage")?;
        let err = NodeToken::load_or_create(dir.path(), b"ca").unwrap_err();
        assert!(err.to_string().contains("node-token"), "{err}");
        Ok(())
    }

    #[test]
    fn joins_are_allowed_by_token_admin_or_the_node_itself() {
        let t = token();
        let none = HeaderMap::new();
        let whole = format!("Bearer {t}");
        let secret = format!("Bearer {}", t.secret());
        assert_eq!(
            authorize(&t, &bearer(&whole), None, "n1"),
            Ok(Caller::Token)
        );
        assert_eq!(
            authorize(&t, &bearer(&secret), None, "n1"),
            Ok(Caller::Token)
        );
        let admin = id("shoal-admin", &[ADMIN_GROUP]);
        assert_eq!(
            authorize(&t, &none, Some(&admin), "n1"),
            Ok(Caller::Admin("shoal-admin".into()))
        );
        let node = id("system:node:n1", &[NODES_GROUP]);
        assert_eq!(
            authorize(&t, &none, Some(&node), "n1"),
            Ok(Caller::Node("system:node:n1".into()))
        );
    }

    #[test]
    fn wrong_or_missing_credentials_are_refused() {
        let t = token();
        let other = token();
        let none = HeaderMap::new();
        let admin = id("shoal-admin", &[ADMIN_GROUP]);
        for h in [
            format!("Bearer {other}"),
            format!("Bearer {}", other.secret()),
            format!("Bearer {}", &t.secret()[..63]),
            format!("Basic {}", t.secret()),
            "Bearer ".to_string(),
        ] {
            // A wrong bearer token is refused even with an admin certificate.
            assert_eq!(
                authorize(&t, &bearer(&h), Some(&admin), "n1")
                    .unwrap_err()
                    .code,
                401,
                "{h}"
            );
        }
        assert_eq!(authorize(&t, &none, None, "n1").unwrap_err().code, 401);
        let anon = Identity::anonymous();
        assert_eq!(
            authorize(&t, &none, Some(&anon), "n1").unwrap_err().code,
            401
        );
        let other_node = id("system:node:n2", &[NODES_GROUP]);
        assert_eq!(
            authorize(&t, &none, Some(&other_node), "n1")
                .unwrap_err()
                .code,
            403
        );
        let user = id("alice", &["dev"]);
        assert_eq!(
            authorize(&t, &none, Some(&user), "n1").unwrap_err().code,
            403
        );
    }

    #[test]
    fn join_requests_are_validated() {
        let ok = JoinRequest {
            node_name: "node-a.example".into(),
            addresses: vec!["127.0.0.2".into(), "::1".into()],
        };
        assert_eq!(validate(&ok).unwrap().len(), 2);
        for (name, addresses, needle) in [
            ("", vec![], "nodeName is required"),
            ("Node_A", vec![], "RFC 1123 subdomain"),
            ("n1", vec!["127.0.0.300"], "is not an IP address"),
            ("n1", vec!["host.example"], "is not an IP address"),
        ] {
            let req = JoinRequest {
                node_name: name.into(),
                addresses: addresses.into_iter().map(String::from).collect(),
            };
            let err = validate(&req).unwrap_err();
            assert_eq!(err.code, 400);
            assert!(err.message.contains(needle), "{}", err.message);
        }
    }
}
