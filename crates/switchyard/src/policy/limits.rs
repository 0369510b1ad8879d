//! Per-request limits the engine enforces across all attempts of a request:
//! a retry cap, a backoff between attempts, and a deadline, which the
//! client may shorten and the upstream is told (see [`super::deadline`]).
//!
//! A proxy returns them from `ProxyHttp::retry_limits` (for instance from
//! the route the request matched); anything left `None` falls back to the
//! server's `ServerOptions`. The server's `max_retries` stays a hard cap: a
//! larger per-request cap is lowered to it.

use std::time::Duration;

use http::HeaderName;

use super::backoff::Backoff;
use super::dry_run::Mode;
use super::request_hedge::HedgePolicy;

/// Limits for one request; `None` means "the server's default".
///
/// ```
/// use std::time::Duration;
/// use switchyard::policy::backoff::Backoff;
/// use switchyard::policy::limits::RetryLimits;
///
/// let limits = RetryLimits {
///     max_retries: Some(2),
///     backoff: Some(Backoff::envoy_default()),
///     deadline: Some(Duration::from_secs(5)),
///     deadline_header: None,
///     retry_when_attempt_header: false,
///     hedge: None,
///     mode: Default::default(),
/// };
/// assert_eq!(limits.retries_within(16), 2);
/// assert_eq!(RetryLimits::default().retries_within(16), 16);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryLimits {
    /// Most retries after the first attempt.
    pub max_retries: Option<usize>,
    /// Wait between attempts (none: retry at once).
    pub backoff: Option<Backoff>,
    /// Time the whole request may take, all attempts included, counted from
    /// its arrival. Attempts' timeouts are shortened to fit in it.
    pub deadline: Option<Duration>,
    /// A request header in which the client may give a shorter deadline,
    /// in milliseconds (a malformed one is answered 400), and in which the
    /// upstream is told the time left on each attempt, whatever set the
    /// deadline. `None`: no such header.
    pub deadline_header: Option<HeaderName>,
    /// Retry a request that arrived carrying `x-switchyard-attempt` (it
    /// came through another Switchyard, which retries it). `false`, the
    /// default: one layer retries, not this one too.
    pub retry_when_attempt_header: bool,
    /// Send a copy of an idempotent request to another server when the
    /// first is slow to answer (see [`super::request_hedge`]); `None`: never.
    pub hedge: Option<HedgePolicy>,
    /// [`Mode::DryRun`]: the deadline's retry skip, leaving retries to an
    /// outer proxy, and hedging only record what they would do (see
    /// [`super::dry_run`]).
    pub mode: Mode,
}

impl RetryLimits {
    /// The retry cap, bounded by the server's hard cap.
    pub fn retries_within(&self, hard_cap: usize) -> usize {
        self.max_retries.map_or(hard_cap, |cap| cap.min(hard_cap))
    }
}
