//! A copy of the request body kept apart from the replay buffer (which
//! is freed once the response starts), for use after the response: what a
//! mirror sends.

use bytes::Bytes;

use super::{ReplaySource, Shared};
use std::sync::atomic::Ordering;

/// The copy of the body kept for [`ReplaySource::copied`].
#[derive(Debug, Default)]
pub(super) struct CopyBuf {
    pub(super) chunks: Vec<Bytes>,
    pub(super) size: usize,
    /// The body grew past `copy_max`: nothing is kept.
    pub(super) over: bool,
}

/// What became of a request body's copy ([`ReplaySource::copied`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyCopy {
    /// The whole body, read to its end.
    Complete(Bytes),
    /// The body was longer than the copy may be.
    TooLarge,
    /// The body was not read to its end (yet), or partly past the copy.
    Unfinished,
}

impl<B> ReplaySource<B> {
    /// Keep a copy of the body, up to `max` bytes, whatever becomes of the
    /// replay buffer; possible only before any body byte was read.
    /// Returns whether it took effect.
    pub fn copy_up_to(&self, max: usize) -> bool {
        if self.bytes_read() > 0 {
            return false;
        }
        self.shared.copy_max.store(max, Ordering::Release);
        true
    }

    /// The copy [`copy_up_to`](Self::copy_up_to) asked for.
    pub fn copied(&self) -> BodyCopy {
        let copy = self.shared.copy.lock().unwrap_or_else(|p| p.into_inner());
        if copy.over {
            return BodyCopy::TooLarge;
        }
        let whole = copy.size as u64 == self.bytes_read();
        if !self.shared.ended.load(Ordering::Acquire) || !whole {
            return BodyCopy::Unfinished;
        }
        let mut body = bytes::BytesMut::with_capacity(copy.size);
        for chunk in &copy.chunks {
            body.extend_from_slice(chunk);
        }
        BodyCopy::Complete(body.freeze())
    }
}

/// Add `data` to the body's copy while it stays within `max` bytes.
pub(super) fn copy_chunk<B>(shared: &Shared<B>, max: usize, data: &Bytes) {
    let mut copy = shared.copy.lock().unwrap_or_else(|p| p.into_inner());
    if copy.over {
        return;
    }
    if copy.size + data.len() <= max {
        copy.size += data.len();
        copy.chunks.push(data.clone());
    } else {
        *copy = CopyBuf {
            over: true,
            ..CopyBuf::default()
        };
    }
}
