//! `/getLogs` over the files the log writer keeps: kubelet semantics for `Tail`, `Bytes`,
//! `SinceSeconds`/`SinceTime`, `Timestamps`, `Previous` and `Follow`, reading only what is
//! needed (a tail reads the end of the file) in bounded memory. The reader here is synchronous
//! and never waits for new data; `follow.rs` turns it into a stream that does.

use crate::api::LogOpts;
use crate::logwriter::{decode, INDEX, LOG, PREVIOUS_INDEX, PREVIOUS_LOG, RECORD_LEN};
use k8s_openapi::jiff::Timestamp;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Backwards scans for `Tail` read this much at a time.
const CHUNK: usize = 64 * 1024;
/// Forward reads: large, so that a big log costs few hand-offs to the blocking pool.
const READ_CHUNK: usize = 256 * 1024;

/// Checked log options.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Query {
    pub tail: Option<u64>,
    pub bytes: Option<u64>,
    /// Unix nanoseconds.
    pub since: Option<i64>,
    pub timestamps: bool,
    pub follow: bool,
    pub previous: bool,
}

/// The current time (jiff is built without its clock here).
pub fn now() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// interLink sends every key; `0`, `false` and Go's zero time mean unset.
pub fn query(o: &LogOpts, now: Timestamp) -> Result<Query, String> {
    for (name, v) in [
        ("Tail", o.tail),
        ("Bytes", o.bytes),
        ("SinceSeconds", o.since_seconds),
    ] {
        if v < 0 {
            return Err(format!(
                "getLogs: Opts.{name} must not be negative, got {v}"
            ));
        }
    }
    if o.tail > 0 && o.bytes > 0 {
        return Err("getLogs: Opts.Tail and Opts.Bytes cannot be used together".into());
    }
    let since_time =
        match o.since_time.as_deref().map(str::trim) {
            None | Some("") | Some("0001-01-01T00:00:00Z") => None,
            Some(t) => Some(t.parse::<Timestamp>().map_err(|e| {
                format!("getLogs: Opts.SinceTime {t:?} is not an RFC 3339 time: {e}")
            })?),
        };
    if o.since_seconds > 0 && since_time.is_some() {
        return Err("getLogs: Opts.SinceSeconds and Opts.SinceTime cannot be used together".into());
    }
    let since = match since_time {
        Some(t) => Some(t.as_nanosecond() as i64),
        None if o.since_seconds > 0 => {
            Some(now.as_nanosecond() as i64 - o.since_seconds.saturating_mul(1_000_000_000))
        }
        None => None,
    };
    Ok(Query {
        tail: (o.tail > 0).then_some(o.tail as u64),
        bytes: (o.bytes > 0).then_some(o.bytes as u64),
        since,
        timestamps: o.timestamps,
        follow: o.follow,
        previous: o.previous,
    })
}

/// The two files of one container instance.
pub fn files(container_dir: &Path, previous: bool) -> (PathBuf, PathBuf) {
    if previous {
        (
            container_dir.join(PREVIOUS_LOG),
            container_dir.join(PREVIOUS_INDEX),
        )
    } else {
        (container_dir.join(LOG), container_dir.join(INDEX))
    }
}

/// Index records read on demand: a log of millions of lines never has its index in memory.
struct Index {
    file: Option<File>,
    len: u64,
    /// Sequential cursor for timestamps: the record in force and the next one.
    at: u64,
    current: (u64, i64),
    next: Option<(u64, i64)>,
}

