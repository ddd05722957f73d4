//! Validation at the edge: a `/create` body becomes a checked `PodPlan`, or a 400 whose text
//! names the pod, the field and the problem. After this, nothing derived from the request is
//! trusted blindly elsewhere, and nothing here touches the disk or a process.

use crate::api::RetrievedPodData;
use crate::error::ApiError;
use crate::plan::{ContainerPlan, PodPlan, Restart, Verb, VolumePlan};
use crate::volumes;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashSet;

pub const ANNOTATION_IMAGE_ROOT: &str = "slurm-job.vk.io/image-root";
pub const ANNOTATION_OPTIONS: &str = "slurm-job.vk.io/singularity-options";
pub const ANNOTATION_MOUNTS: &str = "slurm-job.vk.io/singularity-mounts";
pub const ANNOTATION_PRE_EXEC: &str = "slurm-job.vk.io/pre-exec";

/// Node settings that shape a plan.
pub struct PlanDefaults<'a> {
    pub image_prefix: &'a str,
    pub default_grace_seconds: u64,
    /// `ExportPodData`: write (and mount) configMap, secret, projected and downwardAPI data.
    pub export_pod_data: bool,
    /// Run the `slurm-job.vk.io/pre-exec` snippet (shell text) before the containers.
    pub enable_pre_exec: bool,
}

/// Parses a `/create` body: a `RetrievedPodData` object or a 0.4-style array (first element).
pub fn parse_create(body: &[u8]) -> Result<RetrievedPodData, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    // Dispatch on the first byte rather than an untagged enum: serde's untagged errors cannot
    // say which field was wrong.
    if first_byte(body) == Some(b'[') {
        let many: Vec<RetrievedPodData> =
            serde_path_to_error::deserialize(de).map_err(|e| json_error("create", e))?;
        many.into_iter().next().ok_or_else(|| {
            ApiError::BadRequest("create: the body is an empty array; expected one pod".into())
        })
    } else {
        serde_path_to_error::deserialize(de).map_err(|e| json_error("create", e))
    }
}

/// The first byte that is not blank: tells an array body from an object.
pub fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Turns a serde error into a 400 that says where in the body it happened.
pub fn json_error(what: &str, e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        ApiError::BadRequest(format!("{what}: the body is not valid JSON: {inner}"))
    } else if path.is_empty() || path == "." {
        ApiError::BadRequest(format!("{what}: {inner}"))
    } else {
        ApiError::BadRequest(format!("{what}: field {path}: {inner}"))
    }
}

/// The pod's identity, checked so that it is safe as a directory name.
pub struct PodId {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

pub fn pod_id(pod: &Pod) -> Result<PodId, ApiError> {
    let md = &pod.metadata;
    let name = md.name.clone().unwrap_or_default();
    let namespace = md
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let uid = md.uid.clone().unwrap_or_default();
    let bad = |m: String| Err(ApiError::BadRequest(m));
    if name.is_empty() {
        return bad("pod has no metadata.name".into());
    }
    if !is_dns_subdomain(&name) {
        return bad(format!(
            "pod {namespace}/{name:?}: metadata.name must be a DNS subdomain (a-z, 0-9, '-', '.')"
        ));
    }
    if !is_dns_label(&namespace) {
        return bad(format!(
            "pod {namespace:?}/{name}: metadata.namespace must be a DNS label (a-z, 0-9, '-')"
        ));
    }
    if uid.is_empty() {
        return bad(format!("pod {namespace}/{name} has no metadata.uid"));
    }
    if uid.len() > 128 || !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return bad(format!(
            "pod {namespace}/{name}: metadata.uid {uid:?} may only contain letters, digits and '-'"
        ));
    }
    Ok(PodId {
        uid,
        namespace,
        name,
    })
}

