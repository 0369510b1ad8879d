//! Selection: spread, weights, tiers, and never a panic.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::peer_addr::PeerAddr;

use super::{Backend, Backends, BackendsError, Selection, SelectionAlgorithm, Tier};

fn addr(port: u16) -> PeerAddr {
    PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn group(weights: &[u32], backups: &[u16], selection: Selection) -> Backends {
    let primaries = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Backend {
            addr: addr(9001 + i as u16),
            weight,
        })
        .collect();
    let backups = backups.iter().map(|&p| Backend::new(addr(p))).collect();
    Backends::new(primaries, backups, selection).unwrap()
}

#[test]
fn round_robin_takes_each_in_turn() {
    let g = group(&[1, 1, 1], &[], Selection::RoundRobin);
    let picks: Vec<u16> = (0..6)
        .map(|_| g.select(&[]).addr.inet().unwrap().port())
        .collect();
    assert_eq!(picks, [9001, 9002, 9003, 9001, 9002, 9003]);
}

#[test]
fn weighted_is_smooth_like_nginx() {
    // nginx's example: weights 5, 1, 1 give a a b a c a a.
    let g = group(&[5, 1, 1], &[], Selection::Weighted);
    let picks: Vec<u16> = (0..7)
        .map(|_| g.select(&[]).addr.inet().unwrap().port())
        .collect();
    assert_eq!(picks, [9001, 9001, 9002, 9001, 9003, 9001, 9001]);
    let mut counts = HashMap::new();
    for _ in 0..700 {
        *counts
            .entry(g.select(&[]).addr.inet().unwrap().port())
            .or_insert(0) += 1;
    }
    assert_eq!(
        (counts[&9001], counts[&9002], counts[&9003]),
        (500, 100, 100)
    );
}

#[test]
fn a_retry_goes_to_a_peer_not_yet_tried() {
    for selection in [Selection::RoundRobin, Selection::Weighted] {
        let g = group(&[1, 1, 1], &[], selection);
        let first = g.select(&[]).addr;
        let second = g.select(&[first]).addr;
        let third = g.select(&[first, second]).addr;
        assert_ne!(first, second);
        assert!(third != first && third != second, "{selection:?}");
    }
}

#[test]
fn backups_only_after_every_primary_was_tried() {
    let g = group(&[1, 1], &[9101, 9102], Selection::RoundRobin);
    let pick = g.select(&[addr(9001)]);
    assert_eq!((pick.addr, pick.tier), (addr(9002), Tier::Primary));
    let pick = g.select(&[addr(9001), addr(9002)]);
    assert_eq!((pick.addr, pick.tier), (addr(9101), Tier::Backup));
    let pick = g.select(&[addr(9001), addr(9002), addr(9101)]);
    assert_eq!(pick.addr, addr(9102));
}

#[test]
fn when_everything_was_tried_it_starts_over_on_the_primaries() {
    let g = group(&[1], &[9101], Selection::Weighted);
    let pick = g.select(&[addr(9001), addr(9101)]);
    assert_eq!(
        (pick.addr, pick.tier, pick.again),
        (addr(9001), Tier::Primary, true)
    );
}

#[test]
fn bad_groups_are_refused_with_a_reason() {
    let empty = Backends::new(vec![], vec![Backend::new(addr(1))], Selection::RoundRobin);
    assert_eq!(empty.unwrap_err(), BackendsError::NoPrimaries);
    let zero = Backends::new(
        vec![Backend {
            addr: addr(2),
            weight: 0,
        }],
        vec![],
        Selection::Weighted,
    );
    assert_eq!(zero.unwrap_err(), BackendsError::ZeroWeight(addr(2)));
}

#[test]
fn retries_do_not_stall_the_rotation() {
    // Every request fails on its first two servers and retries; the first
    // picks must still rotate over all three.
    let g = group(&[1, 1, 1], &[], Selection::RoundRobin);
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let first = g.select(&[]).addr;
        let second = g.select(&[first]).addr;
        let third = g.select(&[first, second]).addr;
        assert_eq!(
            [first, second, third]
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            3
        );
        firsts.push(first.inet().unwrap().port());
    }
    assert_eq!(firsts, [9001, 9002, 9003]);
}

#[test]
fn avoided_peers_are_skipped_and_the_tier_spills_to_backups() {
    let g = group(&[1, 1], &[9100], Selection::RoundRobin);
    let avoid = [addr(9001)];
    for _ in 0..4 {
        assert_eq!(g.select_avoiding(&[], &avoid).addr, addr(9002));
    }
    let all_primaries = [addr(9001), addr(9002)];
    let p = g.select_avoiding(&[], &all_primaries);
    assert_eq!((p.addr, p.tier, p.again), (addr(9100), Tier::Backup, false));
    // The backup failed this request too: back to the usable backup, not
    // to an avoided primary.
    let p = g.select_avoiding(&[addr(9100)], &all_primaries);
    assert_eq!((p.addr, p.tier, p.again), (addr(9100), Tier::Backup, true));
}

