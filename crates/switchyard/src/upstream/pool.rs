//! Idle upstream connections, keyed by peer, for reuse.
//!
//! A connection comes back to the pool only after its response body was
//! read to the end (an unfinished exchange leaves the connection unusable).
//! Checkout takes the most recently used connection (the warmest), skipping
//! those the upstream closed while they sat idle and those past their idle
//! timeout. A reaper task closes expired connections even when nobody asks.
//! Reused connections are marked so, because a failure on one means
//! something different (the upstream may have closed it as we wrote).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::UpstreamConn;
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

/// The idle connections of one server.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
}

impl Pool {
    /// A pool (each peer's `max_idle` bounds its share), with a reaper task
    /// on the current runtime.
    pub(crate) fn start() -> Arc<Pool> {
        let pool = Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&pool);
        tokio::spawn(reap(weak));
        pool
    }

    fn idle(&self) -> MutexGuard<'_, HashMap<PoolKey, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The warmest usable idle connection to `key`, marked reused.
    pub(crate) fn checkout(&self, key: &PoolKey, now: Instant) -> Option<UpstreamConn> {
        let mut idle = self.idle();
        let list = idle.get_mut(key)?;
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
        if conn.is_closed() || conn.max_idle == 0 {
            return;
        }
        let max_idle = conn.max_idle;
        let mut idle = self.idle();
        let list = idle.entry(conn.key.clone()).or_default();
        if list.len() >= max_idle {
            // Keep the warm ones: drop the longest-idle connection.
            list.remove(0);
        }
        list.push(Idle { conn, since: now });
    }

    /// Close idle connections that expired or that the upstream closed.
    pub(crate) fn sweep(&self, now: Instant) {
        let mut idle = self.idle();
        for list in idle.values_mut() {
            list.retain(|entry| entry.usable(now));
        }
        idle.retain(|_, list| !list.is_empty());
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
