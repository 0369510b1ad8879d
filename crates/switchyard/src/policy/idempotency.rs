//! May a request be sent again after it may have reached the upstream?
//!
//! An idempotent method (RFC 9110 section 9.2.2) may: its repeated effect
//! equals one. A POST or PATCH may not, unless the client gave it an
//! idempotency key (the IETF httpapi draft "The Idempotency-Key HTTP Header
//! Field"): the origin then remembers the key and answers a repeat with the
//! first outcome instead of acting twice. The proxy sends the key unchanged
//! on every attempt, so any server of the group can deduplicate.
//!
//! The key counts only when the proxy is told which header carries it
//! (`key` below: no header name, no key), and only when the request has
//! exactly one such field, not empty: two keys, or an empty one, leave the
//! origin unable to tell a repeat, so such a request is not resent.
//!
//! ```
//! use http::{HeaderMap, HeaderName, HeaderValue, Method};
//! use switchyard::policy::idempotency::{Resend, resend_safety};
//!
//! let key = HeaderName::from_static("idempotency-key");
//! let mut headers = HeaderMap::new();
//! assert_eq!(resend_safety(&Method::POST, None, &headers, Some(&key)), Resend::Unsafe);
//! headers.insert(&key, HeaderValue::from_static("\"8e03978e\""));
//! assert_eq!(resend_safety(&Method::POST, None, &headers, Some(&key)), Resend::IdempotencyKey);
//! assert_eq!(resend_safety(&Method::POST, None, &headers, None), Resend::Unsafe);
//! assert_eq!(resend_safety(&Method::GET, None, &headers, None), Resend::Idempotent);
//! ```

use http::{HeaderMap, HeaderName, Method};

/// RFC 9110 section 9.2.2: methods whose repeated effect equals one.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request that may have reached the upstream may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// The method is idempotent.
    Idempotent,
    /// The method is not, but the request carries one idempotency key,
    /// which the origin uses to deduplicate.
    IdempotencyKey,
    /// Neither: the upstream may have acted on it, and may act again.
    Unsafe,
}

impl Resend {
    /// Whether the request may be sent again.
    pub fn allowed(self) -> bool {
        self != Resend::Unsafe
    }

    /// The trace note for a resend this allows: `idempotency-key` when
    /// only the key makes it safe.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Resend::IdempotencyKey => Some(IDEMPOTENCY_KEY_NOTE),
            Resend::Idempotent | Resend::Unsafe => None,
        }
    }
}

/// The trace note of a retry that only an idempotency key made safe.
pub const IDEMPOTENCY_KEY_NOTE: &str = "idempotency-key";

/// Decide [`Resend`] for a request with method `method` (and
/// `upstream_method`, the method last sent upstream when a hook changed
/// it: both must be idempotent) and headers `headers`, where `key` names
/// the idempotency-key header, if the proxy honours one.
pub fn resend_safety(
    method: &Method,
    upstream_method: Option<&Method>,
    headers: &HeaderMap,
    key: Option<&HeaderName>,
) -> Resend {
    if is_idempotent(method) && upstream_method.is_none_or(is_idempotent) {
        return Resend::Idempotent;
    }
    match key {
        Some(name) if has_one_key(headers, name) => Resend::IdempotencyKey,
        _ => Resend::Unsafe,
    }
}

/// Exactly one `name` field, not empty.
fn has_one_key(headers: &HeaderMap, name: &HeaderName) -> bool {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => !value.as_bytes().trim_ascii().is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn key() -> HeaderName {
        HeaderName::from_static("idempotency-key")
    }

    fn with_keys(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(key(), HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn idempotent_methods_need_no_key() {
        for method in [Method::GET, Method::PUT, Method::DELETE, Method::HEAD] {
            let verdict = resend_safety(&method, None, &HeaderMap::new(), None);
            assert_eq!(verdict, Resend::Idempotent, "{method}");
        }
    }

    #[test]
    fn a_post_or_patch_with_one_key_may_be_resent_when_the_header_is_honoured() {
        let headers = with_keys(&["\"abc\""]);
        for method in [Method::POST, Method::PATCH] {
            assert_eq!(
                resend_safety(&method, None, &headers, Some(&key())),
                Resend::IdempotencyKey
            );
            assert_eq!(resend_safety(&method, None, &headers, None), Resend::Unsafe);
        }
    }

    #[test]
    fn no_key_two_keys_or_an_empty_key_is_unsafe() {
        for values in [&[][..], &["\"a\"", "\"b\""], &[""], &["  "]] {
            let headers = with_keys(values);
            let verdict = resend_safety(&Method::POST, None, &headers, Some(&key()));
            assert_eq!(verdict, Resend::Unsafe, "{values:?}");
        }
    }

    #[test]
    fn a_get_rewritten_to_post_upstream_needs_the_key() {
        let verdict = resend_safety(&Method::GET, Some(&Method::POST), &HeaderMap::new(), None);
        assert_eq!(verdict, Resend::Unsafe);
        let headers = with_keys(&["\"k\""]);
        let verdict = resend_safety(&Method::GET, Some(&Method::POST), &headers, Some(&key()));
        assert_eq!(verdict, Resend::IdempotencyKey);
    }

    #[test]
    fn only_a_key_made_resend_safe_leaves_a_note() {
        assert_eq!(Resend::IdempotencyKey.note(), Some("idempotency-key"));
        assert_eq!(Resend::Idempotent.note(), None);
        assert!(!Resend::Unsafe.allowed());
        assert!(Resend::IdempotencyKey.allowed() && Resend::Idempotent.allowed());
    }
}
