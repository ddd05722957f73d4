//! Test harness: starts the real `apptainer-plugin` binary in a fresh temp dir with the fake
//! apptainer, speaks HTTP/1.1 to it over TCP or a unix socket as interLink does, builds pod
//! bodies, and makes sure no process of a test outlives it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_apptainer-plugin");

pub fn fake_apptainer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/apptainer")
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "aplug-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Debug)]
pub enum Addr {
    Tcp(String),
    Unix(PathBuf),
}

pub struct Daemon {
    pub dir: TempDir,
    pub data_root: PathBuf,
    pub config: PathBuf,
    pub addr: Addr,
    pub record_dir: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    cgroup_procs: Option<PathBuf>,
}

#[derive(Default)]
pub struct Options {
    pub socket: bool,
    pub extra_yaml: String,
    /// A cgroup's `cgroup.procs` (or v1 `tasks`) file the daemon is moved into at start.
    pub cgroup_procs: Option<PathBuf>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Daemon {
        let dir = TempDir::new("d");
        let data_root = dir.path().join("jobs");
        let record_dir = dir.path().join("argv");
        std::fs::create_dir_all(&record_dir).unwrap();
        let listen = if opts.socket {
            format!("Socket: unix://{}/plugin.sock\n", dir.path().display())
        } else {
            "SidecarPort: 0\n".to_string()
        };
        let config = dir.path().join("ApptainerConfig.yaml");
        std::fs::write(
            &config,
            format!(
                "{listen}DataRootFolder: {}/\nApptainerPath: {}\nApptainerDefaultOptions: [\"--cleanenv\"]\nKillPollMilliseconds: 20\nReapIntervalMilliseconds: 100\n{}",
                data_root.display(),
                fake_apptainer().display(),
                opts.extra_yaml
            ),
        )
        .unwrap();
        let mut d = Daemon {
            cgroup_procs: opts.cgroup_procs.clone(),
            dir,
            data_root,
            config,
            addr: Addr::Tcp(String::new()),
            record_dir,
            child: None,
            log: Arc::new(Mutex::new(String::new())),
        };
        d.spawn();
        d
    }

    /// (Re)starts the binary on this daemon's config and waits for its listening line.
    pub fn spawn(&mut self) {
        // With a cgroup, a shell moves itself there and then becomes the daemon (same PID).
        let mut cmd = match &self.cgroup_procs {
            Some(procs) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("echo $$ > \"$1\" && shift && exec \"$@\"")
                    .arg("sh")
                    .arg(procs)
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .arg("-ApptainerConfigpath")
            .arg(&self.config)
            .env("FAKE_APPTAINER_RECORD", &self.record_dir)
            .env_remove("SIDECARPORT")
            .env_remove("APPTAINERPATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
                    }
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let at = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("daemon did not start; its log:\n{}", self.log()));
        self.addr = if let Some(p) = at.strip_prefix("unix://") {
            Addr::Unix(PathBuf::from(p))
        } else {
            Addr::Tcp(at.trim_start_matches("http://").to_string())
        };
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Kills the daemon with a signal; its pods are left as they are.
    pub fn kill(&mut self, signal: i32) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id() as i32, signal);
            let _ = c.wait();
        }
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        request(&self.addr, method, path, body)
    }

    pub fn create(&self, pod: &Value) -> Value {
        let r = self.request("POST", "/create", pod.to_string().as_bytes());
        assert_eq!(r.status, 200, "create failed: {}", r.text());
        r.json()
    }

    pub fn status(&self, pod: &Value) -> Value {
        let r = self.request(
            "GET",
            "/status",
            json!([pod_of(pod)]).to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "status failed: {}", r.text());
        r.json()
    }

    /// The status of the pod's container `name` (regular or init).
    pub fn container_state(&self, pod: &Value, name: &str) -> Value {
        let st = self.status(pod);
        let p = &st[0];
        p["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(p["initContainers"].as_array().into_iter().flatten())
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name} in {st}"))
            .clone()
    }

    pub fn delete(&self, pod: &Value) -> Response {
        let r = self.request("POST", "/delete", pod_of(pod).to_string().as_bytes());
        assert_eq!(r.status, 200, "delete failed: {}", r.text());
        r
    }

    pub fn logs(&self, pod: &Value, container: &str) -> Response {
        let p = pod_of(pod);
        let body = json!({
            "Namespace": p["metadata"]["namespace"], "PodUID": p["metadata"]["uid"],
            "PodName": p["metadata"]["name"], "ContainerName": container,
            "Opts": {"Tail": 0, "Bytes": 0, "Timestamps": false, "Follow": false, "Previous": false,
                     "SinceSeconds": 0, "SinceTime": "0001-01-01T00:00:00Z"}
        });
        self.request("GET", "/getLogs", body.to_string().as_bytes())
    }

    pub fn pod_dir(&self, pod: &Value) -> PathBuf {
        let p = pod_of(pod);
        self.data_root.join(format!(
            "{}-{}",
            p["metadata"]["namespace"].as_str().unwrap(),
            p["metadata"]["uid"].as_str().unwrap()
        ))
    }

    /// Waits until the container is in `state` (waiting/running/terminated); returns its status.
    pub fn wait_state(&self, pod: &Value, name: &str, state: &str) -> Value {
        let mut last = Value::Null;
        let ok = wait_for(Duration::from_secs(20), || {
            last = self.container_state(pod, name);
            last["state"][state].is_object()
        });
        assert!(
            ok,
            "container {name} never reached {state}; last status {last}"
        );
        last
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill(9);
        // Leave nothing running: kill the process group of every pod still on disk, and the
        // group of each of its containers (they lead their own).
        if let Ok(dirs) = std::fs::read_dir(&self.data_root) {
            for d in dirs.flatten() {
                if let Ok(rec) = std::fs::read(d.path().join("pod.json")) {
                    if let Ok(v) = serde_json::from_slice::<Value>(&rec) {
                        if let Some(pid) = v["pid"].as_i64() {
                            unsafe_kill(-(pid as i32), 9);
                        }
                    }
                }
                for c in std::fs::read_dir(d.path().join("containers"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let pid = std::fs::read_to_string(c.path().join("pid")).unwrap_or_default();
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        unsafe_kill(-pid, 9);
                    }
                }
            }
        }
    }
}

