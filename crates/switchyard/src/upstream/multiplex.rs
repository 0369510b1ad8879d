//! A shared HTTP/2 connection to an upstream, and the leases on its streams.
//!
//! One [`Multiplexed`] connection carries many requests at once, up to the
//! upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` (asked of hyper's
//! connection at each lease, as the upstream may change it). A
//! request takes a [`StreamLease`], counted until its response is over; the
//! pool hands out leases only while streams are free, so a busy connection
//! makes the next request open another (under `max_connections`) instead
//! of queueing behind it. The connection closes when nothing holds it: the
//! pool dropped it (idle too long, the upstream closed it, the server was
//! removed) and no request is using it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http2;
use tokio::task::AbortHandle;

use super::UpstreamBody;
use super::goaway::GoawaySignal;
use super::slots::Slot;
use crate::peer::PoolKey;

/// The upstream's current limit on concurrent streams, asked of the connection.
pub(crate) type StreamLimit = Box<dyn Fn() -> usize + Send + Sync>;

/// What the connection's own task tells about it.
pub(crate) struct Signals {
    /// The upstream's current stream limit.
    pub(crate) max_streams: StreamLimit,
    /// Whether the upstream sent GOAWAY ([`GoawayWatch`](super::goaway::GoawayWatch)).
    pub(crate) goaway: Arc<GoawaySignal>,
}

/// One HTTP/2 connection shared by the requests to one peer.
pub(crate) struct Multiplexed {
    sender: http2::SendRequest<UpstreamBody>,
    task: AbortHandle,
    /// Its place under the server's connection limit.
    slot: Slot,
    pub(crate) key: PoolKey,
    pub(crate) idle_timeout: Duration,
    /// Over TLS (requests carry the `https` scheme).
    pub(crate) tls: bool,
    /// The upstream's stream limit, and whether it sent GOAWAY.
    signals: Signals,
    /// Streams leased now.
    streams: AtomicUsize,
    /// Whether any stream was ever leased (a later one is on a reused connection).
    used: AtomicBool,
    /// When the last stream ended (or the connection was made).
    idle_since: Mutex<Instant>,
}

impl Multiplexed {
    pub(crate) fn new(
        sender: http2::SendRequest<UpstreamBody>,
        task: AbortHandle,
        slot: Slot,
        key: PoolKey,
        idle_timeout: Duration,
        signals: Signals,
        tls: bool,
    ) -> Arc<Self> {
        Arc::new(Multiplexed {
            sender,
            task,
            slot,
            key,
            idle_timeout,
            tls,
            signals,
            streams: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// A stream on this connection if one is free (`force`: even if not,
    /// and hyper queues the request until one is), with whether the
    /// connection carried a request before.
    pub(crate) fn lease(
        self: &Arc<Self>,
        force: bool,
    ) -> Option<(http2::SendRequest<UpstreamBody>, StreamLease, bool)> {
        if self.is_closed() {
            return None;
        }
        let max = (self.signals.max_streams)().max(1);
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (force || n < max).then_some(n + 1)
            })
            .ok()?;
        let reused = self.used.swap(true, Ordering::AcqRel);
        Some((self.sender.clone(), StreamLease(Arc::clone(self)), reused))
    }

    /// Whether the connection was failed with only unprocessed streams open
    /// (see [`goaway`](super::goaway)).
    pub(crate) fn stranded(&self) -> bool {
        self.signals.goaway.stranded()
    }

    /// The upstream's initial stream window (its SETTINGS), once known.
    pub(crate) fn initial_window(&self) -> Option<u32> {
        self.signals.goaway.initial_window()
    }

    /// Streams in use now.
    pub(crate) fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// Whether the connection takes no new stream: closed by the upstream,
    /// failed, or going away after a GOAWAY.
    pub(crate) fn is_closed(&self) -> bool {
        self.signals.goaway.going_away() || self.sender.is_closed()
    }

    /// Whether the pool should keep it: open, and busy or idle for less
    /// than its idle timeout.
    pub(crate) fn usable(&self, now: Instant) -> bool {
        if self.is_closed() {
            return false;
        }
        if self.streams() > 0 {
            return true;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        now.saturating_duration_since(since) < self.idle_timeout
    }
}

impl fmt::Debug for Multiplexed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multiplexed")
            .field("key", &self.key)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Drop for Multiplexed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One stream's hold on a [`Multiplexed`] connection; the stream is free
/// again when this drops.
#[derive(Debug)]
pub(crate) struct StreamLease(Arc<Multiplexed>);

impl StreamLease {
    pub(crate) fn connection(&self) -> &Arc<Multiplexed> {
        &self.0
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            *conn.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        // A request waiting for room at this server may take the stream.
        conn.slot.nudge(&conn.key);
    }
}
