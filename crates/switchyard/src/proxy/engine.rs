//! The per-request state machine: from the request head to `logging`,
//! with the only attempt loop.
//!
//! The downstream connection polls each request's engine (`driver.rs`):
//! first while it waits for the response head, which comes through a
//! oneshot channel, then while it polls the body (`pump.rs`). A client that
//! disconnects cannot cancel the engine halfway through a hook: an engine
//! dropped unfinished is spawned and runs to its end, so the trace is always
//! complete and `logging` always runs.
//!
//! The loop is the seed's failure model: one attempt (`attempt.rs`: peer,
//! connection, exchange, the head downstream), and on failure the verdict
//! (`retries.rs`: the hook, then the request's allowance through the pure
//! `policy::retry::decide`), then a retry after its backoff or a stop.
//! After the head went downstream a failure can only end the request
//! (`settle_body`).
//!
//! Cancel behaviour: if the client goes away while an attempt waits on the
//! upstream, the attempt is abandoned (its upstream connection is closed),
//! nothing is retried, and the request ends as `downstream-closed`, logged
//! with status 499. The client's connection watches for a close only once
//! the request body was read (as hyper did): a client that leaves mid-body
//! is noticed when reading the body fails, which ends the attempt the same
//! way. A client that leaves
//! during the response body makes the body pump stop and the upstream
//! connection close.
//!
//! A hook that panics ends the request as an internal error (500 if nothing
//! was sent), and `logging` still runs.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::attempt::{Forwarded, NextAttempt, attempt};
use super::body_filter::{Filtered, filter_response_body};
use super::driver::{self, Handling};
use super::engine_ctx::EngineCtx;
use super::engine_task::CatchUnwind;
use super::forward;
use super::identity::ClientAddr;
use super::pump::{BodyOutcome, ResponseBody};
use super::reply::Reply;
use super::respond::{CLIENT_CLOSED, error_response, status_for};
use super::retries::Retries;
use super::shared::EngineShared;
use super::trace_context::TraceContext;
use super::upgrade::UpgradeRecord;
use super::{ProxyHttp, Session};
use crate::body::ReplaySource;
use crate::body::client::ClientBody;
use crate::body::filter::FilteredBody;
use crate::body::limit::{BodyLimit, LimitedBody};
use crate::error::{Error, ErrorKind, Result, Side};
use crate::peer::HttpPeer;
use crate::policy::retry::{FailurePoint, RetryFacts, Verdict, decide};
use crate::trace::{AttemptLog, Decision, Phase};

/// Handle one downstream request: a future that drives its engine and
/// resolves to the response head, or to [`ClientGone`] when the client left
/// before any answer (the connection is then closed without a response).
pub(crate) fn handle<P: ProxyHttp>(
    proxy: Arc<P>,
    shared: Arc<EngineShared>,
    request: Request<ClientBody>,
    client: ClientAddr,
) -> Handling {
    let (reply, head) = oneshot::channel();
    let id = shared.identity.request_id(request.headers(), client.ip());
    let alt_svc = match &shared.alt_svc {
        Some(alt_svc) if client.is_tls() => Some(alt_svc.clone()),
        _ => None,
    };
    let reply = Reply::new(reply, id.clone()).with_alt_svc(alt_svc);
    // Boxed: the engine's future is several KB and must not move once
    // started; the box is all that moves.
    Handling::new(
        Box::pin(run(proxy, shared, request, client, id, reply)),
        head,
    )
}

fn to_downstream(response: Response<bytes::Bytes>) -> Response<ResponseBody> {
    response.map(ResponseBody::full)
}

async fn run<P: ProxyHttp>(
    proxy: Arc<P>,
    shared: Arc<EngineShared>,
    request: Request<ClientBody>,
    client: ClientAddr,
    request_id: HeaderValue,
    mut reply: Reply,
) {
    let start = Instant::now();
    let (head, body) = request.into_parts();
    let trace = TraceContext::of_request(&head.headers, shared.start_traces);
    let limit = BodyLimit::new(shared.max_request_body);
    let body = FilteredBody::new(LimitedBody::new(body, limit.clone()));
    let source = ReplaySource::new(body, shared.replay_buffer);
    let log = AttemptLog::new(start);
    let mut session = Session::new(head, client, source, limit, request_id, log);
    session.set_allowed_upgrades(shared.upgrades.clone());
    session.set_trace_context(trace);
    let mut ctx = proxy.new_ctx();
    let served = {
        let serving = std::pin::pin!(serve(&*proxy, &shared, &mut session, &mut ctx, &mut reply));
        CatchUnwind(serving).await
    };
    let error = match served {
        Ok(result) => result.err(),
        Err(()) => Some(Error::explain(ErrorKind::Internal, "a hook panicked")),
    };
    if let Some(e) = &error {
        let status = proxy.fail_to_proxy(&mut session, e, &mut ctx).await;
        log_failure(&*proxy, &session, &ctx, e, status);
        if !session.response_started() {
            answer_failure(&mut session, &mut reply, e, status);
        }
    }
    if error.is_none() {
        // The upstream may have answered before reading the whole request
        // body: read the rest so the client's connection stays usable (past
        // the body's filter: those bytes go nowhere).
        session.bypass_request_body_filter();
        let drain = session.body_source().drain(DRAIN_MAX_BYTES);
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    }
    proxy
        .logging(&mut session, error.as_deref(), &mut ctx)
        .await;
}

