#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::parse_request::HeadLimits;
use super::{CodecErrorKind, read_request, read_response};

/// Responses that exercise every framing: a length, chunks with
/// extensions and trailers, a body that ends with the connection, no body,
/// informational answers before the final one, and malformed ones.
fn responses() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhelloEXTRA".to_vec()),
        Just(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\n".to_vec()),
        Just(b"HTTP/1.1 200 Fine\r\n\r\nuntil the end".to_vec()),
        Just(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n".to_vec()),
        Just(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n".to_vec()),
        Just(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|tail| [&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..], &tail].concat()),
    ]
}

/// Requests with each framing: none, a length, chunks with trailers, both
/// framings at once, pipelined requests after one, and malformed ones.
fn requests() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n".to_vec()),
        Just(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhelloGET".to_vec()),
        Just(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n3;x=y\r\nabc\r\n0\r\nx-t: 1\r\n\r\n".to_vec()),
        Just(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n".to_vec()),
        Just(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok".to_vec()),
        Just(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|tail| [&b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..], &tail].concat()),
    ]
}

/// `wire` cut at the positions `cuts` pick.
fn cut<'a>(wire: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in at {
        pieces.push(&wire[from..cut]);
        from = cut;
    }
    pieces.push(&wire[from..]);
    pieces
}

const LIMITS: HeadLimits = HeadLimits {
    max_headers: 100,
    max_head: 32 * 1024,
};

proptest! {
    /// However reads cut a request, the codec reads the same head, body
    /// and trailers, or fails the same way.
    #[test]
    fn request_reads_do_not_change_what_is_read(wire in requests(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let whole = read_request(&[&wire], LIMITS);
        prop_assert_eq!(read_request(&cut(&wire, &cuts), LIMITS), whole);
    }

    /// However reads cut a response, the codec reads the same head, body
    /// and trailers, or fails the same way.
    #[test]
    fn reads_do_not_change_what_is_read(wire in responses(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let whole = read_response(&[&wire], false);
        prop_assert_eq!(read_response(&cut(&wire, &cuts), false), whole);
    }
}

#[test]
fn each_framing_is_read() {
    let length = read_response(
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"],
        false,
    )
    .unwrap();
    assert_eq!(length.body, b"hello");
    assert!(length.ended);
    let until_close = read_response(&[b"HTTP/1.1 200 OK\r\n\r\nall", b" of it"], false).unwrap();
    assert_eq!(until_close.body, b"all of it");
    assert!(until_close.ended);
    let cut_short = read_response(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"], false);
    assert_eq!(cut_short, Err(CodecErrorKind::Incomplete));
    let to_head = read_response(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], true).unwrap();
    assert!(to_head.body.is_empty());
    assert!(to_head.ended);
}

#[test]
fn each_request_framing_is_read() {
    let length = read_request(
        &[b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET"],
        LIMITS,
    )
    .unwrap();
    assert_eq!(length.body, b"hello");
    assert!(length.ended);
    let chunked = read_request(
        &[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n"],
        LIMITS,
    )
    .unwrap();
    assert_eq!(chunked.body, b"abc");
    assert_eq!(chunked.trailers, ["x-t: 1"]);
    let cut_short = read_request(
        &[b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel"],
        LIMITS,
    );
    assert_eq!(cut_short, Err(CodecErrorKind::Incomplete));
}
