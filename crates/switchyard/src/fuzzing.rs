//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never
//! on in a build users get). Each takes arbitrary bytes, drives one parser
//! we wrote ourselves, and panics only where the parser broke a promise
//! its docs make; every crash a fuzzer finds becomes a unit test beside the
//! parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::path::{EscapedSlashes, PathRules};
use crate::proxy::identity::{ClientAddr, ClientIdentity, ForwardedStyle};

/// Split `data` into header values at `\n`, keeping those `http` accepts.
fn values(data: &[u8]) -> Vec<HeaderValue> {
    data.split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect()
}

/// The forwarding headers (`X-Forwarded-*`, `Forwarded`) of a client,
/// trusted or not, with any headers and host it brings: the client's own
/// address is always told last, and an untrusted client's claim is gone.
pub fn forwarding_headers(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let lines = values(rest);
    let names = [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
    ];
    let mut headers = HeaderMap::new();
    for (i, value) in lines.iter().skip(1).enumerate() {
        headers.append(
            HeaderName::from_static(names[i % names.len()]),
            value.clone(),
        );
    }
    let host = lines.first();
    let ip = if control & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, control))
    } else {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(control)))
    };
    let client = ClientAddr::new(SocketAddr::new(ip, 4000));
    let trusted = control & 2 != 0;
    let identity = ClientIdentity {
        style: ForwardedStyle::Both,
        trusted_proxies: if trusted {
            vec![
                ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
                ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
            ]
        } else {
            Vec::new()
        },
    };
    identity.apply(&mut headers, &client, "https", host);
    let told = ip.to_string();
    if let Some(chain) = headers.get("x-forwarded-for") {
        let chain = chain.to_str().unwrap_or("");
        assert!(chain.ends_with(&told), "{chain:?} does not end with {told}");
        if !trusted {
            assert_eq!(chain, told);
        }
    }
    if !trusted && let Some(forwarded) = headers.get("forwarded") {
        // One element (no comma outside a quoted string), naming the client.
        let text = String::from_utf8_lossy(forwarded.as_bytes());
        let mut quoted = false;
        let mut elements = 1;
        for c in text.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => elements += 1,
                _ => {}
            }
        }
        assert_eq!(elements, 1, "an untrusted chain survived: {text:?}");
        assert!(text.starts_with("for="), "{text:?}");
    }
    let _ = identity.request_id(&headers, ip);
}

/// Path normalization under every rule set: never a panic; a result is
/// idempotent, absolute, free of dot segments and control characters.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The engine passes the path alone, never the query or a fragment.
    let text = text.split(['?', '#']).next().unwrap_or("");
    for merge_slashes in [false, true] {
        for escaped_slashes in [
            EscapedSlashes::Reject,
            EscapedSlashes::Keep,
            EscapedSlashes::Decode,
        ] {
            let rules = PathRules {
                normalize: true,
                merge_slashes,
                escaped_slashes,
            };
            let Ok(once) = crate::path::normalize(text, &rules) else {
                continue;
            };
            if !text.starts_with('/') {
                assert_eq!(&*once, text);
                continue;
            }
            let twice = crate::path::normalize(&once, &rules);
            assert_eq!(twice.as_deref(), Ok(&*once), "not idempotent: {text:?}");
            assert!(once.starts_with('/'));
            assert!(
                !once.split('/').any(|s| s == "." || s == ".."),
                "{text:?} -> {once:?}"
            );
            assert!(!once.bytes().any(|b| b < 0x20 || b == 0x7f));
            assert!(
                once.parse::<http::uri::PathAndQuery>().is_ok()
                    || text.parse::<http::uri::PathAndQuery>().is_err()
            );
        }
    }
}

/// `grpc-timeout` values: a parsed one is at most its unit's largest value.
pub fn grpc_timeout(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(timeout) = crate::proxy::grpc::parse_timeout(text) {
        assert!(timeout <= Duration::from_secs(99_999_999 * 3600));
    }
}

/// `Retry-After` on a 503 and a 429: never longer than the cap, never zero.
pub fn retry_after(data: &[u8]) {
    let cap = Duration::from_secs(60);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for value in values(data) {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, value);
        for status in [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            if let Some(wait) = crate::policy::pushback::retry_after(status, &headers, now, cap) {
                assert!(wait <= cap && !wait.is_zero(), "{wait:?}");
            }
        }
    }
}

