//! Container logs in the CRI format the kubelet reads, one record a line:
//! `2016-10-06T00:17:09.669794202Z stdout F the line`. `F` ends a line, `P`
//! is part of one: a line longer than [`MAX_LINE`] is cut into `P` pieces,
//! and output left without a newline when the guest ends is written as `P`
//! (as containerd does).
//!
//! [`LogFile`] is the file both streams of a container share. It rotates by
//! size (`path` -> `path.1` -> ... -> `path.{max_files-1}`, the oldest
//! dropped), so a flood keeps at most `max_files` files of `max_bytes` each,
//! and [`LogFile::reopen`] opens `path` afresh after the kubelet renamed it.
//! A failed write drops the output (with one warning) rather than failing
//! the guest, as containerd keeps draining a container whose log is broken.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use wasi_shim::OutputSink;

/// The longest line content written in one record (containerd's default
/// `max_container_log_line_size`); longer lines become `P` records.
pub const MAX_LINE: usize = 16 * 1024;

/// A container's log file, shared by its stdout and stderr sinks.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    inner: Mutex<Inner>,
    warned: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    file: File,
    size: u64,
}

impl LogFile {
    /// Opens (creating it and its directory) the log at `path` for appending.
    /// The kubelet creates the directory first, so the common case is one
    /// `open` that creates the file: the directory is only made when that
    /// fails for want of it, and an existing file's size only read when
    /// there is one.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<Self> {
        let (file, size) = match open_append(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                open_append(path)?
            }
            other => other?,
        };
        Ok(Self {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
            inner: Mutex::new(Inner { file, size }),
            warned: AtomicBool::new(false),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `path` again (the kubelet renamed the old file away), so new
    /// records go to a fresh file.
    pub fn reopen(&self) -> io::Result<()> {
        let (file, size) = open_append(&self.path)?;
        let mut inner = self.lock();
        *inner = Inner { file, size };
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends whole records (each ends with `\n`), rotating between records
    /// when the file would pass `max_bytes`.
    fn append(&self, mut records: &[u8]) {
        let mut inner = self.lock();
        while !records.is_empty() {
            let room = self.max_bytes.saturating_sub(inner.size) as usize;
            let take = if records.len() <= room {
                records.len()
            } else {
                match records[..room].iter().rposition(|&b| b == b'\n') {
                    Some(end) => end + 1,
                    // Not one whole record fits: rotate first, unless the file
                    // is empty (a record larger than the limit goes alone).
                    None if inner.size > 0 => 0,
                    None => records
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(records.len(), |end| end + 1),
                }
            };
            if take > 0 {
                if let Err(e) = inner.file.write_all(&records[..take]) {
                    self.warn(&e);
                    return;
                }
                inner.size += take as u64;
                records = &records[take..];
            }
            if (inner.size >= self.max_bytes || (take == 0 && !records.is_empty()))
                && let Err(e) = self.rotate(&mut inner)
            {
                self.warn(&e);
                return;
            }
        }
    }

    /// `path.{n-1}` -> `path.n` ... `path` -> `path.1`, then a new `path`.
    fn rotate(&self, inner: &mut Inner) -> io::Result<()> {
        if self.max_files > 1 {
            for i in (1..self.max_files - 1).rev() {
                let from = rotated(&self.path, i);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, i + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
            let (file, size) = open_append(&self.path)?;
            *inner = Inner { file, size };
        } else {
            inner.file.set_len(0)?;
            inner.size = 0;
        }
        Ok(())
    }

    fn warn(&self, e: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the container log; dropping output");
        }
    }
}

/// The bytes and number of files of a log at `path` and its rotated copies
/// (`path.1` ... `path.{max_files-1}`).
pub fn disk_usage(path: &Path, max_files: usize) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    for i in 0..max_files.max(1) {
        let p = if i == 0 {
            path.to_owned()
        } else {
            rotated(path, i)
        };
        if let Ok(m) = fs::metadata(&p) {
            bytes += m.len();
            files += 1;
        }
    }
    (bytes, files)
}

/// `path.i`.
pub fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Opens `path` for appending, creating it; with its size (0 without a
/// `stat` when this call created it).
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    match OpenOptions::new().create_new(true).append(true).open(path) {
        Ok(file) => Ok((file, 0)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let file = OpenOptions::new().append(true).open(path)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        }
        Err(e) => Err(e),
    }
}

/// One stream (`stdout` or `stderr`) of a container, turning guest writes
/// into CRI records in its [`LogFile`].
#[derive(Debug)]
pub struct StreamSink {
    log: std::sync::Arc<LogFile>,
    stream: &'static str,
    /// Bytes of a line not yet ended by a newline; `None` once closed.
    pending: Mutex<Option<Vec<u8>>>,
}

impl StreamSink {
    /// A sink for `stream` (`"stdout"` or `"stderr"`) into `log`.
    pub fn new(log: std::sync::Arc<LogFile>, stream: &'static str) -> Self {
        Self {
            log,
            stream,
            pending: Mutex::new(Some(Vec::new())),
        }
    }

    /// Ends the stream when the guest has ended: what is left of an
    /// unfinished line is written as a `P` record, and later writes are
    /// dropped. (wasmtime-wasi hands output to a worker task, so after a
    /// kill a last chunk may still arrive; it must not land after the exit
    /// was recorded.)
    pub fn close(&self) {
        let rest = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        if !rest.is_empty() {
            let mut out = Vec::with_capacity(rest.len() + 48);
            record(&mut out, &timestamp(), self.stream, 'P', &rest);
            self.log.append(&out);
        }
    }
}

impl OutputSink for StreamSink {
    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let mut guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pending) = guard.as_mut() else {
            return Ok(());
        };
        let now = timestamp();
        let mut out = Vec::with_capacity(bytes.len() + 64);
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = &rest[..nl];
            rest = &rest[nl + 1..];
            if pending.is_empty() {
                line = line.strip_suffix(b"\r").unwrap_or(line);
                push_line(&mut out, &now, self.stream, line);
            } else {
                pending.extend_from_slice(line);
                let full = std::mem::take(pending);
                let full = full.strip_suffix(b"\r").unwrap_or(&full);
                push_line(&mut out, &now, self.stream, full);
            }
        }
        pending.extend_from_slice(rest);
        while pending.len() > MAX_LINE {
            record(&mut out, &now, self.stream, 'P', &pending[..MAX_LINE]);
            pending.drain(..MAX_LINE);
        }
        // Append under the stream's lock, so that a close() cannot slip a
        // record in between.
        if !out.is_empty() {
            self.log.append(&out);
        }
        drop(guard);
        Ok(())
    }
}

