//! The per-request state machine, and the only attempt loop.
//!
//! Each request runs on its own task, so a client that disconnects cannot
//! cancel the engine halfway through a hook: the trace is always complete
//! and `logging` always runs. The downstream connection gets the response
//! head through a oneshot channel and then polls the body itself
//! (`pump.rs`).
//!
//! The loop: choose a peer, attempt, and on failure let the hook judge the
//! error (`fail_to_connect` or `error_while_proxy`), ask the pure policy
//! (`policy::retry::decide`), record the verdict, and go round again or
//! stop. After the head went downstream a failure can only end the request.
//!
//! Cancel behaviour: if the client goes away while an attempt waits on the
//! upstream, the attempt is abandoned (its upstream connection is closed),
//! nothing is retried, and the request ends as `downstream-closed`, logged
//! with status 499. hyper notices a closed client only once the request
//! body was read: a client that leaves mid-body is noticed when reading the
//! body fails, which ends the attempt the same way. A client that leaves
//! during the response body makes the body pump stop and the upstream
//! connection close.
//!
//! A hook that panics ends the request as an internal error (500 if nothing
//! was sent), and `logging` still runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tracing::debug;

use super::forward::{self, SendFailure};
use super::pump::{BodyOutcome, PumpBody, ResponseBody};
use super::respond::error_response;
use super::{ProxyHttp, Session};
use crate::body::{Progress, ReplaySource};
use crate::error::{Error, ErrorKind, Result, Side};
use crate::peer::HttpPeer;
use crate::policy::retry::{FailurePoint, RetryFacts, StopReason, Verdict, decide};
use crate::trace::{AttemptLog, Decision, Phase};
use crate::upstream::pool::Pool;
use crate::upstream::{UpstreamConn, connector};

/// What every request of one server shares.
#[derive(Debug)]
pub(crate) struct EngineShared {
    pub(crate) pool: Arc<Pool>,
    pub(crate) max_retries: usize,
    pub(crate) replay_buffer: usize,
}

/// Handle one downstream request: run it on its own task, answer with the head.
pub(crate) async fn handle<P: ProxyHttp>(
    proxy: Arc<P>,
    shared: Arc<EngineShared>,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<ResponseBody> {
    let (reply, head) = oneshot::channel();
    tokio::spawn(run(proxy, shared, request, client, Reply(Some(reply))));
    head.await.unwrap_or_else(|_| {
        let e = Error::explain(
            ErrorKind::Internal,
            "the request's task ended without an answer",
        );
        to_downstream(error_response(StatusCode::INTERNAL_SERVER_ERROR, &e))
    })
}

/// The way back to the downstream connection, used once.
struct Reply(Option<oneshot::Sender<Response<ResponseBody>>>);

impl Reply {
    fn send(&mut self, response: Response<ResponseBody>) {
        if let Some(reply) = self.0.take() {
            // If the downstream is gone, the response (and its body pump) is dropped here.
            let _ = reply.send(response);
        }
    }

    /// Resolves when the downstream connection stopped waiting for the head.
    async fn closed(&mut self) {
        match &mut self.0 {
            Some(reply) => reply.closed().await,
            None => std::future::pending().await,
        }
    }
}

fn to_downstream(response: Response<bytes::Bytes>) -> Response<ResponseBody> {
    response.map(ResponseBody::full)
}

/// A response head went downstream; its body is streaming.
struct Forwarded {
    peer: Box<HttpPeer>,
    reused: bool,
    body_done: oneshot::Receiver<BodyOutcome>,
}

/// A failed attempt, before the hooks judge it.
struct AttemptFailure {
    error: Box<Error>,
    point: FailurePoint,
    /// The peer, when `upstream_peer` chose one.
    peer: Option<Box<HttpPeer>>,
    reused: bool,
}

impl AttemptFailure {
    fn new(mut error: Box<Error>, point: FailurePoint, peer: &HttpPeer, reused: bool) -> Self {
        if error.peer().is_none() {
            error.set_peer(peer.address.to_string());
        }
        AttemptFailure {
            error,
            point,
            peer: Some(Box::new(peer.clone())),
            reused,
        }
    }
}

async fn run<P: ProxyHttp>(
    proxy: Arc<P>,
    shared: Arc<EngineShared>,
    request: Request<Incoming>,
    client: SocketAddr,
    mut reply: Reply,
) {
    let start = Instant::now();
    let (head, body) = request.into_parts();
    let source = ReplaySource::new(body, shared.replay_buffer);
    let mut session = Session::new(head, client, source, AttemptLog::new(start));
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
        debug!(client = %client, error = %e, attempts = %session.attempts(), "request failed");
        let status = proxy.fail_to_proxy(&mut session, e, &mut ctx).await;
        if !session.response_started() {
            let response = session.take_prepared_response().unwrap_or_else(|| {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                error_response(status, e)
            });
            session.mark_response_started(response.status());
            reply.send(to_downstream(response));
        }
    }
    proxy
        .logging(&mut session, error.as_deref(), &mut ctx)
        .await;
}

