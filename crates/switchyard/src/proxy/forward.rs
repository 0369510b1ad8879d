//! One exchange with an upstream: build the request head, send it with its
//! replayable body, wait for the response head within the peer's timeouts,
//! and name precisely what went wrong when it fails.
//!
//! The exchange is the same for every HTTP version: the version lives in
//! `UpstreamConn` (HTTP/1.1, or one stream of a shared HTTP/2
//! connection), the body pump in `pump.rs`.

use std::borrow::Cow;
use std::io;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Uri, Version};

use super::headers::{strip_hop_by_hop, strip_request_hop_by_hop};
use super::identity::{ClientIdentity, X_REQUEST_ID};
use super::{RequestHeader, ResponseHeader, Session};
use super::{grpc, upgrade};
use crate::body::limit::BodyTooLarge;
use crate::body::{Progress, ReplayError, is_malformed};
use crate::error::{Error, ErrorKind, Result, find_cause};
use crate::h1::CodecErrorKind;
use crate::peer::{HttpPeer, PeerOptions};
use crate::policy::pushback::{ATTEMPT_HEADER, attempt_value};
use crate::upstream::http1::{self, ExchangeError};
use crate::upstream::{self as up, UpstreamBody, UpstreamConn, UpstreamRequest, UpstreamResponse};

/// Why an exchange produced no response head.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// The connection was gone before the request was written: nothing was
    /// sent, and here is the request back.
    NotSent(Box<UpstreamRequest>),
    /// The request was (maybe partly) sent and the exchange failed.
    Failed(Box<Error>),
}

/// The head to send upstream, rebuilt from the downstream head for each
/// attempt, with the client's identity told as `identity` says.
pub(crate) fn upstream_head(
    session: &Session,
    peer: &HttpPeer,
    identity: &ClientIdentity,
) -> RequestHeader {
    let downstream = session.req_header();
    let host = routed_host(downstream);
    let mut head = head_for_upstream(downstream, peer.address, host.as_ref());
    let client = session.client_ip();
    identity.apply(&mut head.headers, client, client.scheme(), host.as_ref());
    head.headers
        .insert(X_REQUEST_ID, session.request_id().clone());
    // Which attempt this is (`begin` recorded it): a Switchyard behind this
    // one leaves retrying to this one.
    head.headers
        .insert(ATTEMPT_HEADER, attempt_value(session.attempts().len()));
    // The upstream is told the time left, not the time the request began with.
    if let Some(deadline) = session.deadline() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if session.is_grpc() {
            head.headers
                .insert(grpc::GRPC_TIMEOUT, grpc::timeout_value(left));
        }
        if let Some(name) = session.deadline_header() {
            head.headers
                .insert(name.clone(), crate::policy::deadline::header_value(left));
        }
    }
    if let Some(protocol) = session.upgrade_asked() {
        upgrade::ask_upstream(&mut head.headers, protocol);
    }
    // A filtered body's length is known only once it was sent.
    if session.request_body_reframed() {
        send_chunked(&mut head.headers);
    }
    head
}

/// Frame the body sent upstream as chunked, with no `Content-Length`:
/// without the header a `GET`'s body would go as no body at all (hyper
/// drops the header itself on HTTP/2).
fn send_chunked(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
}

/// The host a request is routed by, as the client gave it: the target's
/// authority (HTTP/2's `:authority`, or an HTTP/1.1 absolute-form target,
/// which RFC 9112 section 3.2.2 puts before `Host`), else `Host`. Userinfo
/// (`user@`) is not part of it.
pub(crate) fn routed_host(request: &RequestHeader) -> Option<HeaderValue> {
    match request.uri.authority() {
        Some(authority) => {
            let text = authority.as_str();
            // A byte loop: `rsplit_once` goes through `memrchr`, several
            // times the cost on a name this short.
            let host = match text.bytes().rposition(|b| b == b'@') {
                Some(at) => &text[at + 1..],
                None => text,
            };
            HeaderValue::from_str(host).ok()
        }
        None => request.headers.get(header::HOST).cloned(),
    }
}

/// The request body for an attempt on `conn`. Over HTTP/2 the replay
/// buffer first grows to what the stream may send before the upstream
/// shows it is processing it (`UpstreamConn::unprocessed_hold`), so that a
/// refused stream can be replayed whole.
pub(crate) fn attempt_body(
    session: &Session,
    conn: &UpstreamConn,
    client_chunk: usize,
) -> (UpstreamBody, std::sync::Arc<Progress>) {
    if let Some(hold) = conn.unprocessed_hold(client_chunk) {
        session.body_source().raise_capacity(hold);
    }
    session.body_source().attempt_body()
}

