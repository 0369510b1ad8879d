#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use crate::peer_addr::PeerAddr;
use std::time::{Duration, Instant};

use crate::health::{AdminState, OutlierPolicy, Thresholds, UpstreamHealth};

fn addrs(n: u16) -> Vec<PeerAddr> {
    (0..n)
        .map(|i| PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], 9100 + i))))
        .collect()
}

fn take_down(health: &UpstreamHealth, peer: PeerAddr, now: Instant) {
    for _ in 0..Thresholds::default().fall {
        health.record_check(peer, false, "refused".into(), now);
    }
}

#[test]
fn the_words_are_haproxys() {
    for state in [AdminState::Ready, AdminState::Drain, AdminState::Maint] {
        assert_eq!(state.as_str().parse::<AdminState>().unwrap(), state);
    }
    assert_eq!(" drain\n".parse::<AdminState>().unwrap(), AdminState::Drain);
    assert!("disabled".parse::<AdminState>().is_err());
}

#[test]
fn a_drained_server_is_not_used_even_when_its_tier_panics() {
    let a = addrs(3);
    let health = UpstreamHealth::new(&a, OutlierPolicy::default(), Thresholds::default());
    let now = Instant::now();
    health.set_admin_state(a[0], AdminState::Drain, now);
    take_down(&health, a[1], now);
    take_down(&health, a[2], now);
    // Nothing usable: the tier panics and spreads over its down servers,
    // but never over the one an operator drained.
    assert!(health.in_panic(now));
    assert_eq!(health.avoid(now), vec![a[0]]);
}

#[test]
fn drained_servers_do_not_count_towards_panic() {
    let a = addrs(3);
    let health = UpstreamHealth::new(&a, OutlierPolicy::default(), Thresholds::default());
    let now = Instant::now();
    // Two of three drained: the third is a healthy tier of one, not a
    // tier at 33%.
    health.set_admin_state(a[0], AdminState::Drain, now);
    health.set_admin_state(a[1], AdminState::Maint, now);
    assert!(!health.in_panic(now));
    assert_eq!(health.avoid(now), vec![a[0], a[1]]);
}

#[test]
fn maint_stops_checks_and_drain_does_not() {
    let a = addrs(2);
    let health = UpstreamHealth::new(&a, OutlierPolicy::default(), Thresholds::default());
    let now = Instant::now();
    health.set_admin_state(a[0], AdminState::Drain, now);
    health.set_admin_state(a[1], AdminState::Maint, now);
    assert!(health.wants_checks(a[0]));
    assert!(!health.wants_checks(a[1]));
    assert_eq!(health.admin_state(a[1]), AdminState::Maint);
    assert_eq!(health.snapshot(now)[1].admin, AdminState::Maint);
}

#[test]
fn back_to_ready_a_server_ramps_up_through_slow_start() {
    let a = addrs(2);
    let policy = OutlierPolicy {
        slow_start: Duration::from_secs(10),
        ..OutlierPolicy::default()
    };
    let health = UpstreamHealth::new(&a, policy, Thresholds::default());
    let now = Instant::now();
    health.set_admin_state(a[0], AdminState::Maint, now);
    health.set_admin_state(a[0], AdminState::Ready, now);
    assert!(health.avoid(now).is_empty());
    let share = health.snapshot(now + Duration::from_secs(5))[0].slow_start_permille;
    assert_eq!(share, Some(500));
}

#[test]
fn a_reload_keeps_the_state_of_a_server_that_stays() {
    let a = addrs(3);
    let old = UpstreamHealth::new(&a[..2], OutlierPolicy::default(), Thresholds::default());
    let now = Instant::now();
    old.set_admin_state(a[1], AdminState::Drain, now);
    let new = UpstreamHealth::new(&a[1..], OutlierPolicy::default(), Thresholds::default());
    new.adopt(&old);
    assert_eq!(new.admin_state(a[1]), AdminState::Drain);
    assert_eq!(new.admin_state(a[2]), AdminState::Ready);
    assert_eq!(new.avoid(now), vec![a[1]]);
}

#[test]
fn an_unknown_server_is_refused() {
    let a = addrs(1);
    let health = UpstreamHealth::new(&a, OutlierPolicy::default(), Thresholds::default());
    let other = PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], 1)));
    assert!(!health.set_admin_state(other, AdminState::Drain, Instant::now()));
}
