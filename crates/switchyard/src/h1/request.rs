//! A request head written straight into the connection's output buffer,
//! and its body framed as the head says.
//!
//! How the body is framed follows hyper's client, which the proxy used
//! before: a `Transfer-Encoding` sent is chunked last; else a valid
//! `Content-Length` is kept; else a body of known size gets one; else a
//! body of unknown size is chunked, except for `GET`, `HEAD` and `CONNECT`,
//! which are sent without a body (the engine frames a `GET`'s body itself
//! when it has one). A request that has no body loses any
//! `Transfer-Encoding`.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, request};

use super::response::{content_length, ends_in_chunked, has_token};
use super::{CodecError, CodecErrorKind};

/// What the head must say about a body, from the body itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodySize {
    /// No body (it is at its end already).
    Empty,
    /// Exactly this many bytes.
    Known(u64),
    /// Not known until it ends.
    Unknown,
}

impl BodySize {
    /// What `body` says of its size.
    pub(crate) fn of<B: http_body::Body>(body: &B) -> BodySize {
        if body.is_end_stream() {
            return BodySize::Empty;
        }
        match body.size_hint().exact() {
            Some(length) => BodySize::Known(length),
            None => BodySize::Unknown,
        }
    }
}

/// The framing of a request body on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyEncoder {
    /// `Content-Length`: the bytes still to send.
    Length(u64),
    /// `Transfer-Encoding: chunked`, with the trailer fields the head
    /// announced in `Trailer` (others are not sent).
    Chunked { trailers: Vec<HeaderName> },
    /// Neither: the body ends when the connection closes (a response of
    /// unknown length to an HTTP/1.0 client).
    UntilClose,
}

/// Write the head of `request` (whose body is `size`) into `out`, fixing
/// its framing fields first, and return how its body must be framed.
pub(crate) fn encode_head(
    request: &mut request::Parts,
    size: BodySize,
    out: &mut BytesMut,
) -> BodyEncoder {
    let encoder = set_framing(&request.method, &mut request.headers, size);
    out.reserve(64 + request.headers.len() * 32);
    out.put_slice(request.method.as_str().as_bytes());
    out.put_u8(b' ');
    match request.uri.path_and_query() {
        Some(target) if request.uri.scheme().is_none() => out.put_slice(target.as_str().as_bytes()),
        None if request.uri.scheme().is_none() => out.put_u8(b'/'),
        _ => out.put_slice(request.uri.to_string().as_bytes()),
    }
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &request.headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    encoder
}

/// Make the framing fields say how the body goes, as hyper's client did.
fn set_framing(method: &Method, headers: &mut HeaderMap, size: BodySize) -> BodyEncoder {
    if size == BodySize::Empty {
        headers.remove(header::TRANSFER_ENCODING);
        return BodyEncoder::Length(0);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        make_chunked_last(headers);
        headers.remove(header::CONTENT_LENGTH);
        return chunked(headers);
    }
    if let Ok(Some(length)) = content_length(headers) {
        return BodyEncoder::Length(length);
    }
    match size {
        BodySize::Known(length) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            BodyEncoder::Length(length)
        }
        _ if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => {
            BodyEncoder::Length(0)
        }
        _ => {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            chunked(headers)
        }
    }
}

/// Make `chunked` the last coding of the `Transfer-Encoding` fields (one
/// field then holds them all), adding it if it is not.
pub(crate) fn make_chunked_last(headers: &mut HeaderMap) {
    let Some(last) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    else {
        return;
    };
    if ends_in_chunked(last) {
        return;
    }
    let mut value = last.as_bytes().to_vec();
    value.extend_from_slice(b", chunked");
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(header::TRANSFER_ENCODING, value);
    }
}

/// A chunked encoder sending the trailer fields `Trailer` names.
pub(crate) fn chunked(headers: &HeaderMap) -> BodyEncoder {
    let trailers = headers
        .get_all(header::TRAILER)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect();
    BodyEncoder::Chunked { trailers }
}

/// What a body piece became on the wire: framing bytes (copied to the
/// output buffer) around the piece itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Framed {
    /// The piece, sent as it is after what the output buffer holds.
    pub(crate) data: Bytes,
    /// Whether a CRLF follows it (the end of a chunk).
    pub(crate) crlf: bool,
}

impl BodyEncoder {
    /// Frame `data`: framing bytes go into `out`, the data is returned to
    /// go after them.
    pub(crate) fn data(&mut self, data: Bytes, out: &mut BytesMut) -> Result<Framed, CodecError> {
        match self {
            BodyEncoder::Length(left) => {
                *left = left.checked_sub(data.len() as u64).ok_or_else(|| {
                    CodecError::new(
                        CodecErrorKind::BodyLength,
                        "body longer than its Content-Length",
                    )
                })?;
                Ok(Framed { data, crlf: false })
            }
            BodyEncoder::UntilClose => Ok(Framed { data, crlf: false }),
            BodyEncoder::Chunked { .. } if data.is_empty() => Ok(Framed { data, crlf: false }),
            BodyEncoder::Chunked { .. } => {
                put_hex(out, data.len());
                out.put_slice(b"\r\n");
                Ok(Framed { data, crlf: true })
            }
        }
    }

    /// End the body, with `trailers` where the framing can carry them.
    pub(crate) fn end(
        &mut self,
        trailers: Option<&HeaderMap>,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        match self {
            BodyEncoder::Length(0) | BodyEncoder::UntilClose => Ok(()),
            BodyEncoder::Length(_) => Err(CodecError::new(
                CodecErrorKind::BodyLength,
                "body shorter than its Content-Length",
            )),
            BodyEncoder::Chunked { trailers: allowed } => {
                out.put_slice(b"0\r\n");
                if let Some(trailers) = trailers {
                    for (name, value) in trailers {
                        if allowed.contains(name) && may_trail(name) {
                            out.put_slice(name.as_str().as_bytes());
                            out.put_slice(b": ");
                            out.put_slice(value.as_bytes());
                            out.put_slice(b"\r\n");
                        }
                    }
                }
                out.put_slice(b"\r\n");
                Ok(())
            }
        }
    }
}

/// Fields that must never be sent as trailers (hyper's list).
fn may_trail(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::CONTENT_ENCODING
            | header::CONTENT_LENGTH
            | header::CONTENT_RANGE
            | header::CONTENT_TYPE
            | header::HOST
            | header::MAX_FORWARDS
            | header::SET_COOKIE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::TE
    )
}

/// `n` in hexadecimal.
fn put_hex(out: &mut BytesMut, n: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut left = n;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[left % 16];
        left /= 16;
        if left == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// Whether a `Connection` field of `headers` asks to close.
pub(crate) fn asks_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v, "close"))
}

#[cfg(test)]
mod tests;
