//! Request hedges in the metrics: copies sent to a second server because
//! the first was slow, and which copy's answer was used.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use switchyard::AttemptLog;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HedgeLabels {
    upstream: Arc<String>,
    /// `copy` when the hedge's answer was used, `first` when the first
    /// server answered first after all.
    won: &'static str,
}

/// The hedge counter.
#[derive(Debug)]
pub(super) struct HedgeMetrics {
    hedges: Family<HedgeLabels, Counter>,
}

impl HedgeMetrics {
    /// Register the metric in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = HedgeMetrics {
            hedges: Family::default(),
        };
        registry.register(
            "hedges",
            "Request hedges sent (a copy to a second server when the first was slow), by which copy's answer was used",
            metrics.hedges.clone(),
        );
        metrics
    }

    /// Count the hedges in one finished request's trace.
    pub(super) fn record(&self, upstream: &Arc<String>, trace: &AttemptLog) {
        for hedge in trace.records().iter().filter_map(|a| a.request_hedge) {
            let labels = HedgeLabels {
                upstream: Arc::clone(upstream),
                won: if hedge.copy_won { "copy" } else { "first" },
            };
            self.hedges.get_or_create(&labels).inc();
        }
    }
}
