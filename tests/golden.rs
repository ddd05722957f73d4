//! Golden files of script rendering: each `fixtures/golden/<case>.json` (a node config excerpt
//! and a `/create` body) must render exactly `<case>.sh` (job.sh) and `<case>.env` (the env
//! files), and every `.sh` must pass `bash -n`. `UPDATE_GOLDEN=1 cargo test --test golden`
//! rewrites the expected files; review the diff before committing it.

use apptainer_plugin::plan::PodPlan;
use apptainer_plugin::pod::{self, PlanDefaults};
use apptainer_plugin::script::{self, ScriptContext};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const POD_DIR: &str = "/var/lib/interlink/jobs/POD";
const APPTAINER: &str = "/usr/bin/apptainer";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden")
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "golden cases missing: {v:?}");
    v
}

/// Renders one case: (job.sh, all env files in container order).
fn render(case: &Path) -> (String, String) {
    let input: Value = serde_json::from_slice(&std::fs::read(case).unwrap()).unwrap();
    let cfg = &input["config"];
    let body = serde_json::to_vec(&input["create"]).unwrap();
    let data = pod::parse_create(&body).unwrap();
    let plan: PodPlan = pod::plan(
        &data,
        &PlanDefaults {
            image_prefix: cfg["ImagePrefix"].as_str().unwrap(),
            default_grace_seconds: 30,
            export_pod_data: cfg["ExportPodData"].as_bool().unwrap_or(true),
            enable_pre_exec: cfg["EnablePreExec"].as_bool().unwrap_or(false),
        },
    )
    .unwrap();
    let options: Vec<String> = cfg["ApptainerDefaultOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let tsocks_path = cfg["Tsocks"]["TsocksPath"].as_str().map(PathBuf::from);
    let login = cfg["Tsocks"]["TsocksLoginNode"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ctx = ScriptContext {
        pod_dir: Path::new(POD_DIR),
        apptainer: Path::new(APPTAINER),
        default_options: &options,
        log_writer: Path::new("/usr/libexec/apptainer-plugin"),
        setsid: Path::new("/usr/bin/setsid"),
        backoff: apptainer_plugin::config::Backoff {
            initial_ms: 10_000,
            max_ms: 300_000,
            reset_ms: 600_000,
        },
        shm: Some(Path::new("/dev/shm")),
        tsocks: tsocks_path.as_deref().map(|p| (p, login.as_str())),
    };
    let job = script::render_job(&ctx, &plan);
    let mut env = String::new();
    for c in plan.init_containers.iter().chain(&plan.containers) {
        env.push_str(&format!("### {}\n", script::env_file(&c.name).display()));
        env.push_str(&script::render_env_file(&c.env));
    }
    (job, env)
}

#[test]
fn rendered_scripts_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for case in cases() {
        let (job, env) = render(&case);
        for (ext, text) in [("sh", job), ("env", env)] {
            let file = case.with_extension(ext);
            if update {
                std::fs::write(&file, &text).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&file).unwrap_or_default();
            if want != text {
                mismatched.push(format!(
                    "{}:\n--- expected\n{want}\n--- rendered\n{text}",
                    file.display()
                ));
            }
        }
    }
    assert!(
        mismatched.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatched.join("\n")
    );
}

#[test]
fn every_golden_script_is_valid_bash() {
    for case in cases() {
        let sh = case.with_extension("sh");
        let out = Command::new("bash").arg("-n").arg(&sh).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            sh.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_golden_env_file_is_valid_bash() {
    for case in cases() {
        let text = std::fs::read_to_string(case.with_extension("env")).unwrap();
        let out = Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(&text)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            case.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
