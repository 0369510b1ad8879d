//! Connections to upstreams: making them ([`connector`], raced by
//! [`connect_hedge`]), keeping them for reuse ([`pool`]), and finding one
//! for an attempt ([`acquire`]).
//!
//! An [`UpstreamConn`] carries one request. Over HTTP/1.1 it owns the
//! whole connection ([`http1::Http1Conn`], Switchyard's own codec, driven
//! by the request's task). Over HTTP/2 it holds one stream of a shared
//! connection driven by hyper on a task ([`multiplex::Multiplexed`]).
//! Either way it knows whether its connection served requests before,
//! which `error_while_proxy` needs to judge a failure, and the forwarding
//! path above is the same.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, Uri, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;

use crate::body::ReplayBody;
use crate::body::client::ClientBody;
use crate::body::filter::FilteredBody;
use crate::body::limit::LimitedBody;
use crate::h1::body::BodyDecoder;
use crate::peer::PoolKey;
use http1::Http1Conn;
use multiplex::{Multiplexed, StreamLease};
use slots::Slot;

pub(crate) mod acquire;
pub(crate) mod connect_hedge;
pub(crate) mod connector;
pub(crate) mod goaway;
pub(crate) mod http1;
pub(crate) mod multiplex;
pub(crate) mod pool;
pub(crate) mod response_times;
pub(crate) mod slots;

use crate::buffers::H2_SEND_BUFFER;

/// The most request body kept for a refused stream's replay, whatever
/// window the upstream advertises: an upstream with a larger initial
/// window gets the ordinary replay rules (`ServerOptions::replay_buffer`).
pub(crate) const MAX_UNPROCESSED_HOLD: usize = 4 * 1024 * 1024;

/// The downstream request body, cut off at its limit.
pub(crate) type DownstreamBody = FilteredBody<LimitedBody<ClientBody>>;

/// The request body type sent upstream: the replayable downstream body.
pub(crate) type UpstreamBody = ReplayBody<DownstreamBody>;

/// A request as sent upstream.
pub(crate) type UpstreamRequest = http::Request<UpstreamBody>;

/// A response body as it comes from the upstream.
#[derive(Debug)]
pub(crate) enum UpstreamResponseBody {
    /// Over HTTP/1.1: how it is framed; it is read from its connection
    /// ([`UpstreamConn::poll_http1_body`]).
    Http1(BodyDecoder),
    /// Over HTTP/2: hyper's stream.
    Http2(Incoming),
}

impl UpstreamResponseBody {
    /// Whether the body was read to its end.
    pub(crate) fn is_end_stream(&self) -> bool {
        match self {
            UpstreamResponseBody::Http1(body) => body.is_end(),
            UpstreamResponseBody::Http2(body) => http_body::Body::is_end_stream(body),
        }
    }

    /// The size of what is left, where known.
    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamResponseBody::Http1(body) => body.size_hint(),
            UpstreamResponseBody::Http2(body) => http_body::Body::size_hint(body),
        }
    }
}

/// A response as it comes from the upstream.
pub(crate) type UpstreamResponse = Response<UpstreamResponseBody>;

/// Why sending a request produced no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection was closed before anything was written: the request
    /// comes back.
    NotSent(Box<UpstreamRequest>),
    /// The HTTP/1.1 exchange failed.
    Http1(http1::ExchangeError),
    /// The HTTP/2 exchange failed.
    Http2(hyper::Error),
}

/// How an [`UpstreamConn`] reaches its upstream.
#[derive(Debug)]
pub(crate) enum Link {
    /// A whole HTTP/1.1 connection, and its place under the server's
    /// connection limit (freed when it closes).
    Http1 { conn: Box<Http1Conn>, slot: Slot },
    /// One stream of a shared HTTP/2 connection.
    Http2 {
        sender: http2::SendRequest<UpstreamBody>,
        lease: StreamLease,
    },
}

/// One client connection to an upstream (or, over HTTP/2, one stream of one).
#[derive(Debug)]
pub(crate) struct UpstreamConn {
    pub(crate) link: Link,
    key: PoolKey,
    idle_timeout: Duration,
    max_idle: usize,
    reused: bool,
    /// False once the connection must not serve another request.
    reusable: bool,
    /// Over TLS: requests over HTTP/2 carry the `https` scheme.
    tls: bool,
}

impl UpstreamConn {
    /// Whether a request that can use this connection waits at its server
    /// (never for an HTTP/2 stream: its connection stays shared).
    pub(crate) fn awaited(&self) -> bool {
        match &self.link {
            Link::Http1 { slot, .. } => slot.awaited(&self.key),
            Link::Http2 { .. } => false,
        }
    }

    /// Whether this connection served a request before this attempt.
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    /// Whether requests go over HTTP/2.
    pub(crate) fn is_http2(&self) -> bool {
        matches!(self.link, Link::Http2 { .. })
    }

