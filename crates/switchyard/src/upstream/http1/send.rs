//! The request on its way out: the bytes queued for the socket, and the
//! body still to frame and send.
//!
//! Framing bytes and small pieces are copied into one buffer behind the
//! head, so a small request leaves in one write; a large piece goes as it
//! is, beside them in a vectored write. The body is read one piece at a
//! time, only once the last one was written: an upstream that takes the
//! body slowly slows the client down instead of filling memory.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body;
use tokio::io::AsyncWrite;

use super::socket::UpstreamIo;
use crate::body::ReplayError;
use crate::h1::CodecError;
use crate::h1::request::{BodyEncoder, Framed};
use crate::upstream::UpstreamBody;

/// Pieces up to this size are copied behind the framing bytes.
const COPY_UP_TO: usize = 1024;

/// Past this many bytes queued, the queue is written before more is read.
const QUEUE_UP_TO: usize = 16 * 1024;

/// Bytes waiting for the socket, in order: `buf`, then `data`, then `tail`.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// The head, framing bytes and small pieces.
    pub(super) buf: BytesMut,
    data: Bytes,
    tail: &'static [u8],
    /// Written since the last flush.
    unflushed: bool,
}

impl Outgoing {
    /// Whether everything queued was written and flushed.
    pub(super) fn is_empty(&self) -> bool {
        !self.has_bytes() && !self.unflushed
    }

    /// Whether bytes wait to be written.
    fn has_bytes(&self) -> bool {
        !(self.buf.is_empty() && self.data.is_empty() && self.tail.is_empty())
    }

    /// Whether a framed piece may be queued (the last large one is out).
    fn has_room(&self) -> bool {
        self.data.is_empty() && self.tail.is_empty() && self.buf.len() < QUEUE_UP_TO
    }

    /// Queue a framed piece behind what `buf` already holds.
    fn push(&mut self, framed: Framed) {
        let tail: &'static [u8] = if framed.crlf { b"\r\n" } else { b"" };
        if framed.data.len() <= COPY_UP_TO {
            self.buf.extend_from_slice(&framed.data);
            self.buf.extend_from_slice(tail);
        } else {
            self.data = framed.data;
            self.tail = tail;
        }
    }

    /// Write and flush everything queued.
    pub(super) fn poll_write(
        &mut self,
        io: &mut UpstreamIo,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.has_bytes() {
            let slices = [
                IoSlice::new(&self.buf),
                IoSlice::new(&self.data),
                IoSlice::new(self.tail),
            ];
            let written = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            self.advance(written);
        }
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut n: usize) {
        let from_buf = n.min(self.buf.len());
        self.buf.advance(from_buf);
        n -= from_buf;
        let from_data = n.min(self.data.len());
        self.data.advance(from_data);
        n -= from_data;
        self.tail = &self.tail[n.min(self.tail.len())..];
    }

    /// Forget what was queued (the connection is given up on).
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.data.clear();
        self.tail = b"";
        self.unflushed = false;
    }
}

/// Why sending the request stopped.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The request body failed (the client, its limit, a filter).
    Body(ReplayError),
    /// The body did not match its framing.
    Codec(CodecError),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Body(e) => e.fmt(f),
            SendError::Codec(e) => e.fmt(f),
            SendError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Body(e) => e.source(),
            SendError::Codec(e) => e.source(),
            SendError::Io(e) => e.source(),
        }
    }
}

/// A request body still being sent.
#[derive(Debug)]
pub(super) struct Sending {
    body: UpstreamBody,
    encoder: BodyEncoder,
}

impl Sending {
    pub(super) fn new(body: UpstreamBody, encoder: BodyEncoder) -> Self {
        Sending { body, encoder }
    }

    /// Queue the body's next piece if one is ready: `Ready(true)` once the
    /// body ended (its end framed), `Ready(false)` when a piece was queued.
    fn poll_queue(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Outgoing,
    ) -> Poll<Result<bool, SendError>> {
        let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
            None => {
                self.encoder
                    .end(None, &mut out.buf)
                    .map_err(SendError::Codec)?;
                return Poll::Ready(Ok(true));
            }
            Some(Err(e)) => return Poll::Ready(Err(SendError::Body(e))),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                let framed = self
                    .encoder
                    .data(data, &mut out.buf)
                    .map_err(SendError::Codec)?;
                out.push(framed);
                if self.body.is_end_stream() {
                    self.encoder
                        .end(None, &mut out.buf)
                        .map_err(SendError::Codec)?;
                    return Poll::Ready(Ok(true));
                }
                Poll::Ready(Ok(false))
            }
            Err(frame) => {
                // Trailers are the last frame.
                let trailers = frame.trailers_ref();
                self.encoder
                    .end(trailers, &mut out.buf)
                    .map_err(SendError::Codec)?;
                Poll::Ready(Ok(true))
            }
        }
    }
}

/// Send what is queued and as much of `sending`'s body as is ready:
/// `Ready(Ok)` once all of it was written (`sending` is then `None`).
pub(super) fn poll_send(
    sending: &mut Option<Sending>,
    out: &mut Outgoing,
    io: &mut UpstreamIo,
    cx: &mut Context<'_>,
) -> Poll<Result<(), SendError>> {
    loop {
        let mut body_pending = false;
        if let Some(body) = sending.as_mut()
            && out.has_room()
        {
            match body.poll_queue(cx, out) {
                Poll::Ready(Ok(true)) => *sending = None,
                Poll::Ready(Ok(false)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => body_pending = true,
            }
        }
        if !out.is_empty() {
            ready!(out.poll_write(io, cx)).map_err(SendError::Io)?;
            continue;
        }
        if sending.is_none() {
            return Poll::Ready(Ok(()));
        }
        debug_assert!(body_pending);
        return Poll::Pending;
    }
}
