//! Processes of pods: spawning job.sh in its own process group, liveness with a guard against
//! PID reuse, reaping, and termination of every process a pod started (also those that left
//! its group). The only user of `rustix::process` and of `/proc`; knows nothing of pods.

use rustix::process::{kill_process, kill_process_group, waitpid, Pid, Signal, WaitOptions};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running job: its PID (also its process group id) and the kernel's start time of that
/// PID, which tells our process apart from a later one that reuses the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub pid: i32,
    pub start_ticks: u64,
}

/// Starts `bash script` in `dir` as the leader of a new process group, with stdin from
/// /dev/null and its own output appended to `log`.
pub fn spawn(bash: &Path, script: &Path, dir: &Path, log: &Path) -> io::Result<Job> {
    spawn_with(bash, script, &[], dir, log)
}

/// `spawn` with arguments after the script.
pub fn spawn_with(
    bash: &Path,
    script: &Path,
    args: &[&str],
    dir: &Path,
    log: &Path,
) -> io::Result<Job> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let child = Command::new(bash)
        .arg(script)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own group: deleting the pod signals the group, and a signal aimed at the daemon's
        // group (a batch system stopping it) does not reach the pods.
        .process_group(0)
        .spawn()?;
    let pid = child.id() as i32;
    // Dropping `child` neither waits nor kills; `reap` collects it later.
    drop(child);
    let start_ticks = stat(pid).map(|s| s.start_ticks).ok_or_else(|| {
        io::Error::other(format!("process {pid} vanished right after it was started"))
    })?;
    Ok(Job { pid, start_ticks })
}

/// What /proc says about one process.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: u8,
    ppid: i32,
    pgid: i32,
    start_ticks: u64,
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name (field 2) may contain blanks and parentheses: split after its last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some(Stat {
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Collects the exit status of `pid` if it is our child and has ended, so that it does not
/// linger as a zombie (which would still pass `kill -0`). Harmless for any other PID.
pub fn reap(pid: i32) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = waitpid(Some(p), WaitOptions::NOHANG);
    }
}

/// Whether the job's leader still runs: same PID, same start time, not a zombie.
pub fn is_alive(job: &Job) -> bool {
    reap(job.pid);
    matches!(stat(job.pid), Some(s) if s.state != b'Z' && s.start_ticks == job.start_ticks)
}

