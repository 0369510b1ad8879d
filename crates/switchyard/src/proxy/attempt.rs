//! One attempt of a request: ask for a peer, get a connection (pooled or
//! new), exchange the request for a response head within the peer's
//! timeouts (shortened to fit the request's deadline), let a hook judge the
//! answer, and hand the head downstream with its body pump.
//!
//! The loop around attempts is in `engine.rs`; the verdict on a failed
//! attempt in `retries.rs`. A rejected answer (`upstream_response_failure`)
//! is judged here as it arrives, since one that will not be retried is
//! forwarded as it is. The connection comes from `upstream::acquire`.

use std::sync::Arc;
use std::time::Instant;

use http::{Response, StatusCode};
use tokio::sync::oneshot;

use super::admission::{Admission, HedgePlan};
use super::engine_ctx::EngineCtx;
use super::forward::{self, Framing, SendFailure};
use super::grpc::GrpcStatus;
use super::hedged_exchange;
use super::pump::{BodyOutcome, FilteredSender, PumpBody, ResponseBody, filtered_channel};
use super::reply::Reply;
use super::shared::EngineShared;
use super::upgrade::{self, Tunnel, UpgradeRecord};
use super::{ProxyHttp, Session};
use crate::body::Progress;
use crate::error::{Error, ErrorKind, Result, Side};
use crate::peer::{HttpPeer, UpstreamProtocol};
use crate::policy::retry::{FailurePoint, Verdict};
use crate::trace::{Decision, Phase};
use crate::upstream::acquire::{acquire, acquire_fresh};
use crate::upstream::connect_hedge::Winner;
use crate::upstream::{UpstreamConn, UpstreamResponse};

/// A response head went downstream; its body is streaming.
pub(super) struct Forwarded {
    pub(super) peer: Box<HttpPeer>,
    pub(super) reused: bool,
    pub(super) body_done: oneshot::Receiver<BodyOutcome>,
    /// After a 101: the tunnel's record, once it closes.
    pub(super) tunnel: Option<oneshot::Receiver<UpgradeRecord>>,
    /// The body, when it goes through `response_body_filter` (the engine
    /// reads and filters it).
    /// Boxed: rare, and a large value that every response would move.
    pub(super) filtering: Option<Box<Filtering>>,
}

/// A response body the engine filters: the upstream's body, and where the
/// filtered frames go.
pub(super) struct Filtering {
    pub(super) pump: PumpBody,
    pub(super) frames: FilteredSender,
}

/// A failed attempt, before the hooks judge it.
pub(super) struct AttemptFailure {
    pub(super) error: Box<Error>,
    pub(super) point: FailurePoint,
    /// The peer, when `upstream_peer` chose one.
    pub(super) peer: Option<Box<HttpPeer>>,
    pub(super) reused: bool,
}

