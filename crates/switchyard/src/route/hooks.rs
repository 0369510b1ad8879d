//! A request's state on its route, and the route's side of each hook: the
//! proxy's `CTX` (or a part of it) delegates to it a line a hook.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, Uri, header};

use super::{HostHeader, Route, RouteTarget, Router, SplitChoice};
use crate::error::{Error, ErrorKind, Result};
use crate::group::GroupCtx;
use crate::group::UpstreamGroup;
use crate::peer::HttpPeer;
use crate::policy::budget::RetryBudget;
use crate::policy::dry_run::WouldHave;
use crate::policy::limits::RetryLimits;
use crate::proxy::respond::own_answer;
use crate::proxy::{RequestHeader, ResponseHeader, Session};

/// The `Proxy-Status` of the answer to a request no route takes.
const NO_ROUTE: &str = "switchyard; error=destination_not_found; details=\"no route\"";

/// The `Proxy-Status` of the answer to a client the route's `allow` and
/// `deny` lists refuse.
const DENIED: &str = "switchyard; error=http_request_denied; details=\"access-denied\"";

/// The `Proxy-Status` of the answer to a request without a known user's
/// password, on a route with Basic authentication.
const UNAUTHORIZED: &str = "switchyard; error=http_request_denied; details=\"unauthorized\"";

/// The `Proxy-Status` of the answer to a request whose rewritten path is
/// refused.
const BAD_REWRITE: &str = "switchyard; error=http_request_error; details=\"path-rewrite\"";

/// A request's route and its state in the route's group.
#[derive(Debug, Default)]
pub struct RouteCtx {
    route: Option<Arc<Route>>,
    /// The path and query the route rewrote the request's to, if it did.
    rewritten: Option<Uri>,
    /// The request's state in its route's group.
    pub group: GroupCtx,
    /// What only a route with guards, a split, sticky sessions,
    /// compression or a mirror needs: nothing for a plain route.
    extras: Option<Box<Extras>>,
}

/// A request's state for its route's optional features.
#[derive(Debug, Default)]
struct Extras {
    /// Why the route's guards refused the request, if they did.
    refused: Option<Refusal>,
    /// The side of the route's split the request went to, if it has one.
    split: Option<SplitChoice>,
    /// Whether the request's group has sticky sessions.
    sticky: bool,
    /// The response body's encoder, when the route compresses it.
    encoder: Option<crate::compress::Encoder>,
    /// Whether a copy of the request goes to the route's mirror.
    mirrored: bool,
}

impl RouteCtx {
    /// The route the request took, once [`request_filter`](Self::request_filter) chose one.
    #[inline]
    pub fn route(&self) -> Option<&Arc<Route>> {
        self.route.as_ref()
    }

    /// Why the route refused the request, if it did.
    #[inline]
    pub fn refusal(&self) -> Option<Refusal> {
        self.extras.as_ref()?.refused
    }