/// The request from `request_filter` to the end of the response body.
async fn serve<P: ProxyHttp>(
    proxy: &P,
    shared: &EngineShared,
    session: &mut Session,
    ctx: &mut P::CTX,
    reply: &mut Reply,
) -> Result<()> {
    forward::validate_downstream(session)?;
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
    let forwarded = attempt_loop(proxy, shared, session, ctx, reply).await?;
    finish_body(proxy, session, ctx, forwarded).await
}

/// Attempt until a response head went downstream or the policy says stop.
async fn attempt_loop<P: ProxyHttp>(
    proxy: &P,
    shared: &EngineShared,
    session: &mut Session,
    ctx: &mut P::CTX,
    reply: &mut Reply,
) -> Result<Forwarded> {
    let mut retries = 0;
    let mut fresh_only = false;
    loop {
        let failure = match attempt(proxy, shared, session, ctx, reply, fresh_only).await {
            Ok(forwarded) => return Ok(forwarded),
            Err(failure) => failure,
        };
        let Some(peer) = failure.peer else {
            // `upstream_peer` itself failed: no attempt was made, nothing to
            // retry. The attempt before, if any, was not followed after all.
            if let Some(record) = session.attempts_mut().current() {
                record.decision = Decision::Stop(StopReason::InternalError);
            }
            return Err(failure.error);
        };
        // After a pooled connection failed, the pool may hold more like it
        // (the upstream restarted): the next attempt takes a new connection.
        fresh_only = failure.reused;
        let error = match failure.point {
            FailurePoint::Connect => proxy.fail_to_connect(session, &peer, ctx, failure.error),
            FailurePoint::BeforeResponseHead => {
                proxy.error_while_proxy(&peer, session, failure.error, ctx, failure.reused)
            }
            _ => failure.error,
        };
        let verdict = decide(&RetryFacts {
            point: failure.point,
            hook_retry: error.retry(),
            body: session.body_source().state(),
            retries_so_far: retries,
            max_retries: shared.max_retries,
        });
        let trace = session.attempts_mut();
        if let Some(record) = trace.current() {
            record.error = Some(error.kind());
        }
        match verdict {
            Verdict::Retry => {
                trace.finish(Decision::Retry, Instant::now());
                retries += 1;
            }
            Verdict::Stop(reason) => {
                trace.finish(Decision::Stop(reason), Instant::now());
                return Err(error);
            }
        }
    }
}

/// One attempt: peer, connection, exchange, and the head sent downstream.
async fn attempt<P: ProxyHttp>(
    proxy: &P,
    shared: &EngineShared,
    session: &mut Session,
    ctx: &mut P::CTX,
    reply: &mut Reply,
    fresh_only: bool,
) -> std::result::Result<Forwarded, AttemptFailure> {
    let peer = proxy
        .upstream_peer(session, ctx)
        .await
        .map_err(|error| AttemptFailure {
            error,
            point: FailurePoint::Internal,
            peer: None,
            reused: false,
        })?;
    session.attempts_mut().begin(peer.address, Instant::now());
    let exchanged = tokio::select! {
        result = connect_and_exchange(proxy, shared, session, ctx, &peer, fresh_only) => result,
        () = reply.closed() => Err(AttemptFailure::new(
            Error::explain(ErrorKind::DownstreamClosed, "client went away while waiting for the upstream"),
            FailurePoint::Downstream, &peer, false,
        )),
    };
    let (response, conn, request_body) = exchanged?;
    let reused = conn.reused();
    let (head, upstream_body) = response.into_parts();
    if let Some(record) = session.attempts_mut().current() {
        record.status = Some(head.status);
        record.phase = Phase::StreamingBody;
    }
    let mut head = forward::downstream_head(head)
        .map_err(|e| AttemptFailure::new(e, FailurePoint::BeforeResponseHead, &peer, reused))?;
    let filtered = match proxy
        .upstream_response_filter(session, &mut head, ctx)
        .await
    {
        Ok(()) => proxy.response_filter(session, &mut head, ctx).await,
        Err(e) => Err(e),
    };
    if let Err(error) = filtered {
        return Err(AttemptFailure::new(
            error,
            FailurePoint::Internal,
            &peer,
            reused,
        ));
    }
    let (done, body_done) = oneshot::channel();
    let pump = PumpBody::new(
        upstream_body,
        conn,
        request_body,
        peer.options.read_timeout,
        Arc::clone(&shared.pool),
        done,
    );
    session.mark_response_started(head.status);
    reply.send(Response::from_parts(head, ResponseBody::pump(pump)));
    Ok(Forwarded {
        peer,
        reused,
        body_done,
    })
}

