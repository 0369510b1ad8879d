//! One request and its response on a client's HTTP/1.1 connection.
//!
//! A single future does all of it, on the connection's task: it polls the
//! request's engine until it answers, writes the response head, then moves
//! the response body to the socket; meanwhile it reads and decodes the
//! request body whenever the body asks for more (sending `100 Continue`
//! first if the client waits for it), and, once the request body is read,
//! watches the socket for the client leaving (as hyper did: a client that
//! closes its side during an exchange is gone, and its request's engine is
//! told). Bytes of a next, pipelined request stay in the read buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};

use super::wire::Wire;
use crate::body::client::Feed;
use crate::h1::body::BodyDecoder;
use crate::h1::chunked::Decoded;
use crate::h1::request::{BodyEncoder, BodySize};
use crate::h1::write_response::{Answering, encode_head};
use crate::h1::{CodecError, CodecErrorKind};
use crate::proxy::{ClientGone, Handling, ResponseBody, TunnelSlot};

/// Written before a body the client holds back until asked.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How much response body may wait in the output buffers before the
/// exchange stops taking more and writes (one more piece is taken while
/// below it, as hyper's write queue did).
const OUTPUT_HIGH_WATER: usize = crate::buffers::HTTP1_CLIENT_BUFFER;

/// How an exchange ended.
pub(super) enum Ended {
    /// The response went out whole; the connection may serve another
    /// request if `keep_alive`.
    Answered { keep_alive: bool },
    /// A 101 went out: the connection now carries the tunnel.
    Upgraded(TunnelSlot),
    /// The client left, the socket failed, or the response could not be
    /// finished: close the connection.
    Closed,
}

/// The request body on its way from the socket to the engine.
pub(super) struct Inbound {
    pub(super) feed: Feed,
    pub(super) decoder: BodyDecoder,
    /// `100 Continue` is owed before the first read.
    pub(super) expect_continue: bool,
    /// Read to its end (or failed, or abandoned).
    pub(super) done: bool,
}

impl Drop for Inbound {
    /// An exchange ended (the client left, a write timed out) with its body
    /// unread: whoever still reads it (the engine, on a task of its own)
    /// is told at once rather than left waiting.
    fn drop(&mut self) {
        if !self.done {
            self.feed.fail(
                io::ErrorKind::ConnectionAborted,
                "the client's connection closed inside the request body",
            );
        }
    }
}

/// Where the response is. Every exchange passes through `Body` (unless
/// its answer has no body): boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Stage {
    /// Waiting for the engine's answer.
    Head(Handling),
    /// Moving its body.
    Body {
        body: ResponseBody,
        encoder: BodyEncoder,
    },
    /// Written (or waiting to be flushed).
    Written,
}

/// One exchange on a connection.
pub(super) struct Exchange {
    stage: Stage,
    inbound: Option<Inbound>,
    answering: Answering,
    /// The client lets the connection serve another request.
    keep_alive: bool,
    /// The head went out with the connection kept.
    kept_by_head: bool,
    tunnel: Option<TunnelSlot>,
}

impl Exchange {
    /// An exchange awaiting `handling`'s answer to a request whose body
    /// comes through `inbound` (`None`: no body).
    pub(super) fn new(
        handling: Handling,
        inbound: Option<Inbound>,
        answering: Answering,
        keep_alive: bool,
    ) -> Self {
        Exchange {
            stage: Stage::Head(handling),
            inbound,
            answering,
            keep_alive,
            kept_by_head: false,
            tunnel: None,
        }
    }

