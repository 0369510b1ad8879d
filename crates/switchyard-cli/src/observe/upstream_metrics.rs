//! The per-request and per-attempt series: requests by final status (with
//! the route and the server that answered), attempts by outcome, errors,
//! retries and retries not taken, and attempt latency, each with the
//! upstream group and the server (`server="ADDR"`).
//!
//! Every label value comes from the config (group and route names) or
//! from the servers it names (addresses, DNS answers included), never from
//! a request, so the number of series is bounded by the config and its
//! DNS answers. A server gone from both keeps its series (and its label
//! text) until the process restarts.

use std::sync::{Arc, RwLock};
use switchyard::PeerAddr;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;
use switchyard::{AttemptLog, Decision};

use super::handles::HandleCache;
use super::not_taken_reason;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) upstream: Arc<String>,
    pub(super) route: Arc<String>,
    /// The server whose answer the client got (the last attempt's); empty
    /// when no attempt was made.
    pub(super) server: Arc<String>,
    pub(super) status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServerReason {
    pub(super) upstream: Arc<String>,
    pub(super) server: Arc<String>,
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonNote {
    upstream: Arc<String>,
    server: Arc<String>,
    reason: &'static str,
    note: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServerLabel {
    pub(super) upstream: Arc<String>,
    pub(super) server: Arc<String>,
}

type LatencyFamily = Family<ServerLabel, Histogram, fn() -> Histogram>;

/// Where a finished request is counted: its group's label (`-` when no
/// route matched) and its route's name.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestKey<'a> {
    /// The group's label.
    pub(super) upstream: &'a Arc<String>,
    /// The route's name (empty when unnamed).
    pub(super) route: &'a Arc<String>,
}

pub(super) struct Metrics {
    pub(super) no_upstream: Arc<String>,
    pub(super) no_route: Arc<String>,
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) attempts: Family<ServerReason, Counter>,
    retries: Family<ReasonNote, Counter>,
    retries_not_taken: Family<ReasonNote, Counter>,
    upstream_errors: Family<ServerReason, Counter>,
    pub(super) latency: LatencyFamily,
    /// What a successful request counts, looked up without the families.
    handles: HandleCache,
    /// Each server's address as a label value, made once.
    server_labels: RwLock<FxHashMap<PeerAddr, Arc<String>>>,
}

impl Metrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            no_upstream: Arc::new("-".to_string()),
            no_route: Arc::default(),
            requests: Family::default(),
            attempts: Family::default(),
            retries: Family::default(),
            retries_not_taken: Family::default(),
            upstream_errors: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            handles: HandleCache::default(),
            server_labels: RwLock::default(),
        };
        registry.register(
            "requests",
            "Requests by upstream group, route, the server that answered, and final status",
            metrics.requests.clone(),
        );
        registry.register(
            "attempts",
            "Upstream attempts by group, server and outcome (done, retry, stop)",
            metrics.attempts.clone(),
        );
        registry.register(
            "retries",
            "Retries taken, by group, the server that failed, the failure and the hook's note (next-peer, same-peer, idempotency-key, ...)",
            metrics.retries.clone(),
        );
        registry.register(
            "retries_not_taken",
            "Failed attempts not retried, by group, server, reason (attempt-cap, deadline, body-not-replayable, response-started, hook-declined, ...) and the hook's note",
            metrics.retries_not_taken.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream attempt failures by group, server and error kind",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "upstream_attempt_seconds",
            "Duration of attempts that completed, per group and server",
            metrics.latency.clone(),
        );
        metrics
    }

    /// `server` as a label value.
    pub(super) fn server_label(&self, server: PeerAddr) -> Arc<String> {
        if let Some(label) = self
            .server_labels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&server)
        {
            return Arc::clone(label);
        }
        let mut labels = self
            .server_labels
            .write()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            labels
                .entry(server)
                .or_insert_with(|| Arc::new(server.to_string())),
        )
    }

    pub(super) fn record(&self, key: RequestKey<'_>, status: u16, trace: &AttemptLog) {
        let upstream = key.upstream;
        let answered = trace.last().map(|a| a.peer);
        self.handles
            .requests(upstream, key.route, answered, status, || {
                let labels = RequestLabels {
                    upstream: Arc::clone(upstream),
                    route: Arc::clone(key.route),
                    server: answered.map_or_else(Arc::default, |s| self.server_label(s)),
                    status,
                };
                self.requests.get_or_create(&labels).clone()
            })
            .inc();
        for attempt in trace.records() {
            if attempt.decision == Decision::Done && attempt.error.is_none() {
                let (done, latency) = self.handles.done(upstream, attempt.peer, || {
                    self.done_handles(upstream, attempt.peer)
                });
                done.inc();
                latency.observe(attempt.duration.as_secs_f64());
                continue;
            }
            self.record_other(upstream, attempt);
        }
    }

    /// An attempt that failed, or was stopped: its outcome, error, and
    /// retry or why none.
    fn record_other(&self, upstream: &Arc<String>, attempt: &switchyard::AttemptRecord) {
        let server = self.server_label(attempt.peer);
        let labels = |reason: &'static str| ServerReason {
            upstream: Arc::clone(upstream),
            server: Arc::clone(&server),
            reason,
        };
        let outcome = match attempt.decision {
            Decision::Done => "done",
            Decision::Retry => "retry",
            Decision::Stop(_) => "stop",
            Decision::InFlight => "in-flight",
        };
        self.attempts.get_or_create(&labels(outcome)).inc();
        if let Some(kind) = attempt.error {
            self.upstream_errors
                .get_or_create(&labels(kind.as_str()))
                .inc();
            if attempt.decision == Decision::Retry {
                let key = ReasonNote {
                    upstream: Arc::clone(upstream),
                    server: Arc::clone(&server),
                    reason: kind.as_str(),
                    note: attempt.note.unwrap_or(""),
                };
                self.retries.get_or_create(&key).inc();
            }
        }
        if let Some((reason, note)) = not_taken_reason(attempt) {
            let key = ReasonNote {
                upstream: Arc::clone(upstream),
                server: Arc::clone(&server),
                reason,
                note,
            };
            self.retries_not_taken.get_or_create(&key).inc();
        }
        if attempt.decision == Decision::Done {
            let (_, latency) = self.handles.done(upstream, attempt.peer, || {
                self.done_handles(upstream, attempt.peer)
            });
            latency.observe(attempt.duration.as_secs_f64());
        }
    }

    /// The series [`HandleCache::done`] keeps for `server` of `upstream`.
    fn done_handles(&self, upstream: &Arc<String>, server: PeerAddr) -> (Counter, Histogram) {
        let server = self.server_label(server);
        let done = ServerReason {
            upstream: Arc::clone(upstream),
            server: Arc::clone(&server),
            reason: "done",
        };
        let label = ServerLabel {
            upstream: Arc::clone(upstream),
            server,
        };
        (
            self.attempts.get_or_create(&done).clone(),
            self.latency.get_or_create(&label).clone(),
        )
    }
}
