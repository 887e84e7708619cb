//! [`ImageStore::pull`]: a module from a registry or a `file://` URL into
//! the store.
//!
//! A pull by digest that the store already holds is answered from the store
//! without a request. A pull by tag always asks the registry for the
//! manifest (tags move), and fetches no blob when that manifest is one the
//! store has pulled before. Blobs are downloaded to temporary files, verified
//! against their digests, and only then committed.

use crate::client::Registry;
use crate::layout::{self, Layout, Manifest};
use crate::reference::{self, Name, Source};
use crate::store::{Blob, blocking};
use crate::{Auth, Image, ImageError, ImageStore, digest, wasm};
use tracing::Instrument as _;

impl ImageStore {
    /// Pulls `reference` into the store: an OCI reference
    /// (`localhost:5000/shoal/hello:v1`, `ghcr.io/x/y@sha256:...`; `hello`
    /// is `docker.io/library/hello:latest`) or `file:///abs/path/module.wasm`.
    /// Every digest is verified (the manifest's when pulled by digest, each
    /// blob's always); on a mismatch nothing is stored. Pulls of one image
    /// may run concurrently, in one process or several.
    pub async fn pull(&self, reference: &str, auth: &Auth) -> Result<Image, ImageError> {
        let span = tracing::info_span!("pull", reference);
        async move {
            let image = match reference::source(reference)? {
                Source::File { url, path } => {
                    if !path.is_file() {
                        return Err(ImageError::NotFound { reference: url });
                    }
                    let store = self.clone();
                    blocking(move || store.add_file(&path, &url)).await?
                }
                Source::Oci(name) => self.pull_oci(name, auth).await?,
            };
            tracing::debug!(id = %image.id, size = image.size, "pulled");
            Ok(image)
        }
        .instrument(span)
        .await
    }

    async fn pull_oci(&self, name: Name, auth: &Auth) -> Result<Image, ImageError> {
        if let Some(pinned) = &name.digest
            && let Some(image) = self.by_name(pinned)?
        {
            tracing::debug!("already in the store");
            return Ok(image);
        }
        let what = name.normalised();
        let registry = Registry::connect(&name, auth, self.config()).await?;
        let (bytes, manifest_digest) = registry.manifest(&name.reference).await?;
        let manifest = match layout::parse(&bytes, &what)? {
            Manifest::Image(m) => m,
            Manifest::Index(entries) => {
                let entry = layout::pick(&entries, &what)?;
                tracing::debug!(index = %manifest_digest, manifest = %entry, "image index");
                let (bytes, _) = registry
                    .manifest(&name.reference.clone_with_digest(entry))
                    .await?;
                match layout::parse(&bytes, &what)? {
                    Manifest::Image(m) => m,
                    Manifest::Index(_) => {
                        return Err(ImageError::not_wasm(
                            what,
                            "its image index points at another index",
                        ));
                    }
                }
            }
        };
        let mut names: Vec<String> = name.tag.iter().cloned().collect();
        names.push(format!("{}@{manifest_digest}", name.repo));

        if let Some(id) = self.by_manifest(&manifest_digest)? {
            tracing::debug!(%id, "manifest already pulled; no blob to fetch");
            return self
                .commit_async(Blob::Existing { id }, names, manifest.annotations)
                .await;
        }

        let limit = self.config().max_module_bytes;
        let blob = match layout::classify(&manifest, &what)? {
            Layout::Wasm(layer) => {
                if let Some(hex) = digest::sha256_hex(&layer.digest)
                    && self.disk().blob(hex).exists()
                {
                    Blob::Existing {
                        id: layer.digest.clone(),
                    }
                } else {
                    let temp = self.disk().temp()?;
                    let mut file = tokio::fs::File::from_std(
                        temp.file()
                            .try_clone()
                            .map_err(ImageError::io("open", temp.path()))?,
                    );
                    let layer_what = format!("the layer {} of {what}", layer.digest);
                    let written = registry
                        .download(&name.reference, layer, limit, &layer_what, &mut file)
                        .await?;
                    wasm::kind(&written.header)
                        .map_err(|reason| ImageError::not_wasm(&what, reason))?;
                    Blob::New {
                        temp,
                        id: written.sha256,
                        size: written.size,
                    }
                }
            }
            Layout::Tar { layer, gzip } => {
                let entrypoint = if layout::has_entrypoint(&manifest.config) {
                    let mut config = Vec::new();
                    let config_what = format!("the config {} of {what}", manifest.config.digest);
                    registry
                        .download(
                            &name.reference,
                            &manifest.config,
                            layout::MAX_CONFIG_BYTES,
                            &config_what,
                            &mut config,
                        )
                        .await?;
                    layout::entrypoint(&config)
                } else {
                    None
                };
                let layer_file = self.disk().temp()?;
                let mut file = tokio::fs::File::from_std(
                    layer_file
                        .file()
                        .try_clone()
                        .map_err(ImageError::io("open", layer_file.path()))?,
                );
                let layer_what = format!("the layer {} of {what}", layer.digest);
                registry
                    .download(&name.reference, layer, 2 * limit, &layer_what, &mut file)
                    .await?;
                drop(file);
                let mut temp = self.disk().temp()?;
                let what = what.clone();
                blocking(move || {
                    let written = layout::extract(
                        layer_file.path(),
                        gzip,
                        entrypoint.as_deref(),
                        limit,
                        &what,
                        &mut temp,
                    )?;
                    drop(layer_file);
                    wasm::kind(&written.header)
                        .map_err(|reason| ImageError::not_wasm(&what, reason))?;
                    Ok(Blob::New {
                        temp,
                        id: written.sha256,
                        size: written.size,
                    })
                })
                .await?
            }
        };
        self.commit_async(blob, names, manifest.annotations).await
    }
}
