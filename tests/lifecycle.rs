//! A pod's whole life through the real binary and the fake apptainer: create, status while
//! running and after, logs, delete; over TCP and a unix socket; exec vs run, byte-exact args
//! and env, init containers, concurrency, exit codes, idempotent create.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn whole_life(d: &Daemon) {
    let pod = pod_with(
        "life",
        vec![sh("main", "echo out; echo err >&2; sleep 0.5; echo bye")],
        vec![],
        5,
    );
    let created = d.create(&pod);
    assert_eq!(created["PodUID"], pod["pod"]["metadata"]["uid"]);
    let jid = created["PodJID"].as_str().unwrap().to_string();
    assert!(jid.parse::<u32>().unwrap() > 1);

    let running = d.wait_state(&pod, "main", "running");
    assert_eq!(running["ready"], true);
    assert_eq!(running["image"], "docker://busybox");
    let st = d.status(&pod);
    assert_eq!(st[0]["name"], "life");
    assert_eq!(st[0]["namespace"], "default");
    assert_eq!(st[0]["UID"], pod["pod"]["metadata"]["uid"]);
    assert_eq!(st[0]["JID"], jid.as_str());
    assert_eq!(st[0]["initContainers"], json!([]));

    let done = d.wait_state(&pod, "main", "terminated");
    let t = &done["state"]["terminated"];
    assert_eq!(t["exitCode"], 0);
    assert_eq!(t["reason"], "Completed");
    let (start, end) = (
        t["startedAt"].as_str().unwrap(),
        t["finishedAt"].as_str().unwrap(),
    );
    assert!(start.ends_with('Z') && end >= start, "{start} {end}");
    assert_eq!(done["ready"], false);

    let logs = d.logs(&pod, "main");
    assert_eq!(logs.status, 200);
    assert_eq!(logs.text(), "out\nerr\nbye\n");

    let dir = d.pod_dir(&pod);
    assert!(dir.join("job.sh").is_file());
    // job.sh records real times, RFC 3339 with sub-second precision.
    let recorded = std::fs::read_to_string(dir.join("containers/main/status")).unwrap();
    let lines: Vec<&str> = recorded.lines().collect();
    assert_eq!(lines.len(), 2, "{recorded}");
    let started = lines[0].strip_prefix("start ").unwrap();
    let finished = lines[1].strip_prefix("exit 0 ").unwrap();
    for t in [started, finished] {
        assert!(
            t.len() > 20 && t.as_bytes()[19] == b'.' && t.ends_with('Z'),
            "{t:?}"
        );
    }
    assert!(
        started.starts_with(&start[..19]),
        "{started} vs reported {start}"
    );
    d.delete(&pod);
    assert!(!dir.exists(), "delete leaves no pod directory");
    assert_eq!(d.status(&pod), json!([]), "a deleted pod is unknown");
    assert_eq!(d.logs(&pod, "main").status, 404);
    // Delete is idempotent.
    d.delete(&pod);
}

#[test]
fn whole_life_over_tcp() {
    whole_life(&Daemon::start());
}

#[test]
fn whole_life_over_a_unix_socket() {
    let d = Daemon::start_with(Options {
        socket: true,
        ..Default::default()
    });
    let Addr::Unix(path) = &d.addr else {
        panic!("not a socket: {:?}", d.addr)
    };
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o660
    );
    whole_life(&d);
}

#[test]
fn ping_answers_ok() {
    let d = Daemon::start();
    let r = d.request("GET", "/status", b"[]");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    // interLink's example ping request, as the README's curl posts it.
    let r = d.request(
        "GET",
        "/status",
        &std::fs::read(fixture("requests/status-ping.json")).unwrap(),
    );
    assert_eq!(r.json(), json!({"status": "ok"}));
}

