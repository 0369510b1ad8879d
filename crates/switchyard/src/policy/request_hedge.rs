//! Request hedging ("The Tail at Scale", Dean and Barroso, 2013): when a
//! server is slower than it usually is, send a copy of the request to
//! another server and take whichever answer comes first.
//!
//! A copy is sent at most once per request, during its first attempt, only
//! for a request that may be sent twice (idempotent) whose body was sent
//! whole and is still held for replay, after the first server's learned p95 response time bounded by
//! [`HedgePolicy::min`] and [`HedgePolicy::max`] (`max` while the p95 is
//! not known), and only when the retry budget allows one more retry: a
//! hedge is extra load on the upstreams, spent from the same budget as
//! retries, so hedging cannot multiply the load during an outage.
//!
//! ```
//! use std::time::Duration;
//! use switchyard::policy::request_hedge::HedgePolicy;
//!
//! let policy = HedgePolicy { min: Duration::from_millis(10), max: Duration::from_millis(500) };
//! assert_eq!(policy.delay(Some(Duration::from_millis(80))), Duration::from_millis(80));
//! assert_eq!(policy.delay(Some(Duration::from_millis(2))), Duration::from_millis(10));
//! assert_eq!(policy.delay(None), Duration::from_millis(500));
//! ```

use std::time::Duration;

use crate::body::BufferState;

/// When to send a copy: after the server's p95, within these bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgePolicy {
    /// Never sooner than this.
    pub min: Duration,
    /// Never later than this; also the wait while the p95 is not known.
    pub max: Duration,
}

impl HedgePolicy {
    /// A copy after the server's p95, but never sooner than `min` nor later
    /// than `max` (taken as `min` when it is below it).
    pub fn new(min: Duration, max: Duration) -> HedgePolicy {
        HedgePolicy {
            min,
            max: max.max(min),
        }
    }

    /// How long to wait for the first server's response head before the
    /// copy goes: its learned `p95`, bounded; `max` while it is not known.
    pub fn delay(&self, p95: Option<Duration>) -> Duration {
        p95.map_or(self.max, |p95| p95.max(self.min).min(self.max))
    }
}

/// Whether a request may be hedged now: it may be sent twice
/// (`idempotent`), and its body went upstream whole (`body_sent`) and is
/// still held for replay (`body`).
pub fn may_hedge(idempotent: bool, body_sent: bool, body: BufferState) -> bool {
    idempotent && body_sent && body != BufferState::Truncated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_copy_waits_for_the_p95_within_bounds() {
        let policy = HedgePolicy {
            min: ms(20),
            max: ms(200),
        };
        assert_eq!(policy.delay(Some(ms(50))), ms(50));
        assert_eq!(policy.delay(Some(ms(5))), ms(20));
        assert_eq!(policy.delay(Some(ms(900))), ms(200));
        assert_eq!(policy.delay(None), ms(200));
    }

    #[test]
    fn only_a_whole_replayable_idempotent_request_is_hedged() {
        use BufferState::*;
        assert!(may_hedge(true, true, Complete));
        assert!(!may_hedge(false, true, Complete), "not idempotent");
        assert!(!may_hedge(true, false, Complete), "body still going");
        assert!(!may_hedge(true, true, Truncated), "body not kept");
    }
}
