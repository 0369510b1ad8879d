//! Health of an upstream group's peers: active checks and passive outlier
//! ejection, combined into one answer for selection — which peers not to
//! use now — with a reason for every decision.
//!
//! [`UpstreamHealth`] is fed by the engine's attempt trace
//! ([`UpstreamHealth::report_attempts`], mapped in `passive.rs`, or one
//! outcome at a time with [`UpstreamHealth::report`]) and by active checks
//! ([`UpstreamHealth::record_check`], run by [`checker`]). A peer is not
//! used while active checks say it is down or while it is ejected.
//!
//! Panic is judged per tier (primaries, then backups, see
//! [`UpstreamHealth::tiered`]): a tier with fewer than
//! `panic_threshold_percent` of its peers usable spreads its traffic over
//! all of its peers, down ones included, since refusing all traffic is
//! worse, but only when it is the one tier left with a usable peer. While
//! another tier has a usable peer, the down peers stay avoided, so a
//! healthy backup is used before any primary marked down. When no tier has
//! a usable peer, every peer is used.
//!
//! ```
//! use std::time::Instant;
//! use switchyard::health::{Outcome, OutlierPolicy, Thresholds, UpstreamHealth};
//!
//! let a = "127.0.0.1:9001".parse().unwrap();
//! let b = "127.0.0.1:9002".parse().unwrap();
//! let health = UpstreamHealth::new(&[a, b], OutlierPolicy::default(), Thresholds::default());
//! let now = Instant::now();
//! health.report(a, Outcome::ConnectFailure, now);
//! health.report(a, Outcome::ConnectFailure, now);
//! assert_eq!(health.avoid(now), vec![a]);
//! ```

mod admin;
pub mod checker;
mod latency;
mod passive;
mod state;
#[cfg(test)]
mod tests;

use crate::peer_addr::PeerAddr;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use admin::{AdminState, UnknownAdminState};
pub use passive::outcome_of;

use crate::policy::dry_run::{Mode, WouldHave};
pub use state::{
    ActiveState, CheckVerdict, Outcome, OutlierPolicy, OutlierState, Passive, Thresholds,
};

/// A change in whether a peer is used, for logs and listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// The peer.
    pub peer: PeerAddr,
    /// Whether it is now used.
    pub usable: bool,
    /// Why, in words (e.g. `2 consecutive failures, the last a timeout`).
    pub reason: String,
}

/// Called on every [`HealthChange`].
pub type HealthListener = Arc<dyn Fn(&HealthChange) + Send + Sync>;

/// One peer as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub peer: PeerAddr,
    /// Whether selection uses it now (panic mode aside).
    pub usable: bool,
    /// The active checks' verdict.
    pub verdict: CheckVerdict,
    /// What the last active check saw.
    pub last_check: String,
    /// Time left of the current ejection, if ejected.
    pub ejected_for: Option<Duration>,
    /// Times ejected so far.
    pub ejections: u32,
    /// Why it was last ejected (or why an ejection was refused).
    pub reason: Option<String>,
    /// Time left of the wait it asked for (`Retry-After`), if it asked.
    pub held_for: Option<Duration>,
    /// What it answered when it asked for that wait.
    pub held_because: Option<String>,
    /// Its share of traffic while it ramps up after coming back, in per
    /// mille (`None`: a full share).
    pub slow_start_permille: Option<u16>,
    /// What an operator set: ready, drain or maint.
    pub admin: AdminState,
}

#[derive(Debug, Default)]
struct Peer {
    active: ActiveState,
    outlier: OutlierState,
    /// Until when the peer asked to be left alone, and why.
    held: Option<(Instant, String)>,
    /// When it last came back (checks passing again, new in DNS); an
    /// ejection's end counts too (see [`Peer::back_since`]).
    came_back: Option<Instant>,
    /// Its latest successful response times (`latency.rs`).
    latency: latency::Samples,
    /// What an operator set (`admin.rs`).
    admin: AdminState,
}

impl Peer {
    fn usable(&self, now: Instant) -> bool {
        self.admin == AdminState::Ready
            && self.active.verdict() != CheckVerdict::Down
            && !self.outlier.ejected(now)
            && !self.held(now)
    }

