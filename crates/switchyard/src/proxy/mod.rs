//! The [`ProxyHttp`] trait: the hooks a user implements, and where in a
//! request's life each one runs.
//!
//! ```text
//! request_filter -> upstream_peer -> [connect] -> upstream_request_filter
//!   -> [send request, read response head] -> upstream_response_filter
//!   -> response_filter -> [stream body] -> logging
//! ```
//!
//! On a failure the engine (`engine.rs`, judging in `retries.rs`) calls
//! `fail_to_connect` (no connection was made) or `error_while_proxy` (the
//! connection was in use), asks the pure retry policy (`policy/retry.rs`)
//! whether the error may be retried, and either calls `upstream_peer` again
//! or ends in `fail_to_proxy`. `attempt.rs` is one attempt, `forward.rs`
//! one exchange with an upstream, `hedged_exchange.rs` one raced against a
//! copy, `pump.rs` the response body, `respond.rs` the default error
//! responses. A proxy that delegates its hooks to an
//! [`UpstreamGroup`](crate::group::UpstreamGroup) or a
//! [`RouteCtx`](crate::route::RouteCtx) gets the binary's behaviour.

use std::future::Future;

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::peer::HttpPeer;
use crate::policy::budget::RetryBudget;
use crate::policy::limits::RetryLimits;
use std::sync::Arc;

mod admission;
mod attempt;
mod body_filter;
mod driver;
mod engine;
mod engine_ctx;
mod engine_task;
mod error_pages;
mod forward;
pub mod grpc;
mod headers;
mod hedged_exchange;
pub mod identity;
mod proxy_status;
mod pump;
mod reply;
pub mod respond;
mod retries;
mod session;
mod shared;
mod target;
pub mod trace_context;
mod upgrade;

pub use crate::body::filter::RequestBodyFilter;
pub use crate::policy::idempotency::is_idempotent;
pub(crate) use driver::Handling;
pub(crate) use engine::handle;
pub use error_pages::{ErrorPage, ErrorPages};
pub(crate) use headers::strip_hop_by_hop;
pub use pump::ResponseBody;
pub(crate) use reply::ClientGone;
pub use session::Session;
pub(crate) use shared::EngineShared;
pub(crate) use upgrade::TunnelSlot;
pub use upgrade::{AllowedUpgrades, InvalidUpgrade, TunnelEnd, UpgradeRecord};

/// The request head sent upstream, as `upstream_request_filter` sees it.
pub type RequestHeader = http::request::Parts;

/// A response head, as `upstream_response_filter` and `response_filter` see it.
pub type ResponseHeader = http::response::Parts;