/// The failure log: a request that failed for good, unless the proxy
/// suppresses it.
fn log_failure<P: ProxyHttp>(proxy: &P, session: &Session, ctx: &P::CTX, e: &Error, status: u16) {
    // Hooks: a panic in one is taken as "log it, with the default summary".
    let quiet = std::panic::catch_unwind(AssertUnwindSafe(|| {
        proxy.suppress_error_log(session, ctx, e)
    }));
    if quiet.unwrap_or(false) {
        return;
    }
    let summary =
        std::panic::catch_unwind(AssertUnwindSafe(|| proxy.request_summary(session, ctx)));
    let request = summary.unwrap_or_else(|_| super::default_request_summary(session));
    let (client, attempts) = (session.client_addr(), session.attempts());
    // The client's own failures (it left, sent a bad or slow request) are
    // not the proxy's or the upstream's, and a client could fill the log.
    if e.side() == Side::Downstream {
        debug!(%request, %client, error = %e, status, %attempts, "request failed");
    } else {
        warn!(%request, %client, error = %e, status, %attempts, "request failed");
    }
}

/// Answer a failed request that sent nothing downstream yet: the response
/// `fail_to_proxy` prepared; else, when the client is gone, nothing (its
/// connection closes); else an error response with the hook's status when it
/// is one a client can be sent (not 499, which is for logs), or the status
/// the error calls for.
fn answer_failure(session: &mut Session, reply: &mut Reply, e: &Error, status: u16) {
    if let Some(response) = session.take_prepared_response() {
        session.mark_response_started(response.status());
        reply.send(to_downstream(response));
        return;
    }
    if e.kind() == ErrorKind::DownstreamClosed {
        session.mark_client_gone();
        reply.close();
        return;
    }
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.as_u16() < 600 && s.as_u16() != CLIENT_CLOSED)
        .unwrap_or_else(|| status_for(e));
    let response = error_response(status, e);
    session.mark_response_started(response.status());
    reply.send(to_downstream(response));
}

/// Most request body bytes read and discarded after the response, to keep a
/// client's connection reusable (beyond this, it is closed).
const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Longest wait for that discarded remainder.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// The request from `request_filter` to the end of the response body.
async fn serve<P: ProxyHttp>(
    proxy: &P,
    shared: &EngineShared,
    session: &mut Session,
    ctx: &mut P::CTX,
    reply: &mut Reply,
) -> Result<()> {
    proxy.early_request_filter(session, ctx).await?;
    forward::validate_downstream(session)?;
    super::target::normalize_path(session, &shared.paths)?;
    if proxy.request_filter(session, ctx).await? {
        let Some(response) = session.take_prepared_response() else {
            return Err(Error::explain(
                ErrorKind::Internal,
                "request_filter returned Ok(true) without calling Session::respond",
            ));
        };
        session.mark_response_started(response.status());
        reply.send(to_downstream(response));
        return Ok(());
    }
    super::target::refuse_escaped_slash(session)?;
    forward::check_declared_length(session)?;
    if let Some(filter) = proxy.request_body_filter(session, ctx) {
        session.set_request_body_filter(filter);
    }
    let mut engine = EngineCtx {
        proxy,
        shared,
        session: &mut *session,
        ctx: &mut *ctx,
    };
    let forwarded = attempt_loop(&mut engine, reply).await?;
    if reply.delivered {
        driver::to_the_body().await;
    }
    finish_body(proxy, session, ctx, forwarded).await
}

/// Attempt until a response head went downstream or the policy says stop:
/// the failure model of the seed, step by step. Connect and send (one
/// attempt), judge a failure (the hook, then the request's allowance), and
/// retry or stop.
async fn attempt_loop<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    reply: &mut Reply,
) -> Result<Forwarded> {
    let mut retries = Retries::start(e)?;
    let mut next = NextAttempt::default();
    loop {
        let failure = match attempt(e, reply, &mut next, &mut retries.admission).await {
            Ok(forwarded) => return Ok(forwarded),
            Err(failure) => failure,
        };
        let judged = retries.judge(e, failure, &mut next).await?;
        retries.follow(e, reply, judged).await?;
    }
}

/// Wait for the response body to end and settle the request's outcome.
async fn finish_body<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    mut forwarded: Forwarded,
) -> Result<()> {
    let tunnel = forwarded.tunnel.take();
    let filtered = match forwarded.filtering.take() {
        // Boxed: its state would make every request's engine larger.
        Some(filtering) => {
            Some(Box::pin(filter_response_body(proxy, session, ctx, filtering)).await)
        }
        None => None,
    };
    // After a 101 the attempt is done at once: its duration (latency for
    // load balancing and metrics) is not the tunnel's.
    let settled = settle_body(proxy, session, ctx, forwarded, filtered).await;
    if let Some(tunnel) = tunnel {
        // Dropped unused when the client's connection never ran the tunnel
        // (the client left before the 101 was written).
        let record = tunnel
            .await
            .unwrap_or_else(|_| UpgradeRecord::not_started());
        session.set_upgrade(record);
    }
    settled
}

