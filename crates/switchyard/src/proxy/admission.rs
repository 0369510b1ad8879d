//! A request's allowance for retries: its cap, deadline and backoff, and how
//! much of it is spent. The attempt loop (`engine.rs`) and a rejected
//! response (`attempt.rs`) judge by the same numbers, through the pure
//! `policy::retry::decide`.
//!
//! One retry may be free: the first one of an idempotent request after a
//! reused pooled connection that the upstream dropped before answering
//! (closed, reset, or the write failed). That is a keep-alive race, not a failure of the server, so its
//! retry goes at once, on a fresh connection, and counts against neither the
//! cap nor the backoff schedule: a proxy allowed one attempt per request
//! must not show its clients errors from keep-alive races. The hook still
//! decides whether it is retried at all.
//!
//! Every other retry also draws on the request's retry budget, if it has
//! one: [`Admission::admit`] is the one place a retry is spent.
//!
//! The request's deadline is set once from the route, the gRPC timeout and
//! the client's deadline header ([`request_deadline`]; the decisions are in
//! `policy::deadline`), checked before the first attempt, and before each
//! retry against the learned median response time of the server the retry
//! would go to ([`choose_next`]). A request stopped by its deadline is
//! answered 504 ([`exceeded`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::engine_ctx::EngineCtx;
use super::{ProxyHttp, Session, grpc};
use crate::body::BufferState;
use crate::error::{Error, ErrorKind, Result};
use crate::peer::HttpPeer;
use crate::policy::backoff::{Backoff, Jitter};
use crate::policy::budget::RetryBudget;
use crate::policy::deadline::{from_header, shortest, too_close};
use crate::policy::limits::RetryLimits;
use crate::policy::request_hedge::HedgePolicy;
use crate::policy::retry::{FailurePoint, RetryFacts, StopReason, Verdict, decide};
use crate::policy::rules::connection_dropped;

/// What the engine knows of a failed attempt when it asks for a retry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failed {
    /// Where it failed.
    pub(super) point: FailurePoint,
    /// What failed.
    pub(super) kind: ErrorKind,
    /// Whether the connection came from the pool.
    pub(super) reused: bool,
    /// Whether the request may be sent twice (RFC 9110 idempotent, by the
    /// method sent downstream and upstream).
    pub(super) idempotent: bool,
}

/// The allowance of one request.
#[derive(Debug)]
pub(super) struct Admission {
    retries: usize,
    max_retries: usize,
    deadline: Option<Instant>,
    backoff: Option<Backoff>,
    jitter: Jitter,
    next_delay: Duration,
    /// Whether the one free retry (a stale pooled connection) was used.
    stale_retry_used: bool,
    /// The group's (or server's) budget that retries draw on.
    budget: Option<Arc<RetryBudget>>,
    /// Another Switchyard in front retries this request.
    outer_layer_retries: bool,
    /// When to hedge, if the request may be hedged at all.
    hedge: Option<HedgePolicy>,
    /// Whether the request's policies only note what they would do.
    dry_run: bool,
    /// Whether the request's limits name a deadline header.
    deadline_header: bool,
    /// Whether the request's one hedge plan was handed out.
    hedged: bool,
}

/// A hedge the engine may send during one attempt.
#[derive(Debug)]
pub(super) struct HedgePlan {
    /// How long to wait for the first server's head.
    pub(super) after: Duration,
    /// The budget the copy is spent from.
    pub(super) budget: Option<Arc<RetryBudget>>,
    /// The request's deadline, which the copy's timeouts fit in too.
    pub(super) deadline: Option<Instant>,
    /// Only note that a copy would go (and spend nothing).
    pub(super) dry_run: bool,
}

impl Admission {
    /// The allowance for a request that arrived at `start`, under `limits`
    /// bounded by the server's `hard_cap`, drawing backoff from `jitter`.
    pub(super) fn new(
        limits: &RetryLimits,
        hard_cap: usize,
        jitter: Jitter,
        start: Instant,
    ) -> Self {
        let backoff = limits.backoff;
        Admission {
            retries: 0,
            max_retries: limits.retries_within(hard_cap),
            deadline: limits.deadline.map(|d| start + d),
            backoff,
            jitter,
            next_delay: backoff.map_or(Duration::ZERO, |b| b.delay(0, jitter.draw())),
            stale_retry_used: false,
            budget: None,
            outer_layer_retries: false,
            hedge: limits.hedge,
            dry_run: limits.mode.is_dry_run(),
            deadline_header: limits.deadline_header.is_some(),
            hedged: false,
        }
    }

