//! [`ImageStore`]: opening a store, importing files, finding, listing and
//! removing images, and the one place an image is committed (its blob moved
//! into place and the index rewritten, under the store lock).

use crate::cached::CachedIndex;
use crate::disk::{Disk, FillError, Lock, TempFile};
use crate::index::Index;
use crate::{Image, ImageError, RegistryConfig, Usage, digest, reference, wasm};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A node's image store; cheap to clone. All state is on disk under its
/// directory, so every clone, and every process opening the same directory,
/// sees the same images at once.
#[derive(Debug, Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    disk: Disk,
    config: RegistryConfig,
    /// The index as last parsed, while its file is unchanged.
    index: CachedIndex,
}

/// The module bytes of an image being committed.
#[derive(Debug)]
pub(crate) enum Blob {
    /// A verified temporary file and its `sha256:<hex>`.
    New {
        temp: TempFile,
        id: String,
        size: u64,
    },
    /// A blob the store holds already.
    Existing { id: String },
}

impl ImageStore {
    /// Opens (creating it if need be) the store in `dir`. Removes what
    /// killed processes left behind: temporary files no process holds, and
    /// blobs no image names.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let disk = Disk::new(dir.into());
        disk.create()?;
        let swept = disk.sweep()?;
        let lock = disk.lock()?;
        let mut index = Index::load(&disk.index)?;
        let orphans = reconcile(&disk, &mut index, &lock)?;
        drop(lock);
        tracing::debug!(dir = %disk.root.display(), images = index.images.len(), swept, orphans, "image store open");
        Ok(ImageStore {
            inner: Arc::new(Inner {
                disk,
                config: RegistryConfig::default(),
                index: CachedIndex::default(),
            }),
        })
    }

    /// The same store, reaching registries with `config`.
    pub fn with_config(self, config: RegistryConfig) -> Self {
        ImageStore {
            inner: Arc::new(Inner {
                disk: self.inner.disk.clone(),
                config,
                index: CachedIndex::default(),
            }),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.disk.root
    }

    pub(crate) fn disk(&self) -> &Disk {
        &self.inner.disk
    }

    /// Loads the `.wasm` file `wasm` under `name` (`NAME[:TAG]`, normalised
    /// like a reference: `hello` is `docker.io/library/hello:latest`). The
    /// tag moves to this module if another image held it.
    pub fn import(&self, wasm: &Path, name: &str) -> Result<Image, ImageError> {
        let tag = reference::import_name(name)?
            .tag
            .expect("an import name has a tag");
        let _span = tracing::info_span!("import", file = %wasm.display(), name = %tag).entered();
        let image = self.add_file(wasm, &tag)?;
        tracing::debug!(id = %image.id, size = image.size, "imported");
        Ok(image)
    }

    /// Copies a local module into the store and tags it.
    pub(crate) fn add_file(&self, path: &Path, tag: &str) -> Result<Image, ImageError> {
        let limit = self.inner.config.max_module_bytes;
        let file = std::fs::File::open(path).map_err(ImageError::io("read", path))?;
        let size = file.metadata().map_err(ImageError::io("read", path))?.len();
        let what = path.display().to_string();
        if size > limit {
            return Err(ImageError::TooLarge { what, size, limit });
        }
        let mut temp = self.inner.disk.temp()?;
        let written = temp.fill(file, limit).map_err(|e| match e {
            FillError::Read(e) => ImageError::io("read", path)(e),
            FillError::TooLarge => ImageError::TooLarge {
                what: what.clone(),
                size: limit + 1,
                limit,
            },
            FillError::Write(e) => e,
        })?;
        wasm::kind(&written.header).map_err(|reason| ImageError::not_wasm(what, reason))?;
        let blob = Blob::New {
            temp,
            id: written.sha256,
            size: written.size,
        };
        self.commit(blob, &[tag.to_owned()], BTreeMap::new())
    }

    /// The image a reference (tag or repo digest, normalised; or a `file://`
    /// URL), an image id (`sha256:<hex>`) or a unique id prefix names.
    pub fn status(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let index = self.index()?;
        Ok(index
            .lookup(reference)?
            .map(|id| self.image(&id, &index.images[&id])))
    }

    /// Every image, by id.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let index = self.index()?;
        Ok(index
            .images
            .iter()
            .map(|(id, entry)| self.image(id, entry))
            .collect())
    }

    /// Removes the image `reference` names (as [`ImageStore::status`]
    /// finds it): all its tags and repo digests, and its blob. `Ok` if there
    /// was no such image.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let disk = &self.inner.disk;
        let lock = disk.lock()?;
        let mut index = Index::load(&disk.index)?;
        let Some(id) = index.lookup(reference)? else {
            return Ok(());
        };
        index.images.remove(&id);
        disk.write_atomic(&disk.index, &index.to_bytes())?;
        self.inner.index.forget();
        let hex = digest::sha256_hex(&id).expect("index ids are sha256 digests");
        let path = disk.blob(hex);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("remove", path)(e)),
        }
        drop(lock);
        tracing::debug!(reference, %id, "image removed");
        Ok(())
    }

    /// Disk space and inodes the store takes.
    pub fn usage(&self) -> Result<Usage, ImageError> {
        use std::os::unix::fs::MetadataExt as _;
        let root = &self.inner.disk.root;
        let mut usage = Usage {
            bytes: 0,
            inodes: 0,
            mountpoint: root.clone(),
        };
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir).map_err(ImageError::io("read", &dir))?;
            for entry in entries {
                let entry = entry.map_err(ImageError::io("read", &dir))?;
                // Entries removed meanwhile (a finished download) are skipped.
                let Ok(meta) = entry.metadata() else { continue };
                usage.inodes += 1;
                usage.bytes += meta.blocks() * 512;
                if meta.is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        Ok(usage)
    }

    /// Moves `blob` into place and records `names` (tags and repo digests)
    /// for it, under the store lock.
    pub(crate) fn commit(
        &self,
        blob: Blob,
        names: &[String],
        annotations: BTreeMap<String, String>,
    ) -> Result<Image, ImageError> {
        let disk = &self.inner.disk;
        let lock = disk.lock()?;
        let mut index = Index::load(&disk.index)?;
        let (id, size) = match blob {
            Blob::New { temp, id, size } => {
                let hex = digest::sha256_hex(&id).expect("a computed sha256");
                disk.place(temp, hex, &lock)?;
                (id, size)
            }
            Blob::Existing { id } => {
                let hex = digest::sha256_hex(&id).expect("a stored sha256");
                let path = disk.blob(hex);
                let size = std::fs::metadata(&path)
                    .map_err(ImageError::io(
                        "find the blob (removed meanwhile? pull again)",
                        &path,
                    ))?
                    .len();
                (id, size)
            }
        };
        if names.is_empty() {
            index.record(&id, size, None, annotations.clone());
        }
        for name in names {
            index.record(&id, size, Some(name), annotations.clone());
        }
        disk.write_atomic(&disk.index, &index.to_bytes())?;
        self.inner.index.forget();
        drop(lock);
        Ok(self.image(&id, &index.images[&id]))
    }

    /// Runs [`ImageStore::commit`] off the async threads.
    pub(crate) async fn commit_async(
        &self,
        blob: Blob,
        names: Vec<String>,
        annotations: BTreeMap<String, String>,
    ) -> Result<Image, ImageError> {
        let store = self.clone();
        blocking(move || store.commit(blob, &names, annotations)).await
    }

    /// The image recorded under the repo digest `name`, if any.
    pub(crate) fn by_name(&self, name: &str) -> Result<Option<Image>, ImageError> {
        let index = self.index()?;
        Ok(index
            .images
            .iter()
            .find(|(_, e)| e.repo_tags.iter().chain(&e.repo_digests).any(|n| n == name))
            .map(|(id, entry)| self.image(id, entry)))
    }

    /// The id of an image pulled under the manifest digest `manifest`.
    pub(crate) fn by_manifest(&self, manifest: &str) -> Result<Option<String>, ImageError> {
        Ok(self.index()?.by_manifest(manifest))
    }

    /// The index as it is on disk now (parsed once per version of the
    /// file; writers read it afresh under the lock instead).
    fn index(&self) -> Result<Arc<Index>, ImageError> {
        self.inner.index.get(&self.inner.disk.index)
    }

    fn image(&self, id: &str, entry: &crate::index::Entry) -> Image {
        let hex = digest::sha256_hex(id).expect("index ids are sha256 digests");
        Image {
            id: id.to_owned(),
            repo_tags: entry.repo_tags.clone(),
            repo_digests: entry.repo_digests.clone(),
            size: entry.size,
            path: self.inner.disk.blob(hex),
            annotations: entry.annotations.clone(),
        }
    }
}

/// Runs blocking file work on tokio's blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Makes the blobs and the index agree: blobs no image names are removed
/// (a process killed between placing a blob and writing the index), and
/// images whose blob is gone are dropped. Returns how many blobs went.
fn reconcile(disk: &Disk, index: &mut Index, _: &Lock) -> Result<usize, ImageError> {
    let mut removed = 0;
    let entries = std::fs::read_dir(&disk.blobs).map_err(ImageError::io("read", &disk.blobs))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("read", &disk.blobs))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !index.images.contains_key(&format!("sha256:{name}")) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
            tracing::warn!(blob = %path.display(), "removed a blob no image names");
            removed += 1;
        }
    }
    let before = index.images.len();
    index.images.retain(|id, _| {
        let hex = digest::sha256_hex(id).expect("index ids are sha256 digests");
        let present = disk.blob(hex).exists();
        if !present {
            tracing::warn!(%id, "dropped an image whose blob is missing");
        }
        present
    });
    if index.images.len() != before {
        disk.write_atomic(&disk.index, &index.to_bytes())?;
    }
    Ok(removed)
}