/// `kill(2)` through the `kill` command, so the tests need no libc crate.
pub fn unsafe_kill(pid: i32, signal: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// The pod object of a create body (which wraps it as `{"pod": …}`).
pub fn pod_of(v: &Value) -> Value {
    if v.get("pod").is_some() {
        v["pod"].clone()
    } else {
        v.clone()
    }
}

pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// One HTTP/1.1 request on a fresh connection, with Host and Content-Length as interLink sends.
pub fn request(addr: &Addr, method: &str, path: &str, body: &[u8]) -> Response {
    let (mut s, host): (Box<dyn Stream>, &str) = match addr {
        Addr::Tcp(a) => (
            Box::new(TcpStream::connect(a).expect("connect")),
            a.as_str(),
        ),
        Addr::Unix(p) => (Box::new(UnixStream::connect(p).expect("connect")), "unix"),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nInterLink-Http-Session: test-session\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// A unique uid for a test pod.
pub fn uid(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A create body with the given containers (each a JSON object with at least name).
pub fn pod_with(name: &str, containers: Vec<Value>, init: Vec<Value>, grace: i64) -> Value {
    json!({
        "pod": {
            "metadata": {"name": name, "namespace": "default", "uid": uid(name),
                         "annotations": {}, "creationTimestamp": null},
            "spec": {
                "containers": containers,
                "initContainers": if init.is_empty() { Value::Null } else { Value::Array(init) },
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": grace
            },
            "status": {"phase": "Pending"}
        },
        "container": null,
        "jobConfig": {}
    })
}

/// A container running `sh -c script`.
pub fn sh(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "docker://busybox", "command": ["/bin/sh", "-c", script]})
}

/// The `sleep <marker>` processes (the tests give each a unique marker). Only the sleep itself
/// counts: the shells and the fake apptainer that lead to it mention the marker too, but before
/// they exec they may still die of a SIGTERM that the sleep is meant to ignore.
pub fn processes_with(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let is_sleep = argv.first().is_some_and(|a| a.ends_with(b"sleep"));
            !zombie && is_sleep && argv.get(1) == Some(&marker.as_bytes())
        })
        .collect()
}

/// `ps` lines of the given processes, for assertion messages.
pub fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!(
                "{stat} :: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Adds a volume to a create body's pod.
pub fn add_volume(mut create: Value, volume: Value) -> Value {
    let spec = &mut create["pod"]["spec"];
    if !spec["volumes"].is_array() {
        spec["volumes"] = json!([]);
    }
    spec["volumes"].as_array_mut().unwrap().push(volume);
    create
}

/// A container with one more volume mount.
pub fn mounting(mut container: Value, volume: &str, path: &str, read_only: bool) -> Value {
    if !container["volumeMounts"].is_array() {
        container["volumeMounts"] = json!([]);
    }
    container["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": volume, "mountPath": path, "readOnly": read_only}));
    container
}