impl AttemptFailure {
    pub(super) fn new(
        mut error: Box<Error>,
        point: FailurePoint,
        peer: &HttpPeer,
        reused: bool,
    ) -> Self {
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

/// What the judgement of a failure tells the next attempt.
#[derive(Default)]
pub(super) struct NextAttempt {
    /// Its server, when the judgement chose it already (under a deadline);
    /// else `upstream_peer` is asked.
    pub(super) peer: Option<Box<HttpPeer>>,
    /// Whether it must take a new connection (no pooled one).
    pub(super) fresh_only: bool,
}

/// One attempt: peer, connection, exchange, and the head sent downstream.
pub(super) async fn attempt<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    reply: &mut Reply,
    next: &mut NextAttempt,
    admission: &mut Admission,
) -> std::result::Result<Forwarded, AttemptFailure> {
    let fresh_only = next.fresh_only;
    let mut peer = match next.peer.take() {
        Some(peer) => peer,
        None => e
            .proxy
            .upstream_peer(e.session, e.ctx)
            .await
            .map_err(|error| AttemptFailure {
                error,
                point: FailurePoint::Internal,
                peer: None,
                reused: false,
            })?,
    };
    if let Err(err) = protocol_for_upgrade(e.session, &mut peer) {
        return Err(AttemptFailure::new(
            err,
            FailurePoint::Internal,
            &peer,
            false,
        ));
    }
    let now = Instant::now();
    // A tunnel's idle limit is the peer's own, not what the deadline leaves.
    let tunnel_idle = peer.options.read_timeout;
    admission.fit_to_deadline(&mut peer, now);
    e.session.attempts_mut().begin(peer.address, now);
    let times = &e.shared.response_times;
    let hedge = admission.hedge_plan(|| times.quantile(peer.address, 0.95));
    // Response times are learned only where a deadline or a hedge may use them.
    let learns = admission.uses_response_times() || e.session.is_grpc();
    let exchanged = tokio::select! {
        result = connect_and_exchange(e, &mut peer, fresh_only, hedge) => result,
        () = reply.closed() => Err(AttemptFailure::new(
            Error::explain(ErrorKind::DownstreamClosed, "client went away while waiting for the upstream"),
            FailurePoint::Downstream, &peer, false,
        )),
    };
    let (response, mut conn, request_body) = exchanged?;
    // Its response time, for retries under a deadline and hedges (a hedged
    // attempt's two servers were timed by the race).
    if learns
        && e.session
            .attempts()
            .last()
            .is_none_or(|r| r.request_hedge.is_none())
    {
        e.shared.response_times.record(peer.address, now.elapsed());
    }
    let reused = conn.reused();
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Boxed: a rare path that would otherwise make every attempt's
        // future (moved whole when it starts) larger.
        let switched = Switched {
            response,
            conn,
            peer,
            tunnel_idle,
        };
        return Box::pin(switch_protocols(e, reply, switched)).await;
    }
    let (head, upstream_body) = response.into_parts();
    let EngineCtx {
        proxy,
        shared,
        session,
        ctx,
    } = e;
    if let Some(record) = session.attempts_mut().current() {
        record.status = Some(head.status);
        record.phase = Phase::StreamingBody;
    }
    let (mut head, framing) = forward::downstream_head(head)
        .map_err(|e| AttemptFailure::new(e, FailurePoint::BeforeResponseHead, &peer, reused))?;
    if framing == Framing::Repaired {
        conn.close_after_response();
    }
    // A trailers-only answer carries the call's status in its head.
    if session.is_grpc()
        && let Some(status) = GrpcStatus::from_fields(&head.headers)
    {
        session.set_grpc_status(status);
    }
    judge_response(*proxy, session, ctx, &head, admission)
        .map_err(|e| AttemptFailure::new(e, FailurePoint::ResponseRejected, &peer, reused))?;
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
    let filtering = if filters_body(session, &head) {
        head.headers.remove(http::header::CONTENT_LENGTH);
        let (frames, filtered) = filtered_channel();
        reply.send(Response::from_parts(head, ResponseBody::filtered(filtered)));
        Some(Box::new(Filtering { pump, frames }))
    } else {
        reply.send(Response::from_parts(head, ResponseBody::pump(pump)));
        None
    };
    Ok(Forwarded {
        peer,
        reused,
        body_done,
        tunnel: None,
        filtering,
    })
}

/// Whether the response's body goes through `response_body_filter`: its
/// hooks asked for it, and it has a body.
fn filters_body(session: &Session, head: &http::response::Parts) -> bool {
    session.response_body_filtered()
        && session.req_header().method != http::Method::HEAD
        && !matches!(head.status.as_u16(), 204 | 304)
}

/// An upgrade (WebSocket) needs HTTP/1.1 upstream: a peer that may
/// negotiate HTTP/2 asks for HTTP/1.1 alone for it, and an HTTP/2-only
/// peer cannot take it (RFC 8441's extended CONNECT is not supported).
fn protocol_for_upgrade(session: &Session, peer: &mut HttpPeer) -> Result<()> {
    if session.upgrade_asked().is_none() {
        return Ok(());
    }
    match peer.protocol {
        UpstreamProtocol::Http1 => Ok(()),
        UpstreamProtocol::Auto => {
            peer.protocol = UpstreamProtocol::Http1;
            Ok(())
        }
        UpstreamProtocol::Http2 => Err(Error::explain(
            ErrorKind::UnsupportedRequest,
            "an upgrade (WebSocket) cannot go to an HTTP/2 upstream",
        )),
    }
}

