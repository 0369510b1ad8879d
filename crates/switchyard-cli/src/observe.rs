//! Telling an operator why: one access log line per request (text or JSON)
//! carrying its attempt trace, and Prometheus metrics counted by outcome,
//! by retry reason, and by the reason a retry was *not* taken.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::json;
use switchyard::{AttemptLog, AttemptRecord, Decision};

use crate::config::LogFormat;

mod certificates;
mod connections;
mod dry_run;
mod grpc;
mod handles;
mod hedges;
mod log_drops;
mod mirrors;
mod otlp;
mod pushback;
mod refusals;
mod report;
mod servers;
mod traces;
mod upgrades;
mod upstream_metrics;

use certificates::CertificateMetrics;
use connections::ConnectionMetrics;
use dry_run::DryRunMetrics;
use grpc::GrpcMetrics;
use hedges::HedgeMetrics;
use log_drops::LogDropMetrics;
use mirrors::MirrorMetrics;
use otlp::OtlpMetrics;
use pushback::PushbackMetrics;
use refusals::RefusalMetrics;
use servers::ServerGauges;
pub use servers::state_word;
use switchyard::log_file::LogWriter;
use switchyard::policy::dry_run::WouldHave;
use switchyard::proxy::UpgradeRecord;
use switchyard::proxy::grpc::GrpcStatus;
use traces::TraceRing;
pub use traces::{MAX_KEPT_PATH, approx_bytes, story_json};
use upgrades::UpgradeMetrics;
use upstream_metrics::Metrics;

/// One finished request, as the proxy's `logging` hook saw it.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Client address.
    pub client: String,
    /// Request method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Status sent downstream (499 if the client left first).
    pub status: u16,
    /// Response body bytes sent downstream.
    pub bytes: u64,
    /// Time from arrival to the end of the response.
    pub duration: Duration,
    /// The route's upstream group, if a route matched.
    pub upstream: Option<String>,
    /// The final error, if the request failed.
    pub error: Option<String>,
    /// Every attempt.
    pub trace: AttemptLog,
    /// The request's ID (`X-Request-Id`).
    pub request_id: String,
    /// After a 101: what went through the tunnel.
    pub upgrade: Option<UpgradeRecord>,
    /// How a gRPC call ended.
    pub grpc: Option<GrpcStatus>,
    /// What policies in dry-run mode would have done.
    pub dry_runs: Vec<WouldHave>,
    /// The `Proxy-Status` of the failure, when the request failed.
    pub proxy_status: Option<String>,
    /// Its W3C trace ID, when it has a trace.
    pub trace_id: Option<String>,
    /// Why its route refused it (`rate-limited`, `access-denied`,
    /// `unauthorized`), if it did.
    pub refused: Option<&'static str>,
    /// The side of its route's split it went to, and the side it was
    /// meant for when that one had no usable server.
    pub split: Option<(String, Option<String>)>,
    /// The client's protocol.
    pub protocol: ClientProtocol,
}

/// The access log: its format and where its lines go.
#[derive(Debug, Clone)]
pub struct AccessLog {
    /// One line of text, or one JSON object, per request.
    pub format: LogFormat,
    /// The writer (standard output or a file), off the request path.
    pub writer: LogWriter,
}

/// The protocol a client spoke, as the access log and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2.
    H2,
    /// HTTP/3.
    H3,
}

impl ClientProtocol {
    /// The protocol of a request of `version`.
    pub fn of(version: http::Version) -> Self {
        match version {
            http::Version::HTTP_2 => ClientProtocol::H2,
            http::Version::HTTP_3 => ClientProtocol::H3,
            http::Version::HTTP_10 => ClientProtocol::Http10,
            _ => ClientProtocol::Http11,
        }
    }

    /// `http/1.0`, `http/1.1`, `h2` or `h3`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientProtocol::Http10 => "http/1.0",
            ClientProtocol::Http11 => "http/1.1",
            ClientProtocol::H2 => "h2",
            ClientProtocol::H3 => "h3",
        }
    }
}

/// An extra consumer of finished requests.
type Sink = Box<dyn Fn(&Finished) + Send + Sync>;

