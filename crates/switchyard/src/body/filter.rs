//! A request body changed on its way upstream: a [`RequestBodyFilter`]
//! that `ProxyHttp::request_body_filter` returns sees each piece of the
//! client's body as it is read, with an end-of-stream call where bytes may
//! still be added, and may change, replace or drop each piece.
//!
//! The filter sits between the client's body (already cut at its size
//! limit) and the replay buffer: it runs once per piece, where the upstream
//! connection reads the body (as fast as the upstream takes it), and a
//! retry replays the filtered bytes without calling it again. A filter
//! that fails or panics ends the request with its error; it is never
//! called again.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::error::{Error, ErrorKind, Side};

/// Changes a request body piece by piece (see the module docs).
///
/// A closure `FnMut(&mut Option<Bytes>, bool) -> Result<()>` is one.
pub trait RequestBodyFilter: Send + 'static {
    /// Change one piece of the body: `body` is the piece, to change,
    /// replace or drop (`None`). `end_of_stream` is set on the last call,
    /// made with `None` once the client's body ended (before its trailers),
    /// where bytes may still be added. An error ends the request: no
    /// retry, the client gets the error's status (a downstream kind such as
    /// `InvalidDownstreamRequest` is the client's fault, 400; an upstream
    /// kind is taken as `Internal`).
    fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool)
    -> crate::error::Result<()>;
}

impl<F> RequestBodyFilter for F
where
    F: FnMut(&mut Option<Bytes>, bool) -> crate::error::Result<()> + Send + 'static,
{
    fn filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> crate::error::Result<()> {
        self(body, end_of_stream)
    }
}

/// What became of a request's body filter, shared by the body and the
/// engine: its error once it failed, how much of the client's body it took
/// in (progress, whatever it passed on), and whether the engine turned it
/// off (the body is then only drained).
#[derive(Debug, Default)]
pub(crate) struct FilterStatus {
    failure: OnceLock<(ErrorKind, String)>,
    consumed: AtomicU64,
    bypassed: AtomicBool,
}

impl FilterStatus {
    /// Bytes of the client's body the filter took in so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Acquire)
    }

    /// Read the rest of the client's body past the filter: no attempt
    /// needs it any more, it is only drained.
    pub(crate) fn bypass(&self) {
        self.bypassed.store(true, Ordering::Release);
    }

    fn bypassed(&self) -> bool {
        self.bypassed.load(Ordering::Acquire)
    }

    /// The filter's failure, as the error the request ends with.
    pub(crate) fn failure(&self) -> Option<Box<Error>> {
        let (kind, context) = self.failure.get()?;
        Some(Error::explain(*kind, context.clone()))
    }

    fn fail(&self, e: &Error) {
        // An error of the upstream's kind would look like the upstream's
        // fault and be retried; the filter is ours.
        let kind = match e.side() {
            Side::Upstream => ErrorKind::Internal,
            _ => e.kind(),
        };
        let _ = self
            .failure
            .set((kind, format!("request_body_filter: {e}")));
    }
}

/// The filter's failure, as the cause of the body's error.
#[derive(Debug)]
pub(crate) struct FilterFailed;

impl fmt::Display for FilterFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request_body_filter failed")
    }
}

impl std::error::Error for FilterFailed {}

/// The client's body, through the request's filter once one is set.
pub struct FilteredBody<B> {
    inner: B,
    /// Boxed: most requests have no filter, and the body is moved between
    /// attempts.
    filtering: Option<Box<Filtering>>,
}

/// A set filter and where it got.
struct Filtering {
    /// `None` once it failed.
    filter: Option<Box<dyn RequestBodyFilter>>,
    status: Arc<FilterStatus>,
    /// Nothing more is read from the client's body: it ended (the
    /// end-of-stream call was made), it failed, or the filter did.
    done: bool,
    /// Bytes the end-of-stream call added, when they could not go at once
    /// (the client had sent no body).
    added: Option<Bytes>,
    /// Trailers that came before the end-of-stream call added bytes.
    trailers: Option<HeaderMap>,
    /// The client's body failed: later reads fail too.
    inner_failed: bool,
}

/// A filter just set: its status, and whether the request's framing
/// changes (no `Content-Length`; chunked over HTTP/1.1). It does not when
/// the client sent no body and the end-of-stream call, made at once,
/// added nothing: a `GET` stays a `GET` without a body.
pub(crate) struct FilterSet {
    pub(crate) status: Arc<FilterStatus>,
    pub(crate) reframes: bool,
}

impl<B: fmt::Debug> fmt::Debug for FilteredBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilteredBody")
            .field("inner", &self.inner)
            .field("filtered", &self.filtering.is_some())
            .finish()
    }
}

