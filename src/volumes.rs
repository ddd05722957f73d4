//! Volumes and mounts, planned: from the pod's `volumes`, its containers' `volumeMounts` and the
//! objects interLink ships, checked `VolumePlan`s and `MountPlan`s, and where each volume lives
//! on the host. Pure: `volume_files.rs` writes what these plans say. No key, item path or subPath
//! that passes here can lead outside its volume.

use crate::api::RetrievedPodData;
use crate::plan::{FileEntry, MountPlan, PodPlan, VolumeKind, VolumePlan};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Secret, Volume};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// Mode of data files when the pod sets none: readable by the plugin's user only, since a
/// `DataRootFolder` may be shared (the pod directory itself is 0700 as well).
const PRIVATE_MODE: u32 = 0o600;

/// The objects interLink shipped, by name, whichever container they came with.
#[derive(Default)]
struct Shipped<'a> {
    config_maps: HashMap<&'a str, &'a ConfigMap>,
    secrets: HashMap<&'a str, &'a Secret>,
    /// Keyed by the *volume* name; data is relative path → content.
    projected: HashMap<&'a str, &'a ConfigMap>,
}

fn shipped(data: &RetrievedPodData) -> Shipped<'_> {
    let mut s = Shipped::default();
    for c in data.container.iter().flatten() {
        for cm in c.config_maps.iter().flatten() {
            if let Some(n) = cm.metadata.name.as_deref() {
                s.config_maps.insert(n, cm);
            }
        }
        for sec in c.secrets.iter().flatten() {
            if let Some(n) = sec.metadata.name.as_deref() {
                s.secrets.insert(n, sec);
            }
        }
        for p in c.projected_volume_maps.iter().flatten() {
            if let Some(n) = p.metadata.name.as_deref() {
                s.projected.insert(n, p);
            }
        }
    }
    s
}

/// Checks a path that must stay inside a directory: relative, no `..`, no empty or `.` parts.
pub fn check_relative(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("is empty".into());
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if p.starts_with('/') {
        return Err(format!("{p:?} is absolute; it must be relative"));
    }
    for c in Path::new(p).components() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir => return Err(format!("{p:?} contains '..'")),
            _ => return Err(format!("{p:?} is not a plain relative path")),
        }
    }
    Ok(())
}

/// Apptainer's `--bind src:dst:opts` lists are split on `:` and `,`: a path containing either
/// cannot be bound faithfully.
fn check_bindable(what: &str, p: &str) -> Result<(), String> {
    if p.contains([':', ',']) || p.contains('\0') {
        return Err(format!(
            "{what} {p:?} contains ':' or ',' (or NUL), which apptainer cannot bind"
        ));
    }
    Ok(())
}

fn mode_of(m: Option<i32>, default: Option<i32>) -> Result<u32, String> {
    match m.or(default) {
        None => Ok(PRIVATE_MODE),
        Some(m) if (0..=0o777).contains(&m) => Ok(m as u32),
        Some(m) => Err(format!("mode {m} is outside 0..0777 (511)")),
    }
}

/// The files of a configMap or secret: all keys, or just `items` at their paths.
fn keyed_files(
    all: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    what: &str,
) -> Result<Vec<FileEntry>, String> {
    let mut files = Vec::new();
    match items {
        None => {
            for (key, content) in all {
                check_relative(key).map_err(|e| format!("{what}: key {e}"))?;
                let mode = mode_of(None, default_mode)?;
                files.push(FileEntry {
                    path: key.clone(),
                    content: content.clone(),
                    mode,
                });
            }
        }
        Some(items) => {
            for it in items {
                let content = all
                    .get(&it.key)
                    .ok_or_else(|| format!("{what} has no key {:?}", it.key))?;
                check_relative(&it.path).map_err(|e| format!("{what}: item path {e}"))?;
                let mode = mode_of(it.mode, default_mode)
                    .map_err(|e| format!("{what}: item {:?}: {e}", it.key))?;
                files.push(FileEntry {
                    path: it.path.clone(),
                    content: content.clone(),
                    mode,
                });
            }
        }
    }
    Ok(files)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        all.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        all.insert(k.clone(), v.0.clone());
    }
    all
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        all.insert(k.clone(), v.0.clone());
    }
    // stringData is write-only in the API, but a hand-made body may carry it; it wins.
    for (k, v) in s.string_data.iter().flatten() {
        all.insert(k.clone(), v.clone().into_bytes());
    }
    all
}

