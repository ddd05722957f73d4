//! Pure rendering of a pod's `job.sh` and its containers' env files from a `PodPlan`: text in,
//! text out, no I/O and no clock. Every byte a pod author wrote reaches the script only through
//! `quote`, so nothing of theirs is ever interpreted by a shell.

use crate::config::Backoff;
use crate::plan::{ContainerPlan, Hook, PodPlan, ProbeHandler, Verb};
use crate::volumes::volume_source;
use std::path::{Path, PathBuf};

/// The pod's script and its own output, in the pod directory.
pub const JOB_SCRIPT: &str = "job.sh";
pub const JOB_LOG: &str = "job.log";

/// Where files of one container live, relative to the pod directory. The daemon's readers use
/// the same functions, so the layout is defined once.
pub fn container_dir(name: &str) -> PathBuf {
    Path::new("containers").join(name)
}
pub fn status_file(name: &str) -> PathBuf {
    container_dir(name).join("status")
}
pub fn env_file(name: &str) -> PathBuf {
    container_dir(name).join("env")
}
/// The container's own /tmp.
pub fn tmp_dir(name: &str) -> PathBuf {
    container_dir(name).join("tmp")
}
/// The file bound at the container's terminationMessagePath.
pub fn termination_log(name: &str) -> PathBuf {
    container_dir(name).join("termination-log")
}
/// The `slurm-job.vk.io/pre-exec` snippet, when the node enables it.
pub const PRE_EXEC: &str = "pre-exec.sh";

/// What the script needs besides the plan: the node's configuration and the pod's directory.
#[derive(Debug, Clone)]
pub struct ScriptContext<'a> {
    pub pod_dir: &'a Path,
    pub apptainer: &'a Path,
    pub default_options: &'a [String],
    /// The plugin's binary, run as `log-writer` behind each container.
    pub log_writer: &'a Path,
    /// util-linux `setsid`, which gives each container its own process group.
    pub setsid: &'a Path,
    pub backoff: Backoff,
    /// Memory-backed root for `emptyDir.medium: Memory`, if the node has one.
    pub shm: Option<&'a Path>,
    /// (library, login node) when Tsocks is configured.
    pub tsocks: Option<(&'a Path, &'a str)>,
}

/// Single-quotes `s` for bash: the result is one word whose value is exactly `s`. Inside single
/// quotes nothing is special except `'` itself, written as `'\''`. NUL bytes cannot be passed
/// at all and are refused before a plan is built.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The env file for `--env-file`: apptainer reads it with a shell in allexport mode, so each
/// value is single-quoted and arrives byte-exact (with `--no-eval`).
pub fn render_env_file(env: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in env {
        out.push_str(k);
        out.push('=');
        out.push_str(&quote(v));
        out.push('\n');
    }
    out
}

/// The apptainer command line of one container, as words (unquoted).
pub fn apptainer_argv(ctx: &ScriptContext<'_>, plan: &PodPlan, c: &ContainerPlan) -> Vec<String> {
    let mut argv = vec![
        ctx.apptainer.to_string_lossy().into_owned(),
        match c.verb {
            Verb::Exec => "exec".to_string(),
            Verb::Run => "run".to_string(),
        },
    ];
    argv.extend(ctx.default_options.iter().cloned());
    // Without --no-eval apptainer shell-evaluates env values and run arguments itself.
    if !ctx.default_options.iter().any(|o| o == "--no-eval") {
        argv.push("--no-eval".into());
    }
    if let Some(dir) = &c.working_dir {
        argv.push("--pwd".into());
        argv.push(dir.clone());
    }
    argv.push("--env-file".into());
    argv.push(
        ctx.pod_dir
            .join(env_file(&c.name))
            .to_string_lossy()
            .into_owned(),
    );
    argv.extend(binds(ctx, plan, c));
    argv.extend(c.extra_options.iter().cloned());
    argv.push(c.resolved_image.clone());
    argv.extend(c.argv.iter().cloned());
    argv
}

/// `--bind` arguments of one container: its own /tmp (unless a volume is mounted there), then
/// its volume mounts in plan order (parents first). Paths were checked free of `:` and `,`.
fn binds(ctx: &ScriptContext<'_>, plan: &PodPlan, c: &ContainerPlan) -> Vec<String> {
    let mut out = Vec::new();
    let mut bind = |src: &Path, dst: &str, ro: bool| {
        out.push("--bind".to_string());
        out.push(format!(
            "{}:{dst}{}",
            src.display(),
            if ro { ":ro" } else { "" }
        ));
    };
    if !c.mounts.iter().any(|m| m.mount_path == "/tmp") {
        bind(&ctx.pod_dir.join(tmp_dir(&c.name)), "/tmp", false);
    }
    // Not under /dev: apptainer binds the host's /dev, where a mount point cannot be created
    // (the kubelet's default /dev/termination-log is therefore not captured).
    let under_dev = c.termination_message_path.starts_with("/dev/");
    if !under_dev
        && !c
            .mounts
            .iter()
            .any(|m| m.mount_path == c.termination_message_path)
    {
        bind(
            &ctx.pod_dir.join(termination_log(&c.name)),
            &c.termination_message_path,
            false,
        );
    }
    for m in &c.mounts {
        let Some(v) = plan.volume(&m.volume) else {
            continue;
        };
        let Some(src) = volume_source(ctx.pod_dir, &plan.uid, ctx.shm, v) else {
            continue;
        };
        let src = match &m.sub_path {
            Some(sub) => src.join(sub),
            None => src,
        };
        bind(&src, &m.mount_path, m.read_only);
    }
    out
}