    /// What selection and the panic judgement see of it at `now`.
    fn look(&self, now: Instant) -> Look {
        Look {
            usable: self.usable(now),
            in_service: self.admin == AdminState::Ready,
        }
    }

    fn held(&self, now: Instant) -> bool {
        self.held.as_ref().is_some_and(|(until, _)| now < *until)
    }

    /// When the peer last became usable again: checks passing after it was
    /// down, its appearance in a reload, or the end of its last ejection.
    fn back_since(&self, now: Instant) -> Option<Instant> {
        let ejection_over = self.outlier.ejected_until().filter(|until| *until <= now);
        self.came_back.max(ejection_over)
    }

    /// Its share of traffic at `now` under a slow start of `slow_start`.
    fn ramp(&self, now: Instant, slow_start: Duration) -> Option<f64> {
        if !self.usable(now) {
            return None;
        }
        let since = now.saturating_duration_since(self.back_since(now)?);
        crate::policy::slow_start::share(since, slow_start)
    }
}

/// One peer as selection sees it at one moment.
#[derive(Debug, Clone, Copy)]
struct Look {
    /// Selection may use it.
    usable: bool,
    /// An operator has not taken it out (drain, maint): only such peers
    /// count for panic, and only they are spread over in panic.
    in_service: bool,
}

/// The health of one group's peers. Cheap when all is well: selection
/// takes a lock only while some peer is down or ejected.
pub struct UpstreamHealth {
    /// The primaries, then the backups.
    addrs: Vec<PeerAddr>,
    /// Where the backups start in `addrs` (its length when there are none).
    backups_from: usize,
    peers: Mutex<Vec<Peer>>,
    policy: OutlierPolicy,
    thresholds: Thresholds,
    /// Peers down or ejected (possibly stale-high: an ejection that ran out
    /// is cleared at the next look).
    impaired: AtomicUsize,
    /// Peers that may be ramping up (stale-high, recounted at the next
    /// look): selection asks nothing while it is zero.
    ramping: AtomicUsize,
    listener: Mutex<Option<HealthListener>>,
}

impl fmt::Debug for UpstreamHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamHealth")
            .field("addrs", &self.addrs)
            .field("backups_from", &self.backups_from)
            .field("policy", &self.policy)
            .field("thresholds", &self.thresholds)
            .finish_non_exhaustive()
    }
}

impl UpstreamHealth {
    /// Health for `addrs`, one tier, every peer unknown and not ejected.
    pub fn new(addrs: &[PeerAddr], policy: OutlierPolicy, thresholds: Thresholds) -> Self {
        UpstreamHealth::tiered(addrs, &[], policy, thresholds)
    }

    /// Health for a group of `primaries` and `backups`, each tier judged
    /// for panic on its own (see the module docs).
    ///
    /// ```
    /// use std::time::Instant;
    /// use switchyard::health::{OutlierPolicy, Thresholds, UpstreamHealth};
    ///
    /// let (a, b, c) = ("127.0.0.1:9001".parse().unwrap(), "127.0.0.1:9002".parse().unwrap(),
    ///                  "127.0.0.1:9003".parse().unwrap());
    /// let health = UpstreamHealth::tiered(&[a, b], &[c], OutlierPolicy::default(), Thresholds::default());
    /// let now = Instant::now();
    /// for peer in [a, b] {
    ///     for _ in 0..3 {
    ///         health.record_check(peer, false, "refused".into(), now);
    ///     }
    /// }
    /// // Both primaries are down and the backup is healthy: no panic, the backup serves.
    /// assert_eq!(health.avoid(now), vec![a, b]);
    /// assert!(!health.in_panic(now));
    /// ```
    pub fn tiered(
        primaries: &[PeerAddr],
        backups: &[PeerAddr],
        policy: OutlierPolicy,
        thresholds: Thresholds,
    ) -> Self {
        let addrs: Vec<PeerAddr> = primaries.iter().chain(backups).copied().collect();
        UpstreamHealth {
            backups_from: primaries.len(),
            peers: Mutex::new(addrs.iter().map(|_| Peer::default()).collect()),
            addrs,
            policy,
            thresholds,
            impaired: AtomicUsize::new(0),
            ramping: AtomicUsize::new(0),
            listener: Mutex::new(None),
        }
    }

