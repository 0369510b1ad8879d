//! Pingora's `early_request_filter` and `connected_to_upstream`: the first
//! sees the request as it came, before the path is normalized; the second
//! each attempt's connection, new or reused, before the request is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{HasLogs, Logs, Running, start_with};
use switchyard::prelude::*;
use switchyard_testkit::{Origin, client, within};

/// What the hooks saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Early(String),
    Filter(String),
    Connected { reused: bool },
}

#[derive(Clone)]
struct Watching {
    upstream: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Refuse the request in `early_request_filter`.
    refuse_early: bool,
    /// Refuse every connection in `connected_to_upstream`.
    refuse_connection: bool,
    logs: Logs,
}

impl Watching {
    fn new(upstream: SocketAddr) -> Self {
        Watching {
            upstream,
            seen: Arc::default(),
            refuse_early: false,
            refuse_connection: false,
            logs: Logs::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl HasLogs for Watching {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

impl ProxyHttp for Watching {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn early_request_filter(&self, session: &mut Session, _: &mut ()) -> Result<()> {
        let path = session.req_header().uri.path().to_string();
        self.seen.lock().unwrap().push(Seen::Early(path));
        if self.refuse_early {
            return Err(Error::explain(ErrorKind::Internal, "refused early"));
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, _: &mut ()) -> Result<bool> {
        let path = session.req_header().uri.path().to_string();
        self.seen.lock().unwrap().push(Seen::Filter(path));
        Ok(false)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    fn connected_to_upstream(
        &self,
        _: &mut Session,
        reused: bool,
        _: &HttpPeer,
        _: &mut (),
    ) -> Result<()> {
        self.seen.lock().unwrap().push(Seen::Connected { reused });
        if self.refuse_connection {
            return Err(Error::explain(
                ErrorKind::Internal,
                "refused the connection",
            ));
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _: &mut ()) {
        self.logs.push(session, e);
    }
}

async fn start(proxy: Watching) -> Running {
    start_with(proxy, ServerOptions::default()).await
}

#[tokio::test]
async fn the_early_filter_sees_the_path_as_it_came_and_each_connection_is_told() {
    let origin = Origin::healthy("origin").await;
    let proxy = Watching::new(origin.addr());
    let watching = proxy.clone();
    let running = start(proxy).await;
    for _ in 0..2 {
        let reply = within(10, "GET", client::get(running.addr, "/a/../b"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        running.logs.wait(1).await;
    }
    running.logs.wait(2).await;
    let early = Seen::Early("/a/../b".into());
    let filter = Seen::Filter("/b".into());
    assert_eq!(
        watching.seen(),
        [
            early.clone(),
            filter.clone(),
            Seen::Connected { reused: false },
            early,
            filter,
            Seen::Connected { reused: true },
        ]
    );
}

#[tokio::test]
async fn an_error_in_either_hook_ends_the_request_before_the_upstream() {
    let origin = Origin::healthy("origin").await;
    for early in [true, false] {
        let mut proxy = Watching::new(origin.addr());
        proxy.refuse_early = early;
        proxy.refuse_connection = !early;
        let running = start(proxy).await;
        let reply = within(10, "GET", client::get(running.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 500, "early: {early}");
        let logged = running.logs.wait(1).await;
        assert_eq!(logged[0].error, Some(ErrorKind::Internal));
    }
    assert_eq!(origin.stats().requests, 0, "nothing went upstream");
}
