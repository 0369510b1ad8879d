//! The health state machines, with time as an input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use crate::peer_addr::PeerAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::error::ErrorKind;
use crate::trace::{AttemptLog, AttemptRecord, Decision, Phase};

fn addrs(n: u16) -> Vec<PeerAddr> {
    (0..n)
        .map(|i| PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], 9000 + i))))
        .collect()
}

fn health(n: u16) -> (UpstreamHealth, Vec<PeerAddr>) {
    let a = addrs(n);
    (
        UpstreamHealth::new(&a, OutlierPolicy::default(), Thresholds::default()),
        a,
    )
}

#[test]
fn one_failed_probe_does_not_take_a_peer_down() {
    let t = Thresholds::default();
    let mut s = ActiveState::default();
    assert_eq!(s.verdict(), CheckVerdict::Unknown);
    assert_eq!(s.record(true, "ok".into(), t), Some(CheckVerdict::Up));
    assert_eq!(s.record(false, "refused".into(), t), None);
    assert_eq!(s.record(true, "ok".into(), t), None);
    assert_eq!(s.record(false, "x".into(), t), None);
    assert_eq!(s.record(false, "x".into(), t), None);
    assert_eq!(s.record(false, "x".into(), t), Some(CheckVerdict::Down));
    // Rise takes two passes in a row.
    assert_eq!(s.record(true, "ok".into(), t), None);
    assert_eq!(s.record(false, "x".into(), t), None);
    assert_eq!(s.record(true, "ok".into(), t), None);
    assert_eq!(s.record(true, "ok".into(), t), Some(CheckVerdict::Up));
    assert_eq!(s.last_detail(), "ok");
}

#[test]
fn an_unknown_peer_needs_fall_failures_to_go_down() {
    let t = Thresholds { rise: 2, fall: 2 };
    let mut s = ActiveState::default();
    assert_eq!(s.record(false, "x".into(), t), None);
    assert_eq!(s.verdict(), CheckVerdict::Unknown);
    assert_eq!(s.record(false, "x".into(), t), Some(CheckVerdict::Down));
}

#[test]
fn consecutive_connect_failures_eject_and_ejection_ends() {
    let (h, a) = health(4);
    let now = Instant::now();
    h.report(a[0], Outcome::ConnectFailure, now);
    assert!(h.avoid(now).is_empty(), "one failure is not enough");
    h.report(a[0], Outcome::Timeout, now);
    assert_eq!(h.avoid(now), vec![a[0]]);
    let status = &h.snapshot(now)[0];
    assert!(!status.usable);
    assert_eq!(status.ejections, 1);
    assert_eq!(status.ejected_for, Some(Duration::from_secs(10)));
    assert!(status.reason.as_deref().unwrap().contains("2 consecutive"));
    assert!(
        h.avoid(now + Duration::from_secs(10)).is_empty(),
        "ejection over"
    );
}

#[test]
fn a_success_resets_the_count() {
    let (h, a) = health(2);
    let now = Instant::now();
    h.report(a[0], Outcome::ConnectFailure, now);
    h.report(a[0], Outcome::Success, now);
    h.report(a[0], Outcome::ConnectFailure, now);
    assert!(h.avoid(now).is_empty());
}

#[test]
fn repeated_ejections_last_longer_up_to_the_cap() {
    let mut s = OutlierState::default();
    let policy = OutlierPolicy {
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(25),
        ..OutlierPolicy::default()
    };
    let mut now = Instant::now();
    let mut times = Vec::new();
    for _ in 0..3 {
        s.record(Outcome::ConnectFailure, now, &policy);
        let Passive::Eject(time, reason) = s.record(Outcome::ConnectFailure, now, &policy) else {
            panic!("expected an ejection");
        };
        s.eject(time, reason, now);
        times.push(time);
        now += time;
    }
    let secs = |s| Duration::from_secs(s);
    assert_eq!(times, vec![secs(10), secs(20), secs(25)]);
}

#[test]
fn five_server_errors_eject() {
    let (h, a) = health(2);
    let now = Instant::now();
    for _ in 0..4 {
        h.report(a[1], Outcome::ServerError, now);
    }
    assert!(h.avoid(now).is_empty());
    h.report(a[1], Outcome::ServerError, now);
    assert_eq!(h.avoid(now), vec![a[1]]);
}

#[test]
fn the_cap_limits_how_many_are_ejected() {
    let (h, a) = health(4); // 50% of 4: at most 2
    let now = Instant::now();
    for peer in &a[..3] {
        h.report(*peer, Outcome::ConnectFailure, now);
        h.report(*peer, Outcome::ConnectFailure, now);
    }
    assert_eq!(h.avoid(now), vec![a[0], a[1]]);
    let third = &h.snapshot(now)[2];
    assert!(third.usable);
    assert!(
        third.reason.as_deref().unwrap().contains("cap 50%"),
        "{third:?}"
    );
}

