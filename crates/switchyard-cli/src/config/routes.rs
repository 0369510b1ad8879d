//! `[[routes]]`: which requests go to which group, and how they are
//! rewritten on the way. Checks here refuse what cannot work: a bad host
//! pattern, method or header, contradictory rewrites, and a route that can
//! never match because an earlier one takes every request it would.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;
use http::header::{self, HeaderName, HeaderValue};
use switchyard::proxy::AllowedUpgrades;

use super::access::{Located, access_control, basic_auth};
use super::file::{EscapedSlashesName, HeaderEditsSection, RouteSection, UpstreamSection};
use super::retry::{retry_policy, with_overrides};
use super::traffic::{answer, compression, group_named, mirror, rate_limit, split};
use super::units::limit_of;
use super::{ConfigError, Source};
use switchyard::group::UpstreamGroup;
use switchyard::route::{
    HeaderCondition, HeaderEdits, HostHeader, HostPattern, PathRewrite, Rewrite, Route, RouteMatch,
    RouteTarget,
};

/// Headers a route may not edit: the message's framing and connection,
/// which the proxy manages (and `Host`, which `host_header` sets).
const NOT_EDITABLE: [HeaderName; 8] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::HOST,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// What every route is built with: the server's settings it falls back
/// on or shares.
pub(super) struct RouteDefaults<'a> {
    /// `[server] max_request_body`.
    pub(super) body_limit: Option<u64>,
    /// Whether `[server] escaped_slashes = "decode"`.
    pub(super) slashes_decoded: bool,
    /// `[server] trusted_proxies`.
    pub(super) trusted: &'a [ipnet::IpNet],
    /// The buckets rate limits count in.
    pub(super) buckets: Arc<switchyard::route::RateLimitBuckets>,
    /// `[server]`, for its compression settings.
    pub(super) server: &'a super::file::ServerSection,
}

/// The routes of `sections` (or the one implied route to the only group),
/// each checked, and none unreachable.
pub(super) fn routes(
    source: &Source<'_>,
    sections: &[RouteSection],
    upstreams: &BTreeMap<String, UpstreamSection>,
    groups: &BTreeMap<String, Arc<UpstreamGroup>>,
    shared: &RouteDefaults<'_>,
) -> Result<Vec<Route>, ConfigError> {
    let body_limit = shared.body_limit;
    if sections.is_empty() {
        let mut only = groups.values();
        return match (only.next(), only.next()) {
            (Some(group), None) => Ok(vec![Route {
                name: Arc::default(),
                matcher: RouteMatch {
                    path_prefix: "/".to_string(),
                    ..RouteMatch::default()
                },
                rewrite: Rewrite::default(),
                target: RouteTarget::Group(Arc::clone(group)),
                policy: None,
                max_request_body: Some(body_limit),
                upgrades: Some(AllowedUpgrades::default()),
                keep_escaped_slashes: None,
                access: None,
                basic_auth: None,
                rate_limit: None,
                compress: None,
                mirror: None,
            }]),
            _ => Err(source.error(
                None,
                "routes",
                "with several upstream groups, add [[routes]] to say which requests go where",
            )),
        };
    }
    let mut built: Vec<Route> = Vec::with_capacity(sections.len());
    for (i, section) in sections.iter().enumerate() {
        let key = format!("routes[{i}]");
        let route = route(source, section, upstreams, groups, body_limit, &key)?;
        let at = route_span(section);
        let located = |field: &str, message: String| {
            source.error(at.clone(), &format!("{key}.{field}"), message)
        };
        let limit_name = section.name.clone().unwrap_or_else(|| key.clone());
        let route = Route {
            access: access_control(section, shared.trusted, &located)?,
            basic_auth: basic_auth(section, &located)?,
            rate_limit: rate_limit(
                section.rate_limit.as_ref(),
                &limit_name,
                shared.trusted,
                &shared.buckets,
                &located,
            )?,
            compress: compression(section, shared.server, &located)?,
            mirror: mirror(section, groups, &located)?,
            ..route
        };
        if section.escaped_slashes.is_some() && shared.slashes_decoded {
            let message = "[server] escaped_slashes = \"decode\" turns them into / before routing: a route cannot keep or refuse them";
            return Err(source.error(
                route_span(section),
                &format!("{key}.escaped_slashes"),
                message,
            ));
        }
        if !route.name.is_empty()
            && let Some(j) = built.iter().position(|earlier| earlier.name == route.name)
        {
            let message = format!(
                "routes[{j}] has the name {:?} already: names label metrics, so each is used once",
                route.name
            );
            return Err(source.error(route_span(section), &format!("{key}.name"), message));
        }
        if let Some(j) = built
            .iter()
            .position(|earlier| earlier.matcher.covers(&route.matcher))
        {
            let message = format!(
                "can never match: routes[{j}] comes first and takes every request this one would (order the more specific route first)"
            );
            return Err(source.error(route_span(section), &key, message));
        }
        built.push(route);
    }
    Ok(built)
}

