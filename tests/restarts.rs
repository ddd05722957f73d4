//! restartPolicy through the real binary, with short back-offs: Never, OnFailure and Always,
//! CrashLoopBackOff with doubling delays and its status, the previous instance's log, init
//! containers retried, native sidecars, and a delete that ends the restarts.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn daemon() -> Daemon {
    Daemon::start_with(Options {
        extra_yaml: "RestartBackoffMilliseconds: 200\nMaxRestartBackoffMilliseconds: 800\n".into(),
        ..Default::default()
    })
}

fn with_policy(mut pod: Value, policy: &str) -> Value {
    pod["pod"]["spec"]["restartPolicy"] = json!(policy);
    pod
}

/// A container that counts its runs in an emptyDir and exits `code_until` until run `n`.
fn counting(n: u32) -> Value {
    let script = format!(
        "n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo run $n; [ $n -ge {n} ]"
    );
    mounting(sh("c", &script), "d", "/d", false)
}

fn with_dir(pod: Value) -> Value {
    add_volume(pod, json!({"name": "d", "emptyDir": {}}))
}

fn status_lines(d: &Daemon, pod: &Value) -> String {
    std::fs::read_to_string(d.pod_dir(pod).join("containers/c/status")).unwrap_or_default()
}

#[test]
fn never_does_not_restart() {
    let d = daemon();
    let pod = with_dir(with_policy(
        pod_with("never", vec![counting(3)], vec![], 1),
        "Never",
    ));
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 1);
    assert_eq!(st["restartCount"], 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status_lines(&d, &pod).matches("start").count(), 1);
}