/// Builds the checked plan of a pod.
pub fn plan(data: &RetrievedPodData, d: &PlanDefaults<'_>) -> Result<PodPlan, ApiError> {
    let pod = &data.pod;
    let id = pod_id(pod)?;
    let key = format!("{}/{}", id.namespace, id.name);
    let bad = |m: String| ApiError::BadRequest(format!("pod {key}: {m}"));
    let spec = pod.spec.as_ref().ok_or_else(|| bad("has no spec".into()))?;
    if spec.containers.is_empty() {
        return Err(bad(
            "spec.containers is empty; a pod needs at least one container".into(),
        ));
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let image_root = annotations
        .get(ANNOTATION_IMAGE_ROOT)
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .unwrap_or(d.image_prefix);
    // Both annotations are argument lists for apptainer, never shell text.
    let mut extra_options = Vec::new();
    for key in [ANNOTATION_OPTIONS, ANNOTATION_MOUNTS] {
        if let Some(s) = annotations.get(key) {
            let words = split_words(s).map_err(|m| bad(format!("annotation {key}: {m}")))?;
            if let Some(w) = words.iter().find(|w| w.contains('\0')) {
                return Err(bad(format!(
                    "annotation {key}: word {w:?} contains a NUL byte"
                )));
            }
            extra_options.extend(words);
        }
    }
    let pre_exec = annotations
        .get(ANNOTATION_PRE_EXEC)
        .filter(|s| !s.trim().is_empty());
    if pre_exec.is_some() && !d.enable_pre_exec {
        tracing::warn!(pod = %key, "annotation {ANNOTATION_PRE_EXEC} ignored: EnablePreExec is off on this node");
    }
    let pre_exec = pre_exec.filter(|_| d.enable_pre_exec).cloned();
    let pod_restart = match spec.restart_policy.as_deref() {
        None | Some("") | Some("Always") => Restart::Always,
        Some("OnFailure") => Restart::OnFailure,
        Some("Never") => Restart::Never,
        Some(other) => {
            return Err(bad(format!(
                "spec.restartPolicy {other:?} is not Always, OnFailure or Never"
            )))
        }
    };

    let all_containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let mounted: HashSet<String> = all_containers
        .flat_map(|c| c.volume_mounts.iter().flatten().map(|m| m.name.clone()))
        .collect();
    let volumes = volumes::plan_volumes(data, &mounted, d.export_pod_data).map_err(bad)?;

    let mut seen = HashSet::new();
    let mut convert = |list: &[Container], field: &str| -> Result<Vec<ContainerPlan>, ApiError> {
        list.iter()
            .enumerate()
            .map(|(i, c)| {
                let at = format!("{field}[{i}]");
                if !is_dns_label(&c.name) {
                    return Err(bad(format!(
                        "{at}: container name {:?} must be a DNS label (a-z, 0-9, '-', at most 63)",
                        c.name
                    )));
                }
                if !seen.insert(c.name.clone()) {
                    return Err(bad(format!(
                        "{at}: container name {:?} is used twice",
                        c.name
                    )));
                }
                container_plan(c, image_root, &extra_options, &volumes)
                    .map_err(|m| bad(format!("container {}: {m}", c.name)))
            })
            .collect()
    };
    let mut init_containers = convert(
        spec.init_containers.as_deref().unwrap_or(&[]),
        "spec.initContainers",
    )?;
    let mut containers = convert(&spec.containers, "spec.containers")?;
    for c in &mut containers {
        c.restart = pod_restart;
    }
    for (c, spec_c) in init_containers
        .iter_mut()
        .zip(spec.init_containers.iter().flatten())
    {
        match spec_c.restart_policy.as_deref() {
            Some("Always") => {
                c.sidecar = true;
                c.restart = Restart::Always;
            }
            None | Some("") => {
                // An init container must succeed: Always retries it like OnFailure.
                c.restart = if pod_restart == Restart::Never { Restart::Never } else { Restart::OnFailure };
            }
            Some(other) => {
                return Err(bad(format!(
                    "init container {}: restartPolicy {other:?} is not supported (only Always, for a sidecar)",
                    c.name
                )))
            }
        }
    }
    let grace_seconds = match spec.termination_grace_period_seconds {
        Some(g) if g >= 0 => g as u64,
        Some(_) => 0,
        None => d.default_grace_seconds,
    };
    Ok(PodPlan {
        uid: id.uid,
        namespace: id.namespace,
        name: id.name,
        grace_seconds,
        init_containers,
        containers,
        volumes,
        pre_exec,
    })
}

fn container_plan(
    c: &Container,
    image_root: &str,
    extra: &[String],
    volumes: &[VolumePlan],
) -> Result<ContainerPlan, String> {
    let image = c.image.clone().unwrap_or_default();
    if image.trim().is_empty() {
        return Err("has no image".into());
    }
    let no_nul = |what: &str, s: &str| {
        if s.contains('\0') {
            Err(format!(
                "{what} contains a NUL byte, which no process argument can carry"
            ))
        } else {
            Ok(())
        }
    };
    no_nul("image", &image)?;
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    for (i, w) in command.iter().enumerate() {
        no_nul(&format!("command[{i}]"), w)?;
    }
    for (i, w) in args.iter().enumerate() {
        no_nul(&format!("args[{i}]"), w)?;
    }
    let (verb, argv) = if command.is_empty() {
        (Verb::Run, args)
    } else {
        (Verb::Exec, command.into_iter().chain(args).collect())
    };
    let working_dir = c.working_dir.clone().filter(|w| !w.is_empty());
    if let Some(w) = &working_dir {
        no_nul("workingDir", w)?;
        if !w.starts_with('/') {
            return Err(format!("workingDir {w:?} must be an absolute path"));
        }
    }
    // Last duplicate wins, as in Kubernetes; the first occurrence keeps its place.
    let mut env: Vec<(String, String)> = Vec::new();
    for (i, e) in c.env.iter().flatten().enumerate() {
        if !is_shell_name(&e.name) {
            return Err(format!(
                "env[{i}]: name {:?} cannot be passed by apptainer; use letters, digits and '_', not starting with a digit",
                e.name
            ));
        }
        let value = e.value.clone().unwrap_or_default();
        no_nul(&format!("env {}", e.name), &value)?;
        match env.iter_mut().find(|(k, _)| *k == e.name) {
            Some(slot) => slot.1 = value,
            None => env.push((e.name.clone(), value)),
        }
    }
    let mounts = volumes::plan_mounts(c, volumes, &env)?;
    let (post_start, pre_stop) = crate::hooks::hooks(c)?;
    let probes = crate::probes::plan(c)?;
    let termination_message_path = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".into());
    if !termination_message_path.starts_with('/')
        || termination_message_path.contains([':', ',', '\0'])
        || termination_message_path.split('/').any(|p| p == "..")
    {
        return Err(format!(
            "terminationMessagePath {termination_message_path:?} must be an absolute path without '..', ':' or ','"
        ));
    }
    Ok(ContainerPlan {
        name: c.name.clone(),
        resolved_image: resolve_image(&image, image_root),
        image,
        verb,
        argv,
        working_dir,
        env,
        extra_options: extra.to_vec(),
        mounts,
        restart: Restart::Never,
        sidecar: false,
        post_start,
        pre_stop,
        probes,
        termination_message_path,
        fallback_to_logs: c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
    })
}

/// Absolute paths and references with a scheme are used as they are; anything else is a
/// registry reference that needs the prefix (real apptainer refuses a bare `python:3.11`).
pub fn resolve_image(image: &str, root: &str) -> String {
    const SCHEMES: &[&str] = &[
        "docker://",
        "library://",
        "oras://",
        "shub://",
        "instance://",
        "http://",
        "https://",
        "docker-archive:",
        "oci-archive:",
        "docker-daemon:",
    ];
    if image.starts_with('/') || SCHEMES.iter().any(|s| image.starts_with(s)) {
        image.to_string()
    } else {
        format!("{root}{image}")
    }
}

/// Splits an option string into words the way a user would expect from a shell, without any
/// expansion: blanks separate words, single and double quotes group, backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => cur.extend(chars.next()),
                        Some(x) => cur.push(x),
                        None => return Err(format!("unbalanced {c} quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_shell_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images() {
        assert_eq!(
            resolve_image("python:3.11", "docker://"),
            "docker://python:3.11"
        );
        assert_eq!(resolve_image("/sif/x.sif", "docker://"), "/sif/x.sif");
        assert_eq!(resolve_image("oras://r/x:1", "docker://"), "oras://r/x:1");
        assert_eq!(
            resolve_image("x.sif", "/cvmfs/images/"),
            "/cvmfs/images/x.sif"
        );
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words("  --nv  --bind '/a b:/c' \"x\\\"y\" z\\ w").unwrap(),
            ["--nv", "--bind", "/a b:/c", "x\"y", "z w"]
        );
        assert_eq!(split_words("''").unwrap(), [""]);
        assert!(split_words("'open").is_err());
        assert!(split_words("").unwrap().is_empty());
    }

    #[test]
    fn names() {
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label("a/b"));
        assert!(!is_dns_label(".."));
        assert!(!is_dns_label("-a"));
        assert!(is_dns_subdomain("web.v1"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_shell_name("_A1"));
        assert!(!is_shell_name("1A"));
        assert!(!is_shell_name("A-B"));
    }
}
