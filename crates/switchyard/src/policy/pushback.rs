//! Pushback, both ways: an upstream that asks for time, and an outer proxy
//! that retries itself.
//!
//! An upstream answering 503 (Service Unavailable) or 429 (Too Many
//! Requests) with `Retry-After` (RFC 9110 section 10.2.3: seconds, or an
//! HTTP date) says when to come back. [`retry_after`] reads it, capped (a
//! server must not take itself out of rotation for a day by mistake); the
//! caller keeps that server out of selection for that long and makes a retry
//! to it wait.
//!
//! Every attempt tells the upstream its number in [`ATTEMPT_HEADER`]. A
//! request that arrives already carrying it came through another Switchyard,
//! which retries on its own: by default it is not retried again here
//! ([`outer_layer_retries`]), so a failure deep in a chain of proxies costs
//! one set of retries, not one per layer multiplied together.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::{HeaderMap, HeaderValue, StatusCode};
//! use switchyard::policy::pushback::retry_after;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("retry-after", HeaderValue::from_static("5"));
//! let cap = Duration::from_secs(30);
//! let now = SystemTime::now();
//! assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers, now, cap), Some(Duration::from_secs(5)));
//! assert_eq!(retry_after(StatusCode::BAD_GATEWAY, &headers, now, cap), None);
//! ```

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// The longest `Retry-After` honoured unless configured otherwise.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The header that tells the upstream which attempt of the request it is
/// (1 for the first).
pub const ATTEMPT_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempt");

/// The value of [`ATTEMPT_HEADER`] for attempt `n` (1 for the first);
/// the usual numbers without an allocation.
pub fn attempt_value(n: usize) -> HeaderValue {
    const SMALL: [HeaderValue; 10] = [
        HeaderValue::from_static("0"),
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
        HeaderValue::from_static("4"),
        HeaderValue::from_static("5"),
        HeaderValue::from_static("6"),
        HeaderValue::from_static("7"),
        HeaderValue::from_static("8"),
        HeaderValue::from_static("9"),
    ];
    match SMALL.get(n) {
        Some(value) => value.clone(),
        None => HeaderValue::from(n),
    }
}

/// The trace note of a failure whose server asked for time.
pub const RETRY_AFTER_NOTE: &str = "retry-after";

/// How long the upstream that answered `status` with `headers` asks to be
/// left alone: its `Retry-After`, at most `cap`, for a 503 or a 429 only.
/// `None` without one, for a time already past, or for a value that is
/// neither whole seconds nor an HTTP date.
pub fn retry_after(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    cap: Duration,
) -> Option<Duration> {
    if status != StatusCode::SERVICE_UNAVAILABLE && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a long time".
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).ok()?
    };
    Some(wait.min(cap)).filter(|wait| !wait.is_zero())
}

/// Whether a request is retried by a proxy in front of this one, and so is
/// not retried here: it carries [`ATTEMPT_HEADER`], and this proxy was not
/// told to retry such requests anyway (`retry_when_attempt_header`).
pub fn outer_layer_retries(headers: &HeaderMap, retry_when_attempt_header: bool) -> bool {
    !retry_when_attempt_header && headers.contains_key(ATTEMPT_HEADER)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn seconds_and_dates_are_read_for_503_and_429() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for status in [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            let secs = retry_after(status, &with_retry_after("7"), now, CAP);
            assert_eq!(secs, Some(Duration::from_secs(7)));
            let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
            let date = retry_after(status, &with_retry_after(&later), now, CAP);
            assert_eq!(date, Some(Duration::from_secs(12)));
        }
    }

    #[test]
    fn other_statuses_past_dates_zero_and_garbage_ask_for_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let busy = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(
            retry_after(StatusCode::BAD_GATEWAY, &with_retry_after("7"), now, CAP),
            None
        );
        assert_eq!(
            retry_after(StatusCode::OK, &with_retry_after("7"), now, CAP),
            None
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(
            retry_after(busy, &with_retry_after(&earlier), now, CAP),
            None
        );
        for value in ["0", "soon", "-3", "1.5", ""] {
            assert_eq!(
                retry_after(busy, &with_retry_after(value), now, CAP),
                None,
                "{value:?}"
            );
        }
        assert_eq!(retry_after(busy, &HeaderMap::new(), now, CAP), None);
    }

    #[test]
    fn a_long_wait_is_capped() {
        let now = SystemTime::now();
        let busy = StatusCode::SERVICE_UNAVAILABLE;
        let huge = "99999999999999999999999";
        assert_eq!(
            retry_after(busy, &with_retry_after("3600"), now, CAP),
            Some(CAP)
        );
        assert_eq!(
            retry_after(busy, &with_retry_after(huge), now, CAP),
            Some(CAP)
        );
    }

    #[test]
    fn attempt_numbers_are_decimal() {
        for n in [0, 1, 9, 10, 17, 12345] {
            assert_eq!(attempt_value(n), n.to_string().as_str());
        }
    }

    #[test]
    fn only_a_request_from_another_switchyard_is_left_to_the_outer_layer() {
        let mut headers = HeaderMap::new();
        assert!(!outer_layer_retries(&headers, false));
        headers.insert(ATTEMPT_HEADER, HeaderValue::from_static("1"));
        assert!(outer_layer_retries(&headers, false));
        assert!(!outer_layer_retries(&headers, true));
    }
}
