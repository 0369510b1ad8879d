//! From a final error to what the client sees: status, an RFC 9209
//! `Proxy-Status` header and a short body.
//!
//! | error | status |
//! |---|---|
//! | connect failures, resets, closed before the head, invalid response | 502 |
//! | upstream timeouts (connect, write, response head) | 504 (a body timeout happens after the head: logged only) |
//! | invalid downstream request | 400 |
//! | request body over the limit | 413 (after the head went downstream: the response is aborted) |
//! | request body stalled by the client | 408 |
//! | unsupported request (CONNECT) | 501 |
//! | internal (the proxy or a hook) | 500 |
//! | a server's connection limit reached (`max_connections`, `max_pending`) | 503 |
//! | downstream closed | nothing is sent; 499 is logged (as nginx does) |

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

pub use super::proxy_status::{PROXY_NAME, proxy_status, proxy_status_error};
use super::{Session, grpc};
use crate::error::{Error, ErrorKind};

/// The status logged when the client went away before an answer (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

/// The downstream status for a final error.
pub fn status_for(e: &Error) -> StatusCode {
    let kind = e.kind();
    if kind.is_timeout() {
        return StatusCode::GATEWAY_TIMEOUT;
    }
    match kind {
        ErrorKind::InvalidDownstreamRequest => StatusCode::BAD_REQUEST,
        ErrorKind::RequestBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::DownstreamTimedOut => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::UnsupportedRequest => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::ConnectionLimitReached | ErrorKind::StreamRefused => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// A short plain-text error response for `e` with `status`.
pub fn error_response(status: StatusCode, e: &Error) -> Response<Bytes> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = Response::new(Bytes::from(format!("{} {reason}\n", status.as_u16())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("proxy-status", proxy_status(e));
    response
}

/// What [`ProxyHttp::fail_to_proxy`](super::ProxyHttp::fail_to_proxy) does
/// by default: answer with [`status_for`] and a `Proxy-Status` when nothing
/// was sent downstream and the client is still there; return the status to
/// log. A gRPC call gets a gRPC error instead ([`grpc::error_response`]:
/// HTTP 200 with `grpc-status` 14 UNAVAILABLE, or 4 DEADLINE_EXCEEDED for
/// a timeout), recorded in [`Session::grpc_status`].
pub fn default_fail_to_proxy(session: &mut Session, e: &Error) -> u16 {
    if session.response_started() {
        return session
            .response_status()
            .map_or(status_for(e).as_u16(), |s| s.as_u16());
    }
    if e.kind() == ErrorKind::DownstreamClosed {
        return CLIENT_CLOSED;
    }
    if session.is_grpc() {
        session.set_grpc_status(grpc::GrpcStatus {
            code: grpc::status_for(e),
            message: Some(format!("switchyard: {}", e.kind().as_str())),
        });
        session.respond(grpc::error_response(e));
        return StatusCode::OK.as_u16();
    }
    let status = status_for(e);
    session.respond(error_response(status, e));
    status.as_u16()
}

/// An answer the proxy makes itself without trying an upstream (no route,
/// a refused rewrite): `status`, the reason `why` as a one-line body, and
/// `proxy_status` as its `Proxy-Status`.
pub fn own_answer(status: StatusCode, why: &str, proxy_status: &'static str) -> Response<Bytes> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}: {why}\n", status.as_u16());
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("proxy-status", HeaderValue::from_static(proxy_status));
    response
}
