//! The RFC 9209 `Proxy-Status` header the proxy puts on the answers it
//! makes itself: its name, the error type, and the error's kind as details.

use http::HeaderValue;

use crate::error::{Error, ErrorKind};

/// The name this proxy gives itself in `Proxy-Status`.
pub const PROXY_NAME: &str = "switchyard";

/// The RFC 9209 error type naming `kind`.
pub fn proxy_status_error(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ConnectRefused => "connection_refused",
        ErrorKind::ConnectTimedOut => "connection_timeout",
        ErrorKind::ConnectNoRoute => "destination_ip_unroutable",
        ErrorKind::ConnectError => "destination_unavailable",
        ErrorKind::ConnectionLimitReached => "connection_limit_reached",
        ErrorKind::TlsHandshake => "tls_protocol_error",
        ErrorKind::TlsCertificate => "tls_certificate_error",
        ErrorKind::WriteError | ErrorKind::ReadError => "connection_terminated",
        ErrorKind::WriteTimedOut => "connection_write_timeout",
        ErrorKind::ClosedBeforeHead => "http_response_incomplete",
        ErrorKind::ResponseHeadTimedOut
        | ErrorKind::ResponseBodyTimedOut
        | ErrorKind::DeadlineExceeded => "http_response_timeout",
        ErrorKind::InvalidResponse => "http_protocol_error",
        ErrorKind::UpstreamStatus | ErrorKind::StreamRefused => "destination_unavailable",
        ErrorKind::InvalidDownstreamRequest
        | ErrorKind::RequestBodyTooLarge
        | ErrorKind::DownstreamTimedOut
        | ErrorKind::UnsupportedRequest => "http_request_error",
        ErrorKind::DownstreamClosed | ErrorKind::Internal => "proxy_internal_error",
    }
}

/// The `Proxy-Status` value for `e`, e.g.
/// `switchyard; error=connection_refused; details="connect-refused"`.
pub fn proxy_status(e: &Error) -> HeaderValue {
    let value = format!(
        "{PROXY_NAME}; error={}; details=\"{}\"",
        proxy_status_error(e.kind()),
        e.kind().as_str()
    );
    // Built only from fixed ASCII names, so always a valid header value.
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(PROXY_NAME))
}