/// The functions every job.sh starts with (bash, kept in its own file so that it reads and
/// lints as the shell it is).
const PROLOGUE: &str = include_str!("job_prologue.sh");

/// Renders the whole `job.sh` for a pod.
pub fn render_job(ctx: &ScriptContext<'_>, plan: &PodPlan) -> String {
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# job.sh of pod {} (uid {}), written by apptainer-plugin.\n",
        plan.key().escape_debug(),
        plan.uid.escape_debug()
    ));
    s.push_str("# Each container's start and exit go to containers/<name>/status, its output to\n");
    s.push_str(
        "# containers/<name>/log; the daemon reads both, also after a restart of its own.\n",
    );
    s.push_str(PROLOGUE);
    s.push_str(&format!("log_writer={}\n", quote_path(ctx.log_writer)));
    s.push_str(&format!("setsid={}\n", quote_path(ctx.setsid)));
    s.push_str(&format!(
        "backoff_initial_ms={} backoff_max_ms={} backoff_reset_ms={}\n",
        ctx.backoff.initial_ms, ctx.backoff.max_ms, ctx.backoff.reset_ms
    ));
    s.push_str(&format!("grace_s={}\n", plan.grace_seconds));
    s.push_str(&format!("cd -- {} || exit 1\n", quote_path(ctx.pod_dir)));
    s.push_str(&hook_functions(ctx, plan));
    if plan.pre_exec.is_some() {
        s.push_str("\n# The pod's slurm-job.vk.io/pre-exec snippet (enabled on this node by EnablePreExec).\n");
        s.push_str(&format!(". ./{PRE_EXEC} >>job.log 2>&1\n"));
    }

    if let Some((lib, login)) = ctx.tsocks {
        s.push_str(
            "\n# Tsocks: the node reaches the outside through a SOCKS tunnel to the login node.\n",
        );
        s.push_str(&format!(
            "ssh -4 -N -D 9050 -- {} </dev/null &\ntunnel=$!\n",
            quote(login)
        ));
        s.push_str(&format!("export LD_PRELOAD={}\n", quote_path(lib)));
    }

    if !plan.init_containers.is_empty() {
        s.push_str(
            "\n# Init containers, one after another; the first failure ends the pod. Native\n",
        );
        s.push_str("# sidecars (restartPolicy: Always) start in order and keep running.\n");
        s.push_str("sidecar_names=() sidecar_pids=()\n");
        for c in &plan.init_containers {
            s.push_str(&command_line(ctx, plan, c));
            if c.sidecar {
                s.push_str(&format!(
                    " &\nsidecar_pids+=($!) sidecar_names+=({})\n",
                    quote(&c.name)
                ));
            } else {
                s.push_str(" || exit 1\n");
            }
        }
    }

    s.push_str("\n# Containers, concurrently.\npids=()\n");
    for c in &plan.containers {
        s.push_str(&command_line(ctx, plan, c));
        s.push_str(" &\npids+=($!)\n");
    }
    s.push_str(
        r#"
# Wait for every container; a SIGTERM interrupts `wait`, so wait again until each is gone.
for pid in "${pids[@]}"; do
  wait "$pid"
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
done
"#,
    );
    if plan.init_containers.iter().any(|c| c.sidecar) {
        s.push_str("stop_sidecars \"${sidecar_names[@]}\" -- \"${sidecar_pids[@]}\"\n");
    }
    if ctx.tsocks.is_some() {
        s.push_str("kill \"$tunnel\" 2>/dev/null\n");
    }
    s.push_str("exit 0\n");
    s
}

/// The name of a container's hook function in job.sh (container names have '-', which bash
/// function names had better not).
fn hook_fn(kind: &str, plan: &PodPlan, c: &ContainerPlan) -> String {
    let i = plan
        .init_containers
        .iter()
        .chain(&plan.containers)
        .position(|x| x.name == c.name)
        .unwrap_or(0);
    format!("{kind}_{i}")
}

fn hook_body(ctx: &ScriptContext<'_>, plan: &PodPlan, c: &ContainerPlan, h: &Hook) -> String {
    let words: Vec<String> = match h {
        Hook::Exec(cmd) => {
            // In the container's environment: same image, options, binds and /tmp.
            let mut as_exec = c.clone();
            as_exec.verb = Verb::Exec;
            as_exec.argv = cmd.clone();
            apptainer_argv(ctx, plan, &as_exec)
        }
        Hook::HttpGet {
            host,
            port,
            path,
            headers,
        } => {
            let mut w = vec![
                "http_get".to_string(),
                host.clone(),
                port.to_string(),
                path.clone(),
            ];
            for (k, v) in headers {
                w.push(k.clone());
                w.push(v.clone());
            }
            w
        }
        Hook::Sleep(secs) => vec!["sleep".into(), secs.to_string()],
    };
    let quoted: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 && w == "http_get" {
                w.clone()
            } else {
                quote(w)
            }
        })
        .collect();
    quoted.join(" ")
}

