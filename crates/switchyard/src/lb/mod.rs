//! Choosing a peer among an upstream group's servers.
//!
//! [`Backends`] holds the primary servers and the backups of one group. For
//! each attempt, [`Backends::select`] prefers a primary this request has not
//! tried yet (round robin, smooth weighted round robin as nginx does,
//! random, power of two choices on load, or consistent hashing on a key),
//! then a backup not tried yet (backups are used only once every primary
//! failed this request), and once every server was tried it starts over on
//! the primaries. It never panics: a group without servers, or with a zero
//! weight, is refused when built, with the reason.
//!
//! Which primary is the algorithm's: a type behind [`SelectionAlgorithm`]
//! (`algorithm.rs`), named by [`Selection`] for the built-in ones, or your
//! own, given to [`Backends::with_algorithm`]. The tiers, health and the
//! request's earlier attempts stay here, whatever the algorithm.
//!
//! Health narrows the candidates: [`Backends::select_avoiding`] skips the
//! peers health says to avoid (down or ejected). The tier rule: primaries
//! that are usable and untried first; then usable untried backups (a tier
//! spills to the next only when it has no usable untried peer); then usable
//! peers again; and only when every usable peer was tried, the avoided
//! ones, as a last resort rather than an error.

use crate::peer_addr::PeerAddr;
use std::fmt;

mod algorithm;
mod choose;
#[cfg(test)]
mod tests;

pub use algorithm::{
    ConsistentHash, LeastLoaded, Random, RoundRobin, SelectionAlgorithm, Weighted,
};
pub use choose::{PeerLoad, hash_bytes};

/// One server of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Where it listens.
    pub addr: PeerAddr,
    /// Its share of requests under weighted selection (at least 1).
    pub weight: u32,
}

impl Backend {
    /// A server with weight 1.
    pub fn new(addr: impl Into<PeerAddr>) -> Self {
        let addr = addr.into();
        Backend { addr, weight: 1 }
    }
}

/// The built-in selection algorithms, by name (each is a
/// [`SelectionAlgorithm`]; [`Selection::algorithm`] makes one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Selection {
    /// Each in turn, weights ignored.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin: a server of weight 3 gets three requests
    /// for every one of a server of weight 1, spread out, not in bursts.
    Weighted,
    /// A random eligible server (weights ignored).
    Random,
    /// Power of two choices: of two random eligible servers, the one with
    /// the lower latency average × (requests in flight + 1). Needs
    /// [`PeerLoad::begin`]/[`PeerLoad::end`] calls (see [`Backends::load`]).
    LeastLoaded,
    /// Consistent hashing (ketama, weights honoured) on a key the caller
    /// passes to [`Backends::select_keyed`]: a key stays on its server
    /// while that server is usable. Without a key, round robin.
    Hash,
}

impl Selection {
    /// The algorithm this names, for `primaries`.
    pub fn algorithm(self, primaries: &[Backend]) -> Box<dyn SelectionAlgorithm> {
        match self {
            Selection::RoundRobin => Box::new(RoundRobin::default()),
            Selection::Weighted => Box::new(Weighted::new(primaries.len())),
            Selection::Random => Box::new(Random),
            Selection::LeastLoaded => Box::new(LeastLoaded::new(primaries.len())),
            Selection::Hash => Box::new(ConsistentHash::new(primaries)),
        }
    }
}

/// Which tier a pick came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// A primary server.
    Primary,
    /// A backup server: every primary was tried for this request.
    Backup,
}

/// A chosen server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The server's address.
    pub addr: PeerAddr,
    /// Primary or backup.
    pub tier: Tier,
    /// True when every server was already tried by this request, so this
    /// one is being tried again.
    pub again: bool,
}

/// Why a group cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendsError {
    /// No primary server.
    NoPrimaries,
    /// A server with weight 0.
    ZeroWeight(PeerAddr),
}

impl fmt::Display for BackendsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendsError::NoPrimaries => {
                f.write_str("an upstream group needs at least one server")
            }
            BackendsError::ZeroWeight(addr) => {
                write!(f, "server {addr} has weight 0; use at least 1")
            }
        }
    }
}

impl std::error::Error for BackendsError {}

impl From<BackendsError> for Box<crate::error::Error> {
    /// A group that cannot be built is the caller's mistake: an internal
    /// error, saying which.
    fn from(e: BackendsError) -> Self {
        crate::error::Error::explain(crate::error::ErrorKind::Internal, e.to_string())
    }
}

/// The servers of one upstream group and the selection state.
#[derive(Debug)]
pub struct Backends {
    primaries: Vec<Backend>,
    backups: Vec<Backend>,
    algorithm: Box<dyn SelectionAlgorithm>,
}

impl Backends {
    /// A group of `primaries` with `backups`, chosen by `selection`, or why
    /// it cannot be.
    pub fn new(
        primaries: Vec<Backend>,
        backups: Vec<Backend>,
        selection: Selection,
    ) -> Result<Self, BackendsError> {
        let algorithm = selection.algorithm(&primaries);
        Backends::with_algorithm(primaries, backups, algorithm)
    }

