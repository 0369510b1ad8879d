//! The group's side of each upstream hook: which server, whether a failure
//! is retried (and where), what a `Retry-After` holds, and what the
//! request's attempts taught the group's health and load counts.
//!
//! Every verdict leaves a note on the error (`next-peer`, `same-peer`,
//! `not-processed`, `idempotency-key`, `grpc-unavailable`, a decline's
//! reason) so the access log and the metrics can say why a retry was or was
//! not taken.

use crate::peer_addr::PeerAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{RetryPolicy, UpstreamGroup};
use crate::error::{Error, ErrorKind};
use crate::health::AdminState;
use crate::peer::HttpPeer;
use crate::policy::budget::RetryBudget;
use crate::policy::dry_run::WouldHave;
use crate::policy::idempotency::Resend;
use crate::policy::limits::RetryLimits;
use crate::policy::pushback::{RETRY_AFTER_NOTE, retry_after};
use crate::policy::rules::Judgement;
use crate::proxy::{ResponseHeader, Session, grpc};
use crate::trace::AttemptLog;

/// A request's state in its group: keep one in the proxy's `CTX` and hand
/// it to every [`UpstreamGroup`] hook.
#[derive(Debug, Default)]
pub struct GroupCtx {
    /// The policy in force instead of the group's (a route's override).
    policy: Option<Arc<RetryPolicy>>,
    /// A rule asked for the same server again.
    same_peer_next: Option<PeerAddr>,
    /// Servers whose load count this request raised, each with the index
    /// of its attempt in the trace.
    begun: Vec<(PeerAddr, usize)>,
    /// The statuses whose `Retry-After` held a server.
    holds: Vec<u16>,
}

impl GroupCtx {
    /// State for a request retried by `policy` instead of its group's own.
    pub fn with_policy(policy: Arc<RetryPolicy>) -> Self {
        GroupCtx {
            policy: Some(policy),
            ..GroupCtx::default()
        }
    }

    /// The statuses (503, 429) whose `Retry-After` made the group hold a
    /// server out of selection during this request.
    #[inline]
    pub fn holds(&self) -> &[u16] {
        &self.holds
    }
}

impl UpstreamGroup {
    /// The policy in force for the request.
    fn policy_for<'a>(&'a self, ctx: &'a GroupCtx) -> &'a RetryPolicy {
        ctx.policy.as_deref().unwrap_or(&self.policy)
    }

    /// For `retry_limits`: the policy's cap, backoff, deadline and hedging.
    #[inline]
    pub fn retry_limits(&self, ctx: &GroupCtx) -> RetryLimits {
        self.policy_for(ctx).limits.clone()
    }

    /// For `retry_budget`: the group's budget.
    #[inline]
    pub fn retry_budget(&self) -> Option<Arc<RetryBudget>> {
        Some(Arc::clone(&self.budget))
    }

