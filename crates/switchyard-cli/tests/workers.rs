//! Worker threads: with `workers = N` the binary runs N threads, each with
//! its own runtime, its own listener on the shared port (`SO_REUSEPORT`)
//! and its own upstream connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{Running, TempConfig};
use switchyard_testkit::{Origin, client, within};

/// The names of the process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

#[tokio::test]
async fn every_worker_accepts_clients_and_keeps_its_own_upstream_connections() {
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 3\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("workers", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    // The thread that started it, and two more (names are cut to 15 bytes).
    let workers = thread_names(proxy.pid())
        .into_iter()
        .filter(|name| name.starts_with("switchyard-wor"))
        .count();
    assert_eq!(workers, 2, "{:?}", thread_names(proxy.pid()));
    // One request per new client connection, one after another: a single
    // worker would carry them all over one pooled upstream connection.
    for _ in 0..30 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let connections: BTreeSet<usize> = origin.requests().iter().map(|r| r.connection).collect();
    assert!(
        connections.len() >= 2,
        "30 client connections spread over the workers should reach the origin over \
         more than one upstream connection: {connections:?}"
    );
}

#[tokio::test]
async fn one_worker_carries_every_request_over_one_upstream_connection() {
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("one-worker", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    assert!(
        !thread_names(proxy.pid())
            .iter()
            .any(|name| name.starts_with("switchyard-wor")),
        "no worker threads with workers = 1"
    );
    for _ in 0..30 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let connections: BTreeSet<usize> = origin.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections.len(), 1, "{connections:?}");
}
