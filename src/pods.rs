//! The operations interLink asks for — create, status, delete, logs — on the node's pods. Ties
//! together validation (`pod`), rendering (`script`), processes (`process`), the registry
//! (`state`) and status reading (`status`); owns the pod directory's creation and removal.

use crate::api::{CreateResponse, LogRequest, PhaseCounts, PodRef, PodStatusOut};
use crate::config::Config;
use crate::error::ApiError;
use crate::plan::PodPlan;
use crate::pod::{self, PlanDefaults};
use crate::process;
use crate::script::{self, ScriptContext};
use crate::state::{self, ContainerRecord, PodRecord, Registry};
use crate::status;
use crate::volumes;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything a request handler needs: built once in `main`, shared read-only.
pub struct Node {
    pub cfg: Config,
    pub registry: Registry,
    /// What the probes concluded, read by the status path.
    pub verdicts: Arc<crate::probes::Verdicts>,
    /// Where probe tasks run.
    pub executor: Arc<smol::Executor<'static>>,
}

/// Starts the probe tasks of a pod's probed containers (when the node runs probes).
pub fn start_probes(node: &Node, rec: &PodRecord) {
    if !node.cfg.enable_probes {
        return;
    }
    for c in rec
        .init_containers
        .iter()
        .chain(&rec.containers)
        .filter(|c| !c.probes.is_empty())
    {
        let target = crate::probes::Target {
            uid: rec.uid.clone(),
            pod_key: rec.key(),
            container: c.name.clone(),
            pod_dir: node.registry.pod_dir(&rec.namespace, &rec.uid),
            bash: node.cfg.bash.clone(),
            probes: c.probes.clone(),
            has_pre_stop: c.pre_stop,
            grace: Duration::from_secs(rec.grace_seconds.min(node.cfg.max_grace_seconds)),
            second: Duration::from_millis(node.cfg.probe_second_ms),
            seen: Default::default(),
        };
        let saved = target
            .pod_dir
            .join(script::container_dir(&c.name))
            .join("probe");
        node.verdicts.load(&rec.uid, &c.name, &saved);
        node.executor
            .spawn(crate::probes::watch(target, node.verdicts.clone()))
            .detach();
    }
}

/// `POST /create`: writes the pod's files, starts its job and answers with the job id. A
/// second create of a known UID answers the same id and starts nothing.
pub async fn create(node: &Arc<Node>, body: &[u8]) -> Result<CreateResponse, ApiError> {
    let data = pod::parse_create(body)?;
    let plan = pod::plan(
        &data,
        &PlanDefaults {
            image_prefix: &node.cfg.image_prefix,
            default_grace_seconds: 30,
            export_pod_data: node.cfg.export_pod_data,
            enable_pre_exec: node.cfg.enable_pre_exec,
        },
    )?;
    let deleted = || {
        ApiError::Conflict(format!(
            "pod {}: uid {} was deleted on this node already; not starting it again",
            plan.key(),
            plan.uid
        ))
    };
    if node.registry.was_deleted(&plan.uid) {
        return Err(deleted());
    }
    let entry = node.registry.entry(&plan.uid);
    let _op = entry.op.lock().await;
    if let Some(rec) = entry.record() {
        tracing::info!(pod = %rec.key(), jid = %rec.jid(), "create of a known pod: nothing started");
        return Ok(CreateResponse {
            pod_uid: rec.uid.clone(),
            pod_jid: rec.jid(),
        });
    }
    if node.registry.was_deleted(&plan.uid) {
        return Err(deleted());
    }
    let dir = node.registry.pod_dir(&plan.namespace, &plan.uid);
    let key = plan.key();
    let n = node.clone();
    let rec = smol::unblock(move || start(&n.cfg, &dir, &plan))
        .await
        .map_err(|e| {
            match &e {
                ApiError::Internal(_) => tracing::error!(pod = %key, "create failed: {e}"),
                _ => tracing::warn!(pod = %key, "create refused: {e}"),
            }
            e
        })?;
    tracing::info!(pod = %rec.key(), uid = %rec.uid, jid = %rec.jid(), "pod started");
    let resp = CreateResponse {
        pod_uid: rec.uid.clone(),
        pod_jid: rec.jid(),
    };
    start_probes(node, &rec);
    entry.set_record(Some(Arc::new(rec)));
    Ok(resp)
}

/// Writes the pod directory and starts job.sh; on failure removes what it wrote.
fn start(cfg: &Config, dir: &Path, plan: &PodPlan) -> Result<PodRecord, ApiError> {
    let outside = volumes::outside_dirs(dir, plan, cfg.shm_dir.as_deref());
    let result = write_and_spawn(cfg, dir, plan, &outside);
    if result.is_err() {
        let _ = fs::remove_dir_all(dir);
        for d in &outside {
            let _ = fs::remove_dir_all(d);
        }
    }
    result
}

