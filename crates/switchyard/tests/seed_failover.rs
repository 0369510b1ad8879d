//! The seed pattern from DESIGN.md, verbatim: fail over to the secondary on
//! the first connect failure, whether the primary refuses or is blackholed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::prelude::*;
use switchyard::{AttemptLog, Decision};
use switchyard_testkit::{Blackhole, Origin, client, refused_addr, within};

struct Seed {
    primary: SocketAddr,
    secondary: SocketAddr,
    connect_timeout: Duration,
    traces: Arc<Mutex<Vec<AttemptLog>>>,
}

struct Ctx {
    tries: usize,
}

impl ProxyHttp for Seed {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx { tries: 0 }
    }

    async fn upstream_peer(&self, _s: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let addr = if ctx.tries < 1 {
            self.primary
        } else {
            self.secondary
        };
        let options = PeerOptions {
            connect_timeout: self.connect_timeout,
            ..PeerOptions::default()
        };
        Ok(Box::new(
            HttpPeer::new(addr, false, String::new()).with_options(options),
        ))
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        _p: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if ctx.tries > 0 {
            return e;
        }
        ctx.tries += 1;
        e.set_retry(true);
        e
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, _ctx: &mut Ctx) {
        self.traces.lock().unwrap().push(session.attempts().clone());
    }
}

async fn through_seed(primary: SocketAddr) -> (client::Collected, AttemptLog, Origin) {
    let secondary = Origin::healthy("secondary").await;
    let traces = Arc::new(Mutex::new(Vec::new()));
    let seed = Seed {
        primary,
        secondary: secondary.addr(),
        connect_timeout: Duration::from_millis(300),
        traces: Arc::clone(&traces),
    };
    let server = ProxyServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        seed,
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve());
    let reply = within(10, "request through the seed", client::get(addr, "/"))
        .await
        .unwrap();
    let trace = within(5, "logging", async {
        loop {
            if let Some(trace) = traces.lock().unwrap().pop() {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    (reply, trace, secondary)
}

#[tokio::test]
async fn refused_primary_fails_over_to_the_secondary() {
    let primary = refused_addr().await;
    let (reply, trace, secondary) = through_seed(primary).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "secondary");
    assert_eq!(secondary.stats().requests, 1);
    let records = trace.records();
    assert_eq!(records.len(), 2, "{trace}");
    assert_eq!(records[0].peer, primary);
    assert_eq!(records[0].error, Some(ErrorKind::ConnectRefused));
    assert_eq!(records[0].decision, Decision::Retry);
    assert_eq!(records[1].peer, secondary.addr());
    assert_eq!(records[1].decision, Decision::Done);
    assert_eq!(
        trace.to_string(),
        format!(
            "{primary} connect-refused -> retry; {} 200 -> done",
            secondary.addr()
        )
    );
}

#[tokio::test]
async fn blackholed_primary_fails_over_after_the_connect_timeout() {
    let blackhole = Blackhole::start().await;
    let (reply, trace, _secondary) = through_seed(blackhole.addr()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "secondary");
    let records = trace.records();
    assert_eq!(records.len(), 2, "{trace}");
    assert_eq!(records[0].error, Some(ErrorKind::ConnectTimedOut));
    assert!(
        records[0].duration >= Duration::from_millis(250),
        "{:?}",
        records[0].duration
    );
    assert_eq!(records[1].decision, Decision::Done);
}
