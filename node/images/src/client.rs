//! One registry conversation over `oci-client`: the scheme the registry is
//! spoken to in, timeouts, credentials, and verified transfers (manifests
//! and blobs are hashed as they arrive and refused on a mismatch).

use crate::digest::{self, Digester};
use crate::disk::Written;
use crate::error::Remote;
use crate::layout::MANIFEST_TYPES;
use crate::reference::{self, Name};
use crate::{Auth, ImageError, RegistryConfig, wasm};
use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may stay silent mid-answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest manifest accepted.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A client for the registry of one reference.
pub(crate) struct Registry {
    client: Client,
    auth: RegistryAuth,
    pub remote: Remote,
}

impl Registry {
    pub(crate) async fn connect(
        name: &Name,
        auth: &Auth,
        config: &RegistryConfig,
    ) -> Result<Registry, ImageError> {
        let registry = name.reference.resolve_registry().to_owned();
        let plain = reference::plain_http(name.reference.registry(), &config.insecure)
            || reference::plain_http(&registry, &config.insecure);
        let remote = Remote {
            registry: registry.clone(),
            scheme: if plain { "http" } else { "https" },
            reference: name.normalised(),
            anonymous: matches!(auth, Auth::Anonymous),
        };
        let client_config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = Client::try_from(client_config).map_err(|e| remote.error(e))?;
        let auth = match auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer { token } => RegistryAuth::Bearer(token.clone()),
        };
        client.store_auth_if_needed(&registry, &auth).await;
        Ok(Registry {
            client,
            auth,
            remote,
        })
    }

    /// Fetches a manifest (image or index) and its digest, verified against
    /// the digest the reference names (if any) and the one the registry sent.
    pub(crate) async fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let (body, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.remote.error(e))?;
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(self.remote.registry(format!(
                "its manifest is {} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                body.len()
            )));
        }
        for expected in [Some(digest.as_str()), reference.digest()]
            .into_iter()
            .flatten()
        {
            let mut digester = Digester::for_digest(expected).ok_or_else(|| {
                self.remote
                    .registry(format!("unsupported manifest digest {expected}"))
            })?;
            digester.update(&body);
            let actual = digester.finish();
            if actual != expected {
                return Err(ImageError::DigestMismatch {
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        Ok((body.to_vec(), digest))
    }

    /// Streams a blob into `out` (at most `limit` bytes), verifying its
    /// digest; `what` names it in errors.
    pub(crate) async fn download<W: AsyncWrite + Unpin>(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        limit: u64,
        what: &str,
        out: &mut W,
    ) -> Result<Written, ImageError> {
        let declared = u64::try_from(desc.size)
            .map_err(|_| self.remote.registry(format!("{what} has a negative size")))?;
        let too_large = |size| ImageError::TooLarge {
            what: what.to_owned(),
            size,
            limit,
        };
        if declared > limit {
            return Err(too_large(declared));
        }
        let mut verify = Digester::for_digest(&desc.digest).ok_or_else(|| {
            self.remote.registry(format!(
                "{what} has an unsupported digest {:?}",
                desc.digest
            ))
        })?;
        // The id is always a sha256; hash twice only for another algorithm.
        let mut id = digest::sha256_hex(&desc.digest)
            .is_none()
            .then(Digester::sha256);
        let mut stream = self
            .client
            .pull_blob_stream(reference, desc)
            .await
            .map_err(|e| self.remote.error(e))?;
        let mut header = Vec::with_capacity(wasm::HEADER_LEN);
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.remote.stream_error(e))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_large(size));
            }
            let want = wasm::HEADER_LEN
                .saturating_sub(header.len())
                .min(chunk.len());
            header.extend_from_slice(&chunk[..want]);
            verify.update(&chunk);
            if let Some(id) = id.as_mut() {
                id.update(&chunk);
            }
            out.write_all(&chunk).await.map_err(|e| ImageError::Io {
                action: "store",
                path: what.into(),
                source: e,
            })?;
        }
        out.flush().await.map_err(|e| ImageError::Io {
            action: "store",
            path: what.into(),
            source: e,
        })?;
        let actual = verify.finish();
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(Written {
            sha256: id.map_or(actual, Digester::finish),
            size,
            header,
        })
    }

    /// Uploads a blob named by `digest`.
    pub(crate) async fn push_blob(
        &self,
        reference: &Reference,
        data: Vec<u8>,
        digest: &str,
    ) -> Result<(), ImageError> {
        self.client
            .push_blob(reference, data, digest)
            .await
            .map(drop)
            .map_err(|e| self.remote.error(e))
    }

    /// Uploads a manifest under the reference's tag.
    pub(crate) async fn push_manifest(
        &self,
        reference: &Reference,
        body: Vec<u8>,
        media_type: &'static str,
    ) -> Result<(), ImageError> {
        self.client
            .push_manifest_raw(reference, body, http::HeaderValue::from_static(media_type))
            .await
            .map(drop)
            .map_err(|e| self.remote.error(e))
    }
}