    /// The peers this health covers.
    pub fn peers(&self) -> &[PeerAddr] {
        &self.addrs
    }

    /// The active-check thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Call `listener` on every change of a peer's usability.
    pub fn set_listener(&self, listener: HealthListener) {
        *lock(&self.listener) = Some(listener);
    }

    /// Peers selection should avoid at `now`: down or ejected, less those
    /// of a tier in panic (see the module docs).
    pub fn avoid(&self, now: Instant) -> Vec<PeerAddr> {
        if self.impaired.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let looks = {
            // Recounted under the lock that every change of a peer's state
            // takes before it raises the count, so no raise is lost.
            let peers = lock(&self.peers);
            let looks: Vec<Look> = peers.iter().map(|p| p.look(now)).collect();
            let unusable = looks.iter().filter(|l| !l.usable).count();
            self.impaired.store(unusable, Ordering::Relaxed);
            looks
        };
        let spread = self.tiers_in_panic(&looks);
        self.addrs
            .iter()
            .zip(&looks)
            .enumerate()
            .filter(|(i, (_, look))| {
                // Spread over in panic: the down ones still in service.
                let spread_over = spread[self.tier_of(*i)] && look.in_service;
                !look.usable && !spread_over
            })
            .map(|(_, (addr, _))| *addr)
            .collect()
    }

    /// Whether some peer is usable at `now` (neither down nor ejected):
    /// no lock taken while none is impaired.
    pub fn has_usable(&self, now: Instant) -> bool {
        if self.impaired.load(Ordering::Relaxed) == 0 {
            return !self.addrs.is_empty();
        }
        self.looks_at(now).iter().any(|look| look.usable)
    }

    /// Whether some tier is in panic at `now`: it spreads its traffic over
    /// its peers marked down (see the module docs).
    pub fn in_panic(&self, now: Instant) -> bool {
        self.tiers_in_panic(&self.looks_at(now)).contains(&true)
    }

    /// Each peer as selection sees it at `now`, in `addrs` order.
    fn looks_at(&self, now: Instant) -> Vec<Look> {
        lock(&self.peers).iter().map(|p| p.look(now)).collect()
    }

    /// For the primary and the backup tier, whether it is in panic given
    /// each peer's look: fewer usable than the threshold of its peers in
    /// service, and no other tier has a usable peer.
    fn tiers_in_panic(&self, looks: &[Look]) -> [bool; 2] {
        let (primaries, backups) = looks.split_at(self.backups_from.min(looks.len()));
        let count = |tier: &[Look]| {
            let usable = tier.iter().filter(|l| l.usable).count();
            (usable, tier.iter().filter(|l| l.in_service).count())
        };
        let ((p, p_len), (b, b_len)) = (count(primaries), count(backups));
        let below = |usable: usize, len: usize| {
            len > 0 && usable * 100 < len * usize::from(self.policy.panic_threshold_percent)
        };
        [below(p, p_len) && b == 0, below(b, b_len) && p == 0]
    }

    /// 0 for a primary's index in `addrs`, 1 for a backup's.
    fn tier_of(&self, index: usize) -> usize {
        usize::from(index >= self.backups_from)
    }

    /// Record an attempt's outcome on `peer` (unknown peers are ignored).
    /// In a dry run (`OutlierPolicy::mode`), an ejection by success rate is
    /// not made but returned, and logged.
    pub fn report(
        &self,
        peer: impl Into<PeerAddr>,
        outcome: Outcome,
        now: Instant,
    ) -> Option<WouldHave> {
        let peer = peer.into();
        let index = self.index(peer)?;
        let mut peers = lock(&self.peers);
        match peers[index].outlier.record(outcome, now, &self.policy) {
            Passive::Nothing => None,
            Passive::Eject(time, reason) => {
                self.eject(peers, index, time, reason, now);
                None
            }
            Passive::WouldEject(reason) => {
                drop(peers);
                would_eject(peer, &reason)
            }
        }
    }

    /// The mode of this group's newer judges (success rate, latency, slow start).
    pub fn mode(&self) -> Mode {
        self.policy.mode
    }

