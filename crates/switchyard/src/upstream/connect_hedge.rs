//! Connect hedging: when a new connection to the chosen peer is slow,
//! race one to the peer's hedge and keep whichever completes first.
//!
//! The delay is learned per peer from its recent connect times: p99 × 3,
//! between [`MIN_DELAY`] and half the connect timeout, and [`COLD_DELAY`]
//! until a few connects were seen (a peer that never answers, such as a
//! blackholed one, never gets samples and so is raced after 50 ms).

use crate::peer_addr::PeerAddr;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::UpstreamConn;
use super::connector;
use super::pool::Pool;
use super::slots::Slot;
use crate::error::Result;
use crate::peer::HttpPeer;

/// The shortest hedge delay.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(5);
/// The delay before enough connects were seen to learn one.
pub(crate) const COLD_DELAY: Duration = Duration::from_millis(50);
/// Connect times kept per peer.
const WINDOW: usize = 64;
/// Samples needed before the learned delay is used.
const WARM: usize = 4;

/// Recent connect times per peer.
#[derive(Debug, Default)]
pub(crate) struct ConnectTimes {
    peers: Mutex<HashMap<PeerAddr, VecDeque<Duration>>>,
}

impl ConnectTimes {
    /// Record a completed connect to `peer`.
    pub(crate) fn record(&self, peer: PeerAddr, took: Duration) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let times = peers.entry(peer).or_default();
        if times.len() == WINDOW {
            times.pop_front();
        }
        times.push_back(took);
    }

    /// How long to wait for `peer` before racing its hedge.
    pub(crate) fn delay(&self, peer: PeerAddr, connect_timeout: Duration) -> Duration {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let samples: Vec<Duration> = peers
            .get(&peer)
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default();
        drop(peers);
        hedge_delay(samples, connect_timeout)
    }
}

/// p99 × 3 of `samples`, bounded; [`COLD_DELAY`] with too few samples.
pub(crate) fn hedge_delay(mut samples: Vec<Duration>, connect_timeout: Duration) -> Duration {
    let base = if samples.len() < WARM {
        COLD_DELAY
    } else {
        samples.sort_unstable();
        let p99 = samples[(samples.len() * 99).div_ceil(100) - 1];
        p99.saturating_mul(3)
    };
    let most = (connect_timeout / 2).max(MIN_DELAY);
    base.clamp(MIN_DELAY, most)
}

/// Which peer a hedged connect ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Winner {
    /// The first choice; `raced` when the hedge was started and lost.
    First { raced: bool },
    /// The hedge.
    Hedge,
}

/// Connect to `peer` in `slot`, racing its hedge after the learned delay
/// if the hedge has room under its own connection limit then.
pub(crate) async fn connect(
    peer: &HttpPeer,
    times: &ConnectTimes,
    slot: Slot,
    pool: &Pool,
) -> (Result<UpstreamConn>, Winner) {
    let Some(hedge) = peer.hedge.as_deref() else {
        return (
            timed(peer, times, slot).await,
            Winner::First { raced: false },
        );
    };
    let delay = times.delay(peer.address, peer.options.connect_timeout);
    let mut first = pin!(timed(peer, times, slot));
    tokio::select! {
        result = &mut first => return (result, Winner::First { raced: false }),
        () = tokio::time::sleep(delay) => {}
    }
    let Some(hedge_slot) = pool.slots.try_take(hedge.address, &hedge.options) else {
        return (first.await, Winner::First { raced: false });
    };
    let second = pin!(timed(hedge, times, hedge_slot));
    match race_first_ok(first.as_mut(), second).await {
        Race::First(result) => (result, Winner::First { raced: true }),
        Race::Second(result) => (result, Winner::Hedge),
    }
}

/// A connect whose time, when it succeeds, is learned.
async fn timed(peer: &HttpPeer, times: &ConnectTimes, slot: Slot) -> Result<UpstreamConn> {
    let started = Instant::now();
    let conn = connector::connect(peer, slot).await?;
    times.record(peer.address, started.elapsed());
    Ok(conn)
}

/// Which future's result [`race_first_ok`] took.
enum Race<T> {
    First(Result<T>),
    Second(Result<T>),
}

/// Race two fallible futures: the first success wins; if one fails, the
/// other's result is taken, whatever it is.
async fn race_first_ok<T, A, B>(mut a: Pin<&mut A>, mut b: Pin<&mut B>) -> Race<T>
where
    A: Future<Output = Result<T>>,
    B: Future<Output = Result<T>>,
{
    tokio::select! {
        result = &mut a => match result {
            Ok(conn) => Race::First(Ok(conn)),
            Err(_) => Race::Second(b.await),
        },
        result = &mut b => match result {
            Ok(conn) => Race::Second(Ok(conn)),
            Err(_) => Race::First(a.await),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_delay_is_three_times_the_p99_within_bounds() {
        let timeout = Duration::from_secs(3);
        assert_eq!(hedge_delay(vec![], timeout), COLD_DELAY);
        assert_eq!(
            hedge_delay(vec![ms(1); 3], timeout),
            COLD_DELAY,
            "too few samples"
        );
        let mut samples = vec![ms(2); 99];
        samples.push(ms(10));
        assert_eq!(
            hedge_delay(samples, timeout),
            ms(6),
            "p99 of 100 is the 99th"
        );
        assert_eq!(
            hedge_delay(vec![Duration::from_micros(100); 10], timeout),
            MIN_DELAY
        );
        assert_eq!(
            hedge_delay(vec![ms(900); 10], timeout),
            ms(1500),
            "half the timeout"
        );
        assert_eq!(hedge_delay(vec![ms(900); 10], ms(4)), MIN_DELAY);
    }

    #[test]
    fn connect_times_keep_a_window() {
        let times = ConnectTimes::default();
        let peer = PeerAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        for _ in 0..WINDOW {
            times.record(peer, ms(100));
        }
        for _ in 0..WINDOW {
            times.record(peer, ms(1));
        }
        assert_eq!(times.delay(peer, Duration::from_secs(3)), MIN_DELAY);
    }
}
