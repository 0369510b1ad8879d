//! Response compression: which responses are compressed, in which codec
//! ([`Compression::start`]), and the streaming [`Encoder`].
//!
//! A response is compressed when the client accepts one of the route's
//! codecs (`Accept-Encoding`, with q-values; ties go to the route's
//! order), its type is in the list, its body is at least `min_size` bytes
//! or of unknown length, and nothing forbids it: an encoding already, a
//! 206 (a range of the unencoded body), a 204 or 304 (no body),
//! `Cache-Control: no-transform`, or `text/event-stream` (whose events
//! must arrive one by one; compressing would hold them back). Every
//! response that could be compressed gets `Vary: Accept-Encoding`. The
//! body is encoded as it streams, flushed after each chunk the upstream
//! sent; `Content-Length` goes (the length changes) and a strong `ETag`
//! becomes weak (the bytes differ from the upstream's).
//!
//! ```
//! use switchyard::compress::{Codec, Compression};
//!
//! let compression = Compression::new(vec![Codec::Brotli, Codec::Gzip]);
//! let request = http::Request::get("/").header("accept-encoding", "gzip, br;q=0.5").body(()).unwrap();
//! let mut response = http::Response::builder()
//!     .header("content-type", "text/html; charset=utf-8")
//!     .body(())
//!     .unwrap()
//!     .into_parts()
//!     .0;
//! let encoder = compression.start(&request.into_parts().0, &mut response);
//! assert!(encoder.is_some());
//! assert_eq!(response.headers["content-encoding"], "gzip");
//! assert_eq!(response.headers["vary"], "accept-encoding");
//! ```

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method};

use crate::proxy::{RequestHeader, ResponseHeader};

mod encoder;

pub use encoder::Encoder;

/// A content coding the proxy can compress with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Zstandard (`zstd`).
    Zstd,
    /// Brotli (`br`).
    Brotli,
    /// gzip (`gzip`).
    Gzip,
}

impl Codec {
    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Brotli => "br",
            Codec::Gzip => "gzip",
        }
    }

    /// The codec a token names (`x-gzip` is gzip).
    pub fn from_token(token: &str) -> Option<Codec> {
        match token.to_ascii_lowercase().as_str() {
            "zstd" => Some(Codec::Zstd),
            "br" => Some(Codec::Brotli),
            "gzip" | "x-gzip" => Some(Codec::Gzip),
            _ => None,
        }
    }
}

/// The types compressed unless told otherwise: text, JSON, JavaScript,
/// SVG and XML.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "text/javascript",
    "text/xml",
    "text/csv",
    "text/markdown",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/ld+json",
    "application/manifest+json",
    "application/problem+json",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "image/svg+xml",
];

/// The smallest body compressed unless told otherwise: below it, the
/// codec's framing costs more than it saves.
pub const DEFAULT_MIN_SIZE: u64 = 1024;

/// Which responses a route compresses, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// The codecs offered, preferred first.
    pub codecs: Vec<Codec>,
    /// The media types compressed (`type/subtype`, or `type/*`), lower
    /// case.
    pub types: Vec<String>,
    /// The smallest `Content-Length` compressed (a body of unknown length
    /// is compressed).
    pub min_size: u64,
}

impl Compression {
    /// `codecs` in this order, for [`DEFAULT_TYPES`] of at least
    /// [`DEFAULT_MIN_SIZE`] bytes.
    pub fn new(codecs: Vec<Codec>) -> Compression {
        Compression {
            codecs,
            types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            min_size: DEFAULT_MIN_SIZE,
        }
    }

    /// For a response about to go downstream: if it is to be compressed,
    /// its head changed to say so and the encoder for its body. `Vary:
    /// Accept-Encoding` is added to every response that could have been.
    pub fn start(&self, request: &RequestHeader, response: &mut ResponseHeader) -> Option<Encoder> {
        if !self.could_compress(response) {
            return None;
        }
        add_vary(&mut response.headers);
        let codec = self.choose(&request.headers)?;
        let encoder = Encoder::new(codec).ok()?;
        let headers = &mut response.headers;
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(codec.token()),
        );
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        if let Some(weak) = headers.get(header::ETAG).and_then(weakened) {
            headers.insert(header::ETAG, weak);
        }
        // A HEAD response has no body to encode, but says what a GET's would be.
        (request.method != Method::HEAD).then_some(encoder)
    }

    /// Whether the response is one the route would compress for a client
    /// that accepts it.
    fn could_compress(&self, response: &ResponseHeader) -> bool {
        let status = response.status.as_u16();
        if matches!(status, 204 | 206 | 304) || status < 200 {
            return false;
        }
        let headers = &response.headers;
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"));
        let small = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|length| length < self.min_size);
        !encoded && !no_transform && !small && self.compresses(headers)
    }

    /// Whether the response's `Content-Type` is in the list (and not an
    /// event stream).
    fn compresses(&self, headers: &HeaderMap) -> bool {
        let Some(kind) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let essence = kind
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == "text/event-stream" {
            return false;
        }
        self.types
            .iter()
            .any(|listed| match listed.strip_suffix("/*") {
                Some(top) => essence.split('/').next() == Some(top),
                None => *listed == essence,
            })
    }

    /// The codec the client prefers among the route's (ties: the route's
    /// order), if it accepts one.
    fn choose(&self, headers: &HeaderMap) -> Option<Codec> {
        let accepted = accepted(headers);
        let weight = |codec: Codec| {
            accepted
                .iter()
                .find(|(token, _)| Codec::from_token(token) == Some(codec))
                .or_else(|| accepted.iter().find(|(token, _)| token == "*"))
                .map_or(0, |(_, q)| *q)
        };
        let mut best: Option<(Codec, u16)> = None;
        for &codec in &self.codecs {
            let q = weight(codec);
            if q > 0 && best.is_none_or(|(_, top)| q > top) {
                best = Some((codec, q));
            }
        }
        best.map(|(codec, _)| codec)
    }
}

/// `Accept-Encoding`'s codings and their weights in thousandths (`1000`
/// when no `q` is given; a `q` that does not parse counts as 0).
fn accepted(headers: &HeaderMap) -> Vec<(String, u16)> {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';');
            let token = parts.next()?.trim().to_ascii_lowercase();
            if token.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .or_else(|| p.trim().strip_prefix("Q="))
                })
                .next()
                .map_or(1000, |q| {
                    q.trim()
                        .parse::<f32>()
                        .map_or(0, |q| (q.clamp(0.0, 1.0) * 1000.0) as u16)
                });
            Some((token, q))
        })
        .collect()
}

/// `Vary: Accept-Encoding`, unless the response varies by it (or by
/// everything) already.
fn add_vary(headers: &mut HeaderMap) {
    let varies = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A strong `ETag` made weak (`"x"` becomes `W/"x"`); `None` if it is weak
/// already.
fn weakened(etag: &HeaderValue) -> Option<HeaderValue> {
    let text = etag.to_str().ok()?;
    if text.starts_with("W/") {
        return None;
    }
    HeaderValue::from_str(&format!("W/{text}")).ok()
}

#[cfg(test)]
mod tests;