/// How the response body ended, in the trace and as the request's result.
async fn settle_body<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    forwarded: Forwarded,
    mut filtered: Option<Filtered>,
) -> Result<()> {
    let outcome = forwarded
        .body_done
        .await
        .unwrap_or(BodyOutcome::Abandoned { bytes: 0 });
    let failed = filtered.as_mut().and_then(|f| f.failed.take());
    let (mut bytes, result) = match (outcome, failed) {
        // `response_body_filter` failed: the request ends with its error,
        // whatever became of the upstream's body.
        (outcome, Some(error)) => (outcome.bytes(), Err((error, FailurePoint::Internal))),
        (outcome, None) => settle_outcome(
            proxy,
            session,
            ctx,
            (&forwarded.peer, forwarded.reused),
            outcome,
        ),
    };
    // A filtered body: what went to the client, not what the upstream sent.
    if let Some(filtered) = &filtered {
        bytes = filtered.sent;
    }
    let body_state = session.body_source().state();
    let trace = session.attempts_mut();
    if let Some(record) = trace.current() {
        record.response_body_bytes = bytes;
    }
    match result {
        Ok(()) => {
            // A rejected answer forwarded for want of a retry keeps its verdict.
            let mut decision = Decision::Done;
            if let Some(record) = trace.current() {
                record.phase = Phase::Complete;
                if record.decision != Decision::InFlight {
                    decision = record.decision;
                }
            }
            trace.finish(decision, Instant::now());
            Ok(())
        }
        Err((error, point)) => {
            let verdict = decide(&RetryFacts {
                point,
                hook_retry: error.retry(),
                body: body_state,
                stale_connection: false,
                retries_so_far: trace.retries(),
                max_retries: usize::MAX,
                deadline: None,
                next_attempt_at: Instant::now(),
                outer_layer_retries: false,
            });
            if let Some(record) = trace.current() {
                record.error = Some(error.kind());
            }
            let decision = match verdict {
                Verdict::Stop(reason) => Decision::Stop(reason),
                // Unreachable by the contract; recorded as-is if the policy ever changes.
                Verdict::Retry => Decision::Retry,
            };
            trace.finish(decision, Instant::now());
            Err(error)
        }
    }
}

/// What the upstream body's end means for the request: its byte count, and
/// the failure (with where it happened) if it did not end cleanly.
fn settle_outcome<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    (peer, reused): (&HttpPeer, bool),
    outcome: BodyOutcome,
) -> (u64, std::result::Result<(), (Box<Error>, FailurePoint)>) {
    // The request body filter failed (an HTTP/2 upstream may even have
    // answered whole): the request ends with its error.
    if let BodyOutcome::Complete { bytes, .. } | BodyOutcome::Failed { bytes, .. } = outcome
        && let Some(error) = session.request_body_filter_failure()
    {
        return (bytes, Err((error, FailurePoint::Internal)));
    }
    match outcome {
        BodyOutcome::Complete { bytes, grpc } => {
            if let Some(status) = grpc {
                session.set_grpc_status(*status);
            }
            (bytes, Ok(()))
        }
        // The upstream exchange broke because the client's body failed
        // (crossed its limit, was malformed, or was cut short): the client's
        // fault, not the upstream's.
        BodyOutcome::Failed { bytes, .. } if session.body_source().source_failed() => (
            bytes,
            Err((client_body_failure(session), FailurePoint::Downstream)),
        ),
        BodyOutcome::Failed { bytes, mut error } => {
            error.set_peer(peer.address.to_string());
            // The hook sees the failure, but whatever it says the response
            // already started: the policy overrules any retry.
            let error = proxy.error_while_proxy(peer, session, error, ctx, reused);
            (bytes, Err((error, FailurePoint::AfterResponseStarted)))
        }
        BodyOutcome::Abandoned { bytes } => {
            let error = Error::explain(
                ErrorKind::DownstreamClosed,
                "client went away during the response body",
            );
            (bytes, Err((error, FailurePoint::Downstream)))
        }
    }
}

/// Why the client's request body failed, once the response had started.
fn client_body_failure(session: &Session) -> Box<Error> {
    let (kind, context) = if session.request_body_over_limit() {
        (
            ErrorKind::RequestBodyTooLarge,
            "request body crossed its limit after the response started",
        )
    } else if session.body_source().source_malformed() {
        (
            ErrorKind::InvalidDownstreamRequest,
            "client sent a malformed request body after the response started",
        )
    } else {
        (
            ErrorKind::DownstreamClosed,
            "client went away while sending the request body",
        )
    };
    Error::explain(kind, context)
}