/// Per-item modes of a projected or downwardAPI volume, by the path they land at.
fn projected_modes(v: &Volume) -> HashMap<String, i32> {
    let mut modes = HashMap::new();
    let mut add = |path: &str, mode: Option<i32>| {
        if let Some(m) = mode {
            modes.insert(path.to_string(), m);
        }
    };
    if let Some(p) = &v.projected {
        for src in p.sources.iter().flatten() {
            for it in src.config_map.iter().flat_map(|c| c.items.iter().flatten()) {
                add(&it.path, it.mode);
            }
            for it in src.secret.iter().flat_map(|c| c.items.iter().flatten()) {
                add(&it.path, it.mode);
            }
            for it in src
                .downward_api
                .iter()
                .flat_map(|c| c.items.iter().flatten())
            {
                add(&it.path, it.mode);
            }
        }
    }
    if let Some(d) = &v.downward_api {
        for it in d.items.iter().flatten() {
            add(&it.path, it.mode);
        }
    }
    modes
}

fn volume_plan(v: &Volume, shipped: &Shipped<'_>, export: bool) -> Result<VolumeKind, String> {
    let is_data = v.config_map.is_some()
        || v.secret.is_some()
        || v.projected.is_some()
        || v.downward_api.is_some();
    if is_data && !export {
        return Ok(VolumeKind::NotExported);
    }
    if let Some(e) = &v.empty_dir {
        return Ok(VolumeKind::EmptyDir {
            memory: e.medium.as_deref() == Some("Memory"),
            size_limit: e.size_limit.as_ref().map(|q| q.0.clone()),
        });
    }
    if let Some(h) = &v.host_path {
        if !h.path.starts_with('/') {
            return Err(format!("hostPath {:?} must be absolute", h.path));
        }
        check_bindable("hostPath", &h.path)?;
        return Ok(VolumeKind::HostPath {
            path: h.path.clone(),
            host_type: h.type_.clone().unwrap_or_default(),
        });
    }
    if let Some(c) = &v.config_map {
        let what = format!("configMap {:?}", c.name);
        let files = match shipped.config_maps.get(c.name.as_str()) {
            Some(cm) => keyed_files(
                &config_map_data(cm),
                c.items.as_ref(),
                c.default_mode,
                &what,
            )?,
            None if c.optional == Some(true) => Vec::new(),
            None => {
                return Err(format!(
                    "{what} was not shipped with the pod (and is not optional)"
                ))
            }
        };
        return Ok(VolumeKind::Files { files });
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let what = format!("secret {name:?}");
        let files = match shipped.secrets.get(name.as_str()) {
            Some(sec) => keyed_files(&secret_data(sec), s.items.as_ref(), s.default_mode, &what)?,
            None if s.optional == Some(true) => Vec::new(),
            None => {
                return Err(format!(
                    "{what} was not shipped with the pod (and is not optional)"
                ))
            }
        };
        return Ok(VolumeKind::Files { files });
    }
    if v.projected.is_some() || v.downward_api.is_some() {
        // interLink resolves every source (token, ca.crt, downward fields) into one map named
        // after the volume; its keys are the final relative paths.
        let default_mode = v
            .projected
            .as_ref()
            .and_then(|p| p.default_mode)
            .or(v.downward_api.as_ref().and_then(|d| d.default_mode));
        let modes = projected_modes(v);
        let map = shipped.projected.get(v.name.as_str()).ok_or_else(|| {
            format!(
                "the data of projected/downwardAPI volume {:?} was not shipped with the pod",
                v.name
            )
        })?;
        let mut files = Vec::new();
        for (path, content) in config_map_data(map) {
            check_relative(&path).map_err(|e| format!("path {e}"))?;
            let mode = mode_of(modes.get(&path).copied(), default_mode)
                .map_err(|e| format!("path {path:?}: {e}"))?;
            files.push(FileEntry {
                path,
                content,
                mode,
            });
        }
        return Ok(VolumeKind::Files { files });
    }
    Err("this volume type is not supported by the apptainer plugin (supported: emptyDir, hostPath, configMap, secret, projected, downwardAPI)".into())
}

