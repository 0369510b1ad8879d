//! A finished request as OpenTelemetry spans: one `SERVER` span for the
//! request through the proxy, and under it one `CLIENT` span per attempt
//! upstream, whose span ID is the one that attempt sent upstream in its
//! `traceparent` (so the upstream's own spans hang under the attempt that
//! reached it).
//!
//! [`RequestSpans::of_session`] copies what it needs on the request path;
//! [`RequestSpans::spans`] builds the messages on the exporter's thread.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::proto::{KeyValue, Span, SpanKind, Status, StatusCode};
use crate::error::Error;
use crate::proxy::Session;
use crate::proxy::respond::proxy_status;
use crate::proxy::trace_context::{TRACESTATE, TraceContext, new_span_id};
use crate::trace::{AttemptLog, AttemptRecord, Decision};

/// One finished request's spans, before encoding.
#[derive(Debug, Clone)]
pub struct RequestSpans {
    trace: TraceContext,
    trace_state: String,
    /// The request's own span (the proxy's).
    span_id: u64,
    start: SystemTime,
    duration: Duration,
    method: String,
    path: String,
    status: u16,
    client: String,
    request_id: String,
    route: Option<String>,
    upstream: Option<String>,
    error: Option<(&'static str, String)>,
    attempts: AttemptLog,
}

impl RequestSpans {
    /// The spans of the request `session` served, which ended with `error`
    /// if it failed; `None` if the request has no trace or its trace is not
    /// sampled (the client, or whoever started the trace, chose not to
    /// record it). Call it when the request is over (the `logging` hook).
    pub fn of_session(session: &Session, error: Option<&Error>) -> Option<RequestSpans> {
        let trace = *session.trace_context()?;
        if !trace.sampled() {
            return None;
        }
        let head = session.req_header();
        let attempts = session.attempts().clone();
        let duration = Instant::now().saturating_duration_since(attempts.start());
        let trace_state = match trace.started() {
            true => String::new(),
            false => head
                .headers
                .get(&TRACESTATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        };
        Some(RequestSpans {
            trace,
            trace_state,
            span_id: new_span_id(),
            start: SystemTime::now() - duration,
            duration,
            method: head.method.to_string(),
            path: head.uri.path().to_string(),
            status: session.response_status().map_or(0, |s| s.as_u16()),
            client: session.client_addr().ip().to_string(),
            request_id: session.request_id().to_str().unwrap_or("-").to_string(),
            route: None,
            upstream: None,
            error: error.map(|e| {
                let status = proxy_status(e).to_str().unwrap_or_default().to_string();
                (e.kind().as_str(), status)
            }),
            attempts,
        })
    }

    /// Name the route (its name, `""` for an unnamed one) and upstream
    /// group that served it, as span attributes.
    pub fn with_route(mut self, route: &str, upstream: &str) -> RequestSpans {
        self.route = Some(route.to_string());
        self.upstream = Some(upstream.to_string());
        self
    }

    /// How many spans: the request's and one per attempt.
    pub fn len(&self) -> usize {
        1 + self.attempts.len()
    }

    /// Never empty: the request's own span is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The spans, the request's first.
    pub fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::with_capacity(self.len());
        spans.push(self.request_span());
        for (n, record) in self.attempts.records().iter().enumerate() {
            spans.push(self.attempt_span(n + 1, record));
        }
        spans
    }

