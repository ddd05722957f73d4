//! The probe engine: startup, readiness and liveness probes with kubelet semantics, one async
//! task per probed container on the daemon's executor (no thread or process while idle; exec
//! probes run `job.sh probe NAME KIND` only when due). A failed startup or liveness probe stops
//! that container alone (preStop, SIGTERM, grace, SIGKILL to its own process group); job.sh's
//! restart policy decides what follows. Results live in memory and in `containers/<n>/probe`.

use crate::hooks::resolve_port;
use crate::plan::{ProbeHandler, ProbeKind, ProbePlan};
use k8s_openapi::api::core::v1::{Container, Probe};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn probe_plan(c: &Container, p: &Probe, kind: ProbeKind) -> Result<ProbePlan, String> {
    let k = kind.as_str();
    let handler = if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        if cmd.is_empty() || cmd.iter().any(|w| w.contains('\0')) {
            return Err(format!("{k}Probe.exec needs a command without NUL bytes"));
        }
        ProbeHandler::Exec(cmd)
    } else if let Some(g) = &p.http_get {
        let (host, port, path, headers) =
            crate::hooks::http_get(c, g).map_err(|e| format!("{k}Probe.httpGet: {e}"))?;
        ProbeHandler::Http {
            host,
            port,
            path,
            headers,
        }
    } else if let Some(t) = &p.tcp_socket {
        let port = resolve_port(c, &t.port).map_err(|e| format!("{k}Probe.tcpSocket: {e}"))?;
        let host = t
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "127.0.0.1".into());
        ProbeHandler::Tcp { host, port }
    } else if p.grpc.is_some() {
        return Err(format!(
            "{k}Probe.grpc is not supported by this plugin; use httpGet, tcpSocket or exec"
        ));
    } else {
        return Err(format!("{k}Probe needs exec, httpGet or tcpSocket"));
    };
    let num =
        |v: Option<i32>, default: u32, min: u32| v.map_or(default, |v| (v.max(0) as u32).max(min));
    Ok(ProbePlan {
        kind,
        handler,
        initial_delay: num(p.initial_delay_seconds, 0, 0),
        period: num(p.period_seconds, 10, 1),
        timeout: num(p.timeout_seconds, 1, 1),
        // Liveness and startup must have successThreshold 1 (the API server enforces it).
        success_threshold: if kind == ProbeKind::Readiness {
            num(p.success_threshold, 1, 1)
        } else {
            1
        },
        failure_threshold: num(p.failure_threshold, 3, 1),
    })
}

/// The probes of a container, checked.
pub fn plan(c: &Container) -> Result<Vec<ProbePlan>, String> {
    let mut out = Vec::new();
    for (p, kind) in [
        (&c.startup_probe, ProbeKind::Startup),
        (&c.readiness_probe, ProbeKind::Readiness),
        (&c.liveness_probe, ProbeKind::Liveness),
    ] {
        if let Some(p) = p {
            out.push(probe_plan(c, p, kind)?);
        }
    }
    Ok(out)
}

/// What the probes say of one container's current instance.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Which instance (number of `start` lines) this is about.
    pub instance: usize,
    pub started: bool,
    pub ready: bool,
}

/// The verdicts, by (pod uid, container); shared by the probe tasks and the status path.
#[derive(Default)]
pub struct Verdicts(Mutex<HashMap<(String, String), Verdict>>);

impl Verdicts {
    pub fn get(&self, uid: &str, container: &str) -> Option<Verdict> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(uid.to_string(), container.to_string()))
            .cloned()
    }

    fn set(&self, uid: &str, container: &str, v: Verdict, file: &Path) {
        // On disk too, so that a restarted daemon does not call a healthy container unready.
        if let Ok(bytes) = serde_json::to_vec(&v) {
            let tmp = file.with_extension("tmp");
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, file);
            }
        }
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((uid.to_string(), container.to_string()), v);
    }

    /// Takes what an earlier daemon concluded from `containers/<n>/probe`, so that a status
    /// asked right after a restart already says it.
    pub fn load(&self, uid: &str, container: &str, file: &Path) {
        let saved: Option<Verdict> = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(v) = saved {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((uid.to_string(), container.to_string()), v);
        }
    }

    pub fn forget_pod(&self, uid: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(u, _), _| u != uid);
    }
}

