//! A group's servers as they were given: addresses and names to resolve,
//! each with a weight, in tiers. [`ServerSpecs::expand`] turns them into
//! [`Backends`] with the addresses a set of DNS [`Answers`] gives, which is
//! how a group is built and how it follows its names when their answers
//! change ([`UpstreamGroup::with_answers`](super::UpstreamGroup::with_answers)).

use crate::peer_addr::PeerAddr;
use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::discovery::{Answers, ServerName};
use crate::lb::{Backend, Backends, BackendsError, Selection};

/// Where a server is: an address, or a name that resolves to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAt {
    /// `ip:port`.
    Addr(PeerAddr),
    /// `host:port`, one backend per address it resolves to.
    Name(ServerName),
}

/// One server as given: where it is, and its weight (at least 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Where it is.
    pub at: ServerAt,
    /// Its weight; every address of a name gets it.
    pub weight: u32,
}

impl ServerSpec {
    /// A server at `address`, of weight 1.
    pub fn addr(address: impl Into<PeerAddr>) -> Self {
        let address = address.into();
        ServerSpec {
            at: ServerAt::Addr(address),
            weight: 1,
        }
    }

    /// A server named `name`, of weight 1.
    pub fn name(name: ServerName) -> Self {
        ServerSpec {
            at: ServerAt::Name(name),
            weight: 1,
        }
    }

    /// The same with weight `weight`.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

/// A group's servers as given: primaries, backups (used only when no
/// primary is), and how primaries are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpecs {
    primaries: Vec<ServerSpec>,
    backups: Vec<ServerSpec>,
    selection: Selection,
}

/// Why servers could not become backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// A name has no addresses in the answers given.
    Unresolved(ServerName),
    /// The same `ip:port` is given twice.
    Repeated(PeerAddr),
    /// The backends are not a valid group (no primary, a zero weight).
    Backends(BackendsError),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unresolved(name) => write!(f, "{name} was not resolved"),
            ExpandError::Repeated(addr) => write!(f, "{addr} is listed twice in this group"),
            ExpandError::Backends(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ExpandError {}

/// Backends, and the host name each address came from (for its TLS name
/// and `Host`).
#[derive(Debug)]
pub struct Expanded {
    /// The servers, one per address.
    pub backends: Backends,
    /// The name each resolved address came from.
    pub hosts: HashMap<PeerAddr, String>,
}

impl ServerSpecs {
    /// `primaries` and `backups`, primaries chosen by `selection`.
    pub fn new(primaries: Vec<ServerSpec>, backups: Vec<ServerSpec>, selection: Selection) -> Self {
        ServerSpecs {
            primaries,
            backups,
            selection,
        }
    }

    /// The names among them, each once, in the order given.
    pub fn names(&self) -> Vec<ServerName> {
        let mut names: Vec<ServerName> = Vec::new();
        for spec in self.primaries.iter().chain(&self.backups) {
            if let ServerAt::Name(name) = &spec.at
                && !names.contains(name)
            {
                names.push(name.clone());
            }
        }
        names
    }

    /// The backends these servers are with `answers`. Each address is in
    /// the group once: an `ip:port` given twice is an error, and an
    /// address a name resolves to adds nothing when it is given as
    /// `ip:port` anywhere in the group (that entry's weight and tier
    /// stand, whatever DNS says) or came from a name before.
    pub fn expand(&self, answers: &Answers) -> Result<Expanded, ExpandError> {
        let explicit: HashSet<PeerAddr> = self
            .primaries
            .iter()
            .chain(&self.backups)
            .filter_map(|spec| match spec.at {
                ServerAt::Addr(addr) => Some(addr),
                ServerAt::Name(_) => None,
            })
            .collect();
        let mut tiers = Tiers {
            answers,
            explicit,
            seen: HashSet::new(),
            hosts: HashMap::new(),
        };
        let primaries = tiers.tier(&self.primaries)?;
        let backups = tiers.tier(&self.backups)?;
        let backends =
            Backends::new(primaries, backups, self.selection).map_err(ExpandError::Backends)?;
        Ok(Expanded {
            backends,
            hosts: tiers.hosts,
        })
    }
}

/// The expansion's progress across both tiers.
struct Tiers<'a> {
    answers: &'a Answers,
    explicit: HashSet<PeerAddr>,
    seen: HashSet<PeerAddr>,
    hosts: HashMap<PeerAddr, String>,
}

impl Tiers<'_> {
    fn tier(&mut self, specs: &[ServerSpec]) -> Result<Vec<Backend>, ExpandError> {
        let mut backends = Vec::new();
        for spec in specs {
            let weight = spec.weight;
            match &spec.at {
                ServerAt::Addr(addr) => {
                    if !self.seen.insert(*addr) {
                        return Err(ExpandError::Repeated(*addr));
                    }
                    backends.push(Backend {
                        addr: *addr,
                        weight,
                    });
                }
                ServerAt::Name(name) => {
                    let addresses = self
                        .answers
                        .get(name)
                        .ok_or_else(|| ExpandError::Unresolved(name.clone()))?;
                    for &addr in addresses {
                        let addr = PeerAddr::Inet(addr);
                        if !self.explicit.contains(&addr) && self.seen.insert(addr) {
                            backends.push(Backend { addr, weight });
                            self.hosts.insert(addr, name.host().to_string());
                        }
                    }
                }
            }
        }
        Ok(backends)
    }
}
