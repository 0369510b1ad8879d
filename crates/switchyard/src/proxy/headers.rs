//! Hop-by-hop headers (RFC 9110 section 7.6.1): they describe one
//! connection, so they are dropped on both legs and never forwarded.
//!
//! `Trailer` is kept although older lists (RFC 2616) name it: RFC 9110 does
//! not, and hyper sends only the trailer fields it declares, so dropping it
//! would silently drop every trailer.
//!
//! `Host` and `Content-Length` are never dropped because `Connection` names
//! them: they are not connection options but the message's target and
//! framing, and `Connection: host` would otherwise make the proxy send the
//! upstream its own address as the host (found by the property tests in
//! `forward/tests.rs`).

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// Headers that are hop-by-hop whatever `Connection` says.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// The comma-separated tokens of every `Connection` header, trimmed.
pub(crate) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Remove the hop-by-hop headers, and those `Connection` names, from `headers`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none of these, and
    // each removal below is a hash lookup.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    strip_all(headers);
}

/// [`strip_hop_by_hop`] for a request going upstream, except that a `TE`
/// listing `trailers` is sent on as `te: trailers`: TE is hop-by-hop, but a
/// client that accepts trailers gets them through the proxy (the body pump
/// forwards them), so the upstream may send them. gRPC servers require it.
pub(crate) fn strip_request_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let trailers = accepts_trailers(headers);
    strip_all(headers);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether the `TE` fields list `trailers`.
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| {
            let name = token.split(';').next().unwrap_or("").trim();
            name.eq_ignore_ascii_case("trailers")
        })
}

fn strip_all(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .filter(|name| *name != header::HOST && *name != header::CONTENT_LENGTH)
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::strip_hop_by_hop;
    use http::HeaderMap;

    #[test]
    fn drops_fixed_and_connection_named_headers_and_keeps_the_rest() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("x-secret-hop", "1"),
            ("host", "example.test"),
            ("content-length", "5"),
            ("x-kept", "yes"),
        ] {
            headers.append(name, value.parse().unwrap());
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host", "trailer", "x-kept"]);
    }
}
