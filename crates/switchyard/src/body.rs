//! The request body, streamed upstream once and replayable on retry.
//!
//! A downstream request body is read only as fast as the upstream takes it
//! and never fully buffered. While it streams, the first `cap` bytes (64 KiB
//! by default) are kept. A retry gets a fresh [`ReplayBody`] that first
//! replays what was kept and then goes on reading the downstream body where
//! the previous attempt stopped. Once more than `cap` bytes were read the
//! buffer is dropped and marked [`BufferState::Truncated`]: the bytes already
//! sent cannot be sent again, so the engine refuses any further attempt that
//! would need them.
//!
//! Only one attempt's body reads at a time. A new attempt's body waits until
//! the previous one is dropped (hyper drops it when the failed connection
//! ends; the engine aborts a connection it gives up on) and then takes over
//! the source. A connect failure never touches the body: it is handed to
//! hyper only once a connection exists.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::{fmt, pin::Pin};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use filter::FilteredBody;

pub(crate) mod client;
mod copy;
pub mod filter;
pub(crate) mod http3;
pub mod limit;
mod progress;

pub use copy::BodyCopy;
use copy::{CopyBuf, copy_chunk};
pub use progress::Progress;
#[cfg(test)]
mod tests;

/// The default replay buffer size: 64 KiB, as Pingora and Linkerd use.
pub const DEFAULT_REPLAY_BUFFER: usize = 64 * 1024;

/// Whether everything read from the downstream body so far is still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferState {
    /// Every byte read so far is buffered: a retry can replay the body.
    Complete,
    /// The body outgrew the buffer: a retry that needs it is impossible.
    Truncated,
}