fn write_and_spawn(
    cfg: &Config,
    dir: &Path,
    plan: &PodPlan,
    outside: &[PathBuf],
) -> Result<PodRecord, ApiError> {
    let internal =
        |e: io::Error| ApiError::Internal(format!("pod {}: could not start: {e}", plan.key()));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.data_root)
        .map_err(internal)?;
    // The pod directory holds env values and secrets: the plugin's user only.
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(internal)?;
    crate::volume_files::materialize(dir, plan, cfg.shm_dir.as_deref()).map_err(|e| match e {
        crate::volume_files::VolumeError::Refused(m) => ApiError::BadRequest(m),
        crate::volume_files::VolumeError::Io(m) => ApiError::Internal(format!(
            "pod {}: could not write its volumes: {m}",
            plan.key()
        )),
    })?;
    let ctx = ScriptContext {
        pod_dir: dir,
        apptainer: &cfg.apptainer,
        default_options: &cfg.default_options,
        log_writer: &cfg.log_writer,
        setsid: &cfg.setsid,
        backoff: cfg.backoff,
        shm: cfg.shm_dir.as_deref(),
        tsocks: cfg
            .tsocks
            .as_ref()
            .map(|t| (t.library.as_path(), t.login_node.as_str())),
    };
    for c in plan.init_containers.iter().chain(&plan.containers) {
        // Each container's own /tmp, so that hooks and probes can later see what it wrote there.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join(script::tmp_dir(&c.name)))
            .map_err(internal)?;
        write_file(&dir.join(script::termination_log(&c.name)), b"", 0o600).map_err(internal)?;
        write_file(
            &dir.join(script::env_file(&c.name)),
            script::render_env_file(&c.env).as_bytes(),
            0o600,
        )
        .map_err(internal)?;
    }
    if let Some(snippet) = &plan.pre_exec {
        write_file(&dir.join(script::PRE_EXEC), snippet.as_bytes(), 0o700).map_err(internal)?;
    }
    let job = dir.join(script::JOB_SCRIPT);
    write_file(&job, script::render_job(&ctx, plan).as_bytes(), 0o700).map_err(internal)?;
    let records = |list: &[crate::plan::ContainerPlan]| {
        list.iter()
            .map(|c| ContainerRecord {
                name: c.name.clone(),
                image: c.image.clone(),
                notes: volumes::unenforced(plan, c),
                pre_stop: c.pre_stop.is_some(),
                probes: c.probes.clone(),
                fallback_to_logs: c.fallback_to_logs,
            })
            .collect()
    };
    let spawned =
        process::spawn(&cfg.bash, &job, dir, &dir.join(script::JOB_LOG)).map_err(internal)?;
    let rec = PodRecord {
        uid: plan.uid.clone(),
        namespace: plan.namespace.clone(),
        name: plan.name.clone(),
        pid: spawned.pid,
        start_ticks: spawned.start_ticks,
        grace_seconds: plan.grace_seconds,
        init_containers: records(&plan.init_containers),
        containers: records(&plan.containers),
        outside_dirs: outside.to_vec(),
    };
    if let Err(e) = state::write_record(dir, &rec) {
        // Without a record a restarted daemon could not find the pod: do not leave it running.
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(spawned.pid).expect("spawned pid is positive"),
            rustix::process::Signal::KILL,
        );
        process::reap(spawned.pid);
        return Err(internal(e));
    }
    Ok(rec)
}

/// Creates (or replaces) a file with exactly `mode`, whatever the umask.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// Parses the pod array of `/status` and `/delete` bodies.
fn parse_pods(what: &str, body: &[u8]) -> Result<Vec<PodRef>, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| pod::json_error(what, e))
}

/// `GET /status` with a non-empty pod list. Unknown pods are left out (a create in flight, or
/// a pod deleted here): never reported as terminated.
pub fn status(node: &Node, pods: &[PodRef]) -> Result<Vec<PodStatusOut>, ApiError> {
    let mut out = Vec::with_capacity(pods.len());
    for (i, p) in pods.iter().enumerate() {
        let uid = p
            .metadata
            .uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "status: pod [{i}] ({}) has no metadata.uid",
                    p.metadata.name.as_deref().unwrap_or("?")
                ))
            })?;
        if let Some(rec) = node.registry.get(uid) {
            out.push(status_of(node, &rec));
        }
    }
    Ok(out)
}