/// One line: `P` pieces of [`MAX_LINE`] bytes, then the `F` end.
fn push_line(out: &mut Vec<u8>, ts: &str, stream: &str, mut line: &[u8]) {
    while line.len() > MAX_LINE {
        record(out, ts, stream, 'P', &line[..MAX_LINE]);
        line = &line[MAX_LINE..];
    }
    record(out, ts, stream, 'F', line);
}

fn record(out: &mut Vec<u8>, ts: &str, stream: &str, tag: char, content: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.push(b' ');
    out.push(tag as u8);
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Now as RFC 3339 in UTC with nanoseconds, as the kubelet parses it.
pub fn timestamp() -> String {
    let now = jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn records(path: &Path) -> Vec<(String, String, String)> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(
                    jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", ts).is_ok()
                        || ts.parse::<jiff::Timestamp>().is_ok(),
                    "timestamp {ts}"
                );
                (
                    it.next().unwrap().to_owned(),
                    it.next().unwrap().to_owned(),
                    it.next().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_partials_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = Arc::new(LogFile::open(&path, 1 << 20, 3).unwrap());
        let out = StreamSink::new(log.clone(), "stdout");
        let err = StreamSink::new(log.clone(), "stderr");
        out.write(b"one\ntwo\r\nthr").unwrap();
        err.write(b"oops\n").unwrap();
        out.write(b"ee\n\nlast").unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        err.write(&long).unwrap();
        err.write(b"\n").unwrap();
        out.close();
        err.close();
        out.write(b"after the end\n").unwrap();
        let r = records(&path);
        let x = "x".repeat(MAX_LINE);
        let want: Vec<(&str, &str, &str)> = vec![
            ("stdout", "F", "one"),
            ("stdout", "F", "two"),
            ("stderr", "F", "oops"),
            ("stdout", "F", "three"),
            ("stdout", "F", ""),
            ("stderr", "P", &x),
            ("stderr", "P", &x),
            ("stderr", "F", "xxxxxxxxxx"),
            ("stdout", "P", "last"),
        ];
        let got: Vec<(&str, &str, &str)> = r
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn rotation_bounds_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = Arc::new(LogFile::open(&path, 1000, 3).unwrap());
        let out = StreamSink::new(log.clone(), "stdout");
        for i in 0..500 {
            out.write(format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(path.exists() && rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "at most 3 files");
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let len = fs::metadata(&p).unwrap().len();
            assert!(len <= 1000, "{} is {len} bytes", p.display());
        }
        // The newest lines are in the current file, whole.
        let last = records(&path).pop().unwrap();
        assert_eq!(last.2, "line 499");
        let (bytes, files) = disk_usage(&path, 3);
        assert_eq!(files, 3);
        assert!(bytes <= 3000);
    }

    #[test]
    fn one_file_means_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = Arc::new(LogFile::open(&path, 200, 1).unwrap());
        let out = StreamSink::new(log, "stdout");
        for i in 0..100 {
            out.write(format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() <= 200);
        assert!(!rotated(&path, 1).exists());
    }

    #[test]
    fn reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = Arc::new(LogFile::open(&path, 1 << 20, 2).unwrap());
        let out = StreamSink::new(log.clone(), "stdout");
        out.write(b"before\n").unwrap();
        let moved = dir.path().join("0.log.20240101-000000");
        fs::rename(&path, &moved).unwrap();
        log.reopen().unwrap();
        out.write(b"after\n").unwrap();
        assert_eq!(records(&moved)[0].2, "before");
        assert_eq!(records(&path)[0].2, "after");
    }

    #[test]
    fn open_makes_a_missing_directory_and_appends_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web").join("0.log");
        let log = Arc::new(LogFile::open(&path, 1000, 2).unwrap());
        StreamSink::new(log, "stdout").write(b"first\n").unwrap();
        let size = fs::metadata(&path).unwrap().len();
        // Opened again (a runtime restart): appends, and rotates counting
        // what is there.
        let log = Arc::new(LogFile::open(&path, size + 10, 2).unwrap());
        StreamSink::new(log, "stdout").write(b"second\n").unwrap();
        assert_eq!(records(&rotated(&path, 1))[0].2, "first");
        assert_eq!(records(&path)[0].2, "second");
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let ts = timestamp();
        assert_eq!(ts.len(), "2016-10-06T00:17:09.669794202Z".len(), "{ts}");
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    }
}
