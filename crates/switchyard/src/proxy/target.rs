//! The request target as the engine takes it: its path normalized
//! (`crate::path`) before `request_filter`, so routes match, and the
//! upstream is sent, the same path. The query is left as it came.

use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

use super::Session;
use crate::error::{Error, ErrorKind, Result};
use crate::path::{self, EscapedSlashes, PathRules};

/// Replace the request's path with its normalized form, or refuse the
/// request (400, `http_request_error`) when `rules` refuse its path. An
/// encoded slash that `rules` refuse is kept encoded and noted instead, so
/// that a hook (a route) may let it through; [`refuse_escaped_slash`]
/// refuses it after `request_filter` otherwise.
pub(crate) fn normalize_path(session: &mut Session, rules: &PathRules) -> Result<()> {
    let refuse = rules.escaped_slashes == EscapedSlashes::Reject;
    let rules = &PathRules {
        escaped_slashes: if refuse {
            EscapedSlashes::Keep
        } else {
            rules.escaped_slashes
        },
        ..*rules
    };
    let (normalized, escaped) = {
        let path = session.req_header().uri.path();
        match path::normalize(path, rules) {
            Ok(normalized) => {
                let escaped = rules.escaped_slashes == EscapedSlashes::Keep
                    && holds_escaped_slash(&normalized);
                match normalized {
                    Cow::Borrowed(_) => (None, escaped),
                    Cow::Owned(normalized) => (Some(normalized), escaped),
                }
            }
            Err(e) => {
                return Err(Error::explain(
                    ErrorKind::InvalidDownstreamRequest,
                    format!("{e}: {:?}", shortened(path)),
                ));
            }
        }
    };
    if escaped {
        session.note_escaped_slash(refuse);
    }
    let Some(normalized) = normalized else {
        return Ok(());
    };
    let uri = &session.req_header().uri;
    let mut target = normalized;
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let head = session.req_header_mut();
    let mut parts = std::mem::take(&mut head.uri).into_parts();
    let rebuilt = PathAndQuery::try_from(target)
        .ok()
        .and_then(|pq| {
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).ok()
        })
        .ok_or_else(|| {
            Error::explain(
                ErrorKind::InvalidDownstreamRequest,
                "the normalized path is not a valid request target",
            )
        })?;
    head.uri = rebuilt;
    Ok(())
}

/// The answer to a request whose path holds an encoded slash that no hook
/// let through (the server's `escaped_slashes` is `Reject`).
pub(crate) fn refuse_escaped_slash(session: &Session) -> Result<()> {
    if session.escaped_slash_refused() {
        return Err(Error::explain(
            ErrorKind::InvalidDownstreamRequest,
            format!(
                "{}: {:?}",
                path::PathError::EscapedSlash,
                shortened(session.req_header().uri.path())
            ),
        ));
    }
    Ok(())
}

/// Whether a path holds `%2F`, `%5C` (in either case: a path is not
/// upper-cased when normalizing is off) or a raw `\`.
fn holds_escaped_slash(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%' && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"))
    }) || path.contains('\\')
}

/// At most 200 characters of a client's path, for an error's context.
fn shortened(path: &str) -> &str {
    match path.char_indices().nth(200) {
        Some((at, _)) => &path[..at],
        None => path,
    }
}