    /// Eject peer `index` for `time`, unless the cap forbids it (then say
    /// why in its state).
    fn eject(
        &self,
        mut peers: MutexGuard<'_, Vec<Peer>>,
        index: usize,
        time: Duration,
        reason: String,
        now: Instant,
    ) {
        let peer = self.addrs[index];
        let ejected = peers.iter().filter(|p| p.outlier.ejected(now)).count();
        let cap = (self.addrs.len() * usize::from(self.policy.max_ejected_percent) / 100).max(1);
        if ejected >= cap {
            let why = format!(
                "{reason}; not ejected: {ejected} of {} already ejected (cap {}%)",
                self.addrs.len(),
                self.policy.max_ejected_percent
            );
            peers[index].outlier.refused(why);
            return;
        }
        let was_usable = peers[index].usable(now);
        let reason = format!("ejected for {time:?}: {reason}");
        peers[index].outlier.eject(time, reason.clone(), now);
        self.impaired.fetch_add(1, Ordering::Relaxed);
        // Its ejection's end starts a slow start.
        self.ramping.fetch_add(1, Ordering::Relaxed);
        drop(peers);
        if was_usable {
            self.notify(HealthChange {
                peer,
                usable: false,
                reason,
            });
        }
    }

    /// `peer` asked to be left alone until `until` (a 503 or 429 with
    /// `Retry-After`; `why` says which): selection avoids it until then,
    /// as it avoids an ejected peer, and the admin view shows why. A later
    /// `until` extends the wait; an earlier one does not shorten it. It
    /// says nothing about the peer's failures: outlier counts are untouched.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use switchyard::health::{OutlierPolicy, Thresholds, UpstreamHealth};
    ///
    /// let (a, b) = ("127.0.0.1:9001".parse().unwrap(), "127.0.0.1:9002".parse().unwrap());
    /// let health = UpstreamHealth::new(&[a, b], OutlierPolicy::default(), Thresholds::default());
    /// let now = Instant::now();
    /// health.hold(a, now + Duration::from_secs(5), "503 with Retry-After: 5".into(), now);
    /// assert_eq!(health.avoid(now), vec![a]);
    /// assert!(health.avoid(now + Duration::from_secs(5)).is_empty());
    /// ```
    pub fn hold(&self, peer: impl Into<PeerAddr>, until: Instant, why: String, now: Instant) {
        let peer = peer.into();
        let Some(index) = self.index(peer) else {
            return;
        };
        let mut peers = lock(&self.peers);
        let was_usable = peers[index].usable(now);
        let longer = peers[index]
            .held
            .as_ref()
            .is_none_or(|(held_until, _)| *held_until < until);
        if !longer {
            return;
        }
        peers[index].held = Some((until, why.clone()));
        self.impaired.fetch_add(1, Ordering::Relaxed);
        drop(peers);
        if was_usable {
            self.notify(HealthChange {
                peer,
                usable: false,
                reason: format!("asked to wait {:?}: {why}", until - now),
            });
        }
    }

    /// Record an active check of `peer`; `detail` says what it saw.
    pub fn record_check(
        &self,
        peer: impl Into<PeerAddr>,
        passed: bool,
        detail: String,
        now: Instant,
    ) {
        let peer = peer.into();
        let Some(index) = self.index(peer) else {
            return;
        };
        let mut peers = lock(&self.peers);
        let was_usable = peers[index].usable(now);
        let reason = format!("active check: {detail}");
        let Some(verdict) = peers[index].active.record(passed, detail, self.thresholds) else {
            return;
        };
        if verdict == CheckVerdict::Up {
            // A peer that passes its checks again is not kept out by an
            // ejection from before it recovered.
            peers[index].outlier.lift();
        }
        let usable = peers[index].usable(now);
        if usable && !was_usable {
            peers[index].came_back = Some(now);
            self.ramping.fetch_add(1, Ordering::Relaxed);
        }
        if verdict == CheckVerdict::Down {
            self.impaired.fetch_add(1, Ordering::Relaxed);
        }
        drop(peers);
        if usable != was_usable {
            self.notify(HealthChange {
                peer,
                usable,
                reason: format!("{reason} ({})", verdict.as_str()),
            });
        }
    }

