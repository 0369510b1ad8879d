//! What changes a running config while it serves: a reload of the file on
//! SIGHUP, and server names whose DNS answers changed. Loading a file and
//! looking names up run in the background (a slow resolver must not hold
//! up a stop, another reload, or the proxy itself), and both end in
//! `Running::swap`, so a DNS change is applied exactly as a reload is.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard::discovery::{Refresh, ServerName};
use tokio::signal::unix::Signal;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::Running;
use crate::config::{self, Config, ConfigError};
use crate::handover::Outcome;

/// A reload's outcome: the config with notes on names that kept their
/// previous addresses, or why it was refused.
type Loaded = Result<(Config, Vec<String>), ConfigError>;

/// What a running proxy answers to, besides time: see
/// [`stop_signal`](super::stop_signal), [`reload_signals`](super::reload_signals)
/// and [`upgrade_signals`](super::upgrade_signals).
#[derive(Debug)]
pub struct Signals<Stop> {
    /// Resolves when the proxy should stop.
    pub stop: Stop,
    /// SIGHUPs: reload the config file.
    pub hangups: Option<Signal>,
    /// SIGUSR2s: upgrade the binary (if [`Running::allow_upgrades`] was called).
    pub upgrades: Option<Signal>,
}

impl Running {
    /// Serve until `stop` resolves. On each of `hangups` (SIGHUPs, see
    /// [`reload_signals`](super::reload_signals)), reload the config from
    /// `reload_from`; server names are re-resolved as their groups say.
    /// What happens is reported on standard error.
    pub async fn serve_until<Stop: Future<Output = ()>>(
        mut self,
        signals: Signals<Stop>,
        reload_from: Option<PathBuf>,
    ) -> Result<(), String> {
        let Signals {
            stop,
            mut hangups,
            mut upgrades,
        } = signals;
        let mut loading: Option<JoinHandle<Loaded>> = None;
        let mut resolving: Option<JoinHandle<Refresh>> = None;
        let mut upgrading: Option<JoinHandle<Outcome>> = None;
        let mut upgraded = false;
        tokio::pin!(stop);
        loop {
            let resolve_due = self.resolve_at.values().min().copied();
            tokio::select! {
                () = &mut stop => break,
                Some(()) = async { upgrades.as_mut()?.recv().await } => {
                    if upgrading.is_some() {
                        eprintln!("switchyard: SIGUSR2 ignored: an upgrade is already in progress");
                        continue;
                    }
                    match self.start_upgrade() {
                        Ok(task) => upgrading = Some(task),
                        Err(message) => eprintln!("switchyard: SIGUSR2 ignored: {message}"),
                    }
                }
                outcome = finished(&mut upgrading) => {
                    upgrading = None;
                    if self.finish_upgrade(outcome) {
                        upgraded = true;
                        break;
                    }
                }
                Some(()) = async { hangups.as_mut()?.recv().await } => {
                    match (&loading, &reload_from) {
                        (Some(_), _) => eprintln!("switchyard: SIGHUP ignored: a reload is already in progress"),
                        (None, None) => eprintln!(
                            "switchyard: SIGHUP ignored: there is no config file to reload (switchyard proxy)"
                        ),
                        (None, Some(path)) => {
                            crate::systemd::reloading();
                            loading = Some(self.load_in_background(path));
                        }
                    }
                }
                loaded = finished(&mut loading) => {
                    loading = None;
                    self.finish_reload(loaded);
                    // Serving again, the new config or the old one.
                    crate::systemd::ready();
                }
                Some(()) = async { tokio::time::sleep_until(resolve_due?).await; Some(()) } => {
                    let names = self.due_names(Instant::now());
                    if resolving.is_none() && !names.is_empty() {
                        resolving = Some(self.resolve_in_background(names));
                    }
                }
                refreshed = finished(&mut resolving) => {
                    resolving = None;
                    let report = match refreshed {
                        Ok(refresh) => self.apply_refresh(refresh),
                        Err(e) => Some(format!("resolving server names failed: {e}")),
                    };
                    if let Some(report) = report {
                        eprintln!("switchyard: {report}");
                    }
                }
            }
        }
        for task in [
            loading.map(|t| t.abort_handle()),
            resolving.map(|t| t.abort_handle()),
        ] {
            task.inspect(|t| t.abort());
        }
        if let Some(task) = upgrading.take() {
            // The new process may be about to serve: the sockets' files and
            // systemd must know who serves them.
            eprintln!("switchyard: stopping during an upgrade: waiting for its outcome first");
            upgraded = self.finish_upgrade(task.await);
        }
        if !upgraded {
            // After an upgrade the new process is systemd's main process.
            eprintln!("switchyard: stopping; letting in-flight requests finish");
            crate::systemd::stopping();
        }
        self.stop().await
    }

