//! Tests of the fake `apptainer` in `fixtures/apptainer`, the stand-in the rest of the suite
//! runs pods with. They pin down its CLI strictness (messages, exit codes 1 and 255), the
//! byte-exact delivery of arguments and environment, working directory, binds, runscript
//! semantics, exit-status/signal propagation and the FAKE_APPTAINER_RECORD argv hook.
//!
//! With `bwrap` (package bubblewrap) in PATH the fake runs the command in a bubblewrap sandbox
//! with real mounts: the host filesystem read-only as the image, /tmp, /var/tmp and $HOME from
//! the host (private with --contain/--containall/--no-home), and the --bind list. The
//! "sandbox" tests check those mounts; without bwrap they say so on stderr and return.
//! FAKE_APPTAINER_NO_BWRAP=1 gives the old behaviour (the command runs on the host).
//! Everything goes through `std::process::Command`; no extra crates.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Strings that break anything that goes through a shell or a quoting layer.
const NASTY: &[&str] = &[
    "plain",
    "",
    " leading and trailing space ",
    "it's",
    "'\\''",
    "\"double\" quotes",
    "$HOME",
    "${HOME}",
    "`id`",
    "$(id)",
    "line1\nline2",
    "trailing newline\n",
    "\ttab\r",
    "back\\slash \\n",
    "emoji 😀 and ünïcödé",
    "-n",
    "--pwd",
    "-e",
    "--",
    "a=b=c",
    "*",
    "%s %d %%",
    "!bang ; & | < > ( ) { } #",
];

fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("apptainer")
}

/// A `Command` for the fake, with a predictable environment for the test-only variables.
/// It sandboxes the command when bwrap is installed.
fn cmd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(fake());
    c.args(args)
        .env_remove("FAKE_APPTAINER_RECORD")
        .env_remove("FAKE_APPTAINER_NO_BWRAP")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("APPTAINERENV_") || k.starts_with("SINGULARITYENV_") {
            c.env_remove(k);
        }
    }
    c
}

/// Like `cmd`, but the fake runs the command on the host, without a sandbox.
fn host_cmd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = cmd(args);
    c.env("FAKE_APPTAINER_NO_BWRAP", "1");
    c
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    cmd(args).output().expect("spawn fixtures/apptainer")
}