    /// The request's state for its route's optional features, made when
    /// first needed.
    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// For `request_filter`: choose the request's route in `router` and
    /// apply its settings to the session. A request no route takes is
    /// answered 404, one from a client the route's access control refuses
    /// 403 (`error=http_request_denied`), one over its rate limit 429, one
    /// without a known user's password 401, one whose rewritten path would
    /// bring back a dot segment 400 (`details="path-rewrite"`); `true`
    /// then: the request is answered (and [`refusal`](Self::refusal) says
    /// why, for the three guards).
    pub fn request_filter(&mut self, router: &Router, session: &mut Session) -> bool {
        if let Some(acme) = router.acme_challenges()
            && let Some(answer) = acme.http_challenge_response(session.req_header())
        {
            session.respond(answer);
            return true;
        }
        if let Some(redirect) = router.https_redirect()
            && !session.client_ip().is_tls()
            && let Some(answer) = redirect.response(session.req_header())
        {
            session.respond(answer);
            return true;
        }
        let Some(route) = router.find(session.req_header()).cloned() else {
            session.respond(own_answer(StatusCode::NOT_FOUND, "no route", NO_ROUTE));
            return true;
        };
        // Out of line: a route without guards costs these tests.
        if (route.access.is_some() || route.rate_limit.is_some() || route.basic_auth.is_some())
            && let Some(why) = refused(&route, session)
        {
            self.extras_mut().refused = Some(why);
            self.route = Some(route);
            return true;
        }
        match &route.target {
            RouteTarget::Group(group) => {
                if group.sticky().is_some() {
                    self.extras_mut().sticky = true;
                }
            }
            RouteTarget::Split(split) => {
                let choice = split.choose(&session.req_header().headers);
                let sticky = split.sides()[choice.side].group.sticky().is_some();
                let extras = self.extras_mut();
                extras.split = Some(choice);
                extras.sticky = sticky;
            }
            RouteTarget::Answer(answer) => {
                let tls = session.client_ip().is_tls();
                session.respond(answer.response(session.req_header(), tls));
                self.route = Some(route);
                return true;
            }
        }
        let prefix = &route.matcher.path_prefix;
        match route
            .rewrite
            .checked_path_for(prefix, &session.req_header().uri)
        {
            Ok(rewritten) => self.rewritten = rewritten,
            Err(why) => {
                session.respond(own_answer(StatusCode::BAD_REQUEST, why, BAD_REWRITE));
                return true;
            }
        }
        if let Some(limit) = route.max_request_body {
            session.set_max_request_body(limit);
        }
        if let Some(mirror) = &route.mirror
            && mirror.samples()
        {
            self.extras_mut().mirrored = session.copy_request_body(mirror.max_body);
        }
        if let Some(upgrades) = &route.upgrades {
            session.set_allowed_upgrades(upgrades.clone());
        }
        if let Some(keep) = route.keep_escaped_slashes {
            session.keep_escaped_slashes(keep);
        }
        if let Some(policy) = &route.policy {
            self.group = GroupCtx::with_policy(Arc::clone(policy));
        }
        self.route = Some(route);
        false
    }

    /// For `retry_limits`: the route's policy's (the defaults with no route).
    #[inline]
    pub fn retry_limits(&self) -> RetryLimits {
        self.upstream()
            .map(|group| group.retry_limits(&self.group))
            .unwrap_or_default()
    }

    /// The group the request goes to: its route's (or the side of its
    /// split it went to), once [`request_filter`](Self::request_filter)
    /// chose a route that has one.
    #[inline]
    pub fn upstream(&self) -> Option<&Arc<UpstreamGroup>> {
        group_of(self.route.as_ref(), self.extras.as_deref())
    }

    /// The side of its route's split the request went to, if the route
    /// splits.
    #[inline]
    pub fn split(&self) -> Option<SplitChoice> {
        self.extras.as_ref()?.split
    }

    /// For `retry_budget`: the route's group's.
    #[inline]
    pub fn retry_budget(&self) -> Option<Arc<RetryBudget>> {
        self.upstream()?.retry_budget()
    }

    /// For `upstream_peer`: see [`UpstreamGroup::upstream_peer`](crate::group::UpstreamGroup::upstream_peer).
    #[inline]
    pub fn upstream_peer(&mut self, session: &mut Session) -> Result<Box<HttpPeer>> {
        let Some(group) = group_of(self.route.as_ref(), self.extras.as_deref()) else {
            return Err(no_route());
        };
        group.upstream_peer(session, &mut self.group)
    }

    /// For `fail_to_connect`: see [`UpstreamGroup::fail_to_connect`](crate::group::UpstreamGroup::fail_to_connect).
    #[inline]
    pub fn fail_to_connect(&mut self, peer: &HttpPeer, e: Box<Error>) -> Box<Error> {
        match group_of(self.route.as_ref(), self.extras.as_deref()) {
            Some(group) => group.fail_to_connect(peer, &mut self.group, e),
            None => e,
        }
    }

