//! Serving a checked config: one proxy server per listen address, the admin
//! listener if configured, a reload of routes and upstreams on SIGHUP,
//! server names re-resolved on their interval, and a graceful stop on
//! SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use switchyard::acme::{Acme, Renewing};
use switchyard::discovery::{Resolve, SystemResolver};
use switchyard::health::checker::Checker;
use switchyard::log_file::LogWriter;
use switchyard::server::Workers;
use switchyard::tls::ServerTls;
use switchyard::{ServerOptions, ShutdownHandle, UpstreamPool};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::Admin;
use crate::config::Config;
use crate::handover::{Inherited, Socket};
use crate::observe::Observer;
use crate::proxy::ConfigProxy;

mod binary_upgrade;
mod changes;
mod http3;
mod listeners;

pub use binary_upgrade::{Relaunch, upgrade_signals};
pub use changes::Signals;

/// A config being served.
#[derive(Debug)]
pub struct Running {
    /// The addresses the proxy listens on (ports resolved).
    pub listening: Vec<SocketAddr>,
    /// The Unix sockets the proxy listens on (their files are removed at
    /// exit, unless handed to a new process).
    pub listening_unix: Vec<std::path::PathBuf>,
    /// Whether each of `listening` serves HTTPS.
    pub secure: Vec<bool>,
    /// The UDP addresses HTTP/3 is served on (ports resolved).
    pub listening_http3: Vec<SocketAddr>,
    /// The admin address, if any.
    pub admin: Option<SocketAddr>,
    shutdowns: Vec<ShutdownHandle>,
    servers: Vec<JoinHandle<switchyard::Result<()>>>,
    /// Each server's pool of idle upstream connections.
    pools: Vec<UpstreamPool>,
    admin_task: Option<JoinHandle<()>>,
    /// Active health checks by group; dropping one stops it.
    checkers: BTreeMap<String, Checker>,
    proxy: ConfigProxy,
    /// The config being served: its groups' health carries over on a
    /// reload, and its server names are re-resolved.
    config: Config,
    admin_state: Option<Arc<Admin>>,
    /// What was served first, to tell which changes a reload cannot apply.
    fixed: FixedPart,
    /// Re-resolves server names.
    resolver: Arc<dyn Resolve>,
    /// The certificates the HTTPS listeners serve: a reload adopts its
    /// newly loaded ones into this.
    listener_tls: Option<ServerTls>,
    /// The ACME certificates being kept current, and their tasks (which
    /// stop when this is dropped).
    acme: Option<(Acme, Renewing)>,
    /// When each group with server names is due to resolve them again.
    resolve_at: BTreeMap<String, Instant>,
    /// The worker threads beyond this one (`workers` - 1), each serving
    /// every listener; they stop when this is dropped.
    workers: Workers,
    /// Where the metrics go: told of the groups after a reload.
    observer: Arc<Observer>,
    /// A duplicate of every listening socket, for an upgrade to hand over.
    sockets: Vec<Socket>,
    /// How to start this binary again for an upgrade (SIGUSR2), if allowed.
    relaunch: Option<Relaunch>,
    /// The listening sockets went to a new process (an upgrade).
    handed_over: bool,
    /// The pid file as the process started with it (a reload does not
    /// move it): an upgrade's outcome is written beside it.
    pid_file: Option<std::path::PathBuf>,
}

/// The settings a reload cannot change: listeners (HTTPS ones too),
/// workers, admin, `[server]`. Certificates can change.
type FixedPart = (
    Vec<switchyard::server::ListenAddr>,
    Vec<SocketAddr>,
    usize,
    Option<SocketAddr>,
    switchyard::ServerOptions,
    Option<switchyard::otlp::OtlpOptions>,
    (u32, Option<std::path::PathBuf>),
    Option<crate::config::http3::Http3Listeners>,
);

/// Bind every listener of `config` and start serving; server names are
/// re-resolved with the operating system's resolver.
pub async fn start(config: Config, observer: Arc<Observer>) -> Result<Running, String> {
    start_inheriting(config, observer, &mut Inherited::default()).await
}

/// [`start`], serving each listen address on the sockets `inherited` holds
/// for it (handed over by the process this one replaces), if any.
pub async fn start_inheriting(
    config: Config,
    observer: Arc<Observer>,
    inherited: &mut Inherited,
) -> Result<Running, String> {
    let resolver = Arc::new(SystemResolver::default());
    start_with_resolver(config, observer, resolver, inherited).await
}

