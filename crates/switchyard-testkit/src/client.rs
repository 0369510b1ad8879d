//! The test client: one-shot requests ([`send`], [`get`], [`post`]) and a
//! keep-alive connection ([`KeepAlive`]) built on hyper's HTTP/1.1 client, and
//! a raw-bytes exchange ([`raw`]) for what hyper would refuse to send or parse.
//!
//! Every failure (connect, handshake, head, truncated or reset body) comes back
//! as a `String` describing it, with the error's source chain.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A response collected whole by the test client.
#[derive(Debug)]
pub struct Collected {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
    /// The trailer fields after the body, if any came.
    pub trailers: Option<HeaderMap>,
}

/// Sends one request on a new connection with hyper's client and collects the
/// body. A `host` header set to `addr` is added if the request has none.
/// Errors (including a truncated body, which hyper reports) are returned as a
/// `String` describing them.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Collected, String> {
    let mut conn = KeepAlive::try_connect(addr).await?;
    conn.send(req).await
}

/// Sends `GET path` on a new connection; see [`send`].
pub async fn get(addr: SocketAddr, path: &str) -> Result<Collected, String> {
    send(addr, build(Method::GET, path, Bytes::new())?).await
}

/// Sends `POST path` with `body` (Content-Length framing) on a new connection;
/// see [`send`].
pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<Collected, String> {
    send(addr, build(Method::POST, path, body.into())?).await
}

/// Sends `POST path` with `headers` and `body` on a new connection; see
/// [`send`].
pub async fn post_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Collected, String> {
    let mut request = build(Method::POST, path, body.into())?;
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = http::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        request.headers_mut().append(name, value);
    }
    send(addr, request).await
}

pub(crate) fn build(
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    Request::builder()
        .method(method.clone())
        .uri(path)
        .body(Full::new(body))
        .map_err(|e| describe(&format!("building {method} {path}"), &e))
}

/// A keep-alive client connection that sends several requests in turn on one
/// TCP connection. Dropping it closes the connection.
pub struct KeepAlive {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
}

impl KeepAlive {
    /// Connects to `addr` and performs the HTTP/1.1 handshake. Panics if that
    /// fails (use [`send`] to observe connect errors).
    pub async fn connect(addr: SocketAddr) -> KeepAlive {
        match KeepAlive::try_connect(addr).await {
            Ok(conn) => conn,
            Err(e) => panic!("KeepAlive::connect: {e}"),
        }
    }

    async fn try_connect(addr: SocketAddr) -> Result<KeepAlive, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| describe(&format!("connect to {addr}"), &e))?;
        KeepAlive::over(addr, stream).await
    }

    /// The HTTP/1.1 handshake over `stream`, already connected to `addr`
    /// (a TLS stream, say).
    pub async fn over<S>(addr: SocketAddr, stream: S) -> Result<KeepAlive, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| describe(&format!("handshake with {addr}"), &e))?;
        // The connection's own error also surfaces through `send_request` or
        // the body, so it is not reported separately here.
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(KeepAlive { addr, sender, conn })
    }

    /// Sends `req` on this connection and collects the response body. A `host`
    /// header set to the address is added if the request has none.
    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> Result<Collected, String> {
        let what = format!("{} {} to {}", req.method(), req.uri(), self.addr);
        if !req.headers().contains_key(HOST) {
            let host =
                HeaderValue::from_str(&self.addr.to_string()).map_err(|e| describe(&what, &e))?;
            req.headers_mut().insert(HOST, host);
        }
        self.sender
            .ready()
            .await
            .map_err(|e| describe(&format!("{what}: connection not ready"), &e))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| describe(&format!("{what}: response head"), &e))?;
        collect(&what, resp).await
    }
}

