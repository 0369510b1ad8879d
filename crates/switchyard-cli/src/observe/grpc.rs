//! gRPC calls in the metrics: how many ended with each `grpc-status`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    upstream: Arc<String>,
    /// The `grpc-status` code (0 OK, 14 UNAVAILABLE, ...).
    code: u32,
}

/// The gRPC status counter.
#[derive(Debug)]
pub(super) struct GrpcMetrics {
    ended: Family<StatusLabels, Counter>,
}

impl GrpcMetrics {
    /// Register the metric in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = GrpcMetrics {
            ended: Family::default(),
        };
        registry.register(
            "grpc_calls",
            "gRPC calls by the grpc-status they ended with (the upstream's, or the proxy's own for a call it failed)",
            metrics.ended.clone(),
        );
        metrics
    }

    /// Count one gRPC call that ended with `code`.
    pub(super) fn record(&self, upstream: &Arc<String>, code: u32) {
        let labels = StatusLabels {
            upstream: Arc::clone(upstream),
            code,
        };
        self.ended.get_or_create(&labels).inc();
    }
}
