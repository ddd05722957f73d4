//! The probe engine through the real binary, with a probe "second" of 100 ms: readiness going
//! true and false again, liveness failure restarting with back-off, startup failure, startup
//! gating, tcpSocket on a named port, timeouts, and a daemon restart that keeps a healthy pod
//! ready and unrestarted.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn daemon() -> Daemon {
    Daemon::start_with(Options {
        extra_yaml: "EnableProbes: true\nProbeSecondMilliseconds: 100\nRestartBackoffMilliseconds: 200\nMaxRestartBackoffMilliseconds: 400\n".into(),
        ..Default::default()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A container serving its own /tmp over HTTP on `port` (named "web").
fn web(port: u16) -> Value {
    let mut c = sh(
        "c",
        &format!("cd /tmp && exec python3 -m http.server {port} --bind 127.0.0.1"),
    );
    c["ports"] = json!([{"name": "web", "containerPort": port}]);
    c
}

fn policy(mut pod: Value, p: &str) -> Value {
    pod["pod"]["spec"]["restartPolicy"] = json!(p);
    pod
}

fn tmp(d: &Daemon, pod: &Value) -> std::path::PathBuf {
    d.pod_dir(pod).join("containers/c/tmp")
}

fn until(d: &Daemon, pod: &Value, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_for(Duration::from_secs(30), || {
        last = d.container_state(pod, "c");
        f(&last)
    });
    assert!(ok, "never {what}: {last}");
    last
}

#[test]
fn readiness_follows_the_probe_both_ways() {
    let d = daemon();
    let port = free_port();
    let mut c = web(port);
    c["readinessProbe"] = json!({"httpGet": {"path": "/ready", "port": "web"}, "periodSeconds": 1, "failureThreshold": 2});
    let pod = policy(pod_with("ready", vec![c], vec![], 1), "Always");
    d.create(&pod);
    let st = until(&d, &pod, "running", |s| s["state"]["running"].is_object());
    assert_eq!(
        st["ready"], false,
        "not ready before the probe passes: {st}"
    );
    std::fs::write(tmp(&d, &pod).join("ready"), "ok").unwrap();
    until(&d, &pod, "ready", |s| s["ready"] == true);
    std::fs::remove_file(tmp(&d, &pod).join("ready")).unwrap();
    let st = until(&d, &pod, "unready again", |s| s["ready"] == false);
    assert!(
        st["state"]["running"].is_object(),
        "readiness never restarts: {st}"
    );
    assert_eq!(st["restartCount"], 0);
    d.delete(&pod);
}

#[test]
fn liveness_failure_restarts_the_container_with_back_off() {
    let d = daemon();
    let mut c = sh("c", "echo up; sleep 60");
    c["livenessProbe"] = json!({"exec": {"command": ["sh", "-c", "test ! -e /tmp/unhealthy"]},
                                "periodSeconds": 1, "timeoutSeconds": 20, "failureThreshold": 2});
    let pod = policy(pod_with("live", vec![c], vec![], 1), "Always");
    d.create(&pod);
    until(&d, &pod, "running", |s| s["state"]["running"].is_object());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        d.container_state(&pod, "c")["restartCount"],
        0,
        "healthy: no restart"
    );
    std::fs::write(tmp(&d, &pod).join("unhealthy"), "").unwrap();
    // The file stays in the container's /tmp: every new instance fails again.
    let st = until(&d, &pod, "restarted twice", |s| {
        s["restartCount"].as_i64().unwrap_or(0) >= 2
    });
    let last = &st["lastState"]["terminated"];
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Liveness probe failed"),
        "{st}"
    );
    assert_eq!(last["exitCode"], 143, "{st}");
    std::fs::remove_file(tmp(&d, &pod).join("unhealthy")).unwrap();
    d.delete(&pod);
}

#[test]
fn startup_failure_stops_the_container_and_gates_the_others() {
    let d = daemon();
    let closed = free_port();
    let mut c = sh("c", "echo up; sleep 60");
    c["startupProbe"] =
        json!({"tcpSocket": {"port": closed}, "periodSeconds": 1, "failureThreshold": 3});
    c["readinessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "timeoutSeconds": 20});
    let pod = policy(pod_with("startup", vec![c], vec![], 1), "Never");
    d.create(&pod);
    let st = until(&d, &pod, "running", |s| s["state"]["running"].is_object());
    assert_eq!(st["started"], false);
    assert_eq!(st["ready"], false, "readiness waits for startup");
    let st = until(&d, &pod, "terminated", |s| {
        s["state"]["terminated"].is_object()
    });
    let t = &st["state"]["terminated"];
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("Startup probe failed"),
        "{st}"
    );
    assert_eq!(st["restartCount"], 0, "Never: not started again");
}

