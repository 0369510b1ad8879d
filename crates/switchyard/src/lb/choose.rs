//! The selection algorithms beyond round robin: random, power of two
//! choices on load, and a consistent-hash ring (ketama). Each takes the
//! eligible primaries and never panics on an empty set: it returns `None`.

use crate::peer_addr::PeerAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::Backend;
use crate::random;

/// Points on the ring per unit of weight (ketama uses 160).
const POINTS_PER_WEIGHT: u32 = 160;
/// Weight of a new latency sample in the moving average, in 1/1000.
const EWMA_NEW_PER_MILLE: u64 = 300;

/// One primary's load: requests in flight and a moving average of latency.
#[derive(Debug, Default)]
pub struct PeerLoad {
    in_flight: AtomicUsize,
    ewma_micros: AtomicU64,
}

impl PeerLoad {
    /// A request started on this peer.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request counted by [`begin`](Self::begin) did not go to this peer
    /// after all (or left no latency worth learning): uncount it.
    pub fn cancel(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A request on this peer ended after `latency`.
    pub fn end(&self, latency: Duration) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .ewma_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    (old * (1000 - EWMA_NEW_PER_MILLE) + sample * EWMA_NEW_PER_MILLE) / 1000
                })
            });
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The moving average latency (zero before any sample).
    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.ewma_micros.load(Ordering::Relaxed))
    }

    /// Lower is better: latency scaled by the queue it would join.
    fn score(&self) -> u128 {
        let latency = u128::from(self.ewma_micros.load(Ordering::Relaxed).max(1));
        latency * (self.in_flight() as u128 + 1)
    }
}

/// Power of two choices: of two random eligible peers, the less loaded.
pub(super) fn two_choices(eligible: &[usize], loads: &[PeerLoad]) -> Option<usize> {
    match eligible.len() {
        0 => None,
        1 => Some(eligible[0]),
        n => {
            let a = random::below(n);
            let b = (a + 1 + random::below(n - 1)) % n;
            let (a, b) = (eligible[a], eligible[b]);
            Some(if loads[b].score() < loads[a].score() {
                b
            } else {
                a
            })
        }
    }
}

/// A ketama consistent-hash ring over the primaries: a key keeps its peer
/// while that peer is eligible, and only the keys of a peer that leaves
/// move (to the next peer on the ring).
#[derive(Debug)]
pub(super) struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    pub(super) fn new(primaries: &[Backend]) -> Self {
        let mut points = Vec::new();
        for (index, backend) in primaries.iter().enumerate() {
            for i in 0..POINTS_PER_WEIGHT * backend.weight {
                points.push((point(backend.addr, i), index));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first eligible peer at or after `key` on the ring.
    pub(super) fn lookup(&self, key: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.points.partition_point(|(p, _)| *p < key);
        let n = self.points.len();
        (0..n)
            .map(|i| self.points[(start + i) % n].1)
            .find(|&index| eligible(index))
    }
}

fn point(addr: PeerAddr, i: u32) -> u64 {
    hash_bytes(format!("{addr}-{i}").as_bytes())
}

/// FNV-1a 64 with a final mix: stable across runs, builds and machines, so
/// every proxy instance puts a key on the same peer.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser spreads FNV's low-entropy high bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
