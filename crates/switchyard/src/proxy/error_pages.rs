//! Bodies of the operator's choosing for the proxy's own error answers:
//! [`ErrorPages`].

use bytes::Bytes;
use http::header::{self, HeaderValue};

use super::Session;

/// Pages by status for the proxy's own error answers (those with a
/// `Proxy-Status` error: 502, 503, 504, and the others through
/// `default`). The status and `Proxy-Status` stay as they are; only the
/// body and its `Content-Type` change. A gRPC call's answer is left alone
/// (its status is in its trailers, not in a page).
///
/// ```
/// use switchyard::proxy::{ErrorPage, ErrorPages};
///
/// let mut pages = ErrorPages::default();
/// pages.by_status.push((502, ErrorPage::new("<h1>Back soon</h1>", "text/html; charset=utf-8")));
/// assert!(pages.page_for(502).is_some());
/// assert!(pages.page_for(504).is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    /// A page for each of these statuses.
    pub by_status: Vec<(u16, ErrorPage)>,
    /// The page for any other error status.
    pub default: Option<ErrorPage>,
}

/// One page: a body and its `Content-Type`.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    body: Bytes,
    content_type: HeaderValue,
}

impl ErrorPage {
    /// A page of `body`, of the type `content_type` (a type that is not
    /// a valid header value is sent as `text/plain`).
    pub fn new(body: impl Into<Bytes>, content_type: &str) -> ErrorPage {
        ErrorPage {
            body: body.into(),
            content_type: HeaderValue::from_str(content_type)
                .unwrap_or(HeaderValue::from_static("text/plain")),
        }
    }
}

impl ErrorPages {
    /// Whether there are no pages.
    pub fn is_empty(&self) -> bool {
        self.by_status.is_empty() && self.default.is_none()
    }

    /// The page for `status`, if any.
    pub fn page_for(&self, status: u16) -> Option<&ErrorPage> {
        self.by_status
            .iter()
            .find(|(code, _)| *code == status)
            .map(|(_, page)| page)
            .or(self.default.as_ref())
    }

    /// Put the page for the session's own error answer in its body, if
    /// the answer is the proxy's own error and not a gRPC call's.
    pub fn apply(&self, session: &mut Session) {
        if session.is_grpc() {
            return;
        }
        let Some(response) = session.prepared_response_mut() else {
            return;
        };
        let own_error = response
            .headers()
            .get("proxy-status")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("error="));
        if !own_error || response.status().as_u16() < 400 {
            return;
        }
        if let Some(page) = self.page_for(response.status().as_u16()) {
            *response.body_mut() = page.body.clone();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, page.content_type.clone());
        }
    }
}