    /// How much request body this attempt must keep so that a refusal
    /// (`REFUSED_STREAM`, or a GOAWAY below the stream) never loses a byte
    /// taken from the client, for an HTTP/2 stream: what it can send before
    /// the upstream grants more window (its initial stream window), what h2
    /// queues beyond that ([`H2_SEND_BUFFER`]) and one chunk from the
    /// client (`client_chunk`: hyper's HTTP/1.1 read buffer), at most
    /// [`MAX_UNPROCESSED_HOLD`] (and that much while the upstream's
    /// SETTINGS are not known yet). `None`
    /// over HTTP/1.1, where a request the upstream refuses is not known to
    /// be unprocessed.
    pub(crate) fn unprocessed_hold(&self, client_chunk: usize) -> Option<usize> {
        let conn = self.multiplexed()?;
        // Before the upstream's SETTINGS came, any window may apply.
        let Some(window) = conn.initial_window() else {
            return Some(MAX_UNPROCESSED_HOLD);
        };
        let hold = (window as usize)
            .saturating_add(H2_SEND_BUFFER)
            .saturating_add(client_chunk);
        Some(hold.min(MAX_UNPROCESSED_HOLD))
    }

    /// The shared HTTP/2 connection this stream belongs to, if any.
    pub(crate) fn multiplexed(&self) -> Option<&std::sync::Arc<Multiplexed>> {
        match &self.link {
            Link::Http1 { .. } => None,
            Link::Http2 { lease, .. } => Some(lease.connection()),
        }
    }

    /// Whether this stream's shared connection was failed because only
    /// streams its upstream never processed were left (after a GOAWAY).
    pub(crate) fn stranded(&self) -> bool {
        self.multiplexed().is_some_and(|conn| conn.stranded())
    }

    /// Never pool this connection again: close it once the current response
    /// is done (its framing was ambiguous). An HTTP/2 stream's framing is
    /// the frames', so its connection stays shared.
    pub(crate) fn close_after_response(&mut self) {
        self.reusable = false;
    }

    /// Whether the connection is gone (the upstream closed it, it failed,
    /// or its last exchange left it unusable).
    pub(crate) fn is_closed(&mut self) -> bool {
        match &mut self.link {
            Link::Http1 { conn, .. } => conn.is_closed(),
            Link::Http2 { sender, .. } => sender.is_closed(),
        }
    }

    /// Wait until the connection can take a request; false means it closed.
    pub(crate) async fn ready(&mut self) -> bool {
        match &mut self.link {
            Link::Http1 { conn, .. } => !conn.is_closed(),
            Link::Http2 { sender, .. } => sender.ready().await.is_ok(),
        }
    }

    /// Send a request and wait for the response head. A request that was
    /// never written comes back in the error.
    pub(crate) async fn send(
        &mut self,
        mut request: UpstreamRequest,
    ) -> Result<UpstreamResponse, SendError> {
        match &mut self.link {
            Link::Http1 { conn, .. } => {
                conn.start(request).map_err(SendError::NotSent)?;
                let parsed = std::future::poll_fn(|cx| conn.poll_response(cx))
                    .await
                    .map_err(SendError::Http1)?;
                let body = UpstreamResponseBody::Http1(parsed.body);
                Ok(Response::from_parts(parsed.head, body))
            }
            Link::Http2 { sender, .. } => {
                as_http2(&mut request, self.tls);
                match sender.try_send_request(request).await {
                    Ok(response) => Ok(response.map(UpstreamResponseBody::Http2)),
                    Err(mut e) => Err(match e.take_message() {
                        Some(request) => SendError::NotSent(Box::new(request)),
                        None => SendError::Http2(e.into_error()),
                    }),
                }
            }
        }
    }

    /// The next frame of an HTTP/1.1 response body read from this
    /// connection (`chunk`: the most read at once); `None` at its end.
    pub(crate) fn poll_http1_body(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut BodyDecoder,
        chunk: usize,
    ) -> Poll<Option<Result<Frame<Bytes>, http1::BodyError>>> {
        match &mut self.link {
            Link::Http1 { conn, .. } => conn.poll_body(cx, body, chunk),
            Link::Http2 { .. } => Poll::Ready(None),
        }
    }

    /// After a 101: the connection as a byte stream.
    pub(crate) fn upgraded(&mut self) -> Option<&mut Http1Conn> {
        match &mut self.link {
            Link::Http1 { conn, .. } => Some(conn),
            Link::Http2 { .. } => None,
        }
    }
}

/// Turn an HTTP/1.1 head into an HTTP/2 one: the target's scheme and
/// authority (`:authority` from `Host`, which is then dropped: RFC 9113
/// section 8.3.1), version 2. hyper removes the connection-specific headers.
fn as_http2(request: &mut UpstreamRequest, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    let host = request.headers_mut().remove(http::header::HOST);
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let authority = host.as_ref().and_then(|h| h.to_str().ok());
    let uri =
        authority.and_then(|authority| Uri::try_from(format!("{scheme}://{authority}{path}")).ok());
    match uri {
        Some(uri) => *request.uri_mut() = uri,
        // No usable Host: keep it as a header, and let h2 default the scheme.
        None => {
            if let Some(host) = host {
                request.headers_mut().insert(http::header::HOST, host);
            }
        }
    }
    *request.version_mut() = Version::HTTP_2;
}
