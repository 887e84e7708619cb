//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log,
//! read from the CRI log files the runtime writes (`path.N` ... `path.1`,
//! then `path`: rotated files, oldest first), with the kubelet's query
//! parameters `follow`, `tailLines`, `previous`, `timestamps`,
//! `sinceSeconds`, `sinceTime` and `limitBytes`. The answer is a raw
//! `text/plain` stream.
//!
//! Following polls the file: new records are sent as they land; a rotation
//! (the path names a new file) is followed through the files rotated since;
//! the stream ends when the container has exited and its log is drained,
//! when the byte limit is reached, or when the client goes away.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State as Shared};
use axum::response::Response;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::State;
use super::crilog::{Filter, Joiner, Line, Output, Tail, parse};
use super::error::Reply;
use super::instances::Instances;

/// How often a followed log is polled for new records.
const POLL: Duration = Duration::from_millis(100);
/// How often a followed container is asked whether it has exited.
const EXIT_CHECK: Duration = Duration::from_millis(500);
/// The most rotated files looked for (`path.1` ... ).
const MAX_ROTATED: usize = 64;
/// Output is sent in chunks of about this size.
const CHUNK: usize = 32 * 1024;

/// The query of a log request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub follow: bool,
    pub previous: bool,
    pub tail: Option<usize>,
    pub filter: Filter,
}

fn flag(name: &str, value: &str) -> Result<bool, Reply> {
    match value {
        "" | "1" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "false" | "False" | "FALSE" => Ok(false),
        _ => Err(Reply::bad_request(format!(
            "{name}={value:?}: expected true or false"
        ))),
    }
}

fn number(name: &str, value: &str) -> Result<i64, Reply> {
    value
        .parse()
        .map_err(|_| Reply::bad_request(format!("{name}={value:?}: expected a whole number")))
}

impl LogQuery {
    /// Parses the query string; unknown parameters are ignored.
    pub fn parse(query: Option<&str>, now: Timestamp) -> Result<LogQuery, Reply> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| Reply::bad_request(format!("the query is not URL-encoded: {e}")))?;
        let mut q = LogQuery::default();
        let (mut since_seconds, mut since_time) = (None, None);
        for (k, v) in &pairs {
            match k.as_str() {
                "follow" => q.follow = flag(k, v)?,
                "previous" => q.previous = flag(k, v)?,
                "timestamps" => q.filter.timestamps = flag(k, v)?,
                "tailLines" => {
                    let n = number(k, v)?;
                    // The kubelet reads a negative tail as "all".
                    q.tail = usize::try_from(n).ok();
                }
                "limitBytes" => {
                    let n = number(k, v)?;
                    if n < 1 {
                        return Err(Reply::bad_request("limitBytes must be greater than zero"));
                    }
                    q.filter.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = number(k, v)?;
                    if n < 1 {
                        return Err(Reply::bad_request("sinceSeconds must be greater than zero"));
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    since_time = Some(v.parse::<Timestamp>().map_err(|_| {
                        Reply::bad_request(format!("sinceTime={v:?}: expected an RFC 3339 time"))
                    })?)
                }
                _ => {}
            }
        }
        q.filter.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err(Reply::bad_request(
                    "at most one of sinceTime or sinceSeconds may be specified",
                ));
            }
            (Some(s), None) => now.checked_sub(SignedDuration::from_secs(s)).ok(),
            (None, t) => t,
        };
        Ok(q)
    }
}

pub(super) async fn container_logs(
    Shared(state): Shared<Arc<State>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Reply> {
    let q = LogQuery::parse(query.as_deref(), Timestamp::now())?;
    let instances = Instances::find(&state.cri, &namespace, &pod, &container).await?;
    let instance = if q.previous {
        instances.previous()?
    } else {
        instances.current()
    };
    let status = state
        .cri
        .container_status(&instance.id)
        .await
        .map_err(Reply::runtime)?
        .ok_or_else(|| Reply::not_found(format!("container {} is gone", instance.id)))?;
    if status.log_path.is_empty() {
        return Err(Reply::not_found(format!(
            "container \"{container}\" in pod \"{namespace}/{pod}\" has no log file"
        )));
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let follow = Follow {
        state: state.clone(),
        id: instance.id.clone(),
        path: PathBuf::from(status.log_path),
        tx,
    };
    tokio::spawn(follow.run(q).instrument(tracing::Span::current()));
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, std::io::Error>))
    }));
    Ok(Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(body)
        .unwrap_or_default())
}

/// Records in, shown bytes out: the parse, join, tail and filter steps.
#[derive(Debug)]
struct Reader {
    pending: Vec<u8>,
    joiner: Joiner,
    /// Until the history is read, when a tail was asked for.
    tail: Option<Tail>,
    output: Output,
    out: Vec<u8>,
}

