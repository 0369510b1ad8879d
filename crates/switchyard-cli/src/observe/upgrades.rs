//! Upgraded connections (WebSocket) in the metrics: how many, how they
//! ended, how long they lasted, and the bytes each way.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use switchyard::proxy::UpgradeRecord;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    upstream: Arc<String>,
    /// `websocket`, or `other` (the client names it: no free text in labels).
    protocol: &'static str,
    ended: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    upstream: Arc<String>,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: Arc<String>,
}

type DurationFamily = Family<UpstreamLabel, Histogram, fn() -> Histogram>;

/// The upgrade counters, bytes and durations.
#[derive(Debug)]
pub(super) struct UpgradeMetrics {
    ended: Family<EndLabels, Counter>,
    bytes: Family<DirectionLabels, Counter>,
    duration: DurationFamily,
}

impl UpgradeMetrics {
    /// Register the metrics in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = UpgradeMetrics {
            ended: Family::default(),
            bytes: Family::default(),
            // 10 ms to about 3 days.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 4.0, 14))
            }),
        };
        registry.register(
            "upgrades",
            "Upgraded connections (101) that closed, by protocol and why they ended",
            metrics.ended.clone(),
        );
        registry.register(
            "upgrade_bytes",
            "Bytes through upgraded connections, by direction (to_upstream, to_client)",
            metrics.bytes.clone(),
        );
        registry.register(
            "upgrade_seconds",
            "How long upgraded connections lasted",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Count one upgraded connection that closed.
    pub(super) fn record(&self, upstream: &Arc<String>, upgrade: &UpgradeRecord) {
        let protocol = if upgrade.protocol.eq_ignore_ascii_case("websocket") {
            "websocket"
        } else {
            "other"
        };
        let ended = EndLabels {
            upstream: Arc::clone(upstream),
            protocol,
            ended: upgrade.ended.as_str(),
        };
        self.ended.get_or_create(&ended).inc();
        for (direction, bytes) in [
            ("to_upstream", upgrade.to_upstream),
            ("to_client", upgrade.to_client),
        ] {
            let labels = DirectionLabels {
                upstream: Arc::clone(upstream),
                direction,
            };
            self.bytes.get_or_create(&labels).inc_by(bytes);
        }
        let label = UpstreamLabel {
            upstream: Arc::clone(upstream),
        };
        self.duration
            .get_or_create(&label)
            .observe(upgrade.duration.as_secs_f64());
    }
}