/// Whether `bwrap` is in PATH, i.e. whether `cmd` sandboxes the command.
fn bwrap_available() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            fs::metadata(d.join("bwrap"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// For the tests of the sandbox: true (after saying why on stderr) when bwrap is missing.
/// Written to the stderr file itself, which libtest does not capture: the skip shows in a
/// plain `cargo test` run instead of passing silently.
fn skip_without_bwrap(test: &str) -> bool {
    if bwrap_available() {
        return false;
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: bwrap (Debian package bubblewrap) is not in PATH, so the fake runs \
         commands on the host without real mounts; install bubblewrap to run this test"
    );
    true
}

/// `exec [options...] docker://alpine sh -c script` in the sandbox.
fn sh_in(options: &[&str], script: &str) -> Output {
    let mut args: Vec<&str> = vec!["exec"];
    args.extend_from_slice(options);
    args.extend(["docker://alpine", "sh", "-c", script]);
    run(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn assert_fails(o: &Output, code: i32, message: &str) {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
    assert!(
        stderr(o).contains(message),
        "expected {message:?} in stderr, got {:?}",
        stderr(o)
    );
    assert!(o.stdout.is_empty(), "unexpected stdout: {:?}", stdout(o));
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}, stderr: {}",
        o.status,
        stderr(o)
    );
    assert!(o.stderr.is_empty(), "unexpected stderr: {}", stderr(o));
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        TempDir::under(&std::env::temp_dir(), tag)
    }

    /// A fresh directory in `base` (e.g. /tmp itself, whatever TMPDIR says).
    fn under(base: &Path, tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = base.join(format!(
            "fake-apptainer-test-{}-{}-{}",
            std::process::id(),
            tag,
            n
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }

    fn file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, content).expect("write temp file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Single-quote `s` for a POSIX shell: `'` becomes `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Parses `env -0` output.
fn parse_env0(bytes: &[u8]) -> HashMap<String, String> {
    bytes
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8(e.to_vec()).expect("utf-8 env entry");
            let (k, v) = e.split_once('=').expect("NAME=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What `printf '%s\0' args...` prints.
fn nul_joined<S: AsRef<str>>(args: &[S]) -> Vec<u8> {
    let mut v = Vec::new();
    for a in args {
        v.extend_from_slice(a.as_ref().as_bytes());
        v.push(0);
    }
    v
}

// ------------------------------------------------------------------ CLI

#[test]
fn version_subcommand_and_flag() {
    let o = run(&["version"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "1.3.6-fake\n");

    let o = run(&["--version"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "apptainer version 1.3.6-fake\n");

    // Global options are accepted before the subcommand.
    let o = run(&["-q", "--silent", "-d", "--verbose", "version"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "1.3.6-fake\n");
}

#[test]
fn unknown_command_exits_1() {
    let o = run(&["frobnicate", "docker://alpine"]);
    assert_fails(
        &o,
        1,
        "Error: unknown command \"frobnicate\" for \"apptainer\"",
    );
}

#[test]
fn unknown_flags_exit_1_naming_the_subcommand() {
    let o = run(&["exec", "--xyz", "docker://alpine", "true"]);
    assert_fails(&o, 1, "Error for command \"exec\": unknown flag: --xyz");

    let o = run(&["run", "--xyz=1", "docker://alpine"]);
    assert_fails(&o, 1, "Error for command \"run\": unknown flag: --xyz");

    let o = run(&["exec", "-x", "docker://alpine", "true"]);
    assert_fails(
        &o,
        1,
        "Error for command \"exec\": unknown shorthand flag: 'x' in -x",
    );

    let o = run(&["--xyz", "exec", "docker://alpine", "true"]);
    assert_fails(&o, 1, "unknown flag: --xyz");

    // A bool flag given a non-bool value.
    let o = run(&["exec", "--nv=maybe", "docker://alpine", "true"]);
    assert_fails(&o, 1, "invalid argument \"maybe\" for \"--nv\" flag");
}

#[test]
fn value_flag_without_value_exits_1() {
    let o = run(&["exec", "--pwd"]);
    assert_fails(
        &o,
        1,
        "Error for command \"exec\": flag needs an argument: --pwd",
    );

    let o = run(&["run", "-B"]);
    assert_fails(
        &o,
        1,
        "Error for command \"run\": flag needs an argument: 'B' in -B",
    );
}

#[test]
fn missing_positional_arguments_exit_1() {
    // Real apptainer: exec is cobra.MinimumNArgs(2), run is MinimumNArgs(1).
    let o = run(&["exec"]);
    assert_fails(
        &o,
        1,
        "Error for command \"exec\": requires at least 2 arg(s), only received 0",
    );

    let o = run(&["exec", "--cleanenv", "docker://alpine"]);
    assert_fails(
        &o,
        1,
        "Error for command \"exec\": requires at least 2 arg(s), only received 1",
    );

    let o = run(&["run", "--no-eval"]);
    assert_fails(
        &o,
        1,
        "Error for command \"run\": requires at least 1 arg(s), only received 0",
    );
}

/// Boolean flags of exec/run, with their shorthands, and some `=value` and cluster forms.
const BOOL_FLAGS: &str = "
    --no-eval --cleanenv -e --containall -C --contain -c --no-home --no-init --no-privs
    --nv --rocm --fakeroot -f --writable-tmpfs --compat --unsquash --userns -u --pid -p
    --ipc -i --net -n --no-https --writable -w --nv=false -e=true -ecCfupinw";

/// Value flags of exec/run as `flag value` pairs; DIR is replaced by an existing directory.
const VALUE_FLAGS: &str = "
    --bind DIR  -B DIR  --mount type=bind,src=/x,dst=/y  --env A=1  --env-file /dev/null
    --pwd DIR  --home DIR  -H DIR  --workdir DIR  -W DIR  --overlay DIR  -o DIR
    --scratch /s  -S /s  --security seccomp:x  --network none  --hostname h  --cpus 1.5
    --memory 1G  --memory-swap 2G  --apply-cgroups /c  --app a  --no-mount tmp  --dns 1.1.1.1";

#[test]
fn every_listed_flag_is_accepted_in_every_form() {
    let dir = TempDir::new("flags");
    let d = dir.path().to_str().unwrap();

    for flag in BOOL_FLAGS.split_whitespace() {
        assert_ok(&run(&["exec", flag, "docker://alpine", "true"]));
    }
    let values: Vec<&str> = VALUE_FLAGS.split_whitespace().collect();
    for pair in values.chunks(2) {
        let (flag, value) = (pair[0], pair[1].replace("DIR", d));
        // --flag value
        assert_ok(&run(&["exec", flag, &value, "docker://alpine", "true"]));
        // --flag=value, or -Xvalue for a shorthand
        let joined = if flag.starts_with("--") {
            format!("{flag}={value}")
        } else {
            format!("{flag}{value}")
        };
        assert_ok(&run(&["exec", &joined, "docker://alpine", "true"]));
    }
}

#[test]
fn option_parsing_stops_at_image_and_at_double_dash() {
    // After IMAGE everything is the command's, even words that look like options.
    let o = run(&[
        "exec",
        "docker://alpine",
        "printf",
        "%s\\0",
        "--pwd",
        "-B",
        "--",
        "-e",
    ]);
    assert_ok(&o);
    assert_eq!(o.stdout, nul_joined(&["--pwd", "-B", "--", "-e"]));

    // `--` ends the options; the next word is the image.
    let o = run(&["exec", "--cleanenv", "--", "docker://alpine", "printf", "x"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "x");

    // A value flag takes the next word even when it starts with '-'.
    let o = run(&[
        "exec",
        "--hostname",
        "-weird",
        "docker://alpine",
        "printf",
        "y",
    ]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "y");
}

// ------------------------------------------------------------------ images

#[test]
fn missing_image_file_is_fatal_255() {
    let dir = TempDir::new("noimg");
    let img = dir.path().join("missing.sif");
    let img = img.to_str().unwrap();
    let o = run(&["exec", img, "true"]);
    assert_fails(
        &o,
        255,
        &format!(
            "FATAL:   could not open image {img}: failed to retrieve path for {img}: \
             lstat {img}: no such file or directory"
        ),
    );

    // A bare docker reference is not a file either.
    let o = run(&["run", "python:3.11"]);
    assert_fails(&o, 255, "FATAL:   could not open image");
    assert!(stderr(&o).contains("lstat python:3.11: no such file or directory"));
}

#[test]
fn scheme_images_are_accepted() {
    for img in [
        "docker://alpine:3.19",
        "library://alpine",
        "oras://ghcr.io/x/y:1",
        "shub://x/y",
        "instance://web",
        "http://example.org/a.sif",
        "https://example.org/a.sif",
        "docker-archive:/tmp/a.tar",
        "oci-archive:/tmp/a.tar",
        "docker-daemon:alpine:latest",
    ] {
        let o = run(&["exec", img, "true"]);
        assert_ok(&o);
    }
}

#[test]
fn existing_file_and_directory_images_are_accepted() {
    let dir = TempDir::new("img");
    let sif = dir.file("image.sif", "not really a SIF", 0o644);
    let sandbox = dir.path().join("sandbox");
    fs::create_dir(&sandbox).unwrap();
    for img in [&sif, &sandbox] {
        let o = cmd(&["exec"])
            .arg(img)
            .args(["printf", "ok"])
            .output()
            .unwrap();
        assert_ok(&o);
        assert_eq!(stdout(&o), "ok");
    }
}

// ------------------------------------------------------------------ exec

#[test]
fn exec_passes_arguments_byte_exact() {
    let mut args = vec!["exec", "--no-eval", "docker://alpine", "printf", "%s\\0"];
    args.extend_from_slice(NASTY);
    let o = run(&args);
    assert_ok(&o);
    assert_eq!(o.stdout, nul_joined(NASTY));
}

#[test]
fn exec_keeps_pid_stdin_and_stdout_without_sandbox() {
    // On the host the fake execs the command: the PID the caller sees is the command's.
    let mut child = host_cmd(&["exec", "docker://alpine", "sh", "-c", "echo $$; cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from stdin\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("{pid}\nfrom stdin\n"));
}

#[test]
fn sandboxed_command_is_a_child_in_the_callers_process_group() {
    if skip_without_bwrap("sandboxed_command_is_a_child_in_the_callers_process_group") {
        return;
    }
    // The fake execs bwrap, whose process stays as the command's parent (like apptainer's
    // own): the command's parent is the PID the caller sees, its process group the caller's
    // (field 5 of /proc/PID/stat), and stdin/stdout are passed through.
    let mut child = cmd(&[
        "exec",
        "--containall",
        "docker://alpine",
        "sh",
        "-c",
        "echo $PPID; cut -d' ' -f5 /proc/$$/stat; cat",
    ])
    .process_group(0)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from stdin\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("{pid}\n{pid}\nfrom stdin\n"));
}

#[test]
fn exec_of_missing_command_is_fatal_255() {
    let o = run(&["exec", "docker://alpine", "no-such-command-xyz", "arg"]);
    assert_fails(
        &o,
        255,
        "FATAL:   \"no-such-command-xyz\": executable file not found in $PATH",
    );

    let o = run(&["exec", "docker://alpine", "/no/such/path/cmd"]);
    assert_fails(
        &o,
        255,
        "FATAL:   \"/no/such/path/cmd\": executable file not found in $PATH",
    );
}

#[test]
fn exit_status_is_propagated() {
    let mut sandboxed = vec![false];
    if !skip_without_bwrap("exit_status_is_propagated (sandboxed half)") {
        sandboxed.push(true);
    }
    for sandbox in sandboxed {
        let command = |args: &[&str]| if sandbox { cmd(args) } else { host_cmd(args) };
        let o = command(&["exec", "docker://alpine", "sh", "-c", "exit 0"])
            .output()
            .unwrap();
        assert_ok(&o);
        let o = command(&["exec", "docker://alpine", "sh", "-c", "exit 42"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(42), "sandbox={sandbox}");

        let o = command(&["exec", "docker://alpine", "sh", "-c", "kill -9 $$"])
            .output()
            .unwrap();
        if sandbox {
            // bwrap waits for the command and exits with 128+N for a signal N.
            assert_eq!(o.status.code(), Some(137), "status {:?}", o.status);
        } else {
            // The fake execs the command, so a SIGKILL is seen as such by the caller.
            assert_eq!(o.status.signal(), Some(9), "status {:?}", o.status);
        }

        // Either way a shell sees 128+9.
        let mut sh = Command::new("bash");
        sh.arg("-c")
            .arg(r#""$0" exec docker://alpine sh -c 'kill -9 $$'; echo "status=$?""#)
            .arg(fake())
            .env_remove("FAKE_APPTAINER_NO_BWRAP")
            .stdin(Stdio::null());
        if !sandbox {
            sh.env("FAKE_APPTAINER_NO_BWRAP", "1");
        }
        let o = sh.output().unwrap();
        assert_eq!(stdout(&o), "status=137\n", "sandbox={sandbox}");
    }
}

/// Sends `sig` to the process group `pgid`.
fn signal_group(pgid: u32, sig: &str) {
    let st = Command::new("bash")
        .arg("-c")
        .arg(format!("kill -{sig} -- -{pgid}"))
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} -- -{pgid}");
}

/// Runs `sh -c script` in the sandbox in a process group of its own, waits for its first
/// line ("ready"), sends SIGTERM to the whole group (as the plugin does) and returns the
/// exit status and the rest of the output.
fn term_group_after_ready(script: &str) -> (std::process::ExitStatus, String) {
    let mut child = cmd(&[
        "exec",
        "--containall",
        "docker://alpine",
        "sh",
        "-c",
        script,
    ])
    .process_group(0)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    signal_group(child.id(), "TERM");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    (child.wait().unwrap(), rest)
}

#[test]
fn sigterm_to_the_process_group_reaches_the_command() {
    if skip_without_bwrap("sigterm_to_the_process_group_reaches_the_command") {
        return;
    }
    // A command that traps TERM and takes its time: bwrap's process (the caller's child)
    // outlives the signal, waits for the command and returns its status. The loop is bounded
    // so that a lost signal fails the test instead of hanging it.
    let (status, rest) = term_group_after_ready(
        "trap 'sleep 0.3; echo got-term; exit 3' TERM; echo ready; \
         i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo no-signal; exit 9",
    );
    assert_eq!(status.code(), Some(3), "status {status:?}, output {rest:?}");
    assert_eq!(rest, "got-term\n");

    // A command with the default action dies of it: 128+15.
    let (status, rest) = term_group_after_ready("echo ready; exec sleep 20");
    assert_eq!(
        status.code(),
        Some(143),
        "status {status:?}, output {rest:?}"
    );
    assert_eq!(rest, "");
}

#[test]
fn signals_the_caller_ignores_stay_ignored() {
    if skip_without_bwrap("signals_the_caller_ignores_stay_ignored") {
        return;
    }
    // bwrap's process ignores HUP INT QUIT USR1 USR2 TERM; the command gets back the
    // caller's dispositions: default, but for HUP which the caller ignores (like nohup) and
    // whatever this test process itself ignores (e.g. INT and QUIT in a background job).
    let inherited = sig_ignored_mask(&fs::read_to_string("/proc/self/status").unwrap());
    let o = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' HUP; exec "$0" exec docker://alpine sh -c 'grep ^SigIgn: /proc/self/status'"#)
        .arg(fake())
        .env_remove("FAKE_APPTAINER_NO_BWRAP")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ok(&o);
    let mask = sig_ignored_mask(&stdout(&o));
    let bit = |mask: u64, sig: u32| mask >> (sig - 1) & 1 == 1;
    assert!(bit(mask, 1), "HUP must stay ignored: {mask:#x}");
    for sig in [2, 3, 10, 12, 15] {
        assert_eq!(
            bit(mask, sig),
            bit(inherited, sig),
            "signal {sig}: command's SigIgn {mask:#x}, test process's {inherited:#x}"
        );
    }
}

/// The SigIgn mask of a /proc/PID/status text.
fn sig_ignored_mask(status: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("SigIgn line");
    u64::from_str_radix(line.trim(), 16).unwrap()
}

// ------------------------------------------------------------------ environment

#[test]
fn env_file_with_single_quoted_values_is_byte_exact() {
    let dir = TempDir::new("envfile");
    let mut content = String::new();
    let mut expected = HashMap::new();
    for (i, v) in NASTY.iter().enumerate() {
        let name = format!("NASTY_{i}");
        content.push_str(&format!("{name}={}\n", sh_quote(v)));
        expected.insert(name, v.to_string());
    }
    let file = dir.file("pod.env", &content, 0o600);
    let file = file.to_str().unwrap();

    for clean in [true, false] {
        let mut args = vec!["exec", "--no-eval"];
        if clean {
            args.push("--cleanenv");
        }
        args.extend(["--env-file", file, "docker://alpine", "env", "-0"]);
        let o = run(&args);
        assert_ok(&o);
        let env = parse_env0(&o.stdout);
        for (k, v) in &expected {
            assert_eq!(env.get(k), Some(v), "variable {k} (cleanenv={clean})");
        }
    }

    // printenv sees the same bytes.
    let o = run(&[
        "exec",
        "--env-file",
        file,
        "docker://alpine",
        "printenv",
        "NASTY_10",
    ]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "line1\nline2\n");
}

#[test]
fn env_flag_value_is_byte_exact_and_overrides_env_file() {
    let dir = TempDir::new("envflag");
    let file = dir.file("a.env", "A='from file'\nB='file only'\n", 0o600);
    let o = cmd(&["exec", "--env-file"])
        .arg(&file)
        .args([
            "--env",
            "A=x=y==z",
            "--env=C=$HOME `id` 'q'",
            "--env",
            "EMPTY=",
        ])
        .args(["docker://alpine", "env", "-0"])
        .output()
        .unwrap();
    assert_ok(&o);
    let env = parse_env0(&o.stdout);
    assert_eq!(env["A"], "x=y==z");
    assert_eq!(env["B"], "file only");
    assert_eq!(env["C"], "$HOME `id` 'q'");
    assert_eq!(env["EMPTY"], "");

    let o = run(&["exec", "--env", "NOVALUE", "docker://alpine", "true"]);
    assert_fails(&o, 1, "NOVALUE must be formatted as key=value");
}

#[test]
fn host_environment_passes_unless_cleanenv() {
    let o = cmd(&["exec", "docker://alpine", "env", "-0"])
        .env("FAKE_TEST_HOST_VAR", "host value")
        .env("APPTAINERENV_FAKE_TEST_INJECTED", "injected")
        .output()
        .unwrap();
    assert_ok(&o);
    let env = parse_env0(&o.stdout);
    assert_eq!(
        env.get("FAKE_TEST_HOST_VAR").map(String::as_str),
        Some("host value")
    );
    assert_eq!(
        env.get("FAKE_TEST_INJECTED").map(String::as_str),
        Some("injected")
    );
    assert!(!env.contains_key("APPTAINERENV_FAKE_TEST_INJECTED"));

    for flag in ["--cleanenv", "-e", "--containall", "-C"] {
        let o = cmd(&["exec", flag, "docker://alpine", "env", "-0"])
            .env("FAKE_TEST_HOST_VAR", "host value")
            .env("APPTAINERENV_FAKE_TEST_INJECTED", "injected")
            .output()
            .unwrap();
        assert_ok(&o);
        let env = parse_env0(&o.stdout);
        assert!(
            !env.contains_key("FAKE_TEST_HOST_VAR"),
            "{flag} leaked a host variable"
        );
        assert_eq!(
            env.get("FAKE_TEST_INJECTED").map(String::as_str),
            Some("injected")
        );
        assert!(env.contains_key("PATH"), "{flag} must keep PATH");
    }
}

#[test]
fn missing_env_file_is_fatal_255() {
    let dir = TempDir::new("noenv");
    let file = dir.path().join("missing.env");
    let file = file.to_str().unwrap();
    let o = run(&["exec", "--env-file", file, "docker://alpine", "true"]);
    assert_fails(
        &o,
        255,
        &format!(
            "FATAL:   while processing env file {file}: open {file}: no such file or directory"
        ),
    );
}

// ------------------------------------------------------------------ --pwd and --bind

#[test]
fn pwd_sets_the_working_directory() {
    let dir = TempDir::new("pwd");
    let canonical = fs::canonicalize(dir.path()).unwrap();
    let o = cmd(&["exec", "--pwd"])
        .arg(dir.path())
        .args(["docker://alpine", "pwd", "-P"])
        .output()
        .unwrap();
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("{}\n", canonical.display()));

    let missing = dir.path().join("nope");
    let missing = missing.to_str().unwrap();
    let o = run(&["exec", "--pwd", missing, "docker://alpine", "pwd"]);
    assert_fails(
        &o,
        255,
        &format!("FATAL:   could not set working directory {missing}: no such file or directory"),
    );
}

#[test]
fn bind_sources_must_exist_and_options_must_be_valid() {
    let dir = TempDir::new("bind");
    let d = dir.path().to_str().unwrap();
    let f = dir.file("file.txt", "x", 0o644);
    let f = f.to_str().unwrap();

    let ok = format!("{d},{f}:/etc/x:ro,{d}:/data:rw");
    assert_ok(&run(&[
        "exec",
        "-B",
        &ok,
        "--bind",
        d,
        "docker://alpine",
        "true",
    ]));

    let missing = format!("{d}/missing");
    let o = run(&[
        "exec",
        "--bind",
        &format!("{d}:/ok,{missing}:/data:ro"),
        "docker://alpine",
        "true",
    ]);
    assert_fails(
        &o,
        255,
        &format!(
            "FATAL:   container creation failed: mount hook function failure: mount {missing}->/data \
             error: while mounting {missing}: mount source {missing} doesn't exist"
        ),
    );

    let o = run(&[
        "exec",
        "-B",
        &format!("{d}:/data:rx"),
        "docker://alpine",
        "true",
    ]);
    assert_fails(&o, 255, "FATAL:   ");
    assert!(
        stderr(&o).contains("\"rx\""),
        "bad option not named: {}",
        stderr(&o)
    );
}

// ------------------------------------------------------------------ sandbox (bwrap)

/// A name no host path uses, for destinations that must not exist on the host.
fn unique(tag: &str) -> String {
    format!("fake-apptainer-test-{}-{tag}", std::process::id())
}

/// `ls -A` of a host directory, as the sandbox's `ls -A` prints it (one name a line, sorted
/// like `LC_ALL=C ls`).
fn host_listing(dir: &Path, extra: &[&str]) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    names.sort();
    names.iter().map(|n| format!("{n}\n")).collect()
}

#[test]
fn sandbox_image_is_read_only() {
    if skip_without_bwrap("sandbox_image_is_read_only") {
        return;
    }
    // The host filesystem is the image, read-only like a SIF: existing directories, new
    // top-level entries and files alike.
    let name = unique("ro-probe");
    for path in [
        format!("/usr/{name}"),
        format!("/etc/{name}"),
        format!("/{name}"),
        "/etc/hostname".to_string(),
    ] {
        let o = sh_in(&[], &format!("echo x >> {path}"));
        assert_ne!(o.status.code(), Some(0), "writing {path} succeeded");
        assert!(
            stderr(&o).contains("Read-only file system"),
            "writing {path}: {}",
            stderr(&o)
        );
    }
    assert!(!Path::new("/usr").join(&name).exists());
    assert!(!Path::new("/etc").join(&name).exists());

    // What apptainer binds by default works: /dev, /proc, and /tmp is writable.
    let o = sh_in(
        &["--containall"],
        "echo x >/dev/null && test -r /proc/self/status && touch /tmp/x && echo fine",
    );
    assert_ok(&o);
    assert_eq!(stdout(&o), "fine\n");
}

#[test]
fn sandbox_rw_and_ro_binds() {
    if skip_without_bwrap("sandbox_rw_and_ro_binds") {
        return;
    }
    let dir = TempDir::new("rwbind");
    dir.file("in", "from host\n", 0o644);
    let data = format!("/{}", unique("data"));

    // rw (the default, or :rw): reads and writes reach the host directory.
    for spec in [
        format!("{}:{data}", dir.str()),
        format!("{}:{data}:rw", dir.str()),
    ] {
        let o = sh_in(
            &["--containall", "--bind", &spec],
            &format!("cat {data}/in; echo written > {data}/out"),
        );
        assert_ok(&o);
        assert_eq!(stdout(&o), "from host\n");
        assert_eq!(
            fs::read_to_string(dir.path().join("out")).unwrap(),
            "written\n"
        );
        fs::remove_file(dir.path().join("out")).unwrap();
    }
    assert!(!Path::new(&data).exists(), "{data} created on the host");

    // :ro: readable, not writable.
    let o = sh_in(
        &["--containall", "-B", &format!("{}:{data}:ro", dir.str())],
        &format!("cat {data}/in; echo changed > {data}/in; touch {data}/new"),
    );
    assert_eq!(stdout(&o), "from host\n");
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        stderr(&o).matches("Read-only file system").count(),
        2,
        "stderr: {}",
        stderr(&o)
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("in")).unwrap(),
        "from host\n"
    );
    assert!(!dir.path().join("new").exists());
}

#[test]
fn sandbox_file_and_directory_binds_show_exactly_that() {
    if skip_without_bwrap("sandbox_file_and_directory_binds_show_exactly_that") {
        return;
    }
    let dir = TempDir::new("filebind");
    let file = dir.file("config.yaml", "key: value\n", 0o644);
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a"), "A").unwrap();
    fs::write(tree.join("b"), "B").unwrap();
    let etc_dir = format!("/etc/{}", unique("app"));
    let opt_dir = format!("/opt/{}", unique("tree"));

    // A file at a destination that does not exist, below a directory that does not exist
    // either; a directory likewise.
    let o = sh_in(
        &[
            "--containall",
            "--bind",
            &format!("{}:{etc_dir}/config.yaml:ro", file.display()),
            "--bind",
            &format!("{}:{opt_dir}", tree.display()),
        ],
        &format!(
            "cat {etc_dir}/config.yaml; test -f {etc_dir}/config.yaml && echo is-file; \
             ls -A {etc_dir}; ls -A {opt_dir}"
        ),
    );
    assert_ok(&o);
    assert_eq!(stdout(&o), "key: value\nis-file\nconfig.yaml\na\nb\n");
    assert!(
        !Path::new(&etc_dir).exists(),
        "{etc_dir} created on the host"
    );
    assert!(
        !Path::new(&opt_dir).exists(),
        "{opt_dir} created on the host"
    );

    // A file over an existing one (through a symlink: /etc/os-release is one on Debian).
    for target in ["/etc/hostname", "/etc/os-release"] {
        if !Path::new(target).exists() {
            continue;
        }
        let before = fs::read(target).unwrap();
        let o = sh_in(
            &["--bind", &format!("{}:{target}", file.display())],
            &format!("cat {target}"),
        );
        assert_ok(&o);
        assert_eq!(stdout(&o), "key: value\n", "{target}");
        assert_eq!(fs::read(target).unwrap(), before);
    }
}

#[test]
fn sandbox_destination_below_missing_directories_of_the_image() {
    if skip_without_bwrap("sandbox_destination_below_missing_directories_of_the_image") {
        return;
    }
    // Missing mount points are created inside the read-only image (apptainer's underlay),
    // also through a symlink (/var/run -> /run on Debian), and the directories they are
    // created in keep showing the image's content, read-only.
    let dir = TempDir::new("underlay");
    let sa = dir.path().join("sa");
    fs::create_dir(&sa).unwrap();
    fs::write(sa.join("token"), "secret-token").unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("inside"), "").unwrap();
    let newdir = unique("newdir");
    let o = sh_in(
        &[
            "--containall",
            "-B",
            &format!(
                "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro,{}:/opt/{newdir}/sub",
                sa.display(),
                sub.display()
            ),
        ],
        &format!(
            "cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; \
             ls -A /opt/{newdir}/sub; echo ==; ls -A /opt; echo ==; \
             touch /opt/x || echo opt-read-only"
        ),
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let expected = format!(
        "secret-token\ninside\n==\n{}==\nopt-read-only\n",
        host_listing(Path::new("/opt"), &[&newdir])
    );
    assert_eq!(stdout(&o), expected);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new("/opt").join(&newdir).exists());

    // /var/run is still what it is on the host, and the host's entries of /run are there.
    if let Ok(link) = fs::read_link("/var/run") {
        let o = sh_in(
            &["-B", &format!("{}:/var/run/secrets/x", sa.display())],
            "readlink /var/run; ls -A /run",
        );
        assert_ok(&o);
        let out = stdout(&o);
        let (first, listing) = out.split_once('\n').unwrap();
        assert_eq!(first, link.to_str().unwrap());
        for name in host_listing(Path::new("/run"), &[]).lines() {
            assert!(
                listing.lines().any(|l| l == name),
                "/run/{name} missing: {listing}"
            );
        }
    }
}

#[test]
fn sandbox_nested_binds() {
    if skip_without_bwrap("sandbox_nested_binds") {
        return;
    }
    let dir = TempDir::new("nested");
    let file = dir.file("x", "nested file\n", 0o644);
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("a.txt"), "a\n").unwrap();
    let dst = format!("/{}", unique("data"));

    // A directory, then a file below it at a path the directory lacks. Like runc in a
    // volume, bwrap creates that mount point in the rw bind, so on the host.
    let o = sh_in(
        &[
            "--containall",
            "--bind",
            &format!("{}:{dst}", data.display()),
            "--bind",
            &format!("{}:{dst}/cfg/x:ro", file.display()),
        ],
        &format!("cat {dst}/a.txt {dst}/cfg/x; echo w > {dst}/b.txt; echo w > {dst}/cfg/x"),
    );
    assert_eq!(stdout(&o), "a\nnested file\n");
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_to_string(data.join("b.txt")).unwrap(), "w\n");
    assert!(
        data.join("cfg/x").is_file(),
        "mount point created in the rw bind"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "nested file\n");
    fs::remove_dir_all(data.join("cfg")).unwrap();
    fs::remove_file(data.join("b.txt")).unwrap();

    // Below a read-only bind the mount point is created in an underlay: the host directory
    // stays untouched.
    let o = sh_in(
        &[
            "--containall",
            "--bind",
            &format!("{}:{dst}:ro", data.display()),
            "--bind",
            &format!("{}:{dst}/cfg/x", file.display()),
        ],
        &format!("cat {dst}/a.txt {dst}/cfg/x; ls -A {dst}; touch {dst}/new || echo ro"),
    );
    assert_eq!(
        stdout(&o),
        "a\nnested file\na.txt\ncfg\nro\n",
        "{}",
        stderr(&o)
    );
    assert!(!data.join("cfg").exists());
    assert!(!data.join("new").exists());
}

#[test]
fn sandbox_tmp_is_shared_unless_contained_or_bound() {
    if skip_without_bwrap("sandbox_tmp_is_shared_unless_contained_or_bound") {
        return;
    }
    // Literally in /tmp, whatever TMPDIR says.
    let shared = TempDir::under(Path::new("/tmp"), "tmpshare");
    shared.file("marker", "on the host\n", 0o644);
    let s = shared.str();

    // By default /tmp is the host's, read-write.
    let o = sh_in(&[], &format!("cat {s}/marker; echo back > {s}/out"));
    assert_ok(&o);
    assert_eq!(stdout(&o), "on the host\n");
    assert_eq!(
        fs::read_to_string(shared.path().join("out")).unwrap(),
        "back\n"
    );

    // --contain/-c/--containall/-C: a private, empty, world-writable /tmp (and /var/tmp).
    for flag in ["--contain", "-c", "--containall", "-C"] {
        let o = sh_in(
            &[flag],
            "ls -A /tmp; stat -c %a /tmp /var/tmp; echo x > /tmp/private && cat /tmp/private",
        );
        assert_ok(&o);
        assert_eq!(stdout(&o), "1777\n1777\nx\n", "{flag}");
    }
    assert!(!Path::new("/tmp/private").exists());

    // A bind on /tmp replaces it, contained or not.
    let other = TempDir::new("tmpbind");
    other.file("mine", "", 0o644);
    for flags in [vec![], vec!["--containall"]] {
        let mut options = flags.clone();
        let spec = format!("{}:/tmp", other.str());
        options.extend(["--bind", spec.as_str()]);
        let o = sh_in(&options, "ls -A /tmp; touch /tmp/created");
        assert_ok(&o);
        assert_eq!(stdout(&o), "mine\n", "{flags:?}");
        assert!(other.path().join("created").exists());
        fs::remove_file(other.path().join("created")).unwrap();
    }
}

#[test]
fn sandbox_home_is_bound_unless_no_home_or_contained() {
    if skip_without_bwrap("sandbox_home_is_bound_unless_no_home_or_contained") {
        return;
    }
    let home = TempDir::new("home");
    home.file(".profile-marker", "", 0o644);
    let script = "cd \"$HOME\" && ls -A && touch written && echo ok";

    let o = cmd(&["exec", "docker://alpine", "sh", "-c", script])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_ok(&o);
    assert_eq!(stdout(&o), ".profile-marker\nok\n");
    assert!(home.path().join("written").exists());
    fs::remove_file(home.path().join("written")).unwrap();

    // An empty (writable) directory at the same path instead.
    for flag in ["--no-home", "--contain", "--containall"] {
        let o = cmd(&["exec", flag, "docker://alpine", "sh", "-c", script])
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert_ok(&o);
        assert_eq!(stdout(&o), "ok\n", "{flag}");
        assert!(!home.path().join("written").exists(), "{flag}");
    }
}

#[test]
fn sandbox_working_directory() {
    if skip_without_bwrap("sandbox_working_directory") {
        return;
    }
    let dir = TempDir::under(Path::new("/tmp"), "sbpwd");
    fs::create_dir(dir.path().join("sub")).unwrap();
    dir.file("sub/f", "", 0o644);
    let app = format!("/{}", unique("app"));
    let bind = format!("{}:{app}", dir.str());

    // --pwd inside a bind, at a path that exists only in the container.
    let o = sh_in(
        &["--containall", "-B", &bind, "--pwd", &format!("{app}/sub")],
        "pwd; echo \"$PWD\"; ls",
    );
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("{app}/sub\n{app}/sub\nf\n"));

    // A directory of the host that the container does not have is missing.
    let o = sh_in(&["--containall", "--pwd", dir.str()], "pwd");
    assert_fails(
        &o,
        255,
        &format!(
            "FATAL:   could not set working directory {}: no such file or directory",
            dir.str()
        ),
    );
    let o = sh_in(&["-B", &bind, "--pwd", &format!("{app}/sub/f")], "pwd");
    assert_fails(&o, 255, "not a directory");

    // Without --pwd: the caller's directory if the container has it, else /.
    let canonical = fs::canonicalize(dir.path()).unwrap();
    for (flags, expected) in [
        (vec![], format!("{}\n", canonical.display())),
        (vec!["--containall"], "/\n".to_string()),
    ] {
        let mut args = vec!["exec"];
        args.extend(flags.iter());
        args.extend(["docker://alpine", "pwd", "-P"]);
        let o = cmd(&args).current_dir(&canonical).output().unwrap();
        assert_ok(&o);
        assert_eq!(stdout(&o), expected, "{flags:?}");
    }
}

#[test]
fn sandbox_commands_are_found_in_the_container() {
    if skip_without_bwrap("sandbox_commands_are_found_in_the_container") {
        return;
    }
    // The command is looked up in the container's filesystem: in a bind, by absolute path,
    // relative to --pwd, or in the container's PATH.
    let dir = TempDir::new("cmds");
    dir.file("run.sh", "#!/bin/sh\necho \"ran $1\"\n", 0o755);
    let app = format!("/{}", unique("bin"));
    let bind = format!("{}:{app}:ro", dir.str());
    let path = format!("PATH={app}:/usr/bin:/bin");
    for (options, command) in [
        (vec!["-B", &bind], format!("{app}/run.sh")),
        (vec!["-B", &bind, "--pwd", &app], "./run.sh".to_string()),
        (vec!["-B", &bind, "--env", &path], "run.sh".to_string()),
    ] {
        let mut args = vec!["exec", "--containall"];
        args.extend(options.iter().copied());
        args.extend(["docker://alpine", &command, "arg"]);
        let o = run(&args);
        assert_ok(&o);
        assert_eq!(stdout(&o), "ran arg\n", "{command}");
    }
    // Not in the container (no bind): not found, although it exists on the host.
    let o = run(&[
        "exec",
        "--containall",
        "docker://alpine",
        &format!("{app}/run.sh"),
    ]);
    assert_fails(&o, 255, "executable file not found in $PATH");
}

#[test]
fn no_bwrap_variable_runs_on_the_host() {
    // FAKE_APPTAINER_NO_BWRAP=1: no sandbox, so --containall leaves /tmp the host's. Neither
    // this variable nor FAKE_APPTAINER_RECORD reaches the command.
    let shared = TempDir::under(Path::new("/tmp"), "nobwrap");
    shared.file("marker", "host\n", 0o644);
    let o = host_cmd(&[
        "exec",
        "--containall",
        "docker://alpine",
        "sh",
        "-c",
        &format!("cat {}/marker; env", shared.str()),
    ])
    .output()
    .unwrap();
    assert_ok(&o);
    assert!(stdout(&o).starts_with("host\n"));
    assert!(!stdout(&o).contains("FAKE_APPTAINER"), "{}", stdout(&o));

    let o = run(&["exec", "docker://alpine", "env"]);
    assert_ok(&o);
    assert!(!stdout(&o).contains("FAKE_APPTAINER"), "{}", stdout(&o));
}

// ------------------------------------------------------------------ run

#[test]
fn run_without_runscript_execs_the_args() {
    let mut args = vec!["run", "docker://alpine", "printf", "%s\\0"];
    args.extend_from_slice(NASTY);
    let o = run(&args);
    assert_ok(&o);
    assert_eq!(o.stdout, nul_joined(NASTY));

    let o = run(&["run", "docker://alpine", "no-such-command-xyz"]);
    assert_fails(&o, 255, "executable file not found in $PATH");
}

#[test]
fn run_with_an_executable_image_runs_it_as_the_runscript() {
    let dir = TempDir::new("runscript");
    let img = dir.file(
        "app.sif",
        "#!/bin/sh\nprintf 'runscript:%s\\n' \"$@\"\nexit 7\n",
        0o755,
    );
    let o = cmd(&["run"])
        .arg(&img)
        .args(["a b", "$c"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "runscript:a b\nrunscript:$c\n");
}

#[test]
fn run_with_a_sandbox_runscript_runs_it() {
    let dir = TempDir::new("sandbox");
    fs::create_dir_all(dir.path().join(".singularity.d")).unwrap();
    dir.file(
        ".singularity.d/runscript",
        "#!/bin/sh\necho \"sandbox:$*\"\n",
        0o755,
    );
    let o = cmd(&["run"])
        .arg(dir.path())
        .args(["x", "y"])
        .output()
        .unwrap();
    assert_ok(&o);
    assert_eq!(stdout(&o), "sandbox:x y\n");
}

#[test]
fn run_without_args_or_runscript_prints_the_fake_runscript_line() {
    let o = run(&["run", "--no-eval", "docker://nginx:1.27"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "fake-runscript: docker://nginx:1.27\n");

    let dir = TempDir::new("plainimg");
    let img = dir.file("plain.sif", "data", 0o644);
    let o = cmd(&["run"]).arg(&img).output().unwrap();
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("fake-runscript: {}\n", img.display()));
}

// ------------------------------------------------------------------ recording

#[test]
fn record_dir_gets_the_argv_nul_separated() {
    let dir = TempDir::new("record");
    let mut args = vec![
        "-q",
        "exec",
        "--no-eval",
        "--env",
        "K=v",
        "docker://alpine",
        "printf",
        "%s\\0",
    ];
    args.extend_from_slice(NASTY);

    let child = cmd(&args)
        .env("FAKE_APPTAINER_RECORD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    assert_eq!(o.stdout, nul_joined(NASTY), "nothing else on stdout");
    let recorded = fs::read(dir.path().join(format!("argv.{pid}"))).expect("argv file");
    assert_eq!(recorded, nul_joined(&args));

    // The hook variable is not part of the container's environment.
    let o = cmd(&["exec", "docker://alpine", "env", "-0"])
        .env("FAKE_APPTAINER_RECORD", dir.path())
        .output()
        .unwrap();
    assert_ok(&o);
    assert!(!parse_env0(&o.stdout).contains_key("FAKE_APPTAINER_RECORD"));

    // Failing invocations are recorded too.
    let child = cmd(&["exec", "--bogus", "x"])
        .env("FAKE_APPTAINER_RECORD", dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let recorded = fs::read(dir.path().join(format!("argv.{pid}"))).expect("argv file");
    assert_eq!(recorded, nul_joined(&["exec", "--bogus", "x"]));
}
