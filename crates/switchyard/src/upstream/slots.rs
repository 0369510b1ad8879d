//! Connection limits per upstream server (a circuit breaker, as Envoy's
//! `max_connections` and `max_pending_requests`): at most
//! `PeerOptions::max_connections` connections to one server at a time,
//! busy, idle or being made; a request that needs a new one beyond that
//! waits, as one of at most `PeerOptions::max_pending` waiting requests, for
//! a connection to that server to close or to come back to the pool. A
//! request that finds the queue full, or waits longer than the connect
//! timeout, fails fast with `connection-limit-reached` before anything was
//! sent, so it may go to another server whatever its method.
//!
//! Waiting is first come, first served: a connection that comes back to the
//! pool, or the place of one that closes, is handed to the longest-waiting
//! request, not left for whichever request looks next. (Left in the pool,
//! it went to newcomers while woken waiters queued again at the back: with
//! 2,000 clients over 1,024 connections the p99 latency was 341 ms and the
//! slowest request 1.0 s, against 170 ms and 0.2 s handed over in order.)

use crate::peer_addr::PeerAddr;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Link, UpstreamConn};
use crate::error::{Error, ErrorKind, Result};
use crate::peer::{PeerOptions, PoolKey};

/// The connections and waiting requests of every server.
#[derive(Debug, Default)]
pub(crate) struct ServerSlots {
    servers: Mutex<HashMap<PeerAddr, Arc<Server>>>,
}

impl ServerSlots {
    /// Every server's open connections now (its place-holders included:
    /// connections being made).
    pub(crate) fn open_by_server(&self) -> Vec<(PeerAddr, usize)> {
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers
            .iter()
            .map(|(addr, server)| (*addr, server.open.load(Ordering::Acquire)))
            .collect()
    }
}

/// What a waiting request is handed.
#[derive(Debug)]
pub(crate) enum Handed {
    /// A pooled connection for its key, ready to reuse.
    Conn(UpstreamConn),
    /// The place of a connection that closed: make a new one.
    Place(Slot),
    /// A shared HTTP/2 connection has a stream free: look in the pool.
    LookAgain,
}

/// A waiting request: what it can use, and where to hand it.
#[derive(Debug)]
struct Queued {
    /// The pooled connections it can use; `None`: only a new one.
    key: Option<PoolKey>,
    handoff: oneshot::Sender<Handed>,
}

/// One server's count of open connections, and its waiting requests in
/// arrival order.
#[derive(Debug, Default)]
struct Server {
    open: AtomicUsize,
    pending: AtomicUsize,
    queue: Mutex<VecDeque<Queued>>,
}

impl Server {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether no request waits, looked at without the queue's lock: every
    /// request is counted before it joins the queue, and looks in the pool
    /// once more after joining, so a request this misses finds what the
    /// caller leaves in the pool.
    fn nobody_waits(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Give a closed connection's place to the longest-waiting request,
    /// else free it.
    fn release(self: Arc<Self>) {
        let mut server = self;
        loop {
            let next = {
                let mut queue = server.queue();
                match pop_waiter(&mut queue, |_| true) {
                    Some(next) => next,
                    None => {
                        // Under the queue's lock: a request queueing now
                        // either is seen above or sees the place freed.
                        server.open.fetch_sub(1, Ordering::AcqRel);
                        return;
                    }
                }
            };
            match next.send(Handed::Place(Slot(Some(server)))) {
                Ok(()) => return,
                // It stopped waiting in between: try the next one.
                Err(returned) => match returned {
                    Handed::Place(mut slot) => match slot.0.take() {
                        Some(taken) => server = taken,
                        None => return,
                    },
                    Handed::Conn(_) | Handed::LookAgain => return,
                },
            }
        }
    }
}

/// The first request in `queue` still waiting that `wants` accepts; those
/// that stopped waiting are dropped on the way.
fn pop_waiter(
    queue: &mut VecDeque<Queued>,
    wants: impl Fn(&Queued) -> bool,
) -> Option<oneshot::Sender<Handed>> {
    while queue.front().is_some_and(|q| q.handoff.is_closed()) {
        queue.pop_front();
    }
    let at = queue
        .iter()
        .position(|q| !q.handoff.is_closed() && wants(q))?;
    queue.remove(at).map(|q| q.handoff)
}

/// One connection's place under its server's limit; handed on or freed on
/// drop.
#[derive(Debug)]
pub(crate) struct Slot(Option<Arc<Server>>);

impl Slot {
    /// Offer `conn`, back from an exchange and reusable, to the
    /// longest-waiting request that can use it; it comes back when no
    /// request waits at its server. When only requests for other pool keys
    /// wait, it is closed: its place goes to the first of them.
    pub(crate) fn offer(conn: UpstreamConn) -> Option<UpstreamConn> {
        let server = match &conn.link {
            Link::Http1 { slot, .. } => slot.0.as_ref(),
            Link::Http2 { .. } => None,
        };
        // Nearly always: nobody waits, and the connection goes to the pool
        // without a lock taken here.
        let Some(server) = server
            .filter(|server| !server.nobody_waits())
            .map(Arc::clone)
        else {
            return Some(conn);
        };
        let mut conn = conn;
        loop {
            let next = {
                let mut queue = server.queue();
                let matching = pop_waiter(&mut queue, |q| q.key.as_ref() == Some(&conn.key));
                match matching {
                    Some(next) => next,
                    None if queue.iter().any(|q| !q.handoff.is_closed()) => {
                        drop(queue);
                        // Closing it hands its place on (Slot's drop).
                        drop(conn);
                        return None;
                    }
                    None => return Some(conn),
                }
            };
            conn.reused = true;
            match next.send(Handed::Conn(conn)) {
                Ok(()) => return None,
                // It stopped waiting in between: try the next one.
                Err(Handed::Conn(back)) => conn = back,
                Err(_) => return None,
            }
        }
    }

