//! A pod's status from what job.sh wrote (`containers/<name>/status`) and whether its job still
//! runs. Reads small files only: no subprocess and no waiting on this path, which interLink
//! calls every few seconds for every pod.

use crate::api::PodStatusOut;
use crate::script::status_file;
use crate::state::{ContainerRecord, PodRecord};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::path::Path;

/// One instance of a container, as job.sh recorded it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instance {
    pub started: Option<Timestamp>,
    pub exit: Option<(i32, Option<Timestamp>)>,
    /// After its exit job.sh waits this many milliseconds before the next start.
    pub backoff_ms: Option<u64>,
    /// Its postStart hook failed, and job.sh stopped it.
    pub post_start_failed: bool,
    /// A startup or liveness probe failed, and the daemon stopped it (the probe's words).
    pub probe_failure: Option<String>,
    /// It died of SIGKILL while its cgroup's OOM kill count grew.
    pub oom_killed: bool,
}

/// Parses `start <time>` / `exit <code> <time>` / `backoff <ms> <time>` lines; an unfinished last line (job.sh is
/// writing it right now) is ignored.
pub fn parse_status(text: &str) -> Vec<Instance> {
    let mut runs: Vec<Instance> = Vec::new();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    for line in complete.lines() {
        let mut w = line.split(' ');
        match (w.next(), w.next(), w.next()) {
            (Some("start"), Some(t), None) => runs.push(Instance {
                started: parse_time(t),
                ..Default::default()
            }),
            (Some("probe-failed"), Some(_), Some(_)) => {
                let why = line.splitn(3, ' ').nth(2).unwrap_or_default();
                if let Some(last) = runs.last_mut() {
                    last.probe_failure = Some(why.to_string());
                }
            }
            (Some("oom"), Some(_), None) => {
                if let Some(last) = runs.last_mut() {
                    last.oom_killed = true;
                }
            }
            (Some("poststart-failed"), Some(_), None) => {
                if let Some(last) = runs.last_mut() {
                    last.post_start_failed = true;
                }
            }
            (Some("backoff"), Some(ms), Some(_)) => {
                if let (Some(last), Ok(ms)) = (runs.last_mut(), ms.parse()) {
                    last.backoff_ms = Some(ms);
                }
            }
            (Some("exit"), Some(code), Some(t)) => {
                let Ok(code) = code.parse::<i32>() else {
                    continue;
                };
                match runs.last_mut() {
                    Some(last) if last.exit.is_none() => last.exit = Some((code, parse_time(t))),
                    _ => runs.push(Instance {
                        exit: Some((code, parse_time(t))),
                        ..Default::default()
                    }),
                }
            }
            _ => {}
        }
    }
    runs
}

/// An RFC 3339 time as job.sh writes it (UTC, sub-second).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

fn read_instances(dir: &Path, name: &str) -> Vec<Instance> {
    std::fs::read_to_string(dir.join(status_file(name)))
        .map(|t| parse_status(&t))
        .unwrap_or_default()
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

fn terminated(
    code: i32,
    started: Option<Timestamp>,
    finished: Option<Timestamp>,
    message: Option<String>,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            // bash reports a child killed by signal N as 128+N.
            signal: (129..=192).contains(&code).then_some(code - 128),
            reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
            message,
            started_at: started.map(Time),
            finished_at: finished.map(Time),
            container_id: None,
        }),
        ..Default::default()
    }
}

/// The terminated state of an instance that exited.
fn instance_end(i: &Instance, code: i32, finished: Option<Timestamp>) -> ContainerState {
    let mut st = terminated(code, i.started, finished, None);
    if let (Some(why), Some(t)) = (&i.probe_failure, st.terminated.as_mut()) {
        t.message = Some(why.clone());
    }
    if let (true, Some(t)) = (i.oom_killed, st.terminated.as_mut()) {
        t.reason = Some("OOMKilled".into());
    }
    if i.post_start_failed {
        if let Some(t) = st.terminated.as_mut() {
            t.reason = Some("FailedPostStartHook".into());
            t.message = Some("the postStart hook failed, so the container was stopped (its output is in hooks.log)".into());
        }
    }
    st
}

/// Why a container that never started will not start: the failed init container, if any.
fn not_started_message(init_failure: Option<&(String, i32)>) -> String {
    match init_failure {
        Some((name, code)) => {
            format!("not started: init container {name:?} failed with exit code {code}")
        }
        None => "not started: the pod's job ended before this container could start".into(),
    }
}