    /// Move the exchange on as far as it goes. `stopping` says whether the
    /// server is shutting down (the connection then closes after it).
    pub(super) fn poll(
        &mut self,
        wire: &mut Wire,
        cx: &mut Context<'_>,
        stopping: bool,
    ) -> Poll<Ended> {
        loop {
            let mut progress = false;
            if let Some(inbound) = self.inbound.as_mut()
                && !inbound.done
            {
                let answered = !matches!(self.stage, Stage::Head(_));
                match feed_body(inbound, wire, cx, answered) {
                    Poll::Ready(()) => progress = true,
                    Poll::Pending => {}
                }
            }
            match self.poll_response(wire, cx, stopping) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(())) => return Poll::Ready(Ended::Closed),
                Poll::Pending => {}
            }
            if wire.has_output() {
                match wire.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(_)) => return Poll::Ready(Ended::Closed),
                    Poll::Pending => {}
                }
            }
            if self.body_read() && !matches!(self.stage, Stage::Written) {
                match watch_client(wire, cx) {
                    Poll::Ready(true) => progress = true,
                    Poll::Ready(false) => return Poll::Ready(Ended::Closed),
                    Poll::Pending => {}
                }
            }
            if let Some(ended) = self.ended(wire) {
                return Poll::Ready(ended);
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Whether the request body was read (or there was none).
    fn body_read(&self) -> bool {
        self.inbound.as_ref().is_none_or(|inbound| inbound.done)
    }

    /// The outcome, once the response is written out and the request body
    /// is read or given up.
    fn ended(&mut self, wire: &Wire) -> Option<Ended> {
        if !matches!(self.stage, Stage::Written) || wire.has_output() {
            return None;
        }
        if let Some(tunnel) = self.tunnel.take() {
            return Some(Ended::Upgraded(tunnel));
        }
        let body_complete = match &self.inbound {
            None => true,
            // Someone still reads it (the engine draining what the upstream
            // left): keep feeding until it is done or dropped.
            Some(inbound) if !inbound.done && !inbound.feed.abandoned() => return None,
            Some(inbound) => inbound.decoder.is_end(),
        };
        Some(Ended::Answered {
            keep_alive: self.kept_by_head && body_complete,
        })
    }

    /// Poll the engine for the head, or the body for its next frames.
    /// `Ok(())` when something moved; `Err` when the connection must close.
    fn poll_response(
        &mut self,
        wire: &mut Wire,
        cx: &mut Context<'_>,
        stopping: bool,
    ) -> Poll<Result<(), ()>> {
        let mut moved = false;
        if let Stage::Head(handling) = &mut self.stage {
            let response = match std::task::ready!(Pin::new(handling).poll(cx)) {
                Ok(response) => response,
                Err(ClientGone) => return Poll::Ready(Err(())),
            };
            self.start_response(response, wire, stopping);
            // On to the body at once: a small response leaves in one write.
            moved = true;
        }
        match &mut self.stage {
            Stage::Head(_) => Poll::Pending,
            Stage::Body { body, encoder } => {
                while wire.pending_output() < OUTPUT_HIGH_WATER {
                    match Pin::new(&mut *body).poll_frame(cx) {
                        Poll::Pending => break,
                        Poll::Ready(Some(Ok(frame))) => {
                            moved = true;
                            if let Err(e) = put_frame(frame, encoder, wire) {
                                tracing::debug!(error = %e, "response body does not fit its framing");
                                return Poll::Ready(Err(()));
                            }
                        }
                        Poll::Ready(None) => {
                            if encoder.end(None, wire.out()).is_err() {
                                return Poll::Ready(Err(()));
                            }
                            self.stage = Stage::Written;
                            return Poll::Ready(Ok(()));
                        }
                        // The response cannot be finished: closing the
                        // connection tells the client it is cut short.
                        Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(())),
                    }
                    if encoder_finished(encoder) {
                        self.stage = Stage::Written;
                        return Poll::Ready(Ok(()));
                    }
                }
                if moved {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            Stage::Written if moved => Poll::Ready(Ok(())),
            Stage::Written => Poll::Pending,
        }
    }

    /// Write the head of `response` and get ready for its body.
    fn start_response(
        &mut self,
        response: Response<ResponseBody>,
        wire: &mut Wire,
        stopping: bool,
    ) {
        let (mut head, body) = response.into_parts();
        let size = BodySize::of(&body);
        // A request body given up unread (refused, or malformed) cannot be
        // skipped: the answer says the connection closes.
        let body_lost = self.inbound.as_ref().is_some_and(|inbound| {
            !inbound.decoder.is_end() && (inbound.done || inbound.feed.abandoned())
        });
        let keep_alive = self.keep_alive && !stopping && !body_lost;
        let written = encode_head(&mut head, size, self.answering, keep_alive, wire.out());
        self.kept_by_head = written.keep_alive;
        if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
            self.tunnel = head.extensions.remove::<TunnelSlot>();
        }
        let no_body = matches!(written.encoder, BodyEncoder::Length(0));
        if no_body || self.tunnel.is_some() {
            // Dropping the body lets the engine finish on its own task.
            drop(body);
            self.stage = Stage::Written;
        } else {
            self.stage = Stage::Body {
                body,
                encoder: written.encoder,
            };
        }
    }
}