    /// Read the file off the serving threads (loading resolves names, which
    /// may block); names that do not resolve keep the addresses they have now.
    fn load_in_background(&self, path: &Path) -> JoinHandle<Loaded> {
        let path = path.to_path_buf();
        let previous = self.config.answers.clone();
        tokio::task::spawn_blocking(move || config::load_keeping(&path, &previous))
    }

    fn finish_reload(&mut self, loaded: Result<Loaded, JoinError>) {
        match loaded {
            Ok(Ok((config, notes))) => {
                for note in notes {
                    eprintln!("switchyard: {note}");
                }
                eprintln!("switchyard: {}", self.reload(config));
            }
            Ok(Err(e)) => {
                eprintln!("switchyard: reload refused, still serving the previous config: {e}")
            }
            Err(e) => {
                eprintln!("switchyard: reload failed, still serving the previous config: {e}")
            }
        }
    }

    /// The names of every group due at `now`, each group then scheduled
    /// one interval later.
    fn due_names(&mut self, now: Instant) -> Vec<ServerName> {
        let mut names = Vec::new();
        for (group, at) in &mut self.resolve_at {
            if *at > now {
                continue;
            }
            if let Some(group) = self.config.groups.get(group) {
                *at = now + group.resolve_every();
                names.extend(group.names().iter().cloned());
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn resolve_in_background(&self, names: Vec<ServerName>) -> JoinHandle<Refresh> {
        let answers = self.config.answers.clone();
        let resolver = Arc::clone(&self.resolver);
        tokio::spawn(async move { answers.refresh(&*resolver, &names).await })
    }

    /// Serve the groups rebuilt with the addresses that changed. The lookups
    /// began before; a reload since may have resolved some names afresh or
    /// dropped them, so only names still served and still different count.
    /// Returns what changed or failed, if anything did.
    fn apply_refresh(&mut self, refresh: Refresh) -> Option<String> {
        let mut report: Vec<String> = refresh
            .failed
            .iter()
            .map(|(name, e)| format!("cannot resolve {name} ({e}); keeping its previous addresses"))
            .collect();
        let mut answers = self.config.answers.clone();
        let mut changed = Vec::new();
        for name in &refresh.changed {
            let (Some(_), Some(found)) = (answers.get(name), refresh.answers.get(name)) else {
                continue;
            };
            if answers.insert(name.clone(), found.to_vec()) {
                report.push(format!("{name} now resolves to {}", list(found)));
                changed.push(name.clone());
            }
        }
        if !changed.is_empty() {
            match self.config.with_answers(answers, &changed) {
                Ok(config) => {
                    let closed = self.swap(config);
                    report.push(format!(
                        "its group was rebuilt; closed {closed} idle connection(s) to removed servers"
                    ));
                }
                Err(e) => report.push(format!("the new addresses were not applied: {e}")),
            }
        }
        (!report.is_empty()).then(|| report.join("; "))
    }
}

/// The output of `task` once it finishes; never, when there is no task.
async fn finished<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// `a, b, c`.
fn list(addresses: &[SocketAddr]) -> String {
    let texts: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
    texts.join(", ")
}
