//! What an operator set for a server, in HAProxy's words: `ready` (in
//! service), `drain` (no new requests; those in flight finish; health
//! checks go on) and `maint` (the same, and no health checks either).
//!
//! An operator's choice is never second-guessed: a drained server is not
//! used even when its tier is in panic, and it does not count towards the
//! panic threshold (draining two of three servers does not make the third
//! look like a failing tier). Back to `ready`, a server ramps up through
//! slow start, as a server coming back from a failure does. A reload keeps
//! the state of a server that stays in the config (`UpstreamHealth::adopt`).
//!
//! ```
//! use std::time::Instant;
//! use switchyard::health::{AdminState, OutlierPolicy, Thresholds, UpstreamHealth};
//!
//! let (a, b) = ("127.0.0.1:9001".parse().unwrap(), "127.0.0.1:9002".parse().unwrap());
//! let health = UpstreamHealth::new(&[a, b], OutlierPolicy::default(), Thresholds::default());
//! let now = Instant::now();
//! assert!(health.set_admin_state(a, AdminState::Drain, now));
//! assert_eq!(health.avoid(now), vec![a]);
//! assert!(health.set_admin_state(a, AdminState::Ready, now));
//! assert!(health.avoid(now).is_empty());
//! ```

use crate::peer_addr::PeerAddr;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{HealthChange, UpstreamHealth, lock};

/// A server's administrative state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// In service (health permitting).
    #[default]
    Ready,
    /// No new requests; requests in flight finish; checks go on.
    Drain,
    /// No new requests and no health checks (maintenance).
    Maint,
}

impl AdminState {
    /// The state's name: `ready`, `drain` or `maint`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not `ready`, `drain` or `maint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAdminState(pub String);

impl fmt::Display for UnknownAdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a server state: write ready, drain or maint",
            self.0
        )
    }
}

impl std::error::Error for UnknownAdminState {}

impl FromStr for AdminState {
    type Err = UnknownAdminState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "ready" => Ok(AdminState::Ready),
            "drain" => Ok(AdminState::Drain),
            "maint" => Ok(AdminState::Maint),
            other => Err(UnknownAdminState(other.to_string())),
        }
    }
}

impl UpstreamHealth {
    /// Set `peer`'s administrative state (see the module docs); false for
    /// a peer this health does not cover.
    pub fn set_admin_state(
        &self,
        peer: impl Into<PeerAddr>,
        state: AdminState,
        now: Instant,
    ) -> bool {
        let peer = peer.into();
        let Some(index) = self.index(peer) else {
            return false;
        };
        let mut peers = lock(&self.peers);
        let was = peers[index].admin;
        if was == state {
            return true;
        }
        let was_usable = peers[index].usable(now);
        peers[index].admin = state;
        if state == AdminState::Ready {
            // It ramps up through slow start, as after a failure.
            peers[index].came_back = Some(now);
            self.ramping.fetch_add(1, Ordering::Relaxed);
        } else {
            self.impaired.fetch_add(1, Ordering::Relaxed);
        }
        let usable = peers[index].usable(now);
        drop(peers);
        if usable != was_usable {
            self.notify(HealthChange {
                peer,
                usable,
                reason: format!("admin: {was} -> {state}"),
            });
        }
        true
    }

    /// `peer`'s administrative state (`Ready` for a peer not covered).
    pub fn admin_state(&self, peer: impl Into<PeerAddr>) -> AdminState {
        let peer = peer.into();
        self.index(peer)
            .map_or(AdminState::Ready, |i| lock(&self.peers)[i].admin)
    }

    /// Whether `peer` is to be health-checked now (not in `maint`).
    pub fn wants_checks(&self, peer: impl Into<PeerAddr>) -> bool {
        let peer = peer.into();
        self.admin_state(peer) != AdminState::Maint
    }
}

#[cfg(test)]
mod tests;
