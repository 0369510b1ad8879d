//! May a failed attempt be tried again? Two steps, each with a named "no".
//!
//! 1. [`classify`]: may this failure be retried *at all*? The contract rules
//!    come first and no hook can override them: nothing is retried once a
//!    response byte went downstream, nor when the downstream itself failed,
//!    nor when a retry would need request-body bytes that were not kept.
//!    Then the hook's verdict (`Error::retry`, set in `fail_to_connect` or
//!    `error_while_proxy`).
//! 2. [`admit`]: is there room for another attempt? The retry cap holds
//!    whatever the hooks say (a per-request cap, itself bounded by the
//!    server's hard cap, default 16), and no retry starts that could not
//!    begin before the request's deadline. Time is passed in. One retry is
//!    outside the cap: the first after a reused pooled connection that the
//!    upstream dropped before answering (a keep-alive race, not a failure).
//!
//! [`decide`] runs both. Splitting "would retry" from "may spend an
//! attempt" follows Envoy's router: the first is about the failure, the
//! second about the request's remaining allowance.

use std::fmt;
use std::time::Instant;

use crate::body::BufferState;

#[cfg(test)]
mod tests;

/// The library's default cap on retries per request (so at most 17 attempts),
/// as Pingora's `max_retries`.
pub const DEFAULT_MAX_RETRIES: usize = 16;

/// Where in the request's life the failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePoint {
    /// No connection could be made: nothing was sent upstream.
    Connect,
    /// The connection was in use, no response head yet: the upstream may have
    /// received and processed the request.
    BeforeResponseHead,
    /// The upstream answered, and a hook judged the answer a failure (say,
    /// a 503) before anything went downstream.
    ResponseRejected,
    /// The response head (and maybe body bytes) already went downstream.
    AfterResponseStarted,
    /// The downstream client failed or went away.
    Downstream,
    /// A hook or the proxy itself failed; there is no upstream failure to retry.
    Internal,
}

impl FailurePoint {
    /// A stable kebab-case name for traces.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePoint::Connect => "connect",
            FailurePoint::BeforeResponseHead => "before-response-head",
            FailurePoint::ResponseRejected => "response-rejected",
            FailurePoint::AfterResponseStarted => "after-response-started",
            FailurePoint::Downstream => "downstream",
            FailurePoint::Internal => "internal",
        }
    }
}

/// Everything the decision depends on, gathered by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryFacts {
    /// Where the failure happened.
    pub point: FailurePoint,
    /// Whether the hook marked the error retryable.
    pub hook_retry: bool,
    /// Whether the request body could be replayed.
    pub body: BufferState,
    /// The failure was a reused pooled connection the upstream dropped
    /// before answering, and the request has not had such a retry yet: a
    /// keep-alive race, whose retry is free (the cap does not apply).
    pub stale_connection: bool,
    /// Retries already made for this request (0 after the first attempt).
    pub retries_so_far: usize,
    /// The cap on retries for this request.
    pub max_retries: usize,
    /// When the request must be over, if it has a deadline.
    pub deadline: Option<Instant>,
    /// When the next attempt would start (now, plus any backoff).
    pub next_attempt_at: Instant,
    /// The request came through another Switchyard, which retries it
    /// (see `policy::pushback::outer_layer_retries`).
    pub outer_layer_retries: bool,
}

/// Why an attempt was not followed by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The hook left the error non-retryable.
    HookDeclined,
    /// A response byte already went downstream (contract rule 2).
    ResponseStarted,
    /// The request body outgrew the replay buffer (contract rule 3).
    BodyNotReplayable,
    /// The retry cap was reached (contract rule 4).
    AttemptCap,
    /// The retry budget of the request's group is spent: retries already
    /// add their allowed share to the recent requests.
    BudgetExhausted,
    /// The request's deadline would pass before another attempt could start.
    Deadline,
    /// The time left before the request's deadline is below the learned
    /// median response time of the server the retry would go to.
    DeadlineTooClose,
    /// The downstream client failed or left; nobody is waiting for a retry.
    DownstreamFailed,
    /// A hook or the proxy failed; there is nothing to retry.
    InternalError,
    /// The request came through another Switchyard (it carries
    /// `x-switchyard-attempt`), which retries it: one layer retries.
    OuterLayerRetries,
}

impl StopReason {
    /// A stable kebab-case name for traces and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::HookDeclined => "hook-declined",
            StopReason::ResponseStarted => "response-started",
            StopReason::BodyNotReplayable => "body-not-replayable",
            StopReason::AttemptCap => "attempt-cap",
            StopReason::BudgetExhausted => "budget-exhausted",
            StopReason::Deadline => "deadline",
            StopReason::DeadlineTooClose => "deadline-too-close",
            StopReason::DownstreamFailed => "downstream-failed",
            StopReason::InternalError => "internal-error",
            StopReason::OuterLayerRetries => "outer-layer-retries",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer for one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ask `upstream_peer` again and make another attempt.
    Retry,
    /// Give up: the error goes to `fail_to_proxy`.
    Stop(StopReason),
}

/// May this failure be retried at all? Contract rules first, then the hook.
pub fn classify(facts: &RetryFacts) -> Result<(), StopReason> {
    match facts.point {
        FailurePoint::AfterResponseStarted => return Err(StopReason::ResponseStarted),
        FailurePoint::Downstream => return Err(StopReason::DownstreamFailed),
        FailurePoint::Internal => return Err(StopReason::InternalError),
        FailurePoint::Connect
        | FailurePoint::BeforeResponseHead
        | FailurePoint::ResponseRejected => {}
    }
    if facts.body == BufferState::Truncated {
        return Err(StopReason::BodyNotReplayable);
    }
    if facts.outer_layer_retries {
        return Err(StopReason::OuterLayerRetries);
    }
    if !facts.hook_retry {
        return Err(StopReason::HookDeclined);
    }
    Ok(())
}

/// Is there room for another attempt?
pub fn admit(facts: &RetryFacts) -> Result<(), StopReason> {
    if !facts.stale_connection && facts.retries_so_far >= facts.max_retries {
        return Err(StopReason::AttemptCap);
    }
    if facts
        .deadline
        .is_some_and(|deadline| facts.next_attempt_at >= deadline)
    {
        return Err(StopReason::Deadline);
    }
    Ok(())
}

/// [`classify`], then [`admit`].
pub fn decide(facts: &RetryFacts) -> Verdict {
    match classify(facts).and_then(|()| admit(facts)) {
        Ok(()) => Verdict::Retry,
        Err(reason) => Verdict::Stop(reason),
    }
}
