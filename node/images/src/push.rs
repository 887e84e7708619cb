//! [`push`]: a `.wasm` file to a registry as a Wasm OCI artifact: an OCI
//! image manifest with config `application/vnd.wasm.config.v0+json` and one
//! `application/wasm` layer, titled with the file's name.

use crate::client::Registry;
use crate::{
    Auth, ImageError, RegistryConfig, TITLE_ANNOTATION, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
};
use crate::{digest, reference, wasm};
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use serde_json::json;
use std::path::Path;
use tracing::Instrument as _;

/// Pushes the module `wasm` to `reference` (`REGISTRY/REPO:TAG`) and returns
/// `REGISTRY/REPO@sha256:<manifest digest>`, the reference that names exactly
/// what was pushed. Pushing the same file twice gives the same digest.
pub async fn push(
    wasm: &Path,
    reference: &str,
    auth: &Auth,
    config: &RegistryConfig,
) -> Result<String, ImageError> {
    let span = tracing::info_span!("push", file = %wasm.display(), reference);
    async move {
        if reference.starts_with("file://") {
            return Err(ImageError::InvalidReference {
                reference: reference.to_owned(),
                reason: "push needs a registry reference, REGISTRY/REPO:TAG".to_owned(),
            });
        }
        let name = reference::name(reference)?;
        if name.digest.is_some() {
            return Err(ImageError::InvalidReference {
                reference: reference.to_owned(),
                reason: "push to a tag (REGISTRY/REPO:TAG); the digest comes from the content"
                    .to_owned(),
            });
        }
        let (module, kind) = read_module(wasm, config.max_module_bytes)?;
        let title = wasm
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "module.wasm".to_owned());

        let layer_digest = digest::sha256(&module);
        let layer_size = module.len();
        let config_blob = serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": kind.os(),
            "layerDigests": [layer_digest],
        }))
        .expect("the config serializes");
        let config_digest = digest::sha256(&config_blob);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": {
                "mediaType": WASM_CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": config_blob.len(),
            },
            "layers": [{
                "mediaType": WASM_LAYER_MEDIA_TYPE,
                "digest": layer_digest,
                "size": layer_size,
                "annotations": { TITLE_ANNOTATION: title },
            }],
            "annotations": { TITLE_ANNOTATION: title },
        }))
        .expect("the manifest serializes");
        let manifest_digest = digest::sha256(&manifest);

        let registry = Registry::connect(&name, auth, config).await?;
        registry
            .push_blob(&name.reference, module, &layer_digest)
            .await?;
        registry
            .push_blob(&name.reference, config_blob, &config_digest)
            .await?;
        registry
            .push_manifest(&name.reference, manifest, OCI_IMAGE_MEDIA_TYPE)
            .await?;
        let pushed = format!("{}@{manifest_digest}", name.repo);
        tracing::debug!(%pushed, size = layer_size, "pushed");
        Ok(pushed)
    }
    .instrument(span)
    .await
}

/// Reads a module file, refusing one over `limit` bytes or without a Wasm header.
fn read_module(path: &Path, limit: u64) -> Result<(Vec<u8>, wasm::Kind), ImageError> {
    let size = std::fs::metadata(path)
        .map_err(ImageError::io("read", path))?
        .len();
    let what = path.display().to_string();
    if size > limit {
        return Err(ImageError::TooLarge { what, size, limit });
    }
    let bytes = std::fs::read(path).map_err(ImageError::io("read", path))?;
    let kind = wasm::kind(&bytes).map_err(|reason| ImageError::not_wasm(what, reason))?;
    Ok((bytes, kind))
}