/// An upstream's 101 and what the tunnel needs.
struct Switched {
    response: UpstreamResponse,
    conn: UpstreamConn,
    peer: Box<HttpPeer>,
    /// The peer's read timeout before any deadline shortened it.
    tunnel_idle: std::time::Duration,
}

/// The upstream answered 101: send the switch downstream with the tunnel
/// that will join the two connections once the 101 is written to the client.
/// From here nothing is retried. A 101 the client did not ask for is an
/// invalid response (nothing went downstream yet).
async fn switch_protocols<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    reply: &mut Reply,
    switched: Switched,
) -> std::result::Result<Forwarded, AttemptFailure> {
    let EngineCtx {
        proxy,
        session,
        ctx,
        ..
    } = e;
    let Switched {
        response,
        conn,
        peer,
        tunnel_idle,
    } = switched;
    let reused = conn.reused();
    let (head, _no_body) = response.into_parts();
    if let Some(record) = session.attempts_mut().current() {
        record.status = Some(head.status);
        record.phase = Phase::StreamingBody;
    }
    let asked = session.upgrade_asked();
    let mut head = upgrade::switching_head(head, asked.as_ref())
        .map_err(|e| AttemptFailure::new(e, FailurePoint::BeforeResponseHead, &peer, reused))?;
    let filtered = match proxy
        .upstream_response_filter(session, &mut head, ctx)
        .await
    {
        Ok(()) => proxy.response_filter(session, &mut head, ctx).await,
        Err(e) => Err(e),
    };
    let protocol = head.headers.get(http::header::UPGRADE).cloned();
    let protocol = match (filtered, protocol) {
        (Err(e), _) => {
            return Err(AttemptFailure::new(
                e,
                FailurePoint::Internal,
                &peer,
                reused,
            ));
        }
        (Ok(()), Some(protocol)) if head.status == StatusCode::SWITCHING_PROTOCOLS => protocol,
        (Ok(()), _) => {
            let e = Error::explain(
                ErrorKind::Internal,
                "a response hook changed the status of a 101 or removed its Upgrade",
            );
            return Err(AttemptFailure::new(
                e,
                FailurePoint::Internal,
                &peer,
                reused,
            ));
        }
    };
    let (slot, record) = Tunnel::open(conn, &protocol, tunnel_idle);
    head.extensions.insert(slot);
    let (done, body_done) = oneshot::channel();
    let _ = done.send(BodyOutcome::Complete {
        bytes: 0,
        grpc: None,
    });
    session.mark_response_started(head.status);
    reply.send(Response::from_parts(
        head,
        ResponseBody::full(bytes::Bytes::new()),
    ));
    Ok(Forwarded {
        peer,
        reused,
        body_done,
        tunnel: Some(record),
        filtering: None,
    })
}

/// Let `upstream_response_failure` judge the answer. A rejected answer that
/// will be retried is an error; one that will not is forwarded as it is,
/// with the verdict and its reason in the trace.
fn judge_response<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    head: &http::response::Parts,
    admission: &mut Admission,
) -> Result<()> {
    let Some(error) = proxy.upstream_response_failure(session, head, ctx) else {
        return Ok(());
    };
    let facts = admission.facts(
        FailurePoint::ResponseRejected,
        &error,
        session.body_source().state(),
        false,
        Instant::now(),
    );
    match admission.admit(&facts, Instant::now()) {
        Verdict::Retry => Err(error),
        Verdict::Stop(reason) => {
            if let Some(record) = session.attempts_mut().current() {
                record.error = Some(error.kind());
                record.note = error.retry_note();
                record.decision = Decision::Stop(reason);
            }
            Ok(())
        }
    }
}

