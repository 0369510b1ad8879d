//! What a group retries, and within which limits: the one bundle of retry
//! settings a group (or a route that overrides it) hands the engine.

use std::time::Duration;

use http::HeaderName;

use crate::policy::limits::RetryLimits;
use crate::policy::pushback::DEFAULT_MAX_RETRY_AFTER;
use crate::policy::rules::RetryRules;

/// The request body kept for a replay by default (64 KiB).
pub const DEFAULT_REPLAY_BUFFER: usize = 64 * 1024;

/// What is retried, and within which limits.
///
/// The defaults are the failure contract's: connect failures and resets
/// before a response head are retried on the next server, a request body of
/// up to 64 KiB is kept for the replay, no idempotency key is honoured, and
/// a `Retry-After` of up to [`DEFAULT_MAX_RETRY_AFTER`] holds its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Which failures are retried.
    pub rules: RetryRules,
    /// Cap, backoff, deadline, hedging and the dry-run mode.
    pub limits: RetryLimits,
    /// Request body bytes kept for replay.
    pub replay_buffer: usize,
    /// The header whose key makes a POST or PATCH safe to resend, if any.
    pub idempotency_key: Option<HeaderName>,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            rules: RetryRules::default(),
            limits: RetryLimits::default(),
            replay_buffer: DEFAULT_REPLAY_BUFFER,
            idempotency_key: None,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}
