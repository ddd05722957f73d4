//! `/getLogs` through the real binary: every option and pairs of them, edge cases (empty log,
//! exactly N lines, no final newline, a 1 MiB line, invalid UTF-8), init containers, follow
//! (latency, end at exit, client that leaves), previous instances, and bounded memory.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn logs_with(d: &Daemon, pod: &Value, container: &str, opts: Value) -> Response {
    let p = pod_of(pod);
    let mut o = json!({"Tail": 0, "Bytes": 0, "Timestamps": false, "Follow": false, "Previous": false,
                       "SinceSeconds": 0, "SinceTime": "0001-01-01T00:00:00Z"});
    o.as_object_mut()
        .unwrap()
        .extend(opts.as_object().unwrap().clone());
    let body = json!({"Namespace": "default", "PodUID": p["metadata"]["uid"], "PodName": p["metadata"]["name"],
                      "ContainerName": container, "Opts": o});
    d.request("GET", "/getLogs", body.to_string().as_bytes())
}

fn text(d: &Daemon, pod: &Value, c: &str, opts: Value) -> String {
    let r = logs_with(d, pod, c, opts.clone());
    assert_eq!(r.status, 200, "{opts}: {}", r.text());
    r.text()
}

fn finished(d: &Daemon, script: &str) -> Value {
    let pod = pod_with("logs", vec![sh("c", script)], vec![], 2);
    d.create(&pod);
    d.wait_state(&pod, "c", "terminated");
    pod
}

