//! The floor's response body: the upstream's, which hands its connection
//! back to the pool once read to the end, or nothing (the floor's 502).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use crate::Pool;

/// The upstream's body, or an empty one; no boxing (that would add an
/// allocation per response the floor should not have).
pub enum Body {
    /// Streamed from the upstream.
    Upstream(Returning),
    /// No body.
    Empty,
}

/// An upstream response body that returns its connection to the pool when
/// dropped after its end.
pub struct Returning {
    body: Incoming,
    sender: Option<SendRequest<Incoming>>,
    pool: Pool,
    ended: bool,
}

impl Returning {
    pub fn new(body: Incoming, sender: SendRequest<Incoming>, pool: Pool) -> Self {
        Returning { body, sender: Some(sender), pool, ended: false }
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if self.ended || hyper::body::Body::is_end_stream(&self.body) {
            if let (Some(sender), Ok(mut idle)) = (self.sender.take(), self.pool.lock()) {
                if idle.len() < 128 {
                    idle.push(sender);
                }
            }
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Upstream(returning) => {
                let polled = Pin::new(&mut returning.body).poll_frame(cx);
                if let Poll::Ready(None) = polled {
                    returning.ended = true;
                }
                polled
            }
            Body::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream(returning) => returning.body.is_end_stream(),
            Body::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Upstream(returning) => returning.body.size_hint(),
            Body::Empty => SizeHint::with_exact(0),
        }
    }
}