/// Where finished requests go: the access log, the metrics, and an optional
/// extra sink (the demo prints from it).
pub struct Observer {
    access_log: Option<AccessLog>,
    metrics: Metrics,
    connections: ConnectionMetrics,
    certificates: CertificateMetrics,
    upgrades: UpgradeMetrics,
    grpc: GrpcMetrics,
    pushback: PushbackMetrics,
    hedges: HedgeMetrics,
    dry_runs: DryRunMetrics,
    refusals: RefusalMetrics,
    mirrors: MirrorMetrics,
    log_drops: LogDropMetrics,
    otlp: OtlpMetrics,
    servers: ServerGauges,
    traces: TraceRing,
    registry: Registry,
    sink: Option<Sink>,
    /// One scrape at a time: the gauges are cleared and refilled for each.
    scraping: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("access_log", &self.access_log)
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// An observer writing the access log to `access_log` (none if `None`).
    pub fn new(access_log: Option<AccessLog>) -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let metrics = Metrics::register(&mut registry);
        let connections = ConnectionMetrics::register(&mut registry);
        let certificates = CertificateMetrics::register(&mut registry);
        let upgrades = UpgradeMetrics::register(&mut registry);
        let grpc = GrpcMetrics::register(&mut registry);
        let pushback = PushbackMetrics::register(&mut registry);
        let hedges = HedgeMetrics::register(&mut registry);
        let dry_runs = DryRunMetrics::register(&mut registry);
        let refusals = RefusalMetrics::register(&mut registry);
        let mirrors = MirrorMetrics::register(&mut registry);
        let log_drops = LogDropMetrics::register(&mut registry);
        let otlp = OtlpMetrics::register(&mut registry);
        let servers = ServerGauges::register(&mut registry);
        if let Some(access) = &access_log {
            log_drops.watch(access.writer.clone());
        }
        Observer {
            access_log,
            metrics,
            connections,
            certificates,
            upgrades,
            grpc,
            pushback,
            hedges,
            dry_runs,
            refusals,
            mirrors,
            log_drops,
            otlp,
            servers,
            traces: TraceRing::default(),
            registry,
            sink: None,
            scraping: std::sync::Mutex::new(()),
        }
    }

    /// Keep the stories of the last `recent` requests, and of the last
    /// `failed` ones that failed or were retried, for
    /// [`story`](Self::story) (the admin listener's `/requests/ID`).
    pub fn with_traces(mut self, recent: usize, failed: usize) -> Self {
        self.traces = TraceRing::new(recent, failed);
        self
    }

    /// Export each finished request's spans (a sampled trace's) through
    /// `exporter`.
    pub fn with_otlp(mut self, exporter: switchyard::otlp::OtlpExporter) -> Self {
        self.otlp.set_exporter(exporter);
        self
    }

    /// Send the spans queued for export, waiting at most `within` (at exit).
    pub fn flush_spans(&self, within: Duration) {
        self.otlp.flush(within);
    }

    /// The story of the request with ID `id`, while it is kept.
    pub fn story(&self, id: &str) -> Option<Arc<Finished>> {
        self.traces.find(id)
    }

    /// How many stories are kept now (recent, failed or retried), and
    /// the most each ring keeps.
    pub fn stories_kept(&self) -> ((usize, usize), (usize, usize)) {
        (self.traces.held(), self.traces.sizes())
    }

    /// Also hand every finished request to `sink`.
    pub fn with_sink(mut self, sink: impl Fn(&Finished) + Send + Sync + 'static) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Count one finished request in the metrics: its upstream group's
    /// label (`None`: no group) and its route's name (`None`: no route
    /// matched), final status and trace. Allocates nothing once the label sets exist.
    pub fn count(
        &self,
        upstream: Option<&Arc<String>>,
        route: Option<&Arc<String>>,
        status: u16,
        trace: &AttemptLog,
    ) {
        let upstream = upstream.unwrap_or(&self.metrics.no_upstream);
        let route = route.unwrap_or(&self.metrics.no_route);
        self.metrics.record(
            upstream_metrics::RequestKey { upstream, route },
            status,
            trace,
        );
        self.hedges.record(upstream, trace);
    }

    /// Count an upgraded connection that closed.
    pub fn count_upgrade(&self, upstream: Option<&Arc<String>>, upgrade: &UpgradeRecord) {
        self.upgrades
            .record(upstream.unwrap_or(&self.metrics.no_upstream), upgrade);
    }

    /// Count a gRPC call that ended with `code`.
    pub fn count_grpc(&self, upstream: Option<&Arc<String>>, code: u32) {
        self.grpc
            .record(upstream.unwrap_or(&self.metrics.no_upstream), code);
    }

    /// Count a request `route` refused for `why`.
    pub fn count_refusal(&self, route: &Arc<String>, why: switchyard::route::Refusal) {
        self.refusals.record(route, why);
    }

    /// Count what policies in dry-run mode would have done.
    pub fn count_dry_runs(&self, would: &[WouldHave]) {
        self.dry_runs.record(would);
    }

    /// Count a server of `upstream` held out of selection after it answered
    /// `status` with `Retry-After`.
    pub fn count_held(&self, upstream: &Arc<String>, status: u16) {
        self.pushback.record(upstream, status);
    }

    /// Whether [`log`](Self::log) has anywhere to write, so the caller can
    /// skip building a [`Finished`].
    pub fn wants_details(&self) -> bool {
        self.access_log.is_some() || self.sink.is_some() || self.traces.is_on()
    }

    /// Write one finished request to the access log and the sink.
    pub fn log(&self, request: &Finished) {
        if let Some(access) = &self.access_log {
            let line = match access.format {
                LogFormat::Text => text_line(request),
                LogFormat::Json => json_line(request),
            };
            // Queued, never waited for: a slow or full disk drops lines.
            access.writer.write_line(line);
        }
        if let Some(sink) = &self.sink {
            sink(request);
        }
    }

    /// Count `writer`'s dropped lines in `switchyard_log_lines_dropped_total`
    /// (the access log's writer is counted already).
    pub fn watch_log(&self, writer: LogWriter) {
        self.log_drops.watch(writer);
    }

    /// Write what the access log has queued, waiting at most `within`
    /// (at exit).
    pub fn flush_access_log(&self, within: Duration) {
        if let Some(access) = &self.access_log {
            access.writer.flush(within);
        }
    }

    /// Show the gauges of `groups`' servers from now on (at start and
    /// after each reload).
    pub fn watch_groups(&self, groups: Vec<Arc<switchyard::group::UpstreamGroup>>) {
        self.servers.set_groups(groups);
    }

    /// Read these routes' mirrors into the metrics from now on (at start
    /// and after each reload), each labelled with its route's name (else
    /// its place, `routes[3]`).
    pub fn watch_mirrors(&self, routes: &[switchyard::route::Route]) {
        let mirrors = routes
            .iter()
            .enumerate()
            .filter_map(|(i, route)| {
                let mirror = route.mirror.as_ref()?;
                let name = match route.name.as_str() {
                    "" => Arc::new(format!("routes[{i}]")),
                    _ => Arc::clone(&route.name),
                };
                Some((name, Arc::clone(mirror)))
            })
            .collect();
        self.mirrors.watch(mirrors);
    }

    /// Count `pool`'s connections in `switchyard_upstream_connections`.
    pub fn watch_pool(&self, pool: switchyard::UpstreamPool) {
        self.servers.watch_pool(pool);
    }

    /// Report these ACME certificates in the metrics from now on (at start
    /// and after each reload; `None`: no ACME).
    pub fn watch_certificates(&self, acme: Option<switchyard::acme::Acme>) {
        self.certificates.watch(acme);
    }

    /// Report a server's client connection counts in the metrics.
    pub fn watch_connections(&self, counts: switchyard::server::ConnectionCounts) {
        self.connections.watch(counts);
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let _one_at_a_time = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        self.connections.refresh();
        self.certificates.refresh();
        self.log_drops.refresh();
        self.otlp.refresh();
        self.mirrors.refresh();
        self.servers.refresh();
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text = "# metrics could not be encoded\n".to_string();
        }
        text
    }
}