/// The client's deadline header: a deadline read is the digits it sent.
pub fn deadline_header(data: &[u8]) {
    for value in values(data) {
        if let Ok(deadline) = crate::policy::deadline::from_header(&value) {
            let told = crate::policy::deadline::header_value(deadline);
            let back = crate::policy::deadline::from_header(&told);
            assert_eq!(back.ok(), Some(deadline), "{value:?}");
        }
    }
}

/// `Idempotency-Key`: only exactly one non-blank key makes a POST safe.
pub fn idempotency_key(data: &[u8]) {
    let name = HeaderName::from_static("idempotency-key");
    let mut headers = HeaderMap::new();
    for value in values(data) {
        headers.append(name.clone(), value);
    }
    let resend =
        crate::policy::idempotency::resend_safety(&Method::POST, None, &headers, Some(&name));
    let keys: Vec<_> = headers.get_all(&name).iter().collect();
    let one = keys.len() == 1 && !keys[0].as_bytes().trim_ascii().is_empty();
    assert_eq!(resend.allowed(), one, "{keys:?}");
}

/// The GOAWAY watch's walk over HTTP/2 frame headers, fed in chunks each
/// way: never a panic, whatever the bytes.
pub fn goaway_frames(data: &[u8]) {
    crate::upstream::goaway::walk_for_fuzzing(data);
}

/// An upstream's HTTP/1.1 response (head, body, trailers) read by the
/// codec whole and cut into reads at the positions the first bytes pick:
/// both read the same, or fail the same way, and no body is longer than
/// the input.
pub fn h1_response(data: &[u8]) {
    reads_agree(data, |pieces, control| {
        crate::h1::read_response(pieces, control & 1 != 0)
    });
}

/// A client's HTTP/1.1 request (head and body) read by the server side of
/// the codec whole and cut into reads at the positions the first bytes
/// pick: both read the same, or fail the same way; no body is longer than
/// the input; and a head that was read can be answered (the response
/// head written for it) without a panic.
pub fn h1_request(data: &[u8]) {
    let limits = |control: u8| crate::h1::parse_request::HeadLimits {
        max_headers: usize::from(control % 8) * 16 + 1,
        max_head: 64 * 1024,
    };
    let Some((control, wire)) = reads_agree(data, |pieces, control| {
        crate::h1::read_request(pieces, limits(control))
    }) else {
        return;
    };
    let mut buf = bytes::BytesMut::from(wire);
    if let Ok(Some(parsed)) = crate::h1::parse_request::parse(&mut buf, limits(control)) {
        use crate::h1::write_response::{Answering, encode_head};
        let answering = Answering::new(
            &parsed.head.method,
            parsed.head.version,
            parsed.accepts_trailers,
        );
        let (mut head, ()) = http::Response::new(()).into_parts();
        head.headers = parsed.head.headers;
        let size = crate::h1::request::BodySize::Unknown;
        let mut out = bytes::BytesMut::new();
        encode_head(&mut head, size, answering, parsed.keep_alive, &mut out);
        assert!(out.ends_with(b"\r\n\r\n"));
    }
}

/// Split `data` as both HTTP/1.1 targets take it (a control byte, a byte
/// that picks where reads are cut, the bytes on the wire), then check that
/// `read` reads the wire the same whole and cut into three reads, with no
/// body longer than the wire. The control byte and the wire, if there
/// were enough bytes.
fn reads_agree(
    data: &[u8],
    read: impl Fn(&[&[u8]], u8) -> Result<crate::h1::ReadMessage, crate::h1::CodecErrorKind>,
) -> Option<(u8, &[u8])> {
    let (&control, rest) = data.split_first()?;
    let (&cut, wire) = rest.split_first()?;
    let whole = read(&[wire], control);
    let first = usize::from(cut) * wire.len() / 256;
    let second = first + (wire.len() - first) / 2;
    let pieces = [&wire[..first], &wire[first..second], &wire[second..]];
    assert_eq!(
        whole,
        read(&pieces, control),
        "reads cut at {first} and {second}"
    );
    if let Ok(read) = whole {
        assert!(read.body.len() <= wire.len());
    }
    Some((control, wire))
}
