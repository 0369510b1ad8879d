//! An OTLP/HTTP trace collector for tests: it takes `POST /v1/traces`
//! bodies (`application/x-protobuf`), decodes them, and keeps the spans.
//!
//! It decodes with message declarations of its own, written from the
//! OpenTelemetry protocol's `.proto` files rather than shared with the
//! exporter, so that a field the exporter numbers wrongly shows up here as
//! a missing value instead of round-tripping unnoticed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::TcpListener;

/// A span as the collector decoded it, IDs in lower-case hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// 2 for SERVER, 3 for CLIENT.
    pub kind: i32,
    /// Nanoseconds since the Unix epoch.
    pub start: u64,
    /// Nanoseconds since the Unix epoch.
    pub end: u64,
    /// Attributes, every value as text.
    pub attributes: BTreeMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// The status message.
    pub status_message: String,
}

impl ReceivedSpan {
    /// The attribute `key` as text, or `""`.
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    posts: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// A collector on a free loopback port that takes every export.
    pub async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("bound address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(Mutex::new(0));
        let (kept, counted) = (Arc::clone(&spans), Arc::clone(&posts));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, counted) = (Arc::clone(&kept), Arc::clone(&counted));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        take(request, Arc::clone(&kept), Arc::clone(&counted))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector {
            addr,
            spans,
            posts,
            task,
        }
    }

    /// Its `http://` endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.spans).clone()
    }

    /// How many exports (POSTs) came.
    pub fn posts(&self) -> usize {
        *lock(&self.posts)
    }

    /// Wait up to `secs` for at least `n` spans; all received.
    pub async fn wait_for_spans(&self, n: usize, secs: u64) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let spans = self.spans();
            if spans.len() >= n || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn take(
    request: Request<Incoming>,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    posts: Arc<Mutex<usize>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let right_place = request.uri().path() == "/v1/traces"
        && request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/x-protobuf");
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST)),
    };
    if !right_place {
        return Ok(answer(StatusCode::NOT_FOUND));
    }
    let Ok(decoded) = wire::ExportTraceServiceRequest::decode(body) else {
        return Ok(answer(StatusCode::BAD_REQUEST));
    };
    *lock(&posts) += 1;
    lock(&spans).extend(decoded.spans());
    Ok(answer(StatusCode::OK))
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// The messages, from `opentelemetry/proto/{collector/trace,trace,common,
/// resource}/v1/*.proto`, with only the fields the tests read.
mod wire {
    use std::collections::BTreeMap;

    use super::ReceivedSpan;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Resource {
        #[prost(message, repeated, tag = "1")]
        attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Span {
        #[prost(bytes = "vec", tag = "1")]
        trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        name: String,
        #[prost(int32, tag = "6")]
        kind: i32,
        #[prost(fixed64, tag = "7")]
        start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        attributes: Vec<KeyValue>,
        #[prost(message, optional, tag = "15")]
        status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(string, tag = "2")]
        message: String,
        #[prost(int32, tag = "3")]
        code: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct KeyValue {
        #[prost(string, tag = "1")]
        key: String,
        #[prost(message, optional, tag = "2")]
        value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct AnyValue {
        #[prost(string, optional, tag = "1")]
        string_value: Option<String>,
        #[prost(bool, optional, tag = "2")]
        bool_value: Option<bool>,
        #[prost(int64, optional, tag = "3")]
        int_value: Option<i64>,
    }

    impl AnyValue {
        fn text(&self) -> String {
            match (&self.string_value, self.bool_value, self.int_value) {
                (Some(text), _, _) => text.clone(),
                (_, Some(flag), _) => flag.to_string(),
                (_, _, Some(n)) => n.to_string(),
                _ => String::new(),
            }
        }
    }

    fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|kv| {
                let value = kv.value.as_ref().map(AnyValue::text).unwrap_or_default();
                (kv.key.clone(), value)
            })
            .collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    impl ExportTraceServiceRequest {
        pub(super) fn spans(&self) -> Vec<ReceivedSpan> {
            let mut out = Vec::new();
            for resource in &self.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .and_then(|a| a.get("service.name").cloned())
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        let status = span.status.clone().unwrap_or_default();
                        out.push(ReceivedSpan {
                            service: service.clone(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            name: span.name.clone(),
                            kind: span.kind,
                            start: span.start_time_unix_nano,
                            end: span.end_time_unix_nano,
                            attributes: attributes(&span.attributes),
                            status_code: status.code,
                            status_message: status.message,
                        });
                    }
                }
            }
            out
        }
    }
}
