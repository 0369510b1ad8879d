//! Contract rule 5: every attempt is recorded (peer, reused, phase reached,
//! error kind, status, body bytes, timing, verdict and why) and handed to
//! `logging`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestProxy, start};
use switchyard::{Decision, ErrorKind, Phase};
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

#[tokio::test]
async fn each_attempt_records_what_happened_to_it() {
    let dead = refused_addr().await;
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start(TestProxy::new(&[dead, origin.addr()])).await;
    let body = vec![b'z'; 5000];
    let reply = within(10, "POST", client::post(proxy.addr, "/", body))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    let logged = proxy.logs.wait(1).await;
    let trace = &logged[0].trace;
    let [first, second] = trace.records() else {
        panic!("two attempts expected: {trace}")
    };
    assert_eq!(first.peer, dead);
    assert_eq!(first.phase, Phase::Connecting);
    assert_eq!(first.error, Some(ErrorKind::ConnectRefused));
    assert_eq!(first.status, None);
    assert_eq!(first.request_body_bytes, 0);
    assert_eq!(first.decision, Decision::Retry);

    assert_eq!(second.peer, origin.addr());
    assert!(!second.reused);
    assert_eq!(second.phase, Phase::Complete);
    assert_eq!(second.error, None);
    assert_eq!(second.status.map(|s| s.as_u16()), Some(200));
    assert_eq!(second.request_body_bytes, 5000);
    assert_eq!(second.response_body_bytes, 5000);
    assert_eq!(second.decision, Decision::Done);
    assert!(second.started >= first.started + first.duration);
    assert_eq!(trace.retries(), 1);
    assert_eq!(logged[0].status, Some(200));
    assert_eq!(logged[0].error, None);
}

#[tokio::test]
async fn a_request_answered_without_an_attempt_has_an_empty_trace() {
    use switchyard::prelude::*;

    struct Deny(common::Logs);
    impl common::HasLogs for Deny {
        fn logs(&self) -> common::Logs {
            self.0.clone()
        }
    }
    impl ProxyHttp for Deny {
        type CTX = ();
        fn new_ctx(&self) {}
        async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
            session.respond_status(http::StatusCode::FORBIDDEN);
            Ok(true)
        }
        async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
            Err(Error::explain(ErrorKind::Internal, "never asked"))
        }
        async fn logging(&self, session: &mut Session, e: Option<&Error>, _ctx: &mut ()) {
            self.0.push(session, e);
        }
    }

    let logs = common::Logs::default();
    let proxy = common::start_with(Deny(logs.clone()), ServerOptions::default()).await;
    let reply = within(10, "request", client::get(proxy.addr, "/admin"))
        .await
        .unwrap();
    assert_eq!(reply.status, 403);
    let logged = logs.wait(1).await;
    assert!(logged[0].trace.is_empty());
    assert_eq!(logged[0].trace.to_string(), "no upstream attempt");
    assert_eq!(logged[0].status, Some(403));
}