fn status_of(node: &Node, rec: &PodRecord) -> PodStatusOut {
    let dir = node.registry.pod_dir(&rec.namespace, &rec.uid);
    let mut st = status::pod_status(&dir, rec, process::is_alive(&rec.job()));
    if node.cfg.enable_probes {
        // A probed running container is started and ready only as its probes say.
        let probed = rec
            .init_containers
            .iter()
            .chain(&rec.containers)
            .filter(|c| !c.probes.is_empty());
        for c in probed {
            let Some(cs) = st
                .init_containers
                .iter_mut()
                .chain(st.containers.iter_mut())
                .find(|s| s.name == c.name)
            else {
                continue;
            };
            if cs.state.as_ref().is_some_and(|s| s.running.is_some()) {
                let v = node.verdicts.get(&rec.uid, &c.name).unwrap_or_default();
                let current = v.instance == cs.restart_count as usize + 1;
                cs.started = Some(current && v.started);
                cs.ready = current && v.started && v.ready;
            }
        }
    }
    st
}

/// Whether a `/status` body is the ping (`[]`), answered without touching any pod.
pub fn parse_status_body(body: &[u8]) -> Result<Vec<PodRef>, ApiError> {
    parse_pods("status", body)
}

/// `POST /delete`: stops every process of the pod (SIGTERM, grace, SIGKILL) and removes its
/// directory. Unknown pods are fine: delete is idempotent.
pub async fn delete(node: &Arc<Node>, body: &[u8]) -> Result<String, ApiError> {
    // The contract sends one pod; an array is accepted like create's 0.4 form.
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| body[i]);
    let pods = if trimmed == Some(b'[') {
        parse_pods("delete", body)?
    } else {
        let de = &mut serde_json::Deserializer::from_slice(body);
        vec![serde_path_to_error::deserialize(de).map_err(|e| pod::json_error("delete", e))?]
    };
    let mut said = Vec::new();
    for p in &pods {
        said.push(delete_one(node, p).await?);
    }
    Ok(said.join("\n"))
}

async fn delete_one(node: &Arc<Node>, p: &PodRef) -> Result<String, ApiError> {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let uid = p
        .metadata
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("delete: pod {name:?} has no metadata.uid")))?;
    let entry = node.registry.entry(uid);
    let _op = entry.op.lock().await;
    let Some(rec) = entry.record() else {
        node.registry.forget(uid);
        return Ok(format!(
            "pod {name} (uid {uid}) is not known here; nothing to delete"
        ));
    };
    // kubectl delete --grace-period arrives as deletionGracePeriodSeconds.
    let asked = p
        .metadata
        .deletion_grace_period_seconds
        .or(p
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .map(|g| g.max(0) as u64)
        .unwrap_or(rec.grace_seconds);
    let grace = Duration::from_secs(asked.min(node.cfg.max_grace_seconds));
    // preStop hooks run first; their time counts against the grace period.
    let deadline = std::time::Instant::now() + grace;
    let poll = Duration::from_millis(node.cfg.kill_poll_ms);
    run_pre_stops(node, &rec, deadline, poll).await;
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let outcome = process::terminate(rec.job(), left, poll).await;
    let dir = node.registry.pod_dir(&rec.namespace, &rec.uid);
    let outside = rec.outside_dirs.clone();
    let removed = smol::unblock(move || {
        outside.iter().try_for_each(|d| remove_pod_dir(d))?;
        remove_pod_dir(&dir)
    })
    .await;
    entry.set_record(None);
    node.registry.forget(uid);
    tracing::info!(pod = %rec.key(), uid, killed = outcome.killed, left = outcome.left, "pod deleted");
    if let Err(e) = removed {
        tracing::error!(pod = %rec.key(), "could not remove the pod directory: {e}");
        return Err(ApiError::Internal(format!(
            "pod {}: stopped, but its directory could not be removed: {e}",
            rec.key()
        )));
    }
    Ok(match (outcome.killed, outcome.left) {
        (_, n) if n > 0 => format!(
            "pod {} deleted; {n} process(es) did not die after SIGKILL",
            rec.key()
        ),
        (true, _) => format!(
            "pod {} deleted (killed after the {}s grace period)",
            rec.key(),
            grace.as_secs()
        ),
        (false, _) => format!("pod {} deleted", rec.key()),
    })
}