#[test]
fn with_every_peer_avoided_a_primary_is_still_picked() {
    let g = group(&[1, 1], &[9100], Selection::Weighted);
    let avoid = [addr(9001), addr(9002), addr(9100)];
    let p = g.select_avoiding(&[], &avoid);
    assert_eq!(p.tier, Tier::Primary);
    assert!(!p.again);
}

#[test]
fn the_hedge_is_the_next_usable_untried_peer() {
    let g = group(&[1, 1, 1], &[9100], Selection::RoundRobin);
    assert_eq!(g.hedge_for(addr(9002), &[], &[]), Some(addr(9003)));
    assert_eq!(
        g.hedge_for(addr(9003), &[], &[]),
        Some(addr(9001)),
        "wraps around"
    );
    assert_eq!(
        g.hedge_for(addr(9001), &[], &[addr(9002)]),
        Some(addr(9003))
    );
    let primaries = [addr(9001), addr(9002), addr(9003)];
    assert_eq!(g.hedge_for(addr(9001), &primaries, &[]), Some(addr(9100)));
    assert_eq!(g.hedge_for(addr(9100), &primaries, &[addr(9100)]), None);
}

#[test]
fn random_reaches_every_eligible_server() {
    let g = group(&[1, 1, 1], &[], Selection::Random);
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for _ in 0..3000 {
        *seen
            .entry(g.select(&[]).addr.inet().unwrap().port())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.values().all(|&n| n > 700), "{seen:?}");
    let avoid = [addr(9001), addr(9002)];
    assert!((0..100).all(|_| g.select_avoiding(&[], &avoid).addr == addr(9003)));
}

#[test]
fn two_choices_prefer_the_faster_and_less_busy_server() {
    let g = group(&[1, 1], &[], Selection::LeastLoaded);
    let (fast, slow) = (addr(9001), addr(9002));
    g.load(fast)
        .unwrap()
        .end(std::time::Duration::from_millis(1));
    g.load(slow)
        .unwrap()
        .end(std::time::Duration::from_millis(50));
    assert!((0..100).all(|_| g.select(&[]).addr == fast));
    // Enough requests queued on the fast one make the slow one better.
    for _ in 0..100 {
        g.load(fast).unwrap().begin();
    }
    assert_eq!(g.select(&[]).addr, slow);
    assert_eq!(g.load(fast).unwrap().in_flight(), 100);
}

#[test]
fn consistent_hashing_keeps_keys_on_their_server_when_another_leaves() {
    let g = group(&[1, 1, 1, 1], &[], Selection::Hash);
    let keys: Vec<u64> = (0..2000)
        .map(|i| super::hash_bytes(format!("user-{i}").as_bytes()))
        .collect();
    let before: Vec<PeerAddr> = keys
        .iter()
        .map(|&k| g.select_keyed(&[], &[], k).addr)
        .collect();
    let mut per: HashMap<PeerAddr, usize> = HashMap::new();
    for a in &before {
        *per.entry(*a).or_default() += 1;
    }
    assert!(
        per.values().all(|&n| n > 300),
        "spread over all four: {per:?}"
    );
    let gone = [addr(9003)];
    for (&key, &was) in keys.iter().zip(&before) {
        let now = g.select_keyed(&[], &gone, key).addr;
        if was == addr(9003) {
            assert_ne!(now, was);
        } else {
            assert_eq!(now, was, "a key of a server that stayed must not move");
        }
    }
    // The same key, asked again, is on the same server (no rotation state).
    assert_eq!(g.select_keyed(&[], &[], keys[0]).addr, before[0]);
}

#[test]
fn hashing_falls_back_when_every_ring_server_was_tried() {
    let g = group(&[1, 1], &[9100], Selection::Hash);
    let tried = [addr(9001), addr(9002)];
    let p = g.select_keyed(&tried, &[], 42);
    assert_eq!((p.addr, p.tier), (addr(9100), Tier::Backup));
}

/// An algorithm of the user's own: the last eligible primary.
#[derive(Debug)]
struct Last;

impl SelectionAlgorithm for Last {
    fn pick(
        &self,
        primaries: &[Backend],
        eligible: &dyn Fn(usize) -> bool,
        _first: bool,
        _key: Option<u64>,
    ) -> Option<usize> {
        (0..primaries.len()).rev().find(|&i| eligible(i))
    }
}

#[test]
fn a_selection_algorithm_of_ones_own_keeps_the_tier_rules() {
    let primaries = vec![Backend::new(addr(1)), Backend::new(addr(2))];
    let backups = vec![Backend::new(addr(9))];
    let g = Backends::with_algorithm(primaries, backups, Box::new(Last)).unwrap();
    assert_eq!(g.select(&[]).addr, addr(2));
    assert_eq!(g.select(&[addr(2)]).addr, addr(1));
    // Every primary tried: the backup, whatever the algorithm.
    let third = g.select(&[addr(2), addr(1)]);
    assert_eq!((third.addr, third.tier), (addr(9), Tier::Backup));
    assert_eq!(g.select_avoiding(&[], &[addr(2)]).addr, addr(1));
    assert!(g.load(addr(1)).is_none(), "it weighs no load");
}
