//! Tests of the fake `apptainer` in `fixtures/apptainer`, the stand-in the rest of the suite
//! runs pods with. They pin down its CLI strictness (messages, exit codes 1 and 255), the
//! byte-exact delivery of arguments and environment, working directory, binds, runscript
//! semantics, exit-status/signal propagation and the FAKE_APPTAINER_RECORD argv hook.
//! Everything goes through `std::process::Command`; no extra crates.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
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
fn cmd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(fake());
    c.args(args)
        .env_remove("FAKE_APPTAINER_RECORD")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("APPTAINERENV_") || k.starts_with("SINGULARITYENV_") {
            c.env_remove(k);
        }
    }
    c
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    cmd(args).output().expect("spawn fixtures/apptainer")
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
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
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
fn exec_keeps_pid_stdin_and_stdout() {
    let mut child = cmd(&["exec", "docker://alpine", "sh", "-c", "echo $$; cat"])
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
    let o = run(&["exec", "docker://alpine", "sh", "-c", "exit 42"]);
    assert_eq!(o.status.code(), Some(42));

    // The fake execs the command, so a SIGKILL is seen as such by the caller ...
    let o = run(&["exec", "docker://alpine", "sh", "-c", "kill -9 $$"]);
    assert_eq!(o.status.signal(), Some(9), "status {:?}", o.status);

    // ... and as 128+9 by a shell.
    let o = Command::new("bash")
        .arg("-c")
        .arg(r#""$0" exec docker://alpine sh -c 'kill -9 $$'; echo "status=$?""#)
        .arg(fake())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "status=137\n");
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
