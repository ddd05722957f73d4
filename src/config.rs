//! `ApptainerConfig.yaml` + environment overrides + command-line flags → one validated,
//! immutable `Config`. Every problem is a `ConfigError` naming the file, the key and what is
//! wrong: the daemon never starts on silent defaults for a value it could not read.
//! Unknown keys only warn, so an existing interLink (SLURM plugin) file can be dropped in.

use std::fmt;
use std::path::{Path, PathBuf};
use yaml_serde::Value;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/interlink/ApptainerConfig.yaml";

/// What the daemon listens on.
#[derive(Debug, Clone, PartialEq)]
pub enum Listen {
    Tcp { address: String, port: u16 },
    Unix(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub listen: Listen,
    /// Absolute; pods live in `<data_root>/<namespace>-<uid>/`.
    pub data_root: PathBuf,
    /// Absolute path of the apptainer binary, resolved once at start.
    pub apptainer: PathBuf,
    pub default_options: Vec<String>,
    pub image_prefix: String,
    pub bash: PathBuf,
    /// This very binary, which job.sh runs as `log-writer` behind every container.
    pub log_writer: PathBuf,
    /// util-linux `setsid`: each container gets its own process group, so that one container
    /// can be stopped without the others.
    pub setsid: PathBuf,
    /// CrashLoopBackOff: first delay, cap, and the clean running time that resets it (ms).
    pub backoff: Backoff,
    pub export_pod_data: bool,
    pub log_level: LogLevel,
    pub enable_probes: bool,
    /// The length of one second of probe timing (initialDelay, period, timeout), in ms: 1000,
    /// except in tests that want probes to run fast.
    pub probe_second_ms: u64,
    /// Run the pod annotation `slurm-job.vk.io/pre-exec` (shell text) before the containers.
    pub enable_pre_exec: bool,
    /// Memory-backed directory for `emptyDir.medium: Memory` (/dev/shm where it exists).
    pub shm_dir: Option<PathBuf>,
    pub tsocks: Option<Tsocks>,
    /// Upper bound on the grace period honoured by a delete: the interLink API server gives up
    /// on an answer after 120 s, so a longer wait would only turn into an error there.
    pub max_grace_seconds: u64,
    /// How often a delete re-checks which processes of the pod are left.
    pub kill_poll_ms: u64,
    /// How often finished jobs are reaped when nobody asks for their status.
    pub reap_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub reset_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Tsocks {
    pub library: PathBuf,
    pub login_node: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogLevel {
    ErrorsOnly,
    Info,
    Verbose,
}

/// The keys this daemon reads; anything else in the file is reported and ignored.
const KNOWN_KEYS: &[&str] = &[
    "SidecarPort",
    "SidecarBindAddress",
    "Socket",
    "DataRootFolder",
    "ApptainerPath",
    "ApptainerDefaultOptions",
    "ImagePrefix",
    "BashPath",
    "ExportPodData",
    "VerboseLogging",
    "ErrorsOnlyLogging",
    "EnableProbes",
    "ProbeSecondMilliseconds",
    "EnablePreExec",
    "Tsocks",
    "TsocksPath",
    "TsocksLoginNode",
    "MaxGracePeriodSeconds",
    "RestartBackoffMilliseconds",
    "MaxRestartBackoffMilliseconds",
    "RestartBackoffResetSeconds",
    "KillPollMilliseconds",
    "ReapIntervalMilliseconds",
];

#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(
                f,
                "config {}: key {}: {}",
                self.file.display(),
                k,
                self.problem
            ),
            None => write!(f, "config {}: {}", self.file.display(), self.problem),
        }
    }
}

/// The overrides that come from outside the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub env: Vec<(String, String)>,
    pub verbose: bool,
    pub errors_only: bool,
}

