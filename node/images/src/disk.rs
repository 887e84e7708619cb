//! The store's files and how they change safely:
//!
//! ```text
//! DIR/blobs/sha256/<hex>   module bytes, read-only, named by their digest
//! DIR/index.json           tags, repo digests and annotations per image id
//! DIR/index.lock           held (flock) while the index or blobs change
//! DIR/tmp/*.part           downloads in progress, each held (flock) by its writer
//! ```
//!
//! A blob appears by `rename` of a finished, verified, fsynced temporary
//! file, and the index by `rename` of a fsynced temporary copy, both under
//! the lock; so a reader never sees half a file, and a process killed at any
//! point leaves only temporary files, which the next [`Disk::sweep`]
//! removes once no process holds them.

use crate::ImageError;
use crate::digest::Digester;
use crate::wasm;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Temporary files younger than this are never swept.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub(crate) struct Disk {
    pub root: PathBuf,
    pub blobs: PathBuf,
    pub tmp: PathBuf,
    pub index: PathBuf,
    lock: PathBuf,
}

/// The store lock, held until dropped.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// A file being written under `DIR/tmp`, locked by this process; removed on
/// drop unless it became a blob.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    file: File,
    kept: bool,
}

impl TempFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Flushes the bytes to disk.
    pub(crate) fn sync(&self) -> Result<(), ImageError> {
        self.file
            .sync_all()
            .map_err(ImageError::io("write", &self.path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Disk {
    pub(crate) fn new(root: PathBuf) -> Disk {
        Disk {
            blobs: root.join("blobs").join("sha256"),
            tmp: root.join("tmp"),
            index: root.join("index.json"),
            lock: root.join("index.lock"),
            root,
        }
    }

    /// Creates the directories.
    pub(crate) fn create(&self) -> Result<(), ImageError> {
        for dir in [&self.root, &self.blobs, &self.tmp] {
            fs::create_dir_all(dir).map_err(ImageError::io("create the directory", dir))?;
        }
        Ok(())
    }

    pub(crate) fn blob(&self, hex: &str) -> PathBuf {
        self.blobs.join(hex)
    }

    /// Takes the store lock, waiting for other processes and threads.
    pub(crate) fn lock(&self) -> Result<Lock, ImageError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(ImageError::io("open", &self.lock))?;
        file.lock().map_err(ImageError::io("lock", &self.lock))?;
        Ok(Lock { _file: file })
    }

    /// A new temporary file, locked so that no sweep removes it.
    pub(crate) fn temp(&self) -> Result<TempFile, ImageError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!(
            "{}-{}-{nanos}.part",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.tmp.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(ImageError::io("create", &path))?;
        file.lock().map_err(ImageError::io("lock", &path))?;
        Ok(TempFile {
            path,
            file,
            kept: false,
        })
    }

    /// Removes temporary files no process holds (left by killed processes).
    pub(crate) fn sweep(&self) -> Result<usize, ImageError> {
        let mut removed = 0;
        let entries = fs::read_dir(&self.tmp).map_err(ImageError::io("read", &self.tmp))?;
        for entry in entries.flatten() {
            let path = entry.path();
            // A file this young may be one whose writer has not locked it yet.
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < SWEEP_MIN_AGE);
            if young {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Moves a finished temporary file to `blobs/sha256/<hex>` (read-only),
    /// unless that blob is there already. Needs the lock.
    pub(crate) fn place(
        &self,
        mut temp: TempFile,
        hex: &str,
        _: &Lock,
    ) -> Result<PathBuf, ImageError> {
        let path = self.blob(hex);
        if path.exists() {
            return Ok(path);
        }
        temp.sync()?;
        let mut perms = temp
            .file
            .metadata()
            .map_err(ImageError::io("read", &temp.path))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(&temp.path, perms)
            .map_err(ImageError::io("set permissions on", &temp.path))?;
        fs::rename(&temp.path, &path).map_err(ImageError::io("move a blob to", &path))?;
        temp.kept = true;
        sync_dir(&self.blobs)?;
        Ok(path)
    }

    /// Replaces `path` with `bytes` atomically: a fsynced temporary file
    /// renamed over it, then the directory fsynced.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let mut temp = self.temp()?;
        temp.file
            .write_all(bytes)
            .map_err(ImageError::io("write", &temp.path))?;
        temp.sync()?;
        fs::rename(&temp.path, path).map_err(ImageError::io("replace", path))?;
        temp.kept = true;
        sync_dir(path.parent().unwrap_or(&self.root))
    }
}

/// What [`TempFile::fill`] wrote.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    /// `sha256:<hex>` of the bytes.
    pub sha256: String,
    pub size: u64,
    /// The first bytes (up to the Wasm header's length).
    pub header: Vec<u8>,
}

/// Why [`TempFile::fill`] stopped.
#[derive(Debug)]
pub(crate) enum FillError {
    /// Reading the source failed.
    Read(std::io::Error),
    /// The source holds more than the limit.
    TooLarge,
    /// Writing the temporary file failed.
    Write(ImageError),
}

impl TempFile {
    /// Copies `reader` into the file (at most `limit` bytes), hashing as it
    /// goes, and flushes it to disk.
    pub(crate) fn fill(
        &mut self,
        mut reader: impl std::io::Read,
        limit: u64,
    ) -> Result<Written, FillError> {
        let mut digester = Digester::sha256();
        let mut header = Vec::with_capacity(wasm::HEADER_LEN);
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FillError::Read(e)),
            };
            size += n as u64;
            if size > limit {
                return Err(FillError::TooLarge);
            }
            let chunk = &buf[..n];
            let want = wasm::HEADER_LEN.saturating_sub(header.len()).min(n);
            header.extend_from_slice(&chunk[..want]);
            digester.update(chunk);
            self.file
                .write_all(chunk)
                .map_err(|e| FillError::Write(ImageError::io("write", &self.path)(e)))?;
        }
        self.sync().map_err(FillError::Write)?;
        Ok(Written {
            sha256: digester.finish(),
            size,
            header,
        })
    }
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io("sync the directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_spares_held_temp_files_and_removes_abandoned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path().to_path_buf());
        disk.create().unwrap();
        let held = disk.temp().unwrap();
        // An abandoned file: what a killed writer leaves (nobody holds it),
        // old enough to be swept.
        let abandoned = disk.tmp.join("123-0-0.part");
        fs::write(&abandoned, b"half").unwrap();
        let old = SystemTime::now() - 2 * SWEEP_MIN_AGE;
        File::options()
            .write(true)
            .open(&abandoned)
            .unwrap()
            .set_modified(old)
            .unwrap();
        held.file().set_modified(old).unwrap();
        let young = disk.tmp.join("124-0-0.part");
        fs::write(&young, b"just created").unwrap();
        assert_eq!(disk.sweep().unwrap(), 1);
        assert!(held.path().exists());
        assert!(!abandoned.exists());
        assert!(young.exists());
        let path = held.path().to_path_buf();
        drop(held);
        assert!(!path.exists(), "a dropped temp file is removed");
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path().to_path_buf());
        disk.create().unwrap();
        disk.write_atomic(&disk.index, b"one").unwrap();
        disk.write_atomic(&disk.index, b"two").unwrap();
        assert_eq!(fs::read(&disk.index).unwrap(), b"two");
        assert_eq!(fs::read_dir(&disk.tmp).unwrap().count(), 0);
    }
}
