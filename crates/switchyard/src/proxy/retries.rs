//! The verdict on a failed attempt, and what follows it: the one place a
//! failure before the response head is judged.
//!
//! The hook speaks first (`fail_to_connect` when no connection was made,
//! `error_while_proxy` when it was in use), then the request's allowance
//! ([`Admission`]: the cap, the retry budget, the replay buffer, the
//! deadline through the pure `policy::retry::decide`), and, under a
//! deadline, whether the server the retry would go to can answer in time.
//! A retry waits out its backoff (or ends when the client leaves); a stop
//! ends the request with the last error. A rejected response (judged as it
//! arrived, in `attempt.rs`) comes here with its retry admitted already.

use std::time::Instant;

use super::ProxyHttp;
use super::admission::{self, Admission, Failed, NextPeer};
use super::attempt::{AttemptFailure, NextAttempt};
use super::engine_ctx::EngineCtx;
use super::reply::Reply;
use crate::error::{Error, ErrorKind, Result};
use crate::policy::pushback::outer_layer_retries;
use crate::policy::retry::{FailurePoint, StopReason, Verdict};
use crate::trace::Decision;

/// A request's retries: what is left of its allowance.
pub(super) struct Retries {
    /// The allowance; each attempt reads it too (deadline, hedging).
    pub(super) admission: Admission,
    /// The request came through another proxy that retries it.
    outer: bool,
}

/// A judged failure: the verdict and the error it is about.
pub(super) struct Judged {
    verdict: Verdict,
    error: Box<Error>,
    /// The retry is a keep-alive race's, free of the cap and the backoff.
    stale: bool,
}

