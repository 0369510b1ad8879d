//! From the attempt trace to outlier verdicts: what each attempt says about
//! the server it went to. The engine keeps the trace (`trace.rs`); a proxy
//! hands it to [`UpstreamHealth::report_attempts`] in `logging`, so every
//! library user gets passive health from the same mapping as the binary.
//!
//! | the attempt | outcome |
//! |---|---|
//! | connect refused, no route, other connect error, TLS handshake failed | connect failure |
//! | connect, write, response-head or response-body timeout | timeout |
//! | reset, closed or invalid response on a new connection, before or after the head | broken |
//! | the same on a reused connection before any head | none: most likely a keep-alive race |
//! | a head with a 5xx status (forwarded or rejected by a hook) | server error |
//! | a head below 500 and a body that arrived whole | success |
//! | a failure of the client or the proxy itself (a server's connection limit reached included) | by the status if a head arrived, else none |
//! | the slow first choice of a connect race the hedge won | timeout |

use std::time::Instant;

use super::{Outcome, UpstreamHealth};
use crate::error::{ErrorKind, Side};
use crate::policy::dry_run::WouldHave;
use crate::policy::rules::connection_dropped;
use crate::trace::{AttemptLog, AttemptRecord};

/// What `attempt` says about its peer, or `None` when it says nothing.
///
/// ```
/// use switchyard::health::outcome_of;
/// # use switchyard::health::Outcome;
/// # fn check(record: &switchyard::AttemptRecord) {
/// match outcome_of(record) {
///     Some(Outcome::Success) => println!("{} answered", record.peer),
///     Some(failure) => println!("{} failed: {failure:?}", record.peer),
///     None => println!("no verdict on {}", record.peer),
/// }
/// # }
/// ```
pub fn outcome_of(attempt: &AttemptRecord) -> Option<Outcome> {
    let by_status = || {
        attempt.status.map(|status| {
            if status.is_server_error() {
                Outcome::ServerError
            } else {
                Outcome::Success
            }
        })
    };
    let Some(kind) = attempt.error else {
        return by_status();
    };
    // A refused stream is a busy or restarting server, not a sick one.
    if kind.default_side() != Side::Upstream
        || kind == ErrorKind::UpstreamStatus
        || kind == ErrorKind::StreamRefused
    {
        return by_status();
    }
    if attempt.status.is_none() && attempt.reused && connection_dropped(kind) {
        return None;
    }
    Some(if kind.is_timeout() {
        Outcome::Timeout
    } else if kind.is_connect_failure() {
        Outcome::ConnectFailure
    } else {
        Outcome::Broken
    })
}

impl UpstreamHealth {
    /// Feed every attempt of a finished request to outlier detection:
    /// each attempt's [`outcome_of`] on its peer (and a success's duration,
    /// for latency outliers), and a timeout on the slow
    /// first choice of a connect race the hedge won (its connect took longer
    /// than three times its usual p99, as good as silence). Peers this
    /// health does not cover are ignored, so a request's whole trace can be
    /// passed.
    ///
    /// Returns what a dry run (`OutlierPolicy::mode`) would have done: the
    /// ejections not made (usually nothing, and then no allocation).
    pub fn report_attempts(&self, attempts: &AttemptLog, now: Instant) -> Vec<WouldHave> {
        let mut would = Vec::new();
        for attempt in attempts.records() {
            if let Some(slow) = attempt.hedged.filter(|_| attempt.hedge_won) {
                would.extend(self.report(slow, Outcome::Timeout, now));
            }
            if let Some(outcome) = outcome_of(attempt) {
                would.extend(self.report(attempt.peer, outcome, now));
                if outcome == Outcome::Success {
                    would.extend(self.report_latency(attempt.peer, attempt.duration, now));
                }
            }
        }
        would
    }
}
