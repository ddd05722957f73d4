//! Bad input of every kind gets a clear 4xx naming the problem, and the daemon goes on
//! serving; bad configuration stops the binary at start with exit code 2 and one line naming
//! the key; a unix socket already in use is refused and a stale one is replaced.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Command;

fn good_pod() -> Value {
    pod_with("good", vec![sh("c", "echo ok")], vec![], 5)
}

fn with(mut pod: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let obj = pod
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no {parent}"));
    obj.insert(key.to_string(), value);
    pod
}

#[test]
fn bad_requests_get_a_4xx_that_names_the_problem() {
    let d = Daemon::start();
    let p = good_pod;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "/create",
            "POST",
            b"{not json".to_vec(),
            400,
            "not valid JSON",
        ),
        ("/create", "POST", b"".to_vec(), 400, "not valid JSON"),
        ("/create", "POST", b"[]".to_vec(), 400, "empty array"),
        ("/create", "POST", b"\"pod\"".to_vec(), 400, "create"),
        (
            "/create",
            "POST",
            json!({"container": null}).to_string().into_bytes(),
            400,
            "pod",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers", json!("x"))
                .to_string()
                .into_bytes(),
            400,
            "containers",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers/0/image", json!(5))
                .to_string()
                .into_bytes(),
            400,
            "pod.spec.containers[0].image",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/metadata/uid", Value::Null)
                .to_string()
                .into_bytes(),
            400,
            "no metadata.uid",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/metadata/uid", json!("../../etc"))
                .to_string()
                .into_bytes(),
            400,
            "metadata.uid",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/metadata/name", json!("../x"))
                .to_string()
                .into_bytes(),
            400,
            "metadata.name",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/metadata/namespace", json!("a/../b"))
                .to_string()
                .into_bytes(),
            400,
            "metadata.namespace",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers", json!([]))
                .to_string()
                .into_bytes(),
            400,
            "spec.containers is empty",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers/0/name", json!(".."))
                .to_string()
                .into_bytes(),
            400,
            "container name \"..\"",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers/0/name", json!("a/b"))
                .to_string()
                .into_bytes(),
            400,
            "DNS label",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers/0/image", json!(""))
                .to_string()
                .into_bytes(),
            400,
            "has no image",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers/0/workingDir", json!("rel/dir"))
                .to_string()
                .into_bytes(),
            400,
            "workingDir",
        ),
        (
            "/create",
            "POST",
            with(
                p(),
                "/pod/spec/containers/0/env",
                json!([{"name": "A-B", "value": "x"}]),
            )
            .to_string()
            .into_bytes(),
            400,
            "\"A-B\"",
        ),
        (
            "/create",
            "POST",
            with(p(), "/pod/spec/containers/0/args", json!(["a\u{0}b"]))
                .to_string()
                .into_bytes(),
            400,
            "NUL",
        ),
        (
            "/create",
            "POST",
            with(
                p(),
                "/pod/metadata/annotations",
                json!({"slurm-job.vk.io/singularity-options": "--nv 'open"}),
            )
            .to_string()
            .into_bytes(),
            400,
            "unbalanced",
        ),
        (
            "/create",
            "POST",
            with(
                p(),
                "/pod/spec/initContainers",
                json!([{"name": "c", "image": "x"}]),
            )
            .to_string()
            .into_bytes(),
            400,
            "used twice",
        ),
        ("/status", "GET", b"[{".to_vec(), 400, "not valid JSON"),
        ("/status", "GET", b"{".to_vec(), 400, "expected a sequence"),
        ("/status", "GET", b"{}".to_vec(), 400, "status"),
        (
            "/status",
            "GET",
            b"[{\"metadata\":{}}]".to_vec(),
            400,
            "no metadata.uid",
        ),
        ("/delete", "POST", b"nope".to_vec(), 400, "not valid JSON"),
        (
            "/delete",
            "POST",
            b"{\"metadata\":{\"name\":\"x\"}}".to_vec(),
            400,
            "no metadata.uid",
        ),
        ("/getLogs", "GET", b"{}".to_vec(), 400, "PodUID"),
        (
            "/getLogs",
            "GET",
            json!({"PodUID": "nope", "ContainerName": "c", "Namespace": "default", "PodName": "p"})
                .to_string()
                .into_bytes(),
            404,
            "not known",
        ),
        ("/nowhere", "GET", b"".to_vec(), 404, "no such path"),
    ];
    for (path, method, body, code, needle) in cases {
        let r = d.request(method, path, &body);
        let text = r.text();
        assert_eq!(
            r.status,
            code,
            "{method} {path} {:?}: {text}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            text.contains(needle),
            "{method} {path}: {text:?} should mention {needle:?}"
        );
    }
    // Nothing was written for the refused pods, and the daemon still serves.
    let written = std::fs::read_dir(&d.data_root)
        .map(|r| r.flatten().count())
        .unwrap_or(0);
    assert_eq!(written, 0, "refused pods leave no directory");
    let pod = good_pod();
    d.create(&pod);
    d.wait_state(&pod, "c", "terminated");
    let r = d.logs(&pod, "nope");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no container \"nope\""), "{}", r.text());
}

