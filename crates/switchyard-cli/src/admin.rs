//! The admin listener (off unless `[server] admin` or `--admin` is set):
//! `/metrics` in Prometheus text format, `/healthz`, `/upstreams` (each
//! server's health, ejection and why, as JSON), and `/config`, the
//! effective configuration with every default filled in. No key of the
//! config holds a secret today; one that does must be redacted here.

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

use crate::config::Config;
use crate::observe::Observer;
use switchyard::group::UpstreamGroup;

/// What the admin endpoints serve.
#[derive(Debug)]
pub struct Admin {
    /// Metrics source.
    pub observer: Arc<Observer>,
    /// What the config views show; replaced on reload.
    current: RwLock<Arc<View>>,
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
}

impl Admin {
    /// Admin endpoints for `config`.
    pub fn new(observer: Arc<Observer>, config: &Config) -> Self {
        Admin {
            observer,
            current: RwLock::new(Self::view(config)),
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
            let service = service_fn(move |request| {
                let admin = Arc::clone(&admin);
                async move { Ok::<_, Infallible>(answer(&admin, &request)) }
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
            "only GET\n".to_string(),
            "text/plain",
        );
    }
    match request.uri().path() {
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
        "/config" => text(
            StatusCode::OK,
            admin.current().toml.clone(),
            "application/toml",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "try /metrics, /healthz, /upstreams or /config\n".to_string(),
            "text/plain",
        ),
    }
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
