//! What a route matches and how it rewrites, at run time: host patterns
//! (exact or `*.example.com`), path prefixes, methods and headers; the path
//! and `Host` sent upstream; and header edits on the request and response.
//! The config file's side (parsing and the checks) is `config/routes.rs`.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

/// A host a route is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This name, lower case.
    Exact(String),
    /// Any name ending in `.` + this suffix (lower case), one label or
    /// more before it: `*.example.com` is `Suffix("example.com")`.
    Suffix(String),
}

impl HostPattern {
    /// `example.com` or `*.example.com`; `None` if it is neither.
    pub fn parse(text: &str) -> Option<HostPattern> {
        let text = text.trim().to_ascii_lowercase();
        let valid = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        match text.strip_prefix("*.") {
            Some(suffix) if valid(suffix) => Some(HostPattern::Suffix(suffix.to_string())),
            None if valid(&text) => Some(HostPattern::Exact(text)),
            _ => None,
        }
    }

    /// Whether `host` (lower case, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether every host this pattern matches, `other` matches too.
    pub fn within(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (_, HostPattern::Exact(_)) => self == other,
            (HostPattern::Exact(name), suffix) => suffix.matches(name),
            (HostPattern::Suffix(mine), HostPattern::Suffix(theirs)) => {
                mine == theirs || HostPattern::Suffix(theirs.clone()).matches(mine)
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// A header a route requires: present, or with this exact value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    /// The header.
    pub name: HeaderName,
    /// Its value (compared exactly); `None`: any value.
    pub value: Option<HeaderValue>,
}

impl HeaderCondition {
    fn holds(&self, headers: &HeaderMap) -> bool {
        match &self.value {
            None => headers.contains_key(&self.name),
            Some(value) => headers.get_all(&self.name).iter().any(|v| v == value),
        }
    }

    /// Whether every request meeting `other` meets this too.
    fn implied_by(&self, other: &HeaderCondition) -> bool {
        self.name == other.name && (self.value.is_none() || self.value == other.value)
    }
}

/// Which requests a route takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// The host; any if `None`.
    pub host: Option<HostPattern>,
    /// The path must start with this.
    pub path_prefix: String,
    /// The method must be one of these; any if empty.
    pub methods: Vec<Method>,
    /// Every one of these must hold.
    pub headers: Vec<HeaderCondition>,
}

impl RouteMatch {
    /// Whether a request for `host` (lower case, no port) matches.
    pub fn matches(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> bool {
        self.host
            .as_ref()
            .is_none_or(|pattern| host.is_some_and(|h| pattern.matches(h)))
            && path.starts_with(&self.path_prefix)
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|c| c.holds(headers))
    }

    /// Whether this matches every request `later` matches, so that a
    /// route after this one with `later` could never be chosen.
    pub fn covers(&self, later: &RouteMatch) -> bool {
        let host = match (&self.host, &later.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.within(mine),
        };
        let methods = self.methods.is_empty()
            || (!later.methods.is_empty()
                && later.methods.iter().all(|m| self.methods.contains(m)));
        let headers = self
            .headers
            .iter()
            .all(|mine| later.headers.iter().any(|theirs| mine.implied_by(theirs)));
        host && later.path_prefix.starts_with(&self.path_prefix) && methods && headers
    }
}

/// Header edits, applied in this order: remove, set (replacing), add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Headers removed.
    pub remove: Vec<HeaderName>,
    /// Headers set, replacing any the message had.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers added beside any the message had.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Apply the edits to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// What becomes of the path's prefix upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PathRewrite {
    /// Sent as it came.
    #[default]
    Keep,
    /// The route's prefix is replaced by this (`/` when stripping it).
    Replace(String),
}

/// The `Host` sent upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's, as it came.
    #[default]
    Client,
    /// The server's host name and port as written in the group (its
    /// `ip:port` when written so).
    Upstream,
    /// This value.
    Fixed(HeaderValue),
}

/// How a route changes what it forwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The path.
    pub path: PathRewrite,
    /// The `Host` header.
    pub host: HostHeader,
    /// Edits to the request sent upstream.
    pub request_headers: HeaderEdits,
    /// Edits to the upstream's response.
    pub response_headers: HeaderEdits,
}

