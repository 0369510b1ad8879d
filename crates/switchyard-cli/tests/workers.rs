//! Worker threads: with `workers = N` the binary runs N threads, each with
//! its own runtime, its own listener on the shared port (`SO_REUSEPORT`)
//! and its own upstream connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{Running, TempConfig};
use switchyard_testkit::{Origin, client, within};

/// What 30 requests, each on a new client connection and one after
/// another, show of a proxy with `workers` workers: its worker threads
/// (names are cut to 15 bytes), and the upstream connections they came over.
async fn thirty_requests(workers: usize) -> (usize, BTreeSet<usize>) {
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = {workers}\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new(&format!("workers-{workers}"), &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let tasks = std::fs::read_dir(format!("/proc/{}/task", proxy.pid())).unwrap();
    let threads = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("switchyard-wor"))
        .count();
    for _ in 0..30 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let connections = origin.requests().iter().map(|r| r.connection).collect();
    (threads, connections)
}

#[tokio::test]
async fn every_worker_accepts_clients_and_keeps_its_own_upstream_connections() {
    let (threads, connections) = thirty_requests(3).await;
    // The thread that started it, and two more.
    assert_eq!(threads, 2);
    // A single worker would carry them all over one pooled upstream connection.
    assert!(
        connections.len() >= 2,
        "30 client connections spread over the workers should reach the origin over \
         more than one upstream connection: {connections:?}"
    );
}

#[tokio::test]
async fn one_worker_carries_every_request_over_one_upstream_connection() {
    let (threads, connections) = thirty_requests(1).await;
    assert_eq!(threads, 0, "no worker threads with workers = 1");
    assert_eq!(connections.len(), 1, "{connections:?}");
}