#[test]
fn tail_bytes_and_their_edges() {
    let d = Daemon::start();
    let pod = finished(&d, "for i in 1 2 3 4 5; do echo line$i; done");
    assert_eq!(
        text(&d, &pod, "c", json!({})),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(text(&d, &pod, "c", json!({"Tail": 2})), "line4\nline5\n");
    assert_eq!(
        text(&d, &pod, "c", json!({"Tail": 5})),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(
        text(&d, &pod, "c", json!({"Tail": 6})),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(text(&d, &pod, "c", json!({"Bytes": 8})), "line1\nli");
    assert_eq!(text(&d, &pod, "c", json!({"Bytes": 1000})).len(), 30);
    let partial = finished(&d, "printf 'a\\nb\\nno newline'");
    assert_eq!(text(&d, &partial, "c", json!({"Tail": 1})), "no newline");
    assert_eq!(text(&d, &partial, "c", json!({"Tail": 2})), "b\nno newline");
    let empty = finished(&d, "true");
    assert_eq!(text(&d, &empty, "c", json!({})), "");
    assert_eq!(
        text(&d, &empty, "c", json!({"Tail": 3, "Timestamps": true})),
        ""
    );
}

#[test]
fn since_and_timestamps_follow_the_write_times() {
    let d = Daemon::start();
    let pod = finished(&d, "echo early; sleep 1.5; echo late1; echo late2");
    let all = text(&d, &pod, "c", json!({"Timestamps": true}));
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    let stamp = |l: &str| l.split_once(' ').unwrap().0.to_string();
    for l in &lines {
        let (t, _) = l.split_once(' ').unwrap();
        assert!(
            t.ends_with('Z') && t.len() >= 20 && t.as_bytes()[10] == b'T',
            "{l:?}"
        );
    }
    assert_eq!(lines[0].split_once(' ').unwrap().1, "early");
    assert!(stamp(lines[1]) > stamp(lines[0]));
    // Since the time of the second write: the late lines only.
    let since = stamp(lines[1]);
    assert_eq!(
        text(&d, &pod, "c", json!({"SinceTime": since})),
        "late1\nlate2\n"
    );
    assert_eq!(
        text(&d, &pod, "c", json!({"SinceSeconds": 3600})),
        "early\nlate1\nlate2\n"
    );
    // Pairs: since + tail, since + bytes, tail + timestamps.
    assert_eq!(
        text(&d, &pod, "c", json!({"SinceTime": since, "Tail": 1})),
        "late2\n"
    );
    assert_eq!(
        text(&d, &pod, "c", json!({"SinceTime": since, "Tail": 9})),
        "late1\nlate2\n"
    );
    assert_eq!(
        text(&d, &pod, "c", json!({"SinceTime": since, "Bytes": 3})),
        "lat"
    );
    let t1 = text(&d, &pod, "c", json!({"Tail": 1, "Timestamps": true}));
    assert_eq!(t1, format!("{}\n", lines[2]));
    let b = text(&d, &pod, "c", json!({"Bytes": 5, "Timestamps": true}));
    assert_eq!(b, lines[0][..5]);
}

#[test]
fn bytes_are_passed_through_unchanged() {
    let d = Daemon::start();
    // Invalid UTF-8, a NUL, CR, and a 1 MiB line without a newline in the middle.
    let pod = finished(
        &d,
        "printf 'ok \\377\\376 \\000 cr\\r\\n'; head -c 1048576 /dev/zero | tr '\\0' x; printf '\\nend\\n'",
    );
    let body = logs_with(&d, &pod, "c", json!({})).body;
    let mut want = b"ok \xff\xfe \x00 cr\r\n".to_vec();
    want.extend(std::iter::repeat_n(b'x', 1 << 20));
    want.extend(b"\nend\n");
    assert_eq!(body.len(), want.len());
    assert!(body == want);
    let tail = logs_with(&d, &pod, "c", json!({"Tail": 2})).body;
    assert_eq!(tail.len(), (1 << 20) + 5);
    assert_eq!(logs_with(&d, &pod, "c", json!({"Tail": 1})).body, b"end\n");
}

#[test]
fn init_container_logs_and_errors() {
    let d = Daemon::start();
    let pod = pod_with(
        "init",
        vec![sh("c", "echo main")],
        vec![sh("setup", "echo from init")],
        2,
    );
    d.create(&pod);
    d.wait_state(&pod, "c", "terminated");
    assert_eq!(text(&d, &pod, "setup", json!({})), "from init\n");
    let bad = [
        (
            json!({"Tail": 1, "Bytes": 1}),
            400,
            "cannot be used together",
        ),
        (
            json!({"SinceSeconds": 5, "SinceTime": "2026-01-01T00:00:00Z"}),
            400,
            "cannot be used together",
        ),
        (json!({"Tail": -1}), 400, "negative"),
        (json!({"SinceTime": "yesterday"}), 400, "RFC 3339"),
        (
            json!({"Previous": true}),
            400,
            "previous terminated container \"c\"",
        ),
    ];
    for (opts, code, needle) in bad {
        let r = logs_with(&d, &pod, "c", opts.clone());
        assert_eq!(r.status, code, "{opts}: {}", r.text());
        assert!(r.text().contains(needle), "{opts}: {}", r.text());
    }
    let r = logs_with(&d, &pod, "nope", json!({}));
    assert_eq!(r.status, 404);
}

/// Sends a follow request and returns the socket, positioned after the response head.
fn follow(d: &Daemon, pod: &Value, opts: Value) -> std::net::TcpStream {
    let Addr::Tcp(addr) = &d.addr else { panic!() };
    let p = pod_of(pod);
    let mut o = json!({"Tail": 0, "Bytes": 0, "Timestamps": false, "Follow": true, "Previous": false,
                       "SinceSeconds": 0, "SinceTime": "0001-01-01T00:00:00Z"});
    o.as_object_mut()
        .unwrap()
        .extend(opts.as_object().unwrap().clone());
    let body = json!({"Namespace": "default", "PodUID": p["metadata"]["uid"], "PodName": p["metadata"]["name"],
                      "ContainerName": "c", "Opts": o})
    .to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /getLogs HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads until `needle` has arrived; returns everything read so far.
fn read_until(s: &mut std::net::TcpStream, got: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(needle) {
        let n = s.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "connection closed before {needle:?}: {}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn follow_streams_new_lines_quickly_and_ends_with_the_container() {
    let d = Daemon::start();
    let t = TempDir::new("follow");
    let script = "echo first; while [ ! -e /signal/more ]; do sleep 0.01; done; echo second; \
                  while [ ! -e /signal/stop ]; do sleep 0.01; done; echo last";
    let c = mounting(sh("c", script), "signal", "/signal", true);
    let vol = json!({"name": "signal", "hostPath": {"path": t.path(), "type": "Directory"}});
    let pod = add_volume(pod_with("follow", vec![c], vec![], 2), vol);
    d.create(&pod);
    let mut s = follow(&d, &pod, json!({}));
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "first\n");
    // Each new line must reach the client within 250 ms of being written.
    let mut latencies = Vec::new();
    for (file, line) in [("more", "second\n"), ("stop", "last\n")] {
        let t0 = Instant::now();
        std::fs::write(t.path().join(file), "").unwrap();
        read_until(&mut s, &mut got, line);
        latencies.push(t0.elapsed());
    }
    for l in &latencies {
        assert!(*l < Duration::from_millis(250), "latency {latencies:?}");
    }
    // The container ends: so does the answer (chunked body closed, connection closed).
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    got.extend(rest);
    let text = String::from_utf8_lossy(&got);
    assert!(text.ends_with("0\r\n\r\n"), "{text:?}");
    assert!(text.contains("first\n") && text.contains("second\n") && text.contains("last\n"));
}

fn inotify_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().contains("inotify"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_follower_that_leaves_leaves_nothing_behind() {
    let d = Daemon::start();
    let pod = pod_with("idle", vec![sh("c", "echo hi; sleep 60")], vec![], 1);
    d.create(&pod);
    d.wait_state(&pod, "c", "running");
    let mut s = follow(&d, &pod, json!({}));
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "hi\n");
    assert_eq!(inotify_fds(d.pid()), 1, "one watch while following");
    drop(s);
    assert!(
        wait_for(Duration::from_secs(3), || inotify_fds(d.pid()) == 0),
        "the follower's watch is gone after the client left"
    );
    // An idle follower costs no CPU: the daemon's CPU time barely moves in a second.
    let mut s2 = follow(&d, &pod, json!({}));
    read_until(&mut s2, &mut Vec::new(), "hi\n");
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid())).unwrap();
        let f: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        cpu() - before <= 5,
        "idle follower used {} ticks in 1 s",
        cpu() - before
    );
    d.delete(&pod);
}

#[test]
fn follow_of_a_container_that_has_not_written_waits_for_output() {
    let d = Daemon::start();
    let pod = pod_with("late", vec![sh("c", "sleep 0.5; echo finally")], vec![], 1);
    d.create(&pod);
    let mut s = follow(&d, &pod, json!({"Timestamps": true}));
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "finally\n");
    assert!(String::from_utf8_lossy(&got).contains("Z finally\n"));
}