/// [`start_inheriting`], with server names re-resolved by `resolver`.
pub async fn start_with_resolver(
    config: Config,
    observer: Arc<Observer>,
    resolver: Arc<dyn Resolve>,
    inherited: &mut Inherited,
) -> Result<Running, String> {
    let proxy = ConfigProxy::new(&config, Arc::clone(&observer));
    observer.watch_groups(config.groups.values().cloned().collect());
    observer.watch_mirrors(&config.routes);
    let workers = Workers::start(config.workers.saturating_sub(1))
        .map_err(|e| format!("cannot start the workers: {e}"))?;
    let mut running = Running {
        listening: Vec::new(),
        listening_unix: Vec::new(),
        secure: Vec::new(),
        listening_http3: Vec::new(),
        admin: None,
        shutdowns: Vec::new(),
        servers: Vec::new(),
        pools: Vec::new(),
        admin_task: None,
        checkers: start_checks(&config),
        proxy,
        admin_state: None,
        fixed: fixed_part(&config),
        resolve_at: resolve_schedule(&config, &BTreeMap::new()),
        listener_tls: config.tls.as_ref().map(|tls| tls.loaded.clone()),
        pid_file: config.pid_file.clone(),
        config,
        resolver,
        workers,
        observer,
        sockets: Vec::new(),
        relaunch: None,
        handed_over: false,
        acme: None,
    };
    running.listen(inherited).await?;
    // Once the listeners are up: the CA's validation reaches them.
    running.acme = running
        .config
        .tls
        .as_ref()
        .and_then(|tls| tls.acme.clone())
        .map(|acme| {
            let renewing = acme.start();
            (acme, renewing)
        });
    running
        .observer
        .watch_certificates(running.acme.as_ref().map(|(acme, _)| acme.clone()));
    let mut https = running.listening.iter().zip(&running.secure);
    if let Some((addr, _)) = https.find(|(_, secure)| **secure) {
        running
            .proxy
            .listening_https_on(addr.port(), &running.config);
    }
    Ok(running)
}

/// Start the active checks of every group that has them, each with a
/// warning on stderr when a server changes state.
fn start_checks(config: &Config) -> BTreeMap<String, Checker> {
    config
        .groups
        .iter()
        .filter_map(|(name, group)| Some((name.clone(), group.start_checks()?)))
        .collect()
}

fn fixed_part(config: &Config) -> FixedPart {
    (
        config.listen.clone(),
        config
            .tls
            .as_ref()
            .map(|tls| tls.listen.clone())
            .unwrap_or_default(),
        config.workers,
        config.admin,
        // Routes carry the body limit, so a reload applies it; Alt-Svc is
        // set once HTTP/3 is bound.
        ServerOptions {
            max_request_body: None,
            alt_svc: None,
            ..config.server.clone()
        },
        config.otlp.clone(),
        (config.unix_mode, config.pid_file.clone()),
        config.http3.clone(),
    )
}

/// When each group with server names resolves them next: after its
/// interval, or sooner if it was due sooner in `before`.
fn resolve_schedule(
    config: &Config,
    before: &BTreeMap<String, Instant>,
) -> BTreeMap<String, Instant> {
    let now = Instant::now();
    config
        .groups
        .iter()
        .filter(|(_, group)| !group.names().is_empty())
        .map(|(name, group)| {
            let after_interval = now + group.resolve_every();
            let at = before
                .get(name)
                .map_or(after_interval, |&due| due.min(after_interval));
            (name.clone(), at)
        })
        .collect()
}

impl Running {
    /// Serve `config`'s routes and upstream groups from now on: new requests
    /// use them, requests in flight finish on the old ones, active checks
    /// restart for the new groups (servers that stayed in a group keep
    /// their health: verdicts, ejections), and idle pooled connections to
    /// servers no longer listed close. `[server]` settings need a restart;
    /// the returned note says when some were left as they were.
    pub fn reload(&mut self, config: Config) -> String {
        let config = self.carry_acme(config);
        let groups = config.groups.len();
        let routes = config.routes.len();
        let same_server = fixed_part(&config) == self.fixed;
        let same_logs = (&config.access_log, &config.error_log)
            == (&self.config.access_log, &self.config.error_log);
        let certificates = self.reload_certificates(&config);
        let closed = self.swap(config);
        let mut note = format!("reloaded: {groups} upstream group(s), {routes} route(s)");
        if certificates > 0 {
            note += &format!("; {certificates} certificate(s) for new TLS handshakes");
        }
        if closed > 0 {
            note += &format!("; closed {closed} idle connection(s) to removed servers");
        }
        if !same_server {
            note += "; [server] and [tracing] changes (listen, workers, admin, limits, unix_mode, pid_file, http3, start_traces, otlp_endpoint) need a restart and were not applied";
        }
        if !same_logs {
            note += "; [log] file changes need a restart and were not applied";
        }
        note
    }