impl Reader {
    fn new(q: &LogQuery) -> Reader {
        Reader {
            pending: Vec::new(),
            joiner: Joiner::default(),
            tail: q.tail.map(Tail::new),
            output: Output::new(q.filter.clone()),
            out: Vec::new(),
        }
    }

    /// Feeds bytes of the log; whole records are taken, the rest kept.
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let whole: Vec<u8> = self.pending.drain(..=end).collect();
        for rec in whole.split_inclusive(|&b| b == b'\n') {
            if let Ok(r) = parse(rec)
                && let Some(line) = self.joiner.push(&r)
            {
                self.line(line);
            }
        }
    }

    fn line(&mut self, line: Line) {
        match &mut self.tail {
            Some(t) => {
                if self.output.wants(line.time) {
                    t.push(line);
                }
            }
            None => self.output.write(&line, &mut self.out),
        }
    }

    /// The files that were there at the start are read: the tail is shown.
    fn history_read(&mut self) {
        if let Some(t) = self.tail.take() {
            for line in t.into_lines() {
                self.output.write(&line, &mut self.out);
            }
        }
    }

    /// The log has ended: a record without its newline, and partial lines.
    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        if let Ok(r) = parse(&rest)
            && let Some(line) = self.joiner.push(&r)
        {
            self.line(line);
        }
        for line in self.joiner.finish() {
            self.line(line);
        }
        self.history_read();
    }
}

/// `path.i`.
fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The rotated files that exist, newest first (`path.1`, `path.2`, ...),
/// from the directory (a rotation in progress may leave a gap).
fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix(&prefix)?
                .parse()
                .ok()?;
            (1..=MAX_ROTATED)
                .contains(&n)
                .then(|| (n, rotated(path, n)))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The inodes of the rotated files (oldest first) and the current one.
async fn snapshot(path: &Path) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for p in rotated_files(path).iter().rev().chain([&path.to_owned()]) {
        out.push(inode(p).await);
    }
    out
}

/// Opens the rotated files (oldest first) and the current one, retrying
/// until no rotation ran in between, so that none is skipped or read twice.
async fn open_all(path: &Path) -> (Vec<tokio::fs::File>, Option<tokio::fs::File>) {
    let mut tries = 0;
    loop {
        tries += 1;
        let before = snapshot(path).await;
        let mut older = Vec::new();
        let mut opened = Vec::new();
        for p in rotated_files(path).into_iter().rev() {
            if let Ok(f) = tokio::fs::File::open(&p).await {
                opened.push(f.metadata().await.ok().map(|m| m.ino()));
                older.push(f);
            }
        }
        let current = tokio::fs::File::open(path).await.ok();
        opened.push(match &current {
            Some(f) => f.metadata().await.ok().map(|m| m.ino()),
            None => None,
        });
        if (opened == before && snapshot(path).await == before) || tries >= 50 {
            return (older, current);
        }
    }
}

async fn inode(path: &Path) -> Option<u64> {
    tokio::fs::metadata(path).await.ok().map(|m| m.ino())
}

/// The files rotated after the one with inode `ours` and before the one
/// with inode `next`, oldest first, opened (so that further renames do not
/// matter). If `ours` is gone (rotated out), every rotated file.
async fn rotated_since(path: &Path, ours: Option<u64>, next: Option<u64>) -> Vec<tokio::fs::File> {
    let mut newer = Vec::new();
    for p in rotated_files(path) {
        let Ok(f) = tokio::fs::File::open(&p).await else {
            continue;
        };
        let ino = f.metadata().await.ok().map(|m| m.ino());
        if ino == ours {
            break;
        }
        if ino != next {
            newer.push(f);
        }
    }
    newer.reverse();
    newer
}

/// One log request's reading task.
struct Follow {
    state: Arc<State>,
    id: String,
    path: PathBuf,
    tx: mpsc::Sender<Bytes>,
}

/// Reading stopped early: the client went away or the byte limit was
/// reached.
struct Stop;

impl Follow {
    async fn run(self, q: LogQuery) {
        let mut reader = Reader::new(&q);
        // Stopping early needs no clean-up: dropping the sender ends the body.
        let _ = self.read_all(&mut reader, &q).await;
    }

    async fn send(&self, reader: &mut Reader, force: bool) -> Result<(), Stop> {
        let full = reader.output.full();
        if reader.out.len() >= CHUNK || ((force || full) && !reader.out.is_empty()) {
            let chunk = Bytes::from(std::mem::take(&mut reader.out));
            self.tx.send(chunk).await.map_err(|_| Stop)?;
        }
        if full {
            return Err(Stop);
        }
        Ok(())
    }

