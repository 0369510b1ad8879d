//! [`Session`]: the downstream request as hooks see it, with the attempt
//! trace and what has been sent downstream so far.

use super::trace_context::TraceContext;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};

use super::grpc::GrpcStatus;
use super::identity::ClientAddr;
use super::upgrade::{AllowedUpgrades, UpgradeRecord};
use crate::body::filter::{FilterStatus, RequestBodyFilter};
use crate::body::limit::BodyLimit;
use crate::body::{BufferState, ReplaySource};
use crate::policy::dry_run::WouldHave;
use crate::policy::idempotency::{Resend, is_idempotent, resend_safety};
use crate::trace::AttemptLog;
use crate::upstream::DownstreamBody;

/// One downstream request on its way through the hooks.
///
/// Its request head may be changed by `request_filter`; the head sent
/// upstream is built from it for each attempt and may be changed again, for
/// that attempt only, by `upstream_request_filter`.
#[derive(Debug)]
pub struct Session {
    request: Parts,
    client: ClientAddr,
    attempts: AttemptLog,
    body: ReplaySource<DownstreamBody>,
    body_limit: BodyLimit,
    request_id: HeaderValue,
    upstream_method: Option<Method>,
    response_status: Option<StatusCode>,
    response_started: bool,
    prepared_response: Option<Response<Bytes>>,
    upgrade: Option<Box<UpgradeRecord>>,
    /// The protocols this request may upgrade to.
    upgrades: AllowedUpgrades,
    /// The path holds an encoded slash (`%2F`, `%5C`), kept encoded.
    escaped_slash: bool,
    /// ...which refuses the request (400) after `request_filter`.
    refuse_escaped_slash: bool,
    /// When the request must be over, if it has a deadline.
    deadline: Option<Instant>,
    /// The header telling the upstream the time left, if any.
    deadline_header: Option<HeaderName>,
    /// How a gRPC call ended.
    grpc: Option<Box<GrpcStatus>>,
    /// The request arrived as a gRPC call.
    is_grpc: bool,
    /// What policies in dry-run mode would have done for this request.
    dry_runs: Vec<WouldHave>,
    /// The response body goes through `response_body_filter`.
    filter_response_body: bool,
    /// The request body goes through a `request_body_filter`: its status.
    request_body_filter: Option<Arc<FilterStatus>>,
    /// ...which changes the request's framing (no `Content-Length`).
    request_body_reframed: bool,
    /// Its W3C trace, continued or started.
    trace: Option<TraceContext>,
}

impl Session {
    pub(crate) fn new(
        request: Parts,
        client: ClientAddr,
        body: ReplaySource<DownstreamBody>,
        body_limit: BodyLimit,
        request_id: HeaderValue,
        attempts: AttemptLog,
    ) -> Self {
        let is_grpc = super::grpc::is_grpc(&request.headers);
        Session {
            request,
            client,
            attempts,
            body,
            body_limit,
            request_id,
            upstream_method: None,
            response_status: None,
            response_started: false,
            prepared_response: None,
            upgrade: None,
            upgrades: AllowedUpgrades::default(),
            escaped_slash: false,
            refuse_escaped_slash: false,
            deadline: None,
            deadline_header: None,
            dry_runs: Vec::new(),
            grpc: None,
            is_grpc,
            filter_response_body: false,
            request_body_filter: None,
            request_body_reframed: false,
            trace: None,
        }
    }

