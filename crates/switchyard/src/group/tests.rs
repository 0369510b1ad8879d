//! A group swapped onto other servers keeps what it knew of the ones that
//! stay; servers given by name expand to their answers and follow them.

use std::net::SocketAddr;

use crate::peer_addr::PeerAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{ExpandError, ServerSpec, ServerSpecs, UpstreamGroup};
use crate::discovery::{Answers, ServerName};
use crate::health::{Outcome, OutlierPolicy};
use crate::lb::{Backend, Backends, Selection};

fn sock(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn addr(port: u16) -> PeerAddr {
    PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], port)))
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
    let servers: Vec<PeerAddr> = moved
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

fn name(text: &str) -> ServerName {
    ServerName::parse(text).unwrap()
}

#[test]
fn names_expand_to_their_addresses_and_an_address_given_wins() {
    let mut answers = Answers::default();
    answers.insert(name("app.test:80"), vec![sock(1), sock(2)]);
    let specs = ServerSpecs::new(
        vec![ServerSpec::name(name("app.test:80")).weight(3)],
        vec![ServerSpec::addr(addr(2)).weight(1)],
        Selection::Weighted,
    );
    assert_eq!(specs.names(), [name("app.test:80")]);
    let found = specs.expand(&answers).unwrap();
    let primaries: Vec<(PeerAddr, u32)> = found
        .backends
        .primaries()
        .iter()
        .map(|b| (b.addr, b.weight))
        .collect();
    assert_eq!(
        primaries,
        [(addr(1), 3)],
        "2 is given as a backup, and stays one"
    );
    assert_eq!(found.backends.backups()[0].addr, addr(2));
    assert_eq!(
        found.hosts.get(&addr(1)).map(String::as_str),
        Some("app.test")
    );
    assert!(!found.hosts.contains_key(&addr(2)));
}

#[test]
fn an_unresolved_name_or_a_repeated_address_is_an_error() {
    let specs = ServerSpecs::new(
        vec![ServerSpec::name(name("gone.test:80"))],
        vec![],
        Selection::RoundRobin,
    );
    let unresolved = specs.expand(&Answers::default()).unwrap_err();
    assert_eq!(unresolved, ExpandError::Unresolved(name("gone.test:80")));
    let twice = vec![ServerSpec::addr(addr(1)), ServerSpec::addr(addr(1))];
    let specs = ServerSpecs::new(twice, vec![], Selection::RoundRobin);
    assert_eq!(
        specs.expand(&Answers::default()).unwrap_err(),
        ExpandError::Repeated(addr(1))
    );
}

#[test]
fn a_group_follows_new_answers_with_its_settings_and_budget() {
    let app = name("app.test:80");
    let specs = ServerSpecs::new(
        vec![ServerSpec::name(app.clone())],
        vec![],
        Selection::RoundRobin,
    );
    let mut answers = Answers::default();
    answers.insert(app.clone(), vec![sock(1)]);
    let found = specs.expand(&answers).unwrap();
    let group = UpstreamGroup::builder("app", found.backends)
        .hosts(found.hosts)
        .servers(specs, std::time::Duration::from_secs(5))
        .build();
    assert_eq!(group.names(), std::slice::from_ref(&app));
    answers.insert(app.clone(), vec![sock(1), sock(4)]);
    let moved = group.with_answers(&answers).unwrap().unwrap();
    assert_eq!(moved.health().peers(), [addr(1), addr(4)]);
    assert_eq!(moved.host_of(addr(4)), "app.test:4");
    assert!(Arc::ptr_eq(moved.budget(), group.budget()), "one budget");
    assert_eq!(moved.resolve_every(), std::time::Duration::from_secs(5));
    let fixed = UpstreamGroup::builder("fixed", backends(&[1])).build();
    assert!(fixed.with_answers(&answers).is_none(), "no names to follow");
}
