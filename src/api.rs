//! Serde types of the interLink wire format (see shared/contract.md): what the API server sends
//! and what it reads back. No behaviour lives here; checking a request is `pod.rs`'s job.
//! Key spellings are interLink's own (`PodUID`, `JID`, `projectedvolumemaps`, …).

use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod, Secret};
use serde::{Deserialize, Serialize};

/// Body of `POST /create`: one `RetrievedPodData` (interLink 0.4.x sent a one-element array).
#[derive(Debug, Deserialize)]
pub struct RetrievedPodData {
    pub pod: Pod,
    #[serde(default)]
    pub container: Option<Vec<RetrievedContainer>>,
    #[serde(default, rename = "jobScript")]
    pub job_script: Option<String>,
}

/// The objects shipped for one offloaded container, matched to `pod.spec` by name. Volumes use
/// them; the core daemon only needs them to parse.
#[derive(Debug, Deserialize)]
pub struct RetrievedContainer {
    pub name: String,
    #[serde(default, rename = "configMaps")]
    pub config_maps: Option<Vec<ConfigMap>>,
    #[serde(default)]
    pub secrets: Option<Vec<Secret>>,
    #[serde(default, rename = "projectedvolumemaps")]
    pub projected_volume_maps: Option<Vec<ConfigMap>>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CreateResponse {
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    #[serde(rename = "PodJID")]
    pub pod_jid: String,
}

/// One element of the `/status` answer.
#[derive(Debug, Serialize)]
pub struct PodStatusOut {
    pub name: String,
    #[serde(rename = "UID")]
    pub uid: String,
    pub namespace: String,
    #[serde(rename = "JID")]
    pub jid: String,
    pub containers: Vec<ContainerStatus>,
    #[serde(rename = "initContainers")]
    pub init_containers: Vec<ContainerStatus>,
}

/// The ping answer. Resources are left out on purpose: present fields overwrite the virtual
/// node's capacity, and this daemon does not measure its allocation (yet).
#[derive(Debug, Serialize)]
pub struct PingResponse {
    pub status: &'static str,
}

/// Body of `GET /getLogs`; interLink always sends every key.
#[derive(Debug, Deserialize)]
pub struct LogRequest {
    #[serde(rename = "Namespace", default)]
    pub namespace: String,
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    #[serde(rename = "PodName", default)]
    pub pod_name: String,
    #[serde(rename = "ContainerName")]
    pub container_name: String,
    #[serde(rename = "Opts", default)]
    pub opts: LogOpts,
}

#[derive(Debug, Default, Deserialize)]
pub struct LogOpts {
    #[serde(rename = "Tail", default)]
    pub tail: i64,
    #[serde(rename = "Bytes", default)]
    pub bytes: i64,
    #[serde(rename = "Timestamps", default)]
    pub timestamps: bool,
    #[serde(rename = "Follow", default)]
    pub follow: bool,
    #[serde(rename = "Previous", default)]
    pub previous: bool,
    #[serde(rename = "SinceSeconds", default)]
    pub since_seconds: i64,
    #[serde(rename = "SinceTime", default)]
    pub since_time: Option<String>,
}

/// The few fields of a pod that `/status` and `/delete` need. interLink sends whole pods; not
/// decoding the rest keeps the hot status path cheap.
#[derive(Debug, Deserialize)]
pub struct PodRef {
    #[serde(default)]
    pub metadata: PodRefMeta,
    #[serde(default)]
    pub spec: Option<PodRefSpec>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodRefMeta {
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, rename = "deletionGracePeriodSeconds")]
    pub deletion_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodRefSpec {
    #[serde(default, rename = "terminationGracePeriodSeconds")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// Body of `/system-info`, our own endpoint for people and monitoring.
#[derive(Debug, Serialize)]
pub struct SystemInfo {
    pub plugin_version: &'static str,
    pub apptainer_path: String,
    pub apptainer_version: String,
    pub data_root: String,
    pub pods: PhaseCounts,
}

#[derive(Debug, Default, Serialize)]
pub struct PhaseCounts {
    pub total: usize,
    pub pending: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
}