/// One function per hook, and the `job.sh prestop NAME` entry the daemon uses before it stops
/// a container.
fn hook_functions(ctx: &ScriptContext<'_>, plan: &PodPlan) -> String {
    let mut s = String::new();
    let all: Vec<&ContainerPlan> = plan
        .init_containers
        .iter()
        .chain(&plan.containers)
        .collect();
    for c in &all {
        if let Some(h) = &c.post_start {
            s.push_str(&format!(
                "{}() {{ {} </dev/null; }}\n",
                hook_fn("post_start", plan, c),
                hook_body(ctx, plan, c, h)
            ));
        }
        if let Some(h) = &c.pre_stop {
            s.push_str(&format!(
                "{}() {{ {} </dev/null; }}\n",
                hook_fn("pre_stop", plan, c),
                hook_body(ctx, plan, c, h)
            ));
        }
    }
    let mut probes = Vec::new();
    for c in &all {
        for p in &c.probes {
            if let ProbeHandler::Exec(cmd) = &p.handler {
                let f = hook_fn(&format!("probe_{}", p.kind.as_str()), plan, c);
                let body = hook_body(ctx, plan, c, &Hook::Exec(cmd.clone()));
                s.push_str(&format!("{f}() {{ {body} </dev/null; }}\n"));
                probes.push((c.name.clone(), p.kind.as_str(), f));
            }
        }
    }
    if !probes.is_empty() {
        s.push_str("\n# `job.sh probe NAME KIND` runs that container's exec probe (the daemon does).\nif [[ ${1-} == probe ]]; then\n  case ${2-}/${3-} in\n");
        for (name, kind, f) in &probes {
            s.push_str(&format!("  {}/{kind}) {f} ;;\n", quote(name)));
        }
        s.push_str("  *) exit 2 ;;\n  esac\n  exit\nfi\n");
    }
    let pre_stops: Vec<&&ContainerPlan> = all.iter().filter(|c| c.pre_stop.is_some()).collect();
    if !pre_stops.is_empty() {
        s.push_str("\n# `job.sh prestop NAME` runs that container's preStop hook.\nif [[ ${1-} == prestop ]]; then\n  case ${2-} in\n");
        for c in pre_stops {
            s.push_str(&format!(
                "  {}) {} >>{} 2>&1 ;;\n",
                quote(&c.name),
                hook_fn("pre_stop", plan, c),
                quote(&format!("containers/{}/hooks.log", c.name))
            ));
        }
        s.push_str("  esac\n  exit\nfi\n");
    }
    s
}

fn command_line(ctx: &ScriptContext<'_>, plan: &PodPlan, c: &ContainerPlan) -> String {
    let post = match c.post_start {
        Some(_) => hook_fn("post_start", plan, c),
        None => "-".to_string(),
    };
    let mut line = format!(
        "run_container {} {} {post}",
        quote(&c.name),
        c.restart.as_str()
    );
    for w in apptainer_argv(ctx, plan, c) {
        line.push(' ');
        line.push_str(&quote(&w));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Values that break naive quoting: each must come back byte-exact from a real bash.
    pub const NASTY: &[&str] = &[
        "",
        "plain",
        "it's",
        "'",
        "''",
        "\"double\"",
        "$HOME",
        "${HOME}",
        "`id`",
        "$(id)",
        "back\\slash",
        "\\'",
        "new\nline",
        "trailing newline\n",
        "tab\tand space ",
        "!bang !! history",
        "*glob?[a]",
        "~",
        "; rm -rf / #",
        "emoji 🚀 accents éàü",
        "-n",
        "--flag=value",
        "a\u{7f}b\u{1}c",
    ];

    #[test]
    fn quote_round_trips_through_bash() {
        let mut script = String::from("printf '%s\\0'");
        for v in NASTY {
            script.push(' ');
            script.push_str(&quote(v));
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_every_nasty_value(&out.stdout);
    }

    #[test]
    fn env_file_round_trips_through_an_allexport_shell() {
        let env: Vec<(String, String)> = NASTY
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("V{i}"), v.to_string()))
            .collect();
        let dir = std::env::temp_dir().join(format!("envfile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("env");
        std::fs::write(&file, render_env_file(&env)).unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg("set -a; source \"$1\"; set +a; for i in $(seq 0 $2); do v=V$i; printf '%s\\0' \"${!v}\"; done")
            .arg("bash")
            .arg(&file)
            .arg((NASTY.len() - 1).to_string())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_every_nasty_value(&out.stdout);
    }

    /// `stdout` must be exactly the NASTY values, each followed by a NUL.
    fn assert_every_nasty_value(stdout: &[u8]) {
        let got: Vec<&[u8]> = stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = NASTY
            .iter()
            .map(|s| s.as_bytes())
            .chain([&b""[..]])
            .collect();
        assert_eq!(got, want);
    }
}
