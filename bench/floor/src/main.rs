//! The floor: a reverse proxy with nothing but the stack Switchyard stands on.
//!
//! hyper 1 serves clients over HTTP/1.1 (and, on a second listener, HTTP/2
//! with prior knowledge) and forwards every request to one upstream over
//! pooled HTTP/1.1 keep-alive connections (hyper's client connections, kept
//! in a list), on tokio's current-thread runtime with mimalloc, as
//! Switchyard runs with one worker. No retries, no timeouts, no health, no
//! headers added, no logging, no metrics: what Switchyard spends above this
//! program is the price of its engine.
//!
//! ```text
//! switchyard-floor LISTEN UPSTREAM [H2C_LISTEN]
//! switchyard-floor 127.0.0.1:18091 127.0.0.1:18080 127.0.0.1:18092
//! ```
//!
//! A failed upstream exchange answers 502 (no retry). Used by `bench/run.sh`
//! and `bench/instructions.sh`; never part of `cargo test`.

#![forbid(unsafe_code)]

mod body;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use body::{Body, Returning};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Idle upstream connections, most recently used last.
type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

/// The upstream and its idle connections.
#[derive(Clone)]
struct Upstream {
    address: SocketAddr,
    host: HeaderValue,
    idle: Pool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, h2c) = match args.as_slice() {
        [listen, upstream] => (listen, upstream, None),
        [listen, upstream, h2c] => (listen, upstream, Some(h2c)),
        _ => return usage(),
    };
    let parsed = (
        listen.parse::<SocketAddr>(),
        upstream.parse::<SocketAddr>(),
        h2c.map(|a| a.parse::<SocketAddr>()).transpose(),
    );
    let (Ok(listen), Ok(address), Ok(h2c)) = parsed else {
        return usage();
    };
    let Ok(host) = HeaderValue::from_str(&address.to_string()) else {
        return usage();
    };
    let upstream = Upstream { address, host, idle: Arc::default() };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("switchyard-floor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, h2c, upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: switchyard-floor LISTEN UPSTREAM [H2C_LISTEN] (each ip:port)");
    ExitCode::from(2)
}

/// Accept clients for ever, each connection on its own task.
async fn serve(listen: SocketAddr, h2c: Option<SocketAddr>, upstream: Upstream) -> std::io::Result<()> {
    let http1 = TcpListener::bind(listen).await?;
    if let Some(h2c) = h2c {
        let h2c = TcpListener::bind(h2c).await?;
        tokio::spawn(accept(h2c, upstream.clone(), true));
    }
    eprintln!("switchyard-floor: listening on {listen}, forwarding to {}", upstream.address);
    accept(http1, upstream, false).await;
    Ok(())
}

async fn accept(listener: TcpListener, upstream: Upstream, http2: bool) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, for one: wait a little, keep serving.
                eprintln!("switchyard-floor: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| forward(upstream.clone(), request));
            let io = TokioIo::new(stream);
            let _ = if http2 {
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
            };
        });
    }
}

/// Send `request` upstream over an idle connection (or a new one) and hand
/// back its response; 502 when that fails.
async fn forward(upstream: Upstream, mut request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = path.into();
    if request.version() != Version::HTTP_11 {
        *request.version_mut() = Version::HTTP_11;
        request.headers_mut().insert(http::header::HOST, upstream.host.clone());
    }
    let Some(mut sender) = checkout(&upstream).await else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    match sender.send_request(request).await {
        Ok(response) => Ok(response.map(|body| Body::Upstream(Returning::new(body, sender, upstream.idle)))),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

/// An idle connection that is ready, else a new one.
async fn checkout(upstream: &Upstream) -> Option<SendRequest<Incoming>> {
    loop {
        let popped = upstream.idle.lock().ok()?.pop();
        let Some(mut sender) = popped else { break };
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
    let stream = TcpStream::connect(upstream.address).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = code;
    response
}
