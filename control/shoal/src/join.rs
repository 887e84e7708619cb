//! The node's side of joining (`apiserver::join`): with `--server` and
//! `--token`, fetch the CA unverified, pin it by the token's hash, then ask
//! for the node's client and serving certificates over TLS verified with
//! it; with a kubeconfig, ask with its client certificate.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use apiserver::join::{CACERTS_PATH, JOIN_PATH, JoinRequest, JoinResponse, NodeToken};

/// What a join leaves behind.
#[derive(Debug)]
pub struct Joined {
    pub answer: JoinResponse,
    /// `DATA_DIR/kubelet.kubeconfig`, with the node's client certificate
    /// (only for joins with a token).
    pub kubeconfig: Option<PathBuf>,
}

/// The node's kubeconfig after a join with a token.
pub const KUBECONFIG_FILE: &str = "kubelet.kubeconfig";

/// Joins `server` with `token` as `name`: pins the CA, asks for
/// certificates, writes `DATA_DIR/kubelet.kubeconfig` and the serving pair.
pub async fn with_token(
    server: &str,
    token: &str,
    name: &str,
    addresses: &[IpAddr],
    data_dir: &Path,
) -> anyhow::Result<Joined> {
    // Several rustls providers may be linked in: pick ring, as the rest of Shoal.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let token = NodeToken::parse(token).context("--token")?;
    let url: http::Uri = server
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL like https://10.0.0.1:6443"))?;
    if url.scheme_str() != Some("https") {
        bail!("--server {server:?} must be an https:// URL, like https://10.0.0.1:6443");
    }

    // The CA, fetched without verification and trusted only if the token pins it.
    let mut insecure = kube::Config::new(url.clone());
    insecure.accept_invalid_certs = true;
    let client = kube::Client::try_from(insecure).context("cannot build an HTTPS client")?;
    let request = http::Request::get(CACERTS_PATH).body(Vec::new())?;
    let ca_pem = client
        .request_text(request)
        .await
        .with_context(|| format!("cannot fetch the cluster CA from {server}{CACERTS_PATH}"))?;
    let ca_der = apiserver::join::cert_der(&ca_pem).with_context(|| {
        format!("{server}{CACERTS_PATH} answered no PEM certificate: is --server a Shoal server?")
    })?;
    if !token.pins(&ca_der) {
        bail!("the server's CA does not match the token: is --server right?");
    }

    let mut verified = kube::Config::new(url);
    verified.root_cert = Some(vec![ca_der]);
    let bearer = http::HeaderValue::from_str(&format!("Bearer {}", token.secret()))
        .context("the token is not a valid header value")?;
    verified.headers.push((http::header::AUTHORIZATION, bearer));
    let client = kube::Client::try_from(verified).context("cannot build an HTTPS client")?;
    let answer = ask(&client, name, addresses).await.map_err(|e| match &e {
        kube::Error::Api(status) if status.code == 401 => anyhow::anyhow!(
            "the server refused the token (401 Unauthorized): give the token from the server's DATA_DIR/node-token"
        ),
        _ => anyhow::Error::new(e).context(format!("cannot join {server}")),
    })?;

    let kubeconfig = data_dir.join(KUBECONFIG_FILE);
    apiserver::pki::write_kubeconfig(
        &kubeconfig,
        server.trim_end_matches('/'),
        &answer.ca_pem,
        &answer.client_cert_pem,
        &answer.client_key_pem,
    )?;
    write_serving(data_dir, &answer)?;
    Ok(Joined {
        answer,
        kubeconfig: Some(kubeconfig),
    })
}

/// Asks for a serving certificate with the client certificate `client`
/// already has (an admin kubeconfig, or the node's own); writes the pair.
pub async fn with_client(
    client: &kube::Client,
    name: &str,
    addresses: &[IpAddr],
    data_dir: &Path,
) -> anyhow::Result<Joined> {
    let answer = ask(client, name, addresses).await.map_err(|e| match &e {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => anyhow::anyhow!(
            "the server will not issue this node's serving certificate ({}): use an admin \
             kubeconfig (system:masters), or join with --server and --token",
            status.message
        ),
        _ => anyhow::Error::new(e).context("cannot get the node's serving certificate"),
    })?;
    write_serving(data_dir, &answer)?;
    Ok(Joined {
        answer,
        kubeconfig: None,
    })
}

async fn ask(
    client: &kube::Client,
    name: &str,
    addresses: &[IpAddr],
) -> Result<JoinResponse, kube::Error> {
    let body = JoinRequest {
        node_name: name.to_string(),
        addresses: addresses.iter().map(IpAddr::to_string).collect(),
    };
    let body = serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?;
    let request = http::Request::post(JOIN_PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request::<JoinResponse>(request).await
}

/// `DATA_DIR/pki/kubelet.crt` and `kubelet.key`, mode 0600.
fn write_serving(data_dir: &Path, answer: &JoinResponse) -> anyhow::Result<()> {
    let dir = data_dir.join("pki");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    apiserver::pki::write_atomic(
        &dir.join("kubelet.crt"),
        answer.serving_cert_pem.as_bytes(),
        0o600,
    )?;
    apiserver::pki::write_atomic(
        &dir.join("kubelet.key"),
        answer.serving_key_pem.as_bytes(),
        0o600,
    )?;
    Ok(())
}
