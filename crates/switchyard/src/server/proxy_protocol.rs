//! The PROXY protocol (v1 text and v2 binary, parsed by the `ppp` crate):
//! the header an L4 balancer (HAProxy, AWS NLB, ...) sends before the
//! client's bytes, naming the client it accepted the connection from.
//!
//! On a listener that expects it, every connection must start with one: a
//! connection without a valid header is closed, since its source would
//! otherwise pass for the client. `PROXY UNKNOWN` (v1) and `LOCAL` (v2),
//! which a balancer uses for its own health checks, keep the socket's
//! address. Bytes read past the header (the start of a TLS handshake or a
//! request) are replayed to whatever reads next.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::socket::ClientSocket;

/// The longest header accepted: a v1 header is at most 107 bytes; a v2
/// header's TLVs (balancer metadata) rarely take more than a few hundred.
const MAX_HEADER: usize = 16 * 1024;

/// A client's socket with bytes already read from it to be read again first.
#[derive(Debug)]
pub(super) struct Prefixed {
    prefix: Bytes,
    inner: ClientSocket,
}

impl Prefixed {
    /// `inner` with nothing to replay.
    pub(super) fn new(inner: ClientSocket) -> Self {
        Prefixed {
            prefix: Bytes::new(),
            inner,
        }
    }

    /// Read `bytes` again before anything not yet read.
    pub(super) fn put_back(&mut self, bytes: Bytes) {
        if self.prefix.is_empty() {
            self.prefix = bytes;
        } else {
            let mut joined = BytesMut::with_capacity(bytes.len() + self.prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.prefix);
            self.prefix = joined.freeze();
        }
    }

    /// The socket itself.
    pub(super) fn socket(&self) -> &ClientSocket {
        &self.inner
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Read the PROXY header at the start of `stream` within `timeout`: the
/// client it names (`None`: the balancer's own connection, keep the
/// socket's address) and the stream with what followed the header.
pub(super) async fn read_header(
    mut stream: ClientSocket,
    timeout: Duration,
) -> io::Result<(Option<SocketAddr>, Prefixed)> {
    let mut buf = BytesMut::with_capacity(256);
    let read = async {
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(invalid(
                    "the connection closed before a complete PROXY header",
                ));
            }
            match parse(&buf)? {
                Some(found) => return Ok(found),
                None if buf.len() >= MAX_HEADER => {
                    return Err(invalid("no complete PROXY header in the first 16 KiB"));
                }
                None => {}
            }
        }
    };
    let (client, length) = match tokio::time::timeout(timeout, read).await {
        Ok(found) => found?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no PROXY header within {timeout:?}"),
            ));
        }
    };
    let mut prefixed = Prefixed::new(stream);
    prefixed.prefix = buf.split_off(length).freeze();
    Ok((client, prefixed))
}

/// The client and the header's length, `None` if more bytes are needed,
/// or why `input` does not start with a PROXY header.
fn parse(input: &[u8]) -> io::Result<Option<(Option<SocketAddr>, usize)>> {
    let result = HeaderResult::parse(input);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(header)) => {
            let client = match header.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok(Some((client, header.header.len())))
        }
        HeaderResult::V2(Ok(header)) => {
            let client = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                // LOCAL (a health check), or an address family that is not IP.
                _ => None,
            };
            Ok(Some((client, header.header.len())))
        }
        HeaderResult::V1(Err(e)) => Err(invalid(&format!("not a PROXY header: {e}"))),
        HeaderResult::V2(Err(e)) => Err(invalid(&format!("not a PROXY header: {e}"))),
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn v1_and_v2_headers_name_the_client_and_their_length() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (client, length) = parse(v1).unwrap().unwrap();
        assert_eq!(client.unwrap().to_string(), "203.0.113.7:51234");
        assert_eq!(&v1[length..length + 3], b"GET");

        let unknown = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(unknown).unwrap(), Some((None, unknown.len())));

        // v2: signature, PROXY over TCP/IPv4, 12 address bytes.
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        v2.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1, 0xc8, 0x1e, 0x01, 0xbb]);
        v2.extend_from_slice(b"rest");
        let (client, length) = parse(&v2).unwrap().unwrap();
        assert_eq!(client.unwrap().to_string(), "198.51.100.9:51230");
        assert_eq!(&v2[length..], b"rest");

        assert_eq!(parse(b"PROXY TCP4 203.0.1").unwrap(), None, "incomplete");
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
