//! The admin listener (off unless `[server] admin` or `--admin` is set):
//! `/metrics` in Prometheus text format, `/healthz`, `/upstreams` (each
//! server's state, health, ejection and why, as JSON), `/certificates`
//! (each ACME certificate's expiry, next renewal and last error, as JSON),
//! `/config`, the
//! effective configuration with every default filled in, `/requests/ID`
//! (a kept request's story), and one write, `PUT
//! /upstreams/NAME/servers/ADDR/state` (`servers.rs`). The admin token is
//! in a file the config names, so `/config` shows only its path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use switchyard::discovery::Answers;

use crate::config::{AdminToken, Config};
use crate::observe::Observer;
use switchyard::group::UpstreamGroup;

mod certificates;
mod servers;

/// What the admin endpoints serve.
#[derive(Debug)]
pub struct Admin {
    /// Metrics source.
    pub observer: Arc<Observer>,
    /// What the config views show; replaced on reload.
    current: RwLock<Arc<View>>,
    /// The admin address is a loopback one (writes need no token there).
    loopback: bool,
}

/// The parts of a config the admin endpoints show.
#[derive(Debug)]
struct View {
    /// The effective config as TOML (`/config`).
    toml: String,
    /// The upstream groups (`/upstreams`).
    groups: Vec<Arc<UpstreamGroup>>,
    /// What server names resolved to (`/upstreams`).
    answers: Answers,
    /// The token writes must carry, if one is set.
    token: Option<AdminToken>,
    /// The ACME certificates (`/certificates`).
    acme: Option<switchyard::acme::Acme>,
}

impl Admin {
    /// Admin endpoints for `config`.
    pub fn new(observer: Arc<Observer>, config: &Config) -> Self {
        Admin {
            observer,
            current: RwLock::new(Self::view(config)),
            loopback: config.admin.is_some_and(|a| a.ip().is_loopback()),
        }
    }

    /// Show `config` from now on.
    pub fn update(&self, config: &Config) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Self::view(config);
    }

    fn view(config: &Config) -> Arc<View> {
        let toml = toml::to_string_pretty(&config.effective)
            .unwrap_or_else(|e| format!("# the config could not be shown: {e}\n"));
        Arc::new(View {
            toml,
            groups: config.groups.values().cloned().collect(),
            answers: config.answers.clone(),
            token: config.admin_token.clone(),
            acme: config.tls.as_ref().and_then(|tls| tls.acme.clone()),
        })
    }

    fn current(&self) -> Arc<View> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Serve the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let admin = Arc::clone(&admin);
                async move {
                    let response = if request.method() == Method::PUT {
                        servers::put(&admin, request, client).await
                    } else {
                        answer(&admin, &request)
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(client = %client, error = %e, "admin connection ended with an error");
            }
        });
    }
}

fn answer(admin: &Admin, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET, or PUT /upstreams/NAME/servers/ADDR/state\n".to_string(),
            "text/plain",
        );
    }
    let path = request.uri().path();
    if let Some(id) = path.strip_prefix("/requests/") {
        return request_story(admin, &decode(id));
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            admin.observer.metrics_text(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/healthz" => text(StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/upstreams" => text(
            StatusCode::OK,
            upstreams(&admin.current()),
            "application/json",
        ),
        "/certificates" => text(
            StatusCode::OK,
            certificates::certificates(admin.current().acme.as_ref()),
            "application/json",
        ),
        "/config" => text(
            StatusCode::OK,
            admin.current().toml.clone(),
            "application/toml",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "try /metrics, /healthz, /upstreams, /certificates, /config or /requests/ID\n"
                .to_string(),
            "text/plain",
        ),
    }
}

/// `/requests/ID`: the story of the request `id` (its `X-Request-Id`) as
/// JSON, or 404 when no ring keeps it (any more).
fn request_story(admin: &Admin, id: &str) -> Response<Full<Bytes>> {
    match admin.observer.story(id) {
        Some(story) => text(
            StatusCode::OK,
            format!("{}\n", crate::observe::story_json(&story)),
            "application/json",
        ),
        None => {
            let ((recent, failed), (keep, keep_failed)) = admin.observer.stories_kept();
            let why = format!(
                "no request {id:?} is kept: the proxy keeps the last {keep} requests \
                 ([server] keep_traces, {recent} held now) and the last {keep_failed} failed \
                 or retried ones (keep_failed_traces, {failed} held now)"
            );
            text(
                StatusCode::NOT_FOUND,
                format!("{}\n", serde_json::json!({ "error": why })),
                "application/json",
            )
        }
    }
}

/// A request ID from the path: `%XX` escapes decoded (`switchyard why`
/// escapes all but unreserved characters); a malformed escape stays as
/// written.
fn decode(id: &str) -> String {
    let bytes = id.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/upstreams`: every group's servers with their health, and the
/// addresses its server names resolved to, as JSON.
fn upstreams(view: &View) -> String {
    let now = std::time::Instant::now();
    let groups: Vec<serde_json::Value> = view
        .groups
        .iter()
        .map(|group| {
            let servers: Vec<serde_json::Value> = group
                .health()
                .snapshot(now)
                .into_iter()
                .map(|s| {
                    serde_json::json!({
                        "addr": s.peer.to_string(),
                        "state": crate::observe::state_word(&s),
                        "admin_state": s.admin.as_str(),
                        "backup": group.backends().backups().iter().any(|b| b.addr == s.peer),
                        "usable": s.usable,
                        "check": s.verdict.as_str(),
                        "last_check": s.last_check,
                        "ejected_for_ms": s.ejected_for.map(|d| d.as_millis() as u64),
                        "ejections": s.ejections,
                        "reason": s.reason,
                        "held_for_ms": s.held_for.map(|d| d.as_millis() as u64),
                        "held_because": s.held_because,
                        "slow_start_permille": s.slow_start_permille,
                    })
                })
                .collect();
            let names: Vec<serde_json::Value> = group
                .names()
                .iter()
                .map(|name| {
                    let addresses = view.answers.get(name).unwrap_or_default();
                    serde_json::json!({
                        "name": name.to_string(),
                        "addresses": addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                        "resolve_every_ms": group.resolve_every().as_millis() as u64,
                    })
                })
                .collect();
            serde_json::json!({
                "name": group.name(),
                "checks": group.checks().is_some(),
                "panic": group.health().in_panic(now),
                "servers": servers,
                "names": names,
            })
        })
        .collect();
    let mut body = serde_json::to_string_pretty(&serde_json::json!({ "upstreams": groups }))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    body.push('\n');
    body
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Bind the admin listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve an admin socket already listening (one a binary upgrade handed
/// over). Call it on the runtime that will serve it.
pub fn adopt(socket: std::net::TcpListener) -> std::io::Result<TcpListener> {
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}
