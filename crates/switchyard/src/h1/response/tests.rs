#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use http::{StatusCode, Version};

use super::{ParsedResponse, parse};
use crate::h1::body::BodyDecoder;
use crate::h1::{CodecErrorKind, MAX_RESPONSE_HEAD};

fn parsed(wire: &str) -> ParsedResponse {
    parse_to(wire, false).expect("a whole head")
}

fn parse_to(wire: &str, to_head: bool) -> Option<ParsedResponse> {
    let mut buf = BytesMut::from(wire.as_bytes());
    parse(&mut buf, to_head).unwrap()
}

fn refused(wire: &str) -> CodecErrorKind {
    let mut buf = BytesMut::from(wire.as_bytes());
    parse(&mut buf, false).unwrap_err().kind()
}

fn length(parsed: &ParsedResponse) -> Option<u64> {
    match parsed.body {
        BodyDecoder::Length(length) => Some(length),
        _ => None,
    }
}

#[test]
fn a_head_is_parsed_and_taken_out_of_the_buffer() {
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok"[..]);
    let parsed = parse(&mut buf, false).unwrap().unwrap();
    assert_eq!(parsed.head.status, StatusCode::OK);
    assert_eq!(parsed.head.version, Version::HTTP_11);
    let values: Vec<_> = parsed.head.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(length(&parsed), Some(2));
    assert!(parsed.keep_alive);
    assert_eq!(&buf[..], b"ok");
}

#[test]
fn a_partial_head_waits_for_more() {
    assert!(parse_to("HTTP/1.1 200 OK\r\nContent-Le", false).is_none());
}

#[test]
fn informational_answers_are_skipped_but_not_101() {
    let answer = parsed(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    );
    assert_eq!(answer.head.status, StatusCode::NO_CONTENT);
    assert!(parse_to("HTTP/1.1 100 Continue\r\n\r\n", false).is_none());
    let switched = parsed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    assert!(switched.upgrade);
    assert!(!switched.keep_alive);
}

#[test]
fn framing_follows_rfc_9112() {
    assert_eq!(
        length(&parse_to("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap()),
        Some(0)
    );
    assert_eq!(
        length(&parsed(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"
        )),
        Some(0)
    );
    assert_eq!(
        length(&parsed(
            "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n"
        )),
        Some(7)
    );
    let chunked =
        parsed("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n");
    assert!(matches!(chunked.body, BodyDecoder::Chunked(_)));
    assert!(chunked.keep_alive);
    let until_close = parsed("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert!(matches!(until_close.body, BodyDecoder::UntilClose { .. }));
    assert!(!until_close.keep_alive);
    assert!(!parsed("HTTP/1.1 200 OK\r\n\r\n").keep_alive);
}

#[test]
fn keep_alive_follows_version_and_connection() {
    assert!(
        !parsed("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n")
            .keep_alive
    );
    assert!(!parsed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
    assert!(
        parsed("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").keep_alive
    );
    assert!(!parsed("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
}

#[test]
fn a_reason_phrase_of_its_own_is_kept() {
    let custom = parsed("HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n");
    let reason = custom
        .head
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .unwrap();
    assert_eq!(reason.as_bytes(), b"Fine Thanks");
    let usual = parsed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(
        usual
            .head
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .is_none()
    );
}

#[test]
fn malformed_heads_are_refused() {
    for wire in [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Space : a\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "NOT HTTP\r\n\r\n",
    ] {
        assert_eq!(refused(wire), CodecErrorKind::Malformed, "{wire:?}");
    }
}

#[test]
fn heads_over_the_limits_are_refused() {
    let big = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}",
        "a".repeat(MAX_RESPONSE_HEAD)
    );
    assert_eq!(refused(&big), CodecErrorKind::TooLarge);
    let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert_eq!(
        refused(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
        CodecErrorKind::TooLarge
    );
    let large_but_allowed = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    assert_eq!(
        parsed(&large_but_allowed).head.headers["x-big"].len(),
        40 * 1024
    );
}

#[test]
fn a_missing_reason_phrase_is_an_empty_one() {
    // Found by the h1_response fuzz target: httparse's reason phrase for
    // "HTTP/1.0 210" is a static "", not a slice of the buffer.
    let answer = parsed("HTTP/1.0 210\n\n");
    assert_eq!(answer.head.status.as_u16(), 210);
    assert!(
        answer
            .head
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .is_none()
    );
    let empty_value = parsed("HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(empty_value.head.headers["x-empty"], "");
}
