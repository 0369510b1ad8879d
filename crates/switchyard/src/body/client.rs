//! A client's request body as the engine reads it: none, an HTTP/1.1 body
//! fed by the client's connection, hyper's HTTP/2 stream, or an HTTP/3
//! stream (`http3.rs`).
//!
//! An HTTP/1.1 connection reads and decodes its client's body itself (it
//! owns the socket and the framing) and hands the body one piece at a time
//! through a [`Feed`]: the body asks, the connection reads, the body takes.
//! Nothing is read before it is asked for, so a body is read only as fast
//! as the upstream takes it, and at most one piece waits in between.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The body of a client's request.
#[derive(Debug)]
pub(crate) enum ClientBody {
    /// No body (an HTTP/1.1 request without one).
    Empty,
    /// An HTTP/1.1 body, fed by its connection.
    Http1(Http1Body),
    /// An HTTP/2 stream's body.
    Http2(Incoming),
    /// An HTTP/3 stream's body (boxed: the stream is large, and the other
    /// variants are moved on every request).
    Http3(Box<super::http3::Http3Body>),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Http1(body) => body.poll_next(cx).map_err(Into::into),
            ClientBody::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::Http3(body) => body.poll_next(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Http1(body) => body.is_end_stream(),
            ClientBody::Http2(body) => body.is_end_stream(),
            ClientBody::Http3(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Http1(body) => body.size_hint(),
            ClientBody::Http2(body) => body.size_hint(),
            ClientBody::Http3(body) => body.size_hint(),
        }
    }
}

/// What passes between an HTTP/1.1 connection and its request's body.
#[derive(Debug, Default)]
struct FeedState {
    /// A piece read and not yet taken.
    piece: Option<Frame<Bytes>>,
    /// The body's last frame was taken, or it failed.
    done: bool,
    /// Why the body cannot be read to its end.
    failed: Option<(io::ErrorKind, &'static str)>,
    /// The body waits for a piece.
    wanted: bool,
    /// The body gave up on the rest (it was dropped).
    abandoned: bool,
    /// Whom to wake when a piece comes.
    body: Option<Waker>,
    /// Whom to wake when a piece is wanted.
    connection: Option<Waker>,
}

/// The connection's side of a request body: it learns when a piece is
/// wanted and hands pieces over.
#[derive(Debug, Clone)]
pub(crate) struct Feed(Arc<Mutex<FeedState>>);

/// The body's side: [`ClientBody::Http1`].
#[derive(Debug)]
pub(crate) struct Http1Body {
    feed: Feed,
    /// Bytes still to come, where the framing says.
    left: Option<u64>,
    /// The last frame was taken.
    ended: bool,
}

impl Feed {
    /// A feed and the body it feeds; `length` is the body's size when its
    /// framing tells it.
    pub(crate) fn new(length: Option<u64>) -> (Feed, Http1Body) {
        let feed = Feed(Arc::new(Mutex::new(FeedState::default())));
        let body = Http1Body {
            feed: feed.clone(),
            left: length,
            ended: false,
        };
        (feed, body)
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        // A panic elsewhere cannot leave this state half-changed.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the body waits for a piece the connection should read;
    /// when not, the connection is woken through `cx` once it does.
    pub(crate) fn poll_wanted(&self, cx: &mut Context<'_>) -> bool {
        let mut state = self.state();
        let wanted = state.wanted && state.piece.is_none() && !state.done;
        if !wanted {
            set_waker(&mut state.connection, cx);
        }
        wanted
    }

    /// Whether the body was dropped before its end.
    pub(crate) fn abandoned(&self) -> bool {
        self.state().abandoned
    }

    /// Hand the body its next frame (data or trailers).
    pub(crate) fn give(&self, frame: Frame<Bytes>) {
        let mut state = self.state();
        state.piece = Some(frame);
        state.wanted = false;
        wake(&mut state.body);
    }

    /// The body is complete: it ends once its last piece is taken.
    pub(crate) fn finish(&self) {
        let mut state = self.state();
        state.done = true;
        wake(&mut state.body);
    }

    /// The body cannot be read to its end (`kind` `InvalidData` for a
    /// malformed body, which the engine answers with 400).
    pub(crate) fn fail(&self, kind: io::ErrorKind, why: &'static str) {
        let mut state = self.state();
        if !state.done {
            state.failed = Some((kind, why));
            state.done = true;
        }
        wake(&mut state.body);
    }
}

impl Http1Body {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let mut state = self.feed.state();
        if let Some(frame) = state.piece.take() {
            if let (Some(left), Some(data)) = (self.left.as_mut(), frame.data_ref()) {
                *left = left.saturating_sub(data.len() as u64);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some((kind, why)) = state.failed.take() {
            self.ended = true;
            return Poll::Ready(Some(Err(io::Error::new(kind, why))));
        }
        if state.done {
            self.ended = true;
            return Poll::Ready(None);
        }
        state.wanted = true;
        set_waker(&mut state.body, cx);
        wake(&mut state.connection);
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended
            || self.left == Some(0) && {
                let state = self.feed.state();
                state.piece.is_none() && state.failed.is_none()
            }
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

impl Drop for Http1Body {
    fn drop(&mut self) {
        let mut state = self.feed.state();
        if !self.ended {
            state.abandoned = true;
        }
        state.wanted = false;
        wake(&mut state.connection);
    }
}

/// Keep `cx`'s waker in `slot` (cloned only when it changed).
fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(waker) = slot.take() {
        waker.wake();
    }
}