    fn request_span(&self) -> Span {
        let mut attributes = vec![
            KeyValue::text("http.request.method", &self.method),
            KeyValue::text("url.path", &self.path),
            KeyValue::int("http.response.status_code", i64::from(self.status)),
            KeyValue::text("client.address", &self.client),
            KeyValue::text("switchyard.request_id", &self.request_id),
            KeyValue::int("switchyard.attempts", self.attempts.len() as i64),
            KeyValue::int("switchyard.retries", self.attempts.retries() as i64),
        ];
        if let Some(route) = &self.route {
            attributes.push(KeyValue::text("switchyard.route", route));
        }
        if let Some(upstream) = &self.upstream {
            attributes.push(KeyValue::text("switchyard.upstream", upstream));
        }
        let failed = match &self.error {
            Some((kind, status)) => {
                attributes.push(KeyValue::text("error.type", *kind));
                attributes.push(KeyValue::text("switchyard.proxy_status", status));
                Some(status.clone())
            }
            None => (self.status >= 500).then(|| format!("status {}", self.status)),
        };
        Span {
            trace_id: self.trace.trace_id_bytes().to_vec(),
            span_id: self.span_id.to_be_bytes().to_vec(),
            trace_state: self.trace_state.clone(),
            parent_span_id: self
                .trace
                .parent_span_id()
                .map(|id| id.to_be_bytes().to_vec())
                .unwrap_or_default(),
            name: self.method.clone(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: unix_nanos(self.start),
            end_time_unix_nano: unix_nanos(self.start + self.duration),
            attributes,
            status: failed.map(error_status),
            flags: u32::from(self.trace.flags()),
        }
    }

    fn attempt_span(&self, n: usize, record: &AttemptRecord) -> Span {
        let mut attributes = vec![
            KeyValue::text("server.address", server_address(record.peer)),
            KeyValue::int("switchyard.attempt", n as i64),
            KeyValue::text("switchyard.attempt.outcome", outcome(record)),
            KeyValue::flag("switchyard.attempt.reused_connection", record.reused),
        ];
        if let Some(addr) = record.peer.inet() {
            attributes.push(KeyValue::int("server.port", i64::from(addr.port())));
        }
        if let Some(status) = record.status {
            attributes.push(KeyValue::int(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
        }
        if let Some(kind) = record.error {
            attributes.push(KeyValue::text("error.type", kind.as_str()));
        }
        let (decision, reason) = decision_words(record);
        attributes.push(KeyValue::text("switchyard.decision", decision));
        if let Some(reason) = reason {
            attributes.push(KeyValue::text("switchyard.decision.reason", reason));
        }
        if let Some(other) = record.hedged {
            attributes.push(KeyValue::text(
                "switchyard.connect_hedge",
                other.to_string(),
            ));
        }
        let start = self.start + record.started;
        Span {
            trace_id: self.trace.trace_id_bytes().to_vec(),
            span_id: record
                .span_id
                .unwrap_or_else(new_span_id)
                .to_be_bytes()
                .to_vec(),
            trace_state: self.trace_state.clone(),
            parent_span_id: self.span_id.to_be_bytes().to_vec(),
            name: format!("{} attempt {n}", self.method),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: unix_nanos(start),
            end_time_unix_nano: unix_nanos(start + record.duration),
            attributes,
            status: record
                .error
                .map(|kind| error_status(kind.as_str().to_string())),
            flags: u32::from(self.trace.flags()),
        }
    }
}

/// A server's address as OpenTelemetry writes it: the IP (the port is an
/// attribute of its own), or a Unix socket's path.
fn server_address(peer: crate::PeerAddr) -> String {
    match peer {
        crate::PeerAddr::Inet(addr) => addr.ip().to_string(),
        crate::PeerAddr::Unix(path) => path.path().display().to_string(),
    }
}

/// What became of an attempt: the status, the error, or how far it got.
fn outcome(record: &AttemptRecord) -> String {
    match (record.error, record.status) {
        (Some(kind), Some(status)) => format!("{} then {}", status.as_u16(), kind.as_str()),
        (Some(kind), None) => kind.as_str().to_string(),
        (None, Some(status)) => status.as_u16().to_string(),
        (None, None) => record.phase.as_str().to_string(),
    }
}

/// The engine's decision after an attempt, and why, in the words of the
/// access log.
fn decision_words(record: &AttemptRecord) -> (&'static str, Option<String>) {
    let note = record.note.map(str::to_string);
    match record.decision {
        Decision::InFlight => ("in-flight", note),
        Decision::Done => ("done", note),
        Decision::Retry => ("retry", note),
        Decision::Stop(reason) => ("stop", Some(note.unwrap_or_else(|| reason.to_string()))),
    }
}

fn error_status(message: String) -> Status {
    Status {
        message,
        code: StatusCode::Error as i32,
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
