//! The request's deadline in the engine: set once from the route, the
//! gRPC timeout and the client's deadline header (the decisions are in
//! `policy::deadline`), checked before the first attempt, and before each
//! retry against the learned median response time of the server the retry
//! would go to. A request stopped by its deadline is answered 504.

use std::time::{Duration, Instant};

use super::shared::EngineShared;
use super::{ProxyHttp, Session, grpc};
use crate::error::{Error, ErrorKind, Result};
use crate::peer::HttpPeer;
use crate::policy::deadline::{from_header, shortest, too_close};
use crate::policy::limits::RetryLimits;
use crate::policy::retry::StopReason;

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
    proxy: &P,
    shared: &EngineShared,
    session: &mut Session,
    ctx: &mut P::CTX,
    deadline: Instant,
    starts_at: Instant,
) -> Result<NextPeer> {
    let peer = proxy.upstream_peer(session, ctx).await?;
    let left = deadline.saturating_duration_since(starts_at);
    let median = shared.response_times.quantile(peer.address, 0.5);
    if too_close(left, median) {
        return Ok(NextPeer::TooClose(peer));
    }
    Ok(NextPeer::Go(peer))
}