    /// The request's W3C trace: the one its `traceparent` carries, or one
    /// the proxy started (`ServerOptions::start_traces`); `None` otherwise.
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }

    /// Set the request's trace (the engine does, when the request arrives).
    pub(crate) fn set_trace_context(&mut self, trace: Option<TraceContext>) {
        self.trace = trace;
    }

    /// Pass this response's body through
    /// [`ProxyHttp::response_body_filter`](super::ProxyHttp::response_body_filter):
    /// call it from `upstream_response_filter` or `response_filter`. The
    /// body may then change size, so its `Content-Length` is dropped (an
    /// HTTP/1.1 client gets it chunked). Without this call the hook is not
    /// called and the body streams untouched. No effect on a response
    /// without a body (to `HEAD`, a 204 or a 304) or on a 101.
    pub fn filter_response_body(&mut self) {
        self.filter_response_body = true;
    }

    /// Whether the response body goes through `response_body_filter`.
    pub fn response_body_filtered(&self) -> bool {
        self.filter_response_body
    }

    /// Whether the request arrived as a gRPC call (its `content-type` is
    /// `application/grpc`, see [`grpc::is_grpc`](super::grpc::is_grpc)).
    pub fn is_grpc(&self) -> bool {
        self.is_grpc
    }

    /// When the request must be over (its `RetryLimits::deadline`, or a
    /// gRPC call's `grpc-timeout` or the client's deadline header if
    /// shorter), once the first attempt began.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Record that a policy in dry-run mode would have acted (see
    /// [`crate::policy::dry_run`]); the request goes on as if it had not.
    pub fn note_dry_run(&mut self, policy: &'static str, would: &'static str) {
        self.dry_runs.push(WouldHave { policy, would });
    }

    /// What policies in dry-run mode would have done for this request.
    pub fn dry_runs(&self) -> &[WouldHave] {
        &self.dry_runs
    }

    /// The header (`RetryLimits::deadline_header`) that tells the upstream
    /// the time left before [`deadline`](Self::deadline), if any.
    pub fn deadline_header(&self) -> Option<&HeaderName> {
        self.deadline_header.as_ref()
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>, header: Option<HeaderName>) {
        self.deadline = deadline;
        self.deadline_header = header;
    }

    /// How a gRPC call ended: the `grpc-status` of its trailers (or of a
    /// trailers-only answer), or the one the proxy answered with itself.
    /// Set by the time `logging` runs.
    pub fn grpc_status(&self) -> Option<&GrpcStatus> {
        self.grpc.as_deref()
    }

    /// Record how a gRPC call ended (the default `fail_to_proxy` does).
    pub fn set_grpc_status(&mut self, status: GrpcStatus) {
        self.grpc = Some(Box::new(status));
    }

    /// After the upstream switched protocols (101): what went through the
    /// tunnel and how it ended (set once it closed, for `logging`).
    pub fn upgrade(&self) -> Option<&UpgradeRecord> {
        self.upgrade.as_deref()
    }

    /// The protocols this request may upgrade to: the server's
    /// (`ServerOptions::upgrades`, `websocket` by default) unless a hook
    /// set others.
    pub fn allowed_upgrades(&self) -> &AllowedUpgrades {
        &self.upgrades
    }

    /// Let this request upgrade to `allowed` only (a route's `upgrades`);
    /// call it in `request_filter`. An `Upgrade` naming nothing allowed is
    /// dropped and the request served as an ordinary one.
    pub fn set_allowed_upgrades(&mut self, allowed: AllowedUpgrades) {
        self.upgrades = allowed;
    }

    /// Whether an encoded slash (`%2F`, `%5C`) in this request's path is
    /// forwarded (`true`) or refused with 400 (`false`); call it in
    /// `request_filter` (a route's `escaped_slashes`). The default is the
    /// server's `PathRules::escaped_slashes`. No effect when the server
    /// decodes them (`EscapedSlashes::Decode`): they were separators
    /// before any hook ran.
    pub fn keep_escaped_slashes(&mut self, keep: bool) {
        self.refuse_escaped_slash = !keep;
    }

    /// Note that the normalized path holds an encoded slash, refused after
    /// `request_filter` unless a hook keeps it.
    pub(crate) fn note_escaped_slash(&mut self, refuse: bool) {
        self.escaped_slash = true;
        self.refuse_escaped_slash = refuse;
    }

    /// Whether the request is refused for an encoded slash in its path.
    pub(crate) fn escaped_slash_refused(&self) -> bool {
        self.escaped_slash && self.refuse_escaped_slash
    }

    /// The upgrade this request asks for and may make, if any.
    pub(crate) fn upgrade_asked(&self) -> Option<HeaderValue> {
        super::upgrade::requested(&self.request, &self.upgrades)
    }

    pub(crate) fn set_upgrade(&mut self, record: UpgradeRecord) {
        self.upgrade = Some(Box::new(record));
    }

    /// The downstream request head.
    pub fn req_header(&self) -> &Parts {
        &self.request
    }

    /// The downstream request head, to change before it is proxied.
    pub fn req_header_mut(&mut self) -> &mut Parts {
        &mut self.request
    }

    /// This request's ID (`X-Request-Id`): the one a trusted proxy sent,
    /// else a new one. It goes upstream and back to the client.
    pub fn request_id(&self) -> &HeaderValue {
        &self.request_id
    }

    /// The client's address, with its text for the forwarding headers.
    pub(crate) fn client_ip(&self) -> &ClientAddr {
        &self.client
    }

    /// The downstream client's address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client.addr()
    }

    /// Every attempt made so far, the current one last.
    pub fn attempts(&self) -> &AttemptLog {
        &self.attempts
    }

    pub(crate) fn attempts_mut(&mut self) -> &mut AttemptLog {
        &mut self.attempts
    }

    /// Whether the request is idempotent (RFC 9110 section 9.2.2: GET, HEAD,
    /// OPTIONS, TRACE, PUT, DELETE): both the downstream method and the
    /// method `upstream_request_filter` last sent upstream must be.
    pub fn is_idempotent(&self) -> bool {
        is_idempotent(&self.request.method)
            && self.upstream_method.as_ref().is_none_or(is_idempotent)
    }

    /// Whether the request may be sent again after it may have reached the
    /// upstream: an idempotent method, or a request carrying one
    /// idempotency key in the header `key` names (`None`: keys are not
    /// honoured). See [`crate::policy::idempotency`].
    pub fn resend_safety(&self, key: Option<&HeaderName>) -> Resend {
        resend_safety(
            &self.request.method,
            self.upstream_method.as_ref(),
            &self.request.headers,
            key,
        )
    }

    /// The method of the request last sent upstream, once an attempt got that far.
    pub fn upstream_method(&self) -> Option<&Method> {
        self.upstream_method.as_ref()
    }

    pub(crate) fn set_upstream_method(&mut self, method: Method) {
        self.upstream_method = Some(method);
    }

    /// Whether the request body outgrew the replay buffer, so the request
    /// cannot be sent again once its body started upstream.
    pub fn retry_buffer_truncated(&self) -> bool {
        self.body.state() == BufferState::Truncated
    }

    /// Set this request's replay buffer size (from `request_filter` or
    /// `upstream_peer`, before the body is read). Returns whether it took
    /// effect: once body bytes were read the size is fixed by hooks (the
    /// engine may still raise it for an attempt over HTTP/2, so that a
    /// refused stream can be replayed; see docs/failure-contract.md).
    pub fn set_retry_buffer_size(&mut self, bytes: usize) -> bool {
        self.body.set_capacity(bytes)
    }

    /// Keep a copy of the request body, up to `max` bytes, for use after
    /// the response (a mirror's copy of the request): from
    /// `request_filter`, before the body is read. Returns whether it took
    /// effect. The replay buffer is freed once the response starts; this
    /// copy is kept to the end of the request.
    pub fn copy_request_body(&mut self, max: usize) -> bool {
        self.body.copy_up_to(max)
    }

    /// The copy [`copy_request_body`](Self::copy_request_body) asked for:
    /// the whole body once it was read to its end (an empty one for a
    /// request that has no body), else why not.
    pub fn request_body_copy(&self) -> crate::body::BodyCopy {
        let headers = &self.req_header().headers;
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let bodiless = !headers.contains_key(http::header::TRANSFER_ENCODING)
            && declared.is_none_or(|length| length == 0);
        if bodiless {
            return crate::body::BodyCopy::Complete(Bytes::new());
        }
        self.body.copied()
    }

    /// Request body bytes read from the client so far (with a
    /// `request_body_filter`: the bytes it passed on).
    pub fn request_body_bytes(&self) -> u64 {
        self.body.bytes_read()
    }

    /// The most request body bytes this request may send
    /// (`ServerOptions::max_request_body` unless changed); `None`: no limit.
    pub fn max_request_body(&self) -> Option<u64> {
        self.body_limit.get()
    }

    /// Change this request's body limit (from `request_filter`, e.g. per
    /// route); `None` lifts it. A declared `Content-Length` over the limit
    /// is answered 413 before anything goes upstream; a body that passes it
    /// while streaming is cut off before the byte that crosses it.
    pub fn set_max_request_body(&mut self, bytes: Option<u64>) {
        self.body_limit.set(bytes);
    }

    /// Whether the request body was cut off at its limit.
    pub fn request_body_over_limit(&self) -> bool {
        self.body_limit.exceeded()
    }

    /// Whether the request body goes through a filter that
    /// [`ProxyHttp::request_body_filter`](super::ProxyHttp::request_body_filter)
    /// returned (its `Content-Length` is then not sent upstream).
    pub fn request_body_filtered(&self) -> bool {
        self.request_body_filter.is_some()
    }

    /// Pass the request body through `filter`, before any of it was read.
    pub(crate) fn set_request_body_filter(&mut self, filter: Box<dyn RequestBodyFilter>) {
        if let Some(set) = self.body.set_filter(filter) {
            self.request_body_filter = Some(set.status);
            self.request_body_reframed = set.reframes;
        }
    }

    /// Whether the filtered body goes upstream without its
    /// `Content-Length` (chunked over HTTP/1.1).
    pub(crate) fn request_body_reframed(&self) -> bool {
        self.request_body_reframed
    }

    /// Read what is left of the request body past its filter: the response
    /// is over and the rest is only drained.
    pub(crate) fn bypass_request_body_filter(&self) {
        if let Some(status) = &self.request_body_filter {
            status.bypass();
        }
    }

    /// The error the request body filter failed with, if it did.
    pub(crate) fn request_body_filter_failure(&self) -> Option<Box<crate::error::Error>> {
        self.request_body_filter.as_ref()?.failure()
    }

    pub(crate) fn body_source(&self) -> &ReplaySource<DownstreamBody> {
        &self.body
    }

    /// Whether the response head already went downstream. From then on no
    /// retry is possible and no error response can be sent.
    pub fn response_started(&self) -> bool {
        self.response_started
    }

    /// The status sent (or being sent) downstream, once decided; 499 (for
    /// logs, as nginx's) when the client went away before any response, in
    /// which case nothing was sent.
    pub fn response_status(&self) -> Option<StatusCode> {
        self.response_status
    }

    pub(crate) fn mark_response_started(&mut self, status: StatusCode) {
        self.response_started = true;
        self.response_status = Some(status);
        // No retry can come any more: the replay buffer is dead weight.
        self.body.release_buffer();
    }

    /// The client went away before any response: nothing will be sent, and
    /// 499 is the status logged.
    pub(crate) fn mark_client_gone(&mut self) {
        self.response_status = StatusCode::from_u16(super::respond::CLIENT_CLOSED).ok();
    }

    /// Answer the client with this response instead of proxying: from
    /// `request_filter` (then return `Ok(true)`) or from `fail_to_proxy`.
    /// Ignored once a response has started.
    pub fn respond(&mut self, response: Response<Bytes>) {
        if !self.response_started {
            self.prepared_response = Some(response);
        }
    }

    /// A short plain-text response with `status`, e.g. to deny a request.
    pub fn respond_status(&mut self, status: StatusCode) {
        let reason = status.canonical_reason().unwrap_or("");
        let mut response = Response::new(Bytes::from(format!("{} {reason}\n", status.as_u16())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        self.respond(response);
    }

    /// The response set with [`respond`](Self::respond), if any, to add a
    /// header to it (e.g. from `fail_to_proxy`, after the default made it).
    pub fn prepared_response_mut(&mut self) -> Option<&mut Response<Bytes>> {
        self.prepared_response.as_mut()
    }

    pub(crate) fn take_prepared_response(&mut self) -> Option<Response<Bytes>> {
        self.prepared_response.take()
    }
}