fn container_status(
    c: &ContainerRecord,
    runs: &[Instance],
    alive: bool,
    waiting_reason: &str,
    init_failure: Option<&(String, i32)>,
) -> ContainerStatus {
    let ended = |i: &Instance| i.exit.map(|(code, fin)| instance_end(i, code, fin));
    // Waiting for a restart: the last instance is the "last state", as for the kubelet.
    if let Some(
        last @ Instance {
            exit: Some(_),
            backoff_ms: Some(ms),
            ..
        },
    ) = runs.last().filter(|_| alive)
    {
        let message = format!(
            "back-off {}s restarting failed container={}",
            ms.div_ceil(1000),
            c.name
        );
        return ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            restart_count: runs.len().saturating_sub(1) as i32,
            last_state: Some(ended(last).unwrap_or_default()),
            state: Some(waiting("CrashLoopBackOff", Some(message))),
            started: Some(false),
            ..Default::default()
        };
    }
    let last_state = match runs.len() {
        n if n >= 2 => ended(&runs[n - 2]).unwrap_or_default(),
        _ => ContainerState::default(),
    };
    let state = match runs.last() {
        None if alive => waiting(waiting_reason, None),
        None => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("ContainerCannotRun".into()),
                message: Some(not_started_message(init_failure)),
                ..Default::default()
            }),
            ..Default::default()
        },
        Some(Instance {
            started,
            exit: None,
            ..
        }) if alive => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: started.map(Time),
            }),
            ..Default::default()
        },
        Some(Instance {
            started,
            exit: None,
            ..
        }) => terminated(
            137,
            *started,
            None,
            Some(
                "the pod's job ended while this container was running (killed from outside?)"
                    .into(),
            ),
        ),
        Some(
            i @ Instance {
                exit: Some((code, finished)),
                ..
            },
        ) => instance_end(i, *code, *finished),
    };
    let mut state = state;
    if !c.notes.is_empty() {
        let note = c.notes.join("; ");
        let message = match (&mut state.waiting, &mut state.terminated) {
            (Some(w), _) => &mut w.message,
            (_, Some(t)) => &mut t.message,
            _ => &mut None,
        };
        *message = Some(match message.take() {
            Some(m) => format!("{m}; {note}"),
            None => note,
        });
    }
    let running = state.running.is_some();
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        ready: running,
        started: Some(running),
        restart_count: runs.len().saturating_sub(1) as i32,
        last_state: Some(last_state),
        state: Some(state),
        ..Default::default()
    }
}

/// What the container wrote at its terminationMessagePath becomes its terminated message (at
/// most 4 KiB); with FallbackToLogsOnError an empty one after a failure is the log's last lines
/// (80 lines, 2 KiB at most), as with the kubelet.
fn termination_message(dir: &Path, c: &ContainerRecord, st: &mut ContainerStatus) {
    let Some(t) = st.state.as_mut().and_then(|s| s.terminated.as_mut()) else {
        return;
    };
    if t.started_at.is_none() {
        return;
    }
    let read_tail = |file: &Path, max: u64| -> Option<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(file).ok()?;
        let len = f.metadata().ok()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
        let mut buf = Vec::new();
        f.take(max).read_to_end(&mut buf).ok()?;
        Some(buf)
    };
    let container = dir.join(crate::script::container_dir(&c.name));
    let written = std::fs::File::open(container.join("termination-log"))
        .ok()
        .and_then(|f| {
            use std::io::Read;
            let mut buf = Vec::new();
            f.take(4096).read_to_end(&mut buf).ok()?;
            Some(buf)
        });
    let message = match written {
        Some(m) if !m.is_empty() => m,
        _ if c.fallback_to_logs && t.exit_code != 0 => {
            let tail = read_tail(&container.join("log"), 2048).unwrap_or_default();
            let text = String::from_utf8_lossy(&tail).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(80)..]
                .join("\n")
                .into_bytes()
        }
        _ => return,
    };
    t.message = Some(String::from_utf8_lossy(&message).into_owned());
}