/// The volumes some container mounts, checked and with their data.
pub fn plan_volumes(
    data: &RetrievedPodData,
    mounted: &HashSet<String>,
    export: bool,
) -> Result<Vec<VolumePlan>, String> {
    let shipped = shipped(data);
    let spec_volumes = data
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for v in spec_volumes {
        if !crate::pod::is_dns_label(&v.name) {
            return Err(format!(
                "volume name {:?} must be a DNS label (a-z, 0-9, '-')",
                v.name
            ));
        }
        if !seen.insert(v.name.as_str()) {
            return Err(format!("volume name {:?} is used twice", v.name));
        }
        if !mounted.contains(&v.name) {
            continue;
        }
        let kind =
            volume_plan(v, &shipped, export).map_err(|e| format!("volume {:?}: {e}", v.name))?;
        if let VolumeKind::Files { files } = &kind {
            check_file_tree(files).map_err(|e| format!("volume {:?}: {e}", v.name))?;
        }
        out.push(VolumePlan {
            name: v.name.clone(),
            kind,
        });
    }
    Ok(out)
}

/// Two entries where one is a file and the other needs it as a directory cannot both exist.
fn check_file_tree(files: &[FileEntry]) -> Result<(), String> {
    let paths: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for f in files {
        let mut p = Path::new(&f.path).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            if paths.contains(dir.to_str().unwrap_or_default()) {
                return Err(format!(
                    "{:?} is a file and also the directory of {:?}",
                    dir, f.path
                ));
            }
            p = dir.parent();
        }
    }
    Ok(())
}

/// Expands `$(VAR)` from the container's env as the kubelet does for `subPathExpr`; `$$(` is a
/// literal `$(`, and an unknown variable stays as written.
pub fn expand(expr: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$(") {
            out.push_str("$(");
            rest = after;
        } else if let Some(body) = tail.strip_prefix("$(") {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.iter().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&tail[..end + 3]),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The checked mounts of one container, parents before children so that a mount at `/a` does
/// not hide one at `/a/b` whatever order the pod lists them in.
pub fn plan_mounts(
    c: &Container,
    volumes: &[VolumePlan],
    env: &[(String, String)],
) -> Result<Vec<MountPlan>, String> {
    let mut mounts = Vec::new();
    let mut targets = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let at = format!("volumeMounts[{i}] ({:?})", m.name);
        let vol = volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| format!("{at}: no volume named {:?} in spec.volumes", m.name))?;
        if !m.mount_path.starts_with('/') {
            return Err(format!(
                "{at}: mountPath {:?} must be absolute",
                m.mount_path
            ));
        }
        check_bindable(&format!("{at}: mountPath"), &m.mount_path)?;
        if Path::new(&m.mount_path)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(format!("{at}: mountPath {:?} contains '..'", m.mount_path));
        }
        let mount_path = normalize_abs(&m.mount_path);
        if mount_path == "/" {
            return Err(format!(
                "{at}: mountPath \"/\" would replace the container's whole filesystem"
            ));
        }
        if !targets.insert(mount_path.clone()) {
            return Err(format!("{at}: mountPath {mount_path:?} is used twice"));
        }
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), Some(e)) if !s.is_empty() && !e.is_empty() => {
                return Err(format!(
                    "{at}: subPath and subPathExpr are mutually exclusive"
                ));
            }
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e, env)),
            _ => None,
        };
        if let Some(s) = &sub {
            check_relative(s).map_err(|e| format!("{at}: subPath {e}"))?;
            check_bindable(&format!("{at}: subPath"), s)?;
        }
        if vol.kind == VolumeKind::NotExported {
            continue;
        }
        // The kubelet mounts data volumes read-only whatever the mount says.
        let read_only = m.read_only == Some(true) || matches!(vol.kind, VolumeKind::Files { .. });
        mounts.push(MountPlan {
            volume: m.name.clone(),
            mount_path,
            sub_path: sub,
            read_only,
        });
    }
    mounts.sort_by_key(|m| Path::new(&m.mount_path).components().count());
    Ok(mounts)
}

