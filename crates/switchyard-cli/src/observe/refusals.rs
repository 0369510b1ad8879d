//! Requests a route's guards refused (access lists, rate limits, Basic
//! authentication), by route and reason.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use switchyard::route::Refusal;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    route: Arc<String>,
    reason: &'static str,
}

/// The refusal counter.
#[derive(Debug)]
pub(super) struct RefusalMetrics {
    refused: Family<RefusalLabels, Counter>,
}

impl RefusalMetrics {
    /// Register the metric in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = RefusalMetrics {
            refused: Family::default(),
        };
        registry.register(
            "requests_refused",
            "Requests a route answered itself, refusing them: reason access-denied (403), rate-limited (429) or unauthorized (401)",
            metrics.refused.clone(),
        );
        metrics
    }

    /// Count one request `route` refused for `why`.
    pub(super) fn record(&self, route: &Arc<String>, why: Refusal) {
        let labels = RefusalLabels {
            route: Arc::clone(route),
            reason: why.as_str(),
        };
        self.refused.get_or_create(&labels).inc();
    }
}
