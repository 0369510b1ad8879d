//! The origin's side of one raw TCP connection: a read buffer, the request
//! head (parsed with `httparse`, at most 64 KiB) and the request body
//! (Content-Length or chunked, decoded by hand including trailers).

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest request head the origin accepts.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in one head.
const MAX_HEADERS: usize = 256;
/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 64 * 1024;

/// A parsed request head.
pub(super) struct Head {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) headers: HeaderMap,
    /// The client asked to close after this exchange (`Connection: close`, or
    /// HTTP/1.0 without `keep-alive`).
    pub(super) close: bool,
    pub(super) expect_continue: bool,
    pub(super) framing: Framing,
}

/// How the request body is delimited.
pub(super) enum Framing {
    Length(u64),
    Chunked,
}

/// A request body as read: the decoded bytes and whether all of it arrived.
pub(super) struct Body {
    pub(super) bytes: Vec<u8>,
    pub(super) complete: bool,
}

/// One accepted connection with its read buffer.
pub(super) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// Reads more bytes into the buffer; `false` on EOF or error.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(16 * 1024);
        matches!(self.stream.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Reads the next request head. `None` means the connection should end:
    /// the client closed it, or sent a head that is malformed or too large.
    pub(super) async fn read_head(&mut self) -> Option<Head> {
        loop {
            if !self.buf.is_empty() {
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut fields);
                match req.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = Head::from_parsed(&req);
                        self.buf.advance(len);
                        return head;
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return None,
                }
            }
            if self.buf.len() >= MAX_HEAD || !self.fill().await {
                return None;
            }
        }
    }

    /// Reads the body described by `framing`, calling `on_bytes` with the
    /// size of each decoded piece as it arrives.
    pub(super) async fn read_body(
        &mut self,
        framing: &Framing,
        on_bytes: &(dyn Fn(usize) + Sync),
    ) -> Body {
        let mut bytes = Vec::new();
        let complete = match framing {
            Framing::Length(len) => self.read_exact(*len, &mut bytes, on_bytes).await,
            Framing::Chunked => self.read_chunked(&mut bytes, on_bytes).await,
        };
        Body { bytes, complete }
    }

    async fn read_exact(
        &mut self,
        len: u64,
        out: &mut Vec<u8>,
        on_bytes: &(dyn Fn(usize) + Sync),
    ) -> bool {
        let mut remaining = len;
        while remaining > 0 {
            if self.buf.is_empty() && !self.fill().await {
                return false;
            }
            let take = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            out.extend_from_slice(&self.buf.split_to(take));
            on_bytes(take);
            remaining -= take as u64;
        }
        true
    }

    async fn read_chunked(&mut self, out: &mut Vec<u8>, on_bytes: &(dyn Fn(usize) + Sync)) -> bool {
        loop {
            let Some(line) = self.read_line().await else {
                return false;
            };
            let size = line.split(';').next().unwrap_or("").trim();
            let Ok(size) = u64::from_str_radix(size, 16) else {
                return false;
            };
            if size == 0 {
                // The trailer section ends with an empty line.
                loop {
                    match self.read_line().await {
                        Some(l) if l.is_empty() => return true,
                        Some(_) => {}
                        None => return false,
                    }
                }
            }
            if !self.read_exact(size, out, on_bytes).await {
                return false;
            }
            if self.read_line().await.as_deref() != Some("") {
                return false;
            }
        }
    }

    /// Reads one line, without its `\r\n` (or bare `\n`).
    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(pos + 1);
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return Some(String::from_utf8_lossy(line).into_owned());
            }
            if self.buf.len() > MAX_LINE || !self.fill().await {
                return None;
            }
        }
    }

    /// Waits up to `idle` for the next request to start arriving; `true` if
    /// bytes are available, `false` on timeout, EOF or error.
    pub(super) async fn wait_for_more(&mut self, idle: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        tokio::time::timeout(idle, self.fill())
            .await
            .unwrap_or(false)
    }

    /// Reads and discards everything until the client closes the connection.
    pub(super) async fn drain_until_eof(&mut self) {
        loop {
            self.buf.clear();
            if !self.fill().await {
                return;
            }
        }
    }

    /// Writes all of `bytes` and flushes.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Closes the write side cleanly (FIN).
    pub(super) async fn finish(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Arranges for the connection to be reset (RST) when it is dropped.
    pub(super) fn reset_on_drop(&self) {
        let _ = self.stream.set_zero_linger();
    }
}

impl Head {
    /// Builds a head from a complete parse; `None` if the method or framing
    /// is invalid.
    fn from_parsed(req: &httparse::Request<'_, '_>) -> Option<Head> {
        let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
        let path = req.path?.to_owned();
        let mut headers = HeaderMap::new();
        for field in req.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(field.name.as_bytes()),
                HeaderValue::from_bytes(field.value),
            ) {
                headers.append(name, value);
            }
        }
        let http10 = req.version == Some(0);
        let close = if http10 {
            !has_token(&headers, &CONNECTION, "keep-alive")
        } else {
            has_token(&headers, &CONNECTION, "close")
        };
        let expect_continue = headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let framing = framing(&headers)?;
        Some(Head {
            method,
            path,
            headers,
            close,
            expect_continue,
            framing,
        })
    }
}

/// Transfer-Encoding ending in `chunked` wins; otherwise all Content-Length
/// values must agree; no framing headers means no body.
fn framing(headers: &HeaderMap) -> Option<Framing> {
    let codings: Vec<String> = tokens(headers, &TRANSFER_ENCODING).collect();
    if let Some(last) = codings.last() {
        return (last == "chunked").then_some(Framing::Chunked);
    }
    let mut len = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().ok()?.split(',') {
            let n: u64 = part.trim().parse().ok()?;
            if len.is_some_and(|l| l != n) {
                return None;
            }
            len = Some(n);
        }
    }
    Some(Framing::Length(len.unwrap_or(0)))
}

/// The lower-cased comma-separated tokens of every `name` field.
fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t == token)
}
