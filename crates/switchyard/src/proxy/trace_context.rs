//! W3C Trace Context (`traceparent`): a request's trace is continued
//! through the proxy, and each attempt is a span of its own.
//!
//! An incoming `traceparent` that parses (version `00`, or a later version
//! read as `00` as the spec asks) gives the request its trace ID; when it
//! is absent or invalid, a new trace is started only if the server was
//! told to ([`ServerOptions::start_traces`](crate::ServerOptions)). Every
//! attempt then gets a fresh span ID, which goes upstream as the parent in
//! its own `traceparent` (so an upstream's spans hang under the attempt
//! that reached it, a retry under the retry), with the sampled flag as it
//! came (set, for a trace the proxy started). `tracestate` passes through
//! untouched with a continued trace, and is dropped when the proxy starts
//! one (it belonged to the trace the client's invalid `traceparent` named). The trace ID is in the access log; each attempt's span ID is
//! in its [`AttemptRecord`](crate::AttemptRecord).
//!
//! ```
//! use switchyard::proxy::trace_context::TraceContext;
//!
//! let trace = TraceContext::parse(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
//! assert_eq!(trace.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
//! assert!(trace.sampled());
//! let upstream = trace.traceparent(0x00f0_67aa_0ba9_02b7);
//! assert_eq!(upstream, "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
//! ```

use http::HeaderValue;
use http::header::{HeaderMap, HeaderName};

/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `tracestate`: passed on with a continued trace, dropped when the proxy
/// starts one (W3C Trace Context, section 3.3).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A request's trace: its ID, the client's span it continues, and flags.
/// Each attempt is the parent of what it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    // Two halves, not a `u128`: its 16-byte alignment would widen every
    // request's `Session`.
    trace_id: [u64; 2],
    /// The client's span (the `traceparent`'s parent-id); 0 when the proxy
    /// started the trace (the request brought no valid one).
    parent_id: u64,
    flags: u8,
}

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

impl TraceContext {
    /// The trace an incoming `traceparent` value carries, or `None` when it
    /// does not parse (wrong length or case, all-zero IDs, version `ff`).
    pub fn parse(value: &[u8]) -> Option<TraceContext> {
        // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2.
        let text = std::str::from_utf8(value).ok()?;
        let version = text.get(0..2)?;
        let version = u8::from_str_radix(lower_hex(version)?, 16).ok()?;
        // Version 00 is exactly 55 characters; a later one may add fields
        // after a dash (and is read as 00); ff is invalid.
        let exact = text.len() == 55;
        let extended = text.len() > 55 && version > 0 && text.as_bytes()[55] == b'-';
        if version == 0xff || !(exact || extended) {
            return None;
        }
        let bytes = text.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = u128::from_str_radix(lower_hex(&text[3..35])?, 16).ok()?;
        let parent_id = u64::from_str_radix(lower_hex(&text[36..52])?, 16).ok()?;
        let flags = u8::from_str_radix(lower_hex(&text[53..55])?, 16).ok()?;
        if trace_id == 0 || parent_id == 0 {
            return None;
        }
        Some(TraceContext {
            trace_id: halves(trace_id),
            parent_id,
            flags,
        })
    }

    /// A new trace, sampled (the proxy started it).
    pub fn start() -> TraceContext {
        let high = u128::from(crate::random::next_u64()) << 64;
        let trace_id = (high | u128::from(crate::random::next_u64())).max(1);
        TraceContext {
            trace_id: halves(trace_id),
            parent_id: 0,
            flags: SAMPLED,
        }
    }

    /// The trace of a request with `headers`: the one it carries, else a
    /// new one when `start` is set.
    pub fn of_request(headers: &HeaderMap, start: bool) -> Option<TraceContext> {
        match headers.get(&TRACEPARENT) {
            Some(value) => TraceContext::parse(value.as_bytes()),
            None => None,
        }
        .or_else(|| start.then(TraceContext::start))
    }

    /// The trace ID as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:016x}{:016x}", self.trace_id[0], self.trace_id[1])
    }

    /// Whether the proxy started this trace (then a `tracestate` the client
    /// sent belongs to another trace and is not passed on).
    pub fn started(&self) -> bool {
        self.parent_id == 0
    }

    /// The trace ID's 16 bytes, as OTLP carries it.
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        let [high, low] = self.trace_id;
        (u128::from(high) << 64 | u128::from(low)).to_be_bytes()
    }

    /// The client's span this request continues (the incoming
    /// `traceparent`'s parent-id); `None` when the proxy started the trace.
    pub fn parent_span_id(&self) -> Option<u64> {
        (self.parent_id != 0).then_some(self.parent_id)
    }

    /// The trace flags as they came (`0x01`: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the trace is sampled (the flag as it came).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` sent upstream by the attempt whose span is
    /// `span_id` (non-zero).
    pub fn traceparent(&self, span_id: u64) -> HeaderValue {
        // Written digit by digit: `format!` cost a request about 1,500
        // instructions here.
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let [high, low] = self.trace_id;
        hex_into(&mut value[3..19], high);
        hex_into(&mut value[19..35], low);
        hex_into(&mut value[36..52], span_id.max(1));
        hex_into(&mut value[53..55], u64::from(self.flags));
        // Hex digits and dashes only.
        HeaderValue::from_bytes(&value).unwrap_or(HeaderValue::from_static(""))
    }
}

/// `n`'s low `out.len()` hex digits, lower case, into `out`.
fn hex_into(out: &mut [u8], mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// `id` as its high and low halves.
fn halves(id: u128) -> [u64; 2] {
    [(id >> 64) as u64, id as u64]
}

/// A new span ID (non-zero).
pub fn new_span_id() -> u64 {
    crate::random::next_u64().max(1)
}

/// `text` if it is lower-case hex digits only (the spec forbids upper case).
fn lower_hex(text: &str) -> Option<&str> {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let trace = TraceContext::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(trace.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert!(trace.sampled());
        let unsampled = TraceContext::parse(GOOD.replace("-01", "-00").as_bytes()).unwrap();
        assert!(!unsampled.sampled());
        assert_eq!(
            unsampled.traceparent(1),
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000001-00"
        );
    }

    #[test]
    fn invalid_ones_are_not() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
        ] {
            assert_eq!(TraceContext::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_00() {
        let later = format!("01{}-what-comes-next", &GOOD[2..]);
        let trace = TraceContext::parse(later.as_bytes()).unwrap();
        assert_eq!(trace.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn a_started_trace_is_sampled_and_new() {
        let (a, b) = (TraceContext::start(), TraceContext::start());
        assert!(a.sampled());
        assert_ne!(a, b);
        assert_eq!(a.trace_id_hex().len(), 32);
    }
}
