//! Selection algorithms: how a group picks among its eligible primaries,
//! one type each behind [`SelectionAlgorithm`], so a new one is a new type
//! (handed to [`Backends::with_algorithm`](super::Backends::with_algorithm)),
//! not another arm of a `match`. [`Selection`](super::Selection) names the
//! built-in ones.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Backend;
use super::choose::{PeerLoad, Ring, two_choices};
use crate::random;

/// How a group picks one of its primaries. The tiers, health and the
/// request's earlier attempts are the caller's
/// ([`Backends::select_avoiding`](super::Backends::select_avoiding)): the
/// algorithm sees only which primaries are eligible.
pub trait SelectionAlgorithm: Send + Sync + fmt::Debug {
    /// The index of one of `primaries` for which `eligible` holds, or
    /// `None` when none does. `first` is set for a request's first pick (a
    /// rotation moves on only then; retries look onward from there). `key`
    /// is the request's place on a hash ring, when it has one.
    fn pick(
        &self,
        primaries: &[Backend],
        eligible: &dyn Fn(usize) -> bool,
        first: bool,
        key: Option<u64>,
    ) -> Option<usize>;

    /// The load record of primary `index`, for an algorithm that weighs
    /// load (the caller begins and ends each request on it); `None` for the
    /// others, which then cost nothing per request.
    fn load(&self, _index: usize) -> Option<&PeerLoad> {
        None
    }
}

/// Each primary in turn, weights ignored.
#[derive(Debug, Default)]
pub struct RoundRobin {
    turn: AtomicUsize,
}

impl SelectionAlgorithm for RoundRobin {
    fn pick(
        &self,
        primaries: &[Backend],
        eligible: &dyn Fn(usize) -> bool,
        first: bool,
        _key: Option<u64>,
    ) -> Option<usize> {
        let n = primaries.len();
        let start = if first {
            self.turn.fetch_add(1, Ordering::Relaxed)
        } else {
            self.turn.load(Ordering::Relaxed)
        };
        (0..n).map(|i| (start + i) % n).find(|&i| eligible(i))
    }
}

/// nginx's smooth weighted round robin: a server of weight 3 gets three
/// requests for every one of a server of weight 1, spread out, not in
/// bursts.
#[derive(Debug)]
pub struct Weighted {
    /// The running weight of each primary.
    current: Mutex<Vec<i64>>,
}

impl Weighted {
    /// For a group of `primaries` primaries.
    pub fn new(primaries: usize) -> Self {
        Weighted {
            current: Mutex::new(vec![0; primaries]),
        }
    }
}

impl SelectionAlgorithm for Weighted {
    fn pick(
        &self,
        primaries: &[Backend],
        eligible: &dyn Fn(usize) -> bool,
        _first: bool,
        _key: Option<u64>,
    ) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, backend) in primaries.iter().enumerate() {
            if !eligible(i) || i >= current.len() {
                continue;
            }
            let weight = i64::from(backend.weight);
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }
}

/// A random eligible primary (weights ignored).
#[derive(Debug, Default)]
pub struct Random;

impl SelectionAlgorithm for Random {
    fn pick(
        &self,
        primaries: &[Backend],
        eligible: &dyn Fn(usize) -> bool,
        _first: bool,
        _key: Option<u64>,
    ) -> Option<usize> {
        let eligible: Vec<usize> = (0..primaries.len()).filter(|&i| eligible(i)).collect();
        (!eligible.is_empty()).then(|| eligible[random::below(eligible.len())])
    }
}

/// Power of two choices: of two random eligible primaries, the one with
/// the lower latency average × (requests in flight + 1).
#[derive(Debug)]
pub struct LeastLoaded {
    loads: Vec<PeerLoad>,
}

impl LeastLoaded {
    /// For a group of `primaries` primaries.
    pub fn new(primaries: usize) -> Self {
        LeastLoaded {
            loads: (0..primaries).map(|_| PeerLoad::default()).collect(),
        }
    }
}

impl SelectionAlgorithm for LeastLoaded {
    fn pick(
        &self,
        primaries: &[Backend],
        eligible: &dyn Fn(usize) -> bool,
        _first: bool,
        _key: Option<u64>,
    ) -> Option<usize> {
        let n = primaries.len().min(self.loads.len());
        let eligible: Vec<usize> = (0..n).filter(|&i| eligible(i)).collect();
        two_choices(&eligible, &self.loads)
    }

    fn load(&self, index: usize) -> Option<&PeerLoad> {
        self.loads.get(index)
    }
}

/// Consistent hashing (ketama, weights honoured) on the request's key: a
/// key stays on its primary while that primary is eligible. A request
/// without a key goes round robin.
#[derive(Debug)]
pub struct ConsistentHash {
    ring: Ring,
    without_key: RoundRobin,
}

impl ConsistentHash {
    /// The ring over `primaries`.
    pub fn new(primaries: &[Backend]) -> Self {
        ConsistentHash {
            ring: Ring::new(primaries),
            without_key: RoundRobin::default(),
        }
    }
}

impl SelectionAlgorithm for ConsistentHash {
    fn pick(
        &self,
        primaries: &[Backend],
        eligible: &dyn Fn(usize) -> bool,
        first: bool,
        key: Option<u64>,
    ) -> Option<usize> {
        match key {
            Some(key) => self.ring.lookup(key, eligible),
            None => self.without_key.pick(primaries, eligible, first, None),
        }
    }
}
