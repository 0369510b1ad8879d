//! Reading a request's cookies: the value of one cookie by name, from the
//! `Cookie` fields (`a=1; b=2`), as sent (quotes and all).

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

/// The value of the cookie `name` in `headers`' `Cookie` fields.
pub(crate) fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .find_map(|field| value_in(field, name))
}

/// The value of the cookie `name` in one `Cookie` field.
pub(crate) fn value_in<'v>(field: &'v HeaderValue, name: &str) -> Option<&'v str> {
    field.to_str().ok()?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}
