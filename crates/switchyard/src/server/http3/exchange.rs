//! One HTTP/3 request: its head to the engine with the stream's body, and
//! the engine's answer back on the stream (head, data as it comes,
//! trailers), or a reset when it cannot be finished.

use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use h3::error::Code;
use h3::server::RequestResolver;
use http::{HeaderMap, Response, Version, header};
use http_body::Body;
use tracing::debug;

use super::EveryConnection;
use crate::body::client::ClientBody;
use crate::body::http3::Http3Body;
use crate::proxy::identity::ClientAddr;
use crate::proxy::{ProxyHttp, handle};

/// The sending half of a request stream.
type SendStream = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// Read the request `resolver` brings, have the engine answer it, and send
/// the answer.
pub(super) async fn serve<P: ProxyHttp>(
    every: Arc<EveryConnection<P>>,
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    client: ClientAddr,
) {
    let (request, stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(e) => {
            debug!(client = %client.addr(), error = %e, "an HTTP/3 request head could not be read");
            return;
        }
    };
    let (mut send, mut recv) = stream.split();
    let Ok(length) = content_length(request.headers()) else {
        // Malformed (RFC 9114 section 4.1.2): refused before anything
        // could carry it upstream.
        debug!(client = %client.addr(), "an HTTP/3 request with an invalid Content-Length");
        recv.stop_sending(Code::H3_MESSAGE_ERROR);
        send.stop_stream(Code::H3_MESSAGE_ERROR);
        return;
    };
    let request = request.map(|()| ClientBody::Http3(Box::new(Http3Body::new(recv, length))));
    let handling = handle(
        Arc::clone(&every.proxy),
        Arc::clone(&every.shared),
        request,
        client,
    );
    let Ok(response) = handling.await else {
        // The engine closed without an answer.
        send.stop_stream(Code::H3_REQUEST_CANCELLED);
        return;
    };
    let (mut head, body) = response.into_parts();
    strip_connection_headers(&mut head.headers);
    head.version = Version::HTTP_3;
    if send
        .send_response(Response::from_parts(head, ()))
        .await
        .is_err()
    {
        return;
    }
    send_body(&mut send, body).await;
}

/// Send `body` on `send`, then end the stream; on an error from either
/// side, stop (the body is dropped, which cancels what feeds it).
async fn send_body(send: &mut SendStream, body: impl Body<Data = Bytes, Error: std::fmt::Display>) {
    let mut body = pin!(body);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let sent = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => send.send_data(data).await,
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => send.send_trailers(trailers).await,
                    Err(_) => Ok(()),
                },
            },
            Err(e) => {
                debug!(error = %e, "an HTTP/3 response body failed; resetting the stream");
                send.stop_stream(Code::H3_INTERNAL_ERROR);
                return;
            }
        };
        if let Err(e) = sent {
            debug!(error = %e, "an HTTP/3 client stopped reading its response");
            return;
        }
    }
    let _ = send.finish().await;
}

/// The request's `Content-Length` when it gives one: digits only, and
/// every field (and every comma-separated value) the same; `Err` if not.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut length = None;
    for field in headers.get_all(header::CONTENT_LENGTH) {
        let text = field.to_str().map_err(|_| ())?;
        for value in text.split(',').map(str::trim) {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let value: u64 = value.parse().map_err(|_| ())?;
            if length.is_some_and(|seen| seen != value) {
                return Err(());
            }
            length = Some(value);
        }
    }
    Ok(length)
}

/// Remove the headers HTTP/3 forbids (RFC 9114 section 4.2): they describe
/// an HTTP/1.1 connection.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::content_length;
    use http::HeaderMap;

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("content-length", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn a_content_length_must_be_digits_and_agree() {
        assert_eq!(content_length(&with(&[])), Ok(None));
        assert_eq!(content_length(&with(&["42"])), Ok(Some(42)));
        assert_eq!(content_length(&with(&["42", "42"])), Ok(Some(42)));
        assert_eq!(content_length(&with(&["42, 42"])), Ok(Some(42)));
        for bad in [
            &["+5"][..],
            &["-1"],
            &["5x"],
            &[""],
            &["42", "43"],
            &["1, 2"],
            &["99999999999999999999999"],
        ] {
            assert_eq!(content_length(&with(bad)), Err(()), "{bad:?}");
        }
    }
}
