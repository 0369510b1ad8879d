//! Pingora's `request_summary` and `suppress_error_log`: a request that
//! fails for good is logged at `warn` with the proxy's summary of it,
//! unless the proxy suppresses the line; the client's own failures at
//! `debug`.
//!
//! One test in this file: it sets the process's tracing subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::{Debug, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{HasLogs, Logs, start_with};
use switchyard::prelude::*;
use switchyard::proxy::default_request_summary;
use switchyard_testkit::{client, within};
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, span};

/// Every event, as `LEVEL field=value ...`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

#[derive(Clone)]
struct Failing {
    upstream: SocketAddr,
    suppress: bool,
    logs: Logs,
}

impl HasLogs for Failing {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

impl ProxyHttp for Failing {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    fn request_summary(&self, session: &Session, _: &()) -> String {
        format!("mine: {}", default_request_summary(session))
    }

    fn suppress_error_log(&self, _: &Session, _: &(), _: &Error) -> bool {
        self.suppress
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _: &mut ()) {
        self.logs.push(session, e);
    }
}

#[tokio::test]
async fn a_failed_request_is_logged_with_the_proxys_summary_unless_suppressed_and_a_clients_fault_at_debug()
 {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    // A port nothing listens on: every connect is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = closed.local_addr().unwrap();
    drop(closed);
    for (suppress, path) in [(false, "/logged?x=1"), (true, "/quiet")] {
        let proxy = Failing {
            upstream,
            suppress,
            logs: Logs::default(),
        };
        let running = start_with(proxy, ServerOptions::default()).await;
        let reply = within(10, "GET", client::get(running.addr, path))
            .await
            .unwrap();
        assert_eq!(reply.status, 502);
        running.logs.wait(1).await;
    }
    // The client's own failure: a body over the limit (413).
    let proxy = Failing {
        upstream,
        suppress: false,
        logs: Logs::default(),
    };
    let options = ServerOptions {
        max_request_body: Some(4),
        ..ServerOptions::default()
    };
    let running = start_with(proxy, options).await;
    let reply = within(10, "POST", client::post(running.addr, "/too-big", "hello"))
        .await
        .unwrap();
    assert_eq!(reply.status, 413);
    running.logs.wait(1).await;

    let lines = capture.0.lock().unwrap().clone();
    let (client_fault, failed): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .filter(|l| l.contains("request failed"))
        .partition(|l| l.contains("/too-big"));
    assert_eq!(client_fault.len(), 1, "{client_fault:#?}");
    assert!(client_fault[0].starts_with("DEBUG "), "{}", client_fault[0]);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(failed[0].starts_with("WARN "), "{}", failed[0]);
    assert!(
        failed[0].contains("request=mine: GET /logged?x=1, Host: 127.0.0.1:"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("status=502"), "{}", failed[0]);
}
