//! Connection limits per upstream server (a circuit breaker, as Envoy's
//! `max_connections` and `max_pending_requests`): at most
//! `PeerOptions::max_connections` connections to one server at a time,
//! busy, idle or being made; a request that needs a new one beyond that
//! waits, as one of at most `PeerOptions::max_pending` waiting requests, for
//! a connection to that server to close or to come back to the pool. A
//! request that finds the queue full, or waits longer than the connect
//! timeout, fails fast with `connection-limit-reached` before anything was
//! sent, so it may go to another server whatever its method.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

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
    room: Notify,
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

/// Counts a request as waiting while it lives.
struct Waiting<'a>(&'a Server);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ServerSlots {
    fn server(&self, addr: SocketAddr) -> Arc<Server> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(servers.entry(addr).or_default())
    }

    /// A place for a new connection to `addr` now, if it is under
    /// `options.max_connections`.
    pub(crate) fn try_take(&self, addr: SocketAddr, options: &PeerOptions) -> Option<Slot> {
        let server = self.server(addr);
        let max = options.max_connections.unwrap_or(usize::MAX);
        server
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(server))
    }

    /// Wait until a connection to `addr` closes or comes back to the pool,
    /// as one of at most `options.max_pending` waiting requests, for at most
    /// `wait` (what is left of the connect timeout). An error says why
    /// there is no room.
    pub(crate) async fn wait_for_room(
        &self,
        addr: SocketAddr,
        options: &PeerOptions,
        wait: Duration,
    ) -> Result<()> {
        let server = self.server(addr);
        let queued = server
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < options.max_pending).then_some(pending + 1)
            });
        if queued.is_err() {
            return Err(limit_reached(addr, options, "and the wait queue is full"));
        }
        let _waiting = Waiting(&server);
        match tokio::time::timeout(wait, server.room.notified()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(limit_reached(
                addr,
                options,
                &format!("and none freed within {:?}", options.connect_timeout),
            )),
        }
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
        slots
            .wait_for_room(addr, &opts, opts.connect_timeout)
            .await
            .unwrap();
        assert!(slots.try_take(addr, &opts).is_some());
    }

    #[tokio::test]
    async fn a_full_queue_and_a_long_wait_fail_with_the_limit() {
        let slots = Arc::new(ServerSlots::default());
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let opts = options(1, 1);
        let _only = slots.try_take(addr, &opts).unwrap();
        let waiter = {
            let (slots, opts) = (Arc::clone(&slots), opts.clone());
            tokio::spawn(
                async move { slots.wait_for_room(addr, &opts, opts.connect_timeout).await },
            )
        };
        tokio::task::yield_now().await;
        let e = slots
            .wait_for_room(addr, &opts, opts.connect_timeout)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLimitReached);
        assert!(e.to_string().contains("queue is full"), "{e}");
        let e = waiter.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("none freed"), "{e}");
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