/// Everything a probe task needs, owned (it outlives the request that started it).
pub struct Target {
    pub uid: String,
    pub pod_key: String,
    pub container: String,
    pub pod_dir: PathBuf,
    pub bash: PathBuf,
    pub probes: Vec<ProbePlan>,
    pub has_pre_stop: bool,
    pub grace: Duration,
    /// The length of one "probe second" (1 s; tests shorten it).
    pub second: Duration,
    /// The status file's size at the last look, and what it said.
    pub seen: Mutex<Option<(u64, (usize, bool))>>,
}

impl Target {
    fn file(&self, name: &str) -> PathBuf {
        self.pod_dir
            .join(crate::script::container_dir(&self.container))
            .join(name)
    }

    /// (instance number, still running) from job.sh's status file; None when the pod is gone.
    /// The file only grows: while its size is unchanged the last answer stands (one stat per
    /// probe instead of a read and a parse).
    fn instance(&self) -> Option<(usize, bool)> {
        let file = self.file("status");
        let len = match std::fs::metadata(&file) {
            Ok(m) => m.len(),
            Err(_) if !self.pod_dir.exists() => return None,
            Err(_) => 0,
        };
        let mut cache = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((l, answer)) = *cache {
            if l == len {
                return Some(answer);
            }
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let runs = crate::status::parse_status(&text);
        let answer = (runs.len(), runs.last().is_some_and(|i| i.exit.is_none()));
        *cache = Some((text.len() as u64, answer));
        Some(answer)
    }

    fn secs(&self, n: u32) -> Duration {
        self.second * n
    }
}

/// Runs one probe once: Ok(()) on success, Err(what it saw) on failure or timeout.
async fn run_once(t: &Target, p: &ProbePlan) -> Result<(), String> {
    let timeout = t.secs(p.timeout);
    let attempt = async {
        match &p.handler {
            ProbeHandler::Tcp { host, port } => {
                async_net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
            }
            ProbeHandler::Http {
                host,
                port,
                path,
                headers,
            } => http_get(host, *port, path, headers).await,
            ProbeHandler::Exec(_) => exec(t, p, timeout).await,
        }
    };
    let timer = async {
        smol::Timer::after(timeout).await;
        Err(format!("timed out after {}s", p.timeout))
    };
    smol::future::or(attempt, timer).await
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let mut s = async_net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

async fn exec(t: &Target, p: &ProbePlan, timeout: Duration) -> Result<(), String> {
    let script = t.pod_dir.join(crate::script::JOB_SCRIPT);
    let log = t.file("probes.log");
    let job = crate::process::spawn_with(
        &t.bash,
        &script,
        &["probe", &t.container, p.kind.as_str()],
        &t.pod_dir,
        &log,
    )
    .map_err(|e| format!("cannot run the exec probe: {e}"))?;
    let deadline = Instant::now() + timeout;
    match crate::process::wait_until(job, deadline, Duration::from_millis(20)).await {
        None => Err(format!("command timed out after {}s", p.timeout)),
        Some(0) => Ok(()),
        Some(code) => Err(format!("command exited with {code}")),
    }
}

/// Stops the container's current instance: its preStop hook, then SIGTERM to its own group, the
/// grace period, SIGKILL. job.sh records the exit and restarts it as its policy says.
async fn stop_instance(t: &Target, instance: usize, why: &str) {
    tracing::info!(pod = %t.pod_key, container = %t.container, "{why}; stopping the container");
    // One write of one line: job.sh appends to the same file.
    let line = format!(
        "probe-failed {} {}\n",
        crate::logs::now(),
        why.replace(['\n', '\r'], " ")
    );
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .open(t.file("status"))
    {
        let _ = f.write_all(line.as_bytes());
    }
    let deadline = Instant::now() + t.grace;
    if t.has_pre_stop {
        let script = t.pod_dir.join(crate::script::JOB_SCRIPT);
        if let Ok(job) = crate::process::spawn_with(
            &t.bash,
            &script,
            &["prestop", &t.container],
            &t.pod_dir,
            &t.file("hooks.log"),
        ) {
            let _ = crate::process::wait_until(job, deadline, Duration::from_millis(50)).await;
        }
    }
    let Some(pid) = std::fs::read_to_string(t.file("pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    let still = |t: &Target| matches!(t.instance(), Some((n, true)) if n == instance);
    crate::process::signal_group(pid, false);
    while Instant::now() < deadline && still(t) {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    if still(t) {
        crate::process::signal_group(pid, true);
    }
}

/// The task of one probed container: for each instance, startup (gating), then readiness and
/// liveness on their own schedules, until the pod is deleted.
pub async fn watch(t: Target, verdicts: std::sync::Arc<Verdicts>) {
    let find = |k: ProbeKind| t.probes.iter().find(|p| p.kind == k).cloned();
    let (startup, readiness, liveness) = (
        find(ProbeKind::Startup),
        find(ProbeKind::Readiness),
        find(ProbeKind::Liveness),
    );
    let verdict_file = t.file("probe");
    // What an earlier daemon concluded about the running instance still holds.
    let mut verdict: Verdict = std::fs::read(&verdict_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let poll = t.second.min(Duration::from_millis(500));
    loop {
        // Wait for a running instance.
        let (instance, started_at) = loop {
            match t.instance() {
                None => {
                    verdicts.forget_pod(&t.uid);
                    return;
                }
                Some((n, true)) => break (n, Instant::now()),
                Some(_) => {
                    smol::Timer::after(poll).await;
                }
            }
        };
        if verdict.instance != instance {
            verdict = Verdict {
                instance,
                started: startup.is_none(),
                ready: readiness.is_none() && startup.is_none(),
            };
        }
        verdicts.set(&t.uid, &t.container, verdict.clone(), &verdict_file);
        let alive = |t: &Target| matches!(t.instance(), Some((n, true)) if n == instance);

        // Startup gates the others.
        if let (Some(p), false) = (&startup, verdict.started) {
            smol::Timer::after(t.secs(p.initial_delay)).await;
            let mut failures = 0;
            let mut next = Instant::now();
            while alive(&t) {
                smol::Timer::at(next).await;
                next += t.secs(p.period);
                match run_once(&t, p).await {
                    Ok(()) => {
                        verdict.started = true;
                        verdict.ready = readiness.is_none();
                        verdicts.set(&t.uid, &t.container, verdict.clone(), &verdict_file);
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= p.failure_threshold {
                            stop_instance(&t, instance, &format!("Startup probe failed: {e}"))
                                .await;
                            break;
                        }
                    }
                }
            }
            if !verdict.started {
                continue;
            }
        }

        // Readiness and liveness, each on its own schedule from the container's start.
        let start = started_at;
        let mut next_r = readiness.as_ref().map(|p| start + t.secs(p.initial_delay));
        let mut next_l = liveness.as_ref().map(|p| start + t.secs(p.initial_delay));
        let (mut r_ok, mut r_fail, mut l_fail) = (0u32, 0u32, 0u32);
        let mut check_alive = true;
        loop {
            if check_alive && !alive(&t) {
                break;
            }
            check_alive = false;
            let due = match (next_r, next_l) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => {
                    // Nothing to probe: just notice when this instance ends.
                    smol::Timer::after(poll).await;
                    check_alive = true;
                    continue;
                }
            };
            // Sleep until the next probe; a new instance is noticed when a probe is due (a
            // status-file read per probe, not per wake-up, keeps 200 probed pods cheap).
            let now = Instant::now();
            if due > now {
                smol::Timer::at(due).await;
                check_alive = true;
                continue;
            }
            if let (Some(p), Some(at)) = (&readiness, next_r) {
                if at <= now {
                    next_r = Some(at + t.secs(p.period));
                    match run_once(&t, p).await {
                        Ok(()) => {
                            r_ok += 1;
                            r_fail = 0;
                            if r_ok >= p.success_threshold && !verdict.ready {
                                verdict.ready = true;
                                verdicts.set(&t.uid, &t.container, verdict.clone(), &verdict_file);
                            }
                        }
                        Err(_) => {
                            r_fail += 1;
                            r_ok = 0;
                            if r_fail >= p.failure_threshold && verdict.ready {
                                verdict.ready = false;
                                verdicts.set(&t.uid, &t.container, verdict.clone(), &verdict_file);
                            }
                        }
                    }
                }
            }
            if let (Some(p), Some(at)) = (&liveness, next_l) {
                if at <= Instant::now() {
                    next_l = Some(at + t.secs(p.period));
                    match run_once(&t, p).await {
                        Ok(()) => l_fail = 0,
                        Err(e) => {
                            l_fail += 1;
                            if l_fail >= p.failure_threshold {
                                stop_instance(&t, instance, &format!("Liveness probe failed: {e}"))
                                    .await;
                                break;
                            }
                        }
                    }
                }
            }
        }
        if verdict.ready {
            verdict.ready = false;
            verdicts.set(&t.uid, &t.container, verdict.clone(), &verdict_file);
        }
    }
}