    /// For `error_while_proxy`: see [`UpstreamGroup::error_while_proxy`](crate::group::UpstreamGroup::error_while_proxy).
    #[inline]
    pub fn error_while_proxy(
        &mut self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        reused: bool,
    ) -> Box<Error> {
        match group_of(self.route.as_ref(), self.extras.as_deref()) {
            Some(group) => group.error_while_proxy(peer, session, e, &mut self.group, reused),
            None => e,
        }
    }

    /// For `upstream_response_failure`: see [`UpstreamGroup::upstream_response_failure`](crate::group::UpstreamGroup::upstream_response_failure).
    #[inline]
    pub fn upstream_response_failure(
        &mut self,
        session: &mut Session,
        head: &ResponseHeader,
    ) -> Option<Box<Error>> {
        let group = group_of(self.route.as_ref(), self.extras.as_deref())?;
        group.upstream_response_failure(session, head, &mut self.group)
    }

    /// For `upstream_request_filter`: the route's path, `Host` and request
    /// header edits, on each attempt's request.
    pub fn upstream_request_filter(&self, session: &Session, request: &mut RequestHeader) {
        let Some(route) = self.route.as_deref() else {
            return;
        };
        if let Some(uri) = &self.rewritten {
            request.uri = uri.clone();
        }
        match &route.rewrite.host {
            HostHeader::Client => {}
            HostHeader::Fixed(value) => {
                request.headers.insert(header::HOST, value.clone());
            }
            HostHeader::Upstream => {
                // The server this attempt reached: a hedge that won included.
                let peer = session.attempts().last().map(|a| a.peer);
                let group = self.upstream();
                let host = peer.zip(group).map(|(addr, group)| group.host_of(addr));
                if let Some(value) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
                    request.headers.insert(header::HOST, value);
                }
            }
        }
        route.rewrite.request_headers.apply(&mut request.headers);
        if self.extras.as_ref().is_some_and(|extras| extras.sticky)
            && let Some(group) = self.upstream()
        {
            group.strip_sticky_cookie(request);
        }
    }

    /// For `response_filter`: the route's response header edits, the
    /// group's sticky-session cookie, a sticky split's cookie for a client
    /// that did not name its side, and the start of compression when the
    /// route compresses this response (its body then goes through
    /// [`response_body_filter`](Self::response_body_filter)).
    #[inline]
    pub fn response_filter(&mut self, session: &mut Session, response: &mut ResponseHeader) {
        let Some(route) = self.route.as_deref() else {
            return;
        };
        route.rewrite.response_headers.apply(&mut response.headers);
        // Out of line: a plain route's response costs these tests.
        if route.compress.is_some() || self.extras.is_some() {
            self.response_extras(session, response);
        }
    }

    /// Compression, and the sticky cookies of the group and the split.
    #[inline(never)]
    fn response_extras(&mut self, session: &mut Session, response: &mut ResponseHeader) {
        let Some(route) = self.route.clone() else {
            return;
        };
        if let Some(compression) = &route.compress
            && let Some(encoder) = compression.start(session.req_header(), response)
        {
            session.filter_response_body();
            self.extras_mut().encoder = Some(encoder);
        }
        if let Some(group) = self.upstream() {
            group.sticky_response(session, response);
        }
        if let (RouteTarget::Split(split), Some(choice)) = (&route.target, self.split())
            && (!choice.from_cookie || choice.moved_from.is_some())
            && let Some(cookie) = split.set_cookie(choice.side)
        {
            response.headers.append(header::SET_COOKIE, cookie);
        }
    }

    /// For `response_body_filter`: the body compressed as it streams, when
    /// [`response_filter`](Self::response_filter) started compressing.
    pub fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        let Some(encoder) = self.extras.as_mut().and_then(|x| x.encoder.as_mut()) else {
            return Ok(());
        };
        let chunk = body.take().unwrap_or_default();
        let out = encoder.encode(&chunk, end_of_stream).map_err(|e| {
            Error::explain(
                ErrorKind::Internal,
                format!("compressing the response body: {e}"),
            )
        })?;
        *body = (!out.is_empty()).then_some(out);
        Ok(())
    }

    /// For `logging`: see [`UpstreamGroup::logging`](crate::group::UpstreamGroup::logging);
    /// with no route, the session's dry runs alone.
    ///
    /// A request the route mirrors has its copy sent now, in the
    /// background (see [`Mirror`](crate::route::Mirror)).
    pub fn logging(&self, session: &Session) -> Vec<WouldHave> {
        if self.extras.as_ref().is_some_and(|extras| extras.mirrored)
            && let Some(mirror) = self.route.as_ref().and_then(|r| r.mirror.as_ref())
        {
            mirror.send(session.req_header(), session.request_body_copy());
        }
        match self.upstream() {
            Some(group) => group.logging(session, &self.group),
            None => session.dry_runs().to_vec(),
        }
    }
}