    /// Whether the request's policies only note what they would do.
    pub(super) fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether this request's limits use learned response times: a
    /// deadline (its retries are judged against them), a deadline header
    /// (a client may bring one), or hedging.
    pub(super) fn uses_response_times(&self) -> bool {
        self.deadline.is_some() || self.deadline_header || self.hedge.is_some()
    }

    /// The hedge an attempt to a server whose learned p95 is `p95()` may
    /// send: offered to the request's first attempt only (`None` after, and
    /// when the request is not hedged or an outer proxy retries it; the p95
    /// is looked up only for a request that may be hedged).
    pub(super) fn hedge_plan(
        &mut self,
        p95: impl FnOnce() -> Option<Duration>,
    ) -> Option<HedgePlan> {
        let policy = self
            .hedge
            .filter(|_| !self.hedged && !self.outer_layer_retries)?;
        self.hedged = true;
        Some(HedgePlan {
            after: policy.delay(p95()),
            budget: self.budget.clone(),
            deadline: self.deadline,
            dry_run: self.dry_run,
        })
    }

    /// Leave every retry of this request to the proxy in front (see
    /// `policy::pushback::outer_layer_retries`).
    pub(super) fn leave_retries_outside(&mut self) {
        self.outer_layer_retries = true;
    }

    /// Count this request in `budget` (it goes upstream now) and draw its
    /// retries from it.
    pub(super) fn draw_on(&mut self, budget: Option<Arc<RetryBudget>>, now: Instant) {
        if let Some(budget) = &budget {
            budget.deposit(now);
        }
        self.budget = budget;
    }

    /// The verdict on `facts`: the pure decision, then, for a retry that is
    /// not the free one, a withdrawal from the budget. A retry admitted here
    /// is spent: call [`advance`](Self::advance) once it is made.
    pub(super) fn admit(&mut self, facts: &RetryFacts, now: Instant) -> Verdict {
        let verdict = decide(facts);
        if verdict == Verdict::Retry
            && !facts.stale_connection
            && let Some(budget) = &self.budget
            && !budget.try_withdraw(now)
        {
            return Verdict::Stop(StopReason::BudgetExhausted);
        }
        verdict
    }

    /// Whether a retry after `failed` is the free one: an idempotent
    /// request, a reused connection dropped before any head, and no free
    /// retry yet. (A POST a hook chooses to send again spends the cap and
    /// the budget like any other retry.)
    pub(super) fn is_stale_retry(&self, failed: Failed) -> bool {
        !self.stale_retry_used
            && failed.idempotent
            && failed.reused
            && failed.point == FailurePoint::BeforeResponseHead
            && connection_dropped(failed.kind)
    }

    /// The facts for a failure `error` observed at `now`; `stale` from
    /// [`is_stale_retry`](Self::is_stale_retry).
    pub(super) fn facts(
        &self,
        point: FailurePoint,
        error: &Error,
        body: BufferState,
        stale: bool,
        now: Instant,
    ) -> RetryFacts {
        RetryFacts {
            point,
            hook_retry: error.retry(),
            body,
            stale_connection: stale,
            retries_so_far: self.retries,
            max_retries: self.max_retries,
            deadline: self.deadline,
            next_attempt_at: now + self.delay(stale, error),
            outer_layer_retries: self.outer_layer_retries,
        }
    }

    /// The wait before a retry of `error`: the backoff (none for the free
    /// retry), or the wait the error asks for (`Retry-After`) if longer.
    pub(super) fn delay(&self, stale: bool, error: &Error) -> Duration {
        let backoff = if stale {
            Duration::ZERO
        } else {
            self.next_delay
        };
        backoff.max(error.retry_delay())
    }

    /// A retry [`admit`](Self::admit) allowed is not made after all (the
    /// deadline is too close for it): its budget withdrawal is given back.
    pub(super) fn unspend(&self, stale: bool, now: Instant) {
        if !stale && let Some(budget) = &self.budget {
            budget.refund(now);
        }
    }

    /// A retry was made: spend the free one, or one of the cap.
    pub(super) fn advance(&mut self, stale: bool) {
        if stale {
            self.stale_retry_used = true;
            return;
        }
        self.retries += 1;
        let retry = u32::try_from(self.retries).unwrap_or(u32::MAX);
        self.next_delay = self
            .backoff
            .map_or(Duration::ZERO, |b| b.delay(retry, self.jitter.draw()));
    }

    /// Shorten `peer`'s timeouts so that an attempt cannot outlive the deadline.
    pub(super) fn fit_to_deadline(&self, peer: &mut HttpPeer, now: Instant) {
        fit_to(peer, self.deadline, now);
    }
}

