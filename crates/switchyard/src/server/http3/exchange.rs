//! One HTTP/3 request: its head to the engine with the stream's body, and
//! the engine's answer back on the stream (head, data as it comes,
//! trailers), or a reset when it cannot be finished.

use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use h3::error::Code;
use h3::server::RequestResolver;
use http::{Response, Version};
use http_body::Body;
use tracing::debug;

use super::EveryConnection;
use crate::body::client::ClientBody;
use crate::body::http3::Http3Body;
use crate::h1::response::content_length;
use crate::proxy::identity::ClientAddr;
use crate::proxy::{ProxyHttp, handle, strip_hop_by_hop};

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
    // HTTP/1.1's rules: digits only, every value the same.
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
    // HTTP/3 forbids them (RFC 9114 section 4.2), as the other legs do.
    strip_hop_by_hop(&mut head.headers);
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

#[cfg(test)]
mod tests {
    use super::content_length;
    use http::HeaderMap;

    /// What the request's `Content-Length` fields say, `None` if malformed.
    fn length(values: &[&str]) -> Option<Option<u64>> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("content-length", value.parse().unwrap());
        }
        content_length(&headers).ok()
    }

    #[test]
    fn a_content_length_must_be_digits_and_agree() {
        assert_eq!(length(&[]), Some(None));
        assert_eq!(length(&["42"]), Some(Some(42)));
        assert_eq!(length(&["42", "42"]), Some(Some(42)));
        assert_eq!(length(&["42, 42"]), Some(Some(42)));
        for bad in [
            &["+5"][..],
            &["-1"],
            &["5x"],
            &[""],
            &["42", "43"],
            &["1, 2"],
            &["99999999999999999999999"],
        ] {
            assert_eq!(length(bad), None, "{bad:?}");
        }
    }
}
