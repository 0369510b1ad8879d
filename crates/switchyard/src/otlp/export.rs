//! The exporter: a bounded queue and a thread that sends its spans in
//! batches to the collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;

use super::RequestSpans;
use super::proto::{
    ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource, ResourceSpans, ScopeSpans,
};

/// How an [`OtlpExporter`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpOptions {
    /// The collector: `http://HOST:PORT` (spans go to `/v1/traces`) or a
    /// URL with its own path.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The most requests whose spans wait to be sent; more are dropped.
    pub queue: usize,
    /// The most spans in one request to the collector.
    pub batch: usize,
    /// The longest a span waits for its batch to fill.
    pub interval: Duration,
    /// The longest one export may take (connect, send, answer).
    pub timeout: Duration,
}

impl OtlpOptions {
    /// Defaults for `endpoint`: service `switchyard`, 4,096 requests
    /// queued, batches of up to 512 spans sent at least every second,
    /// 10 s per export.
    pub fn new(endpoint: impl Into<String>) -> OtlpOptions {
        OtlpOptions {
            endpoint: endpoint.into(),
            service_name: "switchyard".to_string(),
            queue: 4096,
            batch: 512,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }

    /// Whether `endpoint` is one [`OtlpExporter::start`] takes; why not.
    pub fn check(&self) -> Result<(), String> {
        parse_endpoint(&self.endpoint).map(|_| ())
    }
}

/// A handle on the exporter thread; clones share it. The thread ends when
/// the last handle is dropped, after sending what is queued.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    queue: SyncSender<RequestSpans>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Spans queued or being sent.
    pending: AtomicU64,
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    /// Send what is queued now, without waiting for the batch to fill.
    flush: AtomicBool,
}

/// Where the spans go.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    /// `host:port` as written, for the `Host` header and messages.
    authority: String,
    path: String,
}

