//! A route's traffic settings, checked into the library's types:
//! `rate_limit` into a [`RateLimit`] counting in the process's one
//! [`RateLimitBuckets`].

use std::sync::{Arc, OnceLock};

use http::header::HeaderName;
use ipnet::IpNet;
use std::collections::BTreeMap;

use switchyard::group::{StickySessions, UpstreamGroup};
use switchyard::route::{Mirror, RateLimit, RateLimitBuckets, RateLimitKey, Split, SplitSide};

use super::ConfigError;
use super::access::Located;
use super::file::{
    CompressSetting, RateLimitSection, RouteSection, ServerSection, UpstreamSection,
};
use switchyard::compress::{Codec, Compression};

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

/// The route's split between groups, if it has `split`.
pub(super) fn split(
    section: &RouteSection,
    groups: &BTreeMap<String, Arc<UpstreamGroup>>,
    error: &Located<'_>,
) -> Result<Option<Split>, ConfigError> {
    let Some(entries) = &section.split else {
        if section.split_sticky.is_some() {
            let message = "only means something with split".to_string();
            return Err(error("split_sticky", message));
        }
        return Ok(None);
    };
    if section.retry.is_some() {
        let message = "a split's sides retry as their groups say: set retry in each group";
        return Err(error("retry", message.to_string()));
    }
    let mut sides = Vec::with_capacity(entries.get_ref().len());
    for (i, entry) in entries.get_ref().iter().enumerate() {
        let group = group_named(
            groups,
            &entry.upstream,
            &format!("split[{i}].upstream"),
            error,
        )?;
        if sides
            .iter()
            .any(|side: &SplitSide| side.group.name() == entry.upstream)
        {
            let message = format!("{:?} is a side already", entry.upstream);
            return Err(error(&format!("split[{i}].upstream"), message));
        }
        sides.push(SplitSide {
            group: Arc::clone(group),
            weight: entry.weight,
        });
    }
    let mut split = Split::new(sides).map_err(|why| error("split", why))?;
    if let Some(sticky) = &section.split_sticky {
        let name = sticky
            .strip_prefix("cookie:")
            .filter(|name| is_cookie_name(name))
            .ok_or_else(|| {
                error(
                    "split_sticky",
                    format!("{sticky:?}: write \"cookie:NAME\" with a cookie name (letters, digits, - and _)"),
                )
            })?;
        split = split.sticky(name);
    }
    Ok(Some(split))
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The group's sticky sessions, if it has `sticky`.
pub(super) fn sticky(
    section: &UpstreamSection,
    error: &Located<'_>,
) -> Result<Option<StickySessions>, ConfigError> {
    let Some(sticky) = &section.sticky else {
        return Ok(None);
    };
    if !is_cookie_name(&sticky.cookie) {
        let message = format!(
            "{:?} is not a cookie name (letters, digits, - and _)",
            sticky.cookie
        );
        return Err(error("sticky.cookie", message));
    }
    if sticky.max_age.is_some_and(|age| age.0.as_secs() == 0) {
        let message =
            "must be at least 1s (leave it out for a cookie kept until the browser closes)";
        return Err(error("sticky.max_age", message.to_string()));
    }
    Ok(Some(StickySessions {
        cookie: sticky.cookie.clone(),
        max_age: sticky.max_age.map(|age| age.0),
        secure: sticky.secure,
        http_only: sticky.http_only,
    }))
}

/// The route's compression, if `compress` is on: its codecs, with
/// `[server]`'s types and smallest size.
pub(super) fn compression(
    section: &RouteSection,
    server: &ServerSection,
    error: &Located<'_>,
) -> Result<Option<Arc<Compression>>, ConfigError> {
    let codecs = match &section.compress {
        None | Some(CompressSetting::On(false)) => return Ok(None),
        Some(CompressSetting::On(true)) => vec![Codec::Zstd, Codec::Brotli, Codec::Gzip],
        Some(CompressSetting::Codecs(names)) => {
            codecs(names).map_err(|why| error("compress", why))?
        }
    };
    Ok(Some(Arc::new(Compression {
        codecs,
        types: server
            .compress_types
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
        min_size: server.compress_min_size.0 as u64,
    })))
}

fn codecs(names: &[String]) -> Result<Vec<Codec>, String> {
    if names.is_empty() {
        return Err("an empty list compresses nothing: write false, or name codecs".to_string());
    }
    let mut codecs = Vec::with_capacity(names.len());
    for name in names {
        let codec = Codec::from_token(name)
            .filter(|_| name != "x-gzip")
            .ok_or_else(|| format!("{name:?} is not a codec: use \"zstd\", \"br\" or \"gzip\""))?;
        if codecs.contains(&codec) {
            return Err(format!("{name:?} is listed twice"));
        }
        codecs.push(codec);
    }
    Ok(codecs)
}

/// `[server] compress_types`: each `type/subtype` or `type/*`.
pub(super) fn check_compress_types(
    source: &super::Source<'_>,
    server: &ServerSection,
) -> Result<(), ConfigError> {
    for (i, kind) in server.compress_types.iter().enumerate() {
        let fine = kind.split_once('/').is_some_and(|(top, sub)| {
            let token = |t: &str| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(top) && (sub == "*" || token(sub))
        });
        if !fine {
            let key = format!("server.compress_types[{i}]");
            return Err(source.error(
                None,
                &key,
                format!("{kind:?} is not a media type such as \"text/html\" or \"text/*\""),
            ));
        }
    }
    Ok(())
}

/// The route's mirror, if it has `mirror`.
pub(super) fn mirror(
    section: &RouteSection,
    groups: &BTreeMap<String, Arc<UpstreamGroup>>,
    error: &Located<'_>,
) -> Result<Option<Arc<Mirror>>, ConfigError> {
    let Some(mirror) = &section.mirror else {
        return Ok(None);
    };
    let group = group_named(groups, &mirror.upstream, "mirror.upstream", error)?;
    let primary = section.upstream.as_ref().map(|u| u.get_ref().as_str());
    if primary == Some(mirror.upstream.as_str()) {
        let message = "the route's own group: every mirrored request would reach it twice";
        return Err(error("mirror.upstream", message.to_string()));
    }
    if mirror.max_body.0 == 0 {
        let message = "must be at least 1 byte (a request with a body over it is not mirrored)";
        return Err(error("mirror.max_body", message.to_string()));
    }
    let built = Mirror::new(
        Arc::clone(group),
        mirror.percent,
        mirror.max_body.0,
        mirror.max_in_flight,
    )
    .map_err(|why| {
        let key = if why.contains("max_in_flight") {
            "mirror.max_in_flight"
        } else {
            "mirror.percent"
        };
        error(key, why)
    })?;
    let mut built = built;
    built.keep_host = mirror.keep_host;
    Ok(Some(Arc::new(built)))
}

/// The group `name`, or an error at `key` that lists the groups there are.
pub(super) fn group_named<'g>(
    groups: &'g BTreeMap<String, Arc<UpstreamGroup>>,
    name: &str,
    key: &str,
    error: &Located<'_>,
) -> Result<&'g Arc<UpstreamGroup>, ConfigError> {
    groups.get(name).ok_or_else(|| {
        let known: Vec<&str> = groups.keys().map(String::as_str).collect();
        let message = format!("no upstream group {name:?}; defined: {}", known.join(", "));
        error(key, message)
    })
}