impl<B> FilteredBody<B> {
    /// `inner`, with no filter yet.
    pub fn new(inner: B) -> Self {
        FilteredBody {
            inner,
            filtering: None,
        }
    }
}

impl<B> FilteredBody<B> {
    /// Its filter, unless it has none or was bypassed.
    fn active(&self) -> Option<&Filtering> {
        self.filtering.as_deref().filter(|f| !f.status.bypassed())
    }
}

impl<B: Body> FilteredBody<B> {
    /// Set its filter. A client that sent no body gets the end-of-stream
    /// call at once.
    pub(super) fn set(&mut self, filter: Box<dyn RequestBodyFilter>) -> FilterSet {
        debug_assert!(self.filtering.is_none(), "a request has one body filter");
        let status = Arc::new(FilterStatus::default());
        let mut filtering = Box::new(Filtering {
            filter: Some(filter),
            status: Arc::clone(&status),
            done: false,
            added: None,
            trailers: None,
            inner_failed: false,
        });
        let reframes = !self.inner.is_end_stream()
            || match filtering.finish() {
                Ok(added) => {
                    filtering.added = added;
                    filtering.added.is_some()
                }
                // The request fails as its body is read.
                Err(FilterFailed) => true,
            };
        self.filtering = Some(filtering);
        FilterSet { status, reframes }
    }
}

impl Filtering {
    /// Call the filter on `piece`, catching a panic; on failure the filter
    /// is dropped and its error recorded.
    fn call(&mut self, piece: &mut Option<Bytes>, end: bool) -> Result<(), FilterFailed> {
        let Some(filter) = self.filter.as_mut() else {
            return Err(FilterFailed);
        };
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| filter.filter(piece, end)));
        let error = match called {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => Error::explain(ErrorKind::Internal, "the filter panicked"),
        };
        self.status.fail(&error);
        self.filter = None;
        self.done = true;
        Err(FilterFailed)
    }

    /// The end-of-stream call; `Some` bytes it added.
    fn finish(&mut self) -> Result<Option<Bytes>, FilterFailed> {
        self.done = true;
        let mut last = None;
        self.call(&mut last, true)?;
        Ok(last.filter(|b| !b.is_empty()))
    }

    /// What comes once nothing more is read from the client: the
    /// filter's or the client's failure again, or what was held back.
    fn after_end(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        if self.filter.is_none() {
            return Some(Err(Box::new(FilterFailed)));
        }
        if self.inner_failed {
            let e = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the client's request body failed",
            );
            return Some(Err(Box::new(e)));
        }
        if let Some(data) = self.added.take() {
            return Some(Ok(Frame::data(data)));
        }
        self.trailers.take().map(|t| Ok(Frame::trailers(t)))
    }

    /// Whether everything was passed on, cleanly.
    fn ended(&self) -> bool {
        self.done
            && self.filter.is_some()
            && !self.inner_failed
            && self.added.is_none()
            && self.trailers.is_none()
    }

    /// The next frame of `inner`, through the filter.
    fn poll_through<B>(
        &mut self,
        inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let inner = inner.get_mut();
        loop {
            let frame = match std::task::ready!(Pin::new(&mut *inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    // No end-of-stream call on a body cut short.
                    self.done = true;
                    self.inner_failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    return Poll::Ready(match self.finish() {
                        Ok(added) => added.map(|data| Ok(Frame::data(data))),
                        Err(failed) => Some(Err(Box::new(failed))),
                    });
                }
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    self.status
                        .consumed
                        .fetch_add(data.len() as u64, Ordering::AcqRel);
                    let mut piece = Some(data);
                    if let Err(failed) = self.call(&mut piece, false) {
                        return Poll::Ready(Some(Err(Box::new(failed))));
                    }
                    match piece {
                        Some(data) if !data.is_empty() => Frame::data(data),
                        // Dropped: read on.
                        _ => continue,
                    }
                }
                // Trailers end the body: the last call comes before them.
                Err(frame) => match self.finish() {
                    Ok(Some(added)) => {
                        self.trailers = frame.into_trailers().ok();
                        Frame::data(added)
                    }
                    Ok(None) => frame,
                    Err(failed) => return Poll::Ready(Some(Err(Box::new(failed)))),
                },
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for FilteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let active = this
            .filtering
            .as_deref_mut()
            .filter(|f| !f.status.bypassed());
        match active {
            None => Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into),
            Some(filtering) if filtering.done => Poll::Ready(filtering.after_end()),
            Some(filtering) => filtering.poll_through(Pin::new(&mut this.inner), cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self.active() {
            None => self.inner.is_end_stream(),
            // Else the end-of-stream call, bytes held back or a failure
            // are still to come.
            Some(f) => f.ended(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self.active() {
            None => self.inner.size_hint(),
            Some(f) if f.ended() => SizeHint::with_exact(0),
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
