//! The HTTP side: TCP and unix-socket listeners, routing of interLink's four paths and our
//! `/system-info`, and the one mapping of `ApiError` to a response. Handlers always answer:
//! async-h1 drops a connection without a word when a handler returns `Err`.

use crate::api::{LogRequest, PingResponse, SystemInfo};
use crate::error::ApiError;
use crate::pods::{self, Node};
use crate::sysinfo::VersionCache;
use async_net::unix::UnixListener;
use async_net::TcpListener;
use http_types::{Body, Request, Response, StatusCode};
use smol::future::FutureExt;
use smol::io::AsyncReadExt;
use smol::Executor;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use tracing::Instrument;

/// Largest request body accepted: a pod with big configMaps and secrets stays far below.
const MAX_BODY: u64 = 64 << 20;

pub struct Server {
    pub node: Arc<Node>,
    pub version: VersionCache,
}

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds the unix socket at `path`: a stale file left by a dead daemon is removed, a live one
/// is refused, and the new socket gets mode 0660 (interLink forwards no authentication).
pub async fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        if async_net::unix::UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Accepts connections forever, each served on its own task.
pub async fn serve(ex: Arc<Executor<'static>>, server: Arc<Server>, listener: Listener) {
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                // Without it, small answers wait for Nagle's delay: about 20x less throughput.
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        };
        match accepted {
            Ok(conn) => {
                let server = server.clone();
                ex.spawn(async move {
                    let peer = conn.clone();
                    let endpoint = |req| {
                        let server = server.clone();
                        let peer = peer.clone();
                        async move {
                            // A bug must cost one answer, not the daemon and every pod's status.
                            let answer = AssertUnwindSafe(handle(&server, req, Some(&peer)))
                                .catch_unwind()
                                .await;
                            Ok(answer.unwrap_or_else(|_| {
                                error_response(&ApiError::Internal(
                                    "the plugin hit an internal error while answering; see its log"
                                        .into(),
                                ))
                            }))
                        }
                    };
                    let result = match conn {
                        Conn::Tcp(s) => async_h1::accept(s, endpoint).await,
                        Conn::Unix(s) => async_h1::accept(s, endpoint).await,
                    };
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                })
                .detach();
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::error!("accept failed: {e}");
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// An accepted connection; a clone of it lets a following `/getLogs` notice the client leave.
#[derive(Clone)]
pub enum Conn {
    Tcp(async_net::TcpStream),
    Unix(async_net::unix::UnixStream),
}

impl Conn {
    fn dup(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        match self {
            Conn::Tcp(s) => s.as_fd().try_clone_to_owned().ok(),
            Conn::Unix(s) => s.as_fd().try_clone_to_owned().ok(),
        }
    }
}

/// Routes one request and always produces a response.
pub async fn handle(server: &Server, mut req: Request, peer: Option<&Conn>) -> Response {
    let session = req
        .header("InterLink-Http-Session")
        .map(|v| v.as_str().to_string())
        .unwrap_or_else(|| "-".into());
    let path = req.url().path().to_string();
    let span =
        tracing::info_span!("request", session = %session, method = %req.method(), path = %path);
    async move {
        let body = match read_body(&mut req).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        let started = std::time::Instant::now();
        let result = route(server, &path, &body, peer).await;
        match result {
            Ok(resp) => {
                let (code, ms) = (
                    u16::from(resp.status()),
                    started.elapsed().as_secs_f64() * 1e3,
                );
                // interLink asks for every pod's status every few seconds: keep those quiet.
                if path == "/status" {
                    tracing::debug!(status = code, ms = %ms, "answered");
                } else {
                    tracing::info!(status = code, ms = %ms, "answered");
                }
                resp
            }
            Err(e) => {
                match &e {
                    ApiError::Internal(_) => tracing::error!("{e}"),
                    _ => tracing::warn!("{e}"),
                }
                error_response(&e)
            }
        }
    }
    .instrument(span)
    .await
}

async fn read_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    if req.len().is_some_and(|n| n as u64 > MAX_BODY) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    req.take_body()
        .take(MAX_BODY + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
    if buf.len() as u64 > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf)
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "the request body is larger than {} MiB",
        MAX_BODY >> 20
    ))
}

async fn route(
    server: &Server,
    path: &str,
    body: &[u8],
    peer: Option<&Conn>,
) -> Result<Response, ApiError> {
    let node = &server.node;
    match path {
        "/create" => json(&pods::create(node, body).await?),
        "/status" => {
            let pods_asked = pods::parse_status_body(body)?;
            if pods_asked.is_empty() {
                return json(&PingResponse { status: "ok" });
            }
            json(&pods::status(node, &pods_asked)?)
        }
        "/delete" => Ok(text(StatusCode::Ok, pods::delete(node, body).await?)),
        "/getLogs" => {
            let de = &mut serde_json::Deserializer::from_slice(body);
            let req: LogRequest =
                serde_path_to_error::deserialize(de).map_err(|e| crate::pod::json_error("getLogs", e))?;
            let follows = req.opts.follow;
            let stream = pods::logs(node, &req, peer.filter(|_| follows).and_then(Conn::dup))?;
            let mut resp = Response::new(StatusCode::Ok);
            resp.set_body(Body::from_reader(crate::follow::StreamReader::new(stream), None));
            resp.set_content_type(http_types::mime::PLAIN);
            Ok(resp)
        }
        "/system-info" => {
            let n = node.clone();
            let counts = smol::unblock(move || pods::phase_counts(&n)).await;
            json(&SystemInfo {
                plugin_version: env!("CARGO_PKG_VERSION"),
                apptainer_path: node.cfg.apptainer.display().to_string(),
                apptainer_version: server.version.get().await,
                data_root: node.cfg.data_root.display().to_string(),
                pods: counts,
            })
        }
        other => Err(ApiError::NotFound(format!(
            "no such path {other:?}; this plugin serves /create, /status, /delete, /getLogs and /system-info"
        ))),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| ApiError::Internal(format!("cannot encode the answer: {e}")))?;
    let mut resp = Response::new(StatusCode::Ok);
    resp.set_body(Body::from_bytes(bytes));
    resp.set_content_type(http_types::mime::JSON);
    Ok(resp)
}

fn text(code: StatusCode, body: String) -> Response {
    let mut resp = Response::new(code);
    resp.set_body(Body::from_string(body));
    resp.set_content_type(http_types::mime::PLAIN);
    resp
}

/// The one place where an API error becomes an HTTP status.
pub fn error_response(e: &ApiError) -> Response {
    let code = match e {
        ApiError::BadRequest(_) => StatusCode::BadRequest,
        ApiError::NotFound(_) => StatusCode::NotFound,
        ApiError::Conflict(_) => StatusCode::Conflict,
        ApiError::TooLarge(_) => StatusCode::PayloadTooLarge,
        ApiError::Internal(_) => StatusCode::InternalServerError,
    };
    text(code, format!("{}\n", e.message()))
}
