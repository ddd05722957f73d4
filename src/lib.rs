//! interLink sidecar plugin that runs Kubernetes pods as Apptainer containers on this node.
//! The binary (`main.rs`) only wires these modules together; tests use them directly.

pub mod api;
pub mod config;
pub mod error;
pub mod follow;
pub mod hooks;
pub mod http;
pub mod logs;
pub mod logwriter;
pub mod plan;
pub mod pod;
pub mod pods;
pub mod probes;
pub mod process;
pub mod script;
pub mod state;
pub mod status;
pub mod sysinfo;
pub mod volume_files;
pub mod volumes;
