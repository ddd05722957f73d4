//! Lifecycle hooks: the pod's `postStart` / `preStop` handlers as checked `Hook` plans (pure).
//! job.sh runs them (see `script.rs`), so they work without the daemon; the daemon only asks
//! job.sh to run a container's preStop before a stop it initiates.

use crate::plan::Hook;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Host, port, path and headers of an HTTP GET.
pub type HttpTarget = (String, u16, String, Vec<(String, String)>);

/// A checked httpGet action (hooks and probes alike): (host, port, path, headers). Only plain
/// HTTP; host 127.0.0.1 and path / by default; nothing that could split the request's lines.
pub fn http_get(c: &Container, g: &HTTPGetAction) -> Result<HttpTarget, String> {
    if g.scheme
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
    {
        return Err("only scheme HTTP is supported by this plugin".into());
    }
    let port = resolve_port(c, &g.port)?;
    let host = g
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    let path = g
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    no_crlf("host", &host)?;
    no_crlf("path", &path)?;
    if host.contains(['/', ' ']) {
        return Err(format!("host {host:?} is not a host name"));
    }
    let mut headers = Vec::new();
    for hd in g.http_headers.iter().flatten() {
        no_crlf("header", &hd.name)?;
        no_crlf("header value", &hd.value)?;
        headers.push((hd.name.clone(), hd.value.clone()));
    }
    Ok((host, port, path, headers))
}

/// A port number, or a named port of the container.
pub fn resolve_port(c: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {n} is not in 1..65535")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("named port {name:?} is not among the container's ports")),
    }
}

fn no_crlf(what: &str, s: &str) -> Result<(), String> {
    if s.contains(['\r', '\n', '\0']) {
        return Err(format!("{what} {s:?} contains a line break or NUL"));
    }
    Ok(())
}

fn hook(c: &Container, h: &LifecycleHandler, which: &str) -> Result<Hook, String> {
    if let Some(e) = &h.exec {
        let cmd = e.command.clone().unwrap_or_default();
        if cmd.is_empty() {
            return Err(format!("lifecycle.{which}.exec has no command"));
        }
        if cmd.iter().any(|w| w.contains('\0')) {
            return Err(format!(
                "lifecycle.{which}.exec.command contains a NUL byte"
            ));
        }
        return Ok(Hook::Exec(cmd));
    }
    if let Some(g) = &h.http_get {
        let (host, port, path, headers) =
            http_get(c, g).map_err(|e| format!("lifecycle.{which}.httpGet: {e}"))?;
        return Ok(Hook::HttpGet {
            host,
            port,
            path,
            headers,
        });
    }
    if let Some(s) = &h.sleep {
        return u64::try_from(s.seconds)
            .map(Hook::Sleep)
            .map_err(|_| format!("lifecycle.{which}.sleep.seconds must not be negative"));
    }
    Err(format!("lifecycle.{which} needs exec, httpGet or sleep (tcpSocket is deprecated and not supported)"))
}

/// (postStart, preStop) of a container.
pub fn hooks(c: &Container) -> Result<(Option<Hook>, Option<Hook>), String> {
    let Some(l) = &c.lifecycle else {
        return Ok((None, None));
    };
    let post = l
        .post_start
        .as_ref()
        .map(|h| hook(c, h, "postStart"))
        .transpose()?;
    let pre = l
        .pre_stop
        .as_ref()
        .map(|h| hook(c, h, "preStop"))
        .transpose()?;
    Ok((post, pre))
}
