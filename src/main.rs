//! The `apptainer-plugin` binary: flags, logging, configuration, restore of known pods, and
//! the listener. Wiring only. Exit codes: 0 never in practice (it serves until killed),
//! 1 when it cannot listen, 2 for a usage or configuration error.

use apptainer_plugin::config::{self, Listen, LogLevel, Overrides};
use apptainer_plugin::http::{self, Listener, Server};
use apptainer_plugin::pods::{self, Node};
use apptainer_plugin::state::Registry;
use apptainer_plugin::sysinfo::VersionCache;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str =
    "usage: apptainer-plugin [-ApptainerConfigpath FILE | --config FILE] [-verbose] [-errorsonly]
  -ApptainerConfigpath FILE, --config FILE   configuration file (else $APPTAINERCONFIGPATH,
                                             else /etc/interlink/ApptainerConfig.yaml)
  -verbose                                   debug logging (like VerboseLogging: true)
  -errorsonly                                errors only (like ErrorsOnlyLogging: true)
  --version                                  print the version";

struct Args {
    config: Option<PathBuf>,
    verbose: bool,
    errors_only: bool,
}

/// Go's flag package accepts `-name`, `--name`, `-name=value` and `-name value`; so do we.
fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        config: None,
        verbose: false,
        errors_only: false,
    };
    while let Some(arg) = it.next() {
        let flag = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        let Some(flag) = flag.filter(|f| !f.is_empty()) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "ApptainerConfigpath" | "config" => {
                let v = inline
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{arg} needs a file"))?;
                a.config = Some(PathBuf::from(v));
            }
            "verbose" => a.verbose = true,
            "errorsonly" => a.errors_only = true,
            "h" | "help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "version" => {
                println!("apptainer-plugin {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(format!("unknown flag {arg:?}")),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // job.sh runs this binary as every container's log writer: no daemon, no config.
    if argv.first().map(String::as_str) == Some("log-writer") {
        return apptainer_plugin::logwriter::main(&argv[1..]);
    }
    let args = match parse_args(argv.into_iter()) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apptainer-plugin: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let path = args
        .config
        .or_else(|| {
            std::env::var_os("APPTAINERCONFIGPATH")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    let over = Overrides {
        env: std::env::vars().collect(),
        verbose: args.verbose,
        errors_only: args.errors_only,
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let (cfg, warnings) = match config::load(&path, &over, &cwd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apptainer-plugin: {e}");
            return ExitCode::from(2);
        }
    };
    let level = match cfg.log_level {
        LogLevel::ErrorsOnly => tracing::Level::ERROR,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Verbose => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for w in warnings {
        tracing::warn!("{w}");
    }
    run(cfg)
}

fn run(cfg: config::Config) -> ExitCode {
    let registry = Registry::new(cfg.data_root.clone());
    let (restored, problems) = registry.restore();
    for p in problems {
        tracing::warn!("restore: {p}");
    }
    tracing::info!(
        config = %cfg.source.display(),
        data_root = %cfg.data_root.display(),
        apptainer = %cfg.apptainer.display(),
        "{restored} pod(s) found from an earlier run"
    );
    let version = VersionCache::new(cfg.apptainer.clone(), Duration::from_secs(5));
    let listen = cfg.listen.clone();
    let ex = Arc::new(smol::Executor::new());
    // Probe tasks get a thread of their own: 200 probes a second woken across the request
    // threads cost twice the CPU (measured 10% vs 5% of a core) in cross-thread wake-ups.
    let probe_ex = Arc::new(smol::Executor::new());
    {
        let probe_ex = probe_ex.clone();
        std::thread::spawn(move || smol::block_on(probe_ex.run(smol::future::pending::<()>())));
    }
    let node = Arc::new(Node {
        cfg,
        registry,
        verdicts: Default::default(),
        executor: probe_ex,
    });
    // Probes of the pods found again carry on where the last daemon left them.
    for rec in node.registry.all() {
        pods::start_probes(&node, &rec);
    }
    let server = Arc::new(Server {
        node: node.clone(),
        version,
    });

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4);
    for _ in 1..threads {
        let ex = ex.clone();
        std::thread::spawn(move || smol::block_on(ex.run(smol::future::pending::<()>())));
    }
    smol::block_on(ex.run(async {
        let listener = match &listen {
            Listen::Tcp { address, port } => {
                match async_net::TcpListener::bind((address.as_str(), *port)).await {
                    Ok(l) => {
                        let at = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                        tracing::info!("listening on http://{at}");
                        Listener::Tcp(l)
                    }
                    Err(e) => {
                        tracing::error!("cannot listen on {address}:{port}: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            Listen::Unix(path) => match http::bind_unix(path).await {
                Ok(l) => {
                    tracing::info!("listening on unix://{}", path.display());
                    Listener::Unix(l)
                }
                Err(e) => {
                    tracing::error!("cannot listen on unix://{}: {e}", path.display());
                    return ExitCode::from(1);
                }
            },
        };
        ex.spawn(pods::reap_forever(node)).detach();
        http::serve(ex.clone(), server, listener).await;
        ExitCode::SUCCESS
    }))
}
