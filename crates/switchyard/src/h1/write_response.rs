//! A response head written straight into a client connection's output
//! buffer, and how its body is framed.
//!
//! The rules are hyper's server's, which served clients before. The status
//! line carries the client's version (HTTP/1.0 to an HTTP/1.0 client), the
//! usual reason phrase or the one in `hyper::ext::ReasonPhrase`. A body
//! that cannot be there (a `HEAD`, a 1xx, 204 or 304, a 2xx to `CONNECT`)
//! is not sent; a `Content-Length` field is kept and frames the body; else
//! a `Transfer-Encoding` ending in chunked, or a body of known size gets a
//! `Content-Length`, or one of unknown size is chunked (ends with the
//! connection to an HTTP/1.0 client). Trailers go only in a chunked body,
//! only to a client that sent `TE: trailers`, and only the fields the
//! `Trailer` field names. `Connection: close` is added when the connection
//! closes after this response, `Connection: keep-alive` when an HTTP/1.0
//! client keeps it, and a `Date` when the response has none.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version, response};

use super::request::{BodyEncoder, BodySize, asks_close, chunked, make_chunked_last};
use super::response::{content_length, has_token};

/// What the request says about how its response may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answering {
    /// The request was a `HEAD` (the response has no body).
    pub(crate) head: bool,
    /// The request was a `CONNECT`.
    pub(crate) connect: bool,
    /// The client speaks HTTP/1.0.
    pub(crate) http10: bool,
    /// The client accepts trailers (`TE: trailers`).
    pub(crate) accepts_trailers: bool,
}

impl Answering {
    /// The facts of a request with `method` and `version`.
    pub(crate) fn new(method: &Method, version: Version, accepts_trailers: bool) -> Self {
        Answering {
            head: *method == Method::HEAD,
            connect: *method == Method::CONNECT,
            http10: version == Version::HTTP_10,
            accepts_trailers,
        }
    }
}

/// How the response goes on the wire, once its head is written.
#[derive(Debug)]
pub(crate) struct Written {
    /// The body's framing (`Length(0)` when it has none).
    pub(crate) encoder: BodyEncoder,
    /// Whether the connection may serve another request after it.
    pub(crate) keep_alive: bool,
}

/// Write the head of `response` (whose body is `size`) into `out`; the
/// connection is kept after it only if `keep_alive` and the response allow.
pub(crate) fn encode_head(
    response: &mut response::Parts,
    size: BodySize,
    request: Answering,
    keep_alive: bool,
    out: &mut BytesMut,
) -> Written {
    let status = response.status;
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut keep_alive = keep_alive && !switching && !asks_close(&response.headers);
    let (mut encoder, until_close) = framing(&mut response.headers, status, size, request);
    keep_alive &= !until_close;
    if !switching {
        set_connection(&mut response.headers, keep_alive, request.http10);
    }
    out.reserve(64 + response.headers.len() * 40);
    status_line(out, status, request.http10, response);
    let mut dated = false;
    for (name, value) in &response.headers {
        dated |= *name == header::DATE;
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if !dated {
        out.put_slice(b"date: ");
        put_date(out);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    if let BodyEncoder::Chunked { trailers } = &mut encoder
        && !request.accepts_trailers
    {
        trailers.clear();
    }
    Written {
        encoder,
        keep_alive,
    }
}

/// `HTTP/1.1 200 OK` and the like.
fn status_line(out: &mut BytesMut, status: StatusCode, http10: bool, response: &response::Parts) {
    let reason = response.extensions.get::<hyper::ext::ReasonPhrase>();
    if status == StatusCode::OK && !http10 && reason.is_none() {
        out.put_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.put_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    match reason {
        Some(reason) => out.put_slice(reason.as_bytes()),
        // A reason must be written: some parsers expect one.
        None => out.put_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    out.put_slice(b"\r\n");
}

/// Say in `Connection` whether the connection stays: `close` on an
/// HTTP/1.1 connection that ends, `keep-alive` on an HTTP/1.0 one kept.
fn set_connection(headers: &mut HeaderMap, keep_alive: bool, http10: bool) {
    let (token, value) = match (keep_alive, http10) {
        (false, false) => ("close", HeaderValue::from_static("close")),
        (true, true) => ("keep-alive", HeaderValue::from_static("keep-alive")),
        _ => return,
    };
    if !headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v, token))
    {
        headers.append(header::CONNECTION, value);
    }
}

/// Fix the framing fields and choose the body's framing; true when the
/// body ends with the connection.
fn framing(
    headers: &mut HeaderMap,
    status: StatusCode,
    size: BodySize,
    request: Answering,
) -> (BodyEncoder, bool) {
    let informational = status.is_informational();
    let connect_ok = request.connect && status.is_success();
    let no_body_status = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    if informational || connect_ok || no_body_status {
        // Nothing may say how long a body that cannot be there is, except
        // a 304's `Content-Length` (the length the resource would have).
        if status != StatusCode::NOT_MODIFIED {
            headers.remove(header::CONTENT_LENGTH);
        }
        headers.remove(header::TRANSFER_ENCODING);
        headers.remove(header::TRAILER);
        return (BodyEncoder::Length(0), false);
    }
    let may_chunk = !request.http10;
    if let Ok(Some(length)) = content_length(headers) {
        headers.remove(header::TRANSFER_ENCODING);
        return (body_of(request, BodyEncoder::Length(length)), false);
    }
    headers.remove(header::CONTENT_LENGTH);
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if !may_chunk {
            headers.remove(header::TRANSFER_ENCODING);
            headers.remove(header::TRAILER);
        } else {
            make_chunked_last(headers);
            return (body_of(request, chunked(headers)), false);
        }
    }
    match size {
        BodySize::Empty | BodySize::Known(0) if !request.head => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            (BodyEncoder::Length(0), false)
        }
        // A `HEAD` answer says no length it was not given.
        BodySize::Empty | BodySize::Known(0) => (BodyEncoder::Length(0), false),
        // A `HEAD` answer of unknown length says nothing of its framing.
        BodySize::Unknown if request.head => (BodyEncoder::Length(0), false),
        BodySize::Known(length) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            (body_of(request, BodyEncoder::Length(length)), false)
        }
        BodySize::Unknown if may_chunk => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            (body_of(request, chunked(headers)), false)
        }
        BodySize::Unknown => {
            headers.remove(header::TRAILER);
            (BodyEncoder::UntilClose, true)
        }
    }
}

/// `encoder`, or no body at all for a `HEAD` (its fields stay as they
/// would be for a `GET`).
fn body_of(request: Answering, encoder: BodyEncoder) -> BodyEncoder {
    if request.head {
        BodyEncoder::Length(0)
    } else {
        encoder
    }
}

thread_local! {
    /// The `Date` value of the current second, made once per second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// The current date as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn put_date(out: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *text = httpdate::fmt_http_date(now);
            *cached = second;
        }
        out.put_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests;
