//! [`CachedIndex`]: the parsed index kept in memory while its file stays
//! the same, so that a lookup (every CreateContainer makes one) costs a
//! `stat`, not a read and a parse.
//!
//! The index is only ever replaced whole, by `rename` of a new file (a
//! writer in this process or another, such as `shoal image import`), so
//! a new index is a new inode. The cache holds the file it parsed open:
//! while it does, no new file can be given that inode's number, so the same
//! device and inode number (with the same length and times, in case
//! someone edits the file in place) means the same bytes.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::ImageError;
use crate::index::Index;

/// The index as last read, and the file it was read from.
#[derive(Debug, Default)]
pub(crate) struct CachedIndex {
    slot: Mutex<Option<Snapshot>>,
}

#[derive(Debug)]
struct Snapshot {
    /// Held open so that its inode number stays taken.
    _file: File,
    key: Key,
    index: Arc<Index>,
}

/// What tells two versions of the file apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Key {
    fn of(m: &Metadata) -> Self {
        Key {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl CachedIndex {
    /// The index at `path` as it is now (a missing file is an empty index):
    /// the parsed copy if the file is the one it was parsed from, else the
    /// file read and parsed again.
    pub(crate) fn get(&self, path: &Path) -> Result<Arc<Index>, ImageError> {
        let now = match std::fs::metadata(path) {
            Ok(m) => Key::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget();
                return Ok(Arc::default());
            }
            Err(e) => return Err(ImageError::io("read", path)(e)),
        };
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref().filter(|s| s.key == now) {
            return Ok(s.index.clone());
        }
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *slot = None;
                return Ok(Arc::default());
            }
            Err(e) => return Err(ImageError::io("read", path)(e)),
        };
        // Keyed on the file read, which may be newer than the one stat'ed.
        let meta = file.metadata().map_err(ImageError::io("read", path))?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes)
            .map_err(ImageError::io("read", path))?;
        let index = Arc::new(Index::parse(&bytes, path)?);
        // A file still being written in place (not by this crate) is not
        // kept: its length or times would change under the key.
        let after = file.metadata().map_err(ImageError::io("read", path))?;
        *slot = (Key::of(&after) == Key::of(&meta)).then(|| Snapshot {
            _file: file,
            key: Key::of(&meta),
            index: index.clone(),
        });
        Ok(index)
    }

    /// Drops the parsed copy (after this process replaced the file).
    pub(crate) fn forget(&self) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn id(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// Replaces the index as the store's writers do: a new file renamed
    /// over it.
    fn replace(path: &Path, index: &Index) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, index.to_bytes()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn an_unchanged_file_is_parsed_once_and_a_replaced_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let cache = CachedIndex::default();
        assert!(cache.get(&path).unwrap().images.is_empty());

        let mut index = Index::default();
        index.record(&id('a'), 1, Some("docker.io/r/x:v1"), BTreeMap::new());
        replace(&path, &index);
        let first = cache.get(&path).unwrap();
        assert_eq!(first.lookup("docker.io/r/x:v1").unwrap(), Some(id('a')));
        assert!(Arc::ptr_eq(&first, &cache.get(&path).unwrap()));

        // Same length, same instant as far as the clock's tick goes: only
        // the inode tells the two apart.
        index.record(&id('b'), 1, Some("docker.io/r/x:v1"), BTreeMap::new());
        index.images.remove(&id('a'));
        replace(&path, &index);
        let second = cache.get(&path).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.lookup("docker.io/r/x:v1").unwrap(), Some(id('b')));

        std::fs::remove_file(&path).unwrap();
        assert!(cache.get(&path).unwrap().images.is_empty());
    }

    #[test]
    fn an_edit_in_place_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let cache = CachedIndex::default();
        let mut index = Index::default();
        index.record(&id('a'), 1, Some("docker.io/r/x:v1"), BTreeMap::new());
        std::fs::write(&path, index.to_bytes()).unwrap();
        assert_eq!(cache.get(&path).unwrap().images.len(), 1);
        index.record(&id('b'), 2, Some("docker.io/r/y:v1"), BTreeMap::new());
        std::fs::write(&path, index.to_bytes()).unwrap();
        assert_eq!(cache.get(&path).unwrap().images.len(), 2);
    }
}