impl Index {
    fn open(path: &Path) -> Index {
        let file = File::open(path).ok();
        let len = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len())
            / RECORD_LEN as u64;
        Index {
            file,
            len,
            at: 0,
            current: (0, 0),
            next: None,
        }
    }

    fn record(&self, i: u64) -> Option<(u64, i64)> {
        let mut r = [0u8; RECORD_LEN];
        self.file
            .as_ref()?
            .read_exact_at(&mut r, i * RECORD_LEN as u64)
            .ok()?;
        Some(decode(&r))
    }

    /// The first record written at or after `since`: where lines of interest begin.
    fn first_since(&self, since: i64) -> Option<u64> {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.record(mid) {
                Some((_, t)) if t < since => lo = mid + 1,
                _ => hi = mid,
            }
        }
        (lo < self.len)
            .then(|| self.record(lo).map(|r| r.0))
            .flatten()
    }

    /// Positions the cursor on the last record at or before `offset`.
    fn seek(&mut self, offset: u64) {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.record(mid) {
                Some((o, _)) if o <= offset => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.at = lo.saturating_sub(1);
        self.current = self.record(self.at).unwrap_or((0, 0));
        self.next = self.record(self.at + 1);
    }

    /// The time of a line starting at `offset` (offsets only grow between calls).
    fn time_at(&mut self, offset: u64) -> i64 {
        if self.file.is_some() {
            // The writer may have added records since the last look.
            if self.next.is_none() {
                self.len = self
                    .file
                    .as_ref()
                    .and_then(|f| f.metadata().ok())
                    .map_or(0, |m| m.len())
                    / RECORD_LEN as u64;
                self.next = self.record(self.at + 1);
            }
            while let Some(n) = self.next.filter(|n| n.0 <= offset) {
                self.at += 1;
                self.current = n;
                self.next = self.record(self.at + 1);
            }
        }
        self.current.1
    }
}

