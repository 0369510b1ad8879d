//! An upstream group: the servers a request may go to and everything the
//! proxy knows and decides about them, as one library type.
//!
//! [`UpstreamGroup`] holds the servers in tiers (primaries, backups) with
//! their selection state ([`lb`](crate::lb)), their health (active checks,
//! passive outcomes, outlier ejection, slow start, `Retry-After` holds:
//! [`health`](crate::health)), the retry policy and budget, connect
//! hedging, consistent hashing, TLS and the servers as given
//! ([`ServerSpecs`]: names to re-resolve, which [`FollowDns`] follows). A
//! [`ProxyHttp`](crate::ProxyHttp) delegates its upstream hooks to it, a
//! line each, keeping a [`GroupCtx`] in its `CTX`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use switchyard::group::{GroupCtx, UpstreamGroup};
//! use switchyard::lb::{Backend, Backends, Selection};
//! use switchyard::prelude::*;
//!
//! struct Proxy {
//!     group: Arc<UpstreamGroup>,
//! }
//!
//! impl ProxyHttp for Proxy {
//!     type CTX = GroupCtx;
//!     fn new_ctx(&self) -> GroupCtx {
//!         GroupCtx::default()
//!     }
//!     async fn upstream_peer(&self, s: &mut Session, ctx: &mut GroupCtx) -> Result<Box<HttpPeer>> {
//!         self.group.upstream_peer(s, ctx)
//!     }
//!     fn fail_to_connect(&self, _s: &mut Session, p: &HttpPeer, ctx: &mut GroupCtx, e: Box<Error>) -> Box<Error> {
//!         self.group.fail_to_connect(p, ctx, e)
//!     }
//!     // ... error_while_proxy, upstream_response_failure, logging the same way
//! }
//! ```
//!
//! `docs/library.md` builds a whole proxy this way.

use crate::peer_addr::PeerAddr;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::discovery::{Answers, ServerName};
use crate::health::checker::{self, CheckOptions, Checker};
use crate::health::{OutlierPolicy, Thresholds, UpstreamHealth};
use crate::lb::{Backend, Backends};
use crate::peer::{HttpPeer, PeerOptions, UpstreamProtocol};
use crate::policy::budget::{BudgetPolicy, RetryBudget};
use crate::tls::UpstreamTls;

mod follow;
mod hash_key;
mod hooks;
mod policy;
mod servers;
mod sticky;
#[cfg(test)]
mod tests;

pub use follow::{FollowDns, FollowError, FollowReport};
pub use hash_key::HashKey;
pub use hooks::GroupCtx;
pub use policy::{DEFAULT_REPLAY_BUFFER, RetryPolicy};
pub use servers::{ExpandError, Expanded, ServerAt, ServerSpec, ServerSpecs};
pub use sticky::StickySessions;

/// How often server names are resolved again, unless set.
pub const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// The shortest interval names may be resolved again at (a resolver must
/// not be asked in a loop).
pub const MIN_RESOLVE_EVERY: Duration = Duration::from_millis(100);

/// An upstream group: servers, their health, and the policy for reaching
/// them. Build one with [`UpstreamGroup::builder`]; share it in an `Arc`.
#[derive(Debug)]
pub struct UpstreamGroup {
    name: String,
    label: Arc<String>,
    backends: Backends,
    health: Arc<UpstreamHealth>,
    checks: Option<CheckOptions>,
    peer_options: PeerOptions,
    protocol: UpstreamProtocol,
    tls: Option<GroupTls>,
    hosts: HashMap<PeerAddr, String>,
    policy: Arc<RetryPolicy>,
    budget: Arc<RetryBudget>,
    connect_hedging: bool,
    hash_key: Option<HashKey>,
    /// The cookie that brings a client back to its server, if any.
    sticky: Option<StickySessions>,
    /// The servers as given, when the builder was told them
    /// ([`UpstreamGroupBuilder::servers`]).
    servers: Option<Arc<ServerSpecs>>,
    names: Vec<ServerName>,
    resolve_every: Duration,
    /// Kept to judge new servers alike ([`with_servers`](Self::with_servers)).
    outlier: OutlierPolicy,
    thresholds: Thresholds,
}

