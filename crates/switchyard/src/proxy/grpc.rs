//! gRPC through the proxy: telling a gRPC request, its `grpc-timeout`
//! (the request's deadline, passed on shrunk by what was spent), the status
//! a call ended with, and the error a gRPC client can read when the proxy
//! itself fails a call (HTTP 200 with `grpc-status`, a trailers-only
//! response, as gRPC's HTTP/2 protocol defines).
//!
//! ```
//! use std::time::Duration;
//! use switchyard::proxy::grpc;
//!
//! assert_eq!(grpc::parse_timeout("250m"), Some(Duration::from_millis(250)));
//! assert_eq!(grpc::parse_timeout("1H"), Some(Duration::from_secs(3600)));
//! assert_eq!(grpc::parse_timeout("123456789S"), None, "at most 8 digits");
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::proxy_status::proxy_status;
use crate::error::{Error, ErrorKind};

/// The request header carrying a gRPC call's timeout.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The response header or trailer carrying a gRPC call's status code.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The response header or trailer carrying a gRPC call's status message.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// gRPC status `DEADLINE_EXCEEDED`.
pub const DEADLINE_EXCEEDED: u32 = 4;
/// gRPC status `UNAVAILABLE`.
pub const UNAVAILABLE: u32 = 14;

/// How a gRPC call ended, from its `grpc-status` and `grpc-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    /// The status code (0 is OK, 14 UNAVAILABLE, ...).
    pub code: u32,
    /// The status message, percent-decoding left to the reader.
    pub message: Option<String>,
}

impl GrpcStatus {
    /// The status in `fields` (a response head of a trailers-only answer,
    /// or trailers), if they carry a valid one.
    pub fn from_fields(fields: &HeaderMap) -> Option<GrpcStatus> {
        let code = fields
            .get(GRPC_STATUS)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let message = fields
            .get(GRPC_MESSAGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Some(GrpcStatus { code, message })
    }
}

/// Whether a request is a gRPC call: its `content-type` is
/// `application/grpc`, alone or with a `+format` suffix.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim();
            let base = v.get(..16).unwrap_or("");
            base.eq_ignore_ascii_case("application/grpc")
                && matches!(v.as_bytes().get(16), None | Some(b'+' | b';'))
        })
}

/// A `grpc-timeout` value: up to 8 digits and a unit (`H`, `M`, `S`, `m`,
/// `u`, `n`).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    // The unit is one ASCII letter: a value ending in anything else (a
    // multi-byte character too, which must not be split) is not a timeout.
    if !value.as_bytes().last()?.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A call's timeout from its head, if it is a gRPC call that sent a valid one.
pub fn request_timeout(headers: &HeaderMap) -> Option<Duration> {
    if !is_grpc(headers) {
        return None;
    }
    parse_timeout(headers.get(GRPC_TIMEOUT)?.to_str().ok()?)
}

/// `left` as a `grpc-timeout` value, in the finest unit that fits in 8
/// digits, rounded down (the upstream is never promised more time).
pub fn timeout_value(left: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = left.as_nanos();
    let (n, unit) = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos / per, unit))
    .find(|(n, _)| *n <= MAX)
    .unwrap_or(((nanos / 3_600_000_000_000).min(MAX), "H"));
    // Digits and an ASCII letter: always a valid header value.
    HeaderValue::from_str(&format!("{n}{unit}")).unwrap_or(HeaderValue::from_static("0n"))
}

/// The gRPC status a client gets when the proxy fails its call with `e`.
pub fn status_for(e: &Error) -> u32 {
    match e.kind() {
        kind if kind.is_timeout() => DEADLINE_EXCEEDED,
        ErrorKind::RequestBodyTooLarge => 8, // RESOURCE_EXHAUSTED
        ErrorKind::UnsupportedRequest => 12, // UNIMPLEMENTED
        ErrorKind::InvalidDownstreamRequest | ErrorKind::Internal => 13, // INTERNAL
        _ => UNAVAILABLE,
    }
}

/// The answer to a gRPC call the proxy failed with `e`: HTTP 200, trailers
/// only (`grpc-status`, `grpc-message`), and the `Proxy-Status` naming the
/// cause, so a gRPC client reads a status instead of an HTTP error page.
pub fn error_response(e: &Error) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS, HeaderValue::from(status_for(e)));
    // A fixed ASCII phrase: no percent-encoding needed.
    let message = format!("switchyard: {}", e.kind().as_str());
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert(GRPC_MESSAGE, message);
    }
    headers.insert("proxy-status", proxy_status(e));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `grpc_timeout` fuzz target: a value ending in a
    /// multi-byte character was split inside it, and panicked.
    #[test]
    fn a_timeout_ending_in_a_multi_byte_character_is_refused() {
        assert_eq!(parse_timeout("\u{258}\u{3ca}\r\r\n\n"), None);
        assert_eq!(parse_timeout("1\u{3ca}"), None);
        assert_eq!(parse_timeout("\u{e9}"), None);
    }

    #[test]
    fn timeouts_parse_by_unit_and_refuse_what_the_spec_does_not_allow() {
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "5", "5s", "-1S", "1.5S", "123456789m", "5 S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_time_left_is_sent_in_the_finest_unit_that_fits_rounded_down() {
        let value = |d| timeout_value(d).to_str().unwrap().to_string();
        assert_eq!(value(Duration::from_nanos(500)), "500n");
        assert_eq!(value(Duration::from_millis(250)), "250000u");
        assert_eq!(value(Duration::from_millis(1_500_999)), "1500999m");
        assert_eq!(value(Duration::from_secs(200_000)), "200000S");
        assert_eq!(value(Duration::from_secs(u64::MAX / 4)), "99999999H");
        for d in [Duration::from_micros(1234567), Duration::from_secs(7)] {
            assert!(parse_timeout(&value(d)).unwrap() <= d);
        }
    }

    #[test]
    fn grpc_content_types_are_told_apart() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            is_grpc(&h)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC; charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn proxy_errors_map_to_grpc_statuses() {
        let e = |kind| Error::explain(kind, "test");
        assert_eq!(status_for(&e(ErrorKind::ConnectRefused)), UNAVAILABLE);
        assert_eq!(status_for(&e(ErrorKind::StreamRefused)), UNAVAILABLE);
        assert_eq!(
            status_for(&e(ErrorKind::ResponseHeadTimedOut)),
            DEADLINE_EXCEEDED
        );
        assert_eq!(
            status_for(&e(ErrorKind::ConnectTimedOut)),
            DEADLINE_EXCEEDED
        );
        let response = error_response(&e(ErrorKind::ConnectRefused));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[GRPC_STATUS], "14");
        assert_eq!(
            response.headers()[GRPC_MESSAGE],
            "switchyard: connect-refused"
        );
        assert!(response.body().is_empty());
    }
}
