//! Gauges per upstream server, read when `/metrics` is scraped: each
//! server's state (`switchyard_upstream_server_state`, 1 for the state it
//! is in and 0 for the others), its connections by `idle` and `busy`
//! (`switchyard_upstream_connections`), and each group's retry budget left
//! (`switchyard_retry_budget_available`).
//!
//! A server in several groups shares its connections between them (the
//! pool is per address): its connections show under each of its groups.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard::UpstreamPool;
use switchyard::group::UpstreamGroup;
use switchyard::health::{AdminState, CheckVerdict, PeerStatus};

/// The words `state` takes, one series each.
pub(super) const STATES: [&str; 7] = [
    "ready",
    "slow-start",
    "held",
    "ejected",
    "down",
    "drain",
    "maint",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerState {
    upstream: String,
    server: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Group {
    upstream: String,
}

/// The gauges, and where they are read from.
#[derive(Debug, Default)]
pub(super) struct ServerGauges {
    state: Family<ServerState, Gauge>,
    connections: Family<ServerState, Gauge>,
    budget: Family<Group, Gauge>,
    groups: Mutex<Vec<Arc<UpstreamGroup>>>,
    pools: Mutex<Vec<UpstreamPool>>,
}

impl ServerGauges {
    /// Register the gauges in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let gauges = ServerGauges::default();
        registry.register(
            "upstream_server_state",
            "Each server's state: 1 for the one it is in (ready, slow-start, held, ejected, down, drain, maint), 0 for the others",
            gauges.state.clone(),
        );
        registry.register(
            "upstream_connections",
            "Each server's upstream connections, idle (in the pool) or busy",
            gauges.connections.clone(),
        );
        registry.register(
            "retry_budget_available",
            "Retries each group's retry budget would allow now",
            gauges.budget.clone(),
        );
        gauges
    }

    /// Show `groups` from now on (at start and after each reload).
    pub(super) fn set_groups(&self, groups: Vec<Arc<UpstreamGroup>>) {
        *self.groups.lock().unwrap_or_else(|p| p.into_inner()) = groups;
    }

    /// Count `pool`'s connections from now on.
    pub(super) fn watch_pool(&self, pool: UpstreamPool) {
        self.pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pool);
    }

    /// Set every gauge from the groups and pools as they are now; servers
    /// no longer in the config have no series.
    pub(super) fn refresh(&self) {
        let groups = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut by_server = std::collections::HashMap::new();
        for pool in self.pools.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for counts in pool.connections_by_server() {
                let entry: &mut (usize, usize) = by_server.entry(counts.server).or_default();
                entry.0 += counts.idle;
                entry.1 += counts.busy;
            }
        }
        self.state.clear();
        self.connections.clear();
        self.budget.clear();
        let now = Instant::now();
        for group in &groups {
            let upstream = group.name().to_string();
            let available = group.budget().available(now);
            self.budget
                .get_or_create(&Group {
                    upstream: upstream.clone(),
                })
                .set(i64::try_from(available).unwrap_or(i64::MAX));
            for status in group.health().snapshot(now) {
                let server = status.peer.to_string();
                let current = state_word(&status);
                for state in STATES {
                    let labels = ServerState {
                        upstream: upstream.clone(),
                        server: server.clone(),
                        state,
                    };
                    self.state
                        .get_or_create(&labels)
                        .set(i64::from(state == current));
                }
                let (idle, busy) = by_server.get(&status.peer).copied().unwrap_or_default();
                for (state, count) in [("idle", idle), ("busy", busy)] {
                    let labels = ServerState {
                        upstream: upstream.clone(),
                        server: server.clone(),
                        state,
                    };
                    self.connections
                        .get_or_create(&labels)
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
        }
    }
}

/// One word for where a server stands: the operator's `drain` or
/// `maint`, else `down` (checks), `ejected`, `held` (it asked to wait),
/// `slow-start` (ramping up), or `ready`.
pub fn state_word(s: &PeerStatus) -> &'static str {
    match s.admin {
        AdminState::Drain | AdminState::Maint => s.admin.as_str(),
        AdminState::Ready if s.verdict == CheckVerdict::Down => "down",
        AdminState::Ready if s.ejected_for.is_some() => "ejected",
        AdminState::Ready if s.held_for.is_some() => "held",
        AdminState::Ready if s.slow_start_permille.is_some() => "slow-start",
        AdminState::Ready => "ready",
    }
}
