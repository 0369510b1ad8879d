//! A group swapped onto other servers keeps what it knew of the ones that
//! stay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::UpstreamGroup;
use crate::health::{Outcome, OutlierPolicy};
use crate::lb::{Backend, Backends, Selection};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn backends(ports: &[u16]) -> Backends {
    let primaries = ports.iter().map(|&p| Backend::new(addr(p))).collect();
    Backends::new(primaries, Vec::new(), Selection::RoundRobin).unwrap()
}

#[test]
fn new_servers_keep_the_health_of_those_that_stay() {
    let outlier = OutlierPolicy {
        consecutive_failures: 1,
        ..OutlierPolicy::default()
    };
    let group = UpstreamGroup::builder("app", backends(&[1, 2]))
        .outlier(outlier)
        .build();
    let now = Instant::now();
    group.health().report(addr(1), Outcome::ConnectFailure, now);
    assert_eq!(group.health().avoid(now), [addr(1)], "ejected");

    let moved = group.with_servers(backends(&[1, 3]), [(addr(3), "three.test".to_string())]);
    assert_eq!(moved.health().avoid(now), [addr(1)], "still ejected");
    let servers: Vec<SocketAddr> = moved
        .backends()
        .primaries()
        .iter()
        .map(|b| b.addr)
        .collect();
    assert_eq!(servers, [addr(1), addr(3)]);
    assert_eq!(moved.health().peers(), [addr(1), addr(3)]);
    assert!(Arc::ptr_eq(moved.budget(), group.budget()), "one budget");
    assert!(Arc::ptr_eq(moved.policy(), group.policy()));
    assert_eq!(moved.name(), "app");
    assert_eq!(
        moved.host_of(addr(3)),
        "three.test:3",
        "its name, from the answer"
    );
    assert_eq!(moved.host_of(addr(1)), addr(1).to_string());
}
