#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request};

use super::{BodyEncoder, BodySize, encode_head};
use crate::h1::CodecErrorKind;

fn head(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    size: BodySize,
) -> (String, BodyEncoder) {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let (mut parts, ()) = builder.body(()).unwrap().into_parts();
    let mut out = BytesMut::new();
    let encoder = encode_head(&mut parts, size, &mut out);
    (String::from_utf8(out.to_vec()).unwrap(), encoder)
}

#[test]
fn the_head_is_written_in_origin_form() {
    let (wire, encoder) = head(
        Method::GET,
        "/a?b=c",
        &[("host", "x"), ("x-a", "1"), ("x-a", "2")],
        BodySize::Empty,
    );
    assert_eq!(
        wire,
        "GET /a?b=c HTTP/1.1\r\nhost: x\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
    assert_eq!(encoder, BodyEncoder::Length(0));
}

#[test]
fn the_framing_is_set_as_hyper_set_it() {
    // A known size gets a Content-Length.
    let (wire, encoder) = head(Method::POST, "/", &[], BodySize::Known(5));
    assert!(wire.contains("content-length: 5\r\n"), "{wire}");
    assert_eq!(encoder, BodyEncoder::Length(5));
    // An unknown size is chunked, except for a GET (sent without a body).
    let (wire, encoder) = head(Method::POST, "/", &[], BodySize::Unknown);
    assert!(wire.contains("transfer-encoding: chunked\r\n"), "{wire}");
    assert!(matches!(encoder, BodyEncoder::Chunked { .. }));
    let (wire, encoder) = head(Method::GET, "/", &[], BodySize::Unknown);
    assert!(!wire.contains("transfer-encoding"), "{wire}");
    assert_eq!(encoder, BodyEncoder::Length(0));
    // Transfer-Encoding wins over Content-Length, and ends in chunked.
    let (wire, _) = head(
        Method::POST,
        "/",
        &[("transfer-encoding", "gzip"), ("content-length", "3")],
        BodySize::Known(3),
    );
    assert!(
        wire.contains("transfer-encoding: gzip, chunked\r\n"),
        "{wire}"
    );
    assert!(!wire.contains("content-length"), "{wire}");
    // A body that is already over loses Transfer-Encoding.
    let (wire, _) = head(
        Method::POST,
        "/",
        &[("transfer-encoding", "chunked")],
        BodySize::Empty,
    );
    assert!(!wire.contains("transfer-encoding"), "{wire}");
}

#[test]
fn chunks_and_declared_trailers_are_framed() {
    let (_, mut encoder) = head(
        Method::POST,
        "/",
        &[
            ("transfer-encoding", "chunked"),
            ("trailer", "x-sum, content-type"),
        ],
        BodySize::Unknown,
    );
    let mut out = BytesMut::new();
    let framed = encoder.data(Bytes::from(vec![b'a'; 26]), &mut out).unwrap();
    assert_eq!(&out[..], b"1a\r\n");
    assert!(framed.crlf);
    out.clear();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", HeaderValue::from_static("9"));
    trailers.insert("x-undeclared", HeaderValue::from_static("1"));
    trailers.insert("content-type", HeaderValue::from_static("text/plain"));
    encoder.end(Some(&trailers), &mut out).unwrap();
    assert_eq!(&out[..], b"0\r\nx-sum: 9\r\n\r\n");
}

#[test]
fn a_body_must_match_its_length() {
    let mut out = BytesMut::new();
    let mut encoder = BodyEncoder::Length(3);
    assert_eq!(
        encoder
            .data(Bytes::from_static(b"abcd"), &mut out)
            .unwrap_err()
            .kind(),
        CodecErrorKind::BodyLength
    );
    let mut encoder = BodyEncoder::Length(3);
    encoder.data(Bytes::from_static(b"ab"), &mut out).unwrap();
    assert_eq!(
        encoder.end(None, &mut out).unwrap_err().kind(),
        CodecErrorKind::BodyLength
    );
    assert!(out.is_empty());
}
