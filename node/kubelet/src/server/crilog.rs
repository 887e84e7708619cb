//! The CRI log format as the kubelet reads it back: one record a line,
//! `TIMESTAMP STREAM TAG MESSAGE`, where `TAG` is `F` (the record ends a
//! line) or `P` (part of one; the next records continue it). [`Joiner`]
//! joins partial records into whole lines; [`Output`] turns lines into
//! what `kubectl logs` shows (`sinceTime`, `timestamps`, `limitBytes`);
//! [`Tail`] keeps the last `tailLines`.

use std::collections::VecDeque;

use k8s_openapi::jiff::Timestamp;

/// Which stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One parsed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: Timestamp,
    pub stream: Stream,
    /// `P`: the line goes on in the next record.
    pub partial: bool,
    /// The message, without the record's newline.
    pub message: &'a [u8],
}

/// Why a record cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a log record needs a timestamp, a stream and a tag")]
    Short,
    #[error("the log record's timestamp is not RFC 3339")]
    Timestamp,
    #[error("the log record's stream is neither stdout nor stderr")]
    Stream,
    #[error("the log record's tag is neither F nor P")]
    Tag,
}

/// Parses one record (with or without its trailing newline).
pub fn parse(line: &[u8]) -> Result<Record<'_>, RecordError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |&b| b == b' ');
    let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(RecordError::Short);
    };
    let message = parts.next().unwrap_or_default();
    let time = std::str::from_utf8(ts)
        .ok()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .ok_or(RecordError::Timestamp)?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return Err(RecordError::Stream),
    };
    let partial = match tag {
        b"F" => false,
        b"P" => true,
        _ => return Err(RecordError::Tag),
    };
    Ok(Record {
        time,
        stream,
        partial,
        message,
    })
}

/// A whole line: the time of its first record, its bytes, and whether it
/// ended (an `F` record); a line left partial when the log ended has no
/// newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub time: Timestamp,
    pub stream: Stream,
    pub bytes: Vec<u8>,
    pub ended: bool,
}

/// Joins `P` records with the record that ends them. Each stream is joined
/// on its own, as stdout and stderr interleave in one file.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: [Option<Line>; 2],
}

impl Joiner {
    /// Feeds one record; gives back the line it ended, if any.
    pub fn push(&mut self, record: &Record<'_>) -> Option<Line> {
        let slot = &mut self.pending[record.stream as usize];
        let line = slot.get_or_insert_with(|| Line {
            time: record.time,
            stream: record.stream,
            bytes: Vec::new(),
            ended: false,
        });
        line.bytes.extend_from_slice(record.message);
        if record.partial {
            return None;
        }
        let mut line = slot.take()?;
        line.bytes.push(b'\n');
        line.ended = true;
        Some(line)
    }

    /// The partial lines left when the log has ended, oldest first.
    pub fn finish(&mut self) -> Vec<Line> {
        let mut left: Vec<Line> = self.pending.iter_mut().filter_map(Option::take).collect();
        left.sort_by_key(|l| l.time);
        left
    }
}

/// The last `n` lines.
#[derive(Debug)]
pub struct Tail {
    n: usize,
    lines: VecDeque<Line>,
}

impl Tail {
    pub fn new(n: usize) -> Tail {
        Tail {
            n,
            lines: VecDeque::new(),
        }
    }