/// Whether a length-framed body has sent all it declared.
fn encoder_finished(encoder: &BodyEncoder) -> bool {
    matches!(encoder, BodyEncoder::Length(0))
}

/// Frame one response body frame into the output.
fn put_frame(
    frame: Frame<Bytes>,
    encoder: &mut BodyEncoder,
    wire: &mut Wire,
) -> Result<(), CodecError> {
    match frame.into_data() {
        Ok(data) => {
            let framed = encoder.data(data, wire.out())?;
            if !framed.data.is_empty() {
                wire.put_data(framed.data);
            }
            if framed.crlf {
                wire.out().extend_from_slice(b"\r\n");
            }
            Ok(())
        }
        Err(frame) => {
            let trailers = frame.into_trailers().ok();
            encoder.end(trailers.as_ref(), wire.out())?;
            // Nothing may follow the trailers.
            *encoder = BodyEncoder::Length(0);
            Ok(())
        }
    }
}

/// Hand the request body its next piece if it wants one. Ready when
/// something changed (a piece given, the body ended or failed, or bytes
/// read).
fn feed_body(
    inbound: &mut Inbound,
    wire: &mut Wire,
    cx: &mut Context<'_>,
    answered: bool,
) -> Poll<()> {
    if inbound.feed.abandoned() {
        inbound.done = true;
        return Poll::Ready(());
    }
    if !inbound.feed.poll_wanted(cx) {
        return Poll::Pending;
    }
    if inbound.expect_continue {
        inbound.expect_continue = false;
        // Once the answer is out, the client knows not to wait.
        if !answered {
            wire.out().extend_from_slice(CONTINUE);
        }
    }
    match inbound.decoder.decode(&mut wire.read) {
        Ok(Decoded::Data(data)) => {
            inbound.feed.give(Frame::data(data));
            if inbound.decoder.is_end() {
                inbound.feed.finish();
                inbound.done = true;
            }
        }
        Ok(Decoded::Trailers(trailers)) => {
            inbound.feed.give(Frame::trailers(trailers));
            inbound.feed.finish();
            inbound.done = true;
        }
        Ok(Decoded::End) => {
            inbound.feed.finish();
            inbound.done = true;
        }
        // A `100 Continue` just put in the output goes out in this same
        // poll of the exchange, right after this.
        Ok(Decoded::NeedMore) => return read_body(inbound, wire, cx),
        Err(e) => fail(inbound, &e),
    }
    Poll::Ready(())
}

/// Read more of the request body from the socket.
fn read_body(inbound: &mut Inbound, wire: &mut Wire, cx: &mut Context<'_>) -> Poll<()> {
    match std::task::ready!(wire.poll_read_some(cx)) {
        Ok(0) => match inbound.decoder.closed() {
            Ok(_) => {
                inbound.feed.finish();
                inbound.done = true;
            }
            Err(_) => {
                inbound.feed.fail(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection inside the request body",
                );
                inbound.done = true;
            }
        },
        Ok(_) => {}
        Err(e) => {
            inbound
                .feed
                .fail(e.kind(), "reading the request body from the client");
            inbound.done = true;
        }
    }
    Poll::Ready(())
}

/// A malformed request body: the engine answers 400 (or cuts its answer
/// short), and the connection closes after this exchange.
fn fail(inbound: &mut Inbound, e: &CodecError) {
    let kind = match e.kind() {
        CodecErrorKind::Incomplete => io::ErrorKind::UnexpectedEof,
        _ => io::ErrorKind::InvalidData,
    };
    inbound.feed.fail(kind, e.what());
    inbound.done = true;
}

/// Watch a busy connection for its client leaving. Ready(true) when bytes
/// came (a pipelined request, kept for later), Ready(false) at the end of
/// the stream or an error; only read while nothing is buffered.
fn watch_client(wire: &mut Wire, cx: &mut Context<'_>) -> Poll<bool> {
    if !wire.read.is_empty() {
        return Poll::Pending;
    }
    match std::task::ready!(wire.poll_read_some(cx)) {
        Ok(0) | Err(_) => Poll::Ready(false),
        Ok(_) => Poll::Ready(true),
    }
}
