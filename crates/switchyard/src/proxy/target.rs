//! The request target as the engine takes it: its path normalized
//! (`crate::path`) before `request_filter`, so routes match, and the
//! upstream is sent, the same path. The query is left as it came.

use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

use super::Session;
use crate::error::{Error, ErrorKind, Result};
use crate::path::{self, PathRules};

/// Replace the request's path with its normalized form, or refuse the
/// request (400, `http_request_error`) when `rules` refuse its path.
pub(crate) fn normalize_path(session: &mut Session, rules: &PathRules) -> Result<()> {
    let uri = &session.req_header().uri;
    let normalized = match path::normalize(uri.path(), rules) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(normalized)) => normalized,
        Err(e) => {
            return Err(Error::explain(
                ErrorKind::InvalidDownstreamRequest,
                format!("{e}: {:?}", shortened(uri.path())),
            ));
        }
    };
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

/// At most 200 characters of a client's path, for an error's context.
fn shortened(path: &str) -> &str {
    match path.char_indices().nth(200) {
        Some((at, _)) => &path[..at],
        None => path,
    }
}