#[test]
fn previous_returns_the_last_instance() {
    let d = Daemon::start();
    let pod = finished(&d, "echo first instance");
    // A restart runs the log writer again on the same directory, as job.sh does.
    let dir = d.pod_dir(&pod).join("containers/c");
    let mut w = std::process::Command::new(BIN)
        .arg("log-writer")
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    w.stdin
        .take()
        .unwrap()
        .write_all(b"second instance\n")
        .unwrap();
    assert!(w.wait().unwrap().success());
    assert_eq!(text(&d, &pod, "c", json!({})), "second instance\n");
    assert_eq!(
        text(&d, &pod, "c", json!({"Previous": true})),
        "first instance\n"
    );
    let ts = text(&d, &pod, "c", json!({"Previous": true, "Timestamps": true}));
    assert!(ts.ends_with("Z first instance\n"), "{ts}");
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_large_log_is_served_in_bounded_memory() {
    let d = Daemon::start();
    // 64 MiB of 100-byte lines.
    let pod = finished(&d, "yes 'abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopq' | head -c 67108864");
    // A tail reads the end of the file only (rchar: bytes the daemon read through syscalls).
    let rchar = || -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", d.pid())).unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let r0 = rchar();
    assert_eq!(
        logs_with(&d, &pod, "c", json!({"Tail": 100}))
            .text()
            .lines()
            .count(),
        100
    );
    let read = rchar() - r0;
    assert!(
        read < 1 << 20,
        "a Tail of 100 lines read {read} bytes of a 64 MiB log"
    );
    let before = vm_hwm_kib(d.pid());
    let whole = logs_with(&d, &pod, "c", json!({}));
    assert_eq!(whole.body.len(), 64 << 20);
    let ts = logs_with(&d, &pod, "c", json!({"Timestamps": true, "Tail": 100000}));
    assert_eq!(ts.text().lines().count(), 100000);
    let grew = vm_hwm_kib(d.pid()) - before;
    assert!(grew < 10 * 1024, "peak RSS grew by {grew} KiB");
}

#[test]
fn follow_combines_with_tail_and_since() {
    let d = Daemon::start();
    let t = TempDir::new("followtail");
    let script =
        "echo one; echo two; echo three; while [ ! -e /signal/go ]; do sleep 0.01; done; echo four";
    let c = mounting(sh("c", script), "signal", "/signal", true);
    let vol = json!({"name": "signal", "hostPath": {"path": t.path(), "type": "Directory"}});
    let pod = add_volume(pod_with("followtail", vec![c], vec![], 2), vol);
    d.create(&pod);
    assert!(wait_for(Duration::from_secs(10), || text(
        &d,
        &pod,
        "c",
        json!({})
    )
        == "one\ntwo\nthree\n"));
    let mut s = follow(&d, &pod, json!({"Tail": 1}));
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "three\n");
    std::fs::write(t.path().join("go"), "").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    got.extend(rest);
    let body = String::from_utf8_lossy(&got);
    let body = &body[body.find("\r\n\r\n").unwrap()..];
    assert!(
        !body.contains("two"),
        "only the last line before new ones: {body:?}"
    );
    assert!(
        body.contains("three\n") && body.contains("four\n"),
        "{body:?}"
    );
    let since = text(&d, &pod, "c", json!({"SinceSeconds": 3600, "Follow": true}));
    assert_eq!(
        since, "one\ntwo\nthree\nfour\n",
        "a follow of an ended container just reads"
    );
}

#[test]
fn a_daemon_crash_does_not_block_a_container_that_writes_a_lot() {
    let mut d = Daemon::start();
    let pod = pod_with(
        "chatty",
        vec![sh(
            "c",
            "head -c 20000000 /dev/zero | tr '\\0' y; echo; echo done",
        )],
        vec![],
        2,
    );
    d.create(&pod);
    d.kill(9);
    let status = d.pod_dir(&pod).join("containers/c/status");
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::read_to_string(&status)
            .unwrap_or_default()
            .contains("exit 0")),
        "the container finished without the daemon"
    );
    d.spawn();
    let body = logs_with(&d, &pod, "c", json!({})).body;
    assert_eq!(body.len(), 20_000_000 + 6);
    assert_eq!(
        logs_with(&d, &pod, "c", json!({"Tail": 1})).text(),
        "done\n"
    );
}
