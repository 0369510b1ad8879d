//! The response body on its way downstream, and how it ends.
//!
//! While the body streams, the upstream must send something at least every
//! read timeout; a body that stops arriving is a failure like any other
//! (`response-body-timed-out`), not a request held forever.
//!
//! [`PumpBody`] is polled by the downstream connection itself, so a frame
//! goes from the upstream socket to the downstream one with no task or
//! channel in between. When the upstream body ends cleanly the connection
//! goes back to the pool. When it breaks off, the pump yields an error:
//! hyper then aborts the downstream response (HTTP/1.1: the connection closes
//! short of `Content-Length`, or without the final chunk), so the client sees
//! a failure, never a response that looks complete. Either way the engine
//! learns the outcome through a oneshot channel and finishes the request
//! (`error_while_proxy`, `fail_to_proxy`, `logging`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, oneshot};

use super::engine_task::EngineTask;
use super::forward::{classify_body_error, classify_http1_body_error};
use super::grpc::GrpcStatus;
use crate::body::Progress;
use crate::buffers::HTTP1_UPSTREAM_BUFFER;
use crate::error::{Error, ErrorKind};
use crate::upstream::pool::Pool;
use crate::upstream::{UpstreamConn, UpstreamResponseBody};

/// How the response body ended.
#[derive(Debug)]
pub(crate) enum BodyOutcome {
    /// Forwarded whole; `grpc`: the `grpc-status` its trailers carried.
    Complete {
        bytes: u64,
        grpc: Option<Box<GrpcStatus>>,
    },
    /// The upstream broke off after `bytes` bytes.
    Failed { bytes: u64, error: Box<Error> },
    /// The downstream went away (or stopped reading) after `bytes` bytes.
    Abandoned { bytes: u64 },
}

impl BodyOutcome {
    /// The response body bytes forwarded, however it ended.
    pub(crate) fn bytes(&self) -> u64 {
        match self {
            BodyOutcome::Complete { bytes, .. }
            | BodyOutcome::Failed { bytes, .. }
            | BodyOutcome::Abandoned { bytes } => *bytes,
        }
    }
}

/// Streams an upstream response body downstream, then reports how it ended.
#[derive(Debug)]
pub(crate) struct PumpBody {
    upstream: UpstreamResponseBody,
    conn: Option<UpstreamConn>,
    request_body: Arc<Progress>,
    idle_timeout: Duration,
    /// Armed on the first wait only: most small bodies never wait, and a
    /// timer costs an allocation and a timer-wheel entry.
    idle: Option<Pin<Box<Sleep>>>,
    pool: Arc<Pool>,
    done: Option<oneshot::Sender<BodyOutcome>>,
    bytes: u64,
    failed: bool,
    /// The `grpc-status` of the trailers, once they passed.
    grpc: Option<Box<GrpcStatus>>,
}

impl PumpBody {
    /// Pump `upstream` downstream, failing if it is silent for `idle_timeout`;
    /// `conn` returns to `pool` at a clean end if the request body
    /// (`request_body`) went out whole too.
    pub(crate) fn new(
        upstream: UpstreamResponseBody,
        conn: UpstreamConn,
        request_body: Arc<Progress>,
        idle_timeout: Duration,
        pool: Arc<Pool>,
        done: oneshot::Sender<BodyOutcome>,
    ) -> Self {
        let mut pump = PumpBody {
            upstream,
            conn: Some(conn),
            request_body,
            idle_timeout,
            idle: None,
            pool,
            done: Some(done),
            bytes: 0,
            failed: false,
            grpc: None,
        };
        // An empty body (204, 304, HEAD, Content-Length: 0) is never polled.
        if pump.upstream.is_end_stream() {
            pump.complete();
        }
        pump
    }

    fn complete(&mut self) {
        // An upstream that answered before reading the whole request body
        // leaves the connection mid-request: not reusable.
        if let Some(conn) = self.conn.take()
            && self.request_body.finished()
        {
            self.pool.checkin(conn, std::time::Instant::now());
        }
        let grpc = self.grpc.take();
        self.report(BodyOutcome::Complete {
            bytes: self.bytes,
            grpc,
        });
    }

    /// The upstream body failed: drop its connection, tell the engine, and
    /// hand hyper the error that aborts the downstream response.
    fn fail(&mut self, error: Box<Error>) -> Box<Error> {
        self.conn = None;
        self.failed = true;
        let bytes = self.bytes;
        self.report(BodyOutcome::Failed { bytes, error });
        broke_off()
    }

