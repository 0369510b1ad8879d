//! Client connection metrics, read from the servers' live counts when
//! `/metrics` is scraped: connections open and parked now, and how often
//! the `max_connections` limit stopped the proxy from accepting, and how
//! many client TLS handshakes failed.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard::server::ConnectionCounts;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

/// The gauges and counter, and the servers they are read from.
#[derive(Debug, Default)]
pub(super) struct ConnectionMetrics {
    servers: Mutex<Vec<ConnectionCounts>>,
    open: Gauge,
    parked: Gauge,
    limit_reached: Counter,
    tls_handshake_failed: Counter,
    proxy_header_failed: Counter,
    /// Requests by the client's protocol: HTTP/1.x, h2, h3.
    requests: [Counter; 3],
}

impl ConnectionMetrics {
    /// Register the metrics in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let mut metrics = ConnectionMetrics::default();
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
        registry.register(
            "downstream_tls_handshake_failures",
            "Client TLS handshakes that failed or timed out",
            metrics.tls_handshake_failed.clone(),
        );
        registry.register(
            "downstream_proxy_header_failures",
            "Client connections closed for want of a valid PROXY protocol header",
            metrics.proxy_header_failed.clone(),
        );
        let by_protocol = Family::<ProtocolLabels, Counter>::default();
        for (i, protocol) in ["http/1.1", "h2", "h3"].into_iter().enumerate() {
            metrics.requests[i] = by_protocol
                .get_or_create(&ProtocolLabels { protocol })
                .clone();
        }
        registry.register(
            "downstream_requests",
            "Requests by the client's protocol: http/1.1 (HTTP/1.0 included), h2, h3",
            by_protocol,
        );
        metrics
    }

    /// Count a request from a client speaking `protocol`.
    pub(super) fn count_request(&self, protocol: super::ClientProtocol) {
        let index = match protocol {
            super::ClientProtocol::Http10 | super::ClientProtocol::Http11 => 0,
            super::ClientProtocol::H2 => 1,
            super::ClientProtocol::H3 => 2,
        };
        self.requests[index].inc();
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
        catch_up(&self.limit_reached, sum(ConnectionCounts::limit_reached));
        catch_up(
            &self.tls_handshake_failed,
            sum(ConnectionCounts::tls_handshake_failed),
        );
        catch_up(
            &self.proxy_header_failed,
            sum(ConnectionCounts::proxy_header_failed),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ConnectionCounts>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Raise `counter` to the servers' running total `total`.
pub(super) fn catch_up(counter: &Counter, total: i64) {
    let total = u64::try_from(total).unwrap_or(0);
    let counted = counter.get();
    if total > counted {
        counter.inc_by(total - counted);
    }
}
