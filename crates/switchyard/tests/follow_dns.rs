//! `FollowDns`: a group whose server is given by name follows the name's
//! answers, on its timer or on a refresh asked for; a lookup that fails
//! keeps the previous addresses; a request keeps the group it began with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HasLogs, Logs, start_with};
use switchyard::discovery::{Lookup, Resolve, ServerName};
use switchyard::group::{FollowDns, GroupCtx, ServerSpec, ServerSpecs, UpstreamGroup};
use switchyard::lb::Selection;
use switchyard::prelude::*;
use switchyard_testkit::{Origin, client, eventually, within};

/// Answers the test sets; a name without one fails to resolve.
#[derive(Debug, Default)]
struct Table(Mutex<HashMap<ServerName, Vec<SocketAddr>>>);

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
}

impl Resolve for Table {
    fn resolve<'a>(&'a self, name: &'a ServerName) -> Lookup<'a> {
        let found = self.0.lock().unwrap().get(name).cloned();
        Box::pin(async move { found.ok_or_else(|| std::io::Error::other("no such name")) })
    }
}

/// A user's proxy over a followed group: each request takes the group once.
#[derive(Clone)]
struct Followed {
    dns: Arc<FollowDns>,
    logs: Logs,
}

struct Ctx {
    group: Arc<UpstreamGroup>,
    ctx: GroupCtx,
}

impl HasLogs for Followed {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

impl ProxyHttp for Followed {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            group: self.dns.group(),
            ctx: GroupCtx::default(),
        }
    }

    async fn upstream_peer(&self, s: &mut Session, c: &mut Ctx) -> Result<Box<HttpPeer>> {
        c.group.upstream_peer(s, &mut c.ctx)
    }
}

async fn follow(table: &Arc<Table>, name: &ServerName, every: Duration) -> Arc<FollowDns> {
    let servers = ServerSpecs::new(
        vec![ServerSpec::name(name.clone())],
        vec![],
        Selection::RoundRobin,
    );
    let resolver: Arc<dyn Resolve> = table.clone();
    FollowDns::start(servers, every, resolver, |backends| {
        UpstreamGroup::builder("app", backends)
    })
    .await
    .unwrap()
}

async fn body_of(addr: SocketAddr) -> String {
    let reply = within(10, "GET", client::get(addr, "/")).await.unwrap();
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_refresh_moves_new_requests_to_the_new_answer_and_a_failed_lookup_keeps_the_old() {
    let (old, new) = (Origin::healthy("old").await, Origin::healthy("new").await);
    let name = ServerName::parse("app.test:80").unwrap();
    let table = Arc::new(Table::default());
    table.set(&name, &[old.addr()]);
    // Its own timer is an hour away: only the refreshes asked for count.
    let dns = follow(&table, &name, Duration::from_secs(3600)).await;
    let first = dns.group();
    let proxy = Followed {
        dns: Arc::clone(&dns),
        logs: Logs::default(),
    };
    let running = start_with(proxy, ServerOptions::default()).await;
    assert_eq!(body_of(running.addr).await, "old");

    table.set(&name, &[new.addr()]);
    let report = dns.refresh().await;
    assert_eq!(report.changed, [(name.clone(), vec![new.addr()])]);
    assert_eq!(body_of(running.addr).await, "new");
    assert!(
        Arc::ptr_eq(dns.group().budget(), first.budget()),
        "one retry budget"
    );

    table.forget(&name);
    let report = dns.refresh().await;
    assert_eq!(report.failed.len(), 1);
    assert!(report.changed.is_empty());
    assert_eq!(
        body_of(running.addr).await,
        "new",
        "kept its last good address"
    );
}

#[tokio::test]
async fn the_timer_follows_a_changed_answer() {
    let (old, new) = (Origin::healthy("old").await, Origin::healthy("new").await);
    let name = ServerName::parse("app.test:80").unwrap();
    let table = Arc::new(Table::default());
    table.set(&name, &[old.addr()]);
    let dns = follow(&table, &name, Duration::from_millis(100)).await;
    let before = dns.group();
    table.set(&name, &[new.addr()]);
    eventually(5, "the group to follow", || {
        dns.group().health().peers() == [new.addr()]
    })
    .await;
    assert_eq!(
        before.health().peers(),
        [old.addr()],
        "the old group is left as it was"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_at_start_is_an_error() {
    let table = Arc::new(Table::default());
    let servers = ServerSpecs::new(
        vec![ServerSpec::name(ServerName::parse("gone.test:80").unwrap())],
        vec![],
        Selection::RoundRobin,
    );
    let resolver: Arc<dyn Resolve> = table;
    let started = FollowDns::start(servers, Duration::from_secs(1), resolver, |backends| {
        UpstreamGroup::builder("app", backends)
    })
    .await;
    let error = started.err().unwrap().to_string();
    assert!(error.contains("cannot resolve gone.test:80"), "{error}");
}

#[tokio::test]
async fn an_interval_too_short_is_refused_and_the_timer_keeps_no_follower_alive() {
    let name = ServerName::parse("app.test:80").unwrap();
    let origin = Origin::healthy("app").await;
    let table = Arc::new(Table::default());
    table.set(&name, &[origin.addr()]);
    let servers = ServerSpecs::new(
        vec![ServerSpec::name(name.clone())],
        vec![],
        Selection::RoundRobin,
    );
    let resolver: Arc<dyn Resolve> = table.clone();
    let started = FollowDns::start(servers, Duration::ZERO, resolver, |backends| {
        UpstreamGroup::builder("app", backends)
    })
    .await;
    assert!(started.err().unwrap().to_string().contains("too often"));

    let dns = follow(&table, &name, Duration::from_millis(100)).await;
    let table_weak = Arc::downgrade(&table);
    drop(dns);
    // The timer holds the follower weakly: dropping it drops the follower
    // (and its resolver), whatever the timer is doing.
    eventually(5, "the follower to go", || table_weak.strong_count() == 1).await;
}