/// The status of one pod as interLink expects it.
pub fn pod_status(dir: &Path, rec: &PodRecord, alive: bool) -> PodStatusOut {
    let mut init_failure: Option<(String, i32)> = None;
    let mut init_done = true;
    let mut init = Vec::with_capacity(rec.init_containers.len());
    for c in &rec.init_containers {
        let runs = read_instances(dir, &c.name);
        match runs.last().and_then(|r| r.exit) {
            Some((0, _)) => {}
            Some((code, _)) => {
                init_done = false;
                init_failure.get_or_insert((c.name.clone(), code));
            }
            None => init_done = false,
        }
        init.push(container_status(
            c,
            &runs,
            alive,
            "PodInitializing",
            init_failure.as_ref(),
        ));
    }
    let reason = if init_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let containers = rec
        .containers
        .iter()
        .map(|c| {
            container_status(
                c,
                &read_instances(dir, &c.name),
                alive,
                reason,
                init_failure.as_ref(),
            )
        })
        .collect();
    let mut containers: Vec<ContainerStatus> = containers;
    for (c, st) in rec
        .init_containers
        .iter()
        .zip(init.iter_mut())
        .chain(rec.containers.iter().zip(containers.iter_mut()))
    {
        termination_message(dir, c, st);
    }
    PodStatusOut {
        name: rec.name.clone(),
        uid: rec.uid.clone(),
        namespace: rec.namespace.clone(),
        jid: rec.jid(),
        containers,
        init_containers: init,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2026-12-03T18:15:07.5Z";
    const B: &str = "2026-12-03T18:15:09.25Z";

    #[test]
    fn times() {
        let t = parse_time("2026-12-03T18:15:07.375188Z").unwrap();
        assert_eq!(t.subsec_nanosecond(), 375_188_000);
        assert!(parse_time("1700000000.5").is_none());
        assert!(parse_time("").is_none());
    }

    #[test]
    fn status_lines() {
        let runs = parse_status(&format!(
            "start {A}\nexit 3 {B}\nstart {A}\nexit 0 {B}\nstart {A}"
        ));
        assert_eq!(runs.len(), 2, "the unfinished line is not read yet");
        assert_eq!(runs[0].exit.unwrap().0, 3);
        assert_eq!(runs[1].exit.unwrap().0, 0);
        assert!(parse_status("").is_empty());
        assert!(parse_status(&format!("start {A}\n"))
            .last()
            .unwrap()
            .exit
            .is_none());
        assert_eq!(runs[0].started, parse_time(A));
        assert!(parse_status("garbage\nexit x 1\n").is_empty());
    }

    #[test]
    fn states() {
        let c = ContainerRecord {
            name: "c".into(),
            image: "i".into(),
            notes: vec![],
            pre_stop: false,
            probes: vec![],
            fallback_to_logs: false,
        };
        let s = |runs: &[Instance], alive| {
            container_status(&c, runs, alive, "ContainerCreating", None)
                .state
                .unwrap()
        };
        assert!(s(&[], true).waiting.is_some());
        assert_eq!(
            s(&[], false).terminated.unwrap().reason.as_deref(),
            Some("ContainerCannotRun")
        );
        let started = Instance {
            started: parse_time(A),
            exit: None,
            ..Default::default()
        };
        assert!(s(std::slice::from_ref(&started), true).running.is_some());
        assert_eq!(
            s(std::slice::from_ref(&started), false)
                .terminated
                .unwrap()
                .exit_code,
            137
        );
        let killed = Instance {
            started: parse_time(A),
            exit: Some((137, parse_time(B))),
            ..Default::default()
        };
        let t = s(&[killed], false).terminated.unwrap();
        assert_eq!(
            (t.exit_code, t.signal, t.reason.as_deref()),
            (137, Some(9), Some("Error"))
        );
        let ok = Instance {
            started: parse_time(A),
            exit: Some((0, parse_time(B))),
            ..Default::default()
        };
        let t = s(&[ok], true).terminated.unwrap();
        assert_eq!(
            (t.exit_code, t.signal, t.reason.as_deref()),
            (0, None, Some("Completed"))
        );
    }

    #[test]
    fn a_probe_failure_is_the_terminated_message() {
        let text = "start 2026-12-03T19:08:37.155437Z\nprobe-failed 2026-12-03T19:08:37.78983152Z Liveness probe failed: x\nexit 143 2026-12-03T19:08:37.791114Z\nbackoff 200 2026-12-03T19:08:37.791300Z\nstart 2026-12-03T19:08:37.993498Z\n";
        let runs = parse_status(text);
        assert_eq!(
            runs[0].probe_failure.as_deref(),
            Some("Liveness probe failed: x"),
            "{runs:?}"
        );
        let c = ContainerRecord {
            name: "c".into(),
            image: "i".into(),
            notes: vec![],
            pre_stop: false,
            probes: vec![],
            fallback_to_logs: false,
        };
        let st = container_status(&c, &runs, true, "ContainerCreating", None);
        let last = st.last_state.unwrap().terminated.unwrap();
        assert_eq!(last.message.as_deref(), Some("Liveness probe failed: x"));
    }

    #[test]
    fn an_oom_kill_is_reported_as_oomkilled() {
        let text = format!("start {A}\noom 3\nexit 137 {B}\n");
        let runs = parse_status(&text);
        let c = ContainerRecord {
            name: "c".into(),
            image: "i".into(),
            notes: vec![],
            pre_stop: false,
            probes: vec![],
            fallback_to_logs: false,
        };
        let st = container_status(&c, &runs, false, "ContainerCreating", None)
            .state
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(
            (st.exit_code, st.reason.as_deref()),
            (137, Some("OOMKilled"))
        );
    }
}
