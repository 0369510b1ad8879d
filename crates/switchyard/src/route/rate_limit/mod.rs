//! How often a client may use a route: [`RateLimit`], a token bucket per
//! key kept in shared, bounded [`RateLimitBuckets`].
//!
//! Each key's bucket holds `burst` requests and refills at `requests` per
//! `per`; a request that finds it empty is refused with `429`,
//! `Retry-After` and the IETF httpapi draft's `RateLimit-Policy` and
//! `RateLimit` fields. The bucket is kept as GCRA keeps it: one time, when
//! it will be full again, per key.
//!
//! Limits are per process: N instances behind a load balancer let
//! through up to N times the limit.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use switchyard::route::{RateLimit, RateLimitBuckets, RateLimitKey};
//!
//! let buckets = Arc::new(RateLimitBuckets::new(RateLimitBuckets::DEFAULT_CAPACITY));
//! let limit = RateLimit::new(2, Duration::from_secs(1), 2, RateLimitKey::Route, "api", buckets);
//! let headers = http::HeaderMap::new();
//! let client = "127.0.0.1".parse().unwrap();
//! assert!(limit.check(client, &headers).is_none());
//! assert!(limit.check(client, &headers).is_none());
//! let refused = limit.check(client, &headers).unwrap();
//! assert_eq!(refused.retry_after_secs(), 1);
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode, header};
use ipnet::IpNet;

use super::access::client_behind;
use crate::policy::dry_run::Mode;
use crate::proxy::respond::own_answer;

mod buckets;

pub use buckets::RateLimitBuckets;

/// The `Proxy-Status` of a request a rate limit refused.
const RATE_LIMITED: &str = "switchyard; error=http_request_denied; details=\"rate-limited\"";

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// The client's address (after trusted proxies): each IPv4 client,
    /// and each IPv6 /64 network, has its own bucket.
    Client,
    /// A request header's value (an API key, a tenant): one bucket per
    /// value; a request without the header is counted by its client
    /// address.
    Header(HeaderName),
    /// One bucket for the whole route.
    Route,
}

/// A route's rate limit.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// What it counts by.
    pub key: RateLimitKey,
    /// Whether it refuses, or only records what it would refuse.
    pub mode: Mode,
    /// Connections from these may name the client in `X-Forwarded-For`
    /// (for [`RateLimitKey::Client`]).
    pub trusted_proxies: Vec<IpNet>,
    /// Nanoseconds one request's token takes to come back.
    interval: u64,
    /// Nanoseconds a full bucket holds (`burst` tokens).
    depth: u64,
    /// Which limit this is, so limits sharing buckets never share keys.
    scope: u64,
    /// The same for the keys of IPv4 clients, and of IPv6 ones.
    v4_scope: u64,
    v6_scope: u64,
    policy: HeaderValue,
    name: String,
    buckets: Arc<RateLimitBuckets>,
}

/// A refusal: how long until the client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    /// Whole seconds until a request would pass (at least 1): the
    /// `Retry-After` value.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl RateLimit {
    /// `requests` per `per` for each key, up to `burst` at once (each at
    /// least 1), in `buckets`. `name` names the policy in
    /// `RateLimit-Policy` (and, with the limit's numbers, keeps its keys
    /// apart from other limits': a limit rebuilt the same on reload keeps
    /// its counts).
    pub fn new(
        requests: u32,
        per: Duration,
        burst: u32,
        key: RateLimitKey,
        name: &str,
        buckets: Arc<RateLimitBuckets>,
    ) -> RateLimit {
        let per_nanos = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX).max(1);
        let interval = (per_nanos / u64::from(requests.max(1))).max(1);
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\'))
            .collect();
        let name = if name.is_empty() {
            "default".into()
        } else {
            name
        };
        let scope = buckets.key(0, (&name, requests, per, burst, &key));
        RateLimit {
            policy: policy_header(&name, requests, per),
            key,
            mode: Mode::Enforce,
            trusted_proxies: Vec::new(),
            interval,
            depth: interval.saturating_mul(u64::from(burst.max(1))),
            scope,
            v4_scope: buckets.key(scope, 4u8),
            v6_scope: buckets.key(scope, 6u8),
            name,
            buckets,
        }
    }

    /// Take a token for a request from `peer` with `headers`: `None` if
    /// it may go on, else how long until one would.
    pub fn check(&self, peer: IpAddr, headers: &HeaderMap) -> Option<RateLimited> {
        let key = match &self.key {
            RateLimitKey::Route => self.buckets.key(self.scope, ()),
            RateLimitKey::Header(name) => match headers.get(name) {
                Some(value) => self.buckets.key(self.scope, value.as_bytes()),
                None => self.client_key(peer, headers),
            },
            RateLimitKey::Client => self.client_key(peer, headers),
        };
        let now = self.buckets.now();
        let mut refused = None;
        self.buckets.update(key, |full_at| {
            let full_at = full_at.unwrap_or(now).max(now);
            let after = full_at.saturating_add(self.interval);
            if after - now <= self.depth {
                return Some(after);
            }
            refused = Some(RateLimited {
                retry_after: Duration::from_nanos(after - now - self.depth),
            });
            None
        });
        refused
    }

    /// The client's key: its IPv4 address, or the /64 network of its
    /// IPv6 address (one host commonly has a whole /64), each folded into
    /// a secret of this limit's so that no two clients share a key. No
    /// hash to compute: this is the path most requests take.
    fn client_key(&self, peer: IpAddr, headers: &HeaderMap) -> u64 {
        match client_behind(peer, headers, &self.trusted_proxies) {
            IpAddr::V4(ip) => self.v4_scope ^ u64::from(ip.to_bits()),
            IpAddr::V6(ip) => self.v6_scope ^ (ip.to_bits() >> 64) as u64,
        }
    }

    /// The answer to a refused request: `429` with `Retry-After`,
    /// `RateLimit-Policy`, `RateLimit` and `Proxy-Status`.
    pub fn answer(&self, refused: RateLimited) -> Response<bytes::Bytes> {
        let wait = refused.retry_after_secs();
        let mut answer = own_answer(StatusCode::TOO_MANY_REQUESTS, "rate limited", RATE_LIMITED);
        let headers = answer.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
        headers.insert(RATELIMIT_POLICY, self.policy.clone());
        let state = format!("\"{}\";r=0;t={wait}", self.name);
        if let Ok(value) = HeaderValue::from_str(&state) {
            headers.insert(RATELIMIT, value);
        }
        answer
    }
}

/// The draft's field naming the quota policy.
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The draft's field with what is left of the quota.
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `"NAME";q=QUOTA;w=WINDOW`: the window in whole seconds (at least 1),
/// the quota scaled to it.
fn policy_header(name: &str, requests: u32, per: Duration) -> HeaderValue {
    let window = per.as_secs_f64().ceil().max(1.0);
    let quota = (f64::from(requests) * window / per.as_secs_f64().max(1e-9)).round() as u64;
    let text = format!("\"{name}\";q={quota};w={window}");
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"default\""))
}

#[cfg(test)]
mod tests;