#[test]
fn one_peer_can_always_be_ejected() {
    let (h, a) = health(1);
    let now = Instant::now();
    h.report(a[0], Outcome::ConnectFailure, now);
    h.report(a[0], Outcome::ConnectFailure, now);
    assert_eq!(h.snapshot(now)[0].ejections, 1);
    // ...but with no usable peer left the group is in panic: use it anyway.
    assert!(h.in_panic(now));
    assert!(h.avoid(now).is_empty());
}

/// Take `peer` down by three failed active checks (the default fall).
fn check_down(h: &UpstreamHealth, peer: PeerAddr, now: Instant) {
    for _ in 0..3 {
        h.record_check(peer, false, "refused".into(), now);
    }
}

#[test]
fn a_usable_backup_keeps_down_primaries_avoided() {
    let a = addrs(3);
    let h = UpstreamHealth::tiered(
        &a[..2],
        &a[2..],
        OutlierPolicy::default(),
        Thresholds::default(),
    );
    let now = Instant::now();
    check_down(&h, a[0], now);
    check_down(&h, a[1], now);
    assert!(!h.in_panic(now), "the backup tier is healthy");
    assert_eq!(h.avoid(now), vec![a[0], a[1]]);
    // With the backup down too, no tier has a usable peer: use them all.
    check_down(&h, a[2], now);
    assert!(h.in_panic(now));
    assert!(h.avoid(now).is_empty());
}

#[test]
fn a_tier_spreads_only_when_it_is_the_last_with_a_usable_peer() {
    // Primaries: 1 of 3 usable (in panic by the threshold); one backup.
    let a = addrs(4);
    let h = UpstreamHealth::tiered(
        &a[..3],
        &a[3..],
        OutlierPolicy::default(),
        Thresholds::default(),
    );
    let now = Instant::now();
    check_down(&h, a[0], now);
    check_down(&h, a[1], now);
    assert_eq!(h.avoid(now), vec![a[0], a[1]], "the backup is usable");
    check_down(&h, a[3], now);
    assert!(h.in_panic(now));
    assert_eq!(
        h.avoid(now),
        vec![a[3]],
        "primaries spread over their own peers; the down backup stays avoided"
    );
}

#[test]
fn panic_mode_spreads_over_all_when_too_few_are_usable() {
    let policy = OutlierPolicy {
        max_ejected_percent: 100,
        ..OutlierPolicy::default()
    };
    let a = addrs(4);
    let h = UpstreamHealth::new(&a, policy, Thresholds::default());
    let now = Instant::now();
    for peer in &a[..2] {
        h.report(*peer, Outcome::ConnectFailure, now);
        h.report(*peer, Outcome::ConnectFailure, now);
    }
    assert_eq!(h.avoid(now).len(), 2, "2 of 4 usable: 50% is not panic");
    h.report(a[2], Outcome::ConnectFailure, now);
    h.report(a[2], Outcome::ConnectFailure, now);
    assert!(h.in_panic(now));
    assert!(h.avoid(now).is_empty(), "panic: every peer is used");
}

#[test]
fn active_checks_take_down_and_bring_back_with_events() {
    let (h, a) = health(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    h.set_listener(Arc::new(move |c: &HealthChange| {
        sink.lock().unwrap().push((c.peer, c.usable));
    }));
    let now = Instant::now();
    for _ in 0..3 {
        h.record_check(a[0], false, "connect: refused".into(), now);
    }
    assert!(h.is_down(a[0]));
    assert_eq!(h.avoid(now), vec![a[0]]);
    h.record_check(a[0], true, "connected".into(), now);
    assert_eq!(h.avoid(now), vec![a[0]], "rise needs two passes");
    h.record_check(a[0], true, "connected".into(), now);
    assert!(h.avoid(now).is_empty());
    assert_eq!(*seen.lock().unwrap(), vec![(a[0], false), (a[0], true)]);
}

#[test]
fn passing_checks_lift_an_ejection() {
    let (h, a) = health(2);
    let now = Instant::now();
    for _ in 0..3 {
        h.record_check(a[0], false, "refused".into(), now);
    }
    h.report(a[0], Outcome::ConnectFailure, now);
    h.report(a[0], Outcome::ConnectFailure, now);
    h.record_check(a[0], true, "ok".into(), now);
    h.record_check(a[0], true, "ok".into(), now);
    assert!(h.avoid(now).is_empty());
}

#[test]
fn a_new_health_adopts_what_the_old_one_knew_of_shared_peers() {
    let (old, a) = health(3);
    let now = Instant::now();
    old.report(a[0], Outcome::ConnectFailure, now);
    old.report(a[0], Outcome::ConnectFailure, now);
    for _ in 0..3 {
        old.record_check(a[1], false, "refused".into(), now);
    }
    // The new config keeps a[0] and a[1], drops a[2], adds another.
    let other = PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], 9100)));
    let new = UpstreamHealth::new(
        &[a[0], a[1], other],
        OutlierPolicy {
            max_ejected_percent: 100,
            panic_threshold_percent: 0,
            ..OutlierPolicy::default()
        },
        Thresholds::default(),
    );
    new.adopt(&old);
    assert_eq!(new.avoid(now), vec![a[0], a[1]]);
    let status = new.snapshot(now);
    assert_eq!(status[0].ejections, 1);
    assert_eq!(status[1].verdict, CheckVerdict::Down);
    assert_eq!(status[2].verdict, CheckVerdict::Unknown);
}

