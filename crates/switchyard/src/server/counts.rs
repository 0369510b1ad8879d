//! How many client connections a server has open, and how many of them are
//! parked (idle, held as a bare socket outside hyper). Read by operators and
//! tests through [`ConnectionCounts`]; kept up to date by guards that the
//! connection driver holds, so a count cannot leak when a task ends early.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A live view of a server's client connections; cheap to clone.
///
/// ```no_run
/// # use switchyard::prelude::*;
/// # async fn show<P: ProxyHttp>(server: &ProxyServer<P>) {
/// let counts = server.connection_counts();
/// println!("{} open, {} parked", counts.open(), counts.parked());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConnectionCounts {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicUsize,
    parked: AtomicUsize,
    handed_back: AtomicUsize,
    limit_reached: AtomicUsize,
    tls_handshake_failed: AtomicUsize,
    proxy_header_failed: AtomicUsize,
    address_validations: AtomicUsize,
    refused_per_client: AtomicUsize,
}

impl ConnectionCounts {
    /// Client connections open now, parked ones included.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 keep-alive connections parked now (holding no buffer).
    pub fn parked(&self) -> usize {
        self.inner.parked.load(Ordering::Relaxed)
    }

    /// Times an HTTP/1.1 connection waiting for a request reached its park
    /// time, since the server started. One with bytes of a request head
    /// already read keeps its buffer (and those bytes) instead of parking.
    pub fn handed_back(&self) -> usize {
        self.inner.handed_back.load(Ordering::Relaxed)
    }

    /// Times the server stopped accepting because `max_connections` were
    /// open, since it started.
    pub fn limit_reached(&self) -> usize {
        self.inner.limit_reached.load(Ordering::Relaxed)
    }

    /// TLS handshakes with clients that failed or timed out, since start.
    pub fn tls_handshake_failed(&self) -> usize {
        self.inner.tls_handshake_failed.load(Ordering::Relaxed)
    }

    /// Connections closed for want of a valid PROXY protocol header, since start.
    pub fn proxy_header_failed(&self) -> usize {
        self.inner.proxy_header_failed.load(Ordering::Relaxed)
    }

    /// HTTP/3 clients asked to validate their address with a Retry token
    /// (more handshakes were in progress than `retry_threshold`), since start.
    pub fn address_validations(&self) -> usize {
        self.inner.address_validations.load(Ordering::Relaxed)
    }

    /// HTTP/3 connections closed because their client had
    /// `max_connections_per_client` open, since start.
    pub fn refused_per_client(&self) -> usize {
        self.inner.refused_per_client.load(Ordering::Relaxed)
    }

    pub(super) fn address_validation_sent(&self) {
        self.inner
            .address_validations
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn refused_per_client_now(&self) {
        self.inner
            .refused_per_client
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn proxy_header_failed_now(&self) {
        self.inner
            .proxy_header_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn handshake_failed(&self) {
        self.inner
            .tls_handshake_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The server reached its connection limit `max`: count it, and say so
    /// the first time and every 1000th time after (not once per accept).
    pub(super) fn reached(&self, max: usize) {
        let times = self.inner.limit_reached.fetch_add(1, Ordering::Relaxed) + 1;
        if times % 1000 == 1 {
            tracing::warn!(
                max_connections = max,
                times,
                "client connection limit reached; accepting again when one closes"
            );
        }
    }

    /// Count one quiet connection reaching its park time.
    pub(super) fn hand_back(&self) {
        self.inner.handed_back.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a connection as open until the guard drops.
    pub(super) fn opened(&self) -> Counted {
        Counted::new(self, |c| &c.open)
    }

    /// Count a connection as parked until the guard drops.
    pub(super) fn parked_now(&self) -> Counted {
        Counted::new(self, |c| &c.parked)
    }
}

/// Holds one count up; gives it back on drop.
#[derive(Debug)]
pub(super) struct Counted {
    inner: Arc<Counters>,
    which: fn(&Counters) -> &AtomicUsize,
}

impl Counted {
    fn new(counts: &ConnectionCounts, which: fn(&Counters) -> &AtomicUsize) -> Self {
        which(&counts.inner).fetch_add(1, Ordering::Relaxed);
        Counted {
            inner: Arc::clone(&counts.inner),
            which,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.which)(&self.inner).fetch_sub(1, Ordering::Relaxed);
    }
}
