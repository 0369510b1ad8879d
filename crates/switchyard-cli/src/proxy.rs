//! The binary's proxy: the library's hooks driven by a checked config.
//!
//! `request_filter` picks the route (first match on host and path prefix),
//! `upstream_peer` picks a server the request has not tried yet (or the same
//! one again when a rule says so), and the failure hooks apply the route's
//! `RetryRules`, leaving a note on every verdict so the access log and the
//! metrics can say why a retry was or was not taken. A POST or PATCH that
//! carries an idempotency key (when the route names its header) is resent
//! like an idempotent request, with the note `idempotency-key`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, StatusCode, header};
use switchyard::AttemptLog;
use switchyard::lb::hash_bytes;
use switchyard::policy::budget::RetryBudget;
use switchyard::policy::idempotency::Resend;
use switchyard::policy::limits::RetryLimits;
use switchyard::policy::pushback::{RETRY_AFTER_NOTE, retry_after};
use switchyard::policy::rules::Judgement;
use switchyard::prelude::*;
use switchyard::proxy::{grpc, respond};

use crate::config::{Config, Group, HashKey, Route};
use crate::observe::{Finished, Observer};
use crate::routing::HostHeader;

/// A proxy serving one config; [`reload`](Self::reload) swaps in another's
/// routes and groups while requests in flight finish on the ones they began
/// with.
#[derive(Debug, Clone)]
pub struct ConfigProxy {
    routes: Arc<RwLock<Vec<Arc<Route>>>>,
    attempt_count_header: bool,
    observer: Arc<Observer>,
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct Ctx {
    route: Option<Arc<Route>>,
    /// The path and query the route rewrote the request's to, if it did.
    rewritten: Option<http::Uri>,
    same_peer_next: Option<SocketAddr>,
    /// Primaries whose load count this request raised, each with the index
    /// of its attempt in the trace.
    begun: Vec<(SocketAddr, usize)>,
}

impl ConfigProxy {
    /// A proxy for `config`, reporting to `observer`.
    pub fn new(config: &Config, observer: Arc<Observer>) -> Self {
        ConfigProxy {
            routes: Arc::new(RwLock::new(shared_routes(config))),
            attempt_count_header: config.attempt_count_header,
            observer,
        }
    }

