//! Pushback in the metrics: how often a server asked for time (a 503 or
//! 429 with `Retry-After`) and was kept out of selection for it.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeldLabels {
    upstream: Arc<String>,
    /// The status that carried the `Retry-After` (503 or 429).
    status: u16,
}

/// The pushback counter.
#[derive(Debug)]
pub(super) struct PushbackMetrics {
    held: Family<HeldLabels, Counter>,
}

impl PushbackMetrics {
    /// Register the metric in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = PushbackMetrics {
            held: Family::default(),
        };
        registry.register(
            "upstream_held",
            "Times a server answered 503 or 429 with Retry-After and was kept out of selection for that long",
            metrics.held.clone(),
        );
        metrics
    }

    /// Count one server held after answering `status`.
    pub(super) fn record(&self, upstream: &Arc<String>, status: u16) {
        let labels = HeldLabels {
            upstream: Arc::clone(upstream),
            status,
        };
        self.held.get_or_create(&labels).inc();
    }
}
