//! Which requests a route takes: host patterns (exact or
//! `*.example.com`), a path prefix, methods and headers.

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::proxy::RequestHeader;

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

/// The host a request is routed by, as [`RouteMatch::matches`] takes it:
/// the request target's authority, else `Host`, without its port and in
/// lower case.
pub fn routing_host(head: &RequestHeader) -> Option<std::borrow::Cow<'_, str>> {
    let host = head.uri.host().or_else(|| {
        head.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })?;
    let name = host.rsplit_once(':').map_or(host, |(name, _port)| name);
    // Most clients send the name in lower case already: no copy then.
    Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    })
}