    /// Serve `config`'s routes and groups from now on. Requests in flight
    /// keep the route they matched.
    pub fn reload(&self, config: &Config) {
        let routes = shared_routes(config);
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// Answer the request itself with `status`, the reason `why` as its
    /// body, and `proxy_status` as its `Proxy-Status`.
    fn answer(
        &self,
        session: &mut Session,
        status: StatusCode,
        why: &str,
        proxy_status: &'static str,
    ) {
        let reason = status.canonical_reason().unwrap_or("");
        let body = format!("{} {reason}: {why}\n", status.as_u16());
        let mut response = http::Response::new(bytes::Bytes::from(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("proxy-status", HeaderValue::from_static(proxy_status));
        self.tell_attempts(session.attempts().len(), response.headers_mut());
        session.respond(response);
    }

    /// `x-switchyard-attempts: N` on a response, when configured.
    fn tell_attempts(&self, attempts: usize, headers: &mut http::HeaderMap) {
        if self.attempt_count_header {
            headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
        }
    }

    fn route(&self, ctx: &Ctx) -> Result<Arc<Route>> {
        ctx.route
            .clone()
            .ok_or_else(|| Error::explain(ErrorKind::Internal, "no route chosen for this request"))
    }

    /// A 503 or 429 with `Retry-After` keeps its server out of selection
    /// for that long (at most `max_retry_after`); the wait, if any.
    fn push_back(
        &self,
        route: &Route,
        session: &mut Session,
        head: &ResponseHeader,
    ) -> Option<Duration> {
        // Most answers are neither: no clock read for them.
        if !matches!(head.status.as_u16(), 503 | 429) {
            return None;
        }
        let cap = route.policy.max_retry_after;
        let wait = retry_after(head.status, &head.headers, SystemTime::now(), cap)?;
        let peer = session.attempts().last()?.peer;
        if route.policy.limits.mode.is_dry_run() {
            session.note_dry_run("pushback", "hold");
            return Some(wait);
        }
        let now = Instant::now();
        let why = format!("{} with Retry-After ({wait:?})", head.status.as_u16());
        route.group.health.hold(peer, now + wait, why, now);
        self.observer
            .count_held(&route.group.label, head.status.as_u16());
        Some(wait)
    }

    fn match_route(&self, session: &Session) -> Option<Arc<Route>> {
        let head = session.req_header();
        let host = head
            .uri
            .host()
            .or_else(|| head.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .map(|h| {
                let name = h.rsplit_once(':').map_or(h, |(name, _port)| name);
                // Most clients send the name in lower case already: no copy then.
                if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    std::borrow::Cow::Owned(name.to_ascii_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(name)
                }
            });
        let path = head.uri.path();
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .iter()
            .find(|route| {
                route
                    .matcher
                    .matches(host.as_deref(), &head.method, path, &head.headers)
            })
            .cloned()
    }
}

/// The header that tells the client how many attempts its request took
/// (`[server] attempt_count_header`).
const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";

/// Apply a rule's judgement to `e`, steering the next `upstream_peer`.
fn apply(
    judgement: Judgement,
    ctx: &mut Ctx,
    peer: Option<SocketAddr>,
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
fn honoured(session: &mut Session, route: &Route, judge: impl Fn(bool) -> Judgement) -> Resend {
    let resend = session.resend_safety(route.policy.idempotency_key.as_ref());
    if resend != Resend::IdempotencyKey || !route.policy.limits.mode.is_dry_run() {
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

impl ProxyHttp for ConfigProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(route) = self.match_route(session) else {
            let status = "switchyard; error=destination_not_found; details=\"no route\"";
            self.answer(session, StatusCode::NOT_FOUND, "no route", status);
            return Ok(true);
        };
        let prefix = &route.matcher.path_prefix;
        match route
            .rewrite
            .checked_path_for(prefix, &session.req_header().uri)
        {
            Ok(rewritten) => ctx.rewritten = rewritten,
            Err(why) => {
                let status = "switchyard; error=http_request_error; details=\"path-rewrite\"";
                self.answer(session, StatusCode::BAD_REQUEST, why, status);
                return Ok(true);
            }
        }
        session.set_retry_buffer_size(route.policy.replay_buffer);
        session.set_max_request_body(route.max_request_body);
        session.set_allowed_upgrades(route.upgrades.clone());
        if let Some(keep) = route.keep_escaped_slashes {
            session.keep_escaped_slashes(keep);
        }
        ctx.route = Some(route);
        Ok(false)
    }

    fn retry_limits(&self, _session: &Session, ctx: &Ctx) -> RetryLimits {
        self.route(ctx)
            .map(|r| r.policy.limits.clone())
            .unwrap_or_default()
    }

    fn retry_budget(&self, _session: &Session, ctx: &Ctx) -> Option<Arc<RetryBudget>> {
        self.route(ctx).ok().map(|r| Arc::clone(&r.group.budget))
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = self.route(ctx)?;
        let group = &route.group;
        // The servers earlier attempts went to (a hedge that won included).
        let tried: Vec<SocketAddr> = session
            .attempts()
            .records()
            .iter()
            .map(|r| r.peer)
            .collect();
        let avoid = group.health.avoid(Instant::now());
        let addr = match ctx.same_peer_next.take() {
            Some(addr) => addr,
            None => match &group.hash_key {
                Some(key) => {
                    let key = hash_key(key, session);
                    group.backends.select_keyed(&tried, &avoid, key).addr
                }
                None => {
                    let addr = group.backends.select_avoiding(&tried, &avoid).addr;
                    slow_start(group, addr, &tried, &avoid, session)
                }
            },
        };
        if let Some(load) = group.backends.load(addr) {
            load.begin();
            ctx.begun.push((addr, session.attempts().len()));
        }
        let mut peer = group.peer(addr);
        if group.connect_hedging
            && let Some(hedge) = group.backends.hedge_for(addr, &tried, &avoid)
        {
            peer = peer.with_hedge(group.peer(hedge));
        }
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        match self.route(ctx) {
            Ok(route) => {
                let judgement = route.policy.rules.on_connect_failure(e.kind());
                apply(judgement, ctx, Some(peer.address), e)
            }
            Err(_) => e,
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        reused: bool,
    ) -> Box<Error> {
        match self.route(ctx) {
            Ok(route) => {
                let rules = &route.policy.rules;
                let kind = e.kind();
                let judge = |allowed| rules.on_proxy_error(kind, reused, allowed);
                let resend = honoured(session, &route, judge);
                let judgement = judge(resend.allowed());
                keyed(apply(judgement, ctx, Some(peer.address), e), resend)
            }
            Err(_) => e,
        }
    }

    fn upstream_response_failure(
        &self,
        session: &mut Session,
        head: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Option<Box<Error>> {
        let route = self.route(ctx).ok()?;
        let wait = self.push_back(&route, session, head);
        let rules = &route.policy.rules;
        if rules.retry_on.grpc_unavailable
            && session.is_grpc()
            && let Some(status) = grpc::GrpcStatus::from_fields(&head.headers)
            && status.code == grpc::UNAVAILABLE
        {
            let judgement = rules.on_grpc_status(status.code);
            let e = Error::explain(
                ErrorKind::UpstreamStatus,
                format!(
                    "upstream answered grpc-status {} (trailers only)",
                    status.code
                ),
            );
            let peer = session.attempts().last().map(|a| a.peer);
            let mut e = apply(judgement, ctx, peer, e);
            if e.retry() {
                e.set_retry_note("grpc-unavailable");
            }
            return Some(e);
        }
        let status = head.status.as_u16();
        if !route.policy.rules.retry_on.statuses.contains(&status) {
            return None;
        }
        let judge = |allowed| route.policy.rules.on_status(status, allowed);
        let resend = honoured(session, &route, judge);
        let judgement = judge(resend.allowed());
        let e = Error::explain(
            ErrorKind::UpstreamStatus,
            format!("upstream answered {status}"),
        );
        let peer = session.attempts().last().map(|a| a.peer);
        let mut e = keyed(apply(judgement, ctx, peer, e), resend);
        // The server asked for time: the retry goes elsewhere, or, with no
        // other server left, waits for it.
        if e.retry()
            && let Some(wait) = wait
            && !another_server_left(&route.group, session)
        {
            if route.policy.limits.mode.is_dry_run() {
                session.note_dry_run("pushback", "wait");
            } else {
                e.set_retry_delay(wait);
                e.set_retry_note(RETRY_AFTER_NOTE);
            }
        }
        Some(e)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Borrowed, not cloned: this runs for every attempt.
        let Some(route) = ctx.route.as_deref() else {
            return Ok(());
        };
        let rewrite = &route.rewrite;
        if let Some(uri) = &ctx.rewritten {
            request.uri = uri.clone();
        }
        match &rewrite.host {
            HostHeader::Client => {}
            HostHeader::Fixed(value) => {
                request.headers.insert(header::HOST, value.clone());
            }
            HostHeader::Upstream => {
                // The server this attempt reached: a hedge that won included.
                let peer = session.attempts().last().map(|a| a.peer);
                let host = peer.map(|addr| route.group.host_of(addr));
                if let Some(value) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
                    request.headers.insert(header::HOST, value);
                }
            }
        }
        rewrite.request_headers.apply(&mut request.headers);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(route) = ctx.route.as_deref() {
            route.rewrite.response_headers.apply(&mut response.headers);
        }
        self.tell_attempts(session.attempts().len(), &mut response.headers);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> u16 {
        let status = respond::default_fail_to_proxy(session, e);
        // The proxy's own answers carry what every response does.
        let attempts = session.attempts().len();
        if let Some(response) = session.prepared_response_mut() {
            self.tell_attempts(attempts, response.headers_mut());
        }
        status
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let route = self.route(ctx).ok();
        let mut dry_runs = session.dry_runs().to_vec();
        if let Some(route) = &route {
            let health = &route.group.health;
            dry_runs.extend(health.report_attempts(session.attempts(), Instant::now()));
            end_loads(&route.group, session.attempts(), &ctx.begun);
        }
        if !dry_runs.is_empty() {
            self.observer.count_dry_runs(&dry_runs);
        }
        let status = session.response_status().map_or(0, |s| s.as_u16());
        self.observer.count(
            route.as_ref().map(|r| &r.group.label),
            status,
            session.attempts(),
        );
        if let Some(grpc) = session.grpc_status() {
            self.observer
                .count_grpc(route.as_ref().map(|r| &r.group.label), grpc.code);
        }
        if let Some(upgrade) = session.upgrade() {
            self.observer
                .count_upgrade(route.as_ref().map(|r| &r.group.label), upgrade);
        }
        if !self.observer.wants_details() {
            return;
        }
        let head = session.req_header();
        let trace = session.attempts().clone();
        let finished = Finished {
            client: session.client_addr().to_string(),
            method: head.method.to_string(),
            path: head
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
            status,
            bytes: trace.last().map_or(0, |a| a.response_body_bytes),
            duration: Instant::now().saturating_duration_since(trace.start()),
            upstream: route.as_ref().map(|r| r.group.name.clone()),
            error: e.map(|e| e.to_string()),
            trace,
            request_id: session.request_id().to_str().unwrap_or("-").to_string(),
            upgrade: session.upgrade().cloned(),
            dry_runs,
            grpc: session.grpc_status().cloned(),
        };
        self.observer.log(&finished);
    }
}

/// `addr`, unless it is ramping up after coming back and its share says
/// to pick again: then another usable server, if there is one.
fn slow_start(
    group: &Group,
    addr: SocketAddr,
    tried: &[SocketAddr],
    avoid: &[SocketAddr],
    session: &mut Session,
) -> SocketAddr {
    if group.health.slow_start_admits(addr, Instant::now()) {
        return addr;
    }
    if group.health.mode().is_dry_run() {
        session.note_dry_run("slow-start", "pick-again");
        return addr;
    }
    let mut others = avoid.to_vec();
    others.push(addr);
    let other = group.backends.select_avoiding(tried, &others).addr;
    if others.contains(&other) { addr } else { other }
}

/// Whether the group has a server this request has not tried that is not
/// avoided now (down, ejected, or asking for time).
fn another_server_left(group: &Group, session: &Session) -> bool {
    let avoid = group.health.avoid(Instant::now());
    let tried = session.attempts().records();
    group
        .health
        .peers()
        .iter()
        .any(|p| !avoid.contains(p) && !tried.iter().any(|r| r.peer == *p))
}

/// Lower the load counts this request raised, with the latency of the
/// attempt that went to each server. A server chosen for an attempt that
/// never started (a retry skipped for want of time), or for a hedge's copy
/// (which shares its attempt's record), gives no latency sample.
fn end_loads(group: &Group, attempts: &AttemptLog, begun: &[(SocketAddr, usize)]) {
    for &(addr, attempt) in begun {
        let Some(load) = group.backends.load(addr) else {
            continue;
        };
        match attempts.records().get(attempt).filter(|a| a.peer == addr) {
            Some(record) => load.end(record.duration),
            None => load.cancel(),
        }
    }
}

/// The request's place on the hash ring.
fn hash_key(key: &HashKey, session: &Session) -> u64 {
    let head = session.req_header();
    match key {
        HashKey::Header(name) => head
            .headers
            .get(name)
            .map_or(0, |v| hash_bytes(v.as_bytes())),
        HashKey::Cookie(name) => head
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| n == name)
            .map_or(0, |(_, value)| hash_bytes(value.as_bytes())),
        HashKey::Path => hash_bytes(head.uri.path().as_bytes()),
        HashKey::Client => hash_bytes(session.client_addr().ip().to_string().as_bytes()),
    }
}

fn shared_routes(config: &Config) -> Vec<Arc<Route>> {
    config.routes.iter().cloned().map(Arc::new).collect()
}
