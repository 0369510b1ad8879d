//! Protocol upgrades for tests: an upstream that switches protocols and
//! echoes bytes ([`EchoOrigin`]), and a client that asks for a switch and
//! then talks raw bytes ([`UpgradeClient`]). WebSocket framing is not
//! needed: the proxy joins the two connections as a byte stream.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// An upstream on `127.0.0.1:0` that answers an upgrade request `101`
/// (switching to the protocol asked for) and then echoes every byte; any
/// other request gets `200` with its name. Dropping it stops it.
pub struct EchoOrigin {
    addr: SocketAddr,
    upgrades: Arc<AtomicUsize>,
    seen: Seen,
    accept: JoinHandle<()>,
}

/// The request heads an [`EchoOrigin`] received.
type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

impl EchoOrigin {
    /// Start it; `name` is the body of its `200` answers.
    pub async fn start(name: &str) -> EchoOrigin {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let upgrades = Arc::new(AtomicUsize::new(0));
        let seen = Seen::default();
        let accept = tokio::spawn(accept_loop(
            listener,
            name.to_string(),
            Arc::clone(&upgrades),
            Arc::clone(&seen),
        ));
        EchoOrigin {
            addr,
            upgrades,
            seen,
            accept,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it switched protocols on.
    pub fn upgrades(&self) -> usize {
        self.upgrades.load(Ordering::Relaxed)
    }

    /// The headers of every request it received, in order.
    pub fn heads(&self) -> Vec<http::HeaderMap> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for EchoOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl std::fmt::Debug for EchoOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoOrigin")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, name: String, upgrades: Arc<AtomicUsize>, seen: Seen) {
    let mut tasks = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (name, upgrades, seen) = (name.clone(), Arc::clone(&upgrades), Arc::clone(&seen));
        let service = service_fn(move |mut request: Request<hyper::body::Incoming>| {
            let name = name.clone();
            let upgrades = Arc::clone(&upgrades);
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(request.headers().clone());
            async move {
                let Some(protocol) = request.headers().get(http::header::UPGRADE).cloned() else {
                    return Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                        Bytes::from(name),
                    )));
                };
                let on_upgrade = hyper::upgrade::on(&mut request);
                tokio::spawn(async move {
                    let Ok(upgraded) = on_upgrade.await else {
                        return;
                    };
                    upgrades.fetch_add(1, Ordering::Relaxed);
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = io.read(&mut buf).await {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    let _ = io.shutdown().await;
                });
                let response = Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header(http::header::CONNECTION, "upgrade")
                    .header(http::header::UPGRADE, protocol)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                Ok(response)
            }
        });
        tasks.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
        while tasks.try_join_next().is_some() {}
    }
}

/// A client connection that asked to switch protocols.
#[derive(Debug)]
pub struct UpgradeClient {
    stream: TcpStream,
    /// The response head, as text.
    pub head: String,
    /// Bytes that came after the head.
    pub extra: Vec<u8>,
}

impl UpgradeClient {
    /// Send `GET path` asking to switch to `protocol` and read the response
    /// head (whatever its status).
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        protocol: &str,
    ) -> Result<UpgradeClient, String> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
        );
        UpgradeClient::send(addr, &request).await
    }

    /// Send `request` (a whole request head, as bytes on the wire) and
    /// read the response head (whatever its status).
    pub async fn send(addr: SocketAddr, request: &str) -> Result<UpgradeClient, String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("writing the request: {e}"))?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buf).await {
                Ok(0) => {
                    return Err(format!(
                        "closed before a response head: {:?}",
                        String::from_utf8_lossy(&seen)
                    ));
                }
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("reading the response head: {e}")),
            }
        };
        Ok(UpgradeClient {
            stream,
            head: String::from_utf8_lossy(&seen[..end]).into_owned(),
            extra: seen[end..].to_vec(),
        })
    }

    /// The status of the response head.
    pub fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Send `bytes` and read back exactly as many.
    pub async fn echo(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("writing: {e}"))?;
        let mut back = std::mem::take(&mut self.extra);
        let mut buf = vec![0u8; 16 * 1024];
        while back.len() < bytes.len() {
            match self.stream.read(&mut buf).await {
                Ok(0) => {
                    return Err(format!(
                        "closed after {} of {} bytes",
                        back.len(),
                        bytes.len()
                    ));
                }
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
        Ok(back)
    }

    /// Wait until the other side closes; the bytes that came before.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.extra);
        let _ = self.stream.read_to_end(&mut rest).await;
        rest
    }

    /// Close our sending half.
    pub async fn finish(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