impl OtlpExporter {
    /// Start the exporter thread; fails if `options.endpoint` is not an
    /// `http://` URL with a host.
    pub fn start(options: OtlpOptions) -> Result<OtlpExporter, String> {
        let endpoint = parse_endpoint(&options.endpoint)?;
        let (queue, receiver) = std::sync::mpsc::sync_channel(options.queue.max(1));
        let shared = Arc::new(Shared::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the OTLP exporter's runtime: {e}"))?;
        let sender = Sender {
            endpoint,
            options,
            shared: Arc::clone(&shared),
            runtime,
            failing: false,
        };
        std::thread::Builder::new()
            .name("switchyard-otlp".to_string())
            .spawn(move || sender.run(receiver))
            .map_err(|e| format!("cannot start the OTLP exporter's thread: {e}"))?;
        Ok(OtlpExporter { queue, shared })
    }

    /// Queue a request's spans; dropped and counted if the queue is full.
    pub fn export(&self, spans: RequestSpans) {
        let count = spans.len() as u64;
        self.shared.pending.fetch_add(count, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(spans)
        {
            self.shared.pending.fetch_sub(count, Ordering::Relaxed);
            self.shared
                .dropped_queue_full
                .fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Spans the collector took.
    pub fn exported(&self) -> u64 {
        self.shared.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped because the queue was full.
    pub fn dropped_queue_full(&self) -> u64 {
        self.shared.dropped_queue_full.load(Ordering::Relaxed)
    }

    /// Spans dropped because the collector did not take their batch.
    pub fn dropped_export_failed(&self) -> u64 {
        self.shared.dropped_export_failed.load(Ordering::Relaxed)
    }

    /// Send what is queued now and wait up to `wait` for it to be sent (or
    /// dropped); whether everything went.
    pub fn flush(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        self.shared.flush.store(true, Ordering::Relaxed);
        let done = loop {
            if self.shared.pending.load(Ordering::Relaxed) == 0 {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.shared.flush.store(false, Ordering::Relaxed);
        done
    }
}

/// `http://HOST[:PORT][/PATH]`, port 4318 and path `/v1/traces` by default.
fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let bad = |why: &str| format!("OTLP endpoint {text:?}: {why}");
    let uri: Uri = text.parse().map_err(|e| bad(&format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "only http:// is supported (send to a collector on this host or network)",
        ));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let path = match uri.path() {
        "" | "/" => "/v1/traces".to_string(),
        path => path.to_string(),
    };
    Ok(Endpoint {
        host: host.to_string(),
        port: authority.port_u16().unwrap_or(4318),
        authority: authority.to_string(),
        path,
    })
}

/// The exporter thread's state.
struct Sender {
    endpoint: Endpoint,
    options: OtlpOptions,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    /// The last export failed (said once until one works).
    failing: bool,
}

/// How often the thread looks for a flush request while it waits.
const TICK: Duration = Duration::from_millis(20);

impl Sender {
    fn run(mut self, receiver: Receiver<RequestSpans>) {
        let mut batch: Vec<RequestSpans> = Vec::new();
        let mut spans = 0;
        let mut due = Instant::now() + self.options.interval;
        loop {
            let flushing = self.shared.flush.load(Ordering::Relaxed);
            let wait = match flushing {
                true => Duration::ZERO,
                false => due.saturating_duration_since(Instant::now()).min(TICK),
            };
            let ended = match receiver.recv_timeout(wait) {
                Ok(request) => {
                    spans += request.len();
                    batch.push(request);
                    if spans < self.options.batch {
                        continue;
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !flushing && Instant::now() < due {
                        continue;
                    }
                    false
                }
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if !batch.is_empty() {
                self.send(std::mem::take(&mut batch));
                spans = 0;
            }
            due = Instant::now() + self.options.interval;
            if ended {
                return;
            }
        }
    }

    fn send(&mut self, batch: Vec<RequestSpans>) {
        let count: u64 = batch.iter().map(|r| r.len() as u64).sum();
        let body = self.encode(&batch);
        let timeout = self.options.timeout;
        let sent = self.runtime.block_on(async {
            match tokio::time::timeout(timeout, post(&self.endpoint, body)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
            }
        });
        match sent {
            Ok(()) => {
                self.shared.exported.fetch_add(count, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    tracing::warn!(endpoint = %self.endpoint.authority, "exporting spans again");
                }
            }
            Err(reason) => {
                self.shared
                    .dropped_export_failed
                    .fetch_add(count, Ordering::Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        endpoint = %self.endpoint.authority,
                        %reason,
                        "cannot export spans; dropping them (counted) until an export works"
                    );
                }
            }
        }
        self.shared.pending.fetch_sub(count, Ordering::Relaxed);
    }

    fn encode(&self, batch: &[RequestSpans]) -> Vec<u8> {
        let spans = batch.iter().flat_map(RequestSpans::spans).collect();
        let scope = InstrumentationScope {
            name: "switchyard".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let resource = Resource {
            attributes: vec![
                KeyValue::text("service.name", &self.options.service_name),
                KeyValue::text("service.version", env!("CARGO_PKG_VERSION")),
            ],
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope),
                    spans,
                }],
            }],
        }
        .encode_to_vec()
    }
}

/// One export: `POST` the encoded batch on a new connection.
async fn post(endpoint: &Endpoint, body: Vec<u8>) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = Request::post(endpoint.path.as_str())
        .header(header::HOST, endpoint.authority.as_str())
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    // The answer's body (an ExportTraceServiceResponse) says nothing we use.
    let _ = response.into_body().collect().await;
    driver.abort();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_endpoint;

    #[test]
    fn an_endpoint_without_a_path_sends_to_v1_traces() {
        let endpoint = parse_endpoint("http://127.0.0.1:4318").unwrap();
        assert_eq!(
            (
                endpoint.host.as_str(),
                endpoint.port,
                endpoint.path.as_str()
            ),
            ("127.0.0.1", 4318, "/v1/traces")
        );
        let endpoint = parse_endpoint("http://collector/custom/traces").unwrap();
        assert_eq!(
            (endpoint.port, endpoint.path.as_str()),
            (4318, "/custom/traces")
        );
        assert!(parse_endpoint("https://collector:4318").is_err());
        assert!(parse_endpoint("collector:4318").is_err());
        assert!(parse_endpoint("http://user:secret@collector:4318").is_err());
    }
}