/// Every live process that belongs to the job: its process group, the descendants of its
/// leader, and the descendants of anything already `known` (orphans that escaped into their
/// own session are re-parented, so what was seen once stays tracked by PID and start time).
fn members(job: &Job, known: &HashMap<i32, u64>) -> HashMap<i32, u64> {
    // A failed read of /proc (out of file descriptors, say) must not pass for "all gone".
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return known.clone();
    };
    let mut found: HashMap<i32, u64> = HashMap::new();
    let mut all: Vec<(i32, Stat)> = Vec::new();
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(text) => all.extend(
                parse_stat(&text)
                    .filter(|s| s.state != b'Z')
                    .map(|s| (pid, s)),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) => {}
            Err(_) => {
                if let Some(&ticks) = known.get(&pid) {
                    found.insert(pid, ticks);
                }
            }
        }
    }
    let group_ours = group_is_ours(job);
    for (pid, s) in &all {
        let seen_before = known.get(pid) == Some(&s.start_ticks);
        if seen_before || (group_ours && s.pgid == job.pid) {
            found.insert(*pid, s.start_ticks);
        }
    }
    // Add children of members until nothing changes; process trees here are shallow.
    loop {
        let before = found.len();
        for (pid, s) in &all {
            if !found.contains_key(pid) && found.contains_key(&s.ppid) {
                found.insert(*pid, s.start_ticks);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// The group id is the leader's PID; once the leader is gone that number may be reused, and
/// then the group with that id is someone else's.
fn group_is_ours(job: &Job) -> bool {
    stat(job.pid).is_none_or(|s| s.start_ticks == job.start_ticks)
}

fn signal_all(job: &Job, procs: &HashMap<i32, u64>, sig: Signal) {
    if group_is_ours(job) {
        if let Some(group) = Pid::from_raw(job.pid) {
            let _ = kill_process_group(group, sig);
        }
    }
    for (&pid, &ticks) in procs {
        // Re-check the start time right before the signal: never hit a reused PID.
        if stat(pid).is_some_and(|s| s.start_ticks == ticks && s.pgid != job.pid) {
            if let Some(p) = Pid::from_raw(pid) {
                let _ = kill_process(p, sig);
            }
        }
    }
}

/// Waits for a child job until `deadline`, then kills its whole group. Returns its exit code
/// (128+N for a signal), or None when it had to be killed.
pub async fn wait_until(job: Job, deadline: Instant, poll: Duration) -> Option<i32> {
    let mut wait = Duration::from_millis(2).min(poll);
    loop {
        if let Some(code) = try_wait(job.pid) {
            return Some(code);
        }
        if !matches!(stat(job.pid), Some(s) if s.state != b'Z' && s.start_ticks == job.start_ticks)
        {
            // Not (or no longer) our child to wait for.
            return Some(0);
        }
        if Instant::now() >= deadline {
            break;
        }
        smol::Timer::after(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        wait = (wait * 2).min(poll);
    }
    if group_is_ours(&job) {
        if let Some(g) = Pid::from_raw(job.pid) {
            let _ = kill_process_group(g, Signal::KILL);
        }
    }
    reap(job.pid);
    None
}

/// The exit code of a child that has ended (128+N when a signal N ended it), reaping it.
fn try_wait(pid: i32) -> Option<i32> {
    let p = Pid::from_raw(pid)?;
    match waitpid(Some(p), WaitOptions::NOHANG) {
        Ok(Some((_, st))) => st
            .exit_status()
            .or_else(|| st.terminating_signal().map(|s| 128 + s)),
        _ => None,
    }
}

/// SIGTERM (or SIGKILL) to the process group led by `pid`, if that group exists.
pub fn signal_group(pid: i32, kill: bool) {
    if let Some(g) = Pid::from_raw(pid) {
        let _ = kill_process_group(g, if kill { Signal::KILL } else { Signal::TERM });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminated {
    /// SIGKILL was needed after the grace period.
    pub killed: bool,
    /// Processes still present when we stopped waiting (normally zero).
    pub left: usize,
}

/// SIGTERM to every process of the job, up to `grace` for them to end, then SIGKILL to what is
/// left; returns once none is left (or a few seconds after SIGKILL if the kernel is slow).
pub async fn terminate(job: Job, grace: Duration, poll: Duration) -> Terminated {
    let scan = move |known: HashMap<i32, u64>| {
        smol::unblock(move || {
            reap(job.pid);
            members(&job, &known)
        })
    };
    let mut procs = scan(HashMap::new()).await;
    if procs.is_empty() {
        return Terminated {
            killed: false,
            left: 0,
        };
    }
    signal_all(&job, &procs, Signal::TERM);
    let deadline = Instant::now() + grace;
    // Most pods stop within milliseconds of SIGTERM: look early, then every `poll`.
    let mut wait = Duration::from_millis(5).min(poll);
    while Instant::now() < deadline {
        smol::Timer::after(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        wait = (wait * 2).min(poll);
        procs = scan(procs).await;
        if procs.is_empty() {
            return Terminated {
                killed: false,
                left: 0,
            };
        }
    }
    signal_all(&job, &procs, Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        smol::Timer::after(poll.min(Duration::from_millis(20))).await;
        procs = scan(procs).await;
        if procs.is_empty() || Instant::now() >= deadline {
            return Terminated {
                killed: true,
                left: procs.len(),
            };
        }
        // Anything forked between the two signals gets the same treatment.
        signal_all(&job, &procs, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        let line =
            "1234 (we ird) (x)) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.pgid, s.start_ticks),
            (b'S', 1, 1234, 98765)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let ticks = stat(me).unwrap().start_ticks;
        assert!(is_alive(&Job {
            pid: me,
            start_ticks: ticks
        }));
        assert!(!is_alive(&Job {
            pid: me,
            start_ticks: ticks + 1
        }));
    }
}