/// Headers the proxy may add to a request: `Host`, `Transfer-Encoding`,
/// the three `X-Forwarded-*`, `Forwarded`, `X-Request-Id` and
/// `X-Switchyard-Attempt`.
const ADDED_HEADERS: usize = 8;

/// The head to send to `peer` for the downstream head `downstream`: origin
/// form, HTTP/1.1, hop-by-hop headers (and those `Connection` names)
/// removed, a chunked body kept chunked, and `Host` from an absolute-form
/// target (`routed`: its [`routed_host`]), else the client's, else the
/// peer's address.
fn head_for_upstream(
    downstream: &RequestHeader,
    peer: crate::PeerAddr,
    routed: Option<&HeaderValue>,
) -> RequestHeader {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = downstream.method.clone();
    head.uri = downstream
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    head.version = Version::HTTP_11;
    head.headers = downstream.headers.clone();
    // Room for what is added below and by the client identity, so the map
    // grows once rather than per header.
    head.headers.reserve(ADDED_HEADERS);
    // A chunked downstream body stays chunked upstream.
    let chunked = head.headers.contains_key(header::TRANSFER_ENCODING);
    strip_request_hop_by_hop(&mut head.headers);
    if chunked {
        send_chunked(&mut head.headers);
    }
    // RFC 9112 section 3.2.2: an absolute-form target's authority wins over Host.
    let host = match downstream.uri.authority() {
        Some(_) => routed.cloned(),
        None if !head.headers.contains_key(header::HOST) => {
            HeaderValue::from_str(&peer.host()).ok()
        }
        None => None,
    };
    if let Some(host) = host {
        head.headers.insert(header::HOST, host);
    }
    head
}

/// Whether a response's framing was clear, or ambiguous and repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One way to find the end of the body.
    Clear,
    /// `Content-Length` beside `Transfer-Encoding`, or several
    /// `Content-Length` fields: the body was read one way, but the upstream
    /// may have meant another, so its connection must not be reused.
    Repaired,
}

/// The head to send downstream: the upstream's, less its hop-by-hop headers,
/// and how clear its framing was.
///
/// A `Content-Length` sent beside `Transfer-Encoding` is dropped (RFC 9112
/// section 6.3): hyper decoded the body by its chunks, and forwarding the
/// length would let hyper cut the body short and call it complete. Such a
/// message "ought to be handled as an error", so the framing is reported
/// [`Framing::Repaired`] and the connection closes once the response is
/// done. A transfer coding other than chunked cannot be forwarded
/// faithfully once `Transfer-Encoding` is removed, so it is refused.
pub(crate) fn downstream_head(mut head: ResponseHeader) -> Result<(ResponseHeader, Framing)> {
    let lengths = head.headers.get_all(header::CONTENT_LENGTH).iter().count();
    let mut framing = if lengths > 1 {
        Framing::Repaired
    } else {
        Framing::Clear
    };
    if let Some(codings) = head.headers.get(header::TRANSFER_ENCODING) {
        let only_chunked = codings
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked
            || head
                .headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .count()
                > 1
        {
            return Err(Error::explain(
                ErrorKind::InvalidResponse,
                "upstream response uses a transfer coding other than chunked",
            ));
        }
        if lengths > 0 {
            framing = Framing::Repaired;
            head.headers.remove(header::CONTENT_LENGTH);
        }
    }
    strip_hop_by_hop(&mut head.headers);
    // An HTTP/2 upstream's answer goes to an HTTP/1.1 client as HTTP/1.1
    // (an HTTP/2 client's connection ignores the version).
    if head.version == Version::HTTP_2 {
        head.version = Version::HTTP_11;
    }
    Ok((head, framing))
}

/// Send `request` on `conn` and wait for the response head.
///
/// Two timers guard it: while the request body is still going out, it must
/// make progress at least every `write_timeout`; once it has all gone, the
/// head must arrive within `read_timeout`.
pub(crate) async fn exchange(
    conn: &mut UpstreamConn,
    request: UpstreamRequest,
    progress: &Progress,
    options: &PeerOptions,
) -> std::result::Result<UpstreamResponse, SendFailure> {
    let result = exchange_on(conn, request, progress, options).await;
    match result {
        // Its connection was failed with only unprocessed streams left.
        Err(SendFailure::Failed(e)) if conn.stranded() => {
            let mut error = Error::because(
                ErrorKind::StreamRefused,
                "upstream went away (GOAWAY) and never answered this stream",
                e,
            );
            error.set_retry_note(NOT_PROCESSED);
            Err(SendFailure::Failed(error))
        }
        other => other,
    }
}

