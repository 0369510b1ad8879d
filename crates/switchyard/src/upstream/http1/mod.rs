//! An HTTP/1.1 connection to an upstream, driven by the request's own
//! task with Switchyard's codec (`crate::h1`), instead of a task and a
//! channel of hyper's per connection.
//!
//! [`Http1Conn::start`] writes the request head into the output buffer;
//! [`Http1Conn::poll_response`] sends it with its body while reading the
//! response head; [`Http1Conn::poll_body`] reads the response body, and
//! keeps sending the request body if the upstream answered before taking
//! all of it. Nothing runs while the connection is idle in the pool: that
//! the upstream closed it is seen when it is next looked at
//! ([`Http1Conn::is_closed`], no system call unless the socket is readable).
//! After a 101 the connection is a plain byte stream (its `AsyncRead` gives
//! what the upstream sent after the head first).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

use crate::h1::CodecError;
use crate::h1::body::BodyDecoder;
use crate::h1::chunked::Decoded;
use crate::h1::request::{self, BodyEncoder, BodySize};
use crate::h1::response::{self, ParsedResponse};
use crate::upstream::UpstreamRequest;
pub(crate) use send::SendError;
use send::{Outgoing, Sending};
pub(crate) use socket::UpstreamIo;

mod send;
mod socket;

/// How much is read at once while a response head is awaited.
const HEAD_READ: usize = 8 * 1024;

/// Why an exchange produced no response head.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// Sending the request failed, and the upstream said nothing.
    Send(SendError),
    /// Reading failed before a whole head arrived.
    Read(io::Error),
    /// The upstream closed the connection before a whole head.
    Closed,
    /// The response head is not valid HTTP/1.1, or over the limits.
    Invalid(CodecError),
}

/// Why a response body broke off.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The request body, still being sent, failed.
    Send(SendError),
    /// Reading failed.
    Read(io::Error),
    /// The body is not valid, or the connection ended inside it.
    Invalid(CodecError),
}

/// An HTTP/1.1 connection to an upstream.
#[derive(Debug)]
pub(crate) struct Http1Conn {
    io: UpstreamIo,
    read: BytesMut,
    out: Outgoing,
    /// The request body still going out.
    sending: Option<Sending>,
    /// Sending failed; the response may still come.
    send_failed: Option<SendError>,
    /// The request in flight is a `HEAD` (its answer has no body).
    to_head: bool,
    /// The last response let the connection serve another request.
    keep_alive: bool,
    /// Upgraded by a 101: a byte stream now.
    upgraded: bool,
    /// The upstream closed it, or it failed.
    closed: bool,
    /// A body read just brought bytes: the next one yields first.
    turn_before_read: bool,
}

impl Http1Conn {
    /// A connection over `io`, with nothing sent yet.
    pub(crate) fn new(io: UpstreamIo) -> Self {
        Http1Conn {
            io,
            read: BytesMut::new(),
            out: Outgoing::default(),
            sending: None,
            send_failed: None,
            to_head: false,
            keep_alive: true,
            upgraded: false,
            closed: false,
            turn_before_read: false,
        }
    }

