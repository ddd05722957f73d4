//! The resolved, checked description of what to run for one pod: the only input of script
//! rendering. Built from the request by `pod.rs`; plain data, no Kubernetes types, so the
//! files that use it compile fast and read simply.

/// How a container is started: `command` set → `exec` (command replaces the entrypoint);
/// otherwise `run`, whose runscript receives the args.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Exec,
    Run,
}

/// When job.sh starts a container again after it exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    /// The word job.sh's `run_container` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "Always",
            Restart::OnFailure => "OnFailure",
            Restart::Never => "Never",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerPlan {
    /// A DNS label: safe as a file name.
    pub name: String,
    /// The image as the pod spelled it, reported back in status.
    pub image: String,
    /// The image handed to apptainer (prefix applied).
    pub resolved_image: String,
    pub verb: Verb,
    /// For `exec`: command then args; for `run`: args only.
    pub argv: Vec<String>,
    pub working_dir: Option<String>,
    /// Final environment: one entry per name, the last duplicate's value, in first-seen order.
    pub env: Vec<(String, String)>,
    /// From the annotations `slurm-job.vk.io/singularity-options` and `…/singularity-mounts`,
    /// already split into words.
    pub extra_options: Vec<String>,
    /// The container's volume mounts, parents before children.
    pub mounts: Vec<MountPlan>,
    /// The pod's restartPolicy as it applies to this container (init containers: `Always`
    /// means OnFailure, except for native sidecars).
    pub restart: Restart,
    /// An init container with its own `restartPolicy: Always`: started in order, not waited
    /// for, kept running, stopped after the regular containers end.
    pub sidecar: bool,
    pub post_start: Option<Hook>,
    pub pre_stop: Option<Hook>,
    /// Startup, readiness and liveness probes (run by the daemon when `EnableProbes` is on).
    pub probes: Vec<ProbePlan>,
    /// terminationMessagePath (a file of the pod directory is bound there) and whether the log
    /// tail stands in for an empty message on failure (FallbackToLogsOnError).
    pub termination_message_path: String,
    pub fallback_to_logs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ProbeHandler {
    Http {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    /// Runs through `job.sh probe NAME KIND` in the container's environment.
    Exec(Vec<String>),
}

/// A probe with the kubelet's defaults filled in (seconds are "probe seconds", see config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbePlan {
    pub kind: ProbeKind,
    pub handler: ProbeHandler,
    pub initial_delay: u32,
    pub period: u32,
    pub timeout: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A lifecycle hook, checked: an exec runs in the container's environment (same image,
/// options, binds and /tmp); an httpGet goes to the host network, as the container's ports do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Hook {
    Exec(Vec<String>),
    HttpGet {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Sleep(u64),
}

/// One `volumeMount`, checked: `volume` names a volume of the plan, `mount_path` is absolute
/// and `sub_path` relative without `..`; neither contains `:` or `,` (apptainer's separators).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MountPlan {
    pub volume: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub read_only: bool,
}

/// A volume the pod's containers mount.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VolumePlan {
    /// A DNS label: safe as a directory name.
    pub name: String,
    pub kind: VolumeKind,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum VolumeKind {
    /// A fresh directory shared by the pod's containers; `memory` puts it on /dev/shm.
    EmptyDir {
        memory: bool,
        size_limit: Option<String>,
    },
    /// A host path, checked (and maybe created) according to `host_type` before the pod runs.
    HostPath { path: String, host_type: String },
    /// configMap, secret, projected or downwardAPI data: files the plugin writes.
    Files { files: Vec<FileEntry> },
    /// Data volumes not written because `ExportPodData` is off: not mounted either.
    NotExported,
}

/// One file of a data volume: a checked relative path, its bytes and its mode.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Contents may be secrets: never print them.
impl std::fmt::Debug for FileEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FileEntry({:?}, {} bytes, {:o})",
            self.path,
            self.content.len(),
            self.mode
        )
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodPlan {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub grace_seconds: u64,
    pub init_containers: Vec<ContainerPlan>,
    pub containers: Vec<ContainerPlan>,
    /// Only the volumes some container mounts.
    pub volumes: Vec<VolumePlan>,
    /// The `slurm-job.vk.io/pre-exec` snippet, kept only when the node enables it.
    pub pre_exec: Option<String>,
}

impl PodPlan {
    /// `namespace/name`, how every message names the pod.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn volume(&self, name: &str) -> Option<&VolumePlan> {
        self.volumes.iter().find(|v| v.name == name)
    }
}