impl Overrides {
    fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads and validates the file at `path`. `cwd` anchors relative paths, as the SLURM plugin's
/// `DataRootFolder: .local/interlink/jobs/` has always been relative to where the daemon starts.
pub fn load(
    path: &Path,
    over: &Overrides,
    cwd: &Path,
) -> Result<(Config, Vec<String>), ConfigError> {
    let err = |key: Option<&str>, problem: String| ConfigError {
        file: path.to_path_buf(),
        key: key.map(str::to_string),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(None, format!("cannot read: {e}")))?;
    parse(path, &text, over, cwd).map_err(|(key, problem)| err(key.as_deref(), problem))
}

type KeyProblem = (Option<String>, String);

fn parse(
    path: &Path,
    text: &str,
    over: &Overrides,
    cwd: &Path,
) -> Result<(Config, Vec<String>), KeyProblem> {
    let doc: Value = if text.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        yaml_serde::from_str(text).map_err(|e| (None, format!("not valid YAML: {e}")))?
    };
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => Default::default(),
        _ => {
            return Err((
                None,
                "the top level must be a mapping of keys to values".into(),
            ))
        }
    };
    let mut warnings = Vec::new();
    for k in map.keys() {
        match k.as_str() {
            Some(s) if KNOWN_KEYS.contains(&s) => {}
            Some(s) => warnings.push(format!(
                "config {}: unknown key {s} ignored",
                path.display()
            )),
            None => return Err((None, format!("key {k:?} is not a string"))),
        }
    }
    let get = |key: &str| map.get(key).filter(|v| !v.is_null());
    let bad = |key: &str, problem: String| (Some(key.to_string()), problem);

    let port = match over.env("SIDECARPORT") {
        Some(v) => port_from_str(v)
            .map_err(|p| bad("SidecarPort", format!("{p} (from env SIDECARPORT)")))?,
        None => match get("SidecarPort") {
            None => 4000,
            Some(Value::Number(n)) => {
                n.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| {
                        bad(
                            "SidecarPort",
                            format!("expected a port number 0-65535, got {n}"),
                        )
                    })?
            }
            Some(Value::String(s)) => port_from_str(s).map_err(|p| bad("SidecarPort", p))?,
            Some(v) => {
                return Err(bad(
                    "SidecarPort",
                    format!("expected a port number, got {}", kind(v)),
                ))
            }
        },
    };
    let bind = string(get("SidecarBindAddress"), "SidecarBindAddress")?
        .unwrap_or_else(|| "127.0.0.1".into());
    if bind.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(
            "SidecarBindAddress",
            format!("{bind:?} is not an IP address"),
        ));
    }
    let socket = string(get("Socket"), "Socket")?.unwrap_or_default();
    let listen = if socket.is_empty() {
        Listen::Tcp {
            address: bind,
            port,
        }
    } else {
        let p = socket.strip_prefix("unix://").unwrap_or(&socket);
        if p.is_empty() {
            return Err(bad("Socket", format!("{socket:?} names no path")));
        }
        Listen::Unix(cwd.join(p))
    };

    let data_root = string(get("DataRootFolder"), "DataRootFolder")?
        .unwrap_or_else(|| ".local/interlink/jobs/".into());
    if data_root.is_empty() {
        return Err(bad("DataRootFolder", "must not be empty".into()));
    }
    let data_root = normalize(&cwd.join(data_root));
    // Pod paths end up in apptainer's --bind src:dst lists, split on ':' and ','.
    if data_root.to_string_lossy().contains([':', ',']) {
        return Err(bad(
            "DataRootFolder",
            format!(
                "{} contains ':' or ',', which apptainer cannot bind",
                data_root.display()
            ),
        ));
    }

    let apptainer_raw = match over.env("APPTAINERPATH") {
        Some(v) => v.to_string(),
        None => {
            string(get("ApptainerPath"), "ApptainerPath")?.unwrap_or_else(|| "apptainer".into())
        }
    };
    let apptainer = resolve_executable(&apptainer_raw, cwd, over.env("PATH"))
        .map_err(|p| bad("ApptainerPath", p))?;
    let bash_raw = string(get("BashPath"), "BashPath")?.unwrap_or_else(|| "/bin/bash".into());
    let bash =
        resolve_executable(&bash_raw, cwd, over.env("PATH")).map_err(|p| bad("BashPath", p))?;

    let default_options = match get("ApptainerDefaultOptions") {
        None => vec!["--cleanenv".to_string(), "--containall".to_string()],
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(bad(
                    "ApptainerDefaultOptions",
                    format!("every item must be a non-empty string, got {}", kind(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        // A single string is how some older files spell one option list: split it on blanks.
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(v) => {
            return Err(bad(
                "ApptainerDefaultOptions",
                format!("expected a list of strings, got {}", kind(v)),
            ))
        }
    };

    let image_prefix =
        string(get("ImagePrefix"), "ImagePrefix")?.unwrap_or_else(|| "docker://".into());
    let export_pod_data = boolean(get("ExportPodData"), "ExportPodData")?.unwrap_or(true);
    let verbose =
        boolean(get("VerboseLogging"), "VerboseLogging")?.unwrap_or(false) || over.verbose;
    let errors_only = boolean(get("ErrorsOnlyLogging"), "ErrorsOnlyLogging")?.unwrap_or(false)
        || over.errors_only;
    let log_level = if verbose {
        LogLevel::Verbose
    } else if errors_only {
        LogLevel::ErrorsOnly
    } else {
        LogLevel::Info
    };
    let enable_probes = boolean(get("EnableProbes"), "EnableProbes")?.unwrap_or(false);
    let enable_pre_exec = boolean(get("EnablePreExec"), "EnablePreExec")?.unwrap_or(false);
    let probe_second_ms = number(get("ProbeSecondMilliseconds"), "ProbeSecondMilliseconds")?
        .unwrap_or(1000)
        .max(1);
    let shm_dir = Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir());

    let tsocks_on = match over.env("TSOCKS") {
        Some(v) => bool_from_str(v)
            .ok_or_else(|| bad("Tsocks", format!("env TSOCKS={v:?} is not true or false")))?,
        None => boolean(get("Tsocks"), "Tsocks")?.unwrap_or(false),
    };
    let tsocks_path = match over.env("TSOCKSPATH") {
        Some(v) => Some(v.to_string()),
        None => string(get("TsocksPath"), "TsocksPath")?,
    };
    let login = string(get("TsocksLoginNode"), "TsocksLoginNode")?.unwrap_or_default();
    let tsocks = if tsocks_on {
        let lib = tsocks_path
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("TsocksPath", "Tsocks is on but TsocksPath is empty".into()))?;
        let lib = cwd.join(lib);
        if !lib.is_file() {
            return Err(bad(
                "TsocksPath",
                format!("{} is not a file", lib.display()),
            ));
        }
        if login.is_empty() || login.starts_with('-') {
            return Err(bad(
                "TsocksLoginNode",
                "Tsocks is on but TsocksLoginNode is empty or starts with '-'".into(),
            ));
        }
        Some(Tsocks {
            library: lib,
            login_node: login,
        })
    } else {
        None
    };

    let max_grace_seconds =
        number(get("MaxGracePeriodSeconds"), "MaxGracePeriodSeconds")?.unwrap_or(100);
    let backoff = Backoff {
        initial_ms: number(
            get("RestartBackoffMilliseconds"),
            "RestartBackoffMilliseconds",
        )?
        .unwrap_or(10_000),
        max_ms: number(
            get("MaxRestartBackoffMilliseconds"),
            "MaxRestartBackoffMilliseconds",
        )?
        .unwrap_or(300_000),
        reset_ms: number(
            get("RestartBackoffResetSeconds"),
            "RestartBackoffResetSeconds",
        )?
        .unwrap_or(600)
        .saturating_mul(1000),
    };
    let setsid = resolve_executable("setsid", cwd, over.env("PATH")).map_err(|p| {
        (
            None,
            format!(
                "setsid (util-linux) is needed to give each container its own process group: {p}"
            ),
        )
    })?;
    let kill_poll_ms = number(get("KillPollMilliseconds"), "KillPollMilliseconds")?
        .unwrap_or(100)
        .max(1);
    let reap_interval_ms = number(get("ReapIntervalMilliseconds"), "ReapIntervalMilliseconds")?
        .unwrap_or(1000)
        .max(1);

    Ok((
        Config {
            source: path.to_path_buf(),
            listen,
            data_root,
            apptainer,
            default_options,
            image_prefix,
            bash,
            log_writer: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("apptainer-plugin")),
            setsid,
            backoff,
            export_pod_data,
            log_level,
            enable_probes,
            probe_second_ms,
            enable_pre_exec,
            shm_dir,
            tsocks,
            max_grace_seconds,
            kill_poll_ms,
            reap_interval_ms,
        },
        warnings,
    ))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn string(v: Option<&Value>, key: &str) -> Result<Option<String>, KeyProblem> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err((
            Some(key.into()),
            format!("expected a string, got {}", kind(v)),
        )),
    }
}

