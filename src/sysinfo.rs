//! `/system-info`: the plugin's and apptainer's versions and the pods by phase, for people and
//! monitoring. The apptainer version is asked once (with a timeout) and cached: a hung
//! apptainer must never hold up a request.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct VersionCache {
    apptainer: PathBuf,
    timeout: Duration,
    cell: smol::lock::OnceCell<String>,
}

impl VersionCache {
    pub fn new(apptainer: PathBuf, timeout: Duration) -> Self {
        VersionCache {
            apptainer,
            timeout,
            cell: smol::lock::OnceCell::new(),
        }
    }

    pub async fn get(&self) -> String {
        let (path, timeout) = (self.apptainer.clone(), self.timeout);
        self.cell
            .get_or_init(|| smol::unblock(move || ask_version(&path, timeout)))
            .await
            .clone()
    }
}

/// Runs `<apptainer> version`; the answer, or a sentence saying why there is none.
fn ask_version(apptainer: &Path, timeout: Duration) -> String {
    let child = Command::new(apptainer)
        .arg("version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("unknown: cannot run {}: {e}", apptainer.display()),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return format!(
                    "unknown: {} version did not answer within {:?}",
                    apptainer.display(),
                    timeout
                );
            }
        }
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => format!(
            "unknown: {} version exited with {}",
            apptainer.display(),
            out.status
        ),
        Err(e) => format!("unknown: {e}"),
    }
}
