//! The way back to the downstream connection: one answer per request (a
//! response, or none to close the connection), carrying the request's ID.

use http::{HeaderValue, Response};
use tokio::sync::oneshot;

use super::identity::X_REQUEST_ID;
use super::pump::ResponseBody;

/// The client went away before any response: its connection is closed
/// without one (the access log says 499, as nginx's does).
#[derive(Debug)]
pub(crate) struct ClientGone;

impl std::fmt::Display for ClientGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client went away before a response")
    }
}

impl std::error::Error for ClientGone {}

/// What the engine hands the downstream connection: a response to send, or
/// `None` to close the connection without one.
pub(crate) type Answer = Option<Response<ResponseBody>>;

/// The way back to the downstream connection, used once; every response
/// sent through it carries the request's ID.
pub(super) struct Reply {
    sender: Option<oneshot::Sender<Answer>>,
    request_id: HeaderValue,
    /// Where HTTP/3 is, for a client on TLS over TCP.
    alt_svc: Option<HeaderValue>,
    /// The answer reached the downstream connection's [`Handling`], which
    /// then hands this engine to the response body.
    pub(super) delivered: bool,
}

impl Reply {
    /// The way back through `sender`, for the request `request_id`.
    #[inline]
    pub(super) fn new(sender: oneshot::Sender<Answer>, request_id: HeaderValue) -> Self {
        Reply {
            sender: Some(sender),
            request_id,
            alt_svc: None,
            delivered: false,
        }
    }

    /// The same, adding `Alt-Svc: alt_svc` to the response.
    #[inline]
    pub(super) fn with_alt_svc(mut self, alt_svc: Option<HeaderValue>) -> Self {
        self.alt_svc = alt_svc;
        self
    }

    #[inline]
    pub(super) fn send(&mut self, mut response: Response<ResponseBody>) {
        response
            .headers_mut()
            .entry(X_REQUEST_ID)
            .or_insert_with(|| self.request_id.clone());
        if let Some(alt_svc) = &self.alt_svc {
            response
                .headers_mut()
                .insert(http::header::ALT_SVC, alt_svc.clone());
        }
        self.answer(Some(response));
    }

    /// Close the downstream connection without a response.
    pub(super) fn close(&mut self) {
        self.answer(None);
    }

    #[inline]
    fn answer(&mut self, answer: Answer) {
        if let Some(reply) = self.sender.take() {
            // If the downstream is gone, the response (and its body pump) is dropped here.
            self.delivered = reply.send(answer).is_ok();
        }
    }

    /// Resolves when the downstream connection stopped waiting for the head.
    pub(super) async fn closed(&mut self) {
        match &mut self.sender {
            Some(reply) => reply.closed().await,
            None => std::future::pending().await,
        }
    }
}