    /// A group whose primaries are chosen by `algorithm` (one of the
    /// built-in ones, or a type of your own).
    pub fn with_algorithm(
        primaries: Vec<Backend>,
        backups: Vec<Backend>,
        algorithm: Box<dyn SelectionAlgorithm>,
    ) -> Result<Self, BackendsError> {
        if primaries.is_empty() {
            return Err(BackendsError::NoPrimaries);
        }
        if let Some(zero) = primaries.iter().chain(&backups).find(|b| b.weight == 0) {
            return Err(BackendsError::ZeroWeight(zero.addr));
        }
        Ok(Backends {
            primaries,
            backups,
            algorithm,
        })
    }

    /// The primary servers.
    pub fn primaries(&self) -> &[Backend] {
        &self.primaries
    }

    /// The backup servers.
    pub fn backups(&self) -> &[Backend] {
        &self.backups
    }

    /// The load record of primary `addr` when the algorithm weighs load
    /// ([`Selection::LeastLoaded`]; none for other algorithms, backups and
    /// strangers): call `begin` when a request goes to it and `end` when it
    /// is done.
    pub fn load(&self, addr: impl Into<PeerAddr>) -> Option<&PeerLoad> {
        let addr = addr.into();
        // Most algorithms keep no load: no search through the primaries then.
        self.algorithm.load(0)?;
        let index = self.primaries.iter().position(|b| b.addr == addr)?;
        self.algorithm.load(index)
    }

    /// Like [`select_avoiding`](Self::select_avoiding), placing the request
    /// by `key` on the hash ring when the selection is [`Selection::Hash`]
    /// (use [`hash_bytes`] on a header, cookie, path or client address).
    pub fn select_keyed(&self, tried: &[PeerAddr], avoid: &[PeerAddr], key: u64) -> Pick {
        self.select_by(tried, avoid, Some(key))
    }

    /// The server for the next attempt of a request that already tried `tried`.
    pub fn select(&self, tried: &[PeerAddr]) -> Pick {
        self.select_avoiding(tried, &[])
    }

    /// Like [`select`](Self::select), skipping the peers in `avoid` (down
    /// or ejected) unless nothing else is left.
    pub fn select_avoiding(&self, tried: &[PeerAddr], avoid: &[PeerAddr]) -> Pick {
        self.select_by(tried, avoid, None)
    }

    /// The tier rule (see the module docs), the request's `key` placing its
    /// first choice among the usable untried primaries.
    fn select_by(&self, tried: &[PeerAddr], avoid: &[PeerAddr], key: Option<u64>) -> Pick {
        let usable = |b: &Backend| !avoid.contains(&b.addr);
        let usable_untried = |b: &Backend| fresh(b.addr, tried, avoid);
        // Only a request's first pick moves the rotation on; its retries
        // look onward from there, so requests keep spreading out.
        let first = tried.is_empty();
        if let Some(addr) = self.pick_primary(first, usable_untried, key) {
            return pick(addr, Tier::Primary, false);
        }
        if let Some(backup) = self.backups.iter().find(|b| usable_untried(b)) {
            return pick(backup.addr, Tier::Backup, false);
        }
        // Every usable server was tried: start over on the usable ones.
        if let Some(addr) = self.pick_primary(true, usable, None) {
            return pick(addr, Tier::Primary, true);
        }
        if let Some(backup) = self.backups.iter().find(|b| usable(b)) {
            return pick(backup.addr, Tier::Backup, true);
        }
        // Nothing usable at all: an avoided primary beats an error.
        let addr = self
            .pick_primary(true, |_| true, None)
            .unwrap_or(self.primaries[0].addr);
        pick(addr, Tier::Primary, !tried.is_empty())
    }

    /// The peer to race against `chosen` when its connect is slow: the next
    /// usable, untried primary after it in list order, else the first usable
    /// untried backup. Moves no selection state.
    pub fn hedge_for(
        &self,
        chosen: PeerAddr,
        tried: &[PeerAddr],
        avoid: &[PeerAddr],
    ) -> Option<PeerAddr> {
        let candidate = |b: &&Backend| b.addr != chosen && fresh(b.addr, tried, avoid);
        let after = self
            .primaries
            .iter()
            .position(|b| b.addr == chosen)
            .map_or(0, |i| i + 1);
        let n = self.primaries.len();
        (0..n)
            .map(|i| &self.primaries[(after + i) % n])
            .find(candidate)
            .or_else(|| self.backups.iter().find(candidate))
            .map(|b| b.addr)
    }

    fn pick_primary(
        &self,
        first: bool,
        eligible: impl Fn(&Backend) -> bool,
        key: Option<u64>,
    ) -> Option<PeerAddr> {
        let primaries = &self.primaries;
        let eligible = |i: usize| primaries.get(i).is_some_and(&eligible);
        // An algorithm of a user's own cannot break the tier rules.
        let index = self.algorithm.pick(primaries, &eligible, first, key)?;
        eligible(index).then(|| primaries[index].addr)
    }
}

/// Neither tried by this request nor to be avoided.
fn fresh(addr: PeerAddr, tried: &[PeerAddr], avoid: &[PeerAddr]) -> bool {
    !tried.contains(&addr) && !avoid.contains(&addr)
}

fn pick(addr: PeerAddr, tier: Tier, again: bool) -> Pick {
    Pick { addr, tier, again }
}