    /// Reads `file` from where it is to its end.
    async fn drain(&self, file: &mut tokio::fs::File, reader: &mut Reader) -> Result<u64, Stop> {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the container log");
                    return Ok(total);
                }
            };
            total += n as u64;
            reader.feed(&buf[..n]);
            self.send(reader, false).await?;
        }
    }

    async fn read_all(&self, reader: &mut Reader, q: &LogQuery) -> Result<(), Stop> {
        // Open every file first, so that a rotation while reading loses nothing.
        let (older, mut current) = open_all(&self.path).await;
        for mut f in older {
            self.drain(&mut f, reader).await?;
        }
        if let Some(f) = current.as_mut() {
            self.drain(f, reader).await?;
        }
        if !q.follow {
            reader.finish();
            return self.send(reader, true).await;
        }
        reader.history_read();
        self.send(reader, true).await?;
        self.follow(current, reader).await
    }

    async fn follow(
        &self,
        mut current: Option<tokio::fs::File>,
        reader: &mut Reader,
    ) -> Result<(), Stop> {
        let mut last_check = Instant::now();
        let mut exited = false;
        loop {
            let mut got = 0;
            if let Some(f) = current.as_mut() {
                got = self.drain(f, reader).await?;
                // Cut back by a single-file rotation (truncated in place).
                let pos = f.stream_position().await.unwrap_or(0);
                let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
                if len < pos {
                    let _ = f.seek(std::io::SeekFrom::Start(0)).await;
                    continue;
                }
            }
            // Rotated: finish the old file, read the files rotated since, go on
            // with the new one.
            let ours = match current.as_ref() {
                Some(f) => f.metadata().await.ok().map(|m| m.ino()),
                None => None,
            };
            let now_at_path = inode(&self.path).await;
            if now_at_path.is_some() && now_at_path != ours {
                let Ok(next) = tokio::fs::File::open(&self.path).await else {
                    continue;
                };
                let next_ino = next.metadata().await.ok().map(|m| m.ino());
                if let Some(f) = current.as_mut() {
                    self.drain(f, reader).await?;
                }
                if ours.is_some() {
                    for mut f in rotated_since(&self.path, ours, next_ino).await {
                        self.drain(&mut f, reader).await?;
                    }
                }
                current = Some(next);
                continue;
            }
            self.send(reader, true).await?;
            if exited {
                reader.finish();
                return self.send(reader, true).await;
            }
            if got == 0 {
                if self.tx.is_closed() {
                    return Err(Stop);
                }
                if last_check.elapsed() >= EXIT_CHECK {
                    last_check = Instant::now();
                    // Exited (or gone): one more pass drains what it wrote last.
                    exited = match self.state.cri.container_status(&self.id).await {
                        Ok(Some(s)) => {
                            s.state == k8s_cri::v1::ContainerState::ContainerExited as i32
                        }
                        Ok(None) => true,
                        Err(e) => e.is_not_found(),
                    };
                    if exited {
                        continue;
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let ok = |q: &str| LogQuery::parse(Some(q), now).unwrap();
        assert_eq!(LogQuery::parse(None, now).unwrap(), LogQuery::default());
        let q = ok("follow=true&tailLines=10&previous=1&timestamps=true&limitBytes=5&x=y");
        assert!(q.follow && q.previous && q.filter.timestamps);
        assert_eq!((q.tail, q.filter.limit_bytes), (Some(10), Some(5)));
        assert_eq!(ok("tailLines=-1").tail, None);
        assert_eq!(
            ok("sinceSeconds=60").filter.since,
            Some("2026-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            ok("sinceTime=2026-01-01T00%3A00%3A30Z").filter.since,
            Some("2026-01-01T00:00:30Z".parse().unwrap())
        );
        for bad in [
            "follow=maybe",
            "tailLines=x",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceTime=yesterday",
            "sinceSeconds=1&sinceTime=2026-01-01T00:00:00Z",
        ] {
            let e = LogQuery::parse(Some(bad), now).unwrap_err();
            assert_eq!(e.status, http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn the_reader_keeps_a_record_cut_in_the_middle() {
        let q = LogQuery::default();
        let mut r = Reader::new(&q);
        r.feed(b"2026-01-01T00:00:01Z stdout F a\n2026-01-01T00:00:02Z std");
        assert_eq!(r.out, b"a\n");
        r.feed(b"out P b\n2026-01-01T00:00:03Z stdout F c\n");
        assert_eq!(r.out, b"a\nbc\n");
        r.feed(b"2026-01-01T00:00:04Z stdout P d");
        r.finish();
        assert_eq!(r.out, b"a\nbc\nd");
    }

    #[test]
    fn the_tail_is_shown_when_the_history_is_read() {
        let q = LogQuery {
            tail: Some(1),
            ..LogQuery::default()
        };
        let mut r = Reader::new(&q);
        r.feed(b"2026-01-01T00:00:01Z stdout F a\n2026-01-01T00:00:02Z stdout F b\n");
        assert!(r.out.is_empty());
        r.history_read();
        r.feed(b"2026-01-01T00:00:03Z stdout F c\n");
        assert_eq!(r.out, b"b\nc\n");
    }
}