    /// A stream of a shared connection to `key` is free: the
    /// longest-waiting request for `key` looks in the pool again.
    pub(crate) fn nudge(&self, key: &PoolKey) {
        let Some(server) = &self.0 else { return };
        let next = pop_waiter(&mut server.queue(), |q| q.key.as_ref() == Some(key));
        if let Some(next) = next {
            let _ = next.send(Handed::LookAgain);
        }
    }

    /// Whether a request for `key` waits at this slot's server.
    pub(crate) fn awaited(&self, key: &PoolKey) -> bool {
        self.0.as_ref().is_some_and(|server| {
            !server.nobody_waits()
                && server
                    .queue()
                    .iter()
                    .any(|q| !q.handoff.is_closed() && q.key.as_ref() == Some(key))
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(server) = self.0.take() {
            server.release();
        }
    }
}

/// A request queued for room at a server: counted among its waiters, and
/// in the queue already, so a connection that closes or comes back between
/// the caller's last look and [`Waiter::wait`] is handed to it.
pub(crate) struct Waiter {
    server: Arc<Server>,
    addr: PeerAddr,
    handed: oneshot::Receiver<Handed>,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Waiter {
    /// Wait at most `wait` (what is left of the connect timeout) for a
    /// connection or a place; an error says none came.
    pub(crate) async fn wait(mut self, wait: Duration, options: &PeerOptions) -> Result<Handed> {
        match tokio::time::timeout(wait, &mut self.handed).await {
            Ok(Ok(handed)) => Ok(handed),
            // The sender is in the server's queue as long as this waits.
            Ok(Err(_)) | Err(_) => Err(limit_reached(
                self.addr,
                options,
                &format!("and none freed within {:?}", options.connect_timeout),
            )),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Anything handed after it stopped waiting is dropped with the
        // receiver: a place goes on to the next request, a connection
        // closes (and its place goes on).
        self.server.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ServerSlots {
    fn server(&self, addr: PeerAddr) -> Arc<Server> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(servers.entry(addr).or_default())
    }

    /// A place for a new connection to `addr` now, if it is under
    /// `options.max_connections` (a limit of 0 counts as 1).
    pub(crate) fn try_take(&self, addr: PeerAddr, options: &PeerOptions) -> Option<Slot> {
        let server = self.server(addr);
        let max = options.max_connections.map_or(usize::MAX, |max| max.max(1));
        server
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(Some(server)))
    }

    /// Queue for room at `addr`, as one of at most `options.max_pending`
    /// waiting requests, for a pooled connection to `key` or (`None`) only
    /// a new one; an error when the queue is full. Look for a connection
    /// once more after this, then [`Waiter::wait`].
    pub(crate) fn queue(
        &self,
        addr: PeerAddr,
        key: Option<&PoolKey>,
        options: &PeerOptions,
    ) -> Result<Waiter> {
        let server = self.server(addr);
        let queued = server
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < options.max_pending).then_some(pending + 1)
            });
        if queued.is_err() {
            return Err(limit_reached(addr, options, "and the wait queue is full"));
        }
        let (handoff, handed) = oneshot::channel();
        server.queue().push_back(Queued {
            key: key.cloned(),
            handoff,
        });
        Ok(Waiter {
            server,
            addr,
            handed,
        })
    }

    /// Forget the servers not in `addresses` that nothing holds a place at
    /// any more (after a reload or a DNS change), so the map does not grow
    /// with every address ever dialled.
    pub(crate) fn keep_only(&self, addresses: &HashSet<PeerAddr>) {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers.retain(|addr, server| addresses.contains(addr) || Arc::strong_count(server) > 1);
    }

    /// Connections to `addr` open now.
    #[cfg(test)]
    pub(crate) fn open(&self, addr: PeerAddr) -> usize {
        self.server(addr).open.load(Ordering::Acquire)
    }
}

fn limit_reached(addr: PeerAddr, options: &PeerOptions, why: &str) -> Box<Error> {
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
    async fn at_most_max_connections_and_a_freed_place_goes_to_the_waiter() {
        let slots = ServerSlots::default();
        let addr = PeerAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let opts = options(2, 1);
        let a = slots.try_take(addr, &opts).unwrap();
        let _b = slots.try_take(addr, &opts).unwrap();
        assert!(slots.try_take(addr, &opts).is_none());
        assert_eq!(slots.open(addr), 2);
        drop(a);
        assert_eq!(slots.open(addr), 1, "no one waited: the place is free");
        let _c = slots.try_take(addr, &opts).unwrap();
        let waiter = slots.queue(addr, None, &opts).unwrap();
        drop(_c);
        // Handed on, not freed: a newcomer finds no room.
        assert_eq!(slots.open(addr), 2);
        assert!(slots.try_take(addr, &opts).is_none());
        let handed = waiter.wait(opts.connect_timeout, &opts).await.unwrap();
        assert!(matches!(handed, Handed::Place(_)), "{handed:?}");
        drop(handed);
        assert_eq!(slots.open(addr), 1);
    }

    // The clock is tokio's, paused: "not within 50 ms" costs no real time.
    #[tokio::test(start_paused = true)]
    async fn places_go_to_waiters_in_the_order_they_came() {
        // Two waiters queue while both connections are busy; the first
        // place freed goes to the first waiter, the second to the second,
        // even when the second is the first to wait.
        let slots = ServerSlots::default();
        let addr = PeerAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let opts = options(2, 2);
        let (a, b) = (
            slots.try_take(addr, &opts).unwrap(),
            slots.try_take(addr, &opts).unwrap(),
        );
        let first = slots.queue(addr, None, &opts).unwrap();
        let second = slots.queue(addr, None, &opts).unwrap();
        drop(a);
        let long = Duration::from_secs(5);
        let early = tokio::time::timeout(Duration::from_millis(50), second.wait(long, &opts)).await;
        assert!(early.is_err(), "the second waiter took the first place");
        let second = slots.queue(addr, None, &opts).unwrap();
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), async {
            first.wait(long, &opts).await.unwrap();
            second.wait(long, &opts).await.unwrap();
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_place_handed_to_a_waiter_that_then_leaves_goes_to_the_next() {
        let slots = ServerSlots::default();
        let addr = PeerAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let opts = options(1, 2);
        let only = slots.try_take(addr, &opts).unwrap();
        let gone = slots.queue(addr, None, &opts).unwrap();
        let next = slots.queue(addr, None, &opts).unwrap();
        drop(only);
        // The first waiter was handed the place but leaves without it.
        drop(gone);
        let handed = next.wait(Duration::from_secs(1), &opts).await.unwrap();
        assert!(matches!(handed, Handed::Place(_)), "{handed:?}");
        assert_eq!(slots.open(addr), 1);
    }

    // The clock is tokio's, paused: the 3 s wait passes at once, exactly.
    #[tokio::test(start_paused = true)]
    async fn a_full_queue_and_a_long_wait_fail_with_the_limit() {
        let slots = ServerSlots::default();
        let addr = PeerAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let opts = PeerOptions {
            max_connections: Some(1),
            max_pending: 1,
            ..PeerOptions::default()
        };
        let _only = slots.try_take(addr, &opts).unwrap();
        let waiter = slots.queue(addr, None, &opts).unwrap();
        let e = slots.queue(addr, None, &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLimitReached);
        assert!(e.to_string().contains("queue is full"), "{e}");
        let started = tokio::time::Instant::now();
        let e = waiter.wait(opts.connect_timeout, &opts).await.unwrap_err();
        assert!(e.to_string().contains("none freed"), "{e}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "the connect timeout"
        );
    }

    #[test]
    fn a_limit_of_0_counts_as_1_and_unlisted_idle_servers_are_forgotten() {
        let slots = ServerSlots::default();
        let addr = PeerAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
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
        let addr = PeerAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let opts = PeerOptions::default();
        let held: Vec<Slot> = (0..1000)
            .map(|_| slots.try_take(addr, &opts).unwrap())
            .collect();
        assert_eq!(slots.open(addr), held.len());
    }
}
