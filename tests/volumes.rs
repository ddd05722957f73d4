//! Volumes through the real binary and the fake apptainer's real binds (bubblewrap): the
//! example pod end to end, emptyDir sharing with a read-only reader, configMap/secret items and
//! modes, projected data byte-exact, subPath, hostPath types, per-container /tmp, memory
//! emptyDirs, pre-exec, ExportPodData, and a table of traversal attempts that must write nothing.

mod common;
use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A create body with `containers`, `volumes`, and the objects interLink ships for them.
fn pod(name: &str, containers: Vec<Value>, volumes: Vec<Value>, shipped: Value) -> Value {
    let mut p = pod_with(name, containers, vec![], 2);
    for v in volumes {
        p = add_volume(p, v);
    }
    let names: Vec<Value> = p["pod"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    p["container"] = Value::Array(
        names
            .into_iter()
            .map(|n| {
                let mut c = shipped.clone();
                c["name"] = n;
                c
            })
            .collect(),
    );
    p
}

fn log_of(d: &Daemon, p: &Value, c: &str) -> (i64, String) {
    let st = d.wait_state(p, c, "terminated");
    (
        st["state"]["terminated"]["exitCode"].as_i64().unwrap(),
        d.logs(p, c).text(),
    )
}

#[test]
fn the_example_volumes_pod_runs_end_to_end() {
    let d = Daemon::start();
    let body = std::fs::read(fixture("requests/create-volumes.json")).unwrap();
    let p: Value = serde_json::from_slice(&body).unwrap();
    let r = d.request("POST", "/create", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = d.pod_dir(&p);
    let (code, app) = log_of(&d, &p, "app");
    assert_eq!(code, 0, "{app}");
    assert_eq!(app, "hello from a configmap\ns3cr3t 'with' \"quotes\"\n\n");
    let (code, reader) = log_of(&d, &p, "reader");
    assert_eq!(code, 0, "{reader}");
    let app_py =
        "print('hello from a configmap')\nimport os\nprint(open('/secrets/password').read())\n";
    assert_eq!(reader, format!("prepared\napp=\"volumes-demo\"\n{app_py}"));
    // Modes: item mode 493 (0755), secret defaultMode 256 (0400); binary secret byte-exact.
    let mode = |rel: &str| {
        std::fs::metadata(dir.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("volumes/config/app.py"), 0o755);
    assert_eq!(mode("volumes/secret/password"), 0o400);
    assert_eq!(mode("volumes/kube-api-access-7q2xk/ca.crt"), 0o644);
    assert!(
        !dir.join("volumes/config/unused.txt").exists(),
        "only the listed items"
    );
    let der = std::fs::read(dir.join("volumes/secret/cert.der")).unwrap();
    assert_eq!(der, (0u8..=255).collect::<Vec<u8>>());
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    d.delete(&p);
    assert!(!dir.exists());
}

#[test]
fn an_emptydir_is_shared_and_a_read_only_reader_cannot_write() {
    let d = Daemon::start();
    let writer = mounting(
        sh("writer", "echo hello > /data/x; sleep 0.5"),
        "data",
        "/data",
        false,
    );
    let reader = mounting(
        sh("reader", "while [ ! -e /data/x ]; do sleep 0.05; done; cat /data/x; echo more > /data/y && echo WROTE; exit 0"),
        "data",
        "/data",
        true,
    );
    let p = pod(
        "share",
        vec![writer, reader],
        vec![json!({"name": "data", "emptyDir": {}})],
        json!({}),
    );
    d.create(&p);
    let (_, log) = log_of(&d, &p, "reader");
    assert!(log.starts_with("hello\n"), "{log}");
    assert!(
        log.contains("Read-only file system"),
        "the write must fail: {log}"
    );
    assert!(!log.contains("WROTE"), "{log}");
    assert_eq!(
        std::fs::read_to_string(d.pod_dir(&p).join("volumes/data/x")).unwrap(),
        "hello\n"
    );
}

fn config_map(name: &str, data: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"}, "data": data})
}

#[test]
fn config_map_and_secret_items_run_as_scripts_with_their_modes() {
    let d = Daemon::start();
    let run_sh = "#!/bin/sh\necho \"run.sh says $(cat /creds/user)\"\n";
    let shipped = json!({
        "configMaps": [config_map("scripts", json!({"run.sh": run_sh, "other": "x"}))],
        "secrets": [{"metadata": {"name": "creds"}, "data": {"username": b64(b"alice"), "token": b64(b"t0k3n")}}],
    });
    let vols = vec![
        json!({"name": "scripts", "configMap": {"name": "scripts", "defaultMode": 256,
               "items": [{"key": "run.sh", "path": "bin/run.sh", "mode": 493}]}}),
        json!({"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "username", "path": "user"}]}}),
    ];
    let c = json!({"name": "c", "image": "docker://x", "command": ["/scripts/bin/run.sh"]});
    let c = mounting(
        mounting(c, "scripts", "/scripts", false),
        "creds",
        "/creds",
        false,
    );
    let p = pod("items", vec![c], vols, shipped);
    d.create(&p);
    let (code, log) = log_of(&d, &p, "c");
    assert_eq!((code, log.as_str()), (0, "run.sh says alice\n"));
    let dir = d.pod_dir(&p);
    let mode = |rel: &str| {
        std::fs::metadata(dir.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("volumes/scripts/bin/run.sh"), 0o755);
    assert_eq!(
        mode("volumes/creds/user"),
        0o600,
        "no defaultMode: private to the plugin's user"
    );
    assert!(!dir.join("volumes/creds/token").exists());
    assert!(!dir.join("volumes/scripts/other").exists());
}

#[test]
fn stat_inside_the_container_shows_default_mode_and_item_mode() {
    let d = Daemon::start();
    let shipped = json!({"configMaps": [config_map("cm", json!({"a": "A", "b": "B"}))]});
    let vols = vec![
        json!({"name": "cm", "configMap": {"name": "cm", "defaultMode": 256,
                            "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "sub/b", "mode": 493}]}}),
    ];
    let c = mounting(
        sh(
            "c",
            "stat -L -c '%a %n' /cm/a /cm/sub/b; echo x > /cm/new || echo ro",
        ),
        "cm",
        "/cm",
        false,
    );
    let p = pod("modes", vec![c], vols, shipped);
    d.create(&p);
    let (_, log) = log_of(&d, &p, "c");
    assert!(log.starts_with("400 /cm/a\n755 /cm/sub/b\n"), "{log}");
    assert!(
        log.ends_with("ro\n"),
        "configMap volumes are read-only: {log}"
    );
}

#[test]
fn projected_data_and_the_service_account_ca_keep_every_byte() {
    let d = Daemon::start();
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\nabc==\n-----END CERTIFICATE-----\n";
    let shipped = json!({"projectedvolumemaps": [
        {"metadata": {"name": "kube-api-access"}, "data": {"ca.crt": ca, "token": "tok", "namespace": "default"}},
        {"metadata": {"name": "bundle"}, "data": {"k1": "v1", "dir/k2": "no newline at end"}},
    ]});
    let vols = vec![
        json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}),
        json!({"name": "bundle", "projected": {"sources": [{"configMap": {"name": "b"}}]}}),
    ];
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let c = sh(
        "c",
        &format!("cat {sa}/ca.crt; cat /bundle/k1 /bundle/dir/k2"),
    );
    let c = mounting(
        mounting(c, "kube-api-access", sa, true),
        "bundle",
        "/bundle",
        false,
    );
    let p = pod("projected", vec![c], vols, shipped);
    d.create(&p);
    let (code, log) = log_of(&d, &p, "c");
    assert_eq!(code, 0, "{log}");
    assert_eq!(log, format!("{ca}v1no newline at end"));
}

#[test]
fn sub_path_of_a_file_and_of_a_directory() {
    let d = Daemon::start();
    let shipped =
        json!({"configMaps": [config_map("cm", json!({"app.yaml": "a: 1\n", "other": "o"}))]});
    let vols = vec![
        json!({"name": "cm", "configMap": {"name": "cm"}}),
        json!({"name": "work", "emptyDir": {}}),
    ];
    let mut c = sh(
        "c",
        "cat /etc/app/app.yaml; ls /etc/app; echo hi > /out/f; ls /out",
    );
    c["volumeMounts"] = json!([
        {"name": "cm", "mountPath": "/etc/app/app.yaml", "subPath": "app.yaml"},
        {"name": "work", "mountPath": "/out", "subPath": "logs/c"},
    ]);
    let p = pod("subpath", vec![c], vols, shipped);
    d.create(&p);
    let (code, log) = log_of(&d, &p, "c");
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log, "a: 1\napp.yaml\nf\n",
        "only that file is bound; the directory subPath is created"
    );
    assert_eq!(
        std::fs::read_to_string(d.pod_dir(&p).join("volumes/work/logs/c/f")).unwrap(),
        "hi\n"
    );
}

#[test]
fn sub_path_expr_uses_the_container_env() {
    let d = Daemon::start();
    let mut c = sh("c", "echo in > /logs/x");
    c["env"] = json!([{"name": "POD_NAME", "value": "web-7"}]);
    c["volumeMounts"] =
        json!([{"name": "work", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)"}]);
    let vol = json!({"name": "work", "emptyDir": {"sizeLimit": "5Mi"}});
    let p = pod("expr", vec![c], vec![vol], json!({}));
    d.create(&p);
    let st = d.wait_state(&p, "c", "terminated");
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
    let msg = st["state"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains("sizeLimit 5Mi is not enforced"),
        "the status says so: {st}"
    );
    assert!(d.pod_dir(&p).join("volumes/work/web-7/x").is_file());
}

#[test]
fn host_path_types_are_checked_like_the_kubelet() {
    let d = Daemon::start();
    let t = TempDir::new("hostpath");
    std::fs::write(t.path().join("file"), "f").unwrap();
    let hp = |path: &Path, ty: &str| json!({"name": "h", "hostPath": {"path": path, "type": ty}});
    let c = || mounting(sh("c", "ls /h >/dev/null && echo ok"), "h", "/h", false);
    let create = |vol: Value| {
        d.request(
            "POST",
            "/create",
            pod("hp", vec![c()], vec![vol], json!({}))
                .to_string()
                .as_bytes(),
        )
    };
    let refused = [
        (
            hp(&t.path().join("file"), "Directory"),
            "is not a directory",
        ),
        (
            hp(&t.path().join("missing"), "Directory"),
            "is not a directory",
        ),
        (hp(t.path(), "File"), "is not a file"),
        (hp(t.path(), "Socket"), "is not a socket file"),
        (hp(t.path(), "CharDevice"), "is not a character device"),
        (hp(t.path(), "BlockDevice"), "is not a block device"),
        (hp(t.path(), "Weird"), "not a known type"),
        (hp(Path::new("relative/dir"), ""), "must be absolute"),
    ];
    for (vol, needle) in refused {
        let r = create(vol.clone());
        assert_eq!(r.status, 400, "{vol}: {}", r.text());
        assert!(r.text().contains(needle), "{vol}: {}", r.text());
        assert!(
            r.text().contains("hostPath") || needle == "must be absolute",
            "{}",
            r.text()
        );
    }
    // The *OrCreate types create what is missing; a char device that exists passes.
    let dir = t.path().join("made/deep");
    let p = pod(
        "hp1",
        vec![c()],
        vec![hp(&dir, "DirectoryOrCreate")],
        json!({}),
    );
    d.create(&p);
    assert!(dir.is_dir());
    assert_eq!(log_of(&d, &p, "c"), (0, "ok\n".into()));
    let file = t.path().join("new/file.txt");
    let mut cf = sh("c", "echo written > /h; cat /h");
    cf["volumeMounts"] = json!([{"name": "h", "mountPath": "/h"}]);
    let p = pod("hp2", vec![cf], vec![hp(&file, "FileOrCreate")], json!({}));
    d.create(&p);
    assert_eq!(log_of(&d, &p, "c"), (0, "written\n".into()));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "written\n",
        "a hostPath is the host's"
    );
    let p = pod(
        "hp3",
        vec![mounting(sh("c", "echo ok"), "h", "/h", true)],
        vec![hp(Path::new("/dev/null"), "CharDevice")],
        json!({}),
    );
    d.create(&p);
    assert_eq!(log_of(&d, &p, "c").0, 0);
}

#[test]
fn every_container_has_its_own_tmp() {
    let d = Daemon::start();
    let a = sh("a", "echo from-a > /tmp/mine; sleep 0.3; ls /tmp");
    let b = sh("b", "echo from-b > /tmp/mine; sleep 0.3; cat /tmp/mine");
    let p = pod("tmp", vec![a, b], vec![], json!({}));
    d.create(&p);
    assert_eq!(log_of(&d, &p, "a"), (0, "mine\n".into()));
    assert_eq!(log_of(&d, &p, "b"), (0, "from-b\n".into()));
    let dir = d.pod_dir(&p);
    assert_eq!(
        std::fs::read_to_string(dir.join("containers/a/tmp/mine")).unwrap(),
        "from-a\n"
    );
}

#[test]
fn a_memory_emptydir_lives_in_dev_shm_and_is_removed_on_delete() {
    if !Path::new("/dev/shm").is_dir() {
        eprintln!("skipped: this machine has no /dev/shm");
        return;
    }
    let d = Daemon::start();
    let c = mounting(
        sh("c", "echo fast > /cache/f; sleep 30"),
        "cache",
        "/cache",
        false,
    );
    let p = pod(
        "mem",
        vec![c],
        vec![json!({"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})],
        json!({}),
    );
    d.create(&p);
    let uid = p["pod"]["metadata"]["uid"].as_str().unwrap();
    let shm = Path::new("/dev/shm").join(format!("interlink-{uid}-cache"));
    assert!(wait_for(std::time::Duration::from_secs(10), || shm
        .join("f")
        .is_file()));
    d.delete(&p);
    assert!(!shm.exists(), "delete removes the memory-backed directory");
}

#[test]
fn pre_exec_runs_only_where_the_node_enables_it() {
    let snippet = "echo pre-exec-ran > pre-exec.marker";
    let make = || {
        let mut p = pod("pre", vec![sh("c", "true")], vec![], json!({}));
        p["pod"]["metadata"]["annotations"] = json!({"slurm-job.vk.io/pre-exec": snippet});
        p
    };
    let off = Daemon::start();
    let p = make();
    off.create(&p);
    log_of(&off, &p, "c");
    assert!(!off.pod_dir(&p).join("pre-exec.marker").exists());
    assert!(off.log().contains("EnablePreExec is off"), "{}", off.log());

    let on = Daemon::start_with(Options {
        extra_yaml: "EnablePreExec: true\n".into(),
        ..Default::default()
    });
    let p = make();
    on.create(&p);
    log_of(&on, &p, "c");
    assert_eq!(
        std::fs::read_to_string(on.pod_dir(&p).join("pre-exec.marker")).unwrap(),
        "pre-exec-ran\n"
    );
}

#[test]
fn export_pod_data_off_skips_data_volumes_but_not_emptydirs() {
    let d = Daemon::start_with(Options {
        extra_yaml: "ExportPodData: false\n".into(),
        ..Default::default()
    });
    let shipped = json!({"configMaps": [config_map("cm", json!({"k": "v"}))]});
    let vols = vec![
        json!({"name": "cm", "configMap": {"name": "cm"}}),
        json!({"name": "e", "emptyDir": {}}),
    ];
    let c = mounting(
        mounting(
            sh("c", "ls /cm 2>&1; echo ok > /e/x && cat /e/x"),
            "cm",
            "/cm",
            false,
        ),
        "e",
        "/e",
        false,
    );
    let p = pod("noexport", vec![c], vols, shipped);
    d.create(&p);
    let (_, log) = log_of(&d, &p, "c");
    assert!(log.contains("No such file or directory"), "{log}");
    assert!(log.ends_with("ok\n"), "{log}");
    assert!(!d.pod_dir(&p).join("volumes/cm").exists());
}

#[test]
fn the_singularity_mounts_annotation_adds_binds() {
    let d = Daemon::start();
    let t = TempDir::new("annot");
    std::fs::write(t.path().join("hello"), "from the host\n").unwrap();
    let mut p = pod(
        "annot",
        vec![sh("c", "cat /extra/hello")],
        vec![],
        json!({}),
    );
    p["pod"]["metadata"]["annotations"] = json!({"slurm-job.vk.io/singularity-mounts": format!("--bind {}:/extra:ro", t.path().display())});
    d.create(&p);
    assert_eq!(log_of(&d, &p, "c"), (0, "from the host\n".into()));
}

#[test]
fn traversal_attempts_are_refused_and_write_nothing() {
    let d = Daemon::start();
    let t = TempDir::new("trav");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(t.path().join("host")).unwrap();
    std::os::unix::fs::symlink(&outside, t.path().join("host/link")).unwrap();
    std::os::unix::fs::symlink(t.path().join("nowhere"), t.path().join("host/dangling")).unwrap();
    std::os::unix::fs::symlink("/etc", t.path().join("host/evil")).unwrap();
    let cm = |data: Value| json!({"configMaps": [config_map("cm", data)]});
    let cmvol = |items: Value| json!({"name": "v", "configMap": {"name": "cm", "items": items}});
    let mount = |extra: Value| {
        let mut m = json!({"name": "v", "mountPath": "/v"});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        m
    };
    let cases: Vec<(Value, Value, Value, &str)> = vec![
        (
            cmvol(Value::Null),
            cm(json!({"../x": "bad"})),
            mount(json!({})),
            "'..'",
        ),
        (
            cmvol(json!([{"key": "k", "path": "/etc/passwd"}])),
            cm(json!({"k": "bad"})),
            mount(json!({})),
            "absolute",
        ),
        (
            cmvol(json!([{"key": "k", "path": "a/../../b"}])),
            cm(json!({"k": "bad"})),
            mount(json!({})),
            "'..'",
        ),
        (
            cmvol(json!([{"key": "k", "path": "../../../../tmp/pwn"}])),
            cm(json!({"k": "bad"})),
            mount(json!({})),
            "'..'",
        ),
        (
            cmvol(json!([{"key": "nope", "path": "x"}])),
            cm(json!({"k": "v"})),
            mount(json!({})),
            "no key \"nope\"",
        ),
        (
            json!({"name": "v", "configMap": {"name": "missing"}}),
            cm(json!({})),
            mount(json!({})),
            "not shipped",
        ),
        (
            json!({"name": "v", "emptyDir": {}}),
            json!({}),
            mount(json!({"subPath": "../../etc"})),
            "'..'",
        ),
        (
            json!({"name": "v", "emptyDir": {}}),
            json!({}),
            mount(json!({"subPath": "/etc"})),
            "absolute",
        ),
        (
            json!({"name": "v", "emptyDir": {}}),
            json!({}),
            mount(json!({"mountPath": "/a:/b"})),
            "':' or ','",
        ),
        (
            json!({"name": "v", "emptyDir": {}}),
            json!({}),
            mount(json!({"mountPath": "relative"})),
            "absolute",
        ),
        (
            json!({"name": "v", "emptyDir": {}}),
            json!({}),
            mount(json!({"mountPath": "//"})),
            "whole filesystem",
        ),
        (
            json!({"name": "v", "emptyDir": {}}),
            json!({}),
            mount(json!({"mountPath": "/x/../y"})),
            "contains '..'",
        ),
        (
            json!({"name": "v", "emptyDir": {}}),
            json!({}),
            mount(json!({"name": "other"})),
            "no volume named",
        ),
        (
            json!({"name": "../v", "emptyDir": {}}),
            json!({}),
            mount(json!({"name": "../v"})),
            "DNS label",
        ),
        (
            json!({"name": "v", "hostPath": {"path": t.path().join("host")}}),
            json!({}),
            mount(json!({"subPath": "evil"})),
            "resolves outside",
        ),
        (
            json!({"name": "v", "hostPath": {"path": t.path().join("host")}}),
            json!({}),
            mount(json!({"subPath": "link/x"})),
            "resolves outside",
        ),
        (
            json!({"name": "v", "hostPath": {"path": t.path().join("host")}}),
            json!({}),
            mount(json!({"subPath": "dangling/x"})),
            "resolves outside",
        ),
        (
            json!({"name": "v", "gitRepo": {"repository": "x"}}),
            json!({}),
            mount(json!({})),
            "not supported",
        ),
    ];
    for (vol, shipped, m, needle) in cases {
        let mut c = sh("c", "true");
        c["volumeMounts"] = json!([m]);
        let p = pod("trav", vec![c], vec![vol.clone()], shipped);
        let r = d.request("POST", "/create", p.to_string().as_bytes());
        assert_eq!(r.status, 400, "{vol} {m}: {}", r.text());
        assert!(
            r.text().contains(needle),
            "{vol} {m}: {:?} should mention {needle:?}",
            r.text()
        );
        assert!(
            r.text().contains("volume")
                || r.text().contains("subPath")
                || r.text().contains("mount"),
            "{}",
            r.text()
        );
        assert!(!d.pod_dir(&p).exists(), "{vol} {m}: nothing may be left");
    }
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written through the symlink"
    );
    assert!(!Path::new("/tmp/pwn").exists());
    assert!(
        std::fs::read_dir(&d.data_root)
            .map(|r| r.count())
            .unwrap_or(0)
            == 0,
        "no pod directory left"
    );
}

#[test]
fn secrets_stay_out_of_job_sh_argv_and_logs_and_delete_removes_them() {
    let d = Daemon::start();
    let shipped = json!({"secrets": [{"metadata": {"name": "s"}, "data": {"pw": b64(b"hunter2-very-secret")}}]});
    let mut c = mounting(sh("c", "test -s /s/pw && echo present"), "s", "/s", true);
    c["env"] = json!([{"name": "PW", "value": "env-secret-value"}]);
    let p = pod(
        "secret",
        vec![c],
        vec![json!({"name": "s", "secret": {"secretName": "s"}})],
        shipped,
    );
    d.create(&p);
    assert_eq!(log_of(&d, &p, "c"), (0, "present\n".into()));
    let dir = d.pod_dir(&p);
    let job = std::fs::read_to_string(dir.join("job.sh")).unwrap();
    assert!(!job.contains("hunter2") && !job.contains("env-secret-value"));
    let argv: Vec<u8> = std::fs::read_dir(&d.record_dir)
        .unwrap()
        .flatten()
        .flat_map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    let argv = String::from_utf8_lossy(&argv);
    assert!(!argv.contains("hunter2") && !argv.contains("env-secret-value"));
    assert!(!d.log().contains("hunter2") && !d.log().contains("env-secret-value"));
    assert_eq!(
        std::fs::metadata(dir.join("volumes/s/pw"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.join("containers/c/env"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    d.delete(&p);
    assert!(!dir.exists());
}

#[test]
fn mounts_work_in_any_order_parents_first() {
    let d = Daemon::start();
    let shipped = json!({"configMaps": [config_map("cm", json!({"k": "from-cm"}))]});
    let vols = vec![
        json!({"name": "cm", "configMap": {"name": "cm"}}),
        json!({"name": "data", "emptyDir": {}}),
    ];
    // The child mount is listed before its parent: it must not be hidden by it.
    let mut c = sh(
        "c",
        "cat /data/cfg/k; echo; echo w > /data/x && cat /data/x",
    );
    c["volumeMounts"] = json!([
        {"name": "cm", "mountPath": "/data/cfg"},
        {"name": "data", "mountPath": "/data"},
    ]);
    let p = pod("order", vec![c], vols, shipped);
    d.create(&p);
    assert_eq!(log_of(&d, &p, "c"), (0, "from-cm\nw\n".into()));
}