async fn exchange_on(
    conn: &mut UpstreamConn,
    request: UpstreamRequest,
    progress: &Progress,
    options: &PeerOptions,
) -> std::result::Result<UpstreamResponse, SendFailure> {
    let response = conn.send(request);
    tokio::pin!(response);
    let mut sent_at_last_check = progress.moved();
    loop {
        if progress.finished() {
            return match tokio::time::timeout(options.read_timeout, &mut response).await {
                Ok(result) => result.map_err(|e| send_failure(e, progress)),
                Err(_) => Err(SendFailure::Failed(Error::explain(
                    ErrorKind::ResponseHeadTimedOut,
                    format!("no response head within {:?}", options.read_timeout),
                ))),
            };
        }
        tokio::select! {
            biased;
            result = &mut response => return result.map_err(|e| send_failure(e, progress)),
            () = progress.wait_finished() => {}
            () = tokio::time::sleep(options.write_timeout) => {
                let sent = progress.moved();
                if sent == sent_at_last_check {
                    return Err(SendFailure::Failed(stalled(progress, options)));
                }
                sent_at_last_check = sent;
            }
        }
    }
}

/// Who stalled the request body: the client not sending, or the upstream not taking.
fn stalled(progress: &Progress, options: &PeerOptions) -> Box<Error> {
    if progress.waiting_on_downstream() {
        Error::explain(
            ErrorKind::DownstreamTimedOut,
            format!(
                "client sent no request body for {:?}",
                options.write_timeout
            ),
        )
    } else {
        Error::explain(
            ErrorKind::WriteTimedOut,
            format!(
                "upstream took no request body for {:?}",
                options.write_timeout
            ),
        )
    }
}

fn send_failure(e: up::SendError, progress: &Progress) -> SendFailure {
    match e {
        up::SendError::NotSent(request) => SendFailure::NotSent(request),
        up::SendError::Http1(e) => SendFailure::Failed(classify_http1(e, progress)),
        up::SendError::Http2(e) => SendFailure::Failed(classify(e, progress)),
    }
}

/// Name a failed request body: too large, the client's fault (gone, or a
/// malformed body), or the proxy's; `None` if `e` is not about it.
fn request_body_failure(
    e: &(dyn std::error::Error + 'static),
) -> Option<(ErrorKind, Cow<'static, str>)> {
    if let Some(too_large) = find_cause::<BodyTooLarge>(e) {
        return Some((ErrorKind::RequestBodyTooLarge, too_large.to_string().into()));
    }
    let replay = find_cause::<ReplayError>(e)?;
    Some(match replay {
        ReplayError::Source(_) if is_malformed(e) => (
            ErrorKind::InvalidDownstreamRequest,
            "client sent a malformed request body".into(),
        ),
        ReplayError::Source(_) => (
            ErrorKind::DownstreamClosed,
            "client went away while sending the request body".into(),
        ),
        ReplayError::NotReplayable => (ErrorKind::Internal, "replaying the request body".into()),
    })
}

/// Name a failed HTTP/1.1 exchange (Switchyard's codec) by what failed and
/// how far the body got, with the names [`classify`] gives hyper's errors.
pub(crate) fn classify_http1(e: ExchangeError, progress: &Progress) -> Box<Error> {
    match e {
        ExchangeError::Send(http1::SendError::Body(e)) => match request_body_failure(&e) {
            Some((kind, context)) => Error::because(kind, context, e),
            None => Error::because(ErrorKind::WriteError, "writing the request upstream", e),
        },
        ExchangeError::Send(http1::SendError::Codec(e)) => {
            Error::because(ErrorKind::Internal, "framing the request body", e)
        }
        ExchangeError::Send(http1::SendError::Io(e)) => {
            Error::because(ErrorKind::WriteError, "writing the request upstream", e)
        }
        ExchangeError::Closed => Error::explain(
            ErrorKind::ClosedBeforeHead,
            "upstream closed the connection before a response head",
        ),
        ExchangeError::Invalid(e) => Error::because(
            ErrorKind::InvalidResponse,
            "upstream response is not valid HTTP/1.1",
            e,
        ),
        // As hyper named an I/O error: the body's if it was still going out.
        ExchangeError::Read(e) if !progress.finished() => {
            Error::because(ErrorKind::WriteError, "writing the request upstream", e)
        }
        ExchangeError::Read(e) => {
            Error::because(ErrorKind::ReadError, "reading the response head", e)
        }
    }
}

/// Name a failed exchange by hyper's error and how far the body got.
pub(crate) fn classify(e: hyper::Error, progress: &Progress) -> Box<Error> {
    if let Some((kind, context)) = request_body_failure(&e) {
        return Error::because(kind, context, e);
    }
    if let Some(refused) = not_processed(&e) {
        let mut error = Error::because(ErrorKind::StreamRefused, refused, e);
        error.set_retry_note(NOT_PROCESSED);
        return error;
    }
    let (kind, context) = if e.is_incomplete_message() || e.is_canceled() {
        (
            ErrorKind::ClosedBeforeHead,
            "upstream closed the connection before a response head",
        )
    } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        (
            ErrorKind::InvalidResponse,
            "upstream response is not valid HTTP/1.1",
        )
    } else if e.is_timeout() {
        (ErrorKind::ResponseHeadTimedOut, "upstream timed out")
    } else if !progress.finished() {
        (ErrorKind::WriteError, "writing the request upstream")
    } else {
        (ErrorKind::ReadError, "reading the response head")
    };
    Error::because(kind, context, e)
}

