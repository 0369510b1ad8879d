#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use http::{HeaderValue, Method, StatusCode, Version};

use super::{Answering, encode_head};
use crate::h1::request::{BodyEncoder, BodySize};

const GET: Answering = Answering {
    head: false,
    connect: false,
    http10: false,
    accepts_trailers: false,
};

fn parts(status: u16, fields: &[(&'static str, &'static str)]) -> http::response::Parts {
    let (mut head, ()) = http::Response::new(()).into_parts();
    head.status = StatusCode::from_u16(status).unwrap();
    for (name, value) in fields {
        head.headers.append(*name, HeaderValue::from_static(value));
    }
    head
}

/// The head as text without its `date` line, and the written facts.
fn written(
    status: u16,
    fields: &[(&'static str, &'static str)],
    size: BodySize,
    request: Answering,
    keep_alive: bool,
) -> (String, BodyEncoder, bool) {
    let mut head = parts(status, fields);
    let mut out = BytesMut::new();
    let done = encode_head(&mut head, size, request, keep_alive, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.contains("\r\ndate: "), "a date is added: {text}");
    let text = text
        .split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n");
    (text, done.encoder, done.keep_alive)
}

#[test]
fn a_known_size_gets_a_length_and_an_unknown_one_is_chunked() {
    let (text, encoder, kept) = written(200, &[], BodySize::Known(5), GET, true);
    assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(encoder, BodyEncoder::Length(5));
    assert!(kept);
    let (text, encoder, _) = written(200, &[], BodySize::Unknown, GET, true);
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(encoder, BodyEncoder::Chunked { trailers: vec![] });
    let (text, _, _) = written(200, &[], BodySize::Empty, GET, true);
    assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
}

#[test]
fn a_length_field_frames_the_body() {
    let fields = [("content-length", "7"), ("transfer-encoding", "chunked")];
    let (text, encoder, _) = written(200, &fields, BodySize::Unknown, GET, true);
    assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n");
    assert_eq!(encoder, BodyEncoder::Length(7));
}

#[test]
fn some_answers_have_no_body() {
    let head = Answering { head: true, ..GET };
    let (text, encoder, _) = written(200, &[("content-length", "9")], BodySize::Empty, head, true);
    assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n");
    assert_eq!(encoder, BodyEncoder::Length(0));
    let (text, _, _) = written(200, &[], BodySize::Unknown, head, true);
    assert_eq!(text, "HTTP/1.1 200 OK\r\n\r\n");
    let (text, encoder, _) = written(
        204,
        &[("content-length", "3")],
        BodySize::Known(3),
        GET,
        true,
    );
    assert_eq!(text, "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(encoder, BodyEncoder::Length(0));
    let connect = Answering {
        connect: true,
        ..GET
    };
    let (text, _, _) = written(200, &[], BodySize::Unknown, connect, true);
    assert_eq!(text, "HTTP/1.1 200 OK\r\n\r\n");
}

#[test]
fn an_http10_client_gets_http10_and_an_unknown_length_ends_with_the_connection() {
    let old = Answering {
        http10: true,
        ..GET
    };
    let (text, encoder, kept) = written(200, &[], BodySize::Unknown, old, true);
    assert_eq!(text, "HTTP/1.0 200 OK\r\n\r\n");
    assert_eq!(encoder, BodyEncoder::UntilClose);
    assert!(!kept, "the end of the body is the end of the connection");
    let (text, _, kept) = written(200, &[], BodySize::Known(2), old, true);
    assert_eq!(
        text,
        "HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n"
    );
    assert!(kept);
}

#[test]
fn the_connection_field_says_when_it_closes() {
    let (text, _, kept) = written(404, &[], BodySize::Known(1), GET, false);
    assert_eq!(
        text,
        "HTTP/1.1 404 Not Found\r\ncontent-length: 1\r\nconnection: close\r\n\r\n"
    );
    assert!(!kept);
    let (_, _, kept) = written(
        200,
        &[("connection", "close")],
        BodySize::Known(1),
        GET,
        true,
    );
    assert!(!kept, "a response asking to close closes");
    let (text, _, kept) = written(101, &[("upgrade", "websocket")], BodySize::Empty, GET, true);
    assert_eq!(
        text,
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
    );
    assert!(!kept);
}

#[test]
fn trailers_go_only_to_a_client_that_takes_them() {
    let fields = [("trailer", "grpc-status")];
    let (_, encoder, _) = written(200, &fields, BodySize::Unknown, GET, true);
    assert_eq!(encoder, BodyEncoder::Chunked { trailers: vec![] });
    let taking = Answering {
        accepts_trailers: true,
        ..GET
    };
    let (_, encoder, _) = written(200, &fields, BodySize::Unknown, taking, true);
    let grpc_status = http::HeaderName::from_static("grpc-status");
    assert_eq!(
        encoder,
        BodyEncoder::Chunked {
            trailers: vec![grpc_status]
        }
    );
}

#[test]
fn a_reason_phrase_is_kept_and_a_date_is_not_doubled() {
    let mut head = parts(200, &[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
    head.extensions
        .insert(hyper::ext::ReasonPhrase::try_from(&b"Fine"[..]).unwrap());
    let mut out = BytesMut::new();
    let request = Answering::new(&Method::GET, Version::HTTP_11, false);
    encode_head(&mut head, BodySize::Empty, request, true, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 Fine\r\n"), "{text}");
    assert_eq!(text.matches("date: ").count(), 1, "{text}");
}
