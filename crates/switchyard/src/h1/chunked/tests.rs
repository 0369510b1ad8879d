#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;

use super::{ChunkedDecoder, Decoded, MAX_TRAILERS};
use crate::h1::CodecErrorKind;

/// Decode all of `wire` fed `step` bytes at a time: the body, the trailers
/// (as `name: value` lines) and whether it ended.
fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<String>, bool), CodecErrorKind> {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let (mut body, mut trailers) = (Vec::new(), Vec::new());
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf).map_err(|e| e.kind())? {
            Decoded::Data(data) => body.extend_from_slice(&data),
            Decoded::Trailers(fields) => {
                for (name, value) in &fields {
                    trailers.push(format!("{name}: {}", value.to_str().unwrap()));
                }
            }
            Decoded::End => return Ok((body, trailers, true)),
            Decoded::NeedMore if fed >= wire.len() => return Ok((body, trailers, false)),
            Decoded::NeedMore => {
                let end = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunks_are_joined_whatever_the_reads() {
    let wire = b"5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";
    for step in [1, 2, 3, 7, wire.len()] {
        let (body, trailers, ended) = decode(wire, step).unwrap();
        assert_eq!(body, b"hello 0123456789", "step {step}");
        assert!(trailers.is_empty());
        assert!(ended);
    }
}

#[test]
fn trailers_are_read() {
    let wire = b"2\r\nok\r\n0\r\ngrpc-status: 0\r\nx-b: two\r\n\r\n";
    for step in [1, 4, wire.len()] {
        let (body, trailers, ended) = decode(wire, step).unwrap();
        assert_eq!(body, b"ok");
        assert_eq!(trailers, ["grpc-status: 0", "x-b: two"]);
        assert!(ended);
    }
}

#[test]
fn bytes_after_the_last_chunk_stay_in_the_buffer() {
    let mut buf = BytesMut::from(&b"0\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
    let mut decoder = ChunkedDecoder::default();
    assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::End);
    assert!(decoder.is_done());
    assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
}

#[test]
fn spaces_may_follow_the_size() {
    let (body, _, ended) = decode(b"2 \t\r\nok\r\n0 ;x\r\n\r\n", 1).unwrap();
    assert_eq!(body, b"ok");
    assert!(ended);
}

#[test]
fn a_body_cut_short_has_not_ended() {
    let (body, _, ended) = decode(b"5\r\nhel", 2).unwrap();
    assert_eq!(body, b"hel");
    assert!(!ended);
}

#[test]
fn malformed_framing_is_refused() {
    for wire in [
        &b"\r\n"[..],                   // no size
        b"x\r\n",                       // not hex
        b"2 3\r\nok\r\n0\r\n\r\n",      // a digit after a space
        b"2\nok\r\n0\r\n\r\n",          // bare LF after the size
        b"2\r\nokX\r\n0\r\n\r\n",       // no CRLF after the data
        b"2\r\nok\r0\r\n\r\n",          // CR without LF after the data
        b"2;a\nb\r\nok\r\n0\r\n\r\n",   // bare LF in an extension
        b"fffffffffffffffff\r\n",       // over 64 bits
        b"0\r\nx-a: 1\nx-b: 2\r\n\r\n", // bare LF in the trailers
        b"0\r\nbad field\r\n\r\n",      // not a field
    ] {
        assert_eq!(
            decode(wire, wire.len()).err(),
            Some(CodecErrorKind::Malformed),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn extensions_and_trailers_are_bounded() {
    let mut wire = b"1;".to_vec();
    wire.extend(std::iter::repeat_n(b'a', 16 * 1024));
    wire.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(decode(&wire, 4096).err(), Some(CodecErrorKind::TooLarge));

    let mut wire = b"0\r\nx-big: ".to_vec();
    wire.extend(std::iter::repeat_n(b'a', MAX_TRAILERS + 1));
    assert_eq!(decode(&wire, 4096).err(), Some(CodecErrorKind::TooLarge));

    let mut wire = b"0\r\n".to_vec();
    for i in 0..101 {
        wire.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        decode(&wire, wire.len()).err(),
        Some(CodecErrorKind::TooLarge)
    );
}

#[test]
fn only_extensions_count_against_their_limit() {
    // 20,000 one-byte chunks: 60 KB of size lines, no extension at all.
    let mut wire = b"1\r\na\r\n".repeat(20_000);
    wire.extend_from_slice(b"0\r\n\r\n");
    let (body, _, ended) = decode(&wire, 4096).unwrap();
    assert_eq!(body.len(), 20_000);
    assert!(ended);
}
