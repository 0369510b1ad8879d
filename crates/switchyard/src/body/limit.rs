//! A cap on the request body a client may send: [`LimitedBody`] counts the
//! bytes it passes on and fails, before handing on the chunk that would
//! cross it, with [`BodyTooLarge`]. So an upstream never receives a body
//! past the limit; the engine turns the error into a 413 (or, after the
//! response head went downstream, an aborted response).
//!
//! The limit is set through a [`BodyLimit`] handle, so a hook can change it
//! for one request (per route) before the body is read.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// No limit.
const UNLIMITED: u64 = u64::MAX;

/// The limit of one request's body, shared by the body and whoever sets it,
/// and whether the body crossed it.
#[derive(Debug, Clone)]
pub struct BodyLimit(Arc<LimitState>);

#[derive(Debug)]
struct LimitState {
    bytes: AtomicU64,
    exceeded: AtomicBool,
}

impl BodyLimit {
    /// A limit of `bytes` (`None`: unlimited).
    pub fn new(bytes: Option<u64>) -> Self {
        BodyLimit(Arc::new(LimitState {
            bytes: AtomicU64::new(bytes.unwrap_or(UNLIMITED)),
            exceeded: AtomicBool::new(false),
        }))
    }

    /// The limit now.
    pub fn get(&self) -> Option<u64> {
        let bytes = self.0.bytes.load(Ordering::Acquire);
        (bytes != UNLIMITED).then_some(bytes)
    }

    /// Change the limit (`None`: unlimited). Bytes already passed on count.
    pub fn set(&self, bytes: Option<u64>) {
        self.0
            .bytes
            .store(bytes.unwrap_or(UNLIMITED), Ordering::Release);
    }

    /// Whether the body was cut off at the limit.
    pub fn exceeded(&self) -> bool {
        self.0.exceeded.load(Ordering::Acquire)
    }
}

/// The client sent more than the limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    /// The limit, in bytes.
    pub limit: u64,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body larger than the limit of {} bytes",
            self.limit
        )
    }
}

impl std::error::Error for BodyTooLarge {}

/// A body that fails once it would pass more than its limit.
#[derive(Debug)]
pub struct LimitedBody<B> {
    inner: B,
    passed: u64,
    limit: BodyLimit,
}

impl<B> LimitedBody<B> {
    /// `inner`, cut off at `limit`.
    pub fn new(inner: B, limit: BodyLimit) -> Self {
        LimitedBody {
            inner,
            passed: 0,
            limit,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let passed = this.passed.saturating_add(data.len() as u64);
            if let Some(limit) = this.limit.get()
                && passed > limit
            {
                this.limit.0.exceeded.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
            }
            this.passed = passed;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::VecDeque;

    use http_body_util::BodyExt;

    use super::*;

    /// A body of fixed chunks.
    struct Chunks(VecDeque<&'static str>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            let next = self.0.pop_front();
            Poll::Ready(next.map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))))
        }
    }

    fn chunks(parts: &[&'static str]) -> Chunks {
        Chunks(parts.iter().copied().collect())
    }

    #[tokio::test]
    async fn a_body_within_the_limit_passes_whole() {
        let body = LimitedBody::new(chunks(&["hello", " world"]), BodyLimit::new(Some(11)));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello world");
    }

    #[tokio::test]
    async fn the_chunk_that_crosses_the_limit_is_not_passed_on() {
        let mut body = LimitedBody::new(chunks(&["hello", " world"]), BodyLimit::new(Some(8)));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "hello");
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(body.limit.exceeded());
        assert_eq!(
            e.downcast_ref::<BodyTooLarge>(),
            Some(&BodyTooLarge { limit: 8 })
        );
    }

    #[tokio::test]
    async fn a_limit_set_later_applies_and_none_is_unlimited() {
        let limit = BodyLimit::new(None);
        let mut body = LimitedBody::new(chunks(&["hello", " world"]), limit.clone());
        assert_eq!(limit.get(), None);
        limit.set(Some(3));
        assert!(body.frame().await.unwrap().is_err());
    }
}
