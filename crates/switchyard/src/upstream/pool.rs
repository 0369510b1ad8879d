//! Idle upstream connections, keyed by peer, for reuse.
//!
//! A connection comes back to the pool only after its response body was
//! read to the end (an unfinished exchange leaves the connection unusable),
//! and never one marked not reusable (a response with ambiguous framing).
//! Checkout takes the most recently used connection (the warmest), skipping
//! those the upstream closed while they sat idle and those past their idle
//! timeout. A reaper task closes expired connections even when nobody asks.
//! Reused connections are marked so, because a failure on one means
//! something different (the upstream may have closed it as we wrote).
//! [`UpstreamPool`] lets a caller whose server set changed close the idle
//! connections to servers it no longer uses, and refuse them from then on.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::UpstreamConn;
use super::slots::ServerSlots;
use crate::peer::PoolKey;

/// How often the reaper looks for expired idle connections.
const REAP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        !self.conn.is_closed() && now.saturating_duration_since(self.since) < self.conn.idle_timeout
    }
}

#[derive(Debug, Default)]
struct Inner {
    idle: HashMap<PoolKey, Vec<Idle>>,
    /// When set, the only addresses whose connections are kept.
    only: Option<HashSet<SocketAddr>>,
}

impl Inner {
    fn keeps(&self, key: &PoolKey) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.contains(&key.address()))
    }
}

/// The idle connections of one server.
#[derive(Debug)]
pub(crate) struct Pool {
    inner: Mutex<Inner>,
    /// Every server's connections under its limit.
    pub(crate) slots: ServerSlots,
}

impl Pool {
    /// A pool (each peer's `max_idle` bounds its share), with a reaper task
    /// on the current runtime.
    pub(crate) fn start() -> Arc<Pool> {
        let pool = Arc::new(Pool {
            inner: Mutex::new(Inner::default()),
            slots: ServerSlots::default(),
        });
        let weak = Arc::downgrade(&pool);
        tokio::spawn(reap(weak));
        pool
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The warmest usable idle connection to `key`, marked reused.
    pub(crate) fn checkout(&self, key: &PoolKey, now: Instant) -> Option<UpstreamConn> {
        let mut inner = self.inner();
        let list = inner.idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if entry.usable(now) {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Return a connection whose exchange finished cleanly.
    pub(crate) fn checkin(&self, conn: UpstreamConn, now: Instant) {
        if conn.is_closed() || !conn.reusable || conn.max_idle == 0 {
            return;
        }
        let max_idle = conn.max_idle;
        let mut inner = self.inner();
        if !inner.keeps(&conn.key) {
            return;
        }
        let list = inner.idle.entry(conn.key.clone()).or_default();
        if list.len() >= max_idle {
            // Keep the warm ones: drop the longest-idle connection.
            list.remove(0);
        }
        // A request waiting for room under the server's limit can take it.
        conn.slot.wake_a_waiter();
        list.push(Idle { conn, since: now });
    }

    /// Close one idle connection to `key`, if any (its place under the
    /// server's limit is then free for a new one).
    pub(crate) fn evict_one(&self, key: &PoolKey) -> bool {
        let mut inner = self.inner();
        let evicted = inner
            .idle
            .get_mut(key)
            .and_then(|list| (!list.is_empty()).then(|| list.remove(0)));
        drop(inner);
        evicted.is_some()
    }

    /// Close idle connections that expired or that the upstream closed.
    pub(crate) fn sweep(&self, now: Instant) {
        let mut inner = self.inner();
        for list in inner.idle.values_mut() {
            list.retain(|entry| entry.usable(now));
        }
        inner.idle.retain(|_, list| !list.is_empty());
    }

    fn keep_only(&self, addresses: HashSet<SocketAddr>) -> usize {
        self.slots.keep_only(&addresses);
        let mut inner = self.inner();
        let before: usize = inner.idle.values().map(Vec::len).sum();
        inner
            .idle
            .retain(|key, _| addresses.contains(&key.address()));
        inner.only = Some(addresses);
        before - inner.idle.values().map(Vec::len).sum::<usize>()
    }

    fn idle_count(&self) -> usize {
        self.inner().idle.values().map(Vec::len).sum()
    }
}

/// A handle on a [`ProxyServer`](crate::ProxyServer)'s pool of idle
/// upstream connections, for a caller whose set of servers changes at run
/// time (a reload, a DNS answer that moved). The pool lives as long as any
/// handle: one kept after its server stopped keeps the idle connections
/// open until they time out.
///
/// ```no_run
/// # use switchyard::prelude::*;
/// # async fn f(server: ProxyServer<impl ProxyHttp>) {
/// let pool = server.upstream_pool();
/// // The servers are now these two: close pooled connections to any other.
/// let closed = pool.keep_only(["127.0.0.1:8081".parse().unwrap(), "127.0.0.1:8082".parse().unwrap()]);
/// println!("closed {closed} idle connection(s) to removed servers");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    pool: Arc<Pool>,
}

impl UpstreamPool {
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        UpstreamPool { pool }
    }

    /// Keep connections only to `addresses` from now on: idle connections to
    /// any other address close at once, and a connection to one that is
    /// busy now closes when its exchange ends instead of returning to the
    /// pool. Returns how many idle connections were closed. Each call
    /// replaces the last; until the first, every address is kept.
    pub fn keep_only(&self, addresses: impl IntoIterator<Item = SocketAddr>) -> usize {
        self.pool.keep_only(addresses.into_iter().collect())
    }

    /// Idle connections held now (those the reaper has yet to close included).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }
}

async fn reap(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.sweep(Instant::now()),
            None => return,
        }
    }
}
