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
//!
//! HTTP/2 connections are shared rather than checked out: the pool keeps
//! each from when it is made, and hands out a stream of the first one with
//! a stream free (see [`multiplex`](super::multiplex)). One with no stream
//! in use for its idle timeout, or that the upstream closed (a GOAWAY
//! included), is dropped.

use std::collections::HashSet;

use crate::peer_addr::PeerAddr;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::multiplex::Multiplexed;
use super::slots::{ServerSlots, Slot};
use super::{UpstreamConn, connector};
use crate::peer::PoolKey;

/// One server's connections in a pool (see
/// [`UpstreamPool::connections_by_server`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConnections {
    /// The server.
    pub server: PeerAddr,
    /// Connections waiting for a request.
    pub idle: usize,
    /// Connections serving requests (or being made).
    pub busy: usize,
}

/// How often the reaper looks for expired idle connections.
const REAP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

impl Idle {
    fn usable(&mut self, now: Instant) -> bool {
        !self.conn.is_closed() && now.saturating_duration_since(self.since) < self.conn.idle_timeout
    }
}

#[derive(Debug, Default)]
struct Inner {
    // Keyed by server address and settings, which come from the config or
    // DNS, never from a client: a fast hasher is safe here.
    idle: FxHashMap<PoolKey, Vec<Idle>>,
    /// Shared HTTP/2 connections, busy or idle.
    shared: FxHashMap<PoolKey, Vec<Arc<Multiplexed>>>,
    /// When set, the only addresses whose connections are kept.
    only: Option<HashSet<PeerAddr>>,
}

impl Inner {
    /// Idle HTTP/1.1 connections, and shared HTTP/2 ones with no stream in use.
    fn idle_count(&self) -> usize {
        let shared = self.shared.values().flatten();
        self.idle.values().map(Vec::len).sum::<usize>()
            + shared.filter(|conn| conn.streams() == 0).count()
    }

    /// Idle connections by server, as [`idle_count`](Self::idle_count) counts them.
    fn idle_by_server(&self) -> FxHashMap<PeerAddr, usize> {
        let mut idle: FxHashMap<PeerAddr, usize> = FxHashMap::default();
        for (key, conns) in &self.idle {
            *idle.entry(key.address()).or_default() += conns.len();
        }
        for (key, conns) in &self.shared {
            *idle.entry(key.address()).or_default() +=
                conns.iter().filter(|conn| conn.streams() == 0).count();
        }
        idle
    }

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

