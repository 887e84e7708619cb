//! What an image's manifest holds: the layouts a pull accepts (a Wasm layer,
//! or one tar layer holding the `.wasm` file), which entry of an image index
//! is the Wasm one, and how the module is found inside a tar layer.

use crate::ImageError;
use crate::disk::{FillError, TempFile, Written};
use flate2::read::GzDecoder;
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor, WASM_LAYER_MEDIA_TYPE as LEGACY_WASM_LAYER,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The manifest media types a pull asks for.
pub(crate) const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Layer media types that are the module itself.
const WASM_LAYERS: &[&str] = &[crate::WASM_LAYER_MEDIA_TYPE, LEGACY_WASM_LAYER];
/// Tar layer media types, and whether they are gzipped.
const TAR_LAYERS: &[(&str, bool)] = &[
    (IMAGE_LAYER_MEDIA_TYPE, false),
    (IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE, false),
    (IMAGE_LAYER_GZIP_MEDIA_TYPE, true),
    (IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, true),
];
/// The largest image config read for its `Entrypoint`.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A parsed manifest.
#[derive(Debug)]
pub(crate) enum Manifest {
    Image(ImageManifest),
    /// An image index: (digest, platform) of each entry.
    Index(Vec<IndexEntry>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    pub config: OciDescriptor,
    #[serde(default)]
    pub layers: Vec<OciDescriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexEntry {
    pub digest: String,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// How the module sits in an image.
#[derive(Debug)]
pub(crate) enum Layout<'a> {
    /// The layer is the module.
    Wasm(&'a OciDescriptor),
    /// The layer is a tar (gzipped or not) holding the module.
    Tar {
        layer: &'a OciDescriptor,
        gzip: bool,
    },
}

/// Parses a manifest; `what` names the image in errors.
pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Manifest, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let bad = |e: serde_json::Error| {
        ImageError::not_wasm(what, format!("its manifest does not parse: {e}"))
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(bad)?;
    let index = matches!(
        probe.media_type.as_deref(),
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE)
    ) || probe.manifests.is_some();
    if index {
        #[derive(Deserialize)]
        struct Index {
            manifests: Vec<IndexEntry>,
        }
        let index: Index = serde_json::from_slice(bytes).map_err(bad)?;
        return Ok(Manifest::Index(index.manifests));
    }
    if let Some(other) = probe
        .media_type
        .as_deref()
        .filter(|t| !matches!(*t, OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE))
    {
        return Err(ImageError::not_wasm(
            what,
            format!("its manifest has media type {other}, not an image manifest"),
        ));
    }
    serde_json::from_slice(bytes)
        .map(Manifest::Image)
        .map_err(bad)
}

/// The digest of the Wasm entry of an image index: the one whose platform
/// is `wasm` (or a `wasi*` OS), else the only entry.
pub(crate) fn pick(entries: &[IndexEntry], what: &str) -> Result<String, ImageError> {
    let wasm = entries.iter().find(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.architecture == "wasm" || p.os.starts_with("wasi"))
    });
    match (wasm, entries) {
        (Some(entry), _) | (None, [entry]) => Ok(entry.digest.clone()),
        (None, _) => {
            let platforms: Vec<String> = entries
                .iter()
                .map(|e| {
                    e.platform.as_ref().map_or_else(
                        || "unknown".to_owned(),
                        |p| format!("{}/{}", p.os, p.architecture),
                    )
                })
                .collect();
            Err(ImageError::not_wasm(
                what,
                format!(
                    "its image index has no wasm platform (it has {})",
                    if platforms.is_empty() {
                        "no entries".to_owned()
                    } else {
                        platforms.join(", ")
                    }
                ),
            ))
        }
    }
}

/// Which layout an image manifest has, or why it is not a Wasm image.
pub(crate) fn classify<'a>(
    manifest: &'a ImageManifest,
    what: &str,
) -> Result<Layout<'a>, ImageError> {
    if let [layer] = manifest.layers.as_slice() {
        if WASM_LAYERS.contains(&layer.media_type.as_str()) {
            return Ok(Layout::Wasm(layer));
        }
        if let Some((_, gzip)) = TAR_LAYERS.iter().find(|(t, _)| *t == layer.media_type) {
            return Ok(Layout::Tar { layer, gzip: *gzip });
        }
    }
    let layers: Vec<&str> = manifest
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    Err(ImageError::not_wasm(
        what,
        format!(
            "expected one layer of type {} (a Wasm OCI artifact) or one tar layer holding a .wasm file; \
             found config {} and {} layer(s){}{}",
            crate::WASM_LAYER_MEDIA_TYPE,
            manifest.config.media_type,
            layers.len(),
            if layers.is_empty() { "" } else { ": " },
            layers.join(", ")
        ),
    ))
}

/// Whether the config is an image config whose `Entrypoint` may name the module.
pub(crate) fn has_entrypoint(config: &OciDescriptor) -> bool {
    matches!(
        config.media_type.as_str(),
        IMAGE_CONFIG_MEDIA_TYPE | IMAGE_DOCKER_CONFIG_MEDIA_TYPE
    )
}

/// The `.wasm` file an image config's `Entrypoint` names, if it names one.
pub(crate) fn entrypoint(config: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ImageConfig {
        config: Option<RunConfig>,
    }
    #[derive(Deserialize)]
    struct RunConfig {
        #[serde(rename = "Entrypoint")]
        entrypoint: Option<Vec<String>>,
    }
    let parsed: ImageConfig = serde_json::from_slice(config).ok()?;
    let first = parsed.config?.entrypoint?.into_iter().next()?;
    first.ends_with(".wasm").then(|| clean(&first))
}