/// How a group's servers are reached over TLS.
#[derive(Debug, Clone)]
struct GroupTls {
    settings: UpstreamTls,
    /// The name every server is verified as; `None`: the name it was
    /// written with, else its IP address.
    server_name: Option<String>,
}

impl UpstreamGroup {
    /// A group named `name` (its metrics label too) over `backends`, with
    /// the library's defaults until the builder says otherwise.
    pub fn builder(name: impl Into<String>, backends: Backends) -> UpstreamGroupBuilder {
        UpstreamGroupBuilder {
            name: name.into(),
            backends,
            outlier: OutlierPolicy::default(),
            thresholds: Thresholds::default(),
            checks: None,
            peer_options: PeerOptions::default(),
            protocol: UpstreamProtocol::default(),
            tls: None,
            hosts: HashMap::new(),
            policy: RetryPolicy::default(),
            budget: BudgetPolicy::default(),
            connect_hedging: false,
            hash_key: None,
            sticky: None,
            servers: None,
            resolve_every: DEFAULT_RESOLVE_EVERY,
        }
    }

    /// Its sticky sessions, if it has them.
    #[inline]
    pub fn sticky(&self) -> Option<&StickySessions> {
        self.sticky.as_ref()
    }

    /// Its name.
    #[inline]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its name as a metrics label, shared without copying.
    #[inline]
    pub fn label(&self) -> &Arc<String> {
        &self.label
    }

    /// Its servers and their selection state.
    #[inline]
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Its servers' health.
    #[inline]
    pub fn health(&self) -> &Arc<UpstreamHealth> {
        &self.health
    }

    /// The active checks it runs, if any.
    pub fn checks(&self) -> Option<&CheckOptions> {
        self.checks.as_ref()
    }

    /// Its retry policy (a route may use another: [`GroupCtx::with_policy`]).
    #[inline]
    pub fn policy(&self) -> &Arc<RetryPolicy> {
        &self.policy
    }

    /// The budget every retry of its requests draws on.
    #[inline]
    pub fn budget(&self) -> &Arc<RetryBudget> {
        &self.budget
    }

    /// Timeouts, pooling and connection limits for its servers.
    pub fn peer_options(&self) -> &PeerOptions {
        &self.peer_options
    }

    /// Whether its servers are reached over TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether a slow connect races a second server.
    pub fn connect_hedging(&self) -> bool {
        self.connect_hedging
    }

    /// The server names its addresses came from (see
    /// [`with_answers`](Self::with_answers)).
    pub fn names(&self) -> &[ServerName] {
        &self.names
    }

    /// How often [`names`](Self::names) are resolved again.
    pub fn resolve_every(&self) -> Duration {
        self.resolve_every
    }

    /// The peer for one of its servers: its timeouts and pooling, its
    /// protocol, and TLS if the group's servers are reached over TLS.
    pub fn peer(&self, address: impl Into<PeerAddr>) -> HttpPeer {
        let address = address.into();
        let peer = HttpPeer::new(address, false, String::new())
            .with_options(self.peer_options.clone())
            .with_protocol(self.protocol);
        let Some(tls) = &self.tls else {
            return peer;
        };
        let name = match (&tls.server_name, self.hosts.get(&address)) {
            (Some(name), _) => name.clone(),
            (None, Some(host)) => host.clone(),
            (None, None) => String::new(),
        };
        peer.with_tls(tls.settings.clone(), name)
    }

    /// The `Host` naming a server as written: `name:port` (no port when it
    /// is the scheme's default), else its `ip:port`.
    pub fn host_of(&self, address: impl Into<PeerAddr>) -> String {
        let address = address.into();
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let Some(address) = address.inet() else {
            return address.host();
        };
        match self.hosts.get(&PeerAddr::Inet(address)) {
            Some(name) if address.port() == default_port => name.clone(),
            Some(name) => format!("{name}:{}", address.port()),
            None => address.to_string(),
        }
    }

