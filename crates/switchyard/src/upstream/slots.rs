//! Connection limits per upstream server (a circuit breaker, as Envoy's
//! `max_connections` and `max_pending_requests`): at most
//! `PeerOptions::max_connections` connections to one server at a time,
//! busy, idle or being made; a request that needs a new one beyond that
//! waits, as one of at most `PeerOptions::max_pending` waiting requests, for
//! a connection to that server to close or to come back to the pool. A
//! request that finds the queue full, or waits longer than the connect
//! timeout, fails fast with `connection-limit-reached` before anything was
//! sent, so it may go to another server whatever its method.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use crate::error::{Error, ErrorKind, Result};
use crate::peer::PeerOptions;

/// The connections and waiting requests of every server.
#[derive(Debug, Default)]
pub(crate) struct ServerSlots {
    servers: Mutex<HashMap<SocketAddr, Arc<Server>>>,
}

/// One server's count of open connections and waiting requests.
#[derive(Debug, Default)]
struct Server {
    open: AtomicUsize,
    pending: AtomicUsize,
    /// Signalled when a connection closes or goes back to the pool.
    room: Arc<Notify>,
}

/// One connection's place under its server's limit; freed on drop.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Server>);

impl Slot {
    /// The connection holding this slot came back to the pool: a request
    /// waiting for room at its server may take it. No lock: this runs for
    /// every pooled request.
    pub(crate) fn wake_a_waiter(&self) {
        self.0.room.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.room.notify_one();
    }
}

/// A request queued for room at a server: counted among its waiters, and
/// listening already, so a connection that closes or comes back between
/// the caller's last look and [`Waiter::wait`] is not missed.
pub(crate) struct Waiter {
    server: Arc<Server>,
    addr: SocketAddr,
    notified: Pin<Box<OwnedNotified>>,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Waiter {
    /// Wait at most `wait` (what is left of the connect timeout) for room;
    /// then look again. An error says no room came.
    pub(crate) async fn wait(mut self, wait: Duration, options: &PeerOptions) -> Result<()> {
        match tokio::time::timeout(wait, self.notified.as_mut()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(limit_reached(
                self.addr,
                options,
                &format!("and none freed within {:?}", options.connect_timeout),
            )),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.server.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ServerSlots {
    fn server(&self, addr: SocketAddr) -> Arc<Server> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(servers.entry(addr).or_default())
    }

    /// A place for a new connection to `addr` now, if it is under
    /// `options.max_connections` (a limit of 0 counts as 1).
    pub(crate) fn try_take(&self, addr: SocketAddr, options: &PeerOptions) -> Option<Slot> {
        let server = self.server(addr);
        let max = options.max_connections.map_or(usize::MAX, |max| max.max(1));
        server
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(server))
    }

    /// Queue for room at `addr`, as one of at most `options.max_pending`
    /// waiting requests; an error when the queue is full. Look for a
    /// connection once more after this, then [`Waiter::wait`].
    pub(crate) fn queue(&self, addr: SocketAddr, options: &PeerOptions) -> Result<Waiter> {
        let server = self.server(addr);
        let queued = server
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < options.max_pending).then_some(pending + 1)
            });
        if queued.is_err() {
            return Err(limit_reached(addr, options, "and the wait queue is full"));
        }
        let mut notified = Box::pin(Arc::clone(&server.room).notified_owned());
        notified.as_mut().enable();
        Ok(Waiter {
            server,
            addr,
            notified,
        })
    }

    /// Forget the servers not in `addresses` that nothing holds a place at
    /// any more (after a reload or a DNS change), so the map does not grow
    /// with every address ever dialled.
    pub(crate) fn keep_only(&self, addresses: &HashSet<SocketAddr>) {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers.retain(|addr, server| addresses.contains(addr) || Arc::strong_count(server) > 1);
    }

    /// Connections to `addr` open now.
    #[cfg(test)]
    pub(crate) fn open(&self, addr: SocketAddr) -> usize {
        self.server(addr).open.load(Ordering::Acquire)
    }
}

fn limit_reached(addr: SocketAddr, options: &PeerOptions, why: &str) -> Box<Error> {
    let max = options.max_connections.unwrap_or(usize::MAX);
    Error::explain(
        ErrorKind::ConnectionLimitReached,
        format!("{addr} has its {max} connection(s) in use {why}"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn options(max: usize, pending: usize) -> PeerOptions {
        PeerOptions {
            max_connections: Some(max),
            max_pending: pending,
            connect_timeout: Duration::from_millis(50),
            ..PeerOptions::default()
        }
    }

    #[tokio::test]
    async fn at_most_max_connections_and_a_freed_one_lets_a_waiter_in() {
        let slots = ServerSlots::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let opts = options(2, 1);
        let a = slots.try_take(addr, &opts).unwrap();
        let _b = slots.try_take(addr, &opts).unwrap();
        assert!(slots.try_take(addr, &opts).is_none());
        assert_eq!(slots.open(addr), 2);
        drop(a);
        assert_eq!(slots.open(addr), 1);
        // The freed slot left a wake-up behind: the next waiter goes at once.
        let waiter = slots.queue(addr, &opts).unwrap();
        waiter.wait(opts.connect_timeout, &opts).await.unwrap();
        assert!(slots.try_take(addr, &opts).is_some());
    }

    #[tokio::test]
    async fn frees_between_a_look_and_the_wait_are_not_lost() {
        // Two waiters queue (and so listen) while both connections are busy;
        // both connections close before either waits: both wake.
        let slots = ServerSlots::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let opts = options(2, 2);
        let (a, b) = (
            slots.try_take(addr, &opts).unwrap(),
            slots.try_take(addr, &opts).unwrap(),
        );
        let first = slots.queue(addr, &opts).unwrap();
        let second = slots.queue(addr, &opts).unwrap();
        drop((a, b));
        let long = Duration::from_secs(5);
        tokio::time::timeout(Duration::from_secs(1), async {
            first.wait(long, &opts).await.unwrap();
            second.wait(long, &opts).await.unwrap();
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_and_a_long_wait_fail_with_the_limit() {
        let slots = ServerSlots::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let opts = options(1, 1);
        let _only = slots.try_take(addr, &opts).unwrap();
        let waiter = slots.queue(addr, &opts).unwrap();
        let e = slots.queue(addr, &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLimitReached);
        assert!(e.to_string().contains("queue is full"), "{e}");
        let e = waiter.wait(opts.connect_timeout, &opts).await.unwrap_err();
        assert!(e.to_string().contains("none freed"), "{e}");
    }

    #[test]
    fn a_limit_of_0_counts_as_1_and_unlisted_idle_servers_are_forgotten() {
        let slots = ServerSlots::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let held = slots.try_take(addr, &options(0, 0));
        assert!(held.is_some(), "0 would refuse every connection");
        assert!(slots.try_take(addr, &options(0, 0)).is_none());
        slots.keep_only(&HashSet::new());
        assert_eq!(slots.open(addr), 1, "kept while a slot is held");
        drop(held);
        slots.keep_only(&HashSet::new());
        let servers = slots.servers.lock().unwrap();
        assert!(servers.is_empty(), "{servers:?}");
    }

    #[test]
    fn no_limit_means_no_limit() {
        let slots = ServerSlots::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let opts = PeerOptions::default();
        let held: Vec<Slot> = (0..1000)
            .map(|_| slots.try_take(addr, &opts).unwrap())
            .collect();
        assert_eq!(slots.open(addr), held.len());
    }
}
