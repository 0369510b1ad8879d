//! Request hedging in the engine: while the first server has not answered
//! within the plan's delay, choose another server (`upstream_peer`, which
//! skips the server this attempt went to), send it a copy, and use the
//! first response head of the two; the other exchange is dropped, which
//! closes its connection (or resets its HTTP/2 stream). When to hedge is
//! decided in `policy::request_hedge`; the copy is spent from the retry budget.
//!
//! The hedge stays within one attempt: its record names the server whose
//! answer was used and, in `request_hedge`, the other one.

use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use super::admission::{HedgePlan, fit_to};
use super::engine_ctx::EngineCtx;
use super::forward::{self, SendFailure};
use super::{ProxyHttp, Session};
use crate::body::Progress;
use crate::peer::HttpPeer;
use crate::policy::request_hedge::may_hedge;
use crate::trace::RequestHedge;
use crate::upstream::acquire::acquire;
use crate::upstream::{UpstreamConn, UpstreamRequest, UpstreamResponse};

/// The first exchange's state, swapped for the copy's when the copy wins.
pub(super) struct First<'a> {
    pub(super) conn: &'a mut UpstreamConn,
    pub(super) progress: &'a mut Arc<Progress>,
    pub(super) peer: &'a mut Box<HttpPeer>,
}

/// A copy ready to go.
struct Copy {
    peer: Box<HttpPeer>,
    conn: UpstreamConn,
    request: UpstreamRequest,
    progress: Arc<Progress>,
}

/// Which exchange answered first, and its result.
enum FirstAnswer {
    First(Result<UpstreamResponse, SendFailure>),
    Copy(Result<UpstreamResponse, SendFailure>),
}

/// Exchange `request` with the first server, hedged as `plan` says.
pub(super) async fn exchange<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    first: First<'_>,
    request: UpstreamRequest,
    plan: HedgePlan,
) -> Result<UpstreamResponse, SendFailure> {
    let started = Instant::now();
    let copy_sent;
    let options = first.peer.options.clone();
    let first_progress = Arc::clone(first.progress);
    let (winner, copy) = {
        let mut sent = pin!(forward::exchange(
            &mut *first.conn,
            request,
            &first_progress,
            &options
        ));
        tokio::select! {
            biased;
            result = &mut sent => return result,
            () = tokio::time::sleep(plan.after) => {}
        }
        let body = e.session.body_source().state();
        if !may_hedge(e.session.is_idempotent(), first_progress.finished(), body) {
            return sent.await;
        }
        let first_addr = first.peer.address;
        // The copy is made ready while the first may still answer; the
        // record names the first server again whichever finishes first.
        let copy = tokio::select! {
            biased;
            result = &mut sent => {
                restore_peer(e.session, first_addr);
                return result;
            }
            copy = prepare_copy(e, first_addr, plan.deadline) => copy,
        };
        restore_peer(e.session, first_addr);
        // No other server: nothing is sent and nothing spent.
        let Some(mut copy) = copy else {
            return sent.await;
        };
        if plan.dry_run {
            e.session.note_dry_run("hedge", "send-copy");
            return sent.await;
        }
        let allowed = plan
            .budget
            .as_ref()
            .is_none_or(|b| b.try_withdraw(Instant::now()));
        if !allowed {
            return sent.await;
        }
        copy_sent = started.elapsed();
        let winner = {
            let copied = forward::exchange(
                &mut copy.conn,
                copy.request,
                &copy.progress,
                &copy.peer.options,
            );
            race(sent, pin!(copied)).await
        };
        // Each server's own time: the winner's to its head, and for the
        // loser at least as long as it was given.
        let times = &e.shared.response_times;
        let now = started.elapsed();
        match &winner {
            FirstAnswer::First(Ok(_)) => times.record(first_addr, now),
            FirstAnswer::Copy(Ok(_)) => {
                times.record(copy.peer.address, now.saturating_sub(copy_sent));
                times.record(first_addr, now);
            }
            _ => {}
        }
        (winner, (copy.peer, copy.conn, copy.progress))
    };
    let (copy_peer, copy_conn, copy_progress) = copy;
    let (result, copy_won) = match winner {
        FirstAnswer::First(result) => (result, false),
        FirstAnswer::Copy(result) => (result, true),
    };
    let other = if copy_won {
        let slow = std::mem::replace(first.peer, copy_peer);
        // The first exchange was dropped: closing its connection cancels it.
        *first.conn = copy_conn;
        *first.progress = copy_progress;
        slow.address
    } else {
        copy_peer.address
    };
    if let Some(record) = e.session.attempts_mut().current() {
        record.peer = first.peer.address;
        record.request_hedge = Some(RequestHedge {
            other,
            copy_won,
            after: copy_sent,
        });
    }
    result
}

/// Another server, a connection to it and the request for it, its
/// timeouts fitted to the request's `deadline`; `None` when `upstream_peer`
/// has nothing but `first` to offer, or the copy cannot be made ready.
async fn prepare_copy<P: ProxyHttp>(
    e: &mut EngineCtx<'_, P>,
    first: crate::PeerAddr,
    deadline: Option<Instant>,
) -> Option<Copy> {
    let mut peer = e.proxy.upstream_peer(e.session, e.ctx).await.ok()?;
    if peer.address == first {
        return None;
    }
    fit_to(&mut peer, deadline, Instant::now());
    let shared = e.shared;
    let found = acquire(&shared.pool, &shared.connect_times, &peer, false).await;
    e.session.attempts_mut().count_stale(found.stale);
    let conn = found.conn.ok()?;
    // The hook sees the copy's server as the attempt's (a `Host` of the
    // server reached, say); the race's winner is recorded after it.
    if let Some(record) = e.session.attempts_mut().current() {
        record.peer = peer.address;
    }
    let mut head = e.upstream_head(&peer);
    e.filter_head(&mut head).await.ok()?;
    let (request, progress) = e.request(head, &conn);
    Some(Copy {
        peer,
        conn,
        request,
        progress,
    })
}

/// The attempt's record names `first` again (preparing the copy named the
/// copy's server for the hook, and may have been cut short).
fn restore_peer(session: &mut Session, first: crate::PeerAddr) {
    if let Some(record) = session.attempts_mut().current() {
        record.peer = first;
    }
}

/// The first response head of two exchanges; a failure waits for the other.
async fn race<A, B>(
    mut first: std::pin::Pin<&mut A>,
    mut copy: std::pin::Pin<&mut B>,
) -> FirstAnswer
where
    A: Future<Output = Result<UpstreamResponse, SendFailure>>,
    B: Future<Output = Result<UpstreamResponse, SendFailure>>,
{
    tokio::select! {
        result = &mut first => match result {
            Ok(response) => FirstAnswer::First(Ok(response)),
            Err(_) => FirstAnswer::Copy(copy.await),
        },
        result = &mut copy => match result {
            Ok(response) => FirstAnswer::Copy(Ok(response)),
            Err(_) => FirstAnswer::First(first.await),
        },
    }
}