/// Get a connection and run the exchange up to the response head.
async fn connect_and_exchange<P: ProxyHttp>(
    proxy: &P,
    shared: &EngineShared,
    session: &mut Session,
    ctx: &mut P::CTX,
    peer: &HttpPeer,
    fresh_only: bool,
) -> std::result::Result<(Response<Incoming>, UpstreamConn, Arc<Progress>), AttemptFailure> {
    let mut conn = connection(shared, peer, session, fresh_only)
        .await
        .map_err(|e| AttemptFailure::new(e, FailurePoint::Connect, peer, false))?;
    let mut head = forward::upstream_head(session, peer);
    if let Err(error) = proxy.upstream_request_filter(session, &mut head, ctx).await {
        return Err(AttemptFailure::new(
            error,
            FailurePoint::Internal,
            peer,
            conn.reused(),
        ));
    }
    session.set_upstream_method(head.method.clone());
    let (body, progress) = session.body_source().attempt_body();
    let mut request = Request::from_parts(head, body);
    loop {
        mark_sending(session, &conn);
        let result = forward::exchange(&mut conn, request, &progress, &peer.options).await;
        note_body_sent(session, &progress);
        match result {
            Ok(response) => return Ok((response, conn, progress)),
            Err(SendFailure::NotSent(unsent)) if conn.reused() => {
                // The pooled connection closed before a byte was written:
                // nothing reached the upstream, so a fresh one is free to try.
                request = *unsent;
                conn = fresh_connection(peer, session).await?;
            }
            Err(SendFailure::NotSent(_)) => {
                let e = Error::explain(
                    ErrorKind::ConnectError,
                    "new connection closed before the request was written",
                );
                return Err(AttemptFailure::new(e, FailurePoint::Connect, peer, false));
            }
            Err(SendFailure::Failed(error)) => {
                let point = match error.side() {
                    Side::Downstream => FailurePoint::Downstream,
                    Side::Internal => FailurePoint::Internal,
                    Side::Upstream => FailurePoint::BeforeResponseHead,
                };
                return Err(AttemptFailure::new(error, point, peer, conn.reused()));
            }
        }
    }
}

/// A pooled connection to `peer` if one is ready (and allowed), else a new one.
async fn connection(
    shared: &EngineShared,
    peer: &HttpPeer,
    session: &mut Session,
    fresh_only: bool,
) -> Result<UpstreamConn> {
    let key = peer.pool_key();
    while !fresh_only && let Some(mut conn) = shared.pool.checkout(&key, Instant::now()) {
        // Waiting for a pooled connection should cost no more than a new one.
        let ready = tokio::time::timeout(peer.options.connect_timeout, conn.ready()).await;
        if matches!(ready, Ok(Ok(()))) {
            return Ok(conn);
        }
        // Closed while idle, or stuck: nothing was sent on it; try the next.
        if let Some(record) = session.attempts_mut().current() {
            record.stale_replaced += 1;
        }
    }
    connector::connect(peer).await
}

async fn fresh_connection(
    peer: &HttpPeer,
    session: &mut Session,
) -> std::result::Result<UpstreamConn, AttemptFailure> {
    if let Some(record) = session.attempts_mut().current() {
        record.stale_replaced += 1;
        record.reused = false;
        record.phase = Phase::Connecting;
    }
    connector::connect(peer)
        .await
        .map_err(|e| AttemptFailure::new(e, FailurePoint::Connect, peer, false))
}

fn mark_sending(session: &mut Session, conn: &UpstreamConn) {
    if let Some(record) = session.attempts_mut().current() {
        record.reused = conn.reused();
        record.phase = Phase::SendingRequest;
    }
}

fn note_body_sent(session: &mut Session, progress: &Progress) {
    if let Some(record) = session.attempts_mut().current() {
        record.request_body_bytes = progress.sent();
        if progress.finished() {
            record.phase = Phase::AwaitingHead;
        }
    }
}

/// Wait for the response body to end and settle the request's outcome.
async fn finish_body<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    forwarded: Forwarded,
) -> Result<()> {
    let outcome = forwarded
        .body_done
        .await
        .unwrap_or(BodyOutcome::Abandoned { bytes: 0 });
    let (bytes, result) = match outcome {
        BodyOutcome::Complete { bytes } => (bytes, Ok(())),
        BodyOutcome::Failed { bytes, mut error } => {
            error.set_peer(forwarded.peer.address.to_string());
            // The hook sees the failure, but whatever it says the response
            // already started: the policy overrules any retry.
            let error =
                proxy.error_while_proxy(&forwarded.peer, session, error, ctx, forwarded.reused);
            (bytes, Err((error, FailurePoint::AfterResponseStarted)))
        }
        BodyOutcome::Abandoned { bytes } => {
            let error = Error::explain(
                ErrorKind::DownstreamClosed,
                "client went away during the response body",
            );
            (bytes, Err((error, FailurePoint::Downstream)))
        }
    };
    let body_state = session.body_source().state();
    let trace = session.attempts_mut();
    if let Some(record) = trace.current() {
        record.response_body_bytes = bytes;
    }
    match result {
        Ok(()) => {
            if let Some(record) = trace.current() {
                record.phase = Phase::Complete;
            }
            trace.finish(Decision::Done, Instant::now());
            Ok(())
        }
        Err((error, point)) => {
            let verdict = decide(&RetryFacts {
                point,
                hook_retry: error.retry(),
                body: body_state,
                retries_so_far: trace.retries(),
                max_retries: usize::MAX,
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

/// Runs a future, turning a panic inside it into `Err(())`, so that a
/// panicking hook still leaves the request answered and logged.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        }));
        match polled {
            Ok(poll) => poll.map(Ok),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}
