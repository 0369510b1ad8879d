//! The scripted raw-byte HTTP/1.1 upstream: [`Origin`] listens on
//! `127.0.0.1:0`, serves each connection in its own task, performs the
//! [`Behavior`] its [`Script`] picks for each request, and counts what it saw
//! ([`Stats`], [`SeenRequest`]). Dropping the `Origin` stops everything.
//!
//! Requests are read with `httparse` (heads up to 64 KiB) and bodies are
//! decoded by hand (Content-Length, or chunked with trailers). A request with
//! `Expect: 100-continue` and a body gets `100 Continue` before its body is
//! read. A malformed or oversized head ends the connection without a reply.
//! Connections are kept alive, except after `Connection: close` (or HTTP/1.0
//! without `keep-alive`), which the origin honours by closing after its
//! response.

mod respond;
mod script;
mod serve;
mod wire;

pub use script::{Behavior, Script, Step};

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderMap, Method};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Counters of what an origin saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: usize,
    /// Connections that ended, closed by either side (`connections - ended`
    /// are open).
    pub ended: usize,
    /// Requests whose head was parsed.
    pub requests: usize,
    /// Request body bytes received (decoded), counted as they arrive.
    pub body_bytes: u64,
    /// Requests whose body was fully received (no body counts as complete).
    pub completed_bodies: usize,
}

/// A request as the origin saw it, recorded once its body was read (or the
/// client went away mid-body).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The request method.
    pub method: Method,
    /// The request target as sent (usually a path and query).
    pub path: String,
    /// The request headers (fields that are not valid `http` names or values
    /// are left out).
    pub headers: HeaderMap,
    /// Body bytes received (decoded).
    pub body_len: u64,
    /// Whether the whole body arrived.
    pub body_complete: bool,
    /// FNV-1a 64 digest of the body bytes received (decoded).
    pub digest: u64,
    /// 0-based index of the connection on this origin.
    pub connection: usize,
    /// 0 for the first request on a connection.
    pub index_on_connection: usize,
    /// 0-based index across the origin, in order of parsed heads.
    pub global_index: usize,
}

/// State shared by the accept loop and the connection tasks.
struct Shared {
    name: String,
    script: Script,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    stats: Stats,
    requests: Vec<SeenRequest>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an accepted connection; returns its index.
    fn new_connection(&self) -> usize {
        let mut state = self.lock();
        state.stats.connections += 1;
        state.stats.connections - 1
    }

    /// Counts a connection that ended.
    fn end_connection(&self) {
        self.lock().stats.ended += 1;
    }

    /// Counts a parsed request head; returns its global index.
    fn begin_request(&self) -> usize {
        let mut state = self.lock();
        state.stats.requests += 1;
        state.stats.requests - 1
    }

    fn add_body_bytes(&self, n: usize) {
        self.lock().stats.body_bytes += n as u64;
    }

    fn record(&self, seen: SeenRequest) {
        let mut state = self.lock();
        if seen.body_complete {
            state.stats.completed_bodies += 1;
        }
        state.requests.push(seen);
    }
}

/// A scripted HTTP/1.1 upstream on `127.0.0.1:0`. Dropping it closes the
/// listener and every connection.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Origin {
    /// Starts an origin that answers every request per `script`. `name` is
    /// put in an `x-origin` response header and is the default response body.
    pub async fn start(name: &str, script: Script) -> Origin {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap_or_else(|e| panic!("Origin {name}: bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("Origin {name}: local_addr: {e}"));
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            script,
            state: Mutex::new(State::default()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Origin {
            addr,
            shared,
            accept,
        }
    }

    /// Shorthand: `Origin::start(name, Script::always(Behavior::ok()))`.
    pub async fn healthy(name: &str) -> Origin {
        Origin::start(name, Script::always(Behavior::ok())).await
    }

    /// The address the origin listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The origin's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// The requests recorded so far, ordered by `global_index`. A request
    /// whose body is still arriving is not in the list yet.
    pub fn requests(&self) -> Vec<SeenRequest> {
        let mut requests = self.shared.lock().requests.clone();
        requests.sort_by_key(|r| r.global_index);
        requests
    }

    /// Waits (polling every 5 ms) until `n` requests were recorded (see
    /// [`Origin::requests`]), or panics after `secs`.
    pub async fn wait_for_requests(&self, n: usize, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let seen = self.shared.lock().requests.len();
            if seen >= n {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "origin {} saw {seen} requests, not {n}, within {secs} s",
                    self.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every
        // connection task.
        self.accept.abort();
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let index = shared.new_connection();
                    let shared = Arc::clone(&shared);
                    tasks.spawn(async move {
                        serve::serve(stream, index, Arc::clone(&shared)).await;
                        shared.end_connection();
                    });
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}