/// The group `route` sends the request to: its own, or the side of its
/// split the request went to.
#[inline]
fn group_of<'r>(
    route: Option<&'r Arc<Route>>,
    extras: Option<&Extras>,
) -> Option<&'r Arc<UpstreamGroup>> {
    match &route?.target {
        RouteTarget::Group(group) => Some(group),
        RouteTarget::Split(sides) => Some(&sides.sides()[extras?.split?.side].group),
        RouteTarget::Answer(_) => None,
    }
}

/// The error for a hook that needs a route called before one was chosen.
fn no_route() -> Box<Error> {
    Error::explain(ErrorKind::Internal, "no route chosen for this request")
}

/// Why a route's guards refused a request: the `details` of its
/// `Proxy-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The route's `allow` and `deny` lists refused the client (403).
    AccessDenied,
    /// The route's rate limit was reached (429).
    RateLimited,
    /// No known user's password (401).
    Unauthorized,
}

impl Refusal {
    /// Its name in metrics and logs: `access-denied`, `rate-limited`,
    /// `unauthorized`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AccessDenied => "access-denied",
            Refusal::RateLimited => "rate-limited",
            Refusal::Unauthorized => "unauthorized",
        }
    }
}

/// Whether `route`'s access control, rate limit or Basic authentication
/// refused the request (it is answered then), and why. A rate limit in
/// dry-run mode records what it would have done and lets it pass.
#[inline(never)]
fn refused(route: &Route, session: &mut Session) -> Option<Refusal> {
    if let Some(access) = &route.access {
        let client = access.client_ip(session.client_addr().ip(), &session.req_header().headers);
        if !access.permits(client) {
            session.respond(own_answer(StatusCode::FORBIDDEN, "not allowed", DENIED));
            return Some(Refusal::AccessDenied);
        }
    }
    if let Some(limit) = &route.rate_limit {
        let client = session.client_addr().ip();
        if let Some(over) = limit.check(client, &session.req_header().headers) {
            if limit.mode.is_dry_run() {
                session.note_dry_run("rate-limit", "refuse");
            } else {
                session.respond(limit.answer(over));
                return Some(Refusal::RateLimited);
            }
        }
    }
    match &route.basic_auth {
        Some(auth) if !authenticated(auth, &route.name, session) => Some(Refusal::Unauthorized),
        _ => None,
    }
}

/// Check `session`'s credentials against `auth`: answer 401 (and say why,
/// never with the password) when they fail; drop them from what goes
/// upstream unless the route forwards them. Whether the request goes on.
fn authenticated(auth: &crate::route::BasicAuth, route: &str, session: &mut Session) -> bool {
    match auth.check(&session.req_header().headers) {
        Ok(()) => {
            if !auth.forward_credentials {
                session
                    .req_header_mut()
                    .headers
                    .remove(header::AUTHORIZATION);
            }
            true
        }
        Err(failure) => {
            tracing::warn!(
                route,
                client = %session.client_addr(),
                reason = failure.as_str(),
                "basic authentication failed"
            );
            let mut answer = own_answer(
                StatusCode::UNAUTHORIZED,
                "authentication needed",
                UNAUTHORIZED,
            );
            answer
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, auth.challenge());
            session.respond(answer);
            false
        }
    }
}
