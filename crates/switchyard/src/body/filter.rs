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
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::error::{Error, ErrorKind, Result, Side};

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
    fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Result<()>;
}

impl<F> RequestBodyFilter for F
where
    F: FnMut(&mut Option<Bytes>, bool) -> Result<()> + Send + 'static,
{
    fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Result<()> {
        self(body, end_of_stream)
    }
}

/// What became of a request's body filter: its error once it failed,
/// shared by the body and the engine.
#[derive(Debug, Default)]
pub(crate) struct FilterStatus {
    failure: OnceLock<(ErrorKind, String)>,
}

impl FilterStatus {
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
    filter: Option<Box<dyn RequestBodyFilter>>,
    status: Arc<FilterStatus>,
    /// The end-of-stream call was made (or the filter failed).
    done: bool,
    /// Trailers that came before the end-of-stream call added bytes.
    trailers: Option<HeaderMap>,
}

impl<B: fmt::Debug> fmt::Debug for FilteredBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilteredBody")
            .field("inner", &self.inner)
            .field("filtered", &self.filter.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl<B> FilteredBody<B> {
    /// `inner`, with no filter yet.
    pub fn new(inner: B) -> Self {
        FilteredBody {
            inner,
            filter: None,
            status: Arc::default(),
            done: false,
            trailers: None,
        }
    }

    /// Set its filter; returns the filter's status.
    pub(super) fn set(&mut self, filter: Box<dyn RequestBodyFilter>) -> Arc<FilterStatus> {
        let old = self.filter.replace(filter);
        debug_assert!(old.is_none(), "a request has one body filter");
        Arc::clone(&self.status)
    }

    /// Call the filter on `piece`, catching a panic; on failure the filter
    /// is dropped and its error recorded.
    fn call(
        &mut self,
        piece: &mut Option<Bytes>,
        end: bool,
    ) -> std::result::Result<(), FilterFailed> {
        let Some(filter) = self.filter.as_mut() else {
            return Ok(());
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
    fn finish(&mut self) -> std::result::Result<Option<Bytes>, FilterFailed> {
        self.done = true;
        let mut last = None;
        self.call(&mut last, true)?;
        Ok(last.filter(|b| !b.is_empty()))
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

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            if this.status.failure.get().is_some() {
                return Poll::Ready(Some(Err(Box::new(FilterFailed))));
            }
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        if this.filter.is_none() {
            return Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into);
        }
        loop {
            let frame = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    return Poll::Ready(match this.finish() {
                        Ok(added) => added.map(|data| Ok(Frame::data(data))),
                        Err(failed) => Some(Err(Box::new(failed))),
                    });
                }
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let mut piece = Some(data);
                    if let Err(failed) = this.call(&mut piece, false) {
                        return Poll::Ready(Some(Err(Box::new(failed))));
                    }
                    match piece {
                        Some(data) if !data.is_empty() => Frame::data(data),
                        // Dropped: read on.
                        _ => continue,
                    }
                }
                // Trailers end the body: the last call comes before them.
                Err(frame) => match this.finish() {
                    Ok(Some(added)) => {
                        this.trailers = frame.into_trailers().ok();
                        Frame::data(added)
                    }
                    Ok(None) => frame,
                    Err(failed) => return Poll::Ready(Some(Err(Box::new(failed)))),
                },
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return self.trailers.is_none() && self.status.failure.get().is_none();
        }
        // With a filter, the end-of-stream call is still to come.
        self.filter.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.filter {
            _ if self.done => SizeHint::default(),
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests;
