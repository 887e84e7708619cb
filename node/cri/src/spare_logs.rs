//! [`SpareLogs`]: empty log files made ahead of time in a directory of the
//! runtime's (`DATA_DIR/cri/spare-logs`), so that StartContainer puts one at
//! the container's log path with a hard link (a new name for an inode that
//! exists) instead of allocating an inode on its path. Allocating one is
//! the slowest step of a start on ext4, and far slower for about 30 s after
//! many files were deleted when the filesystem has no journal (it skips the
//! recently freed inodes one by one).
//!
//! A thread keeps [`SPARES`] files ready, made as `open_append` would make
//! the log (same mode and owner). `link` fails when the log path exists, as
//! the exclusive create it replaces does; then, or without a spare, or when
//! the log directory is missing, the caller creates the file as before. A
//! link that fails for another reason (the log directory on another
//! filesystem) turns the spares off for the life of the runtime. The
//! spare's own name is then unlinked, which frees nothing: the log holds the
//! inode.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// How many spare files are kept ready.
pub const SPARES: usize = 16;

/// The spare files and the thread that makes them.
#[derive(Debug)]
pub struct SpareLogs {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Made and open for appending.
    ready: Vec<(PathBuf, File)>,
    /// The next file's number.
    next: u64,
    /// Linking does not work here: make no more.
    off: bool,
    stop: bool,
}

impl SpareLogs {
    /// Starts making spares in `dir` (created; files an earlier run left
    /// there are removed).
    pub fn open(dir: &Path) -> io::Result<Self> {
        if dir.is_dir() {
            for entry in fs::read_dir(dir)? {
                let _ = fs::remove_file(entry?.path());
            }
        }
        fs::create_dir_all(dir)?;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let maker = shared.clone();
        std::thread::Builder::new()
            .name("cri-spare-logs".into())
            .spawn(move || maker.make_loop())?;
        Ok(Self { shared })
    }

    /// Puts a spare file at `path` and answers it open for appending, or
    /// `None` when the caller must create it: no spare is ready, `path`
    /// exists, its directory is missing, or linking does not work here.
    pub fn take(&self, path: &Path) -> Option<File> {
        let (spare, file) = {
            let mut s = self.shared.lock();
            if s.off {
                return None;
            }
            s.ready.pop()?
        };
        match fs::hard_link(&spare, path) {
            Ok(()) => {
                let _ = fs::remove_file(&spare);
                self.shared.wake.notify_one();
                Some(file)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                ) =>
            {
                self.shared.lock().ready.push((spare, file));
                None
            }
            Err(e) => {
                tracing::info!(
                    dir = %self.shared.dir.display(),
                    log = %path.display(),
                    error = %e,
                    "cannot link spare log files into the log directory: creating each log file instead"
                );
                let _ = fs::remove_file(&spare);
                self.shared.lock().off = true;
                None
            }
        }
    }

    /// The spares ready now.
    #[cfg(test)]
    fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }
}

impl Drop for SpareLogs {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `SPARES` files ready until stopped; on an error it stops
    /// making them (the callers create their logs themselves).
    fn make_loop(&self) {
        let mut s = self.lock();
        loop {
            while !s.stop && (s.off || s.ready.len() >= SPARES) {
                s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.stop {
                break;
            }
            let path = self.dir.join(s.next.to_string());
            s.next += 1;
            drop(s);
            let made = OpenOptions::new().create_new(true).append(true).open(&path);
            s = self.lock();
            match made {
                Ok(file) => s.ready.push((path, file)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot make a spare log file: creating each log file instead");
                    s.off = true;
                }
            }
        }
        // Stopped: the spares are of no more use.
        for (path, _) in s.ready.drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use super::*;

    fn filled(spares: &SpareLogs) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while spares.ready() < SPARES {
            assert!(Instant::now() < deadline, "the spares were not made");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_spare_becomes_the_log_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let spares = SpareLogs::open(&dir.path().join("spares")).unwrap();
        filled(&spares);
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        let log = logs.join("0.log");
        let mut file = spares.take(&log).expect("a spare was ready");
        file.write_all(b"line\n").unwrap();
        let mut read = String::new();
        File::open(&log).unwrap().read_to_string(&mut read).unwrap();
        assert_eq!(read, "line\n");
        // The spare's own name is gone, and the thread makes another.
        assert_eq!(
            fs::read_dir(dir.path().join("spares")).unwrap().count(),
            SPARES - 1
        );
        filled(&spares);
        assert_eq!(
            fs::read_dir(dir.path().join("spares")).unwrap().count(),
            SPARES
        );
    }

    #[test]
    fn an_existing_log_or_a_missing_directory_is_left_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let spares = SpareLogs::open(&dir.path().join("spares")).unwrap();
        filled(&spares);
        let log = dir.path().join("0.log");
        fs::write(&log, "earlier output\n").unwrap();
        assert!(spares.take(&log).is_none());
        assert_eq!(fs::read_to_string(&log).unwrap(), "earlier output\n");
        assert!(spares.take(&dir.path().join("missing/0.log")).is_none());
        // Neither used up a spare.
        assert_eq!(spares.ready(), SPARES);
    }

    #[test]
    fn leftovers_are_removed_and_the_spares_go_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spare_dir = dir.path().join("spares");
        fs::create_dir(&spare_dir).unwrap();
        fs::write(spare_dir.join("old"), "").unwrap();
        let spares = SpareLogs::open(&spare_dir).unwrap();
        assert!(!spare_dir.join("old").exists());
        filled(&spares);
        drop(spares);
        let deadline = Instant::now() + Duration::from_secs(30);
        while fs::read_dir(&spare_dir).unwrap().count() > 0 {
            assert!(Instant::now() < deadline, "the spares were not removed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
