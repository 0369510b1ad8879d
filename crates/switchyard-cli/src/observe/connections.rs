//! Client connection metrics, read from the servers' live counts when
//! `/metrics` is scraped: connections open and parked now, and how often
//! the `max_connections` limit stopped the proxy from accepting.

use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard::server::ConnectionCounts;

/// The gauges and counter, and the servers they are read from.
#[derive(Debug, Default)]
pub(super) struct ConnectionMetrics {
    servers: Mutex<Vec<ConnectionCounts>>,
    open: Gauge,
    parked: Gauge,
    limit_reached: Counter,
}

impl ConnectionMetrics {
    /// Register the metrics in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = ConnectionMetrics::default();
        registry.register(
            "downstream_connections_open",
            "Client connections open now (parked ones included)",
            metrics.open.clone(),
        );
        registry.register(
            "downstream_connections_parked",
            "Idle keep-alive client connections parked outside hyper now",
            metrics.parked.clone(),
        );
        registry.register(
            "downstream_connection_limit_reached",
            "Times the proxy stopped accepting because max_connections were open",
            metrics.limit_reached.clone(),
        );
        metrics
    }

    /// Read `counts` (one listener's server) from now on.
    pub(super) fn watch(&self, counts: ConnectionCounts) {
        self.lock().push(counts);
    }

    /// Bring the metrics up to date with the servers' counts.
    pub(super) fn refresh(&self) {
        let servers = self.lock();
        let sum = |f: fn(&ConnectionCounts) -> usize| -> i64 {
            i64::try_from(servers.iter().map(f).sum::<usize>()).unwrap_or(i64::MAX)
        };
        self.open.set(sum(ConnectionCounts::open));
        self.parked.set(sum(ConnectionCounts::parked));
        let reached = u64::try_from(sum(ConnectionCounts::limit_reached)).unwrap_or(0);
        let counted = self.limit_reached.get();
        if reached > counted {
            self.limit_reached.inc_by(reached - counted);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ConnectionCounts>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