    /// Keep the running ACME certificates and their renewal when `config`
    /// asks for the same; else stop them and start `config`'s.
    fn carry_acme(&mut self, mut config: Config) -> Config {
        let new = config.tls.as_mut().and_then(|tls| {
            let acme = tls.acme.clone()?;
            Some((tls, acme))
        });
        match (&self.acme, new) {
            (Some((running, _)), Some((tls, acme))) if running.settings() == acme.settings() => {
                tls.acme = Some(running.clone());
                match (
                    ServerTls::load_with_acme(&tls.settings, Some(running)),
                    &self.listener_tls,
                ) {
                    (Ok(loaded), _) => tls.loaded = loaded,
                    // The files loaded a moment ago; if they cannot now, the
                    // live certificates stay, with the running ACME ones.
                    (Err(e), Some(live)) => {
                        tracing::warn!(error = %e, "reloading the certificates; keeping those in use");
                        tls.loaded = live.clone();
                    }
                    (Err(e), None) => tracing::warn!(error = %e, "reloading the certificates"),
                }
            }
            (_, new) => {
                self.acme = new.map(|(_, acme)| {
                    let renewing = acme.start();
                    (acme, renewing)
                });
                self.observer
                    .watch_certificates(self.acme.as_ref().map(|(acme, _)| acme.clone()));
            }
        }
        config
    }

    /// Give the HTTPS listeners the certificates `config` loaded (new
    /// handshakes use them; open connections keep theirs); how many.
    fn reload_certificates(&self, config: &Config) -> usize {
        let (Some(live), Some(new)) = (&self.listener_tls, &config.tls) else {
            return 0;
        };
        live.adopt(&new.loaded);
        new.settings.certificates.len()
    }

    /// Serve `config` from now on (see [`reload`](Self::reload)); returns
    /// how many idle connections to removed servers were closed.
    fn swap(&mut self, config: Config) -> usize {
        let mut old_checkers = std::mem::take(&mut self.checkers);
        for (name, group) in &config.groups {
            match self.config.groups.get(name) {
                // Kept as it was (a DNS change elsewhere): so is its checker.
                Some(old) if Arc::ptr_eq(old, group) => {
                    if let Some(checker) = old_checkers.remove(name) {
                        self.checkers.insert(name.clone(), checker);
                    }
                    continue;
                }
                Some(old) => group.adopt(old),
                None => {}
            }
            if let Some(checker) = group.start_checks() {
                self.checkers.insert(name.clone(), checker);
            }
        }
        drop(old_checkers);
        self.proxy.reload(&config);
        self.observer
            .watch_groups(config.groups.values().cloned().collect());
        self.observer.watch_mirrors(&config.routes);
        if let Some(admin) = &self.admin_state {
            admin.update(&config);
        }
        let servers: Vec<switchyard::PeerAddr> = config
            .groups
            .values()
            .flat_map(|g| g.health().peers().iter().copied())
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

    /// Print where we listen, on standard error (scripts read these lines),
    /// and tell systemd, unless this process is taking over from another
    /// (the old one names this one the service's main process instead).
    pub fn announce(&self, inherited: &Inherited) {
        for (addr, secure) in self.listening.iter().zip(&self.secure) {
            let tls = if *secure { " (https)" } else { "" };
            eprintln!("switchyard: listening on {addr}{tls}");
        }
        for addr in &self.listening_http3 {
            eprintln!("switchyard: listening on {addr} (http3)");
        }
        for path in &self.listening_unix {
            eprintln!("switchyard: listening on unix:{}", path.display());
        }
        if let Some(addr) = self.admin {
            eprintln!("switchyard: admin on {addr}");
        }
        eprintln!("switchyard: ready");
        if !inherited.is_upgrade() {
            crate::systemd::ready();
        }
    }

    /// Stop accepting, let in-flight requests finish, and return when done.
    pub async fn stop(mut self) -> Result<(), String> {
        // Our copies of the listening sockets: closed now, so that a new
        // connection is refused rather than left waiting in a backlog
        // nobody accepts from (unless a new process holds them).
        self.sockets.clear();
        if !self.handed_over {
            for path in &self.listening_unix {
                let _ = std::fs::remove_file(path);
            }
        }
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

/// A stream of SIGHUPs, the reload request (none where signals are missing).
///
/// SIGHUP is caught from this call on. Call it before announcing readiness:
/// until a handler is installed, a SIGHUP kills the process.
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

/// Reopen `logs` (their files, at their paths) on each SIGUSR1, the
/// logrotate convention: the old file was renamed, the proxy writes a new
/// one at the path. Caught from this call on; the task ends when dropped
/// with the runtime.
pub fn reopen_logs_on_sigusr1(logs: Vec<LogWriter>) -> Option<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::user_defined1()) {
        Ok(mut usr1) => Some(tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                for log in &logs {
                    log.reopen();
                }
                eprintln!("switchyard: SIGUSR1: reopening the log files");
            }
        })),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGUSR1; log files cannot be reopened");
            None
        }
    }
}

/// A future that resolves on SIGTERM or SIGINT (Ctrl-C).
///
/// Both are caught from this call on, not from the future's first poll, so
/// a stop requested right after "ready" is a graceful stop rather than the
/// signal's default action (an immediate exit).
pub fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM or SIGINT; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
