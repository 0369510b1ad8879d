//! A client's request head, parsed from the connection's read buffer.
//!
//! The rules are hyper's server's, which served clients before: httparse's
//! strict defaults (no obs-fold, no space before the colon, no bare LF in
//! the head, no NUL), at most `max_headers` fields in a head of at most
//! `max_head` bytes (more: 431), a target of at most 65,534 bytes (more:
//! 414), `Content-Length` a plain number whose repeats must agree,
//! `Transfer-Encoding` only on HTTP/1.1 and only ending in chunked, and a
//! request carrying both framings read as chunked and its connection
//! closed after it. Header values stay slices of the read buffer.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Uri, Version};

use super::body::BodyDecoder;
use super::chunked::ChunkedDecoder;
use super::response::{digits, ends_in_chunked, has_token};
use super::{CodecError, CodecErrorKind, FieldAt, span};

/// The longest request target accepted (hyper's limit).
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// How many field slots live on the stack; a larger `max_headers` uses
/// the heap.
const STACK_FIELDS: usize = 100;

/// What a request head may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadLimits {
    /// The most fields.
    pub(crate) max_headers: usize,
    /// The most bytes, request line and fields together.
    pub(crate) max_head: usize,
}

/// A request head and what follows from it.
#[derive(Debug)]
pub(crate) struct ParsedRequest {
    /// Method, target, version and fields.
    pub(crate) head: http::request::Parts,
    /// How the body is framed.
    pub(crate) body: BodyDecoder,
    /// Whether the client lets the connection serve another request.
    pub(crate) keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub(crate) expect_continue: bool,
    /// The client accepts trailer fields in a chunked response (`TE: trailers`).
    pub(crate) accepts_trailers: bool,
}

/// The request line and fields found by httparse, as offsets into the head.
struct Found {
    len: usize,
    method: (usize, usize),
    target: (usize, usize),
    version: u8,
    fields: Vec<FieldAt>,
}

/// Parse the request head at the start of `buf`, taking it out of `buf`;
/// `None` until the buffer holds all of it.
pub(crate) fn parse(
    buf: &mut BytesMut,
    limits: HeadLimits,
) -> Result<Option<ParsedRequest>, CodecError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let found = if limits.max_headers <= STACK_FIELDS {
        // Uninitialised: zeroing 100 slots per request costs more than
        // parsing the fields.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
        find(buf, &mut slots[..limits.max_headers], limits.max_head)?
    } else {
        let mut slots = Vec::with_capacity(limits.max_headers);
        slots.resize_with(limits.max_headers, MaybeUninit::uninit);
        find(buf, &mut slots, limits.max_head)?
    };
    let Some(found) = found else {
        return Ok(None);
    };
    let bytes = buf.split_to(found.len).freeze();
    build(&bytes, &found).map(Some)
}

/// Run httparse over `buf`.
fn find<'b>(
    buf: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    max_head: usize,
) -> Result<Option<Found>, CodecError> {
    let mut request = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(httparse::Error::Token) if request.method.is_none() => {
            return Err(CodecError::malformed("invalid request method"));
        }
        Err(httparse::Error::Token) => return Err(CodecError::malformed("invalid request target")),
        Err(_) => return Err(CodecError::malformed("invalid request head")),
    };
    if len > max_head {
        return Err(too_large());
    }
    let head = &buf[..len];
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(CodecError::malformed("invalid request line"));
    };
    if target.len() > MAX_TARGET {
        return Err(CodecError::new(
            CodecErrorKind::TargetTooLong,
            "request target over its limit",
        ));
    }
    Ok(Some(Found {
        len,
        method: span(head, method.as_bytes()),
        target: span(head, target.as_bytes()),
        version,
        fields: FieldAt::all(head, request.headers),
    }))
}

fn too_large() -> CodecError {
    CodecError::new(CodecErrorKind::TooLarge, "request head over its limit")
}

/// The framing fields seen so far, as hyper's server weighs them.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    saw_length: bool,
    transfer_encoding: bool,
    chunked: bool,
}

/// Build the request from the head's bytes.
fn build(bytes: &Bytes, found: &Found) -> Result<ParsedRequest, CodecError> {
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = Method::from_bytes(&bytes[found.method.0..found.method.1])
        .map_err(|_| CodecError::malformed("invalid request method"))?;
    head.uri = Uri::from_maybe_shared(bytes.slice(found.target.0..found.target.1))
        .map_err(|_| CodecError::malformed("invalid request target"))?;
    let http11 = found.version == 1;
    head.version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut keep_alive = http11;
    let mut saw_close = false;
    let (mut expect_continue, mut accepts_trailers) = (false, false);
    let mut framing = Framing::default();
    head.headers.reserve(found.fields.len());
    for field in &found.fields {
        let name = HeaderName::from_bytes(&bytes[field.name.0..field.name.1])
            .map_err(|_| CodecError::malformed("invalid request field name"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(field.value.0..field.value.1))
            .map_err(|_| CodecError::malformed("invalid request field value"))?;
        match name {
            header::TRANSFER_ENCODING => {
                if !http11 {
                    return Err(CodecError::malformed(
                        "HTTP/1.0 request with Transfer-Encoding",
                    ));
                }
                framing.transfer_encoding = true;
                if framing.length.take().is_some() {
                    head.headers.remove(header::CONTENT_LENGTH);
                }
                framing.chunked = ends_in_chunked(&value);
            }
            header::CONTENT_LENGTH => {
                framing.saw_length = true;
                if framing.transfer_encoding {
                    continue;
                }
                let length = digits(value.as_bytes())
                    .ok_or_else(|| CodecError::malformed("invalid Content-Length"))?;
                match framing.length {
                    Some(earlier) if earlier != length => {
                        return Err(CodecError::malformed("differing Content-Length values"));
                    }
                    // The same number again: one field says it.
                    Some(_) => continue,
                    None => framing.length = Some(length),
                }
            }
            header::CONNECTION => {
                // Once one `Connection` line asks to close, a later
                // `keep-alive` does not undo it.
                if saw_close || has_token(&value, "close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(&value, "keep-alive");
                }
            }
            header::EXPECT => {
                expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
            }
            header::TE => accepts_trailers |= has_token(&value, "trailers"),
            _ => {}
        }
        head.headers.append(name, value);
    }
    if framing.transfer_encoding && !framing.chunked {
        return Err(CodecError::malformed(
            "request Transfer-Encoding does not end in chunked",
        ));
    }
    // Both framings: read as chunked, and close the connection after it.
    if framing.transfer_encoding && framing.saw_length {
        keep_alive = false;
    }
    let body = if framing.chunked {
        BodyDecoder::Chunked(ChunkedDecoder::default())
    } else {
        BodyDecoder::Length(framing.length.unwrap_or(0))
    };
    Ok(ParsedRequest {
        head,
        body,
        keep_alive,
        expect_continue: expect_continue && http11,
        accepts_trailers,
    })
}

#[cfg(test)]
mod tests;
