//! Dry runs in the metrics: what policies in `mode = "dry-run"` would have
//! done, by policy and decision.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use switchyard::policy::dry_run::WouldHave;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DryRunLabels {
    policy: &'static str,
    would: &'static str,
}

/// The dry-run counter.
#[derive(Debug)]
pub(super) struct DryRunMetrics {
    decisions: Family<DryRunLabels, Counter>,
}

impl DryRunMetrics {
    /// Register the metric in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = DryRunMetrics {
            decisions: Family::default(),
        };
        registry.register(
            "policy_dry_run",
            "Decisions policies in mode = \"dry-run\" would have acted on, by policy and what they would have done",
            metrics.decisions.clone(),
        );
        metrics
    }

    /// Count each decision in `would`.
    pub(super) fn record(&self, would: &[WouldHave]) {
        for w in would {
            let labels = DryRunLabels {
                policy: w.policy,
                would: w.would,
            };
            self.decisions.get_or_create(&labels).inc();
        }
    }
}