fn boolean(v: Option<&Value>, key: &str) -> Result<Option<bool>, KeyProblem> {
    match v {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        // Go's YAML decoder of the existing plugins takes "true"/"false" strings too.
        Some(Value::String(s)) => bool_from_str(s).map(Some).ok_or_else(|| {
            (
                Some(key.into()),
                format!("expected true or false, got {s:?}"),
            )
        }),
        Some(v) => Err((
            Some(key.into()),
            format!("expected true or false, got {}", kind(v)),
        )),
    }
}

fn number(v: Option<&Value>, key: &str) -> Result<Option<u64>, KeyProblem> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(v) => Err((
            Some(key.into()),
            format!("expected a non-negative whole number, got {}", kind(v)),
        )),
    }
}

fn bool_from_str(s: &str) -> Option<bool> {
    match s.trim() {
        "true" | "True" | "TRUE" | "1" => Some(true),
        "false" | "False" | "FALSE" | "0" => Some(false),
        _ => None,
    }
}

fn port_from_str(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .map_err(|_| format!("expected a port number 0-65535, got {s:?}"))
}

/// Absolute path of an executable: names with a slash are taken relative to `cwd`, bare names
/// are looked up in PATH once here, so job.sh never depends on the PATH it inherits.
fn resolve_executable(raw: &str, cwd: &Path, path_var: Option<&str>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if raw.contains('/') {
        let p = normalize(&cwd.join(raw));
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(format!("{} is not an executable file", p.display()))
        };
    }
    let path_var = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(raw))
        .find(|p| is_exec(p))
        .map(|p| normalize(&cwd.join(p)))
        .ok_or_else(|| format!("{raw:?} was not found in PATH"))
}

