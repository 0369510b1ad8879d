//! A route's traffic settings, checked into the library's types:
//! `rate_limit` into a [`RateLimit`] counting in the process's one
//! [`RateLimitBuckets`].

use std::sync::{Arc, OnceLock};

use http::header::HeaderName;
use ipnet::IpNet;
use switchyard::route::{RateLimit, RateLimitBuckets, RateLimitKey};

use super::ConfigError;
use super::access::Located;
use super::file::RateLimitSection;

pub(super) use super::answers::answer;

/// The buckets every route's rate limit counts in, for the life of the
/// process: a reload that keeps a limit as it was keeps its counts.
/// `capacity` (`[server] rate_limit_keys`) applies from now on.
pub(super) fn shared_buckets(capacity: usize) -> Arc<RateLimitBuckets> {
    static BUCKETS: OnceLock<Arc<RateLimitBuckets>> = OnceLock::new();
    let buckets = BUCKETS.get_or_init(|| Arc::new(RateLimitBuckets::new(capacity)));
    buckets.set_capacity(capacity);
    Arc::clone(buckets)
}

/// The route's rate limit, if it has `rate_limit`; `name` names its
/// policy (the route's name, else its place, `routes[3]`).
pub(super) fn rate_limit(
    section: Option<&RateLimitSection>,
    name: &str,
    trusted: &[IpNet],
    buckets: &Arc<RateLimitBuckets>,
    error: &Located<'_>,
) -> Result<Option<RateLimit>, ConfigError> {
    let Some(section) = section else {
        return Ok(None);
    };
    if section.requests == 0 {
        let message = "must be at least 1 (to refuse every request, use deny)".to_string();
        return Err(error("rate_limit.requests", message));
    }
    if section.per.0.is_zero() {
        return Err(error(
            "rate_limit.per",
            "must be longer than 0s".to_string(),
        ));
    }
    let burst = section.burst.unwrap_or(section.requests);
    if burst == 0 {
        let message = "must be at least 1: a bucket that holds no request refuses them all";
        return Err(error("rate_limit.burst", message.to_string()));
    }
    let key = rate_limit_key(&section.key).map_err(|why| error("rate_limit.key", why))?;
    let mut limit = RateLimit::new(
        section.requests,
        section.per.0,
        burst,
        key,
        name,
        Arc::clone(buckets),
    );
    limit.mode = section.mode.mode();
    limit.trusted_proxies = trusted.to_vec();
    Ok(Some(limit))
}

/// `"client"`, `"route"` or `"header:NAME"`.
fn rate_limit_key(text: &str) -> Result<RateLimitKey, String> {
    match text {
        "client" => Ok(RateLimitKey::Client),
        "route" => Ok(RateLimitKey::Route),
        _ => match text.strip_prefix("header:") {
            Some(name) => HeaderName::try_from(name.trim())
                .map(RateLimitKey::Header)
                .map_err(|_| format!("{name:?} is not a header name")),
            None => Err(format!(
                "{text:?}: write \"client\", \"route\" or \"header:NAME\""
            )),
        },
    }
}
