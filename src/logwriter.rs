//! The `log-writer` mode of the binary: job.sh pipes a container's merged stdout and stderr into
//! it, and it appends the bytes unchanged to `<dir>/log` plus, per read, one index record
//! (byte offset, time) to `<dir>/log.index`, so that the daemon can answer `since` and
//! `timestamps` later. It runs apart from the daemon: a daemon crash never blocks a container.
//! The previous instance's files are kept as `log.1` / `log.1.index` (for `Previous`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const LOG: &str = "log";
pub const INDEX: &str = "log.index";
pub const PREVIOUS_LOG: &str = "log.1";
pub const PREVIOUS_INDEX: &str = "log.1.index";

/// One index record: the log's size before a chunk was written, and when it was read.
pub const RECORD_LEN: usize = 16;

pub fn encode(offset: u64, nanos: i64) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[..8].copy_from_slice(&offset.to_le_bytes());
    r[8..].copy_from_slice(&nanos.to_le_bytes());
    r
}

pub fn decode(r: &[u8]) -> (u64, i64) {
    let mut o = [0u8; 8];
    let mut t = [0u8; 8];
    o.copy_from_slice(&r[..8]);
    t.copy_from_slice(&r[8..16]);
    (u64::from_le_bytes(o), i64::from_le_bytes(t))
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn open_append(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(p)
}

/// Moves a non-empty current log aside as the previous instance's, as a restarted container
/// starts a new one.
fn rotate(dir: &Path) -> io::Result<()> {
    let log = dir.join(LOG);
    if std::fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
        std::fs::rename(&log, dir.join(PREVIOUS_LOG))?;
        let _ = std::fs::rename(dir.join(INDEX), dir.join(PREVIOUS_INDEX));
    }
    Ok(())
}

/// Copies `input` to the log in `dir` until end of file.
pub fn run(dir: &Path, mut input: impl Read) -> io::Result<()> {
    rotate(dir)?;
    let mut log = open_append(&dir.join(LOG))?;
    let mut index = open_append(&dir.join(INDEX))?;
    let mut offset = log.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // The record goes first: a reader never sees bytes without a time.
        index.write_all(&encode(offset, now_nanos()))?;
        log.write_all(&buf[..n])?;
        offset += n as u64;
    }
}

/// Entry point of `apptainer-plugin log-writer DIR`.
pub fn main(args: &[String]) -> std::process::ExitCode {
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: apptainer-plugin log-writer DIR");
        return std::process::ExitCode::from(2);
    };
    // job.sh starts the writer with SIGTERM ignored: a delete signals the whole process group,
    // and the container's last words must still be written; the pipe's end ends the writer.
    match run(&dir, io::stdin().lock()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("log-writer {}: {e}", dir.display());
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        assert_eq!(decode(&encode(123_456, -5)), (123_456, -5));
    }

    #[test]
    fn writes_bytes_unchanged_with_an_index_and_rotates() {
        let dir = std::env::temp_dir().join(format!("logwriter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        run(&dir, &data[..]).unwrap();
        assert_eq!(std::fs::read(dir.join(LOG)).unwrap(), data);
        let idx = std::fs::read(dir.join(INDEX)).unwrap();
        assert!(idx.len() >= RECORD_LEN && idx.len().is_multiple_of(RECORD_LEN));
        assert_eq!(decode(&idx[..RECORD_LEN]).0, 0);
        run(&dir, &b"second\n"[..]).unwrap();
        assert_eq!(std::fs::read(dir.join(LOG)).unwrap(), b"second\n");
        assert_eq!(std::fs::read(dir.join(PREVIOUS_LOG)).unwrap(), data);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