    /// For `upstream_peer`: a server the request has not tried yet that is
    /// not down, ejected or held (the same one again when a rule asked for
    /// it), with a second server to race a slow connect when connect
    /// hedging is on. Picking one counts it as loaded until
    /// [`logging`](Self::logging). Before the first attempt, the request
    /// keeps as much of its body for a replay as the policy says.
    ///
    /// When no server is usable, an avoided one is chosen rather than none
    /// (down or ejected servers may have recovered), except one an operator
    /// took out (`drain`, `maint`): then the request fails with a
    /// `ConnectError` that says so, and nothing is sent.
    pub fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut GroupCtx,
    ) -> crate::Result<Box<HttpPeer>> {
        if session.attempts().is_empty() {
            session.set_retry_buffer_size(self.policy_for(ctx).replay_buffer);
        }
        // The servers earlier attempts went to (a hedge that won included).
        let tried: Vec<PeerAddr> = session
            .attempts()
            .records()
            .iter()
            .map(|r| r.peer)
            .collect();
        let avoid = self.health.avoid(Instant::now());
        let addr = match ctx.same_peer_next.take() {
            Some(addr) => addr,
            // A sticky cookie's server first, on the first attempt only.
            None if tried.is_empty() && self.sticky.is_some() => {
                match self.sticky_server(session, &avoid) {
                    Some(addr) => addr,
                    None => self.select(session, &tried, &avoid),
                }
            }
            None => self.select(session, &tried, &avoid),
        };
        if avoid.contains(&addr) && self.health.admin_state(addr) != AdminState::Ready {
            return Err(Error::explain(
                ErrorKind::ConnectError,
                format!(
                    "no server of upstream {} is in service: every usable one is drained or in maintenance",
                    self.name()
                ),
            ));
        }
        if let Some(load) = self.backends.load(addr) {
            load.begin();
            ctx.begun.push((addr, session.attempts().len()));
        }
        let mut peer = self.peer(addr);
        if self.connect_hedging
            && let Some(hedge) = self.backends.hedge_for(addr, &tried, &avoid)
        {
            peer = peer.with_hedge(self.peer(hedge));
        }
        Ok(Box::new(peer))
    }

    /// The selection's server for the request: by its hash key, or by the
    /// algorithm (a server warming up may be passed over).
    #[inline]
    fn select(&self, session: &mut Session, tried: &[PeerAddr], avoid: &[PeerAddr]) -> PeerAddr {
        match &self.hash_key {
            Some(key) => {
                let place = key.place(session.req_header(), session.client_addr());
                self.backends.select_keyed(tried, avoid, place).addr
            }
            None => {
                let addr = self.backends.select_avoiding(tried, avoid).addr;
                self.slow_start(addr, tried, avoid, session)
            }
        }
    }

    /// For `fail_to_connect`: the rules' verdict on a connect failure.
    pub fn fail_to_connect(
        &self,
        peer: &HttpPeer,
        ctx: &mut GroupCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        let judgement = self.policy_for(ctx).rules.on_connect_failure(e.kind());
        apply(judgement, ctx, Some(peer.address), e)
    }

    /// For `error_while_proxy`: the rules' verdict on a failure after the
    /// request went out, by method or idempotency key.
    pub fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut GroupCtx,
        reused: bool,
    ) -> Box<Error> {
        let policy = Arc::clone(ctx.policy.as_ref().unwrap_or(&self.policy));
        let kind = e.kind();
        let judge = |allowed| policy.rules.on_proxy_error(kind, reused, allowed);
        let resend = honoured(session, &policy, judge);
        let judgement = judge(resend.allowed());
        keyed(apply(judgement, ctx, Some(peer.address), e), resend)
    }

    /// For `upstream_response_failure`: a response head the policy counts
    /// as a failure (a `retry_on` status, or gRPC UNAVAILABLE when asked),
    /// as an error with the verdict on it; `None` for any other. A 503 or
    /// 429 with `Retry-After` holds its server out of selection for that
    /// long (at most `max_retry_after`), and a retry with no other server
    /// left waits for it.
    pub fn upstream_response_failure(
        &self,
        session: &mut Session,
        head: &ResponseHeader,
        ctx: &mut GroupCtx,
    ) -> Option<Box<Error>> {
        // Most answers are neither a failure nor a push back: nothing to do.
        let status = head.status.as_u16();
        let on = &self.policy_for(ctx).rules.retry_on;
        let maybe_grpc = on.grpc_unavailable && session.is_grpc();
        if !maybe_grpc && !matches!(status, 503 | 429) && !on.statuses.contains(&status) {
            return None;
        }
        let policy = Arc::clone(ctx.policy.as_ref().unwrap_or(&self.policy));
        let wait = self.push_back(&policy, session, head, ctx);
        let rules = &policy.rules;
        let peer = session.attempts().last().map(|a| a.peer);
        if rules.retry_on.grpc_unavailable
            && session.is_grpc()
            && let Some(status) = grpc::GrpcStatus::from_fields(&head.headers)
            && status.code == grpc::UNAVAILABLE
        {
            let why = format!(
                "upstream answered grpc-status {} (trailers only)",
                status.code
            );
            let e = Error::explain(ErrorKind::UpstreamStatus, why);
            let mut e = apply(rules.on_grpc_unavailable(), ctx, peer, e);
            if e.retry() {
                e.set_retry_note("grpc-unavailable");
            }
            return Some(e);
        }
        if !rules.retry_on.statuses.contains(&status) {
            return None;
        }
        let judge = |allowed| rules.on_status(status, allowed);
        let resend = honoured(session, &policy, judge);
        let e = Error::explain(
            ErrorKind::UpstreamStatus,
            format!("upstream answered {status}"),
        );
        let mut e = keyed(apply(judge(resend.allowed()), ctx, peer, e), resend);
        // The server asked for time: the retry goes elsewhere, or, with no
        // other server left, waits for it.
        if e.retry()
            && let Some(wait) = wait
            && !self.another_server_left(session)
        {
            if policy.limits.mode.is_dry_run() {
                session.note_dry_run("pushback", "wait");
            } else {
                e.set_retry_delay(wait);
                e.set_retry_note(RETRY_AFTER_NOTE);
            }
        }
        Some(e)
    }

    /// For `logging`: tell the group's health how each attempt went and
    /// lower the load counts the request raised. Returns every decision a
    /// dry-run policy would have acted on during the request (the
    /// session's and the health model's).
    pub fn logging(&self, session: &Session, ctx: &GroupCtx) -> Vec<WouldHave> {
        let mut dry_runs = session.dry_runs().to_vec();
        dry_runs.extend(
            self.health
                .report_attempts(session.attempts(), Instant::now()),
        );
        self.end_loads(session.attempts(), &ctx.begun);
        dry_runs
    }

    /// A 503 or 429 with `Retry-After` keeps its server out of selection
    /// for that long (at most `max_retry_after`); the wait, if any.
    fn push_back(
        &self,
        policy: &RetryPolicy,
        session: &mut Session,
        head: &ResponseHeader,
        ctx: &mut GroupCtx,
    ) -> Option<Duration> {
        if !matches!(head.status.as_u16(), 503 | 429) {
            return None;
        }
        let wait = retry_after(
            head.status,
            &head.headers,
            SystemTime::now(),
            policy.max_retry_after,
        )?;
        let peer = session.attempts().last()?.peer;
        if policy.limits.mode.is_dry_run() {
            session.note_dry_run("pushback", "hold");
            return Some(wait);
        }
        let now = Instant::now();
        let why = format!("{} with Retry-After ({wait:?})", head.status.as_u16());
        self.health.hold(peer, now + wait, why, now);
        ctx.holds.push(head.status.as_u16());
        Some(wait)
    }

    /// `addr`, unless it is ramping up after coming back and its share says
    /// to pick again: then another usable server, if there is one.
    fn slow_start(
        &self,
        addr: PeerAddr,
        tried: &[PeerAddr],
        avoid: &[PeerAddr],
        session: &mut Session,
    ) -> PeerAddr {
        if self.health.slow_start_admits(addr, Instant::now()) {
            return addr;
        }
        if self.health.mode().is_dry_run() {
            session.note_dry_run("slow-start", "pick-again");
            return addr;
        }
        let mut others = avoid.to_vec();
        others.push(addr);
        let other = self.backends.select_avoiding(tried, &others).addr;
        if others.contains(&other) { addr } else { other }
    }

    /// Whether the group has a server this request has not tried that is
    /// not avoided now (down, ejected, or asking for time).
    fn another_server_left(&self, session: &Session) -> bool {
        let avoid = self.health.avoid(Instant::now());
        let tried = session.attempts().records();
        self.health
            .peers()
            .iter()
            .any(|p| !avoid.contains(p) && !tried.iter().any(|r| r.peer == *p))
    }

    /// Lower the load counts this request raised, with the latency of the
    /// attempt that went to each server. A server chosen for an attempt
    /// that never started (a retry skipped for want of time), or for a
    /// hedge's copy (which shares its attempt's record), gives no latency
    /// sample.
    fn end_loads(&self, attempts: &AttemptLog, begun: &[(PeerAddr, usize)]) {
        for &(addr, attempt) in begun {
            let Some(load) = self.backends.load(addr) else {
                continue;
            };
            match attempts.records().get(attempt).filter(|a| a.peer == addr) {
                Some(record) => load.end(record.duration),
                None => load.cancel(),
            }
        }
    }
}

