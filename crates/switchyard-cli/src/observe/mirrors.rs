//! Mirrors in the metrics: what became of each route's copies, and how
//! many are in flight, read from the library's counts when scraped.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard::route::Mirror;

use super::connections::catch_up;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    route: Arc<String>,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<String>,
}

/// The mirror counters, and the mirrors they are read from.
#[derive(Debug, Default)]
pub(super) struct MirrorMetrics {
    mirrors: Mutex<Vec<(Arc<String>, Arc<Mirror>)>>,
    requests: Family<OutcomeLabels, Counter>,
    in_flight: Family<RouteLabels, Gauge>,
}

impl MirrorMetrics {
    /// Register the metrics in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = MirrorMetrics::default();
        registry.register(
            "mirror_requests",
            "Copies of requests for a route's mirror, by outcome: answered, failed (no connection, an error or no answer in time), dropped-in-flight (max_in_flight copies were in flight), dropped-body-too-large (over max_body), dropped-body-unfinished (the body was not read to its end)",
            metrics.requests.clone(),
        );
        registry.register(
            "mirror_in_flight",
            "Copies on their way to a route's mirror now",
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// Read these mirrors from now on, each by its route's name.
    pub(super) fn watch(&self, mirrors: Vec<(Arc<String>, Arc<Mirror>)>) {
        *self.mirrors.lock().unwrap_or_else(|p| p.into_inner()) = mirrors;
    }

    /// Bring the counters up to the mirrors' totals.
    pub(super) fn refresh(&self) {
        let mirrors = self.mirrors.lock().unwrap_or_else(|p| p.into_inner());
        for (route, mirror) in mirrors.iter() {
            let stats = mirror.stats();
            for (outcome, count) in [
                ("answered", &stats.answered),
                ("failed", &stats.failed),
                ("dropped-in-flight", &stats.dropped_in_flight),
                ("dropped-body-too-large", &stats.dropped_body_too_large),
                ("dropped-body-unfinished", &stats.dropped_body_unfinished),
            ] {
                let labels = OutcomeLabels {
                    route: Arc::clone(route),
                    outcome,
                };
                let total = count.load(std::sync::atomic::Ordering::Relaxed);
                catch_up(
                    &self.requests.get_or_create(&labels),
                    i64::try_from(total).unwrap_or(i64::MAX),
                );
            }
            let labels = RouteLabels {
                route: Arc::clone(route),
            };
            let now = i64::try_from(mirror.in_flight()).unwrap_or(i64::MAX);
            self.in_flight.get_or_create(&labels).set(now);
        }
    }
}