/// Where the `tail` last lines begin: reads backwards from the end, block by block. A last line
/// without a newline counts as a line.
fn tail_start(log: &File, size: u64, lines: u64) -> io::Result<u64> {
    let mut found = 0;
    let mut end = size;
    let mut buf = vec![0u8; CHUNK];
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        let block = &mut buf[..(end - start) as usize];
        log.read_exact_at(block, start)?;
        for (i, b) in block.iter().enumerate().rev() {
            let line_start = start + i as u64 + 1;
            if *b == b'\n' && line_start < size {
                found += 1;
                if found == lines {
                    return Ok(line_start);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// Produces the answer in chunks, up to the end of the file as it is now.
pub struct Reader {
    log: File,
    index: Index,
    pos: u64,
    /// Inside a line whose start was before `since`: drop bytes up to its newline.
    skipping: bool,
    at_line_start: bool,
    timestamps: bool,
    remaining: Option<u64>,
}

impl Reader {
    /// Opens the instance's log positioned for the query. `Ok(None)`: no such log file.
    pub fn open(log_path: &Path, index_path: &Path, q: &Query) -> io::Result<Option<Reader>> {
        let log = match File::open(log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = log.metadata()?.len();
        let mut index = Index::open(index_path);
        let mut pos = 0;
        let mut skipping = false;
        if let Some(since) = q.since {
            match index.first_since(since) {
                Some(o) => {
                    pos = o;
                    // A record may fall inside a line that began earlier: that line is older.
                    let mut prev = [0u8; 1];
                    skipping =
                        o > 0 && log.read_exact_at(&mut prev, o - 1).is_ok() && prev[0] != b'\n';
                }
                None => pos = size,
            }
        }
        if let Some(n) = q.tail {
            let t = tail_start(&log, size, n)?;
            if t > pos {
                pos = t;
                skipping = false;
            }
        }
        if q.timestamps {
            index.seek(pos);
        }
        Ok(Some(Reader {
            log,
            index,
            pos,
            skipping,
            at_line_start: true,
            timestamps: q.timestamps,
            remaining: q.bytes,
        }))
    }

    /// The byte limit is reached: nothing more will ever come.
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The next piece of the answer; `None` at the current end of the file (or when done).
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if self.done() {
                return Ok(None);
            }
            let n = self.log.read_at(&mut buf, self.pos)?;
            if n == 0 {
                return Ok(None);
            }
            let mut data = &buf[..n];
            self.pos += n as u64;
            if self.skipping {
                match data.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        self.skipping = false;
                        data = &data[i + 1..];
                    }
                    None => continue,
                }
            }
            let data_start = self.pos - data.len() as u64;
            let mut out = if self.timestamps {
                self.stamp(data, data_start)
            } else {
                data.to_vec()
            };
            if let Some(r) = self.remaining.as_mut() {
                out.truncate((*r).min(out.len() as u64) as usize);
                *r -= out.len() as u64;
            }
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
    }

    /// Prefixes every line that starts in `data` with its time, as the kubelet does.
    fn stamp(&mut self, data: &[u8], offset: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 8);
        let mut i = 0;
        while i < data.len() {
            if self.at_line_start {
                let t = self.index.time_at(offset + i as u64);
                let ts = Timestamp::from_nanosecond(t as i128).unwrap_or(Timestamp::UNIX_EPOCH);
                out.extend_from_slice(format!("{ts} ").as_bytes());
            }
            let end = data[i..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(data.len(), |p| i + p + 1);
            out.extend_from_slice(&data[i..end]);
            self.at_line_start = data[end - 1] == b'\n';
            i = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logwriter::encode;

    fn opts() -> LogOpts {
        LogOpts {
            since_time: Some("0001-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn options_are_checked() {
        let now: Timestamp = "2026-12-03T18:00:00Z".parse().unwrap();
        assert_eq!(query(&opts(), now).unwrap(), Query::default());
        let q = query(
            &LogOpts {
                since_seconds: 10,
                ..opts()
            },
            now,
        )
        .unwrap();
        assert_eq!(q.since, Some(now.as_nanosecond() as i64 - 10_000_000_000));
        for bad in [
            LogOpts {
                tail: 1,
                bytes: 1,
                ..opts()
            },
            LogOpts { tail: -1, ..opts() },
            LogOpts {
                since_seconds: 5,
                since_time: Some("2026-12-03T17:00:00Z".into()),
                ..opts()
            },
            LogOpts {
                since_time: Some("yesterday".into()),
                ..opts()
            },
        ] {
            assert!(query(&bad, now).is_err(), "{bad:?}");
        }
    }

    /// Writes a log of `lines` (each written at second i) and reads it back with `q`.
    fn read_all(lines: &[&str], q: Query) -> String {
        let dir = std::env::temp_dir().join(format!(
            "logs-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut log, mut idx) = (Vec::new(), Vec::new());
        for (i, l) in lines.iter().enumerate() {
            idx.extend_from_slice(&encode(log.len() as u64, (i as i64 + 1) * 1_000_000_000));
            log.extend_from_slice(l.as_bytes());
        }
        std::fs::write(dir.join(LOG), &log).unwrap();
        std::fs::write(dir.join(INDEX), &idx).unwrap();
        let mut r = Reader::open(&dir.join(LOG), &dir.join(INDEX), &q)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            out.extend(c);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let l = ["a\n", "b\n", "c\n"];
        let tail = |n| {
            read_all(
                &l,
                Query {
                    tail: Some(n),
                    ..Default::default()
                },
            )
        };
        assert_eq!(tail(1), "c\n");
        assert_eq!(tail(3), "a\nb\nc\n");
        assert_eq!(tail(4), "a\nb\nc\n");
        let partial = read_all(
            &["a\n", "b\n", "no newline"],
            Query {
                tail: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(partial, "b\nno newline");
        assert_eq!(
            read_all(
                &[],
                Query {
                    tail: Some(2),
                    ..Default::default()
                }
            ),
            ""
        );
    }

    #[test]
    fn since_bytes_and_timestamps() {
        let l = ["one\n", "two\n", "three\n"];
        let since = |s: i64| Query {
            since: Some(s * 1_000_000_000),
            ..Default::default()
        };
        assert_eq!(read_all(&l, since(2)), "two\nthree\n");
        assert_eq!(read_all(&l, since(4)), "");
        assert_eq!(
            read_all(
                &l,
                Query {
                    bytes: Some(6),
                    ..Default::default()
                }
            ),
            "one\ntw"
        );
        let ts = read_all(
            &l,
            Query {
                timestamps: true,
                tail: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(ts, "1970-01-01T00:00:02Z two\n1970-01-01T00:00:03Z three\n");
        // A record in the middle of a line: the line belongs to its start's time.
        let mid = read_all(
            &["par", "tial\nnext\n"],
            Query {
                since: Some(2_000_000_000),
                ..Default::default()
            },
        );
        assert_eq!(mid, "next\n");
    }
}