/// Runs `job.sh prestop NAME` for every running container that has a preStop hook, all at
/// once, until they end or the deadline (then they are killed).
async fn run_pre_stops(node: &Node, rec: &PodRecord, deadline: std::time::Instant, poll: Duration) {
    if !process::is_alive(&rec.job()) {
        return;
    }
    let dir = node.registry.pod_dir(&rec.namespace, &rec.uid);
    let running = |name: &str| {
        std::fs::read_to_string(dir.join(script::status_file(name)))
            .map(|t| {
                status::parse_status(&t)
                    .last()
                    .is_some_and(|i| i.exit.is_none())
            })
            .unwrap_or(false)
    };
    let mut hooks = Vec::new();
    for c in rec
        .init_containers
        .iter()
        .chain(&rec.containers)
        .filter(|c| c.pre_stop && running(&c.name))
    {
        match process::spawn_with(
            &node.cfg.bash,
            &dir.join(script::JOB_SCRIPT),
            &["prestop", &c.name],
            &dir,
            &dir.join(script::JOB_LOG),
        ) {
            Ok(job) => hooks.push(job),
            Err(e) => {
                tracing::warn!(pod = %rec.key(), container = %c.name, "preStop hook not started: {e}")
            }
        }
    }
    for job in hooks {
        if process::wait_until(job, deadline, poll).await.is_none() {
            tracing::warn!(pod = %rec.key(), "a preStop hook was still running at the end of the grace period");
        }
    }
}

fn remove_pod_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `GET /getLogs`: the answer as a stream, after checking the pod, the container and the
/// options. `peer` is the client connection, watched while following.
pub fn logs(
    node: &Node,
    req: &LogRequest,
    peer: Option<std::os::fd::OwnedFd>,
) -> Result<impl smol::stream::Stream<Item = io::Result<Vec<u8>>> + Send + Sync + 'static, ApiError>
{
    let rec = node.registry.get(&req.pod_uid).ok_or_else(|| {
        ApiError::NotFound(format!(
            "pod {}/{} (uid {}) is not known on this node",
            req.namespace, req.pod_name, req.pod_uid
        ))
    })?;
    let name = req.container_name.clone();
    let known = rec
        .init_containers
        .iter()
        .chain(&rec.containers)
        .any(|c| c.name == name);
    if !known {
        return Err(ApiError::NotFound(format!(
            "pod {} has no container {name:?}",
            rec.key()
        )));
    }
    let q = crate::logs::query(&req.opts, crate::logs::now()).map_err(ApiError::BadRequest)?;
    let pod_dir = node.registry.pod_dir(&rec.namespace, &rec.uid);
    let dir = pod_dir.join(script::container_dir(&name));
    let (log, index) = crate::logs::files(&dir, q.previous);
    if q.previous && !log.exists() {
        return Err(ApiError::BadRequest(format!(
            "previous terminated container {name:?} in pod {} not found",
            rec.key()
        )));
    }
    let open = Box::new(move || crate::logs::Reader::open(&log, &index, &q));
    // A previous instance has ended: following it just reads it.
    let follow = (q.follow && !q.previous).then(|| {
        let job = rec.job();
        let status_file = pod_dir.join(script::status_file(&name));
        crate::follow::FollowCtx {
            dir: dir.clone(),
            ended: Box::new(move || {
                // No status yet means not started yet: only a dead job ends that wait.
                let runs = std::fs::read_to_string(&status_file).map(|t| status::parse_status(&t));
                let exited = runs.is_ok_and(|r| r.last().is_some_and(|i| i.exit.is_some()));
                exited || !process::is_alive(&job)
            }),
            peer,
            recheck: Duration::from_secs(1),
        }
    });
    Ok(crate::follow::stream(open, follow))
}

/// Pod counts by phase, computed as the Virtual Kubelet does from container states.
pub fn phase_counts(node: &Node) -> PhaseCounts {
    let mut counts = PhaseCounts::default();
    for rec in node.registry.all() {
        let st = status_of(node, &rec);
        let states: Vec<_> = st
            .init_containers
            .iter()
            .chain(&st.containers)
            .filter_map(|c| c.state.as_ref())
            .collect();
        counts.total += 1;
        if states.iter().any(|s| s.running.is_some()) {
            counts.running += 1;
        } else if st
            .containers
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        {
            let ok = states
                .iter()
                .all(|s| s.terminated.as_ref().is_some_and(|t| t.exit_code == 0));
            if ok {
                counts.succeeded += 1;
            } else {
                counts.failed += 1;
            }
        } else {
            counts.pending += 1;
        }
    }
    counts
}

/// Collects finished jobs that nobody asked about, so no zombie waits for the next status.
pub async fn reap_forever(node: Arc<Node>) {
    loop {
        smol::Timer::after(Duration::from_millis(node.cfg.reap_interval_ms)).await;
        for rec in node.registry.all() {
            process::reap(rec.pid);
        }
    }
}
