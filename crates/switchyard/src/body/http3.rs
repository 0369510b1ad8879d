//! An HTTP/3 request's body, read from its QUIC stream as the engine asks:
//! the DATA frames, then the trailers if the client sent any.

use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};

/// The receiving half of an HTTP/3 request stream.
pub(crate) type RecvStream = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// [`ClientBody::Http3`](super::client::ClientBody::Http3).
pub(crate) struct Http3Body {
    stream: RecvStream,
    /// What `Content-Length` said, when it did.
    length: Option<u64>,
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
            state,
        }
    }

    /// The next frame: data, then trailers, then the end.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h3::error::StreamError>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Data => match std::task::ready!(self.stream.poll_recv_data(cx)) {
                    Ok(Some(mut data)) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        if bytes.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Ok(None) => self.state = State::Trailers,
                    Err(e) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                State::Trailers => {
                    let trailers = std::task::ready!(self.stream.poll_recv_trailers(cx));
                    self.state = State::Done;
                    return Poll::Ready(match trailers {
                        Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                        Ok(None) => None,
                        Err(e) => Some(Err(e)),
                    });
                }
            }
        }
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
