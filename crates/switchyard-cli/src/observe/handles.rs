//! The metric handles every successful request touches, kept per upstream
//! group so that counting one costs a cheap lookup, not three of
//! prometheus-client's `Family` lookups (each a lock and a SipHash of the
//! labels: 1.2k instructions per request, a fifth of the engine's own work).
//!
//! A handle is a clone of the series inside its `Family` (they share one
//! atomic), so what is counted here is what the registry encodes. A series
//! is created only when it is first counted, as with `Family` alone.

use std::sync::{Arc, RwLock};
use switchyard::PeerAddr;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use rustc_hash::FxHashMap;

/// One upstream group's handles.
#[derive(Default)]
struct GroupHandles {
    /// `requests{upstream, route, server, status}`, by route, answering
    /// server and status.
    requests: FxHashMap<(Arc<String>, Option<PeerAddr>, u16), Counter>,
    /// `attempts{upstream, server, outcome="done"}` and the server's
    /// latency histogram, by server.
    done: FxHashMap<PeerAddr, (Counter, Histogram)>,
}

/// Handles by upstream group label. The labels come from the config (and
/// `-` for no route), servers from the config or DNS, statuses from
/// upstreams: the cache holds no more series than the families it mirrors.
#[derive(Default)]
pub(super) struct HandleCache {
    groups: RwLock<FxHashMap<Arc<String>, GroupHandles>>,
}

impl HandleCache {
    /// The `requests` counter of `upstream`, `route`, the answering
    /// `server` and `status`, made by `make` the first time.
    pub(super) fn requests(
        &self,
        upstream: &Arc<String>,
        route: &Arc<String>,
        server: Option<PeerAddr>,
        status: u16,
        make: impl FnOnce() -> Counter,
    ) -> Counter {
        let key = (Arc::clone(route), server, status);
        if let Some(counter) = self.read(upstream, |g| g.requests.get(&key).cloned()) {
            return counter;
        }
        self.write(upstream, |g| {
            g.requests.entry(key).or_insert_with(make).clone()
        })
    }

    /// The `attempts{outcome="done"}` counter and the latency histogram of
    /// `server` in `upstream`, made by `make` the first time.
    pub(super) fn done(
        &self,
        upstream: &Arc<String>,
        server: PeerAddr,
        make: impl FnOnce() -> (Counter, Histogram),
    ) -> (Counter, Histogram) {
        if let Some(done) = self.read(upstream, |g| g.done.get(&server).cloned()) {
            return done;
        }
        self.write(upstream, |g| {
            g.done.entry(server).or_insert_with(make).clone()
        })
    }

    fn read<T>(
        &self,
        upstream: &Arc<String>,
        f: impl FnOnce(&GroupHandles) -> Option<T>,
    ) -> Option<T> {
        // A panic elsewhere while holding the lock leaves the map whole:
        // every write is one insert.
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        groups.get(upstream).and_then(f)
    }

    fn write<T>(&self, upstream: &Arc<String>, f: impl FnOnce(&mut GroupHandles) -> T) -> T {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        f(groups.entry(Arc::clone(upstream)).or_default())
    }
}
