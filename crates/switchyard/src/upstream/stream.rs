//! The upstream socket as hyper's client sees it: a write that had to wait
//! for the socket ends by polling the connection once more.
//!
//! hyper's HTTP/1 client can lose a wake-up (seen with hyper 1.12). When a
//! response completes while part of the request body still sits in hyper's
//! write buffer (an upstream that answered before reading the whole upload),
//! the connection goes idle at once. If the last of that buffer is flushed
//! later, on a poll that found no request to write, hyper returns without
//! asking for the next request, and nothing wakes its task again:
//! `SendRequest::ready` then waits until the upstream sends something or
//! closes. A pooled connection in that state would cost the next request its
//! whole connect timeout.
//!
//! [`UpstreamStream`] closes that gap where it opens: when a write or flush
//! completes after the previous one found the socket full, it wakes the
//! connection's task, and hyper, polled again, sees that it is idle and asks
//! for the next request. Writes that never wait (almost all of them) cost
//! nothing extra.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[cfg(test)]
mod tests;

/// A socket to an upstream that re-polls its connection after a blocked write.
#[derive(Debug)]
pub(crate) struct UpstreamStream<S> {
    inner: S,
    /// The last write or flush found the socket full.
    write_blocked: bool,
}

impl<S> UpstreamStream<S> {
    /// Wrap `inner`.
    pub(crate) fn new(inner: S) -> Self {
        UpstreamStream {
            inner,
            write_blocked: false,
        }
    }

    /// Note a write's outcome; a write that completes after a blocked one
    /// schedules one more poll of the connection.
    fn note<T>(&mut self, cx: &Context<'_>, polled: Poll<T>) -> Poll<T> {
        match polled {
            Poll::Pending => self.write_blocked = true,
            Poll::Ready(_) if self.write_blocked => {
                self.write_blocked = false;
                cx.waker().wake_by_ref();
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for UpstreamStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for UpstreamStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
