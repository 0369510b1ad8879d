//! Switchyard's own HTTP/1.1 codec over `httparse`, on both sides.
//!
//! hyper's HTTP/1 client moved every request through a channel to a task of
//! its own and copied the head twice (into a `HeaderMap`, then out of it).
//! Here the request head is written straight into the connection's output
//! buffer ([`request`]), the response head is parsed from the read buffer
//! with its header values kept as slices of it ([`response`]), and the body
//! framings both ways are ours ([`body`], [`chunked`]). The connection that
//! uses them lives in `upstream::http1`.
//!
//! Clients are served by the same codec: [`parse_request`] reads a client's
//! request head (hyper's server rules, which served clients before), and
//! [`write_response`] writes the response head; `server::http1` is the
//! connection. HTTP/2 stays hyper's and h2's, both sides.
//!
//! Every rule hyper enforced on upstream responses is kept: `httparse`'s
//! strict defaults (no obs-fold, no space before the colon), at most
//! [`MAX_RESPONSE_HEADERS`] fields in a head of at most
//! [`MAX_RESPONSE_HEAD`] bytes, differing or invalid `Content-Length`
//! values refused, `Transfer-Encoding` winning over `Content-Length`, and
//! chunk sizes, extensions and trailers checked as hyper checked them.

pub(crate) mod body;
pub(crate) mod chunked;
mod error;
pub(crate) mod parse_request;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod write_response;

pub(crate) use error::{CodecError, CodecErrorKind};

/// Where one field of a head sits in the bytes it was parsed from: offsets
/// kept while httparse's borrow of the buffer lasts, turned into slices of
/// the frozen head after.
pub(crate) struct FieldAt {
    pub(crate) name: (usize, usize),
    pub(crate) value: (usize, usize),
}

impl FieldAt {
    /// Where each of `fields` sits in `head` (the parsed head's bytes).
    pub(crate) fn all(head: &[u8], fields: &[httparse::Header<'_>]) -> Vec<FieldAt> {
        fields
            .iter()
            .map(|field| FieldAt {
                name: span(head, field.name.as_bytes()),
                value: span(head, field.value),
            })
            .collect()
    }
}

/// Where `part`, a slice httparse returned, sits in `head`. An empty slice
/// need not point into the head (httparse gives a static `""` for a missing
/// reason phrase): it is the empty range, as is anything outside the head.
pub(crate) fn span(head: &[u8], part: &[u8]) -> (usize, usize) {
    match (part.as_ptr() as usize).checked_sub(head.as_ptr() as usize) {
        Some(start) if !part.is_empty() && start + part.len() <= head.len() => {
            (start, start + part.len())
        }
        _ => (0, 0),
    }
}

/// The most header fields an upstream response head (or its trailers) may
/// carry (hyper's default).
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;

/// The largest upstream response head accepted, in bytes.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A message read whole by the codec (for the fuzz targets and tests).
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReadMessage {
    /// The status or request line, then every field as `name: value`.
    pub(crate) head: Vec<String>,
    /// The body bytes, joined.
    pub(crate) body: Vec<u8>,
    /// The trailer fields as `name: value`.
    pub(crate) trailers: Vec<String>,
    /// Whether the body ended before the input did (or with it, when the
    /// body ends with the connection).
    pub(crate) ended: bool,
}

/// A header map as `name: value` lines.
#[cfg(any(test, feature = "fuzzing"))]
fn field_lines(map: &http::HeaderMap) -> Vec<String> {
    map.iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
        .collect()
}

/// Read one response from `pieces`, fed to the codec one at a time as
/// reads would bring them, with the connection closing after the last.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_response(
    pieces: &[&[u8]],
    to_head: bool,
) -> Result<ReadMessage, CodecErrorKind> {
    read_message(pieces, |buf| {
        Ok(response::parse(buf, to_head)?.map(|parsed| {
            let mut head = vec![parsed.head.status.as_str().to_owned()];
            head.extend(field_lines(&parsed.head.headers));
            (head, parsed.body)
        }))
    })
}

/// Read one request from `pieces` as [`read_response`] reads a response;
/// its head is `METHOD TARGET VERSION`, then the fields, then the
/// facts the head gave (`keep-alive`, `expect-continue`, `trailers`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_request(
    pieces: &[&[u8]],
    limits: parse_request::HeadLimits,
) -> Result<ReadMessage, CodecErrorKind> {
    read_message(pieces, |buf| {
        Ok(parse_request::parse(buf, limits)?.map(|parsed| {
            let line = format!(
                "{} {} {:?}",
                parsed.head.method, parsed.head.uri, parsed.head.version
            );
            let mut head = vec![line];
            head.extend(field_lines(&parsed.head.headers));
            head.push(format!(
                "keep-alive {} expect-continue {} trailers {}",
                parsed.keep_alive, parsed.expect_continue, parsed.accepts_trailers
            ));
            (head, parsed.body)
        }))
    })
}

/// Parse a head with `parse_head`, then read its body to its end.
#[cfg(any(test, feature = "fuzzing"))]
fn read_message(
    pieces: &[&[u8]],
    mut parse_head: impl FnMut(
        &mut bytes::BytesMut,
    ) -> Result<Option<(Vec<String>, body::BodyDecoder)>, CodecError>,
) -> Result<ReadMessage, CodecErrorKind> {
    use chunked::Decoded;
    let mut buf = bytes::BytesMut::new();
    let mut pieces = pieces.iter();
    let (head, mut decoder) = loop {
        if let Some(parsed) = parse_head(&mut buf).map_err(|e| e.kind())? {
            break parsed;
        }
        match pieces.next() {
            Some(piece) => buf.extend_from_slice(piece),
            None => return Err(CodecErrorKind::Incomplete),
        }
    };
    let (mut body, mut trailers) = (Vec::new(), Vec::new());
    loop {
        match decoder.decode(&mut buf).map_err(|e| e.kind())? {
            Decoded::Data(data) => body.extend_from_slice(&data),
            Decoded::Trailers(map) => trailers = field_lines(&map),
            Decoded::End => break,
            Decoded::NeedMore => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => {
                    decoder.closed().map_err(|e| e.kind())?;
                    break;
                }
            },
        }
    }
    Ok(ReadMessage {
        head,
        body,
        trailers,
        ended: decoder.is_end(),
    })
}

#[cfg(test)]
mod tests;