/// An attempt record on 127.0.0.1:9000 with `error`, `status` and `reused`.
fn attempt(error: Option<ErrorKind>, status: Option<u16>, reused: bool) -> AttemptRecord {
    AttemptRecord {
        peer: addrs(1)[0],
        reused,
        stale_replaced: 0,
        phase: Phase::Complete,
        error,
        status: status.map(|s| http::StatusCode::from_u16(s).unwrap()),
        request_body_bytes: 0,
        response_body_bytes: 0,
        started: Duration::ZERO,
        duration: Duration::ZERO,
        decision: Decision::Done,
        note: None,
        backoff: Duration::ZERO,
        hedged: None,
        hedge_won: false,
        request_hedge: None,
        span_id: None,
    }
}

#[test]
fn every_failure_that_says_something_about_the_server_counts() {
    use ErrorKind as K;
    let cases = [
        // (error, status, reused, outcome)
        (None, Some(200), false, Some(Outcome::Success)),
        (None, Some(503), true, Some(Outcome::ServerError)),
        (
            Some(K::ConnectRefused),
            None,
            false,
            Some(Outcome::ConnectFailure),
        ),
        (
            Some(K::TlsHandshake),
            None,
            false,
            Some(Outcome::ConnectFailure),
        ),
        (
            Some(K::TlsCertificate),
            None,
            false,
            Some(Outcome::ConnectFailure),
        ),
        (
            Some(K::ConnectTimedOut),
            None,
            false,
            Some(Outcome::Timeout),
        ),
        (Some(K::WriteTimedOut), None, true, Some(Outcome::Timeout)),
        (
            Some(K::ResponseHeadTimedOut),
            None,
            false,
            Some(Outcome::Timeout),
        ),
        (
            Some(K::ResponseBodyTimedOut),
            Some(200),
            false,
            Some(Outcome::Timeout),
        ),
        // A reset before the head on a new connection.
        (Some(K::ReadError), None, false, Some(Outcome::Broken)),
        (Some(K::WriteError), None, false, Some(Outcome::Broken)),
        (
            Some(K::ClosedBeforeHead),
            None,
            false,
            Some(Outcome::Broken),
        ),
        (Some(K::InvalidResponse), None, false, Some(Outcome::Broken)),
        (Some(K::InvalidResponse), None, true, Some(Outcome::Broken)),
        // A body that broke after a good head is a failure, not a success.
        (Some(K::ReadError), Some(200), false, Some(Outcome::Broken)),
        (Some(K::ReadError), Some(200), true, Some(Outcome::Broken)),
        // A reused connection dropped before any head: a keep-alive race.
        (Some(K::ClosedBeforeHead), None, true, None),
        (Some(K::ReadError), None, true, None),
        (Some(K::WriteError), None, true, None),
        // A status a hook rejected counts as that status.
        (
            Some(K::UpstreamStatus),
            Some(503),
            false,
            Some(Outcome::ServerError),
        ),
        // The client's or the proxy's failures: by the status, if any.
        (Some(K::DownstreamClosed), None, false, None),
        (
            Some(K::DownstreamClosed),
            Some(200),
            false,
            Some(Outcome::Success),
        ),
        (Some(K::InvalidDownstreamRequest), None, false, None),
        (Some(K::Internal), None, false, None),
        // The proxy's own limit says nothing about the server.
        (Some(K::ConnectionLimitReached), None, false, None),
    ];
    for (error, status, reused, want) in cases {
        let got = outcome_of(&attempt(error, status, reused));
        assert_eq!(got, want, "{error:?} status {status:?} reused {reused}");
    }
}

#[test]
fn a_broken_body_between_failures_does_not_reset_the_count() {
    let (h, a) = health(4);
    let mut log = AttemptLog::new(Instant::now());
    log.begin(a[0], Instant::now());
    if let Some(record) = log.current() {
        record.error = Some(ErrorKind::ReadError);
    }
    log.finish(Decision::Retry, Instant::now());
    log.begin(a[0], Instant::now());
    if let Some(record) = log.current() {
        record.error = Some(ErrorKind::ReadError);
        record.status = Some(http::StatusCode::OK);
    }
    let now = Instant::now();
    h.report_attempts(&log, now);
    assert_eq!(h.avoid(now), vec![a[0]], "{:?}", h.snapshot(now)[0]);
    let reason = h.snapshot(now)[0].reason.clone().unwrap();
    assert!(
        reason.contains("2 consecutive failures, the last a broken exchange"),
        "{reason}"
    );
}