/// Shorten `peer`'s timeouts (and its connect hedge's) to what is left
/// before `deadline`, if there is one.
pub(super) fn fit_to(peer: &mut HttpPeer, deadline: Option<Instant>, now: Instant) {
    let Some(deadline) = deadline else {
        return;
    };
    let left = deadline.saturating_duration_since(now);
    let options = &mut peer.options;
    options.connect_timeout = options.connect_timeout.min(left);
    options.read_timeout = options.read_timeout.min(left);
    options.write_timeout = options.write_timeout.min(left);
    if let Some(hedge) = peer.hedge.as_deref_mut() {
        fit_to(hedge, Some(deadline), now);
    }
}

/// How long the request may take from its arrival: the shortest of the
/// route's deadline, a gRPC call's `grpc-timeout`, and the client's
/// deadline header. A malformed deadline header is the client's error (400).
pub(super) fn request_deadline(
    session: &Session,
    limits: &RetryLimits,
) -> Result<Option<Duration>> {
    let headers = &session.req_header().headers;
    let mut deadline = limits.deadline;
    if session.is_grpc() {
        deadline = shortest(deadline, grpc::request_timeout(headers));
    }
    if let Some(name) = &limits.deadline_header
        && let Some(value) = headers.get(name)
    {
        let client = from_header(value).map_err(|e| {
            Error::because(
                ErrorKind::InvalidDownstreamRequest,
                format!("the client's {name} header is not a deadline"),
                e,
            )
        })?;
        deadline = shortest(deadline, Some(client));
    }
    Ok(deadline)
}

/// The error a request ends with once its deadline stopped it; `last` is
/// the failure of its last attempt, if it made one.
pub(super) fn exceeded(reason: StopReason, last: Option<Box<Error>>) -> Box<Error> {
    let context = match reason {
        StopReason::DeadlineTooClose => {
            "the time left before the request's deadline is below the next server's median response time"
        }
        _ => "the request's deadline passed",
    };
    match last {
        Some(last) => {
            let peer = last.peer().map(str::to_owned);
            let mut e = Error::because(ErrorKind::DeadlineExceeded, context, last);
            if let Some(peer) = peer {
                e.set_peer(peer);
            }
            e
        }
        None => Error::explain(ErrorKind::DeadlineExceeded, context),
    }
}

/// What choosing the next attempt's server under a deadline found.
pub(super) enum NextPeer {
    /// Try this server next.
    Go(Box<HttpPeer>),
    /// The server chosen usually answers later than the time left.
    TooClose(Box<HttpPeer>),
}

/// Choose the server for a retry that will start at `starts_at`, and judge
/// whether it can answer before `deadline`: its learned median response
/// time must fit in the time left then.
pub(super) async fn choose_next<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    deadline: Instant,
    starts_at: Instant,
) -> Result<NextPeer> {
    let peer = e.proxy.upstream_peer(e.session, e.ctx).await?;
    let left = deadline.saturating_duration_since(starts_at);
    let median = e.shared.response_times.quantile(peer.address, 0.5);
    if too_close(left, median) {
        return Ok(NextPeer::TooClose(peer));
    }
    Ok(NextPeer::Go(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn peer(port: u16) -> HttpPeer {
        let mut peer = HttpPeer::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            false,
            String::new(),
        );
        peer.options.connect_timeout = ms(10_000);
        peer.options.read_timeout = ms(10_000);
        peer.options.write_timeout = ms(50);
        peer
    }

    #[test]
    fn an_attempt_fits_in_what_the_deadline_leaves_hedge_included() {
        let start = Instant::now();
        let limits = RetryLimits {
            deadline: Some(ms(300)),
            ..RetryLimits::default()
        };
        let admission = Admission::new(&limits, 16, Jitter::Fixed { per_mille: 0 }, start);
        let mut peer = peer(9001).with_hedge(peer(9002));
        admission.fit_to_deadline(&mut peer, start + ms(100));
        for options in [&peer.options, &peer.hedge.as_ref().unwrap().options] {
            assert_eq!(options.connect_timeout, ms(200));
            assert_eq!(options.read_timeout, ms(200));
            assert_eq!(options.write_timeout, ms(50), "a shorter timeout stays");
        }
        // Past the deadline nothing is left.
        admission.fit_to_deadline(&mut peer, start + ms(400));
        assert_eq!(peer.options.read_timeout, Duration::ZERO);
    }

    #[test]
    fn without_a_deadline_the_peer_keeps_its_timeouts() {
        let start = Instant::now();
        let admission = Admission::new(&RetryLimits::default(), 16, Jitter::Random, start);
        let mut peer = peer(9001);
        admission.fit_to_deadline(&mut peer, start + ms(100));
        assert_eq!(peer.options.read_timeout, ms(10_000));
    }
}
