//! Recent response times per server: from the start of an attempt (the
//! connect included) to its response head. The engine learns them on every
//! attempt that got a head, and asks for a server's median before a retry
//! under a deadline (`policy::deadline::too_close`).
//!
//! Each server keeps its last [`WINDOW`] samples; a quantile is not
//! answered below [`WARM`] samples, so a server nobody has heard from yet
//! is never judged by a guess.

use crate::peer_addr::PeerAddr;
use std::sync::Mutex;
use std::time::Duration;

use rustc_hash::FxHashMap;

/// Samples kept per server.
pub(crate) const WINDOW: usize = 64;

/// Samples needed before a quantile is answered.
pub(crate) const WARM: usize = 8;

/// The last [`WINDOW`] response times of each server.
#[derive(Debug, Default)]
pub(crate) struct ResponseTimes {
    peers: Mutex<FxHashMap<PeerAddr, RecentTimes<WINDOW>>>,
}

impl ResponseTimes {
    /// Learn that `peer` answered with a head after `took`.
    pub(crate) fn record(&self, peer: PeerAddr, took: Duration) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.entry(peer).or_default().push(took);
    }

    /// `peer`'s `q`-quantile (0.5: the median) of its recent response
    /// times, by nearest rank; `None` below [`WARM`] samples.
    pub(crate) fn quantile(&self, peer: PeerAddr, q: f64) -> Option<Duration> {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let times = peers.get(&peer).filter(|t| t.len() >= WARM)?;
        let rank = (q.clamp(0.0, 1.0) * times.len() as f64).ceil() as usize;
        let micros = times.nth_smallest(rank.clamp(1, times.len()) - 1)?;
        Some(Duration::from_micros(u64::from(micros)))
    }
}

/// The last `N` durations of something, in microseconds (saturating),
/// oldest overwritten first: a server's response times here, its
/// successful attempts' durations in `health/latency.rs`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecentTimes<const N: usize> {
    micros: Vec<u32>,
    next: usize,
}

impl<const N: usize> RecentTimes<N> {
    /// Keep `took`, in place of the oldest once `N` are kept.
    pub(crate) fn push(&mut self, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        if self.micros.len() < N {
            self.micros.push(micros);
        } else {
            self.micros[self.next] = micros;
        }
        self.next = (self.next + 1) % N;
    }

    /// How many are kept (at most `N`).
    pub(crate) fn len(&self) -> usize {
        self.micros.len()
    }

    /// The `index`-th smallest kept value (0: the smallest), if kept.
    pub(crate) fn nth_smallest(&self, index: usize) -> Option<u32> {
        let mut sorted = [0u32; N];
        let kept = &mut sorted[..self.micros.len()];
        kept.copy_from_slice(&self.micros);
        (index < kept.len()).then(|| *kept.select_nth_unstable(index).1)
    }

    /// Forget them all.
    pub(crate) fn clear(&mut self) {
        self.micros.clear();
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_is_answered_before_enough_samples() {
        let times = ResponseTimes::default();
        let peer: PeerAddr = "127.0.0.1:9001".parse().unwrap();
        assert_eq!(times.quantile(peer, 0.5), None);
        for _ in 0..WARM - 1 {
            times.record(peer, ms(10));
        }
        assert_eq!(times.quantile(peer, 0.5), None);
        times.record(peer, ms(10));
        assert_eq!(times.quantile(peer, 0.5), Some(ms(10)));
    }

    #[test]
    fn the_median_and_p95_are_nearest_rank_per_server() {
        let times = ResponseTimes::default();
        let a: PeerAddr = "127.0.0.1:9001".parse().unwrap();
        let b: PeerAddr = "127.0.0.1:9002".parse().unwrap();
        for n in 1..=20 {
            times.record(a, ms(n));
            times.record(b, ms(100));
        }
        assert_eq!(times.quantile(a, 0.5), Some(ms(10)));
        assert_eq!(times.quantile(a, 0.95), Some(ms(19)));
        assert_eq!(times.quantile(b, 0.5), Some(ms(100)));
    }

    #[test]
    fn old_samples_give_way_to_new_ones() {
        let times = ResponseTimes::default();
        let peer: PeerAddr = "127.0.0.1:9001".parse().unwrap();
        for _ in 0..WINDOW {
            times.record(peer, ms(500));
        }
        for _ in 0..WINDOW / 2 + 1 {
            times.record(peer, ms(5));
        }
        assert_eq!(times.quantile(peer, 0.5), Some(ms(5)));
    }
}