/// The trace note of a request an HTTP/2 upstream provably did not process.
pub(crate) const NOT_PROCESSED: &str = "not-processed";

/// Whether an HTTP/2 upstream said it did not process the request, and how:
/// it refused the stream, or sent a GOAWAY whose last stream id is below it
/// (h2 fails exactly those streams with the GOAWAY's error; RFC 9113
/// section 8.7).
fn not_processed(e: &hyper::Error) -> Option<&'static str> {
    let h2 = find_cause::<h2::Error>(e)?;
    if !h2.is_remote() {
        return None;
    }
    if h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
        Some("upstream refused the stream (REFUSED_STREAM)")
    } else if h2.is_go_away() {
        Some("upstream went away (GOAWAY) before this stream")
    } else {
        None
    }
}

/// Name a failure while an HTTP/1.1 response body streams (Switchyard's codec).
pub(crate) fn classify_http1_body_error(e: http1::BodyError) -> Box<Error> {
    match e {
        http1::BodyError::Send(http1::SendError::Body(e)) => match request_body_failure(&e) {
            Some((kind, context)) => Error::because(kind, context, e),
            None => Error::because(
                ErrorKind::ReadError,
                "sending the rest of the request body",
                e,
            ),
        },
        http1::BodyError::Send(e) => Error::because(
            ErrorKind::ReadError,
            "sending the rest of the request body",
            e,
        ),
        http1::BodyError::Read(e) => {
            Error::because(ErrorKind::ReadError, "reading the response body", e)
        }
        http1::BodyError::Invalid(e) => {
            let context = match e.kind() {
                CodecErrorKind::Incomplete => {
                    "upstream closed the connection before the end of the response body"
                }
                _ => "upstream response body is not valid HTTP/1.1",
            };
            Error::because(ErrorKind::ReadError, context, e)
        }
    }
}

/// Name a failure while an HTTP/2 response body streams.
pub(crate) fn classify_body_error(e: hyper::Error) -> Box<Error> {
    let context = if e.is_incomplete_message() {
        "upstream closed the connection before the end of the response body"
    } else if find_cause::<io::Error>(&e).is_some() {
        "reading the response body"
    } else {
        "upstream response body is not valid HTTP/1.1"
    };
    Error::because(ErrorKind::ReadError, context, e)
}

/// Refuse a request whose declared `Content-Length` is over its body limit,
/// before anything goes upstream.
pub(crate) fn check_declared_length(session: &Session) -> Result<()> {
    let Some(limit) = session.max_request_body() else {
        return Ok(());
    };
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(Error::explain(
            ErrorKind::RequestBodyTooLarge,
            format!("Content-Length {length} is over the limit of {limit} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Check that the request can be proxied at all.
pub(crate) fn validate_downstream(session: &Session) -> Result<()> {
    let head = session.req_header();
    if head.method == http::Method::CONNECT {
        return Err(Error::explain(
            ErrorKind::UnsupportedRequest,
            "CONNECT is not supported",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
