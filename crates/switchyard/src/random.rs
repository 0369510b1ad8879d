//! Randomness for spreading load and timers (backoff jitter, check jitter,
//! random and two-choice selection): std's per-instance random hasher keys,
//! so no RNG crate is needed. Not for anything secret.

use std::hash::{BuildHasher, Hasher, RandomState};

/// A random 64-bit number.
pub(crate) fn next_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A number uniform in `[0, 1)`.
pub(crate) fn unit() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A number below `n` (`n` > 0).
pub(crate) fn below(n: usize) -> usize {
    (next_u64() % n as u64) as usize
}
