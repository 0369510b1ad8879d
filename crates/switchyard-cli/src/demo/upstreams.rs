//! The demo's upstreams, on loopback: one refusing connections, one
//! blackholed (its accept queue is full, so connects time out), one healthy,
//! one flaky (it drops every other GET, and every POST, before answering).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The demo upstreams; they stop when this is dropped.
#[derive(Debug)]
pub(super) struct DemoUpstreams {
    /// Refuses connections.
    pub(super) refused: SocketAddr,
    /// Never accepts: connects time out.
    pub(super) blackholed: SocketAddr,
    /// Answers every request.
    pub(super) healthy: SocketAddr,
    /// Drops every other GET, and every POST.
    pub(super) flaky: SocketAddr,
    _blackhole: (TcpListener, Vec<TcpStream>),
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DemoUpstreams {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Start the four demo upstreams.
pub(super) async fn start() -> std::io::Result<DemoUpstreams> {
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?
    };
    let (blackhole, blackholed) = blackhole().await?;
    let (healthy, healthy_task) = serve("healthy", None).await?;
    let (flaky, flaky_task) = serve("flaky", Some(Arc::new(AtomicUsize::new(0)))).await?;
    Ok(DemoUpstreams {
        refused,
        blackholed,
        healthy,
        flaky,
        _blackhole: blackhole,
        tasks: vec![healthy_task, flaky_task],
    })
}

/// A listener that never accepts, with its accept queue filled so that new
/// connects hang until they time out.
async fn blackhole() -> std::io::Result<((TcpListener, Vec<TcpStream>), SocketAddr)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
    let listener = socket.listen(0)?;
    let addr = listener.local_addr()?;
    let mut fillers = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(((listener, fillers), addr)),
        }
    }
    Err(std::io::Error::other(
        "could not fill the blackhole's accept queue",
    ))
}

/// An HTTP server answering "hello from NAME"; with a counter, it drops
/// every POST and every odd-numbered other request (the 1st, 3rd, ...)
/// before answering.
async fn serve(
    name: &'static str,
    drops: Option<Arc<AtomicUsize>>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let drops = drops.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<_>| {
                    let post = request.method() == http::Method::POST;
                    let dropped = drops
                        .as_ref()
                        .is_some_and(|n| post || n.fetch_add(1, Ordering::Relaxed) % 2 == 0);
                    async move {
                        if dropped {
                            // A service error makes hyper close the connection unanswered.
                            return Err("dropped on purpose");
                        }
                        Ok::<_, &str>(Response::new(Full::new(Bytes::from(format!(
                            "hello from {name}\n"
                        )))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}