#[test]
fn a_peer_asking_for_time_is_avoided_until_then_and_a_shorter_ask_does_not_cut_it() {
    let (health, a) = health(3);
    let now = Instant::now();
    let secs = Duration::from_secs;
    health.hold(a[0], now + secs(5), "503 with Retry-After (5s)".into(), now);
    health.hold(a[0], now + secs(1), "429 with Retry-After (1s)".into(), now);
    assert_eq!(health.avoid(now + secs(2)), vec![a[0]]);
    let status = &health.snapshot(now + secs(2))[0];
    assert!(!status.usable);
    assert_eq!(status.held_for, Some(secs(3)));
    assert_eq!(
        status.held_because.as_deref(),
        Some("503 with Retry-After (5s)")
    );
    assert_eq!(status.ejections, 0, "asking for time is not a failure");
    assert!(health.avoid(now + secs(5)).is_empty());
    assert_eq!(health.snapshot(now + secs(5))[0].held_for, None);
}

#[test]
fn a_peer_new_in_a_reload_or_passing_checks_again_ramps_up() {
    let policy = OutlierPolicy {
        slow_start: Duration::from_secs(10),
        ..OutlierPolicy::default()
    };
    let a = addrs(3);
    let old = UpstreamHealth::new(&a[..2], policy, Thresholds::default());
    let new = UpstreamHealth::new(&a, policy, Thresholds::default());
    new.adopt(&old);
    let now = Instant::now();
    let share = |h: &UpstreamHealth, i: usize, at: Instant| h.snapshot(at)[i].slow_start_permille;
    assert_eq!(share(&new, 0, now), None, "kept from before the reload");
    assert!(
        share(&new, 2, now).is_some_and(|p| p <= 150),
        "new in the reload"
    );
    assert_eq!(
        share(&new, 2, now + Duration::from_secs(11)),
        None,
        "ramp over"
    );

    let t = Thresholds::default();
    let checked = UpstreamHealth::new(&a, policy, t);
    for _ in 0..t.fall {
        checked.record_check(a[1], false, "refused".into(), now);
    }
    assert_eq!(share(&checked, 1, now), None, "down, not ramping");
    for _ in 0..t.rise {
        checked.record_check(a[1], true, "ok".into(), now);
    }
    let later = now + Duration::from_secs(5);
    assert_eq!(share(&checked, 1, later), Some(500));
}

#[test]
fn in_a_dry_run_the_success_rate_reports_an_ejection_and_makes_none() {
    let policy = OutlierPolicy {
        success_rate_window: 4,
        min_success_percent: 60,
        mode: crate::policy::dry_run::Mode::DryRun,
        ..OutlierPolicy::default()
    };
    let a = addrs(2);
    let h = UpstreamHealth::new(&a, policy, Thresholds::default());
    let now = Instant::now();
    let mut would = Vec::new();
    for outcome in [
        Outcome::ServerError,
        Outcome::Success,
        Outcome::ServerError,
        Outcome::Success,
    ] {
        would.extend(h.report(a[0], outcome, now));
    }
    let eject = crate::policy::dry_run::WouldHave {
        policy: "outlier",
        would: "eject",
    };
    assert_eq!(would, vec![eject]);
    assert!(h.avoid(now).is_empty(), "not ejected");
    assert_eq!(h.snapshot(now)[0].ejections, 0);
}

#[test]
fn a_dry_run_of_the_success_rate_leaves_the_counts_in_a_row_as_they_were() {
    // Found in review: a would-be ejection returned before a success reset
    // the 5xx in a row, so the next 5xx ejected for "5 in a row".
    let policy = OutlierPolicy {
        success_rate_window: 5,
        min_success_percent: 60,
        consecutive_5xx: 5,
        mode: crate::policy::dry_run::Mode::DryRun,
        ..OutlierPolicy::default()
    };
    let mut s = OutlierState::default();
    let now = Instant::now();
    for _ in 0..4 {
        assert_eq!(
            s.record(Outcome::ServerError, now, &policy),
            Passive::Nothing
        );
    }
    // The fifth fills the window with one success in five: a dry-run ejection.
    assert!(matches!(
        s.record(Outcome::Success, now, &policy),
        Passive::WouldEject(_)
    ));
    assert_eq!(
        s.record(Outcome::ServerError, now, &policy),
        Passive::Nothing,
        "the success reset the 5xx in a row"
    );
}
