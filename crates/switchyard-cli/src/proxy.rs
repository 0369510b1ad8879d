//! The binary's proxy: the library's routes and upstream groups, built from
//! a checked config, behind the `ProxyHttp` hooks.
//!
//! Every behaviour is the library's: [`Router`] picks the route,
//! [`RouteCtx`] and the route's [`UpstreamGroup`](switchyard::group::UpstreamGroup)
//! choose servers, judge failures and apply rewrites. What is the binary's
//! own is reporting: the access log and metrics ([`Observer`]), and the
//! `x-switchyard-attempts` header (`[server] attempt_count_header`).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, RwLock};

use http::HeaderValue;
use switchyard::acme::Challenge;
use switchyard::policy::budget::RetryBudget;
use switchyard::policy::limits::RetryLimits;
use switchyard::prelude::*;
use switchyard::proxy::{ErrorPages, respond};
use switchyard::route::{RouteCtx, Router};

use crate::config::Config;
use crate::observe::Observer;

/// A proxy serving one config; [`reload`](Self::reload) swaps in another's
/// routes and groups while requests in flight finish on the ones they began
/// with.
#[derive(Debug, Clone)]
pub struct ConfigProxy {
    router: Arc<RwLock<Router>>,
    error_pages: Arc<RwLock<Arc<ErrorPages>>>,
    /// The port the first HTTPS listener got, for `https_redirect` when
    /// the config says port 0 (`0`: not known yet).
    https_port: Arc<AtomicU16>,
    attempt_count_header: bool,
    observer: Arc<Observer>,
}

/// The header that tells the client how many attempts its request took
/// (`[server] attempt_count_header`).
const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";

impl ConfigProxy {
    /// A proxy for `config`, reporting to `observer`.
    pub fn new(config: &Config, observer: Arc<Observer>) -> Self {
        ConfigProxy {
            router: Arc::new(RwLock::new(router_of(config, 0))),
            error_pages: Arc::new(RwLock::new(Arc::new(config.error_pages.clone()))),
            https_port: Arc::default(),
            attempt_count_header: config.attempt_count_header,
            observer,
        }
    }

    /// Serve `config`'s routes and groups from now on. Requests in flight
    /// keep the route they matched.
    pub fn reload(&self, config: &Config) {
        let https_port = self.https_port.load(Ordering::Relaxed);
        *self.router.write().unwrap_or_else(|p| p.into_inner()) = router_of(config, https_port);
        *self.error_pages.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(config.error_pages.clone());
    }

    /// The first HTTPS listener got `port`: `https_redirect` sends clients
    /// there when the config asked for port 0.
    pub fn listening_https_on(&self, port: u16, config: &Config) {
        self.https_port.store(port, Ordering::Relaxed);
        self.reload(config);
    }

    /// `x-switchyard-attempts: N` on a response, when configured.
    fn tell_attempts(&self, attempts: usize, headers: &mut http::HeaderMap) {
        if self.attempt_count_header {
            headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
        }
    }

    /// The same on an answer the proxy made itself, and its error page.
    fn tell_attempts_on_own_answer(&self, session: &mut Session) {
        let pages = Arc::clone(&self.error_pages.read().unwrap_or_else(|p| p.into_inner()));
        if !pages.is_empty() {
            pages.apply(session);
        }
        let attempts = session.attempts().len();
        if let Some(response) = session.prepared_response_mut() {
            self.tell_attempts(attempts, response.headers_mut());
        }
    }
}

/// `config`'s router; `https_port` stands in for a port 0 in the
/// redirect to HTTPS.
fn router_of(config: &Config, https_port: u16) -> Router {
    let mut router = Router::new(config.routes.iter().cloned());
    let acme = config.tls.as_ref().and_then(|tls| tls.acme.as_ref());
    if let Some(acme) = acme
        && acme.settings().challenge == Challenge::Http01
    {
        router = router.with_acme_challenges(acme.clone());
    }
    match &config.https_redirect {
        Some(redirect) => {
            let mut redirect = redirect.clone();
            if redirect.port == 0 {
                redirect.port = https_port;
            }
            router.with_https_redirect(redirect)
        }
        None => router,
    }
}

impl ProxyHttp for ConfigProxy {
    type CTX = RouteCtx;

    fn new_ctx(&self) -> RouteCtx {
        RouteCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RouteCtx) -> Result<bool> {
        // Read under the lock (a reload waits a moment): no clone per request.
        let answered = {
            let router = self.router.read().unwrap_or_else(|p| p.into_inner());
            ctx.request_filter(&router, session)
        };
        if answered {
            self.tell_attempts_on_own_answer(session);
        }
        Ok(answered)
    }

    fn retry_limits(&self, _session: &Session, ctx: &RouteCtx) -> RetryLimits {
        ctx.retry_limits()
    }

    fn retry_budget(&self, _session: &Session, ctx: &RouteCtx) -> Option<Arc<RetryBudget>> {
        ctx.retry_budget()
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RouteCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_peer(session)
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RouteCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.fail_to_connect(peer, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RouteCtx,
        reused: bool,
    ) -> Box<Error> {
        ctx.error_while_proxy(peer, session, e, reused)
    }

    fn upstream_response_failure(
        &self,
        session: &mut Session,
        head: &ResponseHeader,
        ctx: &mut RouteCtx,
    ) -> Option<Box<Error>> {
        ctx.upstream_response_failure(session, head)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RouteCtx,
    ) -> Result<()> {
        ctx.upstream_request_filter(session, request);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RouteCtx,
    ) -> Result<()> {
        ctx.response_filter(session, response);
        self.tell_attempts(session.attempts().len(), &mut response.headers);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RouteCtx,
    ) -> Result<()> {
        ctx.response_body_filter(body, end_of_stream)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut RouteCtx) -> u16 {
        let status = respond::default_fail_to_proxy(session, e);
        // The proxy's own answers carry what every response does.
        self.tell_attempts_on_own_answer(session);
        status
    }

    /// The access log and metrics report every failure (`logging`).
    fn suppress_error_log(&self, _: &Session, _: &RouteCtx, _: &Error) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RouteCtx) {
        let dry_runs = ctx.logging(session);
        self.observer.report(session, e, ctx, dry_runs);
    }
}
