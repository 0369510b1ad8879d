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
use crate::server::connection::{Activity, ClientStream};
use crate::server::counts::ConnectionCounts;
use crate::server::proxy_protocol::Prefixed;
use crate::server::{ServerOptions, engine_shared};
use crate::upstream::pool::Pool;

/// Bytes a connection's state may take: 456 when written (the bare socket
/// and its two emptied buffers, the client's address 80, the rest pointers
/// and references, and to what is boxed only while used). hyper's driver
/// with its parked socket took 664 with a service that held nothing, and a
/// boxed write-timeout stream of 336 bytes besides.
const SERVE_BUDGET: usize = 480;

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
    let activity = Arc::new(Activity::default());
    let stream = ClientStream::new(Prefixed::new(tcp), Duration::from_secs(5), activity);
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
    };
    let (_stop, stop) = watch::channel(false);
    let connection = serve(serving, stream, ClientAddr::new(peer), stop);
    let size = std::mem::size_of_val(&connection);
    assert!(
        size <= SERVE_BUDGET,
        "a connection's state is {size} bytes, over its budget of {SERVE_BUDGET}"
    );
}
