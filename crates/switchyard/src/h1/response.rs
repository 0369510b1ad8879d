//! An upstream's response head, parsed from the connection's read buffer.
//!
//! The header values stay slices of the buffer (no copy). Informational
//! answers other than 101 are skipped, as hyper skipped them; how the body
//! is framed follows RFC 9112 section 6.3.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use super::body::BodyDecoder;
use super::chunked::ChunkedDecoder;
use super::{CodecError, CodecErrorKind, FieldAt, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS, span};

/// A response head and what follows from it.
#[derive(Debug)]
pub(crate) struct ParsedResponse {
    /// Status, version, fields (a reason phrase other than the status's
    /// usual one in `hyper::ext::ReasonPhrase`).
    pub(crate) head: http::response::Parts,
    /// How the body is framed.
    pub(crate) body: BodyDecoder,
    /// Whether the connection may serve another request after this one.
    pub(crate) keep_alive: bool,
    /// A 101: the connection now belongs to the protocol switched to.
    pub(crate) upgrade: bool,
}

/// Parse the response head at the start of `buf` (answering a `HEAD`
/// request when `to_head` is set), taking it out of `buf`; `None` until
/// the buffer holds all of it.
pub(crate) fn parse(
    buf: &mut BytesMut,
    to_head: bool,
) -> Result<Option<ParsedResponse>, CodecError> {
    loop {
        let Some(parsed) = parse_one(buf, to_head)? else {
            return Ok(None);
        };
        // 100 Continue, 103 Early Hints and the like are not the answer.
        if parsed.head.status.is_informational() && !parsed.upgrade {
            continue;
        }
        return Ok(Some(parsed));
    }
}

fn parse_one(buf: &mut BytesMut, to_head: bool) -> Result<Option<ParsedResponse>, CodecError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let (len, code, version, reason, at) = {
        // Uninitialised: zeroing 100 fields per response costs more than
        // parsing them.
        let mut fields =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut fields,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(too_large());
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
            Err(_) => return Err(CodecError::malformed("invalid response head")),
        };
        if len > MAX_RESPONSE_HEAD {
            return Err(too_large());
        }
        let head = &buf[..len];
        let at = FieldAt::all(head, response.headers);
        let reason = response.reason.map(|r| span(head, r.as_bytes()));
        (
            len,
            response.code.unwrap_or(0),
            response.version.unwrap_or(1),
            reason,
            at,
        )
    };
    let bytes = buf.split_to(len).freeze();
    let status =
        StatusCode::from_u16(code).map_err(|_| CodecError::malformed("invalid response status"))?;
    let (mut head, ()) = http::Response::new(()).into_parts();
    head.status = status;
    head.version = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    head.headers.reserve(at.len());
    // The fields framing and keep-alive depend on are read as they pass,
    // rather than looked up in the map afterwards.
    let mut facts = Facts::default();
    for field in &at {
        let name = HeaderName::from_bytes(&bytes[field.name.0..field.name.1])
            .map_err(|_| CodecError::malformed("invalid response field name"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(field.value.0..field.value.1))
            .map_err(|_| CodecError::malformed("invalid response field value"))?;
        facts.note(&name, &value)?;
        head.headers.append(name, value);
    }
    if let Some((start, end)) = reason {
        keep_reason(&mut head, &bytes[start..end]);
    }
    let keep_alive = facts.keeps_alive(head.version);
    let (body, upgrade) = framing(&head, &facts, to_head)?;
    Ok(Some(ParsedResponse {
        keep_alive: keep_alive && !upgrade && body.delimited(),
        head,
        body,
        upgrade,
    }))
}

fn too_large() -> CodecError {
    CodecError::new(
        CodecErrorKind::TooLarge,
        "upstream response head over its limit",
    )
}

/// A reason phrase other than the status's usual one (and not empty)
/// goes downstream too.
fn keep_reason(head: &mut http::response::Parts, reason: &[u8]) {
    if reason.is_empty() || head.status.canonical_reason().map(str::as_bytes) == Some(reason) {
        return;
    }
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
        head.extensions.insert(reason);
    }
}

/// What the framing and connection fields of a head said.
#[derive(Default)]
struct Facts {
    /// The `Content-Length` (every value the same number).
    length: Option<u64>,
    /// Whether the last `Transfer-Encoding` field ends in chunked, if any.
    chunked: Option<bool>,
    /// A `Connection` field said `close`.
    close: bool,
    /// A `Connection` field said `keep-alive`.
    keep_alive: bool,
}

impl Facts {
    /// Take in one field.
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), CodecError> {
        match *name {
            header::CONTENT_LENGTH => add_length(value, &mut self.length)?,
            header::TRANSFER_ENCODING => self.chunked = Some(ends_in_chunked(value)),
            header::CONNECTION => {
                self.close |= has_token(value, "close");
                self.keep_alive |= has_token(value, "keep-alive");
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the connection stays open after this response: HTTP/1.1
    /// unless a `Connection` field says `close`; HTTP/1.0 only if one says
    /// `keep-alive`.
    fn keeps_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep_alive)
    }
}

/// Whether the comma-separated `value` holds `token` (any case).
pub(crate) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the last coding a `Transfer-Encoding` value lists is chunked.
pub(crate) fn ends_in_chunked(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// How the body of `head` is framed (answering a `HEAD` request when
/// `to_head` is set), and whether it is a switch of protocols.
fn framing(
    head: &http::response::Parts,
    facts: &Facts,
    to_head: bool,
) -> Result<(BodyDecoder, bool), CodecError> {
    match head.status.as_u16() {
        101 => return Ok((BodyDecoder::empty(), true)),
        100..=199 | 204 | 304 => return Ok((BodyDecoder::empty(), false)),
        _ if to_head => return Ok((BodyDecoder::empty(), false)),
        _ => {}
    }
    if let Some(chunked) = facts.chunked {
        if head.version == Version::HTTP_10 {
            return Err(CodecError::malformed(
                "HTTP/1.0 response with Transfer-Encoding",
            ));
        }
        let body = if chunked {
            BodyDecoder::Chunked(ChunkedDecoder::default())
        } else {
            BodyDecoder::UntilClose { ended: false }
        };
        return Ok((body, false));
    }
    match facts.length {
        Some(length) => Ok((BodyDecoder::Length(length), false)),
        None => Ok((BodyDecoder::UntilClose { ended: false }, false)),
    }
}

/// The `Content-Length` of `headers`: every value (comma lists included)
/// must be the same number.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, CodecError> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        add_length(value, &mut length)?;
    }
    Ok(length)
}

/// Take in one `Content-Length` field (a comma list allowed): every number
/// must be the one seen before, if any.
fn add_length(value: &HeaderValue, length: &mut Option<u64>) -> Result<(), CodecError> {
    for part in value.as_bytes().split(|&b| b == b',') {
        let parsed = digits(part.trim_ascii())
            .ok_or_else(|| CodecError::malformed("invalid Content-Length"))?;
        match *length {
            Some(earlier) if earlier != parsed => {
                return Err(CodecError::malformed("differing Content-Length values"));
            }
            _ => *length = Some(parsed),
        }
    }
    Ok(())
}

/// A decimal number of digits only, that fits in 64 bits.
pub(crate) fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests;