    pub fn push(&mut self, line: Line) {
        if self.n == 0 {
            return;
        }
        if self.lines.len() == self.n {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub fn into_lines(self) -> impl Iterator<Item = Line> {
        self.lines.into_iter()
    }
}

/// What `kubectl logs` asked for, beyond which files and whether to follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Lines older than this are left out.
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC 3339 time and a space.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

/// Formats lines by a [`Filter`], counting bytes against its limit.
#[derive(Debug)]
pub struct Output {
    filter: Filter,
    written: u64,
}

impl Output {
    pub fn new(filter: Filter) -> Output {
        Output { filter, written: 0 }
    }

    /// Whether the byte limit is reached: nothing more will be written.
    pub fn full(&self) -> bool {
        self.filter.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// Whether a line of this time passes `since`.
    pub fn wants(&self, time: Timestamp) -> bool {
        self.filter.since.is_none_or(|s| time >= s)
    }

    /// Appends `line` to `out` as shown, cut at the byte limit.
    pub fn write(&mut self, line: &Line, out: &mut Vec<u8>) {
        if self.full() || !self.wants(line.time) {
            return;
        }
        let start = out.len();
        if self.filter.timestamps {
            out.extend_from_slice(line.time.to_string().as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&line.bytes);
        let mut n = (out.len() - start) as u64;
        if let Some(limit) = self.filter.limit_bytes {
            let room = limit - self.written;
            if n > room {
                out.truncate(start + room as usize);
                n = room;
            }
        }
        self.written += n;
    }
}

/// The lines of `records` (whole log content), joined and formatted: the
/// non-following read of a log, all in memory. Bad records are skipped.
pub fn render(records: &[u8], tail: Option<usize>, filter: Filter) -> Vec<u8> {
    let mut joiner = Joiner::default();
    let mut lines = Vec::new();
    for rec in records.split_inclusive(|&b| b == b'\n') {
        if let Ok(r) = parse(rec)
            && let Some(line) = joiner.push(&r)
        {
            lines.push(line);
        }
    }
    lines.extend(joiner.finish());
    let mut out = Vec::new();
    let mut output = Output::new(filter);
    select(lines.into_iter(), tail, &output)
        .into_iter()
        .for_each(|l| output.write(&l, &mut out));
    out
}

/// The lines past `since`, then the last `tail` of them.
pub fn select(
    lines: impl Iterator<Item = Line>,
    tail: Option<usize>,
    output: &Output,
) -> Vec<Line> {
    let wanted = lines.filter(|l| output.wants(l.time));
    match tail {
        None => wanted.collect(),
        Some(n) => {
            let mut t = Tail::new(n);
            wanted.for_each(|l| t.push(l));
            t.into_lines().collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-01-01T00:00:01.5Z stdout F one
2026-01-01T00:00:02Z stderr P tw
2026-01-01T00:00:02.1Z stdout F three
2026-01-01T00:00:02.2Z stderr F o
2026-01-01T00:00:03.000000001Z stdout F
2026-01-01T00:00:04Z stdout F five with  spaces
2026-01-01T00:00:05Z stdout P unended
";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn records_parse() {
        let r = parse(b"2016-10-06T00:17:09.669794202Z stdout F the line\n").unwrap();
        assert_eq!(r.time, ts("2016-10-06T00:17:09.669794202Z"));
        assert_eq!(
            (r.stream, r.partial, r.message),
            (Stream::Stdout, false, &b"the line"[..])
        );
        let r = parse(b"2016-10-06T00:17:09Z stderr P ").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.message),
            (Stream::Stderr, true, &b""[..])
        );
        // An empty message may come without its separating space.
        assert_eq!(
            parse(b"2016-10-06T00:17:09Z stdout F").unwrap().message,
            b""
        );
        for (bad, why) in [
            (&b"2016-10-06T00:17:09Z stdout"[..], RecordError::Short),
            (b"yesterday stdout F x", RecordError::Timestamp),
            (b"2016-10-06T00:17:09Z stdin F x", RecordError::Stream),
            (b"2016-10-06T00:17:09Z stdout X x", RecordError::Tag),
        ] {
            assert_eq!(parse(bad), Err(why), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn render_cases() {
        let filter = |since: Option<&str>, timestamps, limit_bytes| Filter {
            since: since.map(ts),
            timestamps,
            limit_bytes,
        };
        let cases: &[(&str, Option<usize>, Filter, &str)] = &[
            (
                "everything, partials joined per stream",
                None,
                Filter::default(),
                "one\nthree\ntwo\n\nfive with  spaces\nunended",
            ),
            (
                "tail 2",
                Some(2),
                Filter::default(),
                "five with  spaces\nunended",
            ),
            ("tail 0", Some(0), Filter::default(), ""),
            (
                "tail past the start",
                Some(100),
                Filter::default(),
                "one\nthree\ntwo\n\nfive with  spaces\nunended",
            ),
            (
                "since: a joined line has its first record's time",
                None,
                filter(Some("2026-01-01T00:00:02Z"), false, None),
                "three\ntwo\n\nfive with  spaces\nunended",
            ),
            (
                "since then tail",
                Some(1),
                filter(Some("2026-01-01T00:00:02Z"), false, None),
                "unended",
            ),
            (
                "timestamps as RFC 3339 with nanoseconds, trailing zeros cut",
                Some(4),
                filter(None, true, None),
                "2026-01-01T00:00:02Z two\n2026-01-01T00:00:03.000000001Z \n\
                 2026-01-01T00:00:04Z five with  spaces\n2026-01-01T00:00:05Z unended",
            ),
            (
                "limitBytes cuts a line",
                None,
                filter(None, false, Some(6)),
                "one\nth",
            ),
            ("limitBytes 0", None, filter(None, false, Some(0)), ""),
            (
                "limitBytes counts the timestamps",
                None,
                filter(None, true, Some(26)),
                "2026-01-01T00:00:01.5Z one",
            ),
        ];
        for (name, tail, filter, want) in cases {
            let got = render(LOG.as_bytes(), *tail, filter.clone());
            assert_eq!(String::from_utf8_lossy(&got), *want, "{name}");
        }
    }

    #[test]
    fn bad_records_are_skipped() {
        let log = "garbage\n2026-01-01T00:00:01Z stdout F ok\n\n2026-01-01T00:00:01Z stdout Q no\n";
        assert_eq!(render(log.as_bytes(), None, Filter::default()), b"ok\n");
    }

    #[test]
    fn long_lines_join_across_many_partials() {
        let mut log = String::new();
        for i in 0..5 {
            log.push_str(&format!(
                "2026-01-01T00:00:0{i}Z stdout P {}\n",
                "x".repeat(3)
            ));
        }
        log.push_str("2026-01-01T00:00:09Z stdout F end\n");
        let out = render(
            log.as_bytes(),
            None,
            Filter {
                timestamps: true,
                ..Filter::default()
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("2026-01-01T00:00:00Z {}end\n", "x".repeat(15))
        );
    }
}