impl Retries {
    /// The request's limits (the hook's, shortened by a client's gRPC
    /// timeout or deadline header), its budget, and whether another layer
    /// retries it; an error when its deadline passed already.
    // Inlined: built in place in the attempt loop's state, not moved there.
    #[inline(always)]
    pub(super) fn start<P: ProxyHttp>(e: &mut EngineCtx<'_, P>) -> Result<Retries> {
        let mut limits = e.proxy.retry_limits(e.session, e.ctx);
        limits.deadline = admission::request_deadline(e.session, &limits)?;
        let start = e.session.attempts().start();
        let deadline = limits.deadline.map(|d| start + d);
        e.session
            .set_deadline(deadline, limits.deadline_header.clone());
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(admission::exceeded(StopReason::Deadline, None));
        }
        let budget = e.proxy.retry_budget(e.session, e.ctx);
        let budget = budget.or_else(|| e.shared.budget.clone());
        let mut admission = Admission::new(&limits, e.shared.max_retries, e.shared.jitter, start);
        admission.draw_on(budget, Instant::now());
        let headers = &e.session.req_header().headers;
        let outer = outer_layer_retries(headers, limits.retry_when_attempt_header);
        // In a dry run, a retry an outer proxy makes is only noted.
        if outer && !limits.mode.is_dry_run() {
            admission.leave_retries_outside();
        }
        Ok(Retries { admission, outer })
    }

    /// Judge a failed attempt: the hook, then the allowance, then (under a
    /// deadline) the next server's chances. Sets what the next attempt
    /// needs in `next`. An error when nothing can follow (the hook choosing
    /// a server failed).
    pub(super) async fn judge<P: ProxyHttp>(
        &mut self,
        e: &mut EngineCtx<'_, P>,
        failure: AttemptFailure,
        next: &mut NextAttempt,
    ) -> Result<Judged> {
        // The request body filter failed: the proxy's error, never retried.
        let failure = match e.session.request_body_filter_failure() {
            Some(error) => AttemptFailure {
                error,
                point: FailurePoint::Internal,
                ..failure
            },
            None => failure,
        };
        let Some(peer) = failure.peer else {
            // `upstream_peer` itself failed: no attempt was made, nothing to
            // retry. The attempt before, if any, was not followed after all.
            if let Some(record) = e.session.attempts_mut().current() {
                record.decision = Decision::Stop(StopReason::InternalError);
            }
            return Err(failure.error);
        };
        // After a pooled connection failed, the pool may hold more like it
        // (the upstream restarted): the next attempt takes a new connection.
        // A refused stream goes to another connection too.
        next.fresh_only = failure.reused || failure.error.kind() == ErrorKind::StreamRefused;
        let stale = self.admission.is_stale_retry(Failed {
            point: failure.point,
            kind: failure.error.kind(),
            reused: failure.reused,
            idempotent: e.session.is_idempotent(),
        });
        let error = match failure.point {
            FailurePoint::Connect => {
                e.proxy
                    .fail_to_connect(e.session, &peer, e.ctx, failure.error)
            }
            FailurePoint::BeforeResponseHead => {
                e.proxy
                    .error_while_proxy(&peer, e.session, failure.error, e.ctx, failure.reused)
            }
            // Judged already (`upstream_response_failure`), or nobody to ask.
            _ => failure.error,
        };
        let rejected = failure.point == FailurePoint::ResponseRejected;
        let mut verdict = if rejected {
            // `judge_response` only fails an answer it admitted a retry for.
            Verdict::Retry
        } else {
            let body = e.session.body_source().state();
            let facts = self
                .admission
                .facts(failure.point, &error, body, stale, Instant::now());
            self.admission.admit(&facts, Instant::now())
        };
        if let Some(record) = e.session.attempts_mut().current() {
            record.error = Some(error.kind());
            record.note = error.retry_note();
        }
        // A rejected answer's retry goes (its timeouts fit what is left), and
        // no answer is lost to a late "too close".
        if verdict == Verdict::Retry && !rejected {
            verdict = self.in_time(e, stale, &error, next).await?;
        }
        if self.outer && verdict == Verdict::Retry && self.admission.is_dry_run() {
            e.session.note_dry_run("one-layer-retries", "not-retry");
        }
        Ok(Judged {
            verdict,
            error,
            stale,
        })
    }

    /// Under a deadline, choose the retry's server now and keep the retry
    /// only if that server usually answers within the time left.
    async fn in_time<P: ProxyHttp>(
        &mut self,
        e: &mut EngineCtx<'_, P>,
        stale: bool,
        error: &Error,
        next: &mut NextAttempt,
    ) -> Result<Verdict> {
        let Some(deadline) = e.session.deadline() else {
            return Ok(Verdict::Retry);
        };
        let starts_at = Instant::now() + self.admission.delay(stale, error);
        match admission::choose_next(e, deadline, starts_at).await {
            Ok(NextPeer::Go(peer)) => next.peer = Some(peer),
            Ok(NextPeer::TooClose(peer)) if self.admission.is_dry_run() => {
                e.session.note_dry_run("deadline", "skip-retry");
                next.peer = Some(peer);
            }
            Ok(NextPeer::TooClose(_)) => {
                self.admission.unspend(stale, Instant::now());
                return Ok(Verdict::Stop(StopReason::DeadlineTooClose));
            }
            Err(err) => {
                // As when `upstream_peer` fails at the top of an attempt.
                let stop = Decision::Stop(StopReason::InternalError);
                e.session.attempts_mut().finish(stop, Instant::now());
                return Err(err);
            }
        }
        Ok(Verdict::Retry)
    }

    /// Record the verdict, then wait out a retry's backoff (an error if the
    /// client leaves meanwhile), or end the request with a stop's error.
    pub(super) async fn follow<P: ProxyHttp>(
        &mut self,
        e: &mut EngineCtx<'_, P>,
        reply: &mut Reply,
        judged: Judged,
    ) -> Result<()> {
        let Judged {
            verdict,
            error,
            stale,
        } = judged;
        let trace = e.session.attempts_mut();
        match verdict {
            Verdict::Retry => {
                let delay = self.admission.delay(stale, &error);
                if let Some(record) = trace.current() {
                    record.backoff = delay;
                }
                trace.finish(Decision::Retry, Instant::now());
                if !delay.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = reply.closed() => return Err(Error::explain(
                            ErrorKind::DownstreamClosed,
                            "client went away during the backoff before a retry",
                        )),
                    }
                }
                self.admission.advance(stale);
                Ok(())
            }
            Verdict::Stop(reason) => {
                trace.finish(Decision::Stop(reason), Instant::now());
                Err(match reason {
                    StopReason::Deadline | StopReason::DeadlineTooClose => {
                        admission::exceeded(reason, Some(error))
                    }
                    _ => error,
                })
            }
        }
    }
}
