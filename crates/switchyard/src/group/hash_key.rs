//! What a request is placed by on a group's hash ring
//! ([`Selection::Hash`](crate::lb::Selection::Hash)).

use std::net::SocketAddr;

use http::HeaderName;

use crate::lb::hash_bytes;
use crate::proxy::RequestHeader;

/// What a request is placed by under consistent hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The request path.
    Path,
    /// The client's IP address.
    Client,
}

impl HashKey {
    /// What [`parse`](Self::parse) takes, for error messages.
    pub const EXPECTED: &'static str =
        "use \"header:NAME\", \"cookie:NAME\", \"path\" or \"client\"";

    /// `header:NAME`, `cookie:NAME`, `path` or `client`.
    ///
    /// ```
    /// use switchyard::group::HashKey;
    ///
    /// assert_eq!(HashKey::parse("path"), Some(HashKey::Path));
    /// assert_eq!(HashKey::parse("cookie:session"), Some(HashKey::Cookie("session".into())));
    /// assert_eq!(HashKey::parse("cookie:"), None);
    /// ```
    pub fn parse(text: &str) -> Option<HashKey> {
        match text.split_once(':') {
            Some(("header", name)) => HeaderName::try_from(name.trim()).ok().map(HashKey::Header),
            Some(("cookie", name)) if !name.trim().is_empty() => {
                Some(HashKey::Cookie(name.trim().to_string()))
            }
            None if text == "path" => Some(HashKey::Path),
            None if text == "client" => Some(HashKey::Client),
            _ => None,
        }
    }

    /// The request's place on the ring (0 when it lacks the header or
    /// cookie: all such requests go to one server).
    pub fn place(&self, head: &RequestHeader, client: SocketAddr) -> u64 {
        match self {
            HashKey::Header(name) => head
                .headers
                .get(name)
                .map_or(0, |v| hash_bytes(v.as_bytes())),
            HashKey::Cookie(name) => crate::cookie::value(&head.headers, name)
                .map_or(0, |value| hash_bytes(value.as_bytes())),
            HashKey::Path => hash_bytes(head.uri.path().as_bytes()),
            HashKey::Client => hash_bytes(client.ip().to_string().as_bytes()),
        }
    }
}
