//! Routes: which requests go to which [`UpstreamGroup`], and how they are
//! changed on the way.
//!
//! A [`Route`] is a [`RouteMatch`] (host, path prefix, methods, headers), a
//! [`Rewrite`] (path prefix, `Host`, header edits), a [`RouteTarget`] (a
//! group, or an [`Answer`] the proxy gives itself), and the request
//! settings that go with it (the retry policy, the body limit, the
//! upgrades allowed, what becomes of encoded slashes, its guards). A [`Router`] holds
//! routes in order; the first that matches takes the request. A proxy keeps
//! a [`RouteCtx`] as its `CTX` (or in it) and delegates each hook to it:
//! the binary's proxy is built this way, and `docs/library.md` shows how.
//!
//! Routes match the normalized path (see [`path`](crate::path)), and a
//! prefix rewrite that would bring back a dot segment is refused.

use std::sync::Arc;

use crate::group::{RetryPolicy, UpstreamGroup};
use crate::proxy::{AllowedUpgrades, RequestHeader};

mod access;
mod answer;
mod basic_auth;
mod hooks;
mod matching;
mod mirror;
mod rate_limit;
mod rewrite;
mod split;
#[cfg(test)]
mod tests;

pub use access::AccessControl;
pub use answer::{Answer, FixedResponse, HttpsRedirect, Redirect};
pub use basic_auth::{AuthFailure, BasicAuth};
pub use hooks::{Refusal, RouteCtx};
pub use matching::{HeaderCondition, HostPattern, RouteMatch, routing_host};
pub use mirror::{Mirror, MirrorStats};
pub use rate_limit::{RateLimit, RateLimitBuckets, RateLimitKey, RateLimited};
pub use rewrite::{HeaderEdits, HostHeader, PathRewrite, Rewrite};
pub use split::{Split, SplitChoice, SplitSide};

/// A route: which requests go to which group, with which policy.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name, for metrics (`route` label) and logs; empty if unnamed.
    pub name: Arc<String>,
    /// Which requests it takes.
    pub matcher: RouteMatch,
    /// How it changes what it forwards.
    pub rewrite: Rewrite,
    /// Where its requests go.
    pub target: RouteTarget,
    /// Its own retry policy, overriding its group's; `None`: the group's.
    pub policy: Option<Arc<RetryPolicy>>,
    /// The request body limit: `Some(Some(bytes))` this route's,
    /// `Some(None)` none at all; `None`: the server's
    /// (`ServerOptions::max_request_body`).
    pub max_request_body: Option<Option<u64>>,
    /// The protocols its requests may upgrade to; `None`: the server's
    /// (`ServerOptions::upgrades`).
    pub upgrades: Option<AllowedUpgrades>,
    /// Whether an encoded slash in its paths is forwarded (`Some(true)`) or
    /// refused (`Some(false)`); `None`: as the server's path rules say.
    pub keep_escaped_slashes: Option<bool>,
    /// Which clients may use it; `None`: everyone.
    pub access: Option<AccessControl>,
    /// The users who may use it; `None`: no authentication.
    pub basic_auth: Option<BasicAuth>,
    /// How often each client (or key) may use it; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Which responses it compresses; `None`: none.
    pub compress: Option<Arc<crate::compress::Compression>>,
    /// Where copies of a share of its requests go; `None`: nowhere.
    pub mirror: Option<Arc<Mirror>>,
}

impl Route {
    /// A route taking the requests `matcher` matches to `group`, forwarding
    /// them unchanged under the group's policy and the server's limits.
    pub fn new(matcher: RouteMatch, group: Arc<UpstreamGroup>) -> Route {
        Route::with_target(matcher, RouteTarget::Group(group))
    }

    /// A route answering the requests `matcher` matches itself, with
    /// `answer`.
    pub fn answering(matcher: RouteMatch, answer: Answer) -> Route {
        Route::with_target(matcher, RouteTarget::Answer(Arc::new(answer)))
    }

    /// A route taking the requests `matcher` matches to `target`.
    pub fn with_target(matcher: RouteMatch, target: RouteTarget) -> Route {
        Route {
            name: Arc::default(),
            matcher,
            rewrite: Rewrite::default(),
            policy: None,
            target,
            max_request_body: None,
            upgrades: None,
            keep_escaped_slashes: None,
            access: None,
            basic_auth: None,
            rate_limit: None,
            compress: None,
            mirror: None,
        }
    }

    /// The group its requests go to, if it has one (a split has several:
    /// see [`RouteCtx::upstream`]).
    #[inline]
    pub fn group(&self) -> Option<&Arc<UpstreamGroup>> {
        match &self.target {
            RouteTarget::Group(group) => Some(group),
            RouteTarget::Split(_) | RouteTarget::Answer(_) => None,
        }
    }
}

/// Where a route's requests go.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    /// To this upstream group.
    Group(Arc<UpstreamGroup>),
    /// To several groups, by weight.
    Split(Arc<Split>),
    /// Nowhere: the proxy answers them itself.
    Answer(Arc<Answer>),
}

/// Routes in order: the first that matches a request takes it.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
    https_redirect: Option<HttpsRedirect>,
    acme: Option<crate::acme::Acme>,
}

impl Router {
    /// A router over `routes`, tried in this order.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Router {
        Router {
            routes: routes.into_iter().map(Arc::new).collect(),
            https_redirect: None,
            acme: None,
        }
    }

    /// The same router, answering every request that did not come over
    /// TLS with `redirect` (but for the paths it excepts) before any
    /// route sees it.
    pub fn with_https_redirect(mut self, redirect: HttpsRedirect) -> Router {
        self.https_redirect = Some(redirect);
        self
    }

    /// The same router, answering a CA's `http-01` requests for `acme`'s
    /// pending challenges before anything else (the HTTPS redirect
    /// included).
    pub fn with_acme_challenges(mut self, acme: crate::acme::Acme) -> Router {
        self.acme = Some(acme);
        self
    }

    /// The ACME certificates whose `http-01` challenges this answers.
    pub fn acme_challenges(&self) -> Option<&crate::acme::Acme> {
        self.acme.as_ref()
    }

    /// The redirect of cleartext requests, if any.
    pub fn https_redirect(&self) -> Option<&HttpsRedirect> {
        self.https_redirect.as_ref()
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The first route that takes the request, if any.
    pub fn find(&self, head: &RequestHeader) -> Option<&Arc<Route>> {
        let host = routing_host(head);
        let path = head.uri.path();
        self.routes.iter().find(|route| {
            route
                .matcher
                .matches(host.as_deref(), &head.method, path, &head.headers)
        })
    }
}
