//! A group that follows the DNS answers of its servers' names: resolved at
//! start, then again every `resolve_every`. When a name's addresses
//! change, the group is rebuilt over the new ones
//! ([`UpstreamGroup::with_answers`]: every setting kept, the retry budget
//! shared, the health of the servers that stay carried over, new servers
//! ramping up), its checks move to the new group, and the next requests
//! get it. A lookup that fails or comes back empty keeps the name's
//! previous addresses (a resolver outage must not empty a group).
//!
//! A request should keep the group it began with: take
//! [`FollowDns::group`] once, in `new_ctx` or `request_filter`, and use
//! that `Arc` for every hook of the request.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::servers::{ExpandError, ServerSpecs};
use super::{MIN_RESOLVE_EVERY, UpstreamGroup, UpstreamGroupBuilder};
use crate::discovery::{Answers, Resolve, ServerName};
use crate::health::checker::Checker;
use crate::lb::Backends;

/// An upstream group kept on its names' DNS answers (see the module docs).
#[derive(Debug)]
pub struct FollowDns {
    current: RwLock<Arc<UpstreamGroup>>,
    resolver: Arc<dyn Resolve>,
    /// The answers in use and the checks of the current group; one
    /// refresh at a time.
    state: tokio::sync::Mutex<Followed>,
    refresher: OnceLock<AbortHandle>,
}

#[derive(Debug)]
struct Followed {
    answers: Answers,
    checker: Option<Checker>,
}

/// Why a followed group could not start.
#[derive(Debug)]
pub enum FollowError {
    /// A name did not resolve (or had no address).
    Resolve(ServerName, io::Error),
    /// The servers do not make a group.
    Expand(ExpandError),
    /// The interval is shorter than [`MIN_RESOLVE_EVERY`].
    TooOften(Duration),
}

impl fmt::Display for FollowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FollowError::Resolve(name, e) => write!(f, "cannot resolve {name}: {e}"),
            FollowError::Expand(e) => e.fmt(f),
            FollowError::TooOften(every) => write!(
                f,
                "resolving every {every:?} is too often: at least {MIN_RESOLVE_EVERY:?}"
            ),
        }
    }
}

impl std::error::Error for FollowError {}

/// What one [`FollowDns::refresh`] did.
#[derive(Debug, Default)]
pub struct FollowReport {
    /// Names whose addresses changed, with their new addresses; the group
    /// was rebuilt over them.
    pub changed: Vec<(ServerName, Vec<SocketAddr>)>,
    /// Names whose lookup failed or found nothing: they keep their
    /// previous addresses.
    pub failed: Vec<(ServerName, io::Error)>,
    /// Why new answers were not applied, if they were not (the group kept
    /// its servers).
    pub rejected: Option<ExpandError>,
}

impl FollowDns {
    /// Resolve the names of `servers` with `resolver`, build the group with
    /// `build` over the backends they expand to (with their host names and
    /// the servers set on it), start its checks, and re-resolve every
    /// `every` for as long as the returned value is kept. Must be called
    /// inside a tokio runtime. `every` is at least [`MIN_RESOLVE_EVERY`].
    pub async fn start(
        servers: ServerSpecs,
        every: Duration,
        resolver: Arc<dyn Resolve>,
        build: impl FnOnce(Backends) -> UpstreamGroupBuilder,
    ) -> Result<Arc<FollowDns>, FollowError> {
        if every < MIN_RESOLVE_EVERY {
            return Err(FollowError::TooOften(every));
        }
        let names = servers.names();
        let answers = Answers::resolve_all(&*resolver, &names)
            .await
            .map_err(|(name, e)| FollowError::Resolve(name, e))?;
        let found = servers.expand(&answers).map_err(FollowError::Expand)?;
        let group = build(found.backends)
            .hosts(found.hosts)
            .servers(servers, every)
            .build();
        let group = Arc::new(group);
        let checker = group.start_checks();
        let followed = Arc::new(FollowDns {
            current: RwLock::new(group),
            resolver,
            state: tokio::sync::Mutex::new(Followed { answers, checker }),
            refresher: OnceLock::new(),
        });
        // The timer holds it weakly: dropping the last `Arc` stops it.
        let me = Arc::downgrade(&followed);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(follow) = me.upgrade() else { return };
                follow.refresh().await;
            }
        });
        let _ = followed.refresher.set(task.abort_handle());
        Ok(followed)
    }

    /// The group now: take it once per request.
    pub fn group(&self) -> Arc<UpstreamGroup> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Resolve the names again now (the timer does it every interval) and
    /// rebuild the group if an answer changed. What happened is also
    /// logged (`tracing`: a change at `info`, a failed lookup at `warn`).
    pub async fn refresh(&self) -> FollowReport {
        let mut state = self.state.lock().await;
        let group = self.group();
        let refresh = state.answers.refresh(&*self.resolver, group.names()).await;
        let mut report = FollowReport {
            changed: Vec::new(),
            failed: refresh.failed,
            rejected: None,
        };
        for (name, e) in &report.failed {
            warn!(group = group.name(), %name, error = %e, "cannot resolve; keeping its previous addresses");
        }
        if refresh.changed.is_empty() {
            return report;
        }
        let rebuilt = match group.with_answers(&refresh.answers) {
            Some(Ok(rebuilt)) => Arc::new(rebuilt),
            Some(Err(e)) => {
                warn!(group = group.name(), error = %e, "the new addresses were not applied");
                report.rejected = Some(e);
                return report;
            }
            None => return report,
        };
        for name in refresh.changed {
            let addresses = refresh.answers.get(&name).unwrap_or_default().to_vec();
            info!(group = group.name(), %name, ?addresses, "new DNS answer; group rebuilt");
            report.changed.push((name, addresses));
        }
        // The old group's checker stops as the new one's starts.
        state.checker = rebuilt.start_checks();
        state.answers = refresh.answers;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = rebuilt;
        report
    }
}

impl Drop for FollowDns {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get() {
            task.abort();
        }
    }
}
