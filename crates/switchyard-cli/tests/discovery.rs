//! Servers given by name are re-resolved while serving: when the answer
//! changes, new requests go to the new addresses, a request in flight
//! finishes where it began, idle connections to the old address close, and
//! a lookup that fails keeps the previous addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::discovery::{Lookup, Resolve, ServerName};
use switchyard_cli::config;
use switchyard_cli::handover::Inherited;
use switchyard_cli::observe::Observer;
use switchyard_cli::serve;
use switchyard_testkit::{Behavior, Origin, Script, client, within};
use tokio::sync::oneshot;

/// Answers the test sets; a name without one fails to resolve. Counts the
/// lookups it answered.
#[derive(Debug, Default)]
struct Table(
    Mutex<HashMap<ServerName, Vec<SocketAddr>>>,
    std::sync::atomic::AtomicUsize,
);

impl Table {
    fn set(&self, name: &ServerName, addresses: &[SocketAddr]) {
        self.0
            .lock()
            .unwrap()
            .insert(name.clone(), addresses.to_vec());
    }

    fn forget(&self, name: &ServerName) {
        self.0.lock().unwrap().remove(name);
    }

    fn lookups(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Resolve for Table {
    fn resolve<'a>(&'a self, name: &'a ServerName) -> Lookup<'a> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let found = self.0.lock().unwrap().get(name).cloned();
        Box::pin(async move { found.ok_or_else(|| std::io::Error::other("no such name")) })
    }
}

/// A proxy for one group whose only server is `name`, re-resolved every
/// 100 ms by `table`; returns its address and the means to stop it.
async fn proxy_for(
    name: &ServerName,
    table: Arc<Table>,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    // One worker: the tests count upstream connections, and each worker keeps its own.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{name}\"]\nresolve_every = \"100ms\"\n"
    );
    let config = config::parse(&text, "discovery.toml").unwrap();
    let observer = Arc::new(Observer::new(None));
    let mut inherited = Inherited::default();
    let running = serve::start_with_resolver(config, observer, table, &mut inherited)
        .await
        .unwrap();
    let addr = running.listening[0];
    let (stop, stopped) = oneshot::channel();
    let signals = serve::Signals {
        stop: async {
            stopped.await.ok();
        },
        hangups: None,
        upgrades: None,
    };
    let task = tokio::spawn(running.serve_until(signals, None));
    (addr, stop, task)
}

/// GETs `/` until the body is `want`, or fails after 5 s.
async fn until_served_by(addr: SocketAddr, want: &str) {
    within(5, "requests to move", async {
        loop {
            let reply = client::get(addr, "/").await.unwrap();
            assert_eq!(reply.status, 200);
            if reply.body == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_changed_answer_moves_new_requests_and_closes_connections_to_the_old_address() {
    let slow_then_ok = Script::from_fn(|step| match step.path.as_str() {
        "/slow" => Behavior::ok().after(Duration::from_secs(2)),
        _ => Behavior::ok(),
    });
    let old = Origin::start("old", slow_then_ok).await;
    let new = Origin::healthy("new").await;
    let third = Origin::healthy("third").await;
    // The config loads with the system resolver (localhost is in the hosts
    // file, so no DNS query leaves the machine); the table takes over after.
    let name = ServerName::parse(&format!("localhost:{}", old.addr().port())).unwrap();
    let table = Arc::new(Table::default());
    table.set(&name, &[old.addr()]);
    let (addr, stop, task) = proxy_for(&name, Arc::clone(&table)).await;

    // One connection to the old address is busy with a slow request,
    // another (opened because the first was busy) is left idle in the pool.
    let in_flight = tokio::spawn(client::get(addr, "/slow"));
    old.wait_for_requests(1, 5).await;
    let reply = within(10, "GET", client::get(addr, "/")).await.unwrap();
    assert_eq!(reply.body, "old");

    table.set(&name, &[new.addr()]);
    until_served_by(addr, "new").await;
    assert!(
        !in_flight.is_finished(),
        "the slow request must still be in flight when the answer changes"
    );
    let finished = within(10, "in-flight", in_flight).await.unwrap().unwrap();
    assert_eq!(finished.status, 200);
    assert_eq!(
        finished.body, "old",
        "the request in flight finished where it began"
    );
    // Every connection to the old address closes: the idle one when the
    // answer changed, the busy one when its response ended.
    within(5, "old connections closed", async {
        while old.stats().ended < old.stats().connections {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(old.stats().connections, 2, "{:?}", old.stats());

    // Lookups that fail keep the last good address, and refreshing goes on.
    table.forget(&name);
    // A lookup failed since (the one under way may have begun before).
    let before = table.lookups();
    switchyard_testkit::eventually(5, "failed lookups", || table.lookups() >= before + 2).await;
    let reply = within(10, "GET", client::get(addr, "/")).await.unwrap();
    assert_eq!(reply.body, "new");
    table.set(&name, &[third.addr()]);
    until_served_by(addr, "third").await;

    stop.send(()).unwrap();
    within(10, "stop", task).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_binary_serves_a_server_given_by_name_and_shows_what_it_resolved_to() {
    let origin = Origin::healthy("named").await;
    let name = format!("localhost:{}", origin.addr().port());
    let file = common::TempConfig::new(
        "named",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
             [upstreams.app]\nservers = [\"{name}\"]\n"
        ),
    );
    let proxy = common::Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "named");
    let upstreams = common::admin_get(proxy.admin.unwrap(), "/upstreams").await;
    let json: serde_json::Value = serde_json::from_str(&upstreams).unwrap();
    let names = &json["upstreams"][0]["names"][0];
    assert_eq!(names["name"], name.as_str(), "{upstreams}");
    assert_eq!(names["resolve_every_ms"], 30_000, "the default");
    let addresses = names["addresses"].as_array().unwrap();
    assert!(
        addresses.contains(&serde_json::Value::from(origin.addr().to_string())),
        "{upstreams}"
    );
}