fn normalize_abs(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Where a volume lives on the host. `shm` is the memory-backed root for `medium: Memory`
/// (None where the node has none: the pod directory is used instead).
pub fn volume_source(
    pod_dir: &Path,
    uid: &str,
    shm: Option<&Path>,
    v: &VolumePlan,
) -> Option<PathBuf> {
    match &v.kind {
        VolumeKind::EmptyDir { memory: true, .. } if shm.is_some() => {
            shm.map(|s| s.join(format!("interlink-{uid}-{}", v.name)))
        }
        VolumeKind::EmptyDir { .. } | VolumeKind::Files { .. } => {
            Some(pod_dir.join("volumes").join(&v.name))
        }
        VolumeKind::HostPath { path, .. } => Some(PathBuf::from(path)),
        VolumeKind::NotExported => None,
    }
}

/// Directories outside the pod directory that the pod's volumes use and that a delete must
/// remove (memory-backed emptyDirs).
pub fn outside_dirs(pod_dir: &Path, plan: &PodPlan, shm: Option<&Path>) -> Vec<PathBuf> {
    plan.volumes
        .iter()
        .filter(|v| matches!(v.kind, VolumeKind::EmptyDir { memory: true, .. }))
        .filter_map(|v| volume_source(pod_dir, &plan.uid, shm, v))
        .filter(|p| !p.starts_with(pod_dir))
        .collect()
}

/// What a container's volumes ask for that the plugin does not enforce, for its status.
pub fn unenforced(plan: &PodPlan, c: &crate::plan::ContainerPlan) -> Vec<String> {
    c.mounts
        .iter()
        .filter_map(|m| match &plan.volume(&m.volume)?.kind {
            VolumeKind::EmptyDir {
                size_limit: Some(limit),
                ..
            } => Some(format!(
                "emptyDir {:?} sizeLimit {limit} is not enforced on this node",
                m.volume
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        for ok in ["a", "a/b", "ca.crt", "..data-not-parent", "config/app.py"] {
            assert!(check_relative(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/..",
            "./a",
            "a\0b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subpath_expressions() {
        let env = vec![
            ("POD".to_string(), "web-1".to_string()),
            ("E".to_string(), String::new()),
        ];
        assert_eq!(expand("logs/$(POD)", &env), "logs/web-1");
        assert_eq!(expand("$$(POD)/x", &env), "$(POD)/x");
        assert_eq!(expand("$(NOPE)/$(E)x", &env), "$(NOPE)/x");
        assert_eq!(expand("a$b$(POD", &env), "a$b$(POD");
    }

    #[test]
    fn files_and_directories_cannot_collide() {
        let f = |p: &str| FileEntry {
            path: p.into(),
            content: vec![],
            mode: 0o600,
        };
        assert!(check_file_tree(&[f("a"), f("a/b")]).is_err());
        assert!(check_file_tree(&[f("a/c"), f("a/b"), f("x/y/z")]).is_ok());
    }

    #[test]
    fn modes() {
        assert_eq!(mode_of(None, None).unwrap(), 0o600);
        assert_eq!(mode_of(None, Some(420)).unwrap(), 0o644);
        assert_eq!(mode_of(Some(0o755), Some(256)).unwrap(), 0o755);
        assert!(mode_of(Some(4096), None).is_err());
    }
}
