//! How a route changes what it forwards: the path and `Host` sent
//! upstream, and header edits on the request and the response.

use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::path::{EscapedSlashes, PathRules, normalize};

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
        let rules = PathRules {
            normalize: true,
            merge_slashes: false,
            escaped_slashes: EscapedSlashes::Keep,
        };
        match normalize(rewritten.path(), &rules) {
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
