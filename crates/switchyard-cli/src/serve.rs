//! Serving a checked config: one proxy server per listen address, the admin
//! listener if configured, a reload of routes and upstreams on SIGHUP, and a
//! graceful stop on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard::health::checker::{self, Checker};
use switchyard::{ProxyServer, ShutdownHandle};
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::config::Config;
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
    admin_task: Option<JoinHandle<()>>,
    /// Active health checks; dropping them stops them.
    checkers: Vec<Checker>,
    proxy: ConfigProxy,
    /// The groups being served, whose health a reload carries over.
    groups: std::collections::BTreeMap<String, Arc<crate::config::Group>>,
    admin_state: Option<Arc<Admin>>,
    /// What was served first, to tell which changes a reload cannot apply.
    fixed: (
        Vec<SocketAddr>,
        usize,
        Option<SocketAddr>,
        switchyard::ServerOptions,
    ),
}

/// Bind every listener of `config` and start serving.
pub async fn start(config: &Config, observer: Arc<Observer>) -> Result<Running, String> {
    let proxy = ConfigProxy::new(config, Arc::clone(&observer));
    let mut running = Running {
        listening: Vec::new(),
        admin: None,
        shutdowns: Vec::new(),
        servers: Vec::new(),
        admin_task: None,
        checkers: start_checks(config),
        proxy: proxy.clone(),
        groups: config.groups.clone(),
        admin_state: None,
        fixed: fixed_part(config),
    };
    for addr in &config.listen {
        let server = ProxyServer::bind(*addr, proxy.clone(), config.server.clone())
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        running.listening.push(server.local_addr());
        running.shutdowns.push(server.shutdown_handle());
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

fn fixed_part(
    config: &Config,
) -> (
    Vec<SocketAddr>,
    usize,
    Option<SocketAddr>,
    switchyard::ServerOptions,
) {
    (
        config.listen.clone(),
        config.workers,
        config.admin,
        config.server.clone(),
    )
}

impl Running {
    /// Serve `config`'s routes and upstream groups from now on: new requests
    /// use them, requests in flight finish on the old ones, active checks
    /// restart for the new groups (servers that stayed in a group keep
    /// their health: verdicts, ejections), and
    /// pooled connections to servers no longer listed are not used again
    /// and close at their idle timeout. `[server]` settings need a restart;
    /// the returned note says when some were left as they were.
    pub fn reload(&mut self, config: &Config) -> String {
        for (name, group) in &config.groups {
            if let Some(old) = self.groups.get(name) {
                group.health.adopt(&old.health);
            }
        }
        self.groups = config.groups.clone();
        self.proxy.reload(config);
        self.checkers = start_checks(config);
        if let Some(admin) = &self.admin_state {
            admin.update(config);
        }
        let groups = config.groups.len();
        let routes = config.routes.len();
        if fixed_part(config) == self.fixed {
            format!("reloaded: {groups} upstream group(s), {routes} route(s)")
        } else {
            format!(
                "reloaded: {groups} upstream group(s), {routes} route(s); \
                 [server] changes (listen, workers, admin, limits) need a restart and were not applied"
            )
        }
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