/// A tar path as compared: no leading `/` or `./`.
fn clean(path: &str) -> String {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            return p.to_owned();
        }
    }
}

/// Copies the module out of a tar layer into `out`: the file `entrypoint`
/// names, else the layer's only `.wasm` file.
pub(crate) fn extract(
    layer: &Path,
    gzip: bool,
    entrypoint: Option<&str>,
    limit: u64,
    what: &str,
    out: &mut TempFile,
) -> Result<Written, ImageError> {
    let unreadable = |e: std::io::Error| {
        ImageError::not_wasm(
            what,
            format!(
                "its layer is not a readable tar{}: {e}",
                if gzip { ".gz" } else { "" }
            ),
        )
    };
    let open = || -> Result<tar::Archive<Box<dyn Read>>, ImageError> {
        let file = std::fs::File::open(layer).map_err(ImageError::io("read", layer))?;
        let reader: Box<dyn Read> = if gzip {
            Box::new(GzDecoder::new(std::io::BufReader::new(file)))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        Ok(tar::Archive::new(reader))
    };

    // First pass: the .wasm files the layer holds.
    let mut found = Vec::new();
    let mut archive = open()?;
    for entry in archive.entries().map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = clean(&entry.path().map_err(unreadable)?.to_string_lossy());
        if path.ends_with(".wasm") {
            found.push(path);
        }
    }
    let chosen = match (entrypoint, found.as_slice()) {
        (Some(e), _) if found.iter().any(|f| f == e) => e.to_owned(),
        (Some(e), _) => {
            return Err(ImageError::not_wasm(
                what,
                format!(
                    "its Entrypoint names /{e}, which its layer does not hold (it holds: {})",
                    list(&found)
                ),
            ));
        }
        (None, [one]) => one.clone(),
        (None, []) => return Err(ImageError::not_wasm(what, "its layer holds no .wasm file")),
        (None, _) => {
            return Err(ImageError::not_wasm(
                what,
                format!(
                    "its layer holds several .wasm files ({}); set the image's Entrypoint to the one to run",
                    list(&found)
                ),
            ));
        }
    };

    // Second pass: copy it out.
    let mut archive = open()?;
    for entry in archive.entries().map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if !entry.header().entry_type().is_file()
            || clean(&entry.path().map_err(unreadable)?.to_string_lossy()) != chosen
        {
            continue;
        }
        let module = format!("/{chosen} in {what}");
        let size = entry.header().size().map_err(unreadable)?;
        if size > limit {
            return Err(ImageError::TooLarge {
                what: module,
                size,
                limit,
            });
        }
        return out.fill(entry, limit).map_err(|e| match e {
            FillError::Read(e) => unreadable(e),
            FillError::TooLarge => ImageError::TooLarge {
                what: module,
                size: limit + 1,
                limit,
            },
            FillError::Write(e) => e,
        });
    }
    Err(ImageError::not_wasm(
        what,
        "its layer changed while it was read",
    ))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "no .wasm files".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("/{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(media_type: &str) -> OciDescriptor {
        OciDescriptor {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            ..OciDescriptor::default()
        }
    }

    fn manifest(layers: &[&str]) -> ImageManifest {
        ImageManifest {
            config: descriptor(crate::WASM_CONFIG_MEDIA_TYPE),
            layers: layers.iter().map(|t| descriptor(t)).collect(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn layouts_are_recognised_by_media_type() {
        assert!(matches!(
            classify(&manifest(&["application/wasm"]), "x"),
            Ok(Layout::Wasm(_))
        ));
        assert!(matches!(
            classify(&manifest(&[IMAGE_LAYER_GZIP_MEDIA_TYPE]), "x"),
            Ok(Layout::Tar { gzip: true, .. })
        ));
        assert!(matches!(
            classify(&manifest(&[IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE]), "x"),
            Ok(Layout::Tar { gzip: false, .. })
        ));
        let err = classify(&manifest(&["application/wasm", "text/plain"]), "x").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("text/plain") && msg.contains(crate::WASM_CONFIG_MEDIA_TYPE),
            "{msg}"
        );
    }

    #[test]
    fn an_index_yields_its_wasm_entry() {
        let entries: Vec<IndexEntry> = serde_json::from_str(
            r#"[{"digest":"sha256:a","platform":{"architecture":"amd64","os":"linux"}},
                {"digest":"sha256:b","platform":{"architecture":"wasm","os":"wasip1"}}]"#,
        )
        .unwrap();
        assert_eq!(pick(&entries, "x").unwrap(), "sha256:b");
        let err = pick(&entries[..1], "x");
        assert_eq!(err.unwrap(), "sha256:a", "a lone entry is taken");
        let two: Vec<IndexEntry> = serde_json::from_str(
            r#"[{"digest":"sha256:a","platform":{"architecture":"amd64","os":"linux"}},
                {"digest":"sha256:c","platform":{"architecture":"arm64","os":"linux"}}]"#,
        )
        .unwrap();
        assert!(
            pick(&two, "x")
                .unwrap_err()
                .to_string()
                .contains("linux/arm64")
        );
    }

    #[test]
    fn entrypoints_name_wasm_files() {
        let config = br#"{"config":{"Entrypoint":["/app/main.wasm","--flag"]}}"#;
        assert_eq!(entrypoint(config).as_deref(), Some("app/main.wasm"));
        assert_eq!(
            entrypoint(br#"{"config":{"Entrypoint":["/bin/sh"]}}"#),
            None
        );
        assert_eq!(entrypoint(br#"{"config":{}}"#), None);
        assert_eq!(clean("./a/./b.wasm"), "a/./b.wasm");
    }
}