/// The shared source of a request body: hands out one [`ReplayBody`] per attempt.
pub struct ReplaySource<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for ReplaySource<B> {
    fn clone(&self) -> Self {
        ReplaySource {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B> fmt::Debug for ReplaySource<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplaySource")
            .field("cap", &self.capacity())
            .field("bytes_read", &self.bytes_read())
            .field("state", &self.state())
            .finish()
    }
}

struct Shared<B> {
    cap: AtomicUsize,
    slot: Mutex<Slot<B>>,
    truncated: AtomicBool,
    released: AtomicBool,
    /// Set once the downstream body was read to its end, by any attempt.
    ended: AtomicBool,
    bytes_read: AtomicU64,
    source_failed: AtomicBool,
    /// Set with `source_failed` when the client's body was malformed (a bad
    /// chunk), not cut short.
    source_malformed: AtomicBool,
    /// The body's filter, once one is set.
    filter: OnceLock<Arc<filter::FilterStatus>>,
    /// Keep a copy of the body up to this many bytes (`0`: none), apart
    /// from the replay buffer (which is freed once the response starts).
    copy_max: AtomicUsize,
    copy: Mutex<CopyBuf>,
}

/// The source, when no attempt's body holds it, and who waits for it.
struct Slot<B> {
    source: Option<Source<B>>,
    waiter: Option<Waker>,
}

/// The downstream body and what was kept of it.
struct Source<B> {
    body: B,
    ended: bool,
    chunks: Vec<Bytes>,
    buffered: usize,
    trailers: Option<HeaderMap>,
}

impl<B> Source<B> {
    /// The downstream body was read to its end: say so here and to every
    /// attempt (`drain` then has nothing to wait for).
    fn end(&mut self, shared: &Shared<B>) {
        self.ended = true;
        shared.ended.store(true, Ordering::Release);
    }
}

impl<B> Shared<B> {
    /// Reading the downstream body failed with `e`.
    fn failed(&self, e: &(dyn std::error::Error + 'static)) {
        self.source_malformed
            .store(is_malformed(e), Ordering::Release);
        self.source_failed.store(true, Ordering::Release);
    }

    fn slot(&self) -> MutexGuard<'_, Slot<B>> {
        // A poisoned lock only means a panic elsewhere; the slot is still consistent.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<B> ReplaySource<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Wrap a downstream body, keeping up to `cap` bytes for replay.
    pub fn new(body: B, cap: usize) -> Self {
        let source = Source {
            body,
            ended: false,
            chunks: Vec::new(),
            buffered: 0,
            trailers: None,
        };
        ReplaySource {
            shared: Arc::new(Shared {
                cap: AtomicUsize::new(cap),
                slot: Mutex::new(Slot {
                    source: Some(source),
                    waiter: None,
                }),
                truncated: AtomicBool::new(false),
                released: AtomicBool::new(false),
                ended: AtomicBool::new(false),
                bytes_read: AtomicU64::new(0),
                source_failed: AtomicBool::new(false),
                source_malformed: AtomicBool::new(false),
                filter: OnceLock::new(),
                copy_max: AtomicUsize::new(0),
                copy: Mutex::default(),
            }),
        }
    }

    /// A body for the next attempt, and a handle on its progress.
    pub fn attempt_body(&self) -> (ReplayBody<B>, Arc<Progress>) {
        let progress = Arc::new(Progress::new(self.shared.filter.get().cloned()));
        let body = ReplayBody {
            shared: Arc::clone(&self.shared),
            held: None,
            replayed: 0,
            trailers_sent: false,
            progress: Arc::clone(&progress),
        };
        if body.is_end_stream() {
            progress.mark_finished();
            self.shared.ended.store(true, Ordering::Release);
        }
        (body, progress)
    }

    /// Read and discard what the client still sends of the body, at most
    /// `max_bytes`, once no attempt needs it (the upstream answered without
    /// reading it all). A body read to its end lets the client's connection
    /// carry its next request, as nginx and HAProxy do; one left unread makes
    /// hyper close it. Returns whether the body reached its end.
    pub async fn drain(&self, max_bytes: u64) -> bool {
        if self.shared.ended.load(Ordering::Acquire) {
            return true;
        }
        let mut source = std::future::poll_fn(|cx| {
            let mut slot = self.shared.slot();
            match slot.source.take() {
                Some(source) => Poll::Ready(source),
                None => {
                    slot.waiter = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        let mut drained = 0u64;
        let ended = loop {
            if source.ended || source.body.is_end_stream() {
                break true;
            }
            match std::future::poll_fn(|cx| Pin::new(&mut source.body).poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    drained += len;
                    self.shared.bytes_read.fetch_add(len, Ordering::AcqRel);
                    if drained > max_bytes {
                        break false;
                    }
                }
                Some(Err(e)) => {
                    let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                    self.shared.failed(&*e);
                    break false;
                }
                None => break true,
            }
        };
        source.ended = ended;
        self.shared.ended.store(ended, Ordering::Release);
        self.shared.slot().source = Some(source);
        ended
    }
}

impl<B> ReplaySource<B> {
    /// Whether a retry could still replay everything read so far.
    pub fn state(&self) -> BufferState {
        if self.shared.truncated.load(Ordering::Acquire) {
            BufferState::Truncated
        } else {
            BufferState::Complete
        }
    }

    /// Bytes read from the downstream body so far (across all attempts).
    pub fn bytes_read(&self) -> u64 {
        self.shared.bytes_read.load(Ordering::Acquire)
    }

    /// Whether reading the downstream body failed (the client went away
    /// mid-body, or sent a malformed body).
    pub fn source_failed(&self) -> bool {
        self.shared.source_failed.load(Ordering::Acquire)
    }

    /// Whether it failed because the body was malformed (a bad chunk size or
    /// chunk end), not cut short.
    pub fn source_malformed(&self) -> bool {
        self.shared.source_malformed.load(Ordering::Acquire)
    }

    /// No retry will come (the response started): free the buffer and keep
    /// nothing more. The body still streams; it just cannot be replayed.
    pub fn release_buffer(&self) {
        self.shared.released.store(true, Ordering::Release);
        self.shared.truncated.store(true, Ordering::Release);
        if let Some(source) = self.shared.slot().source.as_mut() {
            source.chunks = Vec::new();
            source.buffered = 0;
        }
    }

    /// The replay buffer's capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.cap.load(Ordering::Acquire)
    }

    /// Raise the capacity to at least `cap`, for the rest of the request
    /// (an attempt over HTTP/2 keeps what its stream may have sent before
    /// the upstream showed it is processing it). It helps only while
    /// everything read so far is still held; the answer, whether that was
    /// so, is advisory: a chunk being read at the same time may still
    /// truncate the buffer against the old capacity.
    pub fn raise_capacity(&self, cap: usize) -> bool {
        self.shared.cap.fetch_max(cap, Ordering::AcqRel);
        !self.shared.truncated.load(Ordering::Acquire)
    }

    /// Change the capacity, possible only before any body byte was read.
    /// Returns whether it took effect.
    pub fn set_capacity(&self, cap: usize) -> bool {
        if self.bytes_read() > 0 {
            return false;
        }
        self.shared.cap.store(cap, Ordering::Release);
        true
    }
}

impl<B: Body> ReplaySource<FilteredBody<B>> {
    /// Set the request's body filter. Possible only before any body byte
    /// was read; `None` when too late.
    pub(crate) fn set_filter(
        &self,
        filter: Box<dyn filter::RequestBodyFilter>,
    ) -> Option<filter::FilterSet> {
        if self.bytes_read() > 0 {
            return None;
        }
        let mut slot = self.shared.slot();
        let set = slot.source.as_mut()?.body.set(filter);
        // Each attempt's progress counts what the filter took in.
        let _ = self.shared.filter.set(Arc::clone(&set.status));
        Some(set)
    }
}

/// One attempt's view of the request body: replays what was kept, then
/// streams the rest of the downstream body.
pub struct ReplayBody<B> {
    shared: Arc<Shared<B>>,
    held: Option<Source<B>>,
    replayed: usize,
    trailers_sent: bool,
    progress: Arc<Progress>,
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("holds_source", &self.held.is_some())
            .field("replayed_chunks", &self.replayed)
            .field("progress", &self.progress)
            .finish()
    }
}

/// Why a [`ReplayBody`] failed.
#[derive(Debug)]
pub enum ReplayError {
    /// Reading the downstream body failed.
    Source(Box<dyn std::error::Error + Send + Sync>),
    /// A retry needed bytes that were not kept (the buffer was truncated).
    NotReplayable,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Source(e) => write!(f, "reading the downstream request body: {e}"),
            ReplayError::NotReplayable => {
                f.write_str("request body outgrew the replay buffer and cannot be sent again")
            }
        }
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayError::Source(e) => Some(e.as_ref()),
            ReplayError::NotReplayable => None,
        }
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Take the source once the previous attempt's body let go of it.
    fn acquire(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ReplayError>> {
        if self.held.is_some() {
            return Poll::Ready(Ok(()));
        }
        let mut slot = self.shared.slot();
        match slot.source.take() {
            Some(source) => {
                if self.shared.truncated.load(Ordering::Acquire) && self.shared_read() > 0 {
                    slot.source = Some(source);
                    return Poll::Ready(Err(ReplayError::NotReplayable));
                }
                self.held = Some(source);
                Poll::Ready(Ok(()))
            }
            None => {
                slot.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn shared_read(&self) -> u64 {
        self.shared.bytes_read.load(Ordering::Acquire)
    }

    /// Keep a chunk read from downstream while it fits, else drop the buffer.
    fn keep(shared: &Shared<B>, source: &mut Source<B>, data: &Bytes) {
        shared
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::AcqRel);
        let copy_max = shared.copy_max.load(Ordering::Acquire);
        if copy_max > 0 {
            copy_chunk(shared, copy_max, data);
        }
        if shared.truncated.load(Ordering::Acquire) {
            return;
        }
        if source.buffered + data.len() <= shared.cap.load(Ordering::Acquire) {
            source.buffered += data.len();
            source.chunks.push(data.clone());
        } else {
            shared.truncated.store(true, Ordering::Release);
            source.chunks = Vec::new();
            source.buffered = 0;
        }
    }

    fn count_sent(&self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.progress.add_sent(data.len() as u64);
        }
    }
}

impl<B> ReplayBody<B> {
    /// This attempt sends none of the body (it is framed as none): as far
    /// as the attempt's progress goes, the body is done.
    pub(crate) fn not_sent(&self) {
        self.progress.mark_finished();
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = ReplayError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        let this = &mut *self;
        if let Err(e) = std::task::ready!(this.acquire(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(source) = this.held.as_mut() else {
            return Poll::Pending;
        };
        // 1. Replay what earlier attempts read.
        if let Some(chunk) = source.chunks.get(this.replayed) {
            let frame = Frame::data(chunk.clone());
            this.replayed += 1;
            this.count_sent(&frame);
            return Poll::Ready(Some(Ok(frame)));
        }
        // 2. The downstream body already ended: replay its trailers, then end.
        if source.ended {
            this.progress.mark_finished();
            if let (Some(trailers), false) = (&source.trailers, this.trailers_sent) {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
            return Poll::Ready(None);
        }
        // 3. Read on from downstream.
        let polled = Pin::new(&mut source.body).poll_frame(cx);
        this.progress.set_waiting_on_downstream(polled.is_pending());
        match std::task::ready!(polled) {
            Some(Ok(frame)) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        Self::keep(&this.shared, source, &data);
                        this.replayed = source.chunks.len();
                        Frame::data(data)
                    }
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            // Trailers are the last frame: hyper polls no further.
                            source.trailers = Some(trailers.clone());
                            source.end(&this.shared);
                            this.trailers_sent = true;
                        }
                        frame
                    }
                };
                if source.body.is_end_stream() {
                    source.end(&this.shared);
                }
                if source.ended && (source.trailers.is_none() || this.trailers_sent) {
                    this.progress.mark_finished();
                }
                this.count_sent(&frame);
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                // A failed request body filter is the proxy's, not the client's.
                if !e.is::<filter::FilterFailed>() {
                    this.shared.failed(&*e);
                }
                Poll::Ready(Some(Err(ReplayError::Source(e))))
            }
            None => {
                source.end(&this.shared);
                this.progress.mark_finished();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = match &self.held {
            Some(source) => remaining_is_empty(source, self.replayed, self.trailers_sent),
            None => match &self.shared.slot().source {
                Some(source) if !self.shared.truncated.load(Ordering::Acquire) => {
                    remaining_is_empty(source, self.replayed, self.trailers_sent)
                }
                _ => false,
            },
        };
        if end {
            self.progress.mark_finished();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        let guard;
        let source = match &self.held {
            Some(source) => source,
            None => {
                guard = self.shared.slot();
                match &guard.source {
                    Some(source) => source,
                    None => return SizeHint::default(),
                }
            }
        };
        let replay: u64 = source
            .chunks
            .iter()
            .skip(self.replayed)
            .map(|c| c.len() as u64)
            .sum();
        let rest = if source.ended {
            SizeHint::with_exact(0)
        } else {
            source.body.size_hint()
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + replay);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + replay);
        }
        hint
    }
}

/// Whether a downstream body error is about its framing (the HTTP/1.1
/// connection reports a malformed body as `InvalidData`, hyper's HTTP/2 a
/// bad frame as `InvalidInput` or `InvalidData`) rather than the client
/// going away.
pub(crate) fn is_malformed(e: &(dyn std::error::Error + 'static)) -> bool {
    crate::error::find_cause::<std::io::Error>(e).is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
        )
    })
}

fn remaining_is_empty<B: Body>(source: &Source<B>, replayed: usize, trailers_sent: bool) -> bool {
    let replay_done = replayed >= source.chunks.len();
    let body_done = source.ended || source.body.is_end_stream();
    let trailers_done = source.trailers.is_none() || trailers_sent;
    replay_done && body_done && trailers_done
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        if let Some(source) = self.held.take() {
            let waiter = {
                let mut slot = self.shared.slot();
                slot.source = Some(source);
                slot.waiter.take()
            };
            if let Some(waiter) = waiter {
                waiter.wake();
            }
        }
    }
}
