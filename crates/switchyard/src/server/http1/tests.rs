//! The state a client connection's task keeps is what an idle keep-alive
//! connection costs for as long as it lives, so it has a budget.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Http1Settings, Serving, serve};
use crate::error::{Error, ErrorKind, Result};
use crate::h1::parse_request::HeadLimits;
use crate::peer::HttpPeer;
use crate::proxy::identity::ClientAddr;
use crate::proxy::{ProxyHttp, Session};
use crate::server::connection::ClientStream;
use crate::server::counts::ConnectionCounts;
use crate::server::proxy_protocol::Prefixed;
use crate::server::socket::ClientSocket;
use crate::server::{ServerOptions, engine_shared};
use crate::upstream::pool::Pool;

/// Bytes a connection's state may take: 704 when written, in one
/// allocation: the bare socket and its two emptied buffers, the client's
/// address (80), the wait for the next head with its timer (112) and the
/// server's stop signal (64) inline, and pointers to what is boxed only
/// while used. Before, the same took 424 bytes here plus three allocations
/// of its own (the wait 144, its timer 112, the stop's wait 184); hyper's
/// driver with its parked socket took 664 and a boxed write-timeout stream
/// of 336 besides.
const SERVE_BUDGET: usize = 720;

struct Nowhere;

impl ProxyHttp for Nowhere {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::explain(ErrorKind::Internal, "nowhere"))
    }
}

#[tokio::test]
async fn a_connection_keeps_little_state() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (tcp, peer) = listener.accept().await.unwrap();
    let stream = ClientStream::bare(Prefixed::new(ClientSocket::Tcp(tcp)));
    let (proxy, shared) = (
        Arc::new(Nowhere),
        engine_shared(Pool::start(), &ServerOptions::default()),
    );
    let counts = ConnectionCounts::default();
    let serving = Serving {
        proxy: &proxy,
        shared: &shared,
        settings: &Http1Settings {
            limits: HeadLimits {
                max_headers: 100,
                max_head: 32 * 1024,
            },
            header_read_timeout: Duration::from_secs(60),
            park_idle_after: Some(Duration::from_secs(1)),
            write_timeout: Duration::from_secs(60),
            chunk: 8192,
        },
        counts: &counts,
        stopping: &tokio::sync::Notify::new(),
    };
    let (_stop, stop) = watch::channel(false);
    let connection = serve(serving, stream, ClientAddr::new(peer), stop);
    let size = std::mem::size_of_val(&connection);
    assert!(
        size <= SERVE_BUDGET,
        "a connection's state is {size} bytes, over its budget of {SERVE_BUDGET}"
    );
}
