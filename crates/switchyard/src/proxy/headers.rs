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

/// How many [`HOP_BY_HOP`] names there are.
const HOPS: usize = 7;

/// Headers that are hop-by-hop whatever `Connection` says. `HTTP2-Settings`
/// belongs to the HTTP/1.1 upgrade to h2c (RFC 7540 section 3.2), which
/// the proxy never forwards, so it never crosses either.
/// A `static`, not a `const`: a `const` array of names is made and
/// dropped again at every use.
static HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("http2-settings"),
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
    if let Some(present) = hop_by_hop_present(headers) {
        strip_all(headers, present);
    }
}

/// Which of [`HOP_BY_HOP`] `headers` carries, in one pass over the names
/// (each removal is a hash lookup, and most messages carry one or none);
/// `None` if none.
fn hop_by_hop_present(headers: &HeaderMap) -> Option<[bool; HOPS]> {
    let mut present = [false; HOPS];
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present[i] = true;
            any = true;
        }
    }
    any.then_some(present)
}

/// `name`'s place in [`HOP_BY_HOP`], if it is there: one match on the
/// name's text (a jump on its length, then one comparison), where a search
/// of the list compared it with each of the seven in turn.
#[inline]
fn hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "connection" => Some(0),
        "te" => Some(1),
        "transfer-encoding" => Some(2),
        "upgrade" => Some(3),
        "keep-alive" => Some(4),
        "proxy-connection" => Some(5),
        "http2-settings" => Some(6),
        _ => None,
    }
}

/// [`strip_hop_by_hop`] for a request going upstream, except that a `TE`
/// listing `trailers` is sent on as `te: trailers`: TE is hop-by-hop, but a
/// client that accepts trailers gets them through the proxy (the body pump
/// forwards them), so the upstream may send them. gRPC servers require it.
pub(crate) fn strip_request_hop_by_hop(headers: &mut HeaderMap) {
    let Some(present) = hop_by_hop_present(headers) else {
        return;
    };
    let trailers = accepts_trailers(headers);
    strip_all(headers, present);
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

/// Remove what `Connection` names and the `present` ones of [`HOP_BY_HOP`].
fn strip_all(headers: &mut HeaderMap, present: [bool; HOPS]) {
    if !only_keep_alive(headers) {
        remove_connection_named(headers);
    }
    for (name, there) in HOP_BY_HOP.iter().zip(present) {
        if there {
            headers.remove(name);
        }
    }
}

/// Whether the only `Connection` field is `keep-alive`, as nearly every
/// response from a keep-alive upstream carries: it names a header that
/// [`HOP_BY_HOP`] removes anyway, so its tokens need no parsing.
fn only_keep_alive(headers: &HeaderMap) -> bool {
    let mut fields = headers.get_all(header::CONNECTION).iter();
    match (fields.next(), fields.next()) {
        (Some(field), None) => field.as_bytes().eq_ignore_ascii_case(b"keep-alive"),
        _ => false,
    }
}

/// Remove the headers `Connection` names (never `Host` or `Content-Length`).
fn remove_connection_named(headers: &mut HeaderMap) {
    // Only names that are there: the usual `keep-alive` or `close` is
    // looked up without being made into a name (an allocation) first.
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|token| headers.contains_key(*token))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .filter(|name| *name != header::HOST && *name != header::CONTENT_LENGTH)
        .collect();
    for name in &named {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::strip_hop_by_hop;
    use http::HeaderMap;

    #[test]
    fn each_hop_by_hop_name_is_found_at_its_place() {
        for (i, name) in super::HOP_BY_HOP.iter().enumerate() {
            assert_eq!(super::hop_index(name), Some(i), "{name}");
        }
        for other in ["host", "content-length", "trailer", "x-te", "connections"] {
            let name = http::header::HeaderName::from_static(other);
            assert_eq!(super::hop_index(&name), None, "{other}");
        }
    }

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

    #[test]
    fn a_lone_keep_alive_and_a_keep_alive_beside_other_tokens_both_strip() {
        for connection in ["Keep-Alive", "keep-alive, x-hop", "keep-alive"] {
            let mut headers = HeaderMap::new();
            headers.append("connection", connection.parse().unwrap());
            headers.append("keep-alive", "timeout=5".parse().unwrap());
            headers.append("x-hop", "1".parse().unwrap());
            headers.append("x-kept", "yes".parse().unwrap());
            strip_hop_by_hop(&mut headers);
            let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
            left.sort_unstable();
            let expected: &[&str] = if connection.contains("x-hop") {
                &["x-kept"]
            } else {
                &["x-hop", "x-kept"]
            };
            assert_eq!(left, expected, "Connection: {connection}");
        }
    }
}
