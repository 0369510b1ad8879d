use std::io::Write;

use http::{Request, Response};

use super::{Codec, Compression, Encoder};
use crate::proxy::{RequestHeader, ResponseHeader};

fn request(accept: Option<&str>) -> RequestHeader {
    let mut request = Request::get("/");
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    request.body(()).unwrap().into_parts().0
}

fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(()).unwrap().into_parts().0
}

const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");

/// The coding chosen for `accept`, if any.
fn chosen(compression: &Compression, accept: &str) -> Option<String> {
    let mut head = response(200, &[HTML]);
    compression.start(&request(Some(accept)), &mut head)?;
    Some(
        head.headers["content-encoding"]
            .to_str()
            .unwrap()
            .to_string(),
    )
}

#[test]
fn the_clients_preference_wins_and_ties_go_to_the_routes_order() {
    let all = Compression::new(vec![Codec::Zstd, Codec::Brotli, Codec::Gzip]);
    assert_eq!(chosen(&all, "gzip, br, zstd").as_deref(), Some("zstd"));
    assert_eq!(chosen(&all, "gzip;q=1, br;q=0.5").as_deref(), Some("gzip"));
    assert_eq!(chosen(&all, "GZIP;q=0.2, br;q=0.9").as_deref(), Some("br"));
    assert_eq!(chosen(&all, "x-gzip").as_deref(), Some("gzip"));
    assert_eq!(chosen(&all, "*").as_deref(), Some("zstd"));
    assert_eq!(chosen(&all, "*;q=0.5, zstd;q=0").as_deref(), Some("br"));
    assert_eq!(chosen(&all, "identity"), None);
    assert_eq!(chosen(&all, "gzip;q=0, deflate"), None);
    let gzip_only = Compression::new(vec![Codec::Gzip]);
    assert_eq!(chosen(&gzip_only, "br, zstd"), None);
}

#[test]
fn responses_that_must_not_be_compressed_are_left_alone() {
    let compression = Compression::new(vec![Codec::Gzip]);
    let accept = request(Some("gzip"));
    for (status, headers) in [
        (200, vec![("content-type", "image/png")]),
        (200, vec![("content-type", "text/event-stream")]),
        (200, vec![HTML, ("content-encoding", "br")]),
        (200, vec![HTML, ("cache-control", "public, no-transform")]),
        (200, vec![HTML, ("content-length", "1023")]),
        (206, vec![HTML]),
        (204, vec![HTML]),
        (304, vec![HTML]),
        (200, vec![]),
    ] {
        let mut head = response(status, &headers);
        let before = head.headers.clone();
        assert!(
            compression.start(&accept, &mut head).is_none(),
            "{status} {headers:?}"
        );
        assert!(
            !head.headers.contains_key("content-encoding")
                || before.contains_key("content-encoding")
        );
    }
}

#[test]
fn wildcard_types_take_a_whole_family_but_never_an_event_stream() {
    let compression = Compression {
        types: vec!["text/*".to_string()],
        ..Compression::new(vec![Codec::Gzip])
    };
    let accept = request(Some("gzip"));
    let mut css = response(200, &[("content-type", "text/css")]);
    assert!(compression.start(&accept, &mut css).is_some());
    let mut json = response(200, &[("content-type", "application/json")]);
    assert!(compression.start(&accept, &mut json).is_none());
    let mut events = response(200, &[("content-type", "text/event-stream")]);
    assert!(compression.start(&accept, &mut events).is_none());
}

#[test]
fn a_compressed_head_loses_its_length_and_its_strong_etag() {
    let compression = Compression::new(vec![Codec::Gzip]);
    let mut head = response(
        200,
        &[
            HTML,
            ("content-length", "4096"),
            ("etag", "\"v1\""),
            ("vary", "origin"),
            ("accept-ranges", "bytes"),
        ],
    );
    assert!(
        compression
            .start(&request(Some("gzip")), &mut head)
            .is_some()
    );
    let h = &head.headers;
    assert_eq!(h["content-encoding"], "gzip");
    assert!(!h.contains_key("content-length") && !h.contains_key("accept-ranges"));
    assert_eq!(h["etag"], "W/\"v1\"");
    let vary: Vec<_> = h.get_all("vary").iter().collect();
    assert_eq!(vary, ["origin", "accept-encoding"]);
    // A client that accepts none still gets Vary, so caches keep both.
    let mut plain = response(200, &[HTML]);
    assert!(compression.start(&request(None), &mut plain).is_none());
    assert_eq!(plain.headers["vary"], "accept-encoding");
    assert!(!plain.headers.contains_key("content-encoding"));
}

/// A decoder for `codec` that takes bytes as they come.
fn decoder(codec: Codec) -> Box<dyn Decode> {
    match codec {
        Codec::Gzip => Box::new(flate2::write::GzDecoder::new(Vec::new())),
        Codec::Brotli => Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)),
        Codec::Zstd => Box::new(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
    }
}

trait Decode: Write {
    fn decoded(&mut self) -> Vec<u8>;
}

impl Decode for flate2::write::GzDecoder<Vec<u8>> {
    fn decoded(&mut self) -> Vec<u8> {
        std::mem::take(self.get_mut())
    }
}

impl Decode for brotli::DecompressorWriter<Vec<u8>> {
    fn decoded(&mut self) -> Vec<u8> {
        std::mem::take(self.get_mut())
    }
}

impl Decode for zstd::stream::write::Decoder<'static, Vec<u8>> {
    fn decoded(&mut self) -> Vec<u8> {
        std::mem::take(self.get_mut())
    }
}

#[test]
fn each_chunk_can_be_decoded_as_soon_as_it_is_encoded() {
    let chunks: [&[u8]; 3] = [b"<html>first part ", b"second part ", b"last</html>"];
    for codec in [Codec::Gzip, Codec::Brotli, Codec::Zstd] {
        let mut encoder = Encoder::new(codec).unwrap();
        let mut decode = decoder(codec);
        let mut whole = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let end = i == chunks.len() - 1;
            let out = encoder.encode(chunk, end).unwrap();
            decode.write_all(&out).unwrap();
            decode.flush().unwrap();
            let got = decode.decoded();
            // Not held back for the next chunk: the client has it now.
            assert_eq!(got, *chunk, "{codec:?} chunk {i}");
            whole.extend(got);
        }
        assert_eq!(whole, chunks.concat(), "{codec:?}");
    }
}

#[test]
fn repetitive_text_gets_smaller() {
    let text = "<tr><td>row</td><td>value</td></tr>\n".repeat(500);
    for codec in [Codec::Gzip, Codec::Brotli, Codec::Zstd] {
        let mut encoder = Encoder::new(codec).unwrap();
        let out = encoder.encode(text.as_bytes(), true).unwrap();
        assert!(
            out.len() * 10 < text.len(),
            "{codec:?}: {} of {}",
            out.len(),
            text.len()
        );
    }
}