/// Apply a rule's judgement to `e`, steering the next `upstream_peer`.
fn apply(
    judgement: Judgement,
    ctx: &mut GroupCtx,
    peer: Option<PeerAddr>,
    mut e: Box<Error>,
) -> Box<Error> {
    match judgement {
        Judgement::SamePeer => {
            ctx.same_peer_next = peer;
            e.set_retry(true);
            e.set_retry_note("same-peer");
        }
        // Provably not processed: the note says why any method may go on.
        Judgement::NextPeer if e.kind() == ErrorKind::StreamRefused => {
            e.set_retry(true);
            e.set_retry_note("not-processed");
        }
        Judgement::NextPeer => {
            e.set_retry(true);
            e.set_retry_note("next-peer");
        }
        Judgement::Decline(reason) => {
            e.set_retry(false);
            e.set_retry_note(reason.as_str());
        }
    }
    e
}

/// Whether the request may be resent, by method or idempotency key; in a
/// dry run, a key that would make `judge` retry is noted and not honoured.
fn honoured(
    session: &mut Session,
    policy: &RetryPolicy,
    judge: impl Fn(bool) -> Judgement,
) -> Resend {
    let resend = session.resend_safety(policy.idempotency_key.as_ref());
    if resend != Resend::IdempotencyKey || !policy.limits.mode.is_dry_run() {
        return resend;
    }
    let retries = |allowed| matches!(judge(allowed), Judgement::NextPeer | Judgement::SamePeer);
    // Only a retry the key alone would allow (not `non_idempotent`).
    if retries(true) && !retries(false) {
        session.note_dry_run("idempotency-key", "retry");
    }
    Resend::Unsafe
}

/// A retry that only the request's idempotency key made safe says so in
/// the trace (`idempotency-key`).
fn keyed(mut e: Box<Error>, resend: Resend) -> Box<Error> {
    if e.retry()
        && let Some(note) = resend.note()
    {
        e.set_retry_note(note);
    }
    e
}
