//! A connection for an attempt: a ready pooled one, a free stream of a
//! shared HTTP/2 one, or a new one under the peer's connection limit (raced
//! against the peer's hedge server when it has one), waiting in the peer's
//! queue for at most its connect timeout.

use std::time::Instant;

use super::connect_hedge::{self, ConnectTimes, Winner};
use super::pool::Pool;
use super::slots::{Handed, Slot, Waiter};
use super::{UpstreamConn, connector};
use crate::error::Result;
use crate::peer::HttpPeer;

/// What [`acquire`] found.
pub(crate) struct Acquired {
    /// The connection, or why there is none.
    pub(crate) conn: Result<UpstreamConn>,
    /// Which server a connect race went to.
    pub(crate) winner: Winner,
    /// Pooled connections found closed or stuck, and passed over.
    pub(crate) stale: u32,
}

/// A pooled connection to `peer` if one is ready (and `fresh_only` is not
/// set), else a new one, raced against the peer's hedge if it has one.
pub(crate) async fn acquire(
    pool: &Pool,
    connect_times: &ConnectTimes,
    peer: &HttpPeer,
    fresh_only: bool,
) -> Acquired {
    let mut stale = 0;
    let unraced = Winner::First { raced: false };
    let (conn, winner) = match room(pool, peer, fresh_only, &mut stale).await {
        Ok(Room::Pooled(conn)) => (Ok(conn), unraced),
        Ok(Room::New(slot)) => {
            // Boxed: a new connection's future (two racing connects, a TLS
            // handshake) is large, and most requests take a pooled one; the
            // room for it would make every request's engine larger to move.
            let connecting = connect_hedge::connect(peer, connect_times, slot, pool);
            let (conn, winner) = Box::pin(connecting).await;
            if let Ok(conn) = &conn {
                share_http2(pool, peer, conn);
            }
            (conn, winner)
        }
        Err(e) => (Err(e), unraced),
    };
    Acquired {
        conn,
        winner,
        stale,
    }
}

/// A new connection to `peer` (no hedge race), for an attempt whose pooled
/// connection closed before the request was written; with the pooled
/// connections passed over on the way.
pub(crate) async fn acquire_fresh(pool: &Pool, peer: &HttpPeer) -> (Result<UpstreamConn>, u32) {
    let mut stale = 0;
    let conn = match room(pool, peer, true, &mut stale).await {
        Ok(Room::New(slot)) => connector::connect(peer, slot).await.inspect(|conn| {
            share_http2(pool, peer, conn);
        }),
        // Not asked for (fresh only), but as good as a new one.
        Ok(Room::Pooled(conn)) => Ok(conn),
        Err(e) => Err(e),
    };
    (conn, stale)
}

/// Where the next connection to a peer comes from.
enum Room {
    /// A ready pooled connection.
    Pooled(UpstreamConn),
    /// A place under the peer's connection limit for a new one.
    New(Slot),
}

/// A ready pooled connection (unless `fresh_only`), else a place for a new
/// one under the peer's connection limit, waiting for one to free up (a
/// fresh-only attempt closes an idle connection to make room) for at most
/// the connect timeout. Counts in `stale` the pooled connections it passed
/// over.
async fn room(pool: &Pool, peer: &HttpPeer, fresh_only: bool, stale: &mut u32) -> Result<Room> {
    let key = peer.pool_key();
    let give_up = Instant::now() + peer.options.connect_timeout;
    let mut waiter = None;
    loop {
        while !fresh_only && let Some(mut conn) = pool.checkout(&key, Instant::now()) {
            if ready(&mut conn, peer, stale).await {
                return Ok(Room::Pooled(conn));
            }
        }
        if let Some(slot) = pool.slots.try_take(peer.address, &peer.options) {
            return Ok(Room::New(slot));
        }
        // No new connection may be made: queue on a shared HTTP/2 one.
        if !fresh_only && let Some(stream) = pool.overflow(&key) {
            return Ok(Room::Pooled(stream));
        }
        if fresh_only && pool.evict_one(&key) {
            continue;
        }
        match waiter.take() {
            // Queue first, then look once more: a connection freed or
            // returned in between is handed to this waiter.
            None => {
                let usable = (!fresh_only).then_some(&key);
                waiter = Some(pool.slots.queue(peer.address, usable, &peer.options)?);
            }
            Some(queued) => {
                let left = give_up.saturating_duration_since(Instant::now());
                match Waiter::wait(queued, left, &peer.options).await? {
                    Handed::Place(slot) => return Ok(Room::New(slot)),
                    Handed::Conn(mut conn) => {
                        if ready(&mut conn, peer, stale).await {
                            return Ok(Room::Pooled(conn));
                        }
                    }
                    // A shared connection has a stream free: look again.
                    Handed::LookAgain => {}
                }
            }
        }
    }
}

/// Whether `conn` is ready for a request within the connect timeout
/// (waiting for a pooled connection should cost no more than a new one);
/// false, counted in `stale`, when it closed while idle or is stuck
/// (nothing was sent on it).
async fn ready(conn: &mut UpstreamConn, peer: &HttpPeer, stale: &mut u32) -> bool {
    let ready = tokio::time::timeout(peer.options.connect_timeout, conn.ready()).await;
    let ready = matches!(ready, Ok(true));
    if !ready {
        *stale += 1;
    }
    ready
}

/// A new HTTP/2 connection is shared at once: concurrent requests to the
/// peer may take its free streams.
fn share_http2(pool: &Pool, peer: &HttpPeer, conn: &UpstreamConn) {
    if let Some(multiplexed) = conn.multiplexed() {
        pool.share(multiplexed, peer.options.max_idle);
    }
}