/// `127.0.0.1:5000 "GET /x" 200 5B 3.1ms upstream=app id=5f0c...e1 attempts=2: 127.0.0.1:9001 connect-refused -> retry; 127.0.0.1:9002 200 -> done`,
/// then, after a 101, `upgrade=websocket up=12B down=40B for=1530.2ms ended=closed`,
/// for a gRPC call `grpc=14`, with dry-run policies `dry-run=hedge:send-copy,...`,
/// on a split route `split=canary` (and `split-moved-from=canary` when that
/// side had no usable server), and for a request its route refused
/// `refused=rate-limited`.
pub fn text_line(r: &Finished) -> String {
    let mut line = format!(
        "{} \"{} {}\" {} {}B {:.1}ms upstream={} id={} attempts={}: {}",
        r.client,
        r.method,
        r.path,
        r.status,
        r.bytes,
        r.duration.as_secs_f64() * 1000.0,
        r.upstream.as_deref().unwrap_or("-"),
        r.request_id,
        r.trace.len(),
        r.trace
    );
    if matches!(r.protocol, ClientProtocol::H2 | ClientProtocol::H3) {
        line.push_str(&format!(" proto={}", r.protocol.as_str()));
    }
    if let Some(trace_id) = &r.trace_id {
        line.push_str(&format!(" trace={trace_id}"));
    }
    if let Some(u) = &r.upgrade {
        line.push_str(&format!(
            " upgrade={} up={}B down={}B for={:.1}ms ended={}",
            u.protocol.replace(char::is_whitespace, "_"),
            u.to_upstream,
            u.to_client,
            u.duration.as_secs_f64() * 1000.0,
            u.ended.as_str()
        ));
    }
    if let Some(grpc) = &r.grpc {
        line.push_str(&format!(" grpc={}", grpc.code));
    }
    if !r.dry_runs.is_empty() {
        let would: Vec<String> = r.dry_runs.iter().map(ToString::to_string).collect();
        line.push_str(&format!(" dry-run={}", would.join(",")));
    }
    if let Some((side, moved_from)) = &r.split {
        line.push_str(&format!(" split={side}"));
        if let Some(from) = moved_from {
            line.push_str(&format!(" split-moved-from={from}"));
        }
    }
    if let Some(refused) = r.refused {
        line.push_str(&format!(" refused={refused}"));
    }
    if let Some(error) = &r.error {
        line.push_str(&format!(" error=\"{}\"", error.replace('"', "'")));
    }
    line
}

