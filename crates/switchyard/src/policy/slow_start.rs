//! Slow start: a server coming back (its checks pass again, its ejection
//! ended, or it newly appeared in DNS) takes a growing share of the traffic
//! over `slow_start`, instead of a full share at once: a server that just
//! restarted has cold caches and connection pools, and a full share can
//! knock it over again.
//!
//! The share grows linearly from [`MIN_SHARE`] to 1 over the slow-start
//! time. Selection keeps a ramping server it picked with that probability,
//! and otherwise picks again among the servers not ramping, so the ramp
//! works under every selection (round robin, weighted, random, least
//! loaded).
//!
//! ```
//! use std::time::Duration;
//! use switchyard::policy::slow_start::{admit, share};
//!
//! let ramp = Duration::from_secs(10);
//! assert_eq!(share(Duration::from_secs(5), ramp), Some(0.5));
//! assert_eq!(share(Duration::from_secs(10), ramp), None, "ramp over");
//! assert!(admit(0.5, 0.2) && !admit(0.5, 0.7));
//! ```

use std::time::Duration;

/// The share a server has the moment it comes back.
pub const MIN_SHARE: f64 = 0.1;

/// The share of its full traffic a server back for `since_back` takes
/// under a slow start of `slow_start`; `None` when the ramp is over (or
/// slow start is off: zero).
pub fn share(since_back: Duration, slow_start: Duration) -> Option<f64> {
    if slow_start.is_zero() || since_back >= slow_start {
        return None;
    }
    Some((since_back.as_secs_f64() / slow_start.as_secs_f64()).max(MIN_SHARE))
}

/// Whether a pick of a server with `share` stands, for a uniform `draw`
/// in `[0, 1)`.
pub fn admit(share: f64, draw: f64) -> bool {
    draw < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_ramps_from_the_floor_to_whole() {
        let ramp = Duration::from_secs(10);
        assert_eq!(share(Duration::ZERO, ramp), Some(MIN_SHARE));
        assert_eq!(share(Duration::from_millis(500), ramp), Some(MIN_SHARE));
        assert_eq!(share(Duration::from_secs(2), ramp), Some(0.2));
        assert_eq!(share(Duration::from_secs(9), ramp), Some(0.9));
        assert_eq!(share(Duration::from_secs(11), ramp), None);
        assert_eq!(share(Duration::ZERO, Duration::ZERO), None, "off");
    }

    #[test]
    fn a_pick_stands_with_the_probability_of_the_share() {
        assert!(admit(0.1, 0.0));
        assert!(!admit(0.1, 0.1));
        assert!(admit(1.0, 0.999));
    }
}
