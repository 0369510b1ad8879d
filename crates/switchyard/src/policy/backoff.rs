//! How long to wait before a retry: exponential backoff with full jitter.
//!
//! Full jitter (AWS's "Exponential Backoff And Jitter", Envoy's default with
//! a 25 ms base) spreads the retries of many clients evenly over the window
//! instead of letting them arrive together: the delay before retry `n`
//! (0-based) is uniform in `[0, min(cap, base * 2^n))`. The random number is
//! an input, so this stays pure and testable.

use std::time::Duration;

/// Exponential backoff with full jitter.
///
/// ```
/// use std::time::Duration;
/// use switchyard::policy::backoff::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(250));
/// // With the random input at its top, the third retry waits just under 100 ms.
/// assert!(backoff.delay(2, 0.999) < Duration::from_millis(100));
/// assert_eq!(backoff.delay(2, 0.0), Duration::ZERO);
/// // Past the cap, the window stops growing.
/// assert!(backoff.delay(30, 0.999) < Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Backoff starting at `base` and never longer than `cap` (a `cap` below
    /// `base` is raised to `base`).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
        }
    }

    /// Envoy's default: 25 ms base, 250 ms cap.
    pub fn envoy_default() -> Self {
        Backoff::new(Duration::from_millis(25), Duration::from_millis(250))
    }

    /// The first window.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest window.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The delay before retry number `retry` (0 for the first retry), given
    /// `random` uniform in `[0, 1)`.
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let window = self.base.saturating_mul(factor).min(self.cap);
        window.mul_f64(random.clamp(0.0, 1.0))
    }
}

/// Where backoff delays draw their random number.
///
/// ```
/// use switchyard::policy::backoff::Jitter;
///
/// assert_eq!(Jitter::Fixed { per_mille: 500 }.draw(), 0.5);
/// assert!((0.0..1.0).contains(&Jitter::Random.draw()));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Jitter {
    /// A fresh random number for every delay (the default).
    #[default]
    Random,
    /// Every draw is `per_mille / 1000` (capped below 1): delays become
    /// predictable, for tests and reproducible experiments.
    Fixed {
        /// The number drawn, in thousandths.
        per_mille: u16,
    },
}

impl Jitter {
    /// A number in `[0, 1)`.
    pub fn draw(self) -> f64 {
        match self {
            Jitter::Random => crate::random::unit(),
            Jitter::Fixed { per_mille } => f64::from(per_mille.min(999)) / 1000.0,
        }
    }
}
