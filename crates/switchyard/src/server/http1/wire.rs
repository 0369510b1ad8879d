//! A client connection's bytes: the socket, what was read from it and not
//! yet used, and what waits to be written.
//!
//! Small pieces (heads, chunk framing, short bodies) are copied into one
//! output buffer, so a small response leaves in one write; large body
//! pieces are queued as they are and written with one vectored write
//! beside the buffered bytes, without a copy. Both buffers are given back
//! to the allocator while the connection idles ([`Wire::release`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::server::connection::ClientStream;

/// How much room a read is given when the buffer runs out (hyper's read
/// buffer on a client connection was as large).
const READ_SIZE: usize = crate::buffers::HTTP1_CLIENT_BUFFER;

/// Less room than this left in the read buffer: make more before reading.
const READ_AT_LEAST: usize = 2048;

/// Body pieces at most this long are copied into the output buffer.
const COPY_AT_MOST: usize = 4096;

/// The most queued pieces handed to one vectored write.
const MAX_SLICES: usize = 32;

/// A client connection's socket and buffers.
pub(crate) struct Wire {
    pub(crate) stream: ClientStream,
    /// Bytes read and not yet parsed or decoded.
    pub(crate) read: BytesMut,
    /// Bytes to write after everything queued.
    out: BytesMut,
    /// Pieces to write, in order, before `out`.
    queued: VecDeque<Bytes>,
    /// How much to read at once.
    chunk: usize,
    /// The last write found the socket full (and nothing was written since).
    write_blocked: bool,
}

impl Wire {
    /// A connection on `stream`, reading `chunk` bytes at a time.
    pub(crate) fn new(stream: ClientStream, chunk: usize) -> Self {
        Wire {
            stream,
            read: BytesMut::new(),
            out: BytesMut::new(),
            queued: VecDeque::new(),
            chunk,
            write_blocked: false,
        }
    }

    /// Read what the socket has into the read buffer, which never holds
    /// more than `chunk` bytes (so no body piece handed on is larger): the
    /// number of bytes read, 0 at the end of the stream.
    pub(crate) fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let room = self.chunk.saturating_sub(self.read.len());
        if room == 0 {
            // Full: whoever reads it must take from it first (a head over
            // the limit is refused before this).
            return Poll::Ready(Err(io::Error::other("read buffer full")));
        }
        let spare = self.read.capacity() - self.read.len();
        if spare < READ_AT_LEAST {
            self.read.reserve(room.min(READ_SIZE));
        }
        let mut into = (&mut self.read).limit(room);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut into)
    }

    /// The output buffer, for heads and framing.
    pub(crate) fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Add a body piece after everything written so far.
    pub(crate) fn put_data(&mut self, data: Bytes) {
        if data.len() <= COPY_AT_MOST {
            self.out.extend_from_slice(&data);
            return;
        }
        if !self.out.is_empty() {
            self.queued.push_back(self.out.split().freeze());
        }
        self.queued.push_back(data);
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending_output(&self) -> usize {
        self.out.len() + self.queued.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether anything waits to be written.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty() || !self.queued.is_empty()
    }

    /// Write everything waiting, then flush the stream (TLS keeps bytes
    /// until flushed).
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.has_output() {
            let written = match self.poll_write_once(cx) {
                Poll::Pending => {
                    self.write_blocked = true;
                    return Poll::Pending;
                }
                Poll::Ready(written) => written?,
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write_blocked = false;
            self.consume(written);
        }
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        self.write_blocked = flushed.is_pending();
        flushed
    }

    /// Whether the client has taken nothing since the last write found its
    /// socket full.
    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked && self.has_output()
    }

    fn poll_write_once(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let stream = Pin::new(&mut self.stream);
        if self.queued.is_empty() {
            return stream.poll_write(cx, &self.out);
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES + 1];
        let mut n = 0;
        for piece in self.queued.iter().take(MAX_SLICES) {
            slices[n] = IoSlice::new(piece);
            n += 1;
        }
        if n < MAX_SLICES + 1 && self.queued.len() <= MAX_SLICES && !self.out.is_empty() {
            slices[n] = IoSlice::new(&self.out);
            n += 1;
        }
        stream.poll_write_vectored(cx, &slices[..n])
    }

    /// Drop `n` written bytes from the front of what waits.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queued.front_mut() else {
                self.out.advance(n);
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.queued.pop_front();
        }
    }

    /// Give both buffers back if they hold nothing (an idle connection then
    /// keeps no buffer at all).
    pub(crate) fn release(&mut self) -> bool {
        if !self.read.is_empty() || self.has_output() {
            return false;
        }
        self.read = BytesMut::new();
        self.out = BytesMut::new();
        self.queued = VecDeque::new();
        true
    }

    /// The socket, and what was read from it and not used.
    pub(crate) fn into_parts(self) -> (ClientStream, Bytes) {
        (self.stream, self.read.freeze())
    }

    /// Whether the buffers are given back.
    pub(crate) fn released(&self) -> bool {
        self.read.capacity() == 0 && self.out.capacity() == 0
    }
}
