//! The lost wake-up that [`UpstreamStream`] closes, reproduced over an
//! in-memory pipe whose capacity the test sets: the upstream answers while
//! most of the upload is still in hyper's write buffer, then reads the rest
//! slowly, so the last of it is flushed on a poll that wrote no request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use switchyard_testkit::within;

use super::UpstreamStream;

/// What the pipe between client and upstream holds.
const PIPE: usize = 64 * 1024;
/// More than the pipe holds, less than hyper buffers before it stops taking body.
const UPLOAD: usize = 256 * 1024;

fn request(method: &str, path: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "upstream.test")
        .header("content-length", body.len())
        .body(Full::new(body))
        .unwrap()
}

/// The upstream's side of the pipe: what it has read and not yet consumed.
struct Upstream {
    io: DuplexStream,
    unread: Vec<u8>,
}

impl Upstream {
    /// Read more, waiting first if `pause`; at most 8 KiB a time.
    async fn read_more(&mut self, pause: bool) {
        if pause {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut buf = [0u8; 8 * 1024];
        let n = self.io.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed the connection");
        self.unread.extend_from_slice(&buf[..n]);
    }

    /// Read and consume one request head.
    async fn head(&mut self) {
        loop {
            if let Some(end) = self.unread.windows(4).position(|w| w == b"\r\n\r\n") {
                self.unread.drain(..end + 4);
                return;
            }
            self.read_more(false).await;
        }
    }

    /// Write a whole response.
    async fn answer(&mut self, response: &[u8]) {
        self.io.write_all(response).await.unwrap();
    }

    /// Read and consume `len` body bytes, slowly.
    async fn body(&mut self, len: usize) {
        while self.unread.len() < len {
            self.read_more(true).await;
        }
        self.unread.drain(..len);
    }
}

/// Answers the upload at once, reads the rest of it only once `answered`
/// fires, 8 KiB at a time, then answers a second request with "next".
async fn early_answering_upstream(io: DuplexStream, answered: oneshot::Receiver<()>) {
    let mut upstream = Upstream {
        io,
        unread: Vec::new(),
    };
    upstream.head().await;
    upstream
        .answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly")
        .await;
    answered.await.unwrap();
    upstream.body(UPLOAD).await;
    upstream.head().await;
    upstream
        .answer(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext")
        .await;
    // Hold the connection open: a close would wake the client by itself.
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn an_idle_connection_left_with_a_flushed_upload_takes_the_next_request() {
    let (client_io, upstream_io) = tokio::io::duplex(PIPE);
    let (answered, answered_rx) = oneshot::channel();
    tokio::spawn(early_answering_upstream(upstream_io, answered_rx));
    let io = TokioIo::new(UpstreamStream::new(client_io));
    let (mut sender, connection) = http1::handshake(io).await.unwrap();
    tokio::spawn(connection);

    sender.ready().await.unwrap();
    let upload = request("POST", "/upload", Bytes::from(vec![b'u'; UPLOAD]));
    let response = within(10, "the early answer", sender.send_request(upload)).await;
    let body = within(10, "its body", response.unwrap().into_body().collect()).await;
    assert_eq!(body.unwrap().to_bytes(), "early");
    answered.send(()).unwrap();

    within(10, "ready for the next request", sender.ready())
        .await
        .unwrap();
    let next = sender.send_request(request("GET", "/next", Bytes::new()));
    let response = within(10, "the next answer", next).await;
    let body = within(10, "its body", response.unwrap().into_body().collect()).await;
    assert_eq!(body.unwrap().to_bytes(), "next");
}