    /// Take over what `old` knows of the peers both cover (verdicts,
    /// ejections, counts): a config reload then does not forget that a
    /// server that stayed is down or ejected.
    pub fn adopt(&self, old: &UpstreamHealth) {
        if std::ptr::eq(self, old) {
            return;
        }
        let old_peers = lock(&old.peers);
        let mut peers = lock(&self.peers);
        let mut impaired = 0;
        let now = Instant::now();
        for (index, addr) in self.addrs.iter().enumerate() {
            if let Some(was) = old.index(*addr) {
                peers[index].active = old_peers[was].active.clone();
                peers[index].outlier = old_peers[was].outlier.clone();
                peers[index].held = old_peers[was].held.clone();
                peers[index].came_back = old_peers[was].came_back;
                peers[index].latency = old_peers[was].latency.clone();
                peers[index].admin = old_peers[was].admin;
                impaired += 1;
            } else {
                // New in DNS or in the config: it ramps up.
                peers[index].came_back = Some(now);
            }
        }
        // Stale-high is fine: the next look recounts.
        self.impaired.fetch_add(impaired, Ordering::Relaxed);
        self.ramping.fetch_add(self.addrs.len(), Ordering::Relaxed);
    }

    /// Whether `peer` is down by active checks (so checks come faster).
    pub fn is_down(&self, peer: impl Into<PeerAddr>) -> bool {
        let peer = peer.into();
        self.index(peer)
            .is_some_and(|i| lock(&self.peers)[i].active.verdict() == CheckVerdict::Down)
    }

    /// Every peer's state at `now`, for the admin API.
    pub fn snapshot(&self, now: Instant) -> Vec<PeerStatus> {
        let peers = lock(&self.peers);
        self.addrs
            .iter()
            .zip(peers.iter())
            .map(|(addr, p)| PeerStatus {
                peer: *addr,
                usable: p.usable(now),
                verdict: p.active.verdict(),
                last_check: p.active.last_detail().to_string(),
                ejected_for: p
                    .outlier
                    .ejected_until()
                    .filter(|until| now < *until)
                    .map(|until| until - now),
                ejections: p.outlier.ejections(),
                reason: p.outlier.reason().map(str::to_string),
                held_for: p
                    .held
                    .as_ref()
                    .filter(|(until, _)| now < *until)
                    .map(|(until, _)| *until - now),
                held_because: p
                    .held
                    .as_ref()
                    .filter(|(until, _)| now < *until)
                    .map(|(_, why)| why.clone()),
                slow_start_permille: p
                    .ramp(now, self.policy.slow_start)
                    .map(|share| (share * 1000.0) as u16),
                admin: p.admin,
            })
            .collect()
    }

    /// Whether a pick of `peer` at `now` stands: always, unless it is
    /// ramping up after coming back (`policy::slow_start`) and a random
    /// draw above its share says to pick again among the others. Cheap
    /// while no peer ramps.
    pub fn slow_start_admits(&self, peer: impl Into<PeerAddr>, now: Instant) -> bool {
        let peer = peer.into();
        if self.policy.slow_start.is_zero() || self.ramping.load(Ordering::Relaxed) == 0 {
            return true;
        }
        let peers = lock(&self.peers);
        let ramping = peers
            .iter()
            .filter(|p| p.ramp(now, self.policy.slow_start).is_some() || p.outlier.ejected(now))
            .count();
        self.ramping.store(ramping, Ordering::Relaxed);
        let share = self
            .index(peer)
            .and_then(|i| peers[i].ramp(now, self.policy.slow_start));
        drop(peers);
        share.is_none_or(|share| crate::policy::slow_start::admit(share, crate::random::unit()))
    }

    fn index(&self, peer: PeerAddr) -> Option<usize> {
        self.addrs.iter().position(|a| *a == peer)
    }

    fn notify(&self, change: HealthChange) {
        tracing::warn!(peer = %change.peer, usable = change.usable, reason = %change.reason, "upstream health changed");
        let listener = lock(&self.listener).clone();
        if let Some(listener) = listener {
            listener(&change);
        }
    }
}

/// A dry run's ejection: logged, and returned for the caller to count.
fn would_eject(peer: PeerAddr, reason: &str) -> Option<WouldHave> {
    tracing::info!(%peer, reason, "dry run: outlier detection would eject this server");
    Some(WouldHave {
        policy: "outlier",
        would: "eject",
    })
}

/// A poisoned lock still holds consistent counters: keep going.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