    /// A free stream of a shared HTTP/2 connection to `key`, else the
    /// warmest usable idle HTTP/1.1 connection, marked reused.
    pub(crate) fn checkout(&self, key: &PoolKey, now: Instant) -> Option<UpstreamConn> {
        let mut inner = self.inner();
        // HTTP/1.1-only peers (most) skip the lookup.
        if key.may_be_http2()
            && let Some(shared) = inner.shared.get_mut(key)
        {
            shared.retain(|conn| conn.usable(now));
            if let Some(stream) = shared
                .iter()
                .find_map(|conn| connector::stream_of(conn, false))
            {
                return Some(stream);
            }
        }
        let list = inner.idle.get_mut(key)?;
        while let Some(mut entry) = list.pop() {
            if entry.usable(now) {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// A stream of the least busy shared HTTP/2 connection to `key`, even
    /// past the upstream's stream limit (hyper holds the request until a
    /// stream frees up): for when no new connection may be made.
    pub(crate) fn overflow(&self, key: &PoolKey) -> Option<UpstreamConn> {
        let inner = self.inner();
        let conn = inner
            .shared
            .get(key)?
            .iter()
            .filter(|conn| !conn.is_closed())
            .min_by_key(|conn| conn.streams())?;
        connector::stream_of(conn, true)
    }

    /// Share a new HTTP/2 connection: later requests to its key may take
    /// its free streams. Not kept when its peer keeps no idle connections,
    /// or its server was removed.
    pub(crate) fn share(&self, conn: &Arc<Multiplexed>, max_idle: usize) {
        let mut inner = self.inner();
        if max_idle == 0 || !inner.keeps(&conn.key) {
            return;
        }
        inner
            .shared
            .entry(conn.key.clone())
            .or_default()
            .push(Arc::clone(conn));
    }

    /// Return a connection whose exchange finished cleanly: to the
    /// longest-waiting request that can use it, else to the pool. An
    /// HTTP/2 stream just ends (its connection stays shared).
    pub(crate) fn checkin(&self, mut conn: UpstreamConn, now: Instant) {
        if conn.is_http2() || conn.is_closed() || !conn.reusable || conn.max_idle == 0 {
            return;
        }
        loop {
            conn = match Slot::offer(conn) {
                None => return,
                Some(unwanted) => unwanted,
            };
            match self.keep_idle(conn, now) {
                // A request queued between the offer and now: offer again.
                Some(awaited) => conn = awaited,
                None => return,
            }
        }
    }

    /// Keep `conn` idle; give it back if a request that can use it queued
    /// meanwhile (it looked in the pool before the connection was there).
    fn keep_idle(&self, conn: UpstreamConn, now: Instant) -> Option<UpstreamConn> {
        let max_idle = conn.max_idle;
        let mut inner = self.inner();
        if !inner.keeps(&conn.key) {
            return None;
        }
        if conn.awaited() {
            return Some(conn);
        }
        // The key is cloned only for the first connection to its server.
        let list = match inner.idle.get_mut(&conn.key) {
            Some(list) => list,
            None => inner.idle.entry(conn.key.clone()).or_default(),
        };
        // Keep the warm ones: drop the longest-idle connection (after the lock).
        let evicted = (list.len() >= max_idle).then(|| list.remove(0));
        list.push(Idle { conn, since: now });
        drop(inner);
        drop(evicted);
        None
    }

    /// Close one idle connection to `key`, if any (its place under the
    /// server's limit is then free for a new one): an HTTP/1.1 one, else a
    /// shared HTTP/2 one with no stream in use.
    pub(crate) fn evict_one(&self, key: &PoolKey) -> bool {
        let mut inner = self.inner();
        let evicted = inner
            .idle
            .get_mut(key)
            .and_then(|list| (!list.is_empty()).then(|| list.remove(0)));
        if evicted.is_some() {
            return true;
        }
        let shared = inner.shared.get_mut(key).and_then(|list| {
            let unused = list.iter().position(|conn| conn.streams() == 0)?;
            Some(list.remove(unused))
        });
        drop(inner);
        shared.is_some()
    }

    /// Close idle connections that expired or that the upstream closed.
    pub(crate) fn sweep(&self, now: Instant) {
        let mut inner = self.inner();
        for list in inner.idle.values_mut() {
            list.retain_mut(|entry| entry.usable(now));
        }
        inner.idle.retain(|_, list| !list.is_empty());
        for list in inner.shared.values_mut() {
            list.retain(|conn| conn.usable(now));
        }
        inner.shared.retain(|_, list| !list.is_empty());
    }

    fn keep_only(&self, addresses: HashSet<PeerAddr>) -> usize {
        self.slots.keep_only(&addresses);
        let mut inner = self.inner();
        let before = inner.idle_count();
        inner
            .idle
            .retain(|key, _| addresses.contains(&key.address()));
        // A busy shared connection closes once its last stream ends.
        inner
            .shared
            .retain(|key, _| addresses.contains(&key.address()));
        inner.only = Some(addresses);
        before - inner.idle_count()
    }

    fn idle_count(&self) -> usize {
        self.inner().idle_count()
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
/// let servers: [switchyard::PeerAddr; 2] = ["127.0.0.1:8081".parse().unwrap(), "unix:/run/app.sock".parse().unwrap()];
/// let closed = pool.keep_only(servers);
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
    pub fn keep_only<A: Into<PeerAddr>>(&self, addresses: impl IntoIterator<Item = A>) -> usize {
        self.pool
            .keep_only(addresses.into_iter().map(Into::into).collect())
    }

    /// Idle connections held now (those the reaper has yet to close included).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// Each server's connections now: idle ones (in the pool, or HTTP/2
    /// ones with no stream in use) and busy ones (the rest of those open,
    /// connections being made included), for metrics.
    pub fn connections_by_server(&self) -> Vec<ServerConnections> {
        let idle = self.pool.inner().idle_by_server();
        let mut servers: Vec<ServerConnections> = self
            .pool
            .slots
            .open_by_server()
            .into_iter()
            .map(|(server, open)| {
                let idle = idle.get(&server).copied().unwrap_or(0);
                ServerConnections {
                    server,
                    idle,
                    busy: open.saturating_sub(idle),
                }
            })
            .collect();
        servers.sort_by_key(|s| s.server);
        servers
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
