#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use http::{Method, Version};

use super::{HeadLimits, ParsedRequest, parse};
use crate::h1::CodecErrorKind;
use crate::h1::body::BodyDecoder;

const LIMITS: HeadLimits = HeadLimits {
    max_headers: 100,
    max_head: 32 * 1024,
};

fn parsed(wire: &str) -> ParsedRequest {
    let mut buf = BytesMut::from(wire.as_bytes());
    parse(&mut buf, LIMITS).unwrap().expect("a whole head")
}

fn refused_with(wire: &[u8], limits: HeadLimits) -> CodecErrorKind {
    let mut buf = BytesMut::from(wire);
    parse(&mut buf, limits).unwrap_err().kind()
}

fn refused(wire: &str) -> CodecErrorKind {
    refused_with(wire.as_bytes(), LIMITS)
}

#[test]
fn a_head_is_parsed_and_taken_out_of_the_buffer() {
    let mut buf = BytesMut::from(
        &b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nokGET"[..],
    );
    let parsed = parse(&mut buf, LIMITS).unwrap().unwrap();
    assert_eq!(parsed.head.method, Method::POST);
    assert_eq!(parsed.head.uri, "/a?b=c");
    assert_eq!(parsed.head.version, Version::HTTP_11);
    let values: Vec<_> = parsed.head.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert!(matches!(parsed.body, BodyDecoder::Length(2)));
    assert!(parsed.keep_alive);
    assert_eq!(&buf[..], b"okGET", "the body and what follows stay");
}

#[test]
fn a_partial_head_waits_and_an_oversized_one_is_refused() {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
    assert!(parse(&mut buf, LIMITS).unwrap().is_none());
    assert_eq!(buf.len(), 25, "nothing is taken from a partial head");
    let small = HeadLimits {
        max_headers: 100,
        max_head: 40,
    };
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n", "a".repeat(40));
    assert_eq!(
        refused_with(long.as_bytes(), small),
        CodecErrorKind::TooLarge
    );
    let whole = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(30));
    assert_eq!(
        refused_with(whole.as_bytes(), small),
        CodecErrorKind::TooLarge
    );
    let few = HeadLimits {
        max_headers: 2,
        max_head: 1024,
    };
    let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(refused_with(many, few), CodecErrorKind::TooLarge);
    let more = HeadLimits {
        max_headers: 150,
        max_head: 64 * 1024,
    };
    let fields: String = (0..120).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let wire = format!("GET / HTTP/1.1\r\n{fields}\r\n");
    let mut buf = BytesMut::from(wire.as_bytes());
    let parsed = parse(&mut buf, more).unwrap().unwrap();
    assert_eq!(parsed.head.headers.len(), 120, "past the stack's 100 slots");
}

#[test]
fn malformed_heads_are_refused() {
    for wire in [
        "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",         // obs-fold
        "GET / HTTP/1.1\r\nX : a\r\n\r\n",              // space before the colon
        "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",            // NUL
        "G(T / HTTP/1.1\r\n\r\n",                       // bad method
        "GET / HTTP/2.0\r\n\r\n",                       // unknown version
        "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", // bad length
        "GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    ] {
        assert_eq!(refused(wire), CodecErrorKind::Malformed, "{wire:?}");
    }
}

#[test]
fn a_target_over_its_limit_is_refused_on_its_own() {
    let limits = HeadLimits {
        max_headers: 100,
        max_head: 128 * 1024,
    };
    let wire = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000));
    assert_eq!(
        refused_with(wire.as_bytes(), limits),
        CodecErrorKind::TargetTooLong
    );
}

#[test]
fn framing_follows_the_rules() {
    let same = parsed("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
    assert!(matches!(same.body, BodyDecoder::Length(3)));
    assert_eq!(
        same.head.headers.get_all("content-length").iter().count(),
        1
    );
    // Both framings: chunked wins, the length goes, the connection closes after.
    let both = parsed("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(matches!(both.body, BodyDecoder::Chunked(_)));
    assert!(!both.head.headers.contains_key("content-length"));
    assert!(!both.keep_alive);
    let none = parsed("GET / HTTP/1.1\r\n\r\n");
    assert!(none.body.is_end());
}

#[test]
fn keep_alive_expect_and_te_are_read() {
    assert!(!parsed("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(parsed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    let closing = "GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n";
    assert!(!parsed(closing).keep_alive);
    let expecting = parsed("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
    assert!(expecting.expect_continue);
    assert!(!parsed("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    assert!(parsed("GET / HTTP/1.1\r\nTE: gzip, trailers\r\n\r\n").accepts_trailers);
    assert!(!parsed("GET / HTTP/1.1\r\n\r\n").accepts_trailers);
}
