//! One deadline per request, propagated: where it comes from, what the
//! upstream is told, and when a retry cannot finish in time.
//!
//! A request's deadline is the shortest of the route's (`RetryLimits::deadline`),
//! the client's gRPC timeout, and the client's own header (named by
//! `RetryLimits::deadline_header`, in milliseconds). Each attempt's timeouts
//! are shortened to what is left; the upstream receives what is left in
//! that same header, shrunk by the time already spent, so a chain of
//! services shares one budget of time instead of each starting its own.
//! A retry whose chosen server usually takes longer to answer than the time
//! left is not made ([`too_close`]); once the deadline passed, the request
//! is answered 504.
//!
//! ```
//! use std::time::Duration;
//! use http::HeaderValue;
//! use switchyard::policy::deadline::{from_header, header_value, shortest, too_close};
//!
//! let client = from_header(&HeaderValue::from_static("250")).unwrap();
//! assert_eq!(shortest(Some(Duration::from_secs(1)), Some(client)), Some(client));
//! assert_eq!(header_value(Duration::from_micros(180_900)), "180");
//! assert!(too_close(Duration::from_millis(40), Some(Duration::from_millis(60))));
//! assert!(!too_close(Duration::from_millis(40), None));
//! ```

use std::fmt;
use std::time::Duration;

use http::HeaderValue;

/// The longest deadline a client may give in a header: about 115 days,
/// beyond which the value is surely not a deadline (10 digits of milliseconds).
const MAX_HEADER_DIGITS: usize = 10;

/// A deadline header that is not a whole number of milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDeadline;

impl fmt::Display for BadDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the deadline header must be a whole number of milliseconds (at most {MAX_HEADER_DIGITS} digits)"
        )
    }
}

impl std::error::Error for BadDeadline {}

/// The time a client gives in its deadline header: ASCII digits, in
/// milliseconds, as the upstream is told it too.
pub fn from_header(value: &HeaderValue) -> Result<Duration, BadDeadline> {
    let digits = value.as_bytes().trim_ascii();
    if digits.is_empty()
        || digits.len() > MAX_HEADER_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return Err(BadDeadline);
    }
    let millis = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Ok(Duration::from_millis(millis))
}

/// The time left, as the deadline header carries it: whole milliseconds,
/// rounded down (the upstream must not be told it has more than it has).
pub fn header_value(left: Duration) -> HeaderValue {
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    HeaderValue::from(millis)
}

/// The shorter of two deadlines, either of which may be absent.
pub fn shortest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a retry to a server is pointless: the time `left` is below the
/// time that server usually takes to answer (`median`, its learned median
/// response time; `None` while it is not known, when a retry is allowed).
pub fn too_close(left: Duration, median: Option<Duration>) -> bool {
    median.is_some_and(|median| left < median)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_client_deadline_is_whole_milliseconds() {
        let parse = |s: &'static str| from_header(&HeaderValue::from_static(s));
        assert_eq!(parse("1500"), Ok(ms(1500)));
        assert_eq!(parse(" 0 "), Ok(ms(0)));
        assert_eq!(parse("9999999999"), Ok(ms(9_999_999_999)));
        for bad in ["", "1.5", "-3", "10s", "12345678901", "1 2"] {
            assert_eq!(parse(bad), Err(BadDeadline), "{bad:?}");
        }
    }

    #[test]
    fn the_upstream_is_told_whole_milliseconds_rounded_down() {
        assert_eq!(header_value(Duration::from_micros(999)), "0");
        assert_eq!(header_value(Duration::from_micros(1_999)), "1");
        assert_eq!(header_value(ms(30_000)), "30000");
    }

    #[test]
    fn the_shortest_deadline_wins() {
        assert_eq!(shortest(None, None), None);
        assert_eq!(shortest(Some(ms(5)), None), Some(ms(5)));
        assert_eq!(shortest(None, Some(ms(7))), Some(ms(7)));
        assert_eq!(shortest(Some(ms(9)), Some(ms(7))), Some(ms(7)));
    }

    #[test]
    fn a_retry_is_too_close_only_below_the_learned_median() {
        assert!(too_close(ms(49), Some(ms(50))));
        assert!(!too_close(ms(50), Some(ms(50))));
        assert!(!too_close(ms(0), None));
    }
}
