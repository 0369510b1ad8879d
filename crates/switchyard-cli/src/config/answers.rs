//! What the proxy answers itself: a route's `redirect` or `respond`,
//! `[server] https_redirect`, and `[server.error_pages]`, checked into
//! the library's [`Answer`], [`HttpsRedirect`] and [`ErrorPages`].

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use switchyard::proxy::{ErrorPage, ErrorPages};
use switchyard::route::{Answer, FixedResponse, HttpsRedirect, Redirect};

use super::access::Located;
use super::file::{ErrorPagesSection, RouteSection, ServerSection};
use super::tls::ListenerTls;
use super::{ConfigError, Source};

/// The route's own answer, if it has `redirect` or `respond` (not both),
/// and none of the settings that only mean something upstream.
pub(super) fn answer(
    section: &RouteSection,
    error: &Located<'_>,
) -> Result<Option<Answer>, ConfigError> {
    let answer = match (&section.redirect, &section.respond) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            let message = "a route redirects or responds, not both".to_string();
            return Err(error("respond", message));
        }
        (Some(redirect), None) => {
            let redirect = redirect.get_ref();
            Redirect::new(&redirect.to, redirect.status)
                .map(Answer::Redirect)
                .map_err(|why| error("redirect", why))?
        }
        (None, Some(respond)) => Answer::Respond(fixed_response(respond.get_ref(), error)?),
    };
    let upstream_only = [
        ("retry", section.retry.is_some()),
        ("strip_prefix", section.strip_prefix),
        ("replace_prefix", section.replace_prefix.is_some()),
        ("host_header", section.host_header.is_some()),
        ("request_headers", section.request_headers.is_some()),
        ("response_headers", section.response_headers.is_some()),
        ("upgrades", section.upgrades.is_some()),
        ("compress", section.compress.is_some()),
        ("mirror", section.mirror.is_some()),
    ];
    if let Some((key, _)) = upstream_only.iter().find(|(_, set)| *set) {
        let message = "only means something for a route with upstream: this route answers itself";
        return Err(error(key, message.to_string()));
    }
    Ok(Some(answer))
}

fn fixed_response(
    respond: &super::file::RespondSection,
    error: &Located<'_>,
) -> Result<FixedResponse, ConfigError> {
    let status = StatusCode::from_u16(respond.status)
        .ok()
        .filter(|status| (200..=599).contains(&status.as_u16()))
        .ok_or_else(|| {
            error(
                "respond.status",
                format!("{} is not a status from 200 to 599", respond.status),
            )
        })?;
    if matches!(status.as_u16(), 204 | 304) && !respond.body.is_empty() {
        let message = format!("a {} response has no body", status.as_u16());
        return Err(error("respond.body", message));
    }
    let content_type = match (&respond.content_type, respond.body.is_empty()) {
        (Some(kind), _) => Some(HeaderValue::from_str(kind).map_err(|_| {
            error(
                "respond.content_type",
                format!("{kind:?} is not a header value"),
            )
        })?),
        (None, false) => Some(HeaderValue::from_static("text/plain; charset=utf-8")),
        (None, true) => None,
    };
    Ok(FixedResponse {
        status,
        body: Bytes::from(respond.body.clone()),
        content_type,
    })
}

/// `[server] https_redirect`: to the first HTTPS listener's port.
pub(super) fn https_redirect(
    source: &Source<'_>,
    server: &ServerSection,
    tls: Option<&ListenerTls>,
) -> Result<Option<HttpsRedirect>, ConfigError> {
    if !server.https_redirect {
        if !server.https_redirect_except.is_empty() {
            let message = "only means something with https_redirect = true";
            return Err(source.error(None, "server.https_redirect_except", message));
        }
        return Ok(None);
    }
    let Some(port) = tls
        .and_then(|tls| tls.listen.first())
        .map(|addr| addr.port())
    else {
        let message =
            "redirects to HTTPS, but [server.tls] has no listen address to send clients to";
        return Err(source.error(None, "server.https_redirect", message));
    };
    for (i, prefix) in server.https_redirect_except.iter().enumerate() {
        if !prefix.starts_with('/') {
            let key = format!("server.https_redirect_except[{i}]");
            return Err(source.error(None, &key, format!("{prefix:?} must start with /")));
        }
    }
    Ok(Some(HttpsRedirect {
        port,
        except: server.https_redirect_except.clone(),
    }))
}

/// `[server.error_pages]`: each file read now (and on each reload).
pub(super) fn error_pages(
    source: &Source<'_>,
    pages: &ErrorPagesSection,
) -> Result<ErrorPages, ConfigError> {
    let mut built = ErrorPages::default();
    for (name, path) in pages {
        let key = format!("server.error_pages.{name}");
        let at = Some(path.span());
        let page = read_page(path.get_ref()).map_err(|why| source.error(at.clone(), &key, why))?;
        if name == "default" {
            built.default = Some(page);
            continue;
        }
        match name.parse::<u16>() {
            Ok(status) if (400..=599).contains(&status) => built.by_status.push((status, page)),
            _ => {
                let message =
                    format!("{name:?} is not an error status (400 to 599) or \"default\"");
                return Err(source.error(at, &key, message));
            }
        }
    }
    Ok(built)
}

/// The page in the file at `path`, typed by its extension.
fn read_page(path: &str) -> Result<ErrorPage, String> {
    let body = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let extension = std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let kind = match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    Ok(ErrorPage::new(body, kind))
}
