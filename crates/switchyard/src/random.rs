//! Randomness for spreading load and timers (backoff jitter, check jitter,
//! random and two-choice selection) and request IDs: a per-thread wyrand
//! generator seeded from std's random hasher keys, so no RNG crate is
//! needed. Not for anything secret.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher, RandomState};

thread_local! {
    /// This thread's generator state, seeded once from the OS's randomness.
    static STATE: Cell<u64> = Cell::new(RandomState::new().build_hasher().finish());
}

/// A random 64-bit number (wyrand: a few instructions, where a fresh
/// `RandomState` hash cost a hundred and was taken twice per request).
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(next);
        let product = u128::from(next) * u128::from(next ^ 0xe703_7ed1_a0b4_28db);
        (product as u64) ^ ((product >> 64) as u64)
    })
}

/// A number uniform in `[0, 1)`.
pub(crate) fn unit() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A number below `n` (`n` > 0).
pub(crate) fn below(n: usize) -> usize {
    (next_u64() % n as u64) as usize
}

/// Points spread evenly over `[0, total)`, one per call, shared between
/// threads: the golden ratio's multiples modulo 1, scaled. Not random:
/// over any run of calls each stretch of the range gets its share to
/// within a few points, without a lock or a draw (a split's sides, a
/// mirror's share).
#[derive(Debug, Default)]
pub(crate) struct EvenSpread {
    next: std::sync::atomic::AtomicU64,
}

/// The golden ratio's fractional part, in 64-bit fixed point.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl EvenSpread {
    /// The next point, below `total`.
    pub(crate) fn next_below(&self, total: u64) -> u64 {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ((u128::from(n.wrapping_mul(GOLDEN)) * u128::from(total)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::{below, next_u64, unit};

    #[test]
    fn draws_differ_and_stay_in_range() {
        let draws: std::collections::HashSet<u64> = (0..1000).map(|_| next_u64()).collect();
        assert_eq!(draws.len(), 1000);
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            seen[below(10)] += 1;
        }
        // Each of the ten values about a thousand times.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert!((0..1000).map(|_| unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
