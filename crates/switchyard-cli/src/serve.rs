//! Serving a checked config: one proxy server per listen address, the admin
//! listener if configured, a reload of routes and upstreams on SIGHUP,
//! server names re-resolved on their interval, and a graceful stop on
//! SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard::discovery::{Resolve, SystemResolver};
use switchyard::health::checker::{self, Checker};
use switchyard::{ProxyServer, ShutdownHandle, UpstreamPool};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::{self, Admin};
use crate::config::{self, Config};
use crate::observe::Observer;
use crate::proxy::ConfigProxy;

/// A config being served.
#[derive(Debug)]
pub struct Running {
    /// The addresses the proxy listens on (ports resolved).
    pub listening: Vec<SocketAddr>,
    /// The admin address, if any.
    pub admin: Option<SocketAddr>,
    shutdowns: Vec<ShutdownHandle>,
    servers: Vec<JoinHandle<switchyard::Result<()>>>,
    /// Each server's pool of idle upstream connections.
    pools: Vec<UpstreamPool>,
    admin_task: Option<JoinHandle<()>>,
    /// Active health checks; dropping them stops them.
    checkers: Vec<Checker>,
    proxy: ConfigProxy,
    /// The config being served: its groups' health carries over on a
    /// reload, and its server names are re-resolved.
    config: Config,
    admin_state: Option<Arc<Admin>>,
    /// What was served first, to tell which changes a reload cannot apply.
    fixed: FixedPart,
    /// Re-resolves server names.
    resolver: Arc<dyn Resolve>,
    /// When each group with server names is due to resolve them again.
    resolve_at: BTreeMap<String, Instant>,
}

/// The settings a reload cannot change: listeners, workers, admin, `[server]`.
type FixedPart = (
    Vec<SocketAddr>,
    usize,
    Option<SocketAddr>,
    switchyard::ServerOptions,
);

/// Bind every listener of `config` and start serving; server names are
/// re-resolved with the operating system's resolver.
pub async fn start(config: Config, observer: Arc<Observer>) -> Result<Running, String> {
    start_with_resolver(config, observer, Arc::new(SystemResolver::default())).await
}

/// [`start`], with server names re-resolved by `resolver`.
pub async fn start_with_resolver(
    config: Config,
    observer: Arc<Observer>,
    resolver: Arc<dyn Resolve>,
) -> Result<Running, String> {
    let proxy = ConfigProxy::new(&config, Arc::clone(&observer));
    let mut running = Running {
        listening: Vec::new(),
        admin: None,
        shutdowns: Vec::new(),
        servers: Vec::new(),
        pools: Vec::new(),
        admin_task: None,
        checkers: start_checks(&config),
        proxy: proxy.clone(),
        admin_state: None,
        fixed: fixed_part(&config),
        resolve_at: resolve_schedule(&config, &BTreeMap::new()),
        config,
        resolver,
    };
    let config = &running.config;
    for addr in &config.listen {
        let server = ProxyServer::bind(*addr, proxy.clone(), config.server.clone())
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        running.listening.push(server.local_addr());
        running.shutdowns.push(server.shutdown_handle());
        running.pools.push(server.upstream_pool());
        running.servers.push(tokio::spawn(server.serve()));
    }
    if let Some(addr) = config.admin {
        let listener = admin::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on admin address {addr}: {e}"))?;
        running.admin = listener.local_addr().ok();
        let admin = Arc::new(Admin::new(observer, config));
        running.admin_state = Some(Arc::clone(&admin));
        running.admin_task = Some(tokio::spawn(admin::serve(listener, admin)));
    }
    Ok(running)
}

/// Start the active checks of every group that has them, each with a
/// warning on stderr when a server changes state.
fn start_checks(config: &Config) -> Vec<Checker> {
    config
        .groups
        .values()
        .filter_map(|group| {
            let options = group.checks.clone()?;
            Some(checker::spawn(Arc::clone(&group.health), options))
        })
        .collect()
}

fn fixed_part(config: &Config) -> FixedPart {
    (
        config.listen.clone(),
        config.workers,
        config.admin,
        config.server.clone(),
    )
}

/// When each group with server names resolves them next: a group already
/// scheduled in `before` keeps its time, a new one is due after its interval.
fn resolve_schedule(
    config: &Config,
    before: &BTreeMap<String, Instant>,
) -> BTreeMap<String, Instant> {
    let now = Instant::now();
    config
        .groups
        .iter()
        .filter(|(_, group)| !group.names.is_empty())
        .map(|(name, group)| {
            let at = before
                .get(name)
                .copied()
                .unwrap_or(now + group.resolve_every);
            (name.clone(), at)
        })
        .collect()
}

impl Running {
    /// Serve until `stop` resolves. On SIGHUP, reload the config from
    /// `reload_from`; server names are re-resolved as their groups say.
    /// What happens is reported on standard error.
    pub async fn serve_until(
        mut self,
        stop: impl Future<Output = ()>,
        reload_from: Option<PathBuf>,
    ) -> Result<(), String> {
        let mut hangups = reload_signals();
        tokio::pin!(stop);
        loop {
            let resolve_due = self.resolve_at.values().min().copied();
            tokio::select! {
                () = &mut stop => break,
                Some(()) = async { hangups.as_mut()?.recv().await } => {
                    self.reload_from(reload_from.as_deref()).await;
                }
                Some(()) = async { tokio::time::sleep_until(resolve_due?).await; Some(()) } => {
                    if let Some(report) = self.resolve_due().await {
                        eprintln!("switchyard: {report}");
                    }
                }
            }
        }
        eprintln!("switchyard: stopping; letting in-flight requests finish");
        self.stop().await
    }