fn route(
    source: &Source<'_>,
    section: &RouteSection,
    upstreams: &BTreeMap<String, UpstreamSection>,
    groups: &BTreeMap<String, Arc<UpstreamGroup>>,
    body_limit: Option<u64>,
    key: &str,
) -> Result<Route, ConfigError> {
    let at = route_span(section);
    let error =
        |field: &str, message: String| source.error(at.clone(), &format!("{key}.{field}"), message);
    let answer = answer(section, &error)?;
    let split = split(section, groups, &error)?;
    let (target, policy) = match (&section.upstream, answer, split) {
        (Some(name), None, None) => {
            let name = name.get_ref();
            let group = group_named(groups, name, "upstream", &error)?;
            let policy = match (&section.retry, upstreams.get(name)) {
                (Some(overrides), Some(upstream)) => {
                    let merged = with_overrides(&upstream.retry, overrides);
                    let policy = retry_policy(source, &merged, &format!("{key}.retry"))?;
                    Some(Arc::new(policy))
                }
                _ => None,
            };
            (RouteTarget::Group(Arc::clone(group)), policy)
        }
        (None, Some(answer), None) => (RouteTarget::Answer(Arc::new(answer)), None),
        (None, None, Some(split)) => (RouteTarget::Split(Arc::new(split)), None),
        (None, None, None) => {
            let message = "a route needs upstream (or split, redirect, or respond)";
            return Err(source.error(None, key, message));
        }
        _ => {
            let message = "a route has one of upstream, split, redirect and respond";
            return Err(error("upstream", message.to_string()));
        }
    };
    let matcher = route_match(section, &error)?;
    let rewrite = rewrite(section, &error)?;
    Ok(Route {
        name: Arc::new(section.name.clone().unwrap_or_default()),
        matcher,
        rewrite,
        target,
        policy,
        max_request_body: Some(section.max_request_body.map_or(body_limit, limit_of)),
        upgrades: Some(upgrades(section, &error)?),
        access: None,
        basic_auth: None,
        rate_limit: None,
        compress: None,
        mirror: None,
        keep_escaped_slashes: match section.escaped_slashes {
            None => None,
            Some(EscapedSlashesName::Reject) => Some(false),
            Some(EscapedSlashesName::Keep) => Some(true),
            Some(EscapedSlashesName::Decode) => {
                return Err(error(
                    "escaped_slashes",
                    "\"decode\" changes the path routes match, so it is for [server] only; a route may \"reject\" or \"keep\"".into(),
                ));
            }
        },
    })
}

/// Where in the file a route is: at its `upstream`, `redirect` or
/// `respond`.
fn route_span(section: &RouteSection) -> Option<std::ops::Range<usize>> {
    let upstream = section.upstream.as_ref().map(toml::Spanned::span);
    let split = || section.split.as_ref().map(toml::Spanned::span);
    let redirect = || section.redirect.as_ref().map(toml::Spanned::span);
    let respond = || section.respond.as_ref().map(toml::Spanned::span);
    upstream.or_else(split).or_else(redirect).or_else(respond)
}

/// `upgrades`: websocket alone unless the route lists others.
fn upgrades(section: &RouteSection, error: &Located<'_>) -> Result<AllowedUpgrades, ConfigError> {
    match &section.upgrades {
        None => Ok(AllowedUpgrades::default()),
        Some(names) => AllowedUpgrades::new(names).map_err(|e| error("upgrades", e.to_string())),
    }
}

