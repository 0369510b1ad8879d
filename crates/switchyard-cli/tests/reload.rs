//! SIGHUP reloads routes and upstream groups from the config file: new
//! requests use the new servers, a request in flight finishes on the old
//! one, and a config that does not check is refused while serving goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Running, TempConfig};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

fn config_for(server: std::net::SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{server}\"]\n"
    )
}

#[tokio::test]
async fn sighup_moves_new_requests_to_the_new_servers_without_dropping_any() {
    let slow = Behavior::Slow {
        delay: Duration::from_millis(600),
        then: Box::new(Behavior::ok()),
    };
    let old = Origin::start("old", Script::always(slow)).await;
    let new = Origin::healthy("new").await;
    let file = TempConfig::new("reload", &config_for(old.addr()));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let addr = proxy.addr;
    let in_flight = tokio::spawn(client::get(addr, "/slow"));
    old.wait_for_requests(1, 5).await;

    std::fs::write(&file.path, config_for(new.addr())).unwrap();
    proxy.hangup();
    let line = proxy.wait_for_stderr("switchyard: reloaded").await;
    assert!(line.contains("1 upstream group(s), 1 route(s)"), "{line}");
    assert!(!line.contains("need a restart"), "{line}");

    let reply = within(10, "GET", client::get(addr, "/")).await.unwrap();
    assert_eq!(reply.body, "new");
    let finished = within(10, "in-flight", in_flight).await.unwrap().unwrap();
    assert_eq!(finished.status, 200);
    assert_eq!(
        finished.body, "old",
        "the request in flight finished where it began"
    );
    let upstreams = common::admin_get(proxy.admin.unwrap(), "/upstreams").await;
    assert!(upstreams.contains(&new.addr().to_string()), "{upstreams}");
    assert!(!upstreams.contains(&old.addr().to_string()), "{upstreams}");
}

#[tokio::test]
async fn a_bad_config_on_reload_is_refused_and_serving_goes_on() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("reload-bad", &config_for(origin.addr()));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    std::fs::write(
        &file.path,
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = []\n",
    )
    .unwrap();
    proxy.hangup();
    let line = proxy.wait_for_stderr("reload refused").await;
    assert!(line.contains("upstreams.app.servers"), "{line}");
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "origin");
}

#[tokio::test]
async fn server_settings_changed_on_reload_are_reported_as_needing_a_restart() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("reload-server", &config_for(origin.addr()));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let changed = config_for(origin.addr()).replace("[server]\n", "[server]\nmax_headers = 50\n");
    std::fs::write(&file.path, changed).unwrap();
    proxy.hangup();
    let line = proxy.wait_for_stderr("switchyard: reloaded").await;
    assert!(
        line.contains("need a restart and were not applied"),
        "{line}"
    );
}

#[tokio::test]
async fn reload_closes_idle_pooled_connections_to_removed_servers_at_once() {
    let old = Origin::healthy("old").await;
    let new = Origin::healthy("new").await;
    let file = TempConfig::new("reload-pool", &config_for(old.addr()));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "old");
    // The connection returns to the pool as the response ends, before the
    // request is logged (which may be just after the client read it).
    proxy.wait_for_log(1).await;

    std::fs::write(&file.path, config_for(new.addr())).unwrap();
    proxy.hangup();
    let line = proxy.wait_for_stderr("switchyard: reloaded").await;
    assert!(
        line.contains("closed 1 idle connection(s) to removed servers"),
        "{line}"
    );
    within(5, "old connection closed", async {
        while old.stats().ended < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(old.stats().connections, 1);
}