#[test]
fn any_method_works_on_the_interlink_paths() {
    let d = Daemon::start();
    for m in ["GET", "POST", "PUT"] {
        let r = d.request(m, "/status", b"[]");
        assert_eq!(r.status, 200, "{m}");
    }
}

#[test]
fn an_oversized_body_is_refused() {
    let d = Daemon::start();
    let big = vec![b' '; (64 << 20) + 10];
    let r = d.request("POST", "/create", &big);
    assert_eq!(r.status, 413, "{}", r.text());
}

fn run_with_config(yaml: &str) -> (i32, String) {
    let t = TempDir::new("cfg");
    let file = t.path().join("c.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .env_remove("SIDECARPORT")
        .env_remove("APPTAINERPATH")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_the_daemon_with_exit_code_2() {
    let app = fake_apptainer();
    let cases = [
        ("SidecarPort: 99999\n", "SidecarPort"),
        ("SidecarPort: [1]\n", "SidecarPort"),
        ("VerboseLogging: perhaps\n", "VerboseLogging"),
        (
            "ApptainerDefaultOptions: {a: 1}\n",
            "ApptainerDefaultOptions",
        ),
        ("BashPath: /no/such/bash\n", "BashPath"),
        ("SidecarPort: [\n", "YAML"),
    ];
    for (yaml, key) in cases {
        let (code, err) = run_with_config(&format!("ApptainerPath: {}\n{yaml}", app.display()));
        assert_eq!(code, 2, "{yaml}: {err}");
        assert!(err.contains(key) && err.contains("c.yaml"), "{yaml}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let (code, err) = run_with_config("ApptainerPath: /no/such/apptainer\n");
    assert_eq!(code, 2);
    assert!(err.contains("ApptainerPath"), "{err}");
    let out = Command::new(BIN)
        .arg("--config")
        .arg("/no/such/file.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.yaml"));
    let out = Command::new(BIN).arg("-nonsense").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_config_path_comes_from_the_environment_too() {
    let t = TempDir::new("cfgenv");
    let file = t.path().join("c.yaml");
    std::fs::write(&file, "SidecarPort: 99999\n").unwrap();
    let out = Command::new(BIN)
        .env("APPTAINERCONFIGPATH", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("c.yaml"));
}

#[test]
fn env_overrides_the_port_and_unknown_keys_only_warn() {
    let d = Daemon::start_with(Options {
        extra_yaml: "SbatchPath: /usr/bin/sbatch\nCommandPrefix: \"\"\n".into(),
        ..Default::default()
    });
    assert!(d.log().contains("unknown key SbatchPath"), "{}", d.log());
    assert_eq!(d.request("GET", "/status", b"[]").status, 200);
}

#[test]
fn a_socket_in_use_is_refused_and_a_stale_one_replaced() {
    let mut d = Daemon::start_with(Options {
        socket: true,
        ..Default::default()
    });
    let Addr::Unix(sock) = d.addr.clone() else {
        panic!()
    };
    // A second daemon on the same socket must not steal it.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&d.config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("another process is listening"));
    // SIGKILL leaves the socket file behind; the next start replaces it.
    d.kill(9);
    assert!(sock.exists());
    d.spawn();
    assert_eq!(d.request("GET", "/status", b"[]").status, 200);
}