    /// Start its active checks, if it has any: they run while the returned
    /// [`Checker`] is kept. Must be called inside a tokio runtime.
    pub fn start_checks(self: &Arc<Self>) -> Option<Checker> {
        let options = self.checks.clone()?;
        let group = Arc::clone(self);
        Some(checker::spawn_for(
            Arc::clone(&self.health),
            options,
            move |address| group.peer(address),
        ))
    }

    /// Take over what `old` (the group this one replaces on a reload) knew
    /// of the servers both have: their health, ejections and holds.
    pub fn adopt(&self, old: &UpstreamGroup) {
        self.health.adopt(&old.health);
    }

    /// This group over other servers (a DNS answer changed, or servers were
    /// added or removed): every setting kept, the retry budget shared, and
    /// what was known of the servers both have taken over ([`adopt`](Self::adopt));
    /// a new server ramps up under slow start. `hosts` are the host names
    /// the addresses came from (their TLS name and
    /// [`host_of`](Self::host_of)), none for servers given as `ip:port`.
    /// Requests in flight finish on this group; swap the new one in for the
    /// next, and start its checks ([`start_checks`](Self::start_checks))
    /// in place of this one's (drop the old [`Checker`]: it keeps judging
    /// this group). With [`discovery`](crate::discovery) resolving the
    /// [`names`](Self::names) every [`resolve_every`](Self::resolve_every),
    /// this keeps a group on its DNS answers.
    pub fn with_servers(
        &self,
        backends: Backends,
        hosts: impl IntoIterator<Item = (PeerAddr, String)>,
    ) -> UpstreamGroup {
        let addrs = |tier: &[Backend]| tier.iter().map(|b| b.addr).collect::<Vec<PeerAddr>>();
        let health = UpstreamHealth::tiered(
            &addrs(backends.primaries()),
            &addrs(backends.backups()),
            self.outlier,
            self.thresholds,
        );
        health.adopt(&self.health);
        UpstreamGroup {
            name: self.name.clone(),
            label: Arc::clone(&self.label),
            backends,
            health: Arc::new(health),
            checks: self.checks.clone(),
            peer_options: self.peer_options.clone(),
            protocol: self.protocol,
            tls: self.tls.clone(),
            hosts: hosts.into_iter().collect(),
            policy: Arc::clone(&self.policy),
            budget: Arc::clone(&self.budget),
            connect_hedging: self.connect_hedging,
            hash_key: self.hash_key.clone(),
            sticky: self.sticky.clone(),
            servers: self.servers.clone(),
            names: self.names.clone(),
            resolve_every: self.resolve_every,
            outlier: self.outlier,
            thresholds: self.thresholds,
        }
    }
}

impl UpstreamGroup {
    /// This group over the addresses its servers' names have in `answers`
    /// ([`with_servers`](Self::with_servers) with the servers as given
    /// expanded again); `None` for a group built without
    /// [`servers`](UpstreamGroupBuilder::servers).
    pub fn with_answers(&self, answers: &Answers) -> Option<Result<UpstreamGroup, ExpandError>> {
        let servers = self.servers.as_ref()?;
        Some(
            servers
                .expand(answers)
                .map(|found| self.with_servers(found.backends, found.hosts)),
        )
    }
}

/// Builds an [`UpstreamGroup`]; every setting has a default.
#[derive(Debug)]
pub struct UpstreamGroupBuilder {
    name: String,
    backends: Backends,
    outlier: OutlierPolicy,
    thresholds: Thresholds,
    checks: Option<CheckOptions>,
    peer_options: PeerOptions,
    protocol: UpstreamProtocol,
    tls: Option<GroupTls>,
    hosts: HashMap<PeerAddr, String>,
    policy: RetryPolicy,
    budget: BudgetPolicy,
    connect_hedging: bool,
    hash_key: Option<HashKey>,
    sticky: Option<StickySessions>,
    servers: Option<Arc<ServerSpecs>>,
    resolve_every: Duration,
}

