//! An HTTP/3 request's body, read from its QUIC stream as the engine asks:
//! the DATA frames, then the trailers if the client sent any.

use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};

/// Why an HTTP/3 request body could not be read to its end.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The receiving half of an HTTP/3 request stream.
pub(crate) type RecvStream = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// [`ClientBody::Http3`](super::client::ClientBody::Http3).
pub(crate) struct Http3Body {
    stream: RecvStream,
    /// What `Content-Length` said, when it did.
    length: Option<u64>,
    /// Body bytes received so far.
    received: u64,
    /// Where reading is.
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

impl std::fmt::Debug for Http3Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http3Body")
            .field("length", &self.length)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Http3Body {
    /// The body on `stream`; `length` from the request's `Content-Length`
    /// (`Some(0)`: no body).
    pub(crate) fn new(stream: RecvStream, length: Option<u64>) -> Self {
        let state = if length == Some(0) {
            State::Done
        } else {
            State::Data
        };
        Http3Body {
            stream,
            length,
            received: 0,
            state,
        }
    }

    /// The next frame: data, then trailers, then the end. A body longer or
    /// shorter than its `Content-Length` is an error (a malformed request,
    /// RFC 9114 section 4.1.2), never passed on as complete.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Data => match std::task::ready!(self.stream.poll_recv_data(cx)) {
                    Ok(Some(mut data)) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        if bytes.is_empty() {
                            continue;
                        }
                        self.received += bytes.len() as u64;
                        if self.length.is_some_and(|length| self.received > length) {
                            return Poll::Ready(Some(Err(self.malformed("more"))));
                        }
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Ok(None) => {
                        if self.length.is_some_and(|length| self.received != length) {
                            return Poll::Ready(Some(Err(self.malformed("fewer"))));
                        }
                        self.state = State::Trailers;
                    }
                    Err(e) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                State::Trailers => {
                    let trailers = std::task::ready!(self.stream.poll_recv_trailers(cx));
                    self.state = State::Done;
                    return Poll::Ready(match trailers {
                        Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    });
                }
            }
        }
    }

    /// The body broke its `Content-Length`: it ends here, with an error.
    fn malformed(&mut self, how: &str) -> BodyError {
        self.state = State::Done;
        self.stream.stop_sending(h3::error::Code::H3_MESSAGE_ERROR);
        format!(
            "the HTTP/3 request body has {how} bytes than its Content-Length of {}",
            self.length.unwrap_or_default()
        )
        .into()
    }

    /// Whether nothing more will come.
    pub(crate) fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    /// What `Content-Length` said.
    pub(crate) fn size_hint(&self) -> SizeHint {
        match (self.state, self.length) {
            (State::Done, _) => SizeHint::with_exact(0),
            (_, Some(length)) => SizeHint::with_exact(length),
            (_, None) => SizeHint::default(),
        }
    }
}