    /// The upstream body's next frame, its failure named.
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Box<Error>>>> {
        match (&mut self.upstream, self.conn.as_mut()) {
            (UpstreamResponseBody::Http2(body), _) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(classify_body_error))),
            (UpstreamResponseBody::Http1(body), Some(conn)) => conn
                .poll_http1_body(cx, body, HTTP1_UPSTREAM_BUFFER)
                .map(|frame| frame.map(|f| f.map_err(classify_http1_body_error))),
            // Its connection went back or away only once the body ended.
            (UpstreamResponseBody::Http1(_), None) => Poll::Ready(None),
        }
    }

    fn report(&mut self, outcome: BodyOutcome) {
        if let Some(done) = self.done.take() {
            // The engine may be gone only if its task panicked; nothing to tell then.
            let _ = done.send(outcome);
        }
    }
}

impl Body for PumpBody {
    type Data = Bytes;
    type Error = Box<Error>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Box<Error>>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Some(Err(broke_off())));
        }
        let polled = this.poll_upstream(cx);
        if polled.is_pending() {
            let timeout = this.idle_timeout;
            let idle = this
                .idle
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            if idle.as_mut().poll(cx).is_ready() {
                let error = Error::explain(
                    ErrorKind::ResponseBodyTimedOut,
                    format!("no response body bytes for {:?}", this.idle_timeout),
                );
                return Poll::Ready(Some(Err(this.fail(error))));
            }
            return Poll::Pending;
        }
        if let Some(idle) = this.idle.as_mut() {
            idle.as_mut().reset(Instant::now() + this.idle_timeout);
        }
        match std::task::ready!(polled) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.grpc = GrpcStatus::from_fields(trailers).map(Box::new);
                }
                if this.upstream.is_end_stream() {
                    this.complete();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                // Reported on the next poll: the frames queued before it
                // (an HTTP/2 client's response head among them) go out
                // first; h2 drops what is still queued when a stream resets.
                this.fail(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => {
                this.complete();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.upstream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.upstream.size_hint()
    }
}

/// The error hyper gets: it makes hyper abort the downstream response.
fn broke_off() -> Box<Error> {
    Error::explain(
        ErrorKind::ReadError,
        "upstream response body broke off; aborting the downstream response",
    )
}

impl Drop for PumpBody {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.report(BodyOutcome::Abandoned { bytes });
    }
}

/// The body of every response the proxy sends downstream. It also drives
/// the request's engine to its end (`driver.rs`).
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
    engine: EngineTask,
}

// Nearly every response is a `Pump`: boxing it would add an allocation per
// request to save the rare `Full` a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Pump(PumpBody),
    /// Frames the engine passed through `response_body_filter`.
    Filtered(FilteredFrames),
}

/// A filtered response body's frames, on their way from the engine (which
/// reads the upstream's body and filters it) to the downstream connection.
pub(crate) type FilteredFrames = mpsc::Receiver<Result<Frame<Bytes>, Box<Error>>>;

/// The engine's end of [`FilteredFrames`].
pub(crate) type FilteredSender = mpsc::Sender<Result<Frame<Bytes>, Box<Error>>>;

/// A channel for a filtered body: one frame at a time, so the engine reads
/// the upstream no faster than the client takes the body.
pub(crate) fn filtered_channel() -> (FilteredSender, FilteredFrames) {
    mpsc::channel(1)
}

impl ResponseBody {
    /// A body the proxy made itself (an error page, a hook's answer).
    pub(crate) fn full(bytes: Bytes) -> Self {
        let bytes = (!bytes.is_empty()).then_some(bytes);
        ResponseBody {
            inner: Inner::Full(bytes),
            engine: EngineTask::none(),
        }
    }

    pub(crate) fn pump(pump: PumpBody) -> Self {
        ResponseBody {
            inner: Inner::Pump(pump),
            engine: EngineTask::none(),
        }
    }

    /// A body whose frames the engine sends through `frames`, filtered.
    pub(crate) fn filtered(frames: FilteredFrames) -> Self {
        ResponseBody {
            inner: Inner::Filtered(frames),
            engine: EngineTask::none(),
        }
    }

    /// This body, driving `engine` each time it is polled (and spawning it
    /// if dropped before the engine finished).
    pub(crate) fn driving(mut self, engine: EngineTask) -> Self {
        self.engine = engine;
        self
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<Error>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Box<Error>>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Pump(pump) => Pin::new(pump).poll_frame(cx),
            Inner::Filtered(frames) => {
                // The engine makes the frames: it runs first, and wakes this
                // connection when the upstream sends more.
                this.engine.poll_engine(cx);
                return frames.poll_recv(cx);
            }
        };
        // After the frame: the pump may just have told the engine the body
        // ended, and the engine can then finish in this same poll.
        this.engine.poll_from_body();
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Pump(pump) => pump.is_end_stream(),
            Inner::Filtered(frames) => frames.is_closed() && frames.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Pump(pump) => pump.size_hint(),
            // Its size is the filter's to decide.
            Inner::Filtered(_) => SizeHint::default(),
        }
    }
}