impl UpstreamGroupBuilder {
    /// Outlier ejection (failures, success rate, latency) and slow start.
    pub fn outlier(mut self, policy: OutlierPolicy) -> Self {
        self.outlier = policy;
        self
    }

    /// Active checks (start them with [`UpstreamGroup::start_checks`]).
    pub fn checks(mut self, options: CheckOptions) -> Self {
        self.checks = Some(options);
        self
    }

    /// How many checks in a row mark a server down, and up again
    /// ([`Thresholds::default`] unless set).
    pub fn check_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Timeouts, pooling and connection limits for its servers.
    pub fn peer_options(mut self, options: PeerOptions) -> Self {
        self.peer_options = options;
        self
    }

    /// The HTTP version spoken to its servers.
    pub fn protocol(mut self, protocol: UpstreamProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Reach its servers over TLS, verified as `server_name` (when `None`:
    /// as the name each was written with, else by its IP address).
    pub fn tls(mut self, settings: UpstreamTls, server_name: Option<String>) -> Self {
        self.tls = Some(GroupTls {
            settings,
            server_name,
        });
        self
    }

    /// The host name a server's address came from (its TLS name and its
    /// [`host_of`](UpstreamGroup::host_of)).
    pub fn host(mut self, address: impl Into<PeerAddr>, name: impl Into<String>) -> Self {
        let address = address.into();
        self.hosts.insert(address, name.into());
        self
    }

    /// The host names addresses came from, as [`host`](Self::host) for each
    /// (what [`ServerSpecs::expand`] found).
    pub fn hosts(mut self, hosts: impl IntoIterator<Item = (PeerAddr, String)>) -> Self {
        self.hosts.extend(hosts);
        self
    }

    /// What is retried, and within which limits.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The share of requests that may be retries.
    pub fn retry_budget(mut self, budget: BudgetPolicy) -> Self {
        self.budget = budget;
        self
    }

    /// Race a second server when a connect is slow.
    pub fn connect_hedging(mut self, on: bool) -> Self {
        self.connect_hedging = on;
        self
    }

    /// What requests are hashed on (for [`Selection::Hash`](crate::lb::Selection::Hash)).
    pub fn hash_key(mut self, key: HashKey) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// The servers as given (the backends are what they expanded to),
    /// their names to be resolved again every `every`: by a
    /// [`FollowDns`], or by whoever calls
    /// [`with_answers`](UpstreamGroup::with_answers). Give the host names
    /// of the first expansion with [`hosts`](Self::hosts).
    pub fn servers(mut self, servers: ServerSpecs, every: Duration) -> Self {
        self.servers = Some(Arc::new(servers));
        self.resolve_every = every;
        self
    }

    /// Bring each client back to the server that answered it first, by
    /// the cookie `sticky` describes, while that server is usable (the
    /// first choice, before the selection algorithm's).
    pub fn sticky(mut self, sticky: StickySessions) -> Self {
        self.sticky = Some(sticky);
        self
    }

    /// The group.
    pub fn build(self) -> UpstreamGroup {
        let addrs = |tier: &[Backend]| tier.iter().map(|b| b.addr).collect::<Vec<PeerAddr>>();
        let health = UpstreamHealth::tiered(
            &addrs(self.backends.primaries()),
            &addrs(self.backends.backups()),
            self.outlier,
            self.thresholds,
        );
        UpstreamGroup {
            label: Arc::new(self.name.clone()),
            name: self.name,
            backends: self.backends,
            health: Arc::new(health),
            checks: self.checks,
            peer_options: self.peer_options,
            protocol: self.protocol,
            tls: self.tls,
            hosts: self.hosts,
            policy: Arc::new(self.policy),
            budget: Arc::new(RetryBudget::new(self.budget, Instant::now())),
            connect_hedging: self.connect_hedging,
            hash_key: self.hash_key,
            sticky: self.sticky,
            names: self.servers.as_ref().map(|s| s.names()).unwrap_or_default(),
            servers: self.servers,
            resolve_every: self.resolve_every,
            outlier: self.outlier,
            thresholds: self.thresholds,
        }
    }
}
