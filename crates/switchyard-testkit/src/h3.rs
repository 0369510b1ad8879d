//! An HTTP/3 client for tests, on the same crates as the proxy's HTTP/3
//! listener (quinn, h3, h3-quinn): one QUIC connection, requests sent on
//! it one after another or at once.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, StatusCode};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::ClientConfig;

use crate::client::Collected;

/// The client side of a request stream.
pub type RequestStream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One HTTP/3 connection to a server.
pub struct H3Client {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for H3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Client")
            .field("remote", &self.connection.remote_address())
            .finish_non_exhaustive()
    }
}

impl H3Client {
    /// Connect to `addr` (UDP) verifying it as `server_name` under `tls`
    /// (ALPN is set to `h3`).
    pub async fn connect(
        addr: SocketAddr,
        tls: &Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<H3Client, String> {
        let mut tls = (**tls).clone();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
        let config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(|e| format!("a client endpoint: {e}"))?;
        endpoint.set_default_client_config(config);
        let connection = endpoint
            .connect(addr, server_name)
            .map_err(|e| format!("connect to {addr}: {e}"))?
            .await
            .map_err(|e| format!("QUIC handshake with {addr}: {e}"))?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection.clone()))
            .await
            .map_err(|e| format!("HTTP/3 with {addr}: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Client {
            endpoint,
            connection,
            send,
            driver,
        })
    }

    /// Start a request: its head is sent; send its body on the stream and
    /// `finish` it (a GET: just `finish`).
    pub async fn start(&mut self, request: Request<()>) -> Result<RequestStream, String> {
        self.send
            .send_request(request)
            .await
            .map_err(|e| format!("sending the request: {e}"))
    }

    /// Send `request` with `body` (in pieces of at most 64 KiB) and collect
    /// the whole answer.
    pub async fn send(&mut self, request: Request<()>, body: Bytes) -> Result<Collected, String> {
        let mut stream = self.start(request).await?;
        let mut body = body;
        while !body.is_empty() {
            let piece = body.split_to(body.len().min(64 * 1024));
            stream
                .send_data(piece)
                .await
                .map_err(|e| format!("sending the body: {e}"))?;
        }
        stream
            .finish()
            .await
            .map_err(|e| format!("finishing the request: {e}"))?;
        collect(&mut stream).await
    }

    /// `GET path` (`:authority` is `authority`).
    pub async fn get(&mut self, authority: &str, path: &str) -> Result<Collected, String> {
        let request = Request::get(format!("https://{authority}{path}"))
            .body(())
            .map_err(|e| e.to_string())?;
        self.send(request, Bytes::new()).await
    }

    /// Another handle to send requests on this connection, for requests
    /// at once (each handle opens its own streams).
    pub fn requester(&self) -> h3::client::SendRequest<h3_quinn::OpenStreams, Bytes> {
        self.send.clone()
    }

    /// Close the connection at once, as a client that goes away does.
    pub fn abandon(&self) {
        self.connection
            .close(quinn::VarInt::from_u32(0x100), b"gone");
    }
}

impl Drop for H3Client {
    fn drop(&mut self) {
        self.driver.abort();
        self.endpoint.close(quinn::VarInt::from_u32(0x100), b"done");
    }
}

/// The response on `stream`: head, whole body, trailers.
pub async fn collect(stream: &mut RequestStream) -> Result<Collected, String> {
    let response = stream
        .recv_response()
        .await
        .map_err(|e| format!("the response head: {e}"))?;
    let mut body = Vec::new();
    while let Some(mut data) = stream
        .recv_data()
        .await
        .map_err(|e| format!("the response body: {e}"))?
    {
        while data.has_remaining() {
            let chunk = data.chunk();
            body.extend_from_slice(chunk);
            let n = chunk.len();
            data.advance(n);
        }
    }
    let trailers: Option<HeaderMap> = stream
        .recv_trailers()
        .await
        .map_err(|e| format!("the response trailers: {e}"))?;
    let status: StatusCode = response.status();
    Ok(Collected {
        status,
        headers: response.headers().clone(),
        body: Bytes::from(body),
        trailers,
    })
}
