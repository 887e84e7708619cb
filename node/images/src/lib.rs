//! `images`: a node's image store. An image is one Wasm module (or
//! component), named by the `sha256` of its bytes; it arrives by a pull from
//! an OCI registry (every digest verified), from a `file://` URL, or by an
//! import of a local file; [`push`] sends one to a registry as a Wasm OCI
//! artifact.
//!
//! Everything lives on disk under the store's directory (see `disk.rs` for
//! the layout), so a store opened by several processes at once (`shoal cri`
//! and `shoal image import`) agrees at every moment, and a process killed
//! mid-pull leaves nothing half-written visible.
//!
//! Pulls accept two image layouts: the Wasm OCI artifact (one layer of media
//! type `application/wasm`), and an image whose one layer is a tar (or
//! tar.gz) holding the `.wasm` file (`FROM scratch` + `COPY app.wasm /`; the
//! config's `Entrypoint` picks the file if the layer holds several).

mod cached;
mod client;
mod digest;
mod disk;
mod error;
mod index;
mod layout;
mod pull;
mod push;
mod reference;
mod store;
mod wasm;

pub use error::ImageError;
pub use push::push;
pub use store::ImageStore;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The largest module a store accepts by default: 256 MiB.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 256 << 20;

/// The media type of a Wasm module layer in a Wasm OCI artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The config media type of a Wasm OCI artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The annotation naming the module's file.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<hex>` of the module bytes.
    pub id: String,
    /// Normalised tags, e.g. `localhost:5000/shoal/hello:v1`; a `file://`
    /// image's tag is its URL.
    pub repo_tags: Vec<String>,
    /// `REPO@sha256:<manifest digest>` for each repository it was pulled from.
    pub repo_digests: Vec<String>,
    /// Module bytes.
    pub size: u64,
    /// The module file on disk, read-only.
    pub path: PathBuf,
    /// The manifest's annotations, if any.
    pub annotations: BTreeMap<String, String>,
}

/// Credentials for a registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A bearer (identity or registry) token, sent as is.
    Bearer {
        token: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// How registries are reached, and how large a module may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) spoken to in plain HTTP, besides
    /// the loopback ones (`localhost`, 127.0.0.0/8, `::1`), which always are.
    /// Every other registry is HTTPS.
    pub insecure: Vec<String>,
    /// The largest module accepted, in bytes (and, for tar layers, twice
    /// this for the layer).
    pub max_module_bytes: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
        }
    }
}

/// What the store's files take on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of disk used (allocated blocks).
    pub bytes: u64,
    /// Files and directories.
    pub inodes: u64,
    /// The store's directory.
    pub mountpoint: PathBuf,
}