/// Lexical clean-up (`a/./b/` → `a/b`) so paths in job.sh and logs read naturally.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_parse(text: &str, env: &[(&str, &str)]) -> Result<Config, KeyProblem> {
        // The fake apptainer of the tests stands in for the one a node has in its PATH.
        let path = [(
            "PATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures:/usr/bin:/bin"),
        )];
        let over = Overrides {
            env: path
                .iter()
                .chain(env)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        parse(Path::new("/x/c.yaml"), text, &over, Path::new("/work")).map(|(c, _)| c)
    }

    #[test]
    fn defaults_from_an_empty_file() {
        let c = try_parse("", &[]).unwrap();
        assert_eq!(
            c.listen,
            Listen::Tcp {
                address: "127.0.0.1".into(),
                port: 4000
            }
        );
        assert_eq!(c.data_root, PathBuf::from("/work/.local/interlink/jobs"));
        assert_eq!(c.default_options, vec!["--cleanenv", "--containall"]);
        assert_eq!(c.image_prefix, "docker://");
        assert!(c.export_pod_data);
        assert_eq!(c.bash, PathBuf::from("/bin/bash"));
        assert_eq!(
            c.apptainer,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/apptainer")
        );
    }

    #[test]
    fn port_as_string_or_number_and_env_wins() {
        assert_eq!(
            try_parse("SidecarPort: \"4001\"", &[]).unwrap().listen,
            Listen::Tcp {
                address: "127.0.0.1".into(),
                port: 4001
            }
        );
        assert_eq!(
            try_parse("SidecarPort: 4002", &[]).unwrap().listen,
            Listen::Tcp {
                address: "127.0.0.1".into(),
                port: 4002
            }
        );
        let c = try_parse("SidecarPort: 4002", &[("SIDECARPORT", "0")]).unwrap();
        assert_eq!(
            c.listen,
            Listen::Tcp {
                address: "127.0.0.1".into(),
                port: 0
            }
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("SidecarPort: 70000", "SidecarPort"),
            ("SidecarPort: abc", "SidecarPort"),
            ("VerboseLogging: maybe", "VerboseLogging"),
            ("ApptainerDefaultOptions: 3", "ApptainerDefaultOptions"),
            ("ApptainerDefaultOptions: [\"\"]", "ApptainerDefaultOptions"),
            ("BashPath: /nonexistent/bash", "BashPath"),
            ("ApptainerPath: no-such-apptainer-binary", "ApptainerPath"),
            ("DataRootFolder: \"\"", "DataRootFolder"),
            ("DataRootFolder: /a:b", "DataRootFolder"),
            ("EnablePreExec: 1.5", "EnablePreExec"),
            ("SidecarBindAddress: everywhere", "SidecarBindAddress"),
            ("Tsocks: true", "TsocksPath"),
            ("MaxGracePeriodSeconds: -1", "MaxGracePeriodSeconds"),
        ];
        for (text, key) in cases {
            let (k, problem) = try_parse(text, &[]).unwrap_err();
            assert_eq!(k.as_deref(), Some(key), "{text}: {problem}");
        }
        assert!(try_parse("SidecarPort: 1", &[("SIDECARPORT", "x")]).is_err());
        assert!(try_parse("a: [", &[]).unwrap_err().1.contains("YAML"));
        assert!(try_parse("- 1", &[]).unwrap_err().1.contains("mapping"));
    }

    #[test]
    fn explicit_empty_default_options_and_socket() {
        let c = try_parse(
            "ApptainerPath: /bin/sh\nApptainerDefaultOptions: []\nSocket: unix:///tmp/p.sock",
            &[],
        )
        .unwrap();
        assert!(c.default_options.is_empty());
        assert_eq!(c.listen, Listen::Unix("/tmp/p.sock".into()));
        assert_eq!(c.apptainer, PathBuf::from("/bin/sh"));
    }

    #[test]
    fn trailing_slash_or_not_is_the_same_root() {
        let a = try_parse("ApptainerPath: /bin/sh\nDataRootFolder: /d/jobs/", &[]).unwrap();
        let b = try_parse("ApptainerPath: /bin/sh\nDataRootFolder: /d/jobs", &[]).unwrap();
        assert_eq!(a.data_root, b.data_root);
    }
}
