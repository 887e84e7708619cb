//! The reference index (`DIR/index.json`): for each image id, the tags and
//! repo digests that name it, its size and its manifest's annotations; and
//! how a reference, an id or an id prefix finds an image.

use crate::ImageError;
use crate::digest;
use crate::reference;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The format this crate writes; another number is refused.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Index {
    version: u32,
    /// By image id, `sha256:<hex>` of the module bytes.
    pub images: BTreeMap<String, Entry>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            version: VERSION,
            images: BTreeMap::new(),
        }
    }
}

impl Index {
    /// Reads the index; a missing file is an empty index.
    pub(crate) fn load(path: &Path) -> Result<Index, ImageError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(ImageError::io("read", path)(e)),
        };
        Index::parse(&bytes, path)
    }

    /// Parses and checks the bytes of the index file at `path`.
    pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Index, ImageError> {
        let corrupt = |reason: String| ImageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let index: Index = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if index.version != VERSION {
            return Err(corrupt(format!(
                "format version {}, this build reads {VERSION}",
                index.version
            )));
        }
        for id in index.images.keys() {
            if digest::sha256_hex(id).is_none() {
                return Err(corrupt(format!("{id:?} is not an image id")));
            }
        }
        Ok(index)
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("the index serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The id of the image `key` names: a reference (tag or repo digest,
    /// normalised, or a `file://` URL), an image id, or a unique id prefix
    /// (with or without `sha256:`).
    pub(crate) fn lookup(&self, key: &str) -> Result<Option<String>, ImageError> {
        let named = |name: &str| {
            self.images
                .iter()
                .find(|(_, e)| e.repo_tags.iter().chain(&e.repo_digests).any(|n| n == name))
                .map(|(id, _)| id.clone())
        };
        if key.starts_with("file://") {
            return Ok(named(key));
        }
        if digest::sha256_hex(key).is_some() && self.images.contains_key(key) {
            return Ok(Some(key.to_owned()));
        }
        let parsed = reference::name(key);
        if let Ok(name) = &parsed
            && let Some(id) = named(&name.normalised())
        {
            return Ok(Some(id));
        }
        let prefix = key.strip_prefix("sha256:").unwrap_or(key);
        let is_prefix = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_prefix {
            let full = format!("sha256:{prefix}");
            let matches: Vec<&String> = self
                .images
                .keys()
                .filter(|id| id.starts_with(&full))
                .collect();
            return match matches.as_slice() {
                [] => Ok(None),
                [id] => Ok(Some((*id).clone())),
                more => Err(ImageError::Ambiguous {
                    prefix: key.to_owned(),
                    count: more.len(),
                }),
            };
        }
        parsed.map(|_| None)
    }

    /// Records that `name` (a tag or repo digest) names image `id`; a tag
    /// moves from whatever image held it.
    pub(crate) fn record(
        &mut self,
        id: &str,
        size: u64,
        name: Option<&str>,
        annotations: BTreeMap<String, String>,
    ) {
        let is_digest = name.is_some_and(|n| n.contains('@'));
        if let Some(name) = name {
            for (other, entry) in self.images.iter_mut() {
                if other != id {
                    entry.repo_tags.retain(|t| t != name);
                    entry.repo_digests.retain(|d| d != name);
                }
            }
        }
        let entry = self.images.entry(id.to_owned()).or_default();
        entry.size = size;
        if !annotations.is_empty() {
            entry.annotations = annotations;
        }
        if let Some(name) = name {
            let list = if is_digest {
                &mut entry.repo_digests
            } else {
                &mut entry.repo_tags
            };
            if !list.iter().any(|n| n == name) {
                list.push(name.to_owned());
                list.sort();
            }
        }
    }

    /// The id of an image recorded under a repo digest naming `manifest`
    /// (`sha256:...`) in any repository: the same manifest is the same module.
    pub(crate) fn by_manifest(&self, manifest: &str) -> Option<String> {
        let suffix = format!("@{manifest}");
        self.images
            .iter()
            .find(|(_, e)| e.repo_digests.iter().any(|d| d.ends_with(&suffix)))
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn lookups_by_tag_digest_id_and_prefix() {
        let mut index = Index::default();
        let a = format!("sha256:ab{}", "0".repeat(62));
        let b = format!("sha256:ac{}", "0".repeat(62));
        index.record(
            &a,
            1,
            Some("docker.io/library/hello:latest"),
            BTreeMap::new(),
        );
        let digest = format!("localhost:5000/x@{}", id('d'));
        index.record(&a, 1, Some(&digest), BTreeMap::new());
        index.record(&b, 2, Some("localhost:5000/x:v1"), BTreeMap::new());

        assert_eq!(index.lookup("hello").unwrap(), Some(a.clone()));
        assert_eq!(index.lookup("hello:latest").unwrap(), Some(a.clone()));
        assert_eq!(index.lookup(&digest).unwrap(), Some(a.clone()));
        assert_eq!(index.lookup(&a).unwrap(), Some(a.clone()));
        assert_eq!(index.lookup("ab").unwrap(), Some(a.clone()));
        assert_eq!(index.lookup("sha256:ac").unwrap(), Some(b.clone()));
        assert!(matches!(
            index.lookup("a"),
            Err(ImageError::Ambiguous { count: 2, .. })
        ));
        assert_eq!(index.lookup("localhost:5000/x:v2").unwrap(), None);
        assert_eq!(index.lookup(&id('f')).unwrap(), None);
        assert!(matches!(
            index.lookup("Not A Ref"),
            Err(ImageError::InvalidReference { .. })
        ));
    }

    #[test]
    fn a_tag_moves_to_the_image_it_now_names() {
        let mut index = Index::default();
        index.record(&id('a'), 1, Some("r/x:v1"), BTreeMap::new());
        index.record(&id('b'), 1, Some("r/x:v1"), BTreeMap::new());
        assert!(index.images[&id('a')].repo_tags.is_empty());
        assert_eq!(index.images[&id('b')].repo_tags, ["r/x:v1"]);
    }

    #[test]
    fn a_foreign_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        assert!(Index::load(&path).unwrap().images.is_empty());
        for bad in [
            &b"not json"[..],
            br#"{"version":99,"images":{}}"#,
            br#"{"version":1,"images":{"x":{"repoTags":[],"repoDigests":[],"size":1}}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(matches!(
                Index::load(&path),
                Err(ImageError::Corrupt { .. })
            ));
        }
    }
}
