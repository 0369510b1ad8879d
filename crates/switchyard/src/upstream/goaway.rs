//! Noticing an HTTP/2 upstream's GOAWAY as it arrives.
//!
//! The `h2` crate (0.4) applies a received GOAWAY to the streams open at
//! that moment, but keeps opening new streams on the connection afterwards.
//! The upstream ignores those (RFC 9113 section 6.8), and as long as any
//! stream is open h2 keeps the connection, so a request sent there waits
//! for its read timeout. hyper does not say that a GOAWAY came either. So
//! the bytes the upstream sends are watched on their way to hyper: only
//! each frame's 9-byte header is looked at (its length, to find the next,
//! and its type); h2 still parses and checks everything. On a GOAWAY the
//! shared connection is marked going away and gets no new stream; the
//! streams it carries finish or fail as h2 says.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The frame type of GOAWAY (RFC 9113 section 6.8).
const GOAWAY: u8 = 0x7;
/// The length of a frame header.
const HEADER: usize = 9;

/// Where the reader is in the upstream's frames.
#[derive(Debug, Default)]
struct FrameCursor {
    header: [u8; HEADER],
    /// Header bytes collected so far.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
}

impl FrameCursor {
    /// Walk `bytes`, the next the upstream sent; true if a GOAWAY frame
    /// header was among them.
    fn saw_goaway(&mut self, mut bytes: &[u8]) -> bool {
        let mut goaway = false;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                let [a, b, c, kind, ..] = self.header;
                self.skip = u32::from_be_bytes([0, a, b, c]) as usize;
                goaway |= kind == GOAWAY;
                self.have = 0;
            }
        }
        goaway
    }
}

/// A connection to an HTTP/2 upstream that raises `going_away` when the
/// upstream sends GOAWAY.
#[derive(Debug)]
pub(crate) struct GoawayWatch<S> {
    inner: S,
    cursor: FrameCursor,
    going_away: Arc<AtomicBool>,
}

impl<S> GoawayWatch<S> {
    /// Watch `inner`'s incoming frames; `going_away` is raised at a GOAWAY.
    pub(crate) fn new(inner: S, going_away: Arc<AtomicBool>) -> Self {
        GoawayWatch {
            inner,
            cursor: FrameCursor::default(),
            going_away,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GoawayWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.cursor.saw_goaway(&buf.filled()[before..]) {
            this.going_away.store(true, Ordering::Release);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GoawayWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let length = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, 0, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn a_goaway_is_found_however_the_bytes_are_split() {
        let mut stream = frame(0x4, &[0; 6]);
        stream.extend(frame(0x0, &[GOAWAY; 40])); // DATA whose bytes look like one
        stream.extend(frame(0x1, &[0x88]));
        let quiet_end = stream.len();
        stream.extend(frame(GOAWAY, &[0; 8]));
        for split in [1, 2, 7, 9, 10, 64] {
            let mut cursor = FrameCursor::default();
            let mut seen_at = None;
            for (i, chunk) in stream.chunks(split).enumerate() {
                if cursor.saw_goaway(chunk) && seen_at.is_none() {
                    seen_at = Some((i + 1) * split);
                }
            }
            let at = seen_at.unwrap_or_else(|| panic!("split {split}: not seen"));
            assert!(
                at > quiet_end,
                "split {split}: seen at byte {at}, in a quiet frame"
            );
        }
    }
}