#[test]
fn on_failure_restarts_until_success_and_keeps_the_previous_log() {
    let d = daemon();
    let pod = with_dir(with_policy(
        pod_with("onfail", vec![counting(3)], vec![], 1),
        "OnFailure",
    ));
    d.create(&pod);
    let mut last = Value::Null;
    let done = wait_for(Duration::from_secs(20), || {
        last = d.container_state(&pod, "c");
        last["state"]["terminated"]["exitCode"] == 0
    });
    assert!(done, "{last}");
    assert_eq!(last["restartCount"], 2, "{last}");
    assert_eq!(last["lastState"]["terminated"]["exitCode"], 1, "{last}");
    assert_eq!(d.logs(&pod, "c").text(), "run 3\n");
    let prev = pod_of(&pod);
    let body = json!({"Namespace": "default", "PodUID": prev["metadata"]["uid"], "PodName": prev["metadata"]["name"],
        "ContainerName": "c", "Opts": {"Tail": 0, "Bytes": 0, "Timestamps": false, "Follow": false,
        "Previous": true, "SinceSeconds": 0, "SinceTime": "0001-01-01T00:00:00Z"}});
    assert_eq!(
        d.request("GET", "/getLogs", body.to_string().as_bytes())
            .text(),
        "run 2\n"
    );
    // Back-off doubled between the failures: 200 ms, then 400 ms.
    let lines = status_lines(&d, &pod);
    let delays: Vec<&str> = lines
        .lines()
        .filter_map(|l| l.strip_prefix("backoff "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(delays, ["200", "400"], "{lines}");
}

#[test]
fn always_restarts_with_crash_loop_back_off_and_a_delete_stops_it() {
    let d = daemon();
    let pod = with_policy(
        pod_with("always", vec![sh("c", "echo hi; exit 2")], vec![], 1),
        "Always",
    );
    d.create(&pod);
    let mut seen = Value::Null;
    let waiting = wait_for(Duration::from_secs(20), || {
        seen = d.container_state(&pod, "c");
        seen["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && seen["restartCount"].as_i64().unwrap_or(0) >= 2
    });
    assert!(waiting, "{seen}");
    assert!(
        seen["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("back-off"),
        "{seen}"
    );
    assert_eq!(seen["lastState"]["terminated"]["exitCode"], 2, "{seen}");
    assert_eq!(seen["ready"], false);
    // The delays double up to the cap.
    assert!(wait_for(Duration::from_secs(20), || status_lines(&d, &pod)
        .matches("backoff 800")
        .count()
        >= 2));
    let lines = status_lines(&d, &pod);
    let delays: Vec<&str> = lines
        .lines()
        .filter_map(|l| l.strip_prefix("backoff "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(&delays[..4], ["200", "400", "800", "800"], "{lines}");
    let t0 = Instant::now();
    d.delete(&pod);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "a delete ends the back-off at once: {:?}",
        t0.elapsed()
    );
    assert!(!d.pod_dir(&pod).exists());
}

#[test]
fn init_containers_are_retried_unless_the_policy_is_never() {
    let d = daemon();
    let init = mounting(
        sh(
            "init",
            "n=$(cat /d/n 2>/dev/null || echo 0); echo $((n+1)) > /d/n; [ $n -ge 1 ]",
        ),
        "d",
        "/d",
        false,
    );
    let pod = with_dir(with_policy(
        pod_with("initretry", vec![sh("c", "echo main")], vec![init], 1),
        "OnFailure",
    ));
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
    let init = d.container_state(&pod, "init");
    assert_eq!(init["restartCount"], 1, "{init}");
    assert_eq!(d.logs(&pod, "c").text(), "main\n");
}

#[test]
fn a_native_sidecar_runs_beside_the_containers_and_stops_after_them() {
    let d = daemon();
    let mut side = mounting(
        sh(
            "side",
            "trap 'echo stopping; exit 0' TERM; while :; do echo up > /d/side; sleep 0.05; done",
        ),
        "d",
        "/d",
        false,
    );
    side["restartPolicy"] = json!("Always");
    let main = mounting(
        sh(
            "c",
            "while [ ! -e /d/side ]; do sleep 0.05; done; echo saw the sidecar",
        ),
        "d",
        "/d",
        false,
    );
    let pod = with_dir(with_policy(
        pod_with("sidecar", vec![main], vec![side], 2),
        "Never",
    ));
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
    assert_eq!(d.logs(&pod, "c").text(), "saw the sidecar\n");
    // After the main container the sidecar is stopped with SIGTERM, and not restarted.
    let side = d.wait_state(&pod, "side", "terminated");
    assert_eq!(side["state"]["terminated"]["exitCode"], 0, "{side}");
    assert!(
        d.logs(&pod, "side").text().ends_with("stopping\n"),
        "{}",
        d.logs(&pod, "side").text()
    );
    let lines = std::fs::read_to_string(d.pod_dir(&pod).join("containers/side/status")).unwrap();
    assert_eq!(lines.matches("start").count(), 1, "{lines}");
}

#[test]
fn each_container_runs_in_its_own_process_group() {
    let d = daemon();
    let pod = with_policy(
        pod_with("groups", vec![sh("c", "echo ready; sleep 30")], vec![], 1),
        "Never",
    );
    let jid: i32 = d.create(&pod)["PodJID"].as_str().unwrap().parse().unwrap();
    d.wait_state(&pod, "c", "running");
    let pid_file = d.pod_dir(&pod).join("containers/c/pid");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    };
    assert!(wait_for(Duration::from_secs(5), || read_pid().is_some()));
    let pid = read_pid().unwrap();
    let pgid_of = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    };
    // The PID is written just before setsid runs: give it that moment.
    assert!(
        wait_for(Duration::from_secs(5), || pgid_of(pid) == Some(pid)),
        "the container leads its own group: pgid {:?}",
        pgid_of(pid)
    );
    let pgid = pid;
    assert_ne!(pgid, jid, "apart from job.sh's");
    // Once the container runs (the fake apptainer's own start-up ignores SIGTERM), stopping that
    // group alone ends the container; with Never it is not started again.
    assert!(wait_for(Duration::from_secs(5), || d
        .logs(&pod, "c")
        .text()
        == "ready\n"));
    unsafe_kill(-pid, 15);
    let st = d.wait_state(&pod, "c", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 143, "{st}");
}

#[test]
fn the_termination_message_comes_from_its_file_or_the_log_tail() {
    let d = daemon();
    let mut own = sh(
        "c",
        "echo 'custom: disk full' > /var/log/termination-msg; exit 3",
    );
    own["terminationMessagePath"] = json!("/var/log/termination-msg");
    let pod = with_policy(pod_with("termmsg", vec![own], vec![], 1), "Never");
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    assert_eq!(
        st["state"]["terminated"]["message"], "custom: disk full\n",
        "{st}"
    );

    let mut tail = sh("c", "for i in $(seq 1 100); do echo line $i; done; exit 4");
    tail["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let pod = with_policy(pod_with("termtail", vec![tail], vec![], 1), "Never");
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    let msg = st["state"]["terminated"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.ends_with("line 99\nline 100"), "{msg}");
    assert_eq!(msg.lines().count(), 80, "{msg}");
}

/// A fresh memory cgroup limited to `limit` bytes, where this machine lets us make one:
/// (its directory, the file that takes a PID).
fn memory_cgroup(limit: u64) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let name = format!("aplug-oom-{}", std::process::id());
    for line in own.lines() {
        let (base, rel) = if let Some(rel) = line.strip_prefix("0::") {
            ("/sys/fs/cgroup".to_string(), rel.to_string())
        } else if let Some((_, rel)) = line.split_once(":memory:") {
            ("/sys/fs/cgroup/memory".to_string(), rel.to_string())
        } else {
            continue;
        };
        let dir = std::path::Path::new(&base)
            .join(rel.trim_start_matches('/'))
            .join(&name);
        if std::fs::create_dir(&dir).is_err() {
            continue;
        }
        let limited = std::fs::write(dir.join("memory.max"), limit.to_string()).is_ok()
            || std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).is_ok();
        if limited {
            return Some((dir.clone(), dir.join("cgroup.procs")));
        }
        let _ = std::fs::remove_dir(&dir);
    }
    None
}

#[test]
fn a_container_the_kernel_kills_for_memory_is_oomkilled() {
    let Some((cgroup, procs)) = memory_cgroup(96 << 20) else {
        eprintln!("SKIPPED a_container_the_kernel_kills_for_memory_is_oomkilled: no writable memory cgroup here");
        return;
    };
    let d = Daemon::start_with(Options {
        cgroup_procs: Some(procs),
        ..Default::default()
    });
    let hog = sh(
        "c",
        "exec python3 -c 'a = bytearray(400 << 20); print(len(a))'",
    );
    let pod = with_policy(pod_with("oom", vec![hog], vec![], 1), "Never");
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    let t = &st["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].clone(), t["reason"].clone()),
        (json!(137), json!("OOMKilled")),
        "{st}"
    );
    drop(d);
    // The cgroup goes once its processes have.
    assert!(wait_for(Duration::from_secs(5), || std::fs::remove_dir(
        &cgroup
    )
    .is_ok()));
}
