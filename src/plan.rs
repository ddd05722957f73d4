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
    /// From the annotation `slurm-job.vk.io/singularity-options`, already split into words.
    pub extra_options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodPlan {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub grace_seconds: u64,
    pub init_containers: Vec<ContainerPlan>,
    pub containers: Vec<ContainerPlan>,
}

impl PodPlan {
    /// `namespace/name`, how every message names the pod.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The pod's directory name under `DataRootFolder`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.namespace, self.uid)
    }
}