/// The same as one JSON object.
pub fn json_line(r: &Finished) -> String {
    json_value(r).to_string()
}

/// The fields of [`json_line`], as a value to add to.
pub fn json_value(r: &Finished) -> serde_json::Value {
    let attempts: Vec<_> = r.trace.records().iter().map(attempt_json).collect();
    json!({
        "client": r.client,
        "method": r.method,
        "path": r.path,
        "status": r.status,
        "bytes": r.bytes,
        "duration_ms": millis(r.duration),
        "upstream": r.upstream,
        "protocol": r.protocol.as_str(),
        "request_id": r.request_id,
        "trace_id": r.trace_id,
        "error": r.error,
        "refused": r.refused,
        "split": r.split.as_ref().map(|(side, from)| json!({ "side": side, "moved_from": from })),
        "attempts": attempts,
        "grpc_status": r.grpc.as_ref().map(|g| g.code),
        "grpc_message": r.grpc.as_ref().and_then(|g| g.message.as_deref()),
        "dry_run": r.dry_runs.iter().map(|w| json!({ "policy": w.policy, "would": w.would })).collect::<Vec<_>>(),
        "upgrade": r.upgrade.as_ref().map(|u| json!({
            "protocol": u.protocol,
            "to_upstream_bytes": u.to_upstream,
            "to_client_bytes": u.to_client,
            "duration_ms": millis(u.duration),
            "ended": u.ended.as_str(),
        })),
    })
}

fn attempt_json(a: &AttemptRecord) -> serde_json::Value {
    let (decision, reason) = match a.decision {
        Decision::Stop(reason) => ("stop", Some(reason.as_str())),
        Decision::Retry => ("retry", None),
        Decision::Done => ("done", None),
        Decision::InFlight => ("in-flight", None),
    };
    json!({
        "peer": a.peer.to_string(),
        "reused": a.reused,
        "phase": a.phase.as_str(),
        "error": a.error.map(|k| k.as_str()),
        "status": a.status.map(|s| s.as_u16()),
        "decision": decision,
        "reason": reason,
        "note": a.note,
        "started_ms": millis(a.started),
        "duration_ms": millis(a.duration),
        "backoff_ms": millis(a.backoff),
        "hedge": a.request_hedge.map(|h| json!({
            "other": h.other.to_string(),
            "copy_won": h.copy_won,
            "after_ms": millis(h.after),
        })),
        "span_id": a.span_id.map(|span| format!("{span:016x}")),
        "request_body_bytes": a.request_body_bytes,
        "response_body_bytes": a.response_body_bytes,
    })
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Why a failed attempt was not retried, and the hook's note if it gave
/// one: `("attempt-cap", "")`, `("hook-declined", "not-idempotent")`.
pub fn not_taken_reason(a: &AttemptRecord) -> Option<(&'static str, &'static str)> {
    match a.decision {
        Decision::Stop(reason) if a.error.is_some() => {
            Some((reason.as_str(), a.note.unwrap_or("")))
        }
        _ => None,
    }
}
