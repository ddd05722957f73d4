//! Stopping pods and surviving the daemon's own death: delete with SIGTERM, grace and SIGKILL
//! (also for processes that left the pod's group), restart of the daemon mid-pod, and many
//! pods created and deleted at once. Process checks read /proc.

mod common;
use common::*;
use serde_json::json;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A marker unique to this test process and `n`, used as a `sleep` argument so that the pod's
/// processes can be found in /proc.
fn marker(n: u32) -> String {
    format!("1000.{}{n}", std::process::id())
}

/// Creates a one-container pod running `script` and waits until a process showing `marker`
/// runs.
fn start_marked(d: &Daemon, name: &str, script: &str, marker: &str, grace: i64) -> Value {
    let pod = pod_with(name, vec![sh("c", script)], vec![], grace);
    d.create(&pod);
    d.wait_state(&pod, "c", "running");
    assert!(wait_for(Duration::from_secs(5), || !processes_with(marker)
        .is_empty()));
    pod
}

fn assert_no_process_with(marker: &str) {
    let left = processes_with(marker);
    assert!(
        left.is_empty(),
        "no process of the pod may be left:\n{}",
        describe(&left)
    );
}

#[test]
fn delete_kills_a_container_that_ignores_sigterm_after_the_grace_period() {
    let d = Daemon::start();
    let m = marker(1);
    let script = format!("trap '' TERM; echo ready; sleep {m}; echo not-reached");
    let pod = start_marked(&d, "stubborn", &script, &m, 1);
    let t0 = Instant::now();
    let r = d.delete(&pod);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "the grace period is waited for: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "then SIGKILL: {took:?}");
    assert!(r.text().contains("killed after"), "{}", r.text());
    assert_no_process_with(&m);
    assert!(!d.pod_dir(&pod).exists());
}

#[test]
fn delete_is_quick_when_the_pod_stops_on_sigterm() {
    let d = Daemon::start();
    let m = marker(2);
    let pod = start_marked(&d, "polite", &format!("exec sleep {m}"), &m, 30);
    let t0 = Instant::now();
    d.delete(&pod);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_no_process_with(&m);
}

#[test]
fn delete_reaches_processes_that_escaped_into_their_own_session() {
    let d = Daemon::start();
    let m = marker(3);
    let script = format!("setsid sh -c 'trap \"\" TERM; sleep {m}' & sleep 1000");
    let pod = start_marked(&d, "escape", &script, &m, 1);
    d.delete(&pod);
    assert_no_process_with(&m);
}

#[test]
fn the_daemon_killed_mid_pod_finds_the_pod_again() {
    let mut d = Daemon::start();
    let t = TempDir::new("restart");
    let go = t.path().join("go");
    // The test's directory is a hostPath volume: the test drops a file there while the daemon
    // is down.
    let script =
        "echo started; while [ ! -e /signal/go ]; do sleep 0.05; done; echo finishing; exit 3";
    let c = mounting(sh("c", script), "signal", "/signal", true);
    let hostpath = json!({"name": "signal", "hostPath": {"path": t.path(), "type": "Directory"}});
    let pod = add_volume(pod_with("survivor", vec![c], vec![], 5), hostpath);
    let jid = d.create(&pod)["PodJID"].clone();
    let running = d.wait_state(&pod, "c", "running");

    d.kill(9);
    // The pod keeps running without the daemon, and finishes while it is down.
    std::fs::write(&go, "").unwrap();
    let status_file = d.pod_dir(&pod).join("containers/c/status");
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&status_file)
            .unwrap_or_default()
            .contains("exit 3")
    }));

    d.spawn();
    let st = d.status(&pod);
    assert_eq!(st[0]["JID"], jid, "same job id after the restart");
    let done = d.wait_state(&pod, "c", "terminated");
    let term = &done["state"]["terminated"];
    assert_eq!(term["exitCode"], 3);
    assert_eq!(
        term["startedAt"], running["state"]["running"]["startedAt"],
        "real start time kept"
    );
    assert!(term["finishedAt"].is_string());
    assert_eq!(d.logs(&pod, "c").text(), "started\nfinishing\n");
    d.delete(&pod);
    assert!(!d.pod_dir(&pod).exists());
}

#[test]
fn a_restarted_daemon_can_stop_a_running_pod() {
    let mut d = Daemon::start();
    let marker = marker(4);
    let pod = pod_with("keep", vec![sh("c", &format!("sleep {marker}"))], vec![], 1);
    d.create(&pod);
    d.wait_state(&pod, "c", "running");
    // SIGTERM to the daemon is a normal stop: the pods stay.
    d.kill(15);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !processes_with(&marker).is_empty(),
        "pods survive the daemon"
    );
    d.spawn();
    assert!(d.log().contains("1 pod(s) found"), "{}", d.log());
    d.wait_state(&pod, "c", "running");
    d.delete(&pod);
    assert_no_process_with(&marker);
}

#[test]
fn fifty_pods_created_and_deleted_at_once_keep_to_themselves() {
    let d = std::sync::Arc::new(Daemon::start());
    let marker = marker(5);
    let pods: Vec<_> = (0..50)
        .map(|i| {
            let script = format!("echo pod-{i}; sleep {marker}");
            pod_with(&format!("many-{i}"), vec![sh("c", &script)], vec![], 2)
        })
        .collect();
    let create: Vec<_> = pods
        .iter()
        .cloned()
        .map(|p| {
            let d = d.clone();
            std::thread::spawn(move || d.create(&p))
        })
        .collect();
    let jids: Vec<_> = create
        .into_iter()
        .map(|h| h.join().unwrap()["PodJID"].clone())
        .collect();
    let mut unique = jids.clone();
    unique.sort_by_key(|j| j.to_string());
    unique.dedup();
    assert_eq!(unique.len(), 50, "one job per pod");
    for (i, p) in pods.iter().enumerate() {
        assert!(
            wait_for(Duration::from_secs(20), || d.logs(p, "c").text()
                == format!("pod-{i}\n")),
            "pod {i} log: {:?}",
            d.logs(p, "c").text()
        );
        assert_eq!(d.status(p)[0]["name"], format!("many-{i}"));
    }
    let delete: Vec<_> = pods
        .iter()
        .cloned()
        .map(|p| {
            let d = d.clone();
            std::thread::spawn(move || d.delete(&p).status)
        })
        .collect();
    for h in delete {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_no_process_with(&marker);
    let left: Vec<_> = std::fs::read_dir(&d.data_root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "pod directories left: {left:?}");
    let r = d.request(
        "GET",
        "/status",
        json!(pods.iter().map(pod_of).collect::<Vec<_>>())
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.json(), json!([]));
}

#[test]
fn status_while_a_delete_waits_is_not_blocked() {
    let d = std::sync::Arc::new(Daemon::start());
    let slow = pod_with("slow", vec![sh("c", "trap '' TERM; sleep 1000")], vec![], 2);
    let other = pod_with("other", vec![sh("c", "sleep 1000")], vec![], 1);
    d.create(&slow);
    d.create(&other);
    d.wait_state(&slow, "c", "running");
    let d2 = d.clone();
    let s2 = slow.clone();
    let h = std::thread::spawn(move || d2.delete(&s2));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    d.wait_state(&other, "c", "running");
    d.status(&slow);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "status answered at once: {:?}",
        t0.elapsed()
    );
    h.join().unwrap();
    d.delete(&other);
}
