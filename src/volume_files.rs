//! Volumes on disk: writes the data files of a pod's volume plans into its directory, makes
//! emptyDirs and subPath directories, and checks (or creates) hostPaths with the kubelet's rules,
//! before job.sh starts. Never follows a symlink out of a volume; never writes a file twice.

use crate::plan::{PodPlan, VolumeKind};
use crate::volumes::volume_source;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A failure while preparing volumes: the pod's fault (400) or the node's (500).
#[derive(Debug)]
pub enum VolumeError {
    Refused(String),
    Io(String),
}

fn io_err(what: &Path) -> impl Fn(io::Error) -> VolumeError + '_ {
    move |e| VolumeError::Io(format!("{}: {e}", what.display()))
}

/// Writes the data files, creates emptyDirs and subPath directories, and checks or creates
/// hostPaths, before job.sh starts.
pub fn materialize(pod_dir: &Path, plan: &PodPlan, shm: Option<&Path>) -> Result<(), VolumeError> {
    for v in &plan.volumes {
        let Some(root) = volume_source(pod_dir, &plan.uid, shm, v) else {
            continue;
        };
        let refuse = |m: String| {
            VolumeError::Refused(format!("pod {}: volume {:?}: {m}", plan.key(), v.name))
        };
        match &v.kind {
            VolumeKind::EmptyDir { .. } => mkdir(&root, 0o700).map_err(io_err(&root))?,
            VolumeKind::Files { files } => {
                mkdir(&root, 0o700).map_err(io_err(&root))?;
                for f in files {
                    let path = root.join(&f.path);
                    if let Some(parent) = path.parent() {
                        DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(parent)
                            .map_err(io_err(parent))?;
                    }
                    write_new(&path, &f.content, f.mode).map_err(io_err(&path))?;
                }
            }
            VolumeKind::HostPath { path, host_type } => {
                check_host_path(Path::new(path), host_type).map_err(refuse)?
            }
            VolumeKind::NotExported => {}
        }
    }
    // subPaths: the kubelet creates a missing one as a directory; it must stay in its volume.
    for c in plan.init_containers.iter().chain(&plan.containers) {
        for m in &c.mounts {
            let (Some(sub), Some(v)) = (&m.sub_path, plan.volume(&m.volume)) else {
                continue;
            };
            let Some(root) = volume_source(pod_dir, &plan.uid, shm, v) else {
                continue;
            };
            let target = root.join(sub);
            let outside = || {
                VolumeError::Refused(format!(
                    "pod {}: container {}: subPath {sub:?} of volume {:?} resolves outside the volume",
                    plan.key(),
                    c.name,
                    v.name
                ))
            };
            // Check before creating anything: a symlink on the way must not lead the mkdir out.
            if !resolves_inside(&root, &target) {
                return Err(outside());
            }
            if fs::symlink_metadata(&target).is_err() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&target)
                    .map_err(io_err(&target))?;
            }
            if !resolves_inside(&root, &target) {
                return Err(outside());
            }
        }
    }
    Ok(())
}

/// Whether `target` (or, if it does not exist yet, its deepest existing ancestor) resolves,
/// through every symlink, to a place inside `root`.
fn resolves_inside(root: &Path, target: &Path) -> bool {
    let Ok(root) = fs::canonicalize(root) else {
        return false;
    };
    let mut probe = Some(target);
    while let Some(p) = probe {
        // The first component that exists decides; a dangling symlink there resolves nowhere.
        if fs::symlink_metadata(p).is_ok() {
            return fs::canonicalize(p).is_ok_and(|real| real.starts_with(&root));
        }
        probe = p.parent();
    }
    false
}

fn mkdir(p: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(p)
}

/// Creates a file that did not exist (never follows a symlink), with exactly `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// The kubelet's hostPath type checks, with its wording.
fn check_host_path(path: &Path, host_type: &str) -> Result<(), String> {
    let meta = fs::metadata(path);
    let p = path.display();
    let fail = |what: &str| Err(format!("hostPath type check failed: {p} is not {what}"));
    match host_type {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("a directory"),
            Err(_) => DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|e| format!("hostPath: cannot create directory {p}: {e}")),
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("a file"),
            Err(_) => {
                if let Some(parent) = path.parent() {
                    DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(parent)
                        .map_err(|e| {
                            format!(
                                "hostPath: cannot create directory {}: {e}",
                                parent.display()
                            )
                        })?;
                }
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(path)
                    .map(|_| ())
                    .map_err(|e| format!("hostPath: cannot create file {p}: {e}"))
            }
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
        other => Err(format!("hostPath type {other:?} is not a known type")),
    }
}