/// Get a connection and run the exchange up to the response head, with a
/// hedge to another server if `hedge` is given (`hedged_exchange.rs`).
async fn connect_and_exchange<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    peer: &mut Box<HttpPeer>,
    fresh_only: bool,
    mut hedge: Option<HedgePlan>,
) -> std::result::Result<(UpstreamResponse, UpstreamConn, Arc<Progress>), AttemptFailure> {
    let shared = e.shared;
    let found = acquire(&shared.pool, &shared.connect_times, peer, fresh_only).await;
    e.session.attempts_mut().count_stale(found.stale);
    note_hedge(e.session, peer, found.winner);
    let mut conn = found
        .conn
        .map_err(|err| AttemptFailure::new(err, FailurePoint::Connect, peer, false))?;
    tell_connected(e, peer, conn.reused())?;
    let mut head = e.upstream_head(peer);
    if let Err(error) = e.filter_head(&mut head).await {
        let reused = conn.reused();
        return Err(AttemptFailure::new(
            error,
            FailurePoint::Internal,
            peer,
            reused,
        ));
    }
    let (mut request, mut progress) = e.request(head, &conn);
    loop {
        mark_sending(e.session, &conn);
        let result = match hedge.take() {
            Some(plan) => {
                let first = hedged_exchange::First {
                    conn: &mut conn,
                    progress: &mut progress,
                    peer,
                };
                // Boxed: racing two exchanges is a large future, and only
                // hedged requests should carry its room.
                Box::pin(hedged_exchange::exchange(e, first, request, plan)).await
            }
            None => forward::exchange(&mut conn, request, &progress, &peer.options).await,
        };
        note_body_sent(e.session, &progress);
        match result {
            Ok(response) => return Ok((response, conn, progress)),
            Err(SendFailure::NotSent(unsent)) if conn.reused() => {
                // The pooled connection closed before a byte was written:
                // nothing reached the upstream, so a fresh one is free to try.
                request = *unsent;
                // Its place under the peer's limit goes to the new one.
                drop(conn);
                conn = Box::pin(fresh_connection(shared, peer, e.session)).await?;
                tell_connected(e, peer, false)?;
            }
            Err(SendFailure::NotSent(_)) => {
                let error = Error::explain(
                    ErrorKind::ConnectError,
                    "new connection closed before the request was written",
                );
                return Err(AttemptFailure::new(
                    error,
                    FailurePoint::Connect,
                    peer,
                    false,
                ));
            }
            Err(SendFailure::Failed(error)) => {
                let point = match error.side() {
                    Side::Downstream => FailurePoint::Downstream,
                    Side::Internal => FailurePoint::Internal,
                    // Provably not processed: as good as never sent.
                    Side::Upstream if error.kind() == ErrorKind::StreamRefused => {
                        FailurePoint::Connect
                    }
                    Side::Upstream => FailurePoint::BeforeResponseHead,
                };
                return Err(AttemptFailure::new(error, point, peer, conn.reused()));
            }
        }
    }
}

/// `connected_to_upstream` for the attempt's connection to `peer`; its
/// error ends the attempt as a hook's (no retry).
fn tell_connected<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    peer: &HttpPeer,
    reused: bool,
) -> std::result::Result<(), AttemptFailure> {
    e.proxy
        .connected_to_upstream(e.session, reused, peer, e.ctx)
        .map_err(|error| AttemptFailure::new(error, FailurePoint::Internal, peer, reused))
}

/// Record a hedge race in the trace; when the hedge won, it becomes the
/// attempt's peer.
fn note_hedge(session: &mut Session, peer: &mut Box<HttpPeer>, winner: Winner) {
    let raced = match winner {
        Winner::First { raced: false } => return,
        Winner::First { raced: true } => peer.hedge.as_ref().map(|h| h.address),
        Winner::Hedge => {
            let Some(hedge) = peer.hedge.take() else {
                return;
            };
            let slow = std::mem::replace(peer, hedge);
            Some(slow.address)
        }
    };
    if let Some(record) = session.attempts_mut().current() {
        record.peer = peer.address;
        record.hedged = raced;
        record.hedge_won = winner == Winner::Hedge;
    }
}

async fn fresh_connection(
    shared: &EngineShared,
    peer: &HttpPeer,
    session: &mut Session,
) -> std::result::Result<UpstreamConn, AttemptFailure> {
    if let Some(record) = session.attempts_mut().current() {
        record.stale_replaced += 1;
        record.reused = false;
        record.phase = Phase::Connecting;
    }
    let (conn, stale) = acquire_fresh(&shared.pool, peer).await;
    session.attempts_mut().count_stale(stale);
    conn.map_err(|e| AttemptFailure::new(e, FailurePoint::Connect, peer, false))
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