    /// Reload the config file, or say why not and keep serving the old one.
    async fn reload_from(&mut self, path: Option<&Path>) {
        let Some(path) = path else {
            eprintln!(
                "switchyard: SIGHUP ignored: there is no config file to reload (switchyard proxy)"
            );
            return;
        };
        // Loading resolves server names, which may block: not on a serving thread.
        let path = path.to_path_buf();
        match tokio::task::spawn_blocking(move || config::load(&path)).await {
            Ok(Ok(config)) => eprintln!("switchyard: {}", self.reload(config)),
            Ok(Err(e)) => {
                eprintln!("switchyard: reload refused, still serving the previous config: {e}")
            }
            Err(e) => {
                eprintln!("switchyard: reload failed, still serving the previous config: {e}")
            }
        }
    }

    /// Serve `config`'s routes and upstream groups from now on: new requests
    /// use them, requests in flight finish on the old ones, active checks
    /// restart for the new groups (servers that stayed in a group keep
    /// their health: verdicts, ejections), and idle pooled connections to
    /// servers no longer listed close. `[server]` settings need a restart;
    /// the returned note says when some were left as they were.
    pub fn reload(&mut self, config: Config) -> String {
        let groups = config.groups.len();
        let routes = config.routes.len();
        let same_server = fixed_part(&config) == self.fixed;
        let closed = self.swap(config);
        let mut note = format!("reloaded: {groups} upstream group(s), {routes} route(s)");
        if closed > 0 {
            note += &format!("; closed {closed} idle connection(s) to removed servers");
        }
        if !same_server {
            note += "; [server] changes (listen, workers, admin, limits) need a restart and were not applied";
        }
        note
    }

    /// Resolve the server names of every group that is due, and when an
    /// answer changed, serve the groups rebuilt with the new addresses.
    /// A lookup that fails keeps the name's previous addresses. Returns
    /// what changed or failed, if anything did.
    pub async fn resolve_due(&mut self) -> Option<String> {
        let now = Instant::now();
        let mut names = Vec::new();
        for (group, at) in &mut self.resolve_at {
            if *at > now {
                continue;
            }
            if let Some(group) = self.config.groups.get(group) {
                *at = now + group.resolve_every;
                names.extend(group.names.iter().cloned());
            }
        }
        names.sort();
        names.dedup();
        let refresh = self.config.answers.refresh(&*self.resolver, &names).await;
        let mut report: Vec<String> = refresh
            .failed
            .iter()
            .map(|(name, e)| format!("cannot resolve {name} ({e}); keeping its previous addresses"))
            .collect();
        if !refresh.changed.is_empty() {
            report.extend(refresh.changed.iter().map(|name| {
                let addresses = refresh.answers.get(name).unwrap_or_default();
                format!("{name} now resolves to {}", list(addresses))
            }));
            match self.config.with_answers(refresh.answers) {
                Ok(config) => {
                    let closed = self.swap(config);
                    report.push(format!(
                        "upstream groups rebuilt; closed {closed} idle connection(s) to removed servers"
                    ));
                }
                Err(e) => report.push(format!("the new addresses were not applied: {e}")),
            }
        }
        (!report.is_empty()).then(|| report.join("; "))
    }

    /// Serve `config` from now on (see [`reload`](Self::reload)); returns
    /// how many idle connections to removed servers were closed.
    fn swap(&mut self, config: Config) -> usize {
        for (name, group) in &config.groups {
            if let Some(old) = self.config.groups.get(name) {
                group.health.adopt(&old.health);
            }
        }
        self.proxy.reload(&config);
        self.checkers = start_checks(&config);
        if let Some(admin) = &self.admin_state {
            admin.update(&config);
        }
        let servers: Vec<SocketAddr> = config
            .groups
            .values()
            .flat_map(|g| g.backends.primaries().iter().chain(g.backends.backups()))
            .map(|b| b.addr)
            .collect();
        let closed = self
            .pools
            .iter()
            .map(|pool| pool.keep_only(servers.iter().copied()))
            .sum();
        self.resolve_at = resolve_schedule(&config, &self.resolve_at);
        self.config = config;
        closed
    }

    /// Print where we listen, on standard error (scripts read these lines).
    pub fn announce(&self) {
        for addr in &self.listening {
            eprintln!("switchyard: listening on {addr}");
        }
        if let Some(addr) = self.admin {
            eprintln!("switchyard: admin on {addr}");
        }
        eprintln!("switchyard: ready");
    }

    /// Stop accepting, let in-flight requests finish, and return when done.
    pub async fn stop(self) -> Result<(), String> {
        for handle in &self.shutdowns {
            handle.shutdown();
        }
        if let Some(task) = &self.admin_task {
            task.abort();
        }
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("server failed: {e}")),
                Err(e) => return Err(format!("server task failed: {e}")),
            }
        }
        Ok(())
    }
}

/// `a, b, c`.
fn list(addresses: &[SocketAddr]) -> String {
    let texts: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
    texts.join(", ")
}

/// A stream of SIGHUPs, the reload request (none where signals are missing).
pub fn reload_signals() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload needs a restart");
            None
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the proxy")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