fn route_match(section: &RouteSection, error: &Located<'_>) -> Result<RouteMatch, ConfigError> {
    if !section.path_prefix.starts_with('/') {
        return Err(error("path_prefix", "must start with /".into()));
    }
    let host = match &section.host {
        None => None,
        Some(text) => Some(HostPattern::parse(text).ok_or_else(|| {
            error(
                "host",
                format!("{text:?} is not a host name or a wildcard such as \"*.example.com\""),
            )
        })?),
    };
    if section.methods.as_ref().is_some_and(Vec::is_empty) {
        return Err(error(
            "methods",
            "an empty list matches nothing; leave it out to match every method".into(),
        ));
    }
    let methods = section
        .methods
        .iter()
        .flatten()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| error("methods", format!("{m:?} is not an HTTP method")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = section
        .headers
        .iter()
        .map(|entry| {
            let name = header_name(&entry.name).map_err(|m| error("headers", m))?;
            let value = match &entry.value {
                None => None,
                Some(v) => Some(header_value(&name, v).map_err(|m| error("headers", m))?),
            };
            Ok(HeaderCondition { name, value })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(RouteMatch {
        host,
        path_prefix: section.path_prefix.clone(),
        methods,
        headers,
    })
}

fn rewrite(section: &RouteSection, error: &Located<'_>) -> Result<Rewrite, ConfigError> {
    let path = match (section.strip_prefix, &section.replace_prefix) {
        (true, Some(_)) => {
            return Err(error(
                "replace_prefix",
                "strip_prefix and replace_prefix contradict each other; keep one".into(),
            ));
        }
        (true, None) => PathRewrite::Replace("/".into()),
        (false, Some(with)) if !is_plain_path(with) => {
            let message = format!(
                "{with:?} is not a path: it must start with / and hold no query (?), fragment (#) or space"
            );
            return Err(error("replace_prefix", message));
        }
        (false, Some(with)) => PathRewrite::Replace(with.clone()),
        (false, None) => PathRewrite::Keep,
    };
    let host = match section.host_header.as_deref() {
        None | Some("client") => HostHeader::Client,
        Some("upstream") => HostHeader::Upstream,
        Some(value) => HostHeader::Fixed(HeaderValue::from_str(value).map_err(|_| {
            error(
                "host_header",
                format!("{value:?} is not \"client\", \"upstream\" or a valid Host value"),
            )
        })?),
    };
    Ok(Rewrite {
        path,
        host,
        request_headers: edits(section.request_headers.as_ref(), "request_headers", error)?,
        response_headers: edits(section.response_headers.as_ref(), "response_headers", error)?,
    })
}

fn edits(
    section: Option<&HeaderEditsSection>,
    field: &str,
    error: &Located<'_>,
) -> Result<HeaderEdits, ConfigError> {
    let Some(section) = section else {
        return Ok(HeaderEdits::default());
    };
    let located = |m: String| error(field, m);
    let name_of = |text: &str| -> Result<HeaderName, ConfigError> {
        let name = header_name(text).map_err(located)?;
        if NOT_EDITABLE.contains(&name) {
            let message = format!("{name} is managed by the proxy (use host_header for Host)");
            return Err(located(message));
        }
        Ok(name)
    };
    let pairs = |map: &BTreeMap<String, String>| {
        map.iter()
            .map(|(n, v)| {
                let name = name_of(n)?;
                let value = header_value(&name, v).map_err(located)?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, ConfigError>>()
    };
    let edits = HeaderEdits {
        remove: section
            .remove
            .iter()
            .map(|n| name_of(n))
            .collect::<Result<_, _>>()?,
        set: pairs(&section.set)?,
        add: pairs(&section.add)?,
    };
    let named =
        |list: &[(HeaderName, HeaderValue)], name: &HeaderName| list.iter().any(|(n, _)| n == name);
    for name in &edits.remove {
        if named(&edits.set, name) || named(&edits.add, name) {
            return Err(located(format!("{name} is both removed and set or added")));
        }
    }
    for (name, _) in &edits.set {
        if named(&edits.add, name) {
            return Err(located(format!(
                "{name} is both set and added; set replaces, add appends: keep one"
            )));
        }
    }
    Ok(edits)
}

/// A path usable as a prefix: `/` first, valid in a URI, no query or fragment.
fn is_plain_path(text: &str) -> bool {
    text.starts_with('/')
        && !text.contains(['?', '#'])
        && text.parse::<http::uri::PathAndQuery>().is_ok()
}

fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not a header name"))
}

fn header_value(name: &HeaderName, text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text).map_err(|_| format!("{text:?} is not a valid value for {name}"))
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    fn with_routes(routes: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.a]\nservers = [\"127.0.0.1:2\"]\n[upstreams.b]\nservers = [\"127.0.0.1:3\"]\n{routes}"
        )
    }

    fn error_of(routes: &str) -> String {
        parse(&with_routes(routes), "routes.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_route_no_request_can_reach_is_refused_where_it_is() {
        let e = error_of(
            "[[routes]]\npath_prefix = \"/api\"\nupstream = \"a\"\n\n[[routes]]\npath_prefix = \"/api/v2\"\nupstream = \"b\"\n",
        );
        assert_eq!(
            e,
            "routes.toml:13:12: routes[1]: can never match: routes[0] comes first and takes every request this one would (order the more specific route first)"
        );
        let e = error_of(
            "[[routes]]\nhost = \"*.example.com\"\nupstream = \"a\"\n[[routes]]\nhost = \"api.example.com\"\nmethods = [\"GET\"]\nupstream = \"b\"\n",
        );
        assert!(e.contains("routes[1]: can never match: routes[0]"), "{e}");
        // More specific first is fine, and so are routes told apart by a
        // method or a header.
        let config = parse(
            &with_routes(
                "[[routes]]\npath_prefix = \"/api\"\nmethods = [\"post\"]\nupstream = \"b\"\n\
                 [[routes]]\npath_prefix = \"/api\"\nheaders = [{ name = \"x-beta\" }]\nupstream = \"b\"\n\
                 [[routes]]\nhost = \"API.example.com\"\nupstream = \"b\"\n\
                 [[routes]]\nupstream = \"a\"\n",
            ),
            "routes.toml",
        )
        .unwrap();
        assert_eq!(config.routes.len(), 4);
        assert_eq!(config.routes[0].matcher.methods, [http::Method::POST]);
    }

    #[test]
    fn contradictory_or_invalid_rewrites_are_refused() {
        let cases = [
            (
                "strip_prefix = true\nreplace_prefix = \"/v2\"",
                "routes[0].replace_prefix: strip_prefix and replace_prefix contradict",
            ),
            (
                "replace_prefix = \"v2\"",
                "routes[0].replace_prefix: \"v2\" is not a path",
            ),
            (
                "replace_prefix = \"/v 2\"",
                "routes[0].replace_prefix: \"/v 2\" is not a path",
            ),
            (
                "replace_prefix = \"/v2?x\"",
                "routes[0].replace_prefix: \"/v2?x\" is not a path",
            ),
            (
                "host = \"a.*.com\"",
                "routes[0].host: \"a.*.com\" is not a host name",
            ),
            (
                "methods = []",
                "routes[0].methods: an empty list matches nothing",
            ),
            (
                "methods = [\"G ET\"]",
                "routes[0].methods: \"G ET\" is not an HTTP method",
            ),
            (
                "headers = [{ name = \"bad name\" }]",
                "routes[0].headers: \"bad name\" is not a header name",
            ),
            ("host_header = \"bad\\nhost\"", "routes[0].host_header"),
            (
                "request_headers = { set = { x-a = \"1\" }, remove = [\"x-a\"] }",
                "routes[0].request_headers: x-a is both removed and set or added",
            ),
            (
                "response_headers = { set = { x-a = \"1\" }, add = { x-a = \"2\" } }",
                "routes[0].response_headers: x-a is both set and added",
            ),
            (
                "request_headers = { set = { content-length = \"1\" } }",
                "routes[0].request_headers: content-length is managed by the proxy",
            ),
            (
                "request_headers = { set = { host = \"x\" } }",
                "use host_header for Host",
            ),
        ];
        for (keys, expected) in cases {
            let e = error_of(&format!("[[routes]]\n{keys}\nupstream = \"a\"\n"));
            assert!(e.contains(expected), "{keys}: {e}");
            assert!(e.starts_with("routes.toml:"), "located: {e}");
        }
    }
}