/// The whole of `response`, or what broke while reading its body.
pub(crate) async fn collect(
    what: &str,
    response: http::Response<hyper::body::Incoming>,
) -> Result<Collected, String> {
    let (parts, body) = response.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| describe(&format!("{what}: response body"), &e))?;
    let trailers = collected.trailers().cloned();
    Ok(Collected {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepAlive")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What [`raw`] read back.
#[derive(Debug)]
pub struct RawReply {
    /// Every byte the server sent.
    pub bytes: Vec<u8>,
    /// Whether the server closed the connection (FIN or reset), as opposed to
    /// the time running out with the connection still open.
    pub closed_by_server: bool,
}

impl RawReply {
    /// The bytes as (lossy) UTF-8 text, for assertions and messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Sends raw bytes on a new connection and reads everything until the server
/// closes or `secs` elapse (whichever first). Returns the bytes and whether
/// the server closed the connection. Panics if the connection can't be made.
pub async fn raw(addr: SocketAddr, request: &[u8], secs: u64) -> RawReply {
    raw_exchange(addr, request, secs, false).await
}

/// Like [`raw`], but shuts down the write side after sending `request`: a
/// client that sends part of a request and goes away.
pub async fn raw_then_shutdown(addr: SocketAddr, request: &[u8], secs: u64) -> RawReply {
    raw_exchange(addr, request, secs, true).await
}

async fn raw_exchange(addr: SocketAddr, request: &[u8], secs: u64, shutdown: bool) -> RawReply {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => panic!("client::raw: connect to {addr}: {e}"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut bytes = Vec::new();
    // A failed write means the server already closed; still read what it sent.
    let _ = stream.write_all(request).await;
    if shutdown {
        let _ = stream.shutdown().await;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return RawReply {
                    bytes,
                    closed_by_server: true,
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => {
                return RawReply {
                    bytes,
                    closed_by_server: false,
                };
            }
        }
    }
}

/// A response read by [`RawConn::read_response`].
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The header fields, names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, framed by `Content-Length`.
    pub body: Bytes,
}

/// A keep-alive connection driven with raw bytes, for exchanges where the
/// server answers before the client finished sending.
///
/// Writes run on their own task while responses are read, so an upload the
/// server does not read yet cannot block reading its early answer. hyper's
/// own client can hang in exactly that case: when a response completes while
/// part of the request body still sits in hyper's write buffer, the
/// connection goes idle, and if the last of that buffer is flushed on the
/// same poll that found no request to write, nothing wakes the connection to
/// take the next request (hyper 1.12), so [`KeepAlive`] would wait forever.
#[derive(Debug)]
pub struct RawConn {
    addr: SocketAddr,
    reader: tokio::net::tcp::OwnedReadHalf,
    writer: Writer,
    read_buf: Vec<u8>,
}

#[derive(Debug)]
enum Writer {
    Idle(tokio::net::tcp::OwnedWriteHalf),
    Busy(JoinHandle<std::io::Result<tokio::net::tcp::OwnedWriteHalf>>),
    Failed(String),
}

impl RawConn {
    /// Connects to `addr`. Panics if that fails.
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => panic!("RawConn::connect to {addr}: {e}"),
        };
        let (reader, writer) = stream.into_split();
        RawConn {
            addr,
            reader,
            writer: Writer::Idle(writer),
            read_buf: Vec::new(),
        }
    }

    /// Starts writing `bytes` in the background; [`RawConn::finish_write`]
    /// waits for it. Panics if a write is already under way.
    pub fn start_write(&mut self, bytes: impl Into<Bytes>) {
        let bytes = bytes.into();
        let state = std::mem::replace(&mut self.writer, Writer::Failed("writing".into()));
        self.writer = match state {
            Writer::Idle(mut half) => Writer::Busy(tokio::spawn(async move {
                half.write_all(&bytes).await?;
                Ok(half)
            })),
            Writer::Busy(_) => panic!("RawConn::start_write: a write is already under way"),
            failed @ Writer::Failed(_) => failed,
        };
    }

    /// Waits until everything given to [`RawConn::start_write`] was written.
    pub async fn finish_write(&mut self) -> Result<(), String> {
        let state = std::mem::replace(&mut self.writer, Writer::Failed("writing".into()));
        let outcome = match state {
            Writer::Idle(half) => Ok(half),
            Writer::Busy(task) => match task.await {
                Ok(Ok(half)) => Ok(half),
                Ok(Err(e)) => Err(describe(&format!("writing to {}", self.addr), &e)),
                Err(e) => Err(describe(&format!("writing to {}", self.addr), &e)),
            },
            Writer::Failed(e) => Err(e),
        };
        match outcome {
            Ok(half) => {
                self.writer = Writer::Idle(half);
                Ok(())
            }
            Err(e) => {
                self.writer = Writer::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// Writes `bytes` and waits until they went out.
    pub async fn write(&mut self, bytes: impl Into<Bytes>) -> Result<(), String> {
        self.start_write(bytes);
        self.finish_write().await
    }

    /// Reads one response whose body is framed by `Content-Length` (or has
    /// none). Bytes after it stay buffered for the next call.
    pub async fn read_response(&mut self) -> Result<RawResponse, String> {
        loop {
            if let Some(response) = self.parse_buffered()? {
                return Ok(response);
            }
            let mut buf = [0u8; 16 * 1024];
            match self.reader.read(&mut buf).await {
                Ok(0) => {
                    return Err(format!(
                        "{} closed the connection with {} bytes of a response read",
                        self.addr,
                        self.read_buf.len()
                    ));
                }
                Ok(n) => self.read_buf.extend_from_slice(&buf[..n]),
                Err(e) => return Err(describe(&format!("reading from {}", self.addr), &e)),
            }
        }
    }

    /// A whole response from the front of the read buffer, if it is there.
    fn parse_buffered(&mut self) -> Result<Option<RawResponse>, String> {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut fields);
        let head_len = match parsed.parse(&self.read_buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("response from {} is not HTTP/1.1: {e}", self.addr)),
        };
        let status = parsed.code.unwrap_or_default();
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        let length = match headers.iter().find(|(name, _)| name == "content-length") {
            Some((_, value)) => value
                .trim()
                .parse::<usize>()
                .map_err(|e| format!("bad content-length {value:?}: {e}"))?,
            None if headers.iter().any(|(name, _)| name == "transfer-encoding") => {
                return Err("RawConn::read_response reads Content-Length bodies only".into());
            }
            None => 0,
        };
        if self.read_buf.len() < head_len + length {
            return Ok(None);
        }
        let rest = self.read_buf.split_off(head_len + length);
        let whole = std::mem::replace(&mut self.read_buf, rest);
        Ok(Some(RawResponse {
            status,
            headers,
            body: Bytes::copy_from_slice(&whole[head_len..]),
        }))
    }
}

/// `what: err: source: source...`
pub(crate) fn describe(what: &str, err: &(dyn Error + 'static)) -> String {
    let mut out = format!("{what}: {err}");
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
