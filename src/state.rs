//! The pod registry: which pods this node runs, their on-disk record (`pod.json` in each pod's
//! directory) and the restore of all of them when the daemon starts. In-memory locks are held
//! only for map look-ups; the per-pod `op` lock serialises create and delete of one pod.

use crate::process::Job;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub const RECORD_FILE: &str = "pod.json";

/// How many deleted UIDs are remembered, to refuse a create that arrives after its delete.
const TOMBSTONES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// What the pod asked for that this node does not enforce, shown in status messages.
    #[serde(default)]
    pub notes: Vec<String>,
    /// It has a preStop hook, which a delete runs (through `job.sh prestop NAME`) first.
    #[serde(default)]
    pub pre_stop: bool,
    /// Its probes, for the probe engine (also after a daemon restart).
    #[serde(default)]
    pub probes: Vec<crate::plan::ProbePlan>,
    /// terminationMessagePolicy FallbackToLogsOnError.
    #[serde(default)]
    pub fallback_to_logs: bool,
}

/// What must survive a daemon restart to find, report and delete a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub pid: i32,
    pub start_ticks: u64,
    pub grace_seconds: u64,
    pub init_containers: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    /// Directories of the pod outside its own directory (memory-backed emptyDirs): a delete
    /// removes them too.
    #[serde(default)]
    pub outside_dirs: Vec<PathBuf>,
}

impl PodRecord {
    pub fn job(&self) -> Job {
        Job {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
    pub fn jid(&self) -> String {
        self.pid.to_string()
    }
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Default)]
pub struct PodEntry {
    /// Held for the whole of a create or a delete of this pod, so that they never interleave;
    /// status and logs never take it.
    pub op: smol::lock::Mutex<()>,
    record: Mutex<Option<Arc<PodRecord>>>,
}

impl PodEntry {
    pub fn record(&self) -> Option<Arc<PodRecord>> {
        lock(&self.record).clone()
    }
    pub fn set_record(&self, rec: Option<Arc<PodRecord>>) {
        *lock(&self.record) = rec;
    }
}

/// A poisoned lock only means another request panicked mid-update of a plain map; the data is
/// still consistent enough to serve, and refusing every later request would be worse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Registry {
    root: PathBuf,
    pods: Mutex<HashMap<String, Arc<PodEntry>>>,
    deleted: Mutex<VecDeque<String>>,
}

impl Registry {
    pub fn new(root: PathBuf) -> Self {
        Registry {
            root,
            pods: Mutex::default(),
            deleted: Mutex::default(),
        }
    }

    pub fn pod_dir(&self, namespace: &str, uid: &str) -> PathBuf {
        self.root.join(format!("{namespace}-{uid}"))
    }

    /// The entry of a UID, created empty if unknown (a create or delete is about to use it).
    pub fn entry(&self, uid: &str) -> Arc<PodEntry> {
        lock(&self.pods).entry(uid.to_string()).or_default().clone()
    }

    /// The record of a created pod.
    pub fn get(&self, uid: &str) -> Option<Arc<PodRecord>> {
        lock(&self.pods).get(uid).and_then(|e| e.record())
    }

    pub fn all(&self) -> Vec<Arc<PodRecord>> {
        lock(&self.pods)
            .values()
            .filter_map(|e| e.record())
            .collect()
    }

    /// Forgets a pod after its delete and remembers that it was deleted.
    pub fn forget(&self, uid: &str) {
        lock(&self.pods).remove(uid);
        let mut d = lock(&self.deleted);
        if d.len() >= TOMBSTONES {
            d.pop_front();
        }
        d.push_back(uid.to_string());
    }

    pub fn was_deleted(&self, uid: &str) -> bool {
        lock(&self.deleted).iter().any(|u| u == uid)
    }

    /// Reads every pod record under the root; returns what could not be read, for the log.
    pub fn restore(&self) -> (usize, Vec<String>) {
        let mut problems = Vec::new();
        let mut count = 0;
        let dirs = match std::fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (0, problems),
            Err(e) => return (0, vec![format!("cannot list {}: {e}", self.root.display())]),
        };
        for d in dirs.flatten() {
            let file = d.path().join(RECORD_FILE);
            let rec = match std::fs::read(&file) {
                Ok(bytes) => serde_json::from_slice::<PodRecord>(&bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if d.path().is_dir() {
                        problems.push(format!(
                            "{} has no {RECORD_FILE}; left alone",
                            d.path().display()
                        ));
                    }
                    continue;
                }
                Err(e) => {
                    problems.push(format!("cannot read {}: {e}", file.display()));
                    continue;
                }
            };
            match rec {
                Ok(rec)
                    if d.file_name().to_str()
                        == Some(&format!("{}-{}", rec.namespace, rec.uid)) =>
                {
                    self.entry(&rec.uid).set_record(Some(Arc::new(rec)));
                    count += 1;
                }
                Ok(_) => problems.push(format!(
                    "{} does not match its directory; left alone",
                    file.display()
                )),
                Err(e) => problems.push(format!("{} is not a pod record: {e}", file.display())),
            }
        }
        (count, problems)
    }
}

/// Writes the record next to the pod's files, atomically: a daemon killed mid-write leaves the
/// old record or the new one, never half of one.
pub fn write_record(dir: &Path, rec: &PodRecord) -> io::Result<()> {
    let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(RECORD_FILE))
}