/// Reads what the fake apptainer recorded of its argv for the container whose log says `tag`.
fn recorded_argvs(d: &Daemon) -> Vec<Vec<String>> {
    std::fs::read_dir(&d.record_dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let raw = std::fs::read(e.path()).unwrap();
            raw.split(|b| *b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8(w.to_vec()).unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn command_means_exec_args_only_and_nothing_mean_run() {
    let d = Daemon::start();
    let pod = pod_with(
        "verbs",
        vec![
            json!({"name": "cmd", "image": "docker://alpine", "command": ["/bin/echo", "from-exec"], "args": ["a1"]}),
            json!({"name": "args", "image": "alpine:3", "args": ["/bin/echo", "from-run"], "workingDir": "/tmp"}),
            json!({"name": "none", "image": "docker://alpine"}),
        ],
        vec![],
        5,
    );
    d.create(&pod);
    for c in ["cmd", "args", "none"] {
        d.wait_state(&pod, c, "terminated");
    }
    assert_eq!(d.logs(&pod, "cmd").text(), "from-exec a1\n");
    assert_eq!(d.logs(&pod, "args").text(), "from-run\n");
    assert_eq!(
        d.logs(&pod, "none").text(),
        "fake-runscript: docker://alpine\n"
    );
    let argvs = recorded_argvs(&d);
    let find = |image: &str| {
        argvs
            .iter()
            .find(|a| a.iter().any(|w| w == image))
            .unwrap()
            .clone()
    };
    let exec = find("docker://alpine");
    let verb_of = |a: &Vec<String>| {
        a.iter()
            .find(|w| *w == "exec" || *w == "run")
            .unwrap()
            .clone()
    };
    assert!(argvs.iter().any(|a| verb_of(a) == "exec"
        && a.ends_with(&["/bin/echo".into(), "from-exec".into(), "a1".into()])));
    assert!(
        exec.contains(&"--no-eval".to_string()),
        "--no-eval is always passed: {exec:?}"
    );
    assert!(
        exec.contains(&"--cleanenv".to_string()),
        "default options are passed: {exec:?}"
    );
    // A bare reference gets the image prefix; workingDir becomes --pwd.
    let run = find("docker://alpine:3");
    assert_eq!(verb_of(&run), "run");
    let pwd = run.iter().position(|w| w == "--pwd").unwrap();
    assert_eq!(run[pwd + 1], "/tmp");
    assert!(run.ends_with(&[
        "docker://alpine:3".into(),
        "/bin/echo".into(),
        "from-run".into()
    ]));
}

/// Quotes of every kind, shell syntax, newlines and non-ASCII: 17 values like vk-test-set's.
const NASTY: [&str; 17] = [
    "simple",
    "with space",
    "single ' quote",
    "double \" quote",
    "both ' and \"",
    "backslash \\ and \\n literal",
    "$HOME stays",
    "${PATH} stays",
    "`id` stays",
    "$(id) stays",
    "semi; colon && amp | pipe > redirect",
    "multi\nline\n",
    "tab\there",
    "accents éèàç and emoji 🚀",
    "'\\''",
    "",
    "-starts-with-dash",
];

#[test]
fn args_and_env_arrive_byte_exact() {
    let d = Daemon::start();
    let env: Vec<Value> = NASTY
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": format!("NASTY_{i}"), "value": v}))
        .collect();
    let mut env = env;
    // Duplicates: the last one wins, as in Kubernetes.
    env.push(json!({"name": "NASTY_0", "value": "last wins"}));
    env.push(json!({"name": "TOKEN", "value": "s3cr3t-only-in-the-env-file"}));
    let mut command = vec![json!("/usr/bin/printf"), json!("[%s]\\0")];
    command.extend(NASTY.iter().map(|v| json!(v)));
    let pod = pod_with(
        "exact",
        vec![
            json!({"name": "args", "image": "docker://x", "command": command}),
            json!({"name": "env", "image": "docker://x", "command": ["/usr/bin/env", "-0"], "env": env}),
        ],
        vec![],
        5,
    );
    d.create(&pod);
    d.wait_state(&pod, "args", "terminated");
    d.wait_state(&pod, "env", "terminated");
    let want: Vec<u8> = NASTY
        .iter()
        .flat_map(|v| format!("[{v}]\0").into_bytes())
        .collect();
    assert_eq!(d.logs(&pod, "args").body, want);
    let got = d.logs(&pod, "env").body;
    let vars: Vec<&[u8]> = got.split(|b| *b == 0).collect();
    for (i, v) in NASTY.iter().enumerate() {
        let want = if i == 0 {
            "last wins".to_string()
        } else {
            v.to_string()
        };
        let entry = format!("NASTY_{i}={want}");
        assert!(
            vars.contains(&entry.as_bytes()),
            "missing {entry:?} in {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // Nothing of the plugin's own environment leaks in (--cleanenv in the test config).
    assert!(!vars
        .iter()
        .any(|v| v.starts_with(b"FAKE_APPTAINER_RECORD=")));
    // No value was put in an argv or in job.sh (secrets may be among them).
    let job = std::fs::read_to_string(d.pod_dir(&pod).join("job.sh")).unwrap();
    assert!(!job.contains("s3cr3t"), "env values must not be in job.sh");
    assert!(
        recorded_argvs(&d)
            .iter()
            .flatten()
            .all(|w| !w.contains("s3cr3t")),
        "nor in an argv"
    );
}

#[test]
fn init_containers_run_in_order_before_the_containers() {
    let d = Daemon::start();
    // An emptyDir shared by all containers carries the order in which they ran.
    let f = "/shared/order";
    let init = (1..=3)
        .map(|i| {
            let c = sh(
                &format!("init-{i}"),
                &format!("sleep 0.1; echo init-{i} >> {f}"),
            );
            mounting(c, "shared", "/shared", false)
        })
        .collect();
    let main = mounting(
        sh("main", &format!("echo main >> {f}; cat {f}")),
        "shared",
        "/shared",
        false,
    );
    let pod = add_volume(
        pod_with("inits", vec![main], init, 5),
        json!({"name": "shared", "emptyDir": {}}),
    );
    d.create(&pod);
    let st = d.wait_state(&pod, "main", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 0);
    assert_eq!(
        d.logs(&pod, "main").text(),
        "init-1\ninit-2\ninit-3\nmain\n"
    );
    let status = d.status(&pod);
    let inits = status[0]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 3);
    for (i, c) in inits.iter().enumerate() {
        assert_eq!(c["name"], format!("init-{}", i + 1));
        assert_eq!(c["state"]["terminated"]["exitCode"], 0);
    }
    assert_eq!(
        d.logs(&pod, "init-2").status,
        200,
        "init container logs are readable"
    );
}

#[test]
fn a_failing_init_container_stops_the_pod() {
    let d = Daemon::start();
    let pod = pod_with(
        "initfail",
        vec![sh("main", "echo should-not-run")],
        vec![
            sh("first", "sleep 0.3; echo first"),
            sh("second", "echo failing; exit 3"),
            sh("third", "echo never"),
        ],
        5,
    );
    d.create(&pod);
    // While the first init container runs, the others and the main container wait.
    let first = d.wait_state(&pod, "first", "running");
    assert!(first["state"]["running"]["startedAt"].is_string());
    let st = d.status(&pod);
    assert_eq!(
        st[0]["containers"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    assert_eq!(
        st[0]["initContainers"][2]["state"]["waiting"]["reason"],
        "PodInitializing"
    );

    let second = d.wait_state(&pod, "second", "terminated");
    assert_eq!(second["state"]["terminated"]["exitCode"], 3);
    assert_eq!(second["state"]["terminated"]["reason"], "Error");
    let main = d.wait_state(&pod, "main", "terminated");
    let t = &main["state"]["terminated"];
    assert_ne!(t["exitCode"], 0, "the pod must end Failed: {main}");
    assert_eq!(t["reason"], "ContainerCannotRun");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("\"second\" failed with exit code 3"),
        "{t}"
    );
    let third = d.container_state(&pod, "third");
    assert!(third["state"]["terminated"].is_object());
    assert_eq!(d.logs(&pod, "main").text(), "");
    assert_eq!(d.logs(&pod, "second").text(), "failing\n");
}

#[test]
fn containers_run_concurrently() {
    let d = Daemon::start();
    // Each container waits for the other's marker in a shared emptyDir: they can only finish
    // if both run at once.
    let wait_other = |mine: &str, other: &str| {
        format!(
            "touch /shared/{mine}; i=0; while [ ! -e /shared/{other} ]; do i=$((i+1)); [ $i -gt 100 ] && exit 9; sleep 0.05; done"
        )
    };
    let a = mounting(sh("a", &wait_other("a", "b")), "shared", "/shared", false);
    let b = mounting(sh("b", &wait_other("b", "a")), "shared", "/shared", false);
    let pod = add_volume(
        pod_with("conc", vec![a, b], vec![], 5),
        json!({"name": "shared", "emptyDir": {}}),
    );
    d.create(&pod);
    for c in ["a", "b"] {
        let st = d.wait_state(&pod, c, "terminated");
        assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
    }
}

#[test]
fn exit_codes_and_signals() {
    let d = Daemon::start();
    let pod = pod_with(
        "codes",
        vec![
            sh("zero", "exit 0"),
            sh("one", "exit 1"),
            sh("answer", "exit 42"),
            sh("killed", "kill -9 $$"),
        ],
        vec![],
        5,
    );
    d.create(&pod);
    let want = [
        ("zero", 0, "Completed"),
        ("one", 1, "Error"),
        ("answer", 42, "Error"),
        ("killed", 137, "Error"),
    ];
    for (name, code, reason) in want {
        let st = d.wait_state(&pod, name, "terminated");
        let t = &st["state"]["terminated"];
        assert_eq!(t["exitCode"], code, "{name}: {st}");
        assert_eq!(t["reason"], reason, "{name}");
        if code == 137 {
            assert_eq!(t["signal"], 9);
        } else {
            assert!(t.get("signal").is_none(), "{name}: {t}");
        }
    }
}

#[test]
fn a_missing_command_is_a_failed_container_with_the_error_in_its_log() {
    let d = Daemon::start();
    let pod = pod_with(
        "missing",
        vec![json!({"name": "c", "image": "docker://x", "command": ["no-such-command-xyz"]})],
        vec![],
        5,
    );
    d.create(&pod);
    let st = d.wait_state(&pod, "c", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 255);
    assert!(d
        .logs(&pod, "c")
        .text()
        .contains("executable file not found"));
}

#[test]
fn create_is_idempotent_per_uid() {
    let d = Daemon::start();
    let pod = pod_with("twice", vec![sh("c", "echo once; sleep 30")], vec![], 1);
    let a = d.create(&pod);
    let b = d.create(&pod);
    assert_eq!(a, b);
    d.wait_state(&pod, "c", "running");
    let status_file = d.pod_dir(&pod).join("containers/c/status");
    let text = std::fs::read_to_string(status_file).unwrap();
    assert_eq!(text.matches("start").count(), 1, "one copy only: {text}");
    assert!(wait_for(Duration::from_secs(5), || d
        .logs(&pod, "c")
        .text()
        == "once\n"));
    d.delete(&pod);
    // A create that arrives after the delete must not start the pod again.
    let r = d.request("POST", "/create", pod.to_string().as_bytes());
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("deleted"));
}

#[test]
fn the_example_requests_of_the_readme_work() {
    let d = Daemon::start();
    let body = std::fs::read(fixture("requests/create.json")).unwrap();
    let r = d.request("POST", "/create", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let pod: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.json()["PodUID"], pod["pod"]["metadata"]["uid"]);
    d.wait_state(&pod, "hello", "terminated");
    let r = d.request(
        "GET",
        "/status",
        &std::fs::read(fixture("requests/status.json")).unwrap(),
    );
    assert_eq!(
        r.json()[0]["containers"][0]["state"]["terminated"]["exitCode"],
        0
    );
    let r = d.request(
        "GET",
        "/getLogs",
        &std::fs::read(fixture("requests/getlogs.json")).unwrap(),
    );
    assert_eq!(r.text(), "hello world\nto stderr\n");
    let r = d.request(
        "POST",
        "/delete",
        &std::fs::read(fixture("requests/delete.json")).unwrap(),
    );
    assert_eq!(r.status, 200);
    assert!(!d.pod_dir(&pod).exists());
}

#[test]
fn the_interlink_0_4_array_form_is_accepted() {
    let d = Daemon::start();
    let pod = pod_with("array", vec![sh("c", "echo array")], vec![], 5);
    let r = d.request("POST", "/create", json!([pod]).to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    d.wait_state(&pod, "c", "terminated");
    assert_eq!(d.logs(&pod, "c").text(), "array\n");
}

#[test]
fn system_info_reports_versions_and_phases() {
    let d = Daemon::start();
    let ok = pod_with("ok", vec![sh("c", "exit 0")], vec![], 5);
    let bad = pod_with("bad", vec![sh("c", "exit 2")], vec![], 5);
    let run = pod_with("run", vec![sh("c", "sleep 30")], vec![], 1);
    for p in [&ok, &bad, &run] {
        d.create(p);
    }
    d.wait_state(&ok, "c", "terminated");
    d.wait_state(&bad, "c", "terminated");
    d.wait_state(&run, "c", "running");
    let info = d.request("GET", "/system-info", b"").json();
    assert_eq!(info["apptainer_version"], "1.3.6-fake");
    assert_eq!(info["plugin_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info["pods"],
        json!({"total": 3, "pending": 0, "running": 1, "succeeded": 1, "failed": 1})
    );
    d.delete(&run);
}

#[test]
fn the_status_of_several_pods_and_of_unknown_ones() {
    let d = Daemon::start();
    let a = pod_with("a", vec![sh("c", "exit 0")], vec![], 5);
    let b = pod_with("b", vec![sh("c", "exit 0")], vec![], 5);
    let unknown = pod_with("u", vec![sh("c", "exit 0")], vec![], 5);
    d.create(&a);
    d.create(&b);
    let body = json!([pod_of(&a), pod_of(&unknown), pod_of(&b)]);
    let r = d
        .request("GET", "/status", body.to_string().as_bytes())
        .json();
    let names: Vec<_> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
}