#[test]
fn startup_then_readiness_and_liveness_on_a_named_tcp_port() {
    let d = daemon();
    let port = free_port();
    let mut c = web(port);
    c["startupProbe"] = json!({"httpGet": {"path": "/", "port": "web"}, "periodSeconds": 1, "failureThreshold": 100});
    c["readinessProbe"] = json!({"tcpSocket": {"port": "web"}, "periodSeconds": 1});
    c["livenessProbe"] =
        json!({"tcpSocket": {"port": "web"}, "periodSeconds": 1, "failureThreshold": 3});
    let pod = policy(pod_with("tcp", vec![c], vec![], 1), "Always");
    d.create(&pod);
    let st = until(&d, &pod, "started and ready", |s| {
        s["started"] == true && s["ready"] == true
    });
    assert_eq!(st["restartCount"], 0);
    d.delete(&pod);
}

#[test]
fn readiness_and_liveness_without_a_startup_probe() {
    let d = daemon();
    let mut c = sh("c", "sleep 60");
    c["readinessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "timeoutSeconds": 20});
    c["livenessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "timeoutSeconds": 20});
    let pod = policy(pod_with("nostartup", vec![c], vec![], 1), "Always");
    d.create(&pod);
    let st = until(&d, &pod, "ready", |s| s["ready"] == true);
    assert_eq!(st["started"], true);
    d.delete(&pod);
}

#[test]
fn a_probe_that_times_out_fails() {
    let d = daemon();
    let mut c = sh("c", "sleep 60");
    // exec probe of 5 s against a timeout of 3 probe seconds (300 ms).
    c["readinessProbe"] = json!({"exec": {"command": ["sleep", "5"]}, "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 1});
    let pod = policy(pod_with("slowprobe", vec![c], vec![], 1), "Always");
    d.create(&pod);
    until(&d, &pod, "running", |s| s["state"]["running"].is_object());
    std::thread::sleep(Duration::from_millis(1500));
    let st = d.container_state(&pod, "c");
    assert_eq!(st["ready"], false, "{st}");
    d.delete(&pod);
}

#[test]
fn a_restarted_daemon_keeps_a_healthy_pod_ready_and_running() {
    let mut d = daemon();
    let mut c = sh("c", "sleep 60");
    c["readinessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "timeoutSeconds": 20});
    c["livenessProbe"] = json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "timeoutSeconds": 20, "failureThreshold": 1});
    let pod = policy(pod_with("survive", vec![c], vec![], 1), "Always");
    d.create(&pod);
    until(&d, &pod, "ready", |s| s["ready"] == true);
    d.kill(9);
    d.spawn();
    let st = d.container_state(&pod, "c");
    let saved =
        std::fs::read_to_string(d.pod_dir(&pod).join("containers/c/probe")).unwrap_or_default();
    assert_eq!(
        st["ready"], true,
        "ready at once after the restart: {st} (saved: {saved})"
    );
    std::thread::sleep(Duration::from_millis(1000));
    let st = d.container_state(&pod, "c");
    assert_eq!(
        (st["ready"].clone(), st["restartCount"].clone()),
        (json!(true), json!(0)),
        "{st}"
    );
    d.delete(&pod);
}

#[test]
fn grpc_probes_are_refused_with_a_clear_message() {
    let d = daemon();
    let mut c = sh("c", "true");
    c["livenessProbe"] = json!({"grpc": {"port": 9000}});
    let r = d.request(
        "POST",
        "/create",
        pod_with("grpc", vec![c], vec![], 1).to_string().as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("grpc is not supported"), "{}", r.text());
}

#[test]
fn the_example_probe_pod_gets_ready_with_every_probe_observed() {
    let d = daemon();
    let port = free_port();
    // The shared example, on a free port instead of 8080.
    let text = std::fs::read_to_string(fixture("requests/create-probes.json")).unwrap();
    let mut pod: Value = serde_json::from_str(&text.replace("8080", &port.to_string())).unwrap();
    let uid = format!("probes-example-{}", std::process::id());
    pod["pod"]["metadata"]["uid"] = json!(uid);
    d.create(&pod);
    let mut last = Value::Null;
    let ready = wait_for(Duration::from_secs(30), || {
        last = d.status(&pod);
        last[0]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ready"] == true)
    });
    assert!(ready, "{last}");
    let web = &last[0]["containers"][0];
    assert_eq!(
        (web["started"].clone(), web["restartCount"].clone()),
        (json!(true), json!(0)),
        "{web}"
    );
    let log = d.logs(&pod, "web").text();
    assert!(
        log.contains("probe /healthz") && log.contains("probe /ready"),
        "startup and readiness reached the server: {log}"
    );
    let marker = d.pod_dir(&pod).join("containers/web/tmp/poststart");
    assert_eq!(
        std::fs::read_to_string(marker).unwrap(),
        "started\n",
        "postStart ran in the container's /tmp"
    );
    d.delete(&pod);
}