    /// Whether the connection can take no further request: the upstream
    /// closed it (or sent bytes nobody asked for), the last exchange did
    /// not end cleanly, or its response said so. Reads only when the
    /// socket is readable, without waiting.
    pub(crate) fn is_closed(&mut self) -> bool {
        if self.unusable() {
            return true;
        }
        let mut probe = [0u8; 1];
        let open = match &mut self.io {
            // No system call unless the socket is readable.
            UpstreamIo::Tcp(tcp) => matches!(
                tcp.try_read(&mut probe),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            UpstreamIo::Unix(unix) => matches!(
                unix.try_read(&mut probe),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            UpstreamIo::Tls(tls) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        };
        // Closed, failed, or bytes before any request: unusable.
        self.closed |= !open;
        !open
    }

    /// Whether the last exchange left the connection unable to take
    /// another request (without looking at the socket).
    fn unusable(&self) -> bool {
        self.closed
            || !self.keep_alive
            || self.upgraded
            || self.sending.is_some()
            || self.send_failed.is_some()
            || !self.out.is_empty()
            || !self.read.is_empty()
    }

    /// Write the head of `request` into the output buffer and keep its
    /// body to send; the request comes back if the connection is known to
    /// be unusable (nothing was sent). The socket itself was looked at
    /// when the connection left the pool.
    pub(crate) fn start(&mut self, request: UpstreamRequest) -> Result<(), Box<UpstreamRequest>> {
        if self.unusable() {
            return Err(Box::new(request));
        }
        let (mut head, body) = request.into_parts();
        let encoder = request::encode_head(&mut head, BodySize::of(&body), &mut self.out.buf);
        self.to_head = head.method == http::Method::HEAD;
        self.turn_before_read = false;
        self.keep_alive = !request::asks_close(&head.headers);
        // A body framed as none (a `GET` of unknown length) is not sent:
        // the request is all out once its head is, and the response
        // timeout runs from then (not from the client's end of stream).
        self.sending = match encoder {
            BodyEncoder::Length(0) => {
                body.not_sent();
                None
            }
            encoder => Some(Sending::new(body, encoder)),
        };
        Ok(())
    }

    /// Send the request while waiting for the response head. A failed
    /// send is reported only if no head comes: an upstream may answer
    /// before it takes the whole body, then close.
    pub(crate) fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<ParsedResponse, ExchangeError>> {
        loop {
            if let Err(e) = self.poll_sending(cx) {
                return Poll::Ready(Err(ExchangeError::Send(e)));
            }
            match response::parse(&mut self.read, self.to_head) {
                Ok(Some(parsed)) => return Poll::Ready(Ok(self.answered(parsed))),
                Ok(None) => {}
                Err(e) => {
                    self.closed = true;
                    return Poll::Ready(Err(ExchangeError::Invalid(e)));
                }
            }
            let ended = match std::task::ready!(self.poll_fill(cx, HEAD_READ)) {
                Ok(0) => ExchangeError::Closed,
                Ok(_) => continue,
                Err(e) => ExchangeError::Read(e),
            };
            // No head: a failed send, if there was one, is what went wrong.
            self.closed = true;
            let error = self.send_failed.take().map_or(ended, ExchangeError::Send);
            return Poll::Ready(Err(error));
        }
    }

    /// Drive the request out. A body failure ends the exchange at once; a
    /// socket failure is kept, and the response still awaited.
    fn poll_sending(&mut self, cx: &mut Context<'_>) -> Result<(), SendError> {
        if self.send_failed.is_some() || (self.sending.is_none() && self.out.is_empty()) {
            return Ok(());
        }
        match send::poll_send(&mut self.sending, &mut self.out, &mut self.io, cx) {
            Poll::Pending | Poll::Ready(Ok(())) => Ok(()),
            Poll::Ready(Err(SendError::Io(e))) => {
                self.sending = None;
                self.out.clear();
                self.send_failed = Some(SendError::Io(e));
                Ok(())
            }
            Poll::Ready(Err(e)) => {
                self.closed = true;
                Err(e)
            }
        }
    }

    fn answered(&mut self, parsed: ParsedResponse) -> ParsedResponse {
        self.keep_alive &= parsed.keep_alive;
        if parsed.upgrade {
            self.upgraded = true;
            self.sending = None;
        }
        parsed
    }

    /// Read at most `want` more bytes into the read buffer. The cap keeps
    /// the pieces of a large body at the size measured for it
    /// ([`HTTP1_UPSTREAM_BUFFER`](crate::buffers::HTTP1_UPSTREAM_BUFFER)),
    /// however much room the buffer grew.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < want / 2 {
            self.read.reserve(want);
        }
        let mut limited = (&mut self.read).limit(want);
        poll_read_buf(Pin::new(&mut self.io), cx, &mut limited)
    }

    /// The next frame of the response body `body`, sending on what is left
    /// of the request body first.
    pub(crate) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut BodyDecoder,
        chunk: usize,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Err(e) = self.poll_sending(cx) {
            return Poll::Ready(Some(Err(BodyError::Send(e))));
        }
        loop {
            match body.decode(&mut self.read) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::Trailers(trailers)) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(e) => return Poll::Ready(Some(Err(self.body_failed(BodyError::Invalid(e))))),
            }
            // Between two reads of one body, the runtime gets a turn first
            // (what hyper's client got by reading on a task of its own):
            // large bodies moved 7-10% slower without it.
            if std::mem::take(&mut self.turn_before_read) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match std::task::ready!(self.poll_fill(cx, body.read_size(chunk))) {
                Ok(0) => {
                    self.closed = true;
                    return match body.closed() {
                        Ok(_) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(BodyError::Invalid(e)))),
                    };
                }
                Ok(_) => self.turn_before_read = true,
                Err(e) => return Poll::Ready(Some(Err(self.body_failed(BodyError::Read(e))))),
            }
        }
    }

    fn body_failed(&mut self, error: BodyError) -> BodyError {
        self.closed = true;
        error
    }
}

/// After a 101: what the upstream sent after its head, then the socket.
impl AsyncRead for Http1Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Http1Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
