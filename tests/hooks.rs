//! Lifecycle hooks through the real binary: postStart in the container's environment (its
//! /tmp), a failing postStart stopping the container, preStop (exec, httpGet, sleep) before
//! SIGTERM on delete, and preStop time counted against the grace period.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn with_hooks(mut c: Value, lifecycle: Value) -> Value {
    c["lifecycle"] = lifecycle;
    c
}

fn shared(t: &TempDir) -> Value {
    json!({"name": "shared", "hostPath": {"path": t.path(), "type": "Directory"}})
}

#[test]
fn post_start_runs_in_the_container_environment() {
    let d = Daemon::start();
    // vk-test-set's case: the main process waits up to 10 s for a marker its postStart writes.
    let main = sh(
        "c",
        "i=0; while [ ! -e /tmp/poststart-marker ]; do i=$((i+1)); [ $i -gt 200 ] && exit 7; sleep 0.05; done; cat /tmp/poststart-marker",
    );
    let main = with_hooks(
        main,
        json!({"postStart": {"exec": {"command": ["sh", "-c", "echo written by postStart > /tmp/poststart-marker"]}}}),
    );
    let pod = pod_with("poststart", vec![main], vec![], 2);
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
    assert_eq!(d.logs(&pod, "c").text(), "written by postStart\n");
}

#[test]
fn a_failing_post_start_stops_the_container() {
    let d = Daemon::start();
    let main = with_hooks(
        sh("c", "echo ready; sleep 30"),
        json!({"postStart": {"exec": {"command": ["sh", "-c", "echo hook failed >&2; exit 3"]}}}),
    );
    let pod = pod_with("badhook", vec![main], vec![], 2);
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    let t = &st["state"]["terminated"];
    assert_eq!(t["reason"], "FailedPostStartHook", "{st}");
    assert_ne!(t["exitCode"], 0);
    let hooks_log =
        std::fs::read_to_string(d.pod_dir(&pod).join("containers/c/hooks.log")).unwrap();
    assert!(hooks_log.contains("hook failed"), "{hooks_log}");
}

#[test]
fn pre_stop_runs_before_sigterm_on_delete() {
    let d = Daemon::start();
    let t = TempDir::new("prestop");
    let main = mounting(
        sh("c", "trap 'echo term >> /shared/order; exit 0' TERM; echo ready; while :; do sleep 0.05; done"),
        "shared",
        "/shared",
        false,
    );
    let main = with_hooks(
        main,
        json!({"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /shared/order"]}}}),
    );
    let pod = add_volume(pod_with("prestop", vec![main], vec![], 10), shared(&t));
    d.create(&pod);
    assert!(wait_for(Duration::from_secs(10), || d
        .logs(&pod, "c")
        .text()
        == "ready\n"));
    let t0 = Instant::now();
    d.delete(&pod);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(
        std::fs::read_to_string(t.path().join("order")).unwrap(),
        "prestop\nterm\n"
    );
}

#[test]
fn an_http_pre_stop_reaches_the_container_on_a_named_port() {
    let d = Daemon::start();
    let t = TempDir::new("httphook");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut main = mounting(
        sh(
            "c",
            &format!("exec python3 -m http.server {port} --bind 127.0.0.1 2>>/shared/access.log"),
        ),
        "shared",
        "/shared",
        false,
    );
    main["ports"] = json!([{"name": "web", "containerPort": port}]);
    let main = with_hooks(
        main,
        json!({"preStop": {"httpGet": {"path": "/shutdown-now", "port": "web", "httpHeaders": [{"name": "X-Why", "value": "delete"}]}}}),
    );
    let pod = add_volume(pod_with("httphook", vec![main], vec![], 5), shared(&t));
    d.create(&pod);
    assert!(wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    d.delete(&pod);
    let log = std::fs::read_to_string(t.path().join("access.log")).unwrap_or_default();
    assert!(log.contains("GET /shutdown-now"), "{log}");
}

#[test]
fn pre_stop_time_counts_against_the_grace_period() {
    let d = Daemon::start();
    let marker = format!("1000.{}7", std::process::id());
    let main = with_hooks(
        sh("c", &format!("trap '' TERM; sleep {marker}")),
        json!({"preStop": {"sleep": {"seconds": 30}}}),
    );
    let pod = pod_with("slowhook", vec![main], vec![], 1);
    d.create(&pod);
    assert!(wait_for(Duration::from_secs(10), || !processes_with(
        &marker
    )
    .is_empty()));
    let t0 = Instant::now();
    d.delete(&pod);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "one grace period in all: {took:?}"
    );
    assert!(processes_with(&marker).is_empty());
}

#[test]
fn unsupported_hooks_are_refused() {
    let d = Daemon::start();
    let cases = [
        (
            json!({"postStart": {"httpGet": {"port": 80, "scheme": "HTTPS"}}}),
            "only scheme HTTP",
        ),
        (
            json!({"preStop": {"httpGet": {"port": "nope"}}}),
            "named port \"nope\"",
        ),
        (
            json!({"preStop": {"tcpSocket": {"port": 80}}}),
            "needs exec, httpGet or sleep",
        ),
        (
            json!({"postStart": {"exec": {"command": []}}}),
            "has no command",
        ),
    ];
    for (lifecycle, needle) in cases {
        let pod = pod_with(
            "refused",
            vec![with_hooks(sh("c", "true"), lifecycle.clone())],
            vec![],
            1,
        );
        let r = d.request("POST", "/create", pod.to_string().as_bytes());
        assert_eq!(r.status, 400, "{lifecycle}: {}", r.text());
        assert!(r.text().contains(needle), "{lifecycle}: {}", r.text());
    }
}