/// The hooks of a reverse proxy. Only [`upstream_peer`](ProxyHttp::upstream_peer)
/// is required; every other hook has a default that keeps the failure
/// contract of `docs/failure-contract.md`.
///
/// The per-request state lives in [`CTX`](ProxyHttp::CTX), made by
/// [`new_ctx`](ProxyHttp::new_ctx) and handed to every hook, so a hook can
/// count tries and `upstream_peer` can pick the same peer again (a retry) or
/// another (a failover).
///
/// Async hooks are declared as `fn ... -> impl Future + Send` so that no
/// macro is needed: implement them with plain `async fn`.
///
/// ```
/// use std::net::SocketAddr;
/// use switchyard::prelude::*;
///
/// struct Failover { primary: SocketAddr, secondary: SocketAddr }
/// struct Ctx { tries: usize }
///
/// impl ProxyHttp for Failover {
///     type CTX = Ctx;
///     fn new_ctx(&self) -> Ctx { Ctx { tries: 0 } }
///
///     async fn upstream_peer(&self, _s: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
///         let addr = if ctx.tries < 1 { self.primary } else { self.secondary };
///         Ok(Box::new(HttpPeer::new(addr, false, String::new())))
///     }
///
///     fn fail_to_connect(&self, _s: &mut Session, _p: &HttpPeer, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
///         if ctx.tries > 0 { return e; }
///         ctx.tries += 1;
///         e.set_retry(true);
///         e
///     }
/// }
/// ```
pub trait ProxyHttp: Send + Sync + 'static {
    /// Per-request state shared by the hooks of one request.
    type CTX: Send + 'static;

    /// Make the state for a new request.
    fn new_ctx(&self) -> Self::CTX;

    /// The very first look at the request, as it came: before the proxy's
    /// own checks (a malformed request is refused after this) and before its
    /// path is normalized, so decide nothing on the path here (that is
    /// `request_filter`'s). For what must run before anything else:
    /// starting a timer, noting the raw target. An error ends the request
    /// in `fail_to_proxy`.
    ///
    /// Default: nothing.
    fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// First look at the request after the proxy's checks, its path
    /// normalized. Nothing has been sent anywhere.
    ///
    /// Return `Ok(true)` to answer it yourself, after setting the answer with
    /// [`Session::respond`] (the request is then not proxied), or `Ok(false)`
    /// to go on. An error ends the request in `fail_to_proxy`.
    fn request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(false) }
    }

    /// Change the request body on its way upstream: return a
    /// [`RequestBodyFilter`] to see each piece of it, with an end-of-stream
    /// call where bytes may still be added (see its docs). Called once,
    /// after `request_filter`, before any of the body was read; return
    /// `None` (the default) for a request whose body goes as it came.
    ///
    /// Unlike Pingora's, this hook is called once and hands back the
    /// filter, which then runs where the upstream connection reads the body
    /// (as fast as the upstream takes it) rather than in the hook with the
    /// `CTX`: move into it what it needs, or share it through an `Arc`. A
    /// retry replays the filtered bytes without calling it again. A
    /// filtered body goes upstream without its `Content-Length` (chunked
    /// over HTTP/1.1, a `GET` too); a request without a body gets the
    /// end-of-stream call at once and keeps its framing unless that call
    /// adds bytes. Its bytes count as progress as the filter takes them
    /// in, so a filter that holds the body back until its end does not
    /// trip the write timeout; what the client still sends after the
    /// response is drained past the filter.
    fn request_body_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Option<Box<dyn RequestBodyFilter>> {
        None
    }

    /// Choose the peer for the next attempt. Called again before every retry:
    /// return the same peer to retry it, another to fail over. Nothing has
    /// been sent upstream for this attempt; nothing has been sent downstream.
    /// An error ends the request in `fail_to_proxy` (no retry).
    fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> impl Future<Output = Result<Box<HttpPeer>>> + Send;

    /// Change the request head sent upstream for this attempt (it is rebuilt
    /// from the downstream head for every attempt). A connection exists;
    /// nothing has been sent on it for this request.
    fn upstream_request_filter(
        &self,
        _session: &mut Session,
        _upstream_request: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Limits for this request across all its attempts: a retry cap, a
    /// backoff between attempts, a deadline. Called once, after
    /// `request_filter`, before the first `upstream_peer`.
    ///
    /// Default: [`RetryLimits::default()`], the server's `ServerOptions`.
    fn retry_limits(&self, _session: &Session, _ctx: &Self::CTX) -> RetryLimits {
        RetryLimits::default()
    }

    /// The retry budget this request's retries draw on, typically its
    /// upstream group's (see [`RetryBudget`]). Called once, after
    /// `request_filter`; the request counts towards it as it first goes
    /// upstream, and each retry withdraws from it. When it is spent, a
    /// failure that would be retried is not (stop reason
    /// `budget-exhausted`).
    ///
    /// Default: `None`, the server's budget (`ServerOptions::retry_budget`,
    /// on by default, shared by every request of the server).
    fn retry_budget(&self, _session: &Session, _ctx: &Self::CTX) -> Option<Arc<RetryBudget>> {
        None
    }

    /// The upstream answered; nothing went downstream yet. Return an error
    /// (kind [`ErrorKind::UpstreamStatus`]
    /// is meant for this) to count this answer as a failed attempt, marked
    /// retryable to try again, e.g. on a 503. If no retry follows (the hook
    /// did not mark it, or the cap, deadline or body forbid it), the
    /// upstream's response is forwarded as it is, never replaced by a 502.
    ///
    /// Default: `None`, every answer is forwarded.
    fn upstream_response_failure(
        &self,
        _session: &mut Session,
        _upstream_response: &ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> Option<Box<Error>> {
        None
    }

    /// Change the upstream's response head. The upstream answered; nothing
    /// has been sent downstream yet. An error ends the request (no retry:
    /// the upstream processed it).
    fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Change a piece of the response body on its way downstream: `body`
    /// is the piece (not the whole body), to change, replace or drop
    /// (`None`); `end_of_stream` is set on a last call, made with `None`
    /// once the upstream's body ended, where bytes may still be added.
    /// Called only for a response whose hooks asked for it with
    /// [`Session::filter_response_body`] (its `Content-Length` is then
    /// dropped). An error aborts the downstream response and ends the
    /// request with it (the response had started: no retry).
    ///
    /// Default: the body as it came.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        Ok(())
    }

    /// Change the response head just before it goes downstream. After this
    /// hook the head is sent and no retry is possible.
    fn response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// An attempt has its connection to `peer`: a new one, or (`reused`) one
    /// from the pool. Nothing of the request was sent on it yet. An error
    /// ends the attempt, and the request, as a hook's error (no retry).
    /// Unlike Pingora's, it is not `async` (it runs on every attempt's path)
    /// and gets no file descriptor: the connection's details are in the
    /// attempt trace.
    ///
    /// Default: nothing.
    fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        Ok(())
    }

    /// No connection to `peer` could be made (refused, timed out, no route,
    /// TLS), or an HTTP/2 upstream provably did not process the request
    /// ([`ErrorKind::StreamRefused`]: it refused the stream, or sent a
    /// GOAWAY below it). Nothing was processed upstream and nothing went
    /// downstream, so a retry is safe for any method. Return the error,
    /// marked with [`Error::set_retry`] to try again.
    ///
    /// Default: a refused stream is retried (on a new connection; the trace
    /// note is `not-processed`), anything else is not.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        _ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if e.kind() == ErrorKind::StreamRefused {
            e.set_retry(true);
        }
        e
    }

    /// The connection to `peer` failed while in use: writing the request,
    /// waiting for the head, or (after the head went downstream) streaming
    /// the body. The upstream may have received and processed the request.
    /// `client_reused` says whether the connection came from the pool.
    ///
    /// Default: [`default_error_while_proxy`]: retry once, on a fresh
    /// connection, when a reused connection was dropped (a pooled connection
    /// the upstream closed as we wrote is the usual cause), the method is
    /// idempotent and the request body can still be replayed. Timeouts and
    /// invalid responses are not retried. The engine ignores a retry once
    /// the response started, whatever this says.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        _ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        default_error_while_proxy(peer, session, e, client_reused)
    }

    /// The request failed for good: `e` will not be retried. Write an error
    /// response with [`Session::respond`] unless the response already
    /// started, and return the status for logging.
    ///
    /// Default: [`respond::default_fail_to_proxy`]: 502 for connect and
    /// proxy errors, 504 for upstream timeouts, 400 for a bad downstream
    /// request, 500 for internal errors, with an RFC 9209 `Proxy-Status`;
    /// nothing once a response started or when the client is gone. If this
    /// hook sets no response, the engine sends a bare one with the status
    /// (or, for a status no client may be sent, such as 499, the one the
    /// error calls for); for a client that went away it sends nothing and
    /// closes the connection.
    fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut Self::CTX,
    ) -> impl Future<Output = u16> + Send {
        let status = respond::default_fail_to_proxy(session, e);
        async move { status }
    }

    /// The request in a line, for the failure log (see
    /// [`suppress_error_log`](Self::suppress_error_log)).
    ///
    /// Default: [`default_request_summary`], `METHOD target, Host: host`.
    fn request_summary(&self, session: &Session, _ctx: &Self::CTX) -> String {
        default_request_summary(session)
    }

    /// Whether to leave this failed request out of the failure log. The
    /// engine logs each request that fails for good (after
    /// `fail_to_proxy`): at `warn` through `tracing`, with
    /// [`request_summary`](Self::request_summary), the client, the error
    /// and the attempts; at `debug` for the client's own failures (errors
    /// on the [`Side::Downstream`](crate::Side): it left, or sent a bad,
    /// too large or too slow request). Suppress it
    /// when `logging` reports failures itself (the binary does: its access
    /// log has them).
    ///
    /// Default: `false`, every failure is logged.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, _error: &Error) -> bool {
        false
    }

    /// The request is over: its response was forwarded whole, or it failed
    /// with `e`. `session.attempts()` holds every attempt with its verdict.
    /// Nothing more can be sent anywhere.
    fn logging(
        &self,
        _session: &mut Session,
        _e: Option<&Error>,
        _ctx: &mut Self::CTX,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What [`ProxyHttp::request_summary`] says by default: the method, the
/// target as the client sent it, and the `Host`.
pub fn default_request_summary(session: &Session) -> String {
    let head = session.req_header();
    let host = forward::routed_host(head);
    let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
    format!("{} {}, Host: {host}", head.method, head.uri)
}

/// What [`ProxyHttp::error_while_proxy`] does by default, for overrides that
/// want it for some errors: mark the error retryable only when the connection
/// was reused, the failure looks like a connection the upstream had closed
/// (closed before the head, reset, write failed), the request is idempotent
/// and the body can be replayed. The engine sends the retry on a fresh
/// connection, so the default retries a request at most once.
pub fn default_error_while_proxy(
    peer: &HttpPeer,
    session: &Session,
    e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("peer {peer}"));
    let retry = client_reused
        && crate::policy::rules::connection_dropped(e.kind())
        && session.is_idempotent()
        && !session.retry_buffer_truncated();
    e.set_retry(retry);
    e
}