impl Rewrite {
    /// [`path_for`](Self::path_for), refused when the rewritten path is not
    /// a valid target or not in normal form: a prefix is matched as plain
    /// text, so `path_prefix = "/api"` takes `/api../admin`, and replacing
    /// the prefix would send `/v2/../admin`, which an origin that resolves
    /// dot segments serves as `/admin`.
    pub fn checked_path_for(&self, prefix: &str, uri: &Uri) -> Result<Option<Uri>, &'static str> {
        if matches!(self.path, PathRewrite::Keep) {
            return Ok(None);
        }
        let Some(rewritten) = self.path_for(prefix, uri) else {
            return Err("the rewritten path is not a valid request target");
        };
        let rules = switchyard::path::PathRules {
            normalize: true,
            merge_slashes: false,
            escaped_slashes: switchyard::path::EscapedSlashes::Keep,
        };
        match switchyard::path::normalize(rewritten.path(), &rules) {
            Ok(normal) if normal == rewritten.path() => Ok(Some(rewritten)),
            _ => Err("the rewritten path has a dot segment the origin would resolve"),
        }
    }

    /// The path and query to send for `uri`, matched by `prefix`; `None`
    /// to send it unchanged.
    pub fn path_for(&self, prefix: &str, uri: &Uri) -> Option<Uri> {
        let PathRewrite::Replace(with) = &self.path else {
            return None;
        };
        let rest = uri.path().strip_prefix(prefix)?;
        let mut path = String::with_capacity(with.len() + rest.len() + 1);
        path.push_str(with.trim_end_matches('/'));
        if !rest.starts_with('/') {
            path.push('/');
        }
        path.push_str(rest);
        if let Some(query) = uri.query() {
            path.push('?');
            path.push_str(query);
        }
        path.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let any = host("*.example.com");
        assert!(any.matches("a.example.com"));
        assert!(any.matches("a.b.example.com"));
        assert!(!any.matches("example.com"));
        assert!(!any.matches("badexample.com"));
        assert!(!any.matches(".example.com"));
        assert!(host("Example.COM").matches("example.com"));
        for bad in ["", "*", "*.", "a.*.com", "exa mple.com", "a..b"] {
            assert_eq!(HostPattern::parse(bad), None, "{bad:?}");
        }
        assert!(host("a.example.com").within(&any));
        assert!(host("*.a.example.com").within(&any));
        assert!(!any.within(&host("*.a.example.com")));
        assert!(!any.within(&host("a.example.com")));
    }

    #[test]
    fn prefixes_are_stripped_or_replaced_keeping_the_query() {
        let rewrite = |to: &str| Rewrite {
            path: PathRewrite::Replace(to.to_string()),
            ..Rewrite::default()
        };
        let uri: Uri = "/api/users?id=3".parse().unwrap();
        assert_eq!(rewrite("/").path_for("/api", &uri).unwrap(), "/users?id=3");
        assert_eq!(
            rewrite("/v2").path_for("/api", &uri).unwrap(),
            "/v2/users?id=3"
        );
        assert_eq!(
            rewrite("/v2/").path_for("/api/", &uri).unwrap(),
            "/v2/users?id=3"
        );
        let bare: Uri = "/api".parse().unwrap();
        assert_eq!(rewrite("/").path_for("/api", &bare).unwrap(), "/");
        assert_eq!(Rewrite::default().path_for("/api", &uri), None);
    }

    #[test]
    fn an_earlier_route_covers_a_later_one_only_when_it_takes_all_its_requests() {
        let route = |host: Option<&str>,
                     prefix: &str,
                     methods: &[Method],
                     headers: &[(&str, Option<&str>)]| RouteMatch {
            host: host.map(|h| HostPattern::parse(h).unwrap()),
            path_prefix: prefix.to_string(),
            methods: methods.to_vec(),
            headers: headers
                .iter()
                .map(|(n, v)| HeaderCondition {
                    name: HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    value: v.map(|v| HeaderValue::from_str(v).unwrap()),
                })
                .collect(),
        };
        let all = route(None, "/", &[], &[]);
        assert!(all.covers(&route(
            Some("a.test"),
            "/x",
            &[Method::GET],
            &[("x-a", None)]
        )));
        assert!(!route(Some("a.test"), "/", &[], &[]).covers(&all));
        assert!(route(Some("*.test"), "/", &[], &[]).covers(&route(Some("a.test"), "/", &[], &[])));
        assert!(!route(None, "/api", &[], &[]).covers(&route(None, "/", &[], &[])));
        assert!(!route(None, "/", &[Method::GET], &[]).covers(&all));
        assert!(
            route(None, "/", &[Method::GET, Method::POST], &[]).covers(&route(
                None,
                "/",
                &[Method::GET],
                &[]
            ))
        );
        assert!(!route(None, "/", &[], &[("x-a", None)]).covers(&all));
        assert!(route(None, "/", &[], &[("x-a", None)]).covers(&route(
            None,
            "/",
            &[],
            &[("x-a", Some("1"))]
        )));
        assert!(!route(None, "/", &[], &[("x-a", Some("1"))]).covers(&route(
            None,
            "/",
            &[],
            &[("x-a", None)]
        )));
    }
}
