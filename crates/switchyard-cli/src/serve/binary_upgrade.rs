//! The old process's side of a zero-downtime binary upgrade (SIGUSR2):
//! start the binary again with the listening sockets, and stop accepting
//! only once it serves (`crate::handover` has the protocol).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::Signal;
use tokio::task::{JoinError, JoinHandle};

use super::Running;
use crate::handover::{Outcome, Socket, hand_over};
use crate::pid_file;

/// How long a new process has to load its config and say it serves.
const UPGRADE_WAIT: Duration = Duration::from_secs(60);

/// How to start this binary again: its path and arguments, read when the
/// process started (an upgrade replaces the file at the path; the new
/// binary is the one started).
#[derive(Debug, Clone)]
pub struct Relaunch {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Relaunch {
    /// This process's binary and arguments. The binary is the path it was
    /// started by (`argv[0]`, made absolute), so that a symbolic link
    /// switched to a new release is followed; a bare name (found in `PATH`)
    /// is the file the process runs.
    pub fn this_process() -> Result<Relaunch, String> {
        let mut args = std::env::args_os();
        let started_as = args.next().map(PathBuf::from);
        let exe = match started_as {
            Some(path) if path.is_absolute() => path,
            Some(path) if path.components().count() > 1 => std::env::current_dir()
                .map(|dir| dir.join(path))
                .map_err(|e| format!("cannot tell this binary's path, so upgrades are off: {e}"))?,
            _ => std::env::current_exe()
                .map_err(|e| format!("cannot tell this binary's path, so upgrades are off: {e}"))?,
        };
        Ok(Relaunch::new(exe, args.collect()))
    }

    /// Start `exe` with `args`.
    pub fn new(exe: PathBuf, args: Vec<OsString>) -> Relaunch {
        Relaunch { exe, args }
    }
}

/// A stream of SIGUSR2s, the upgrade request (none where signals are
/// missing). Caught from this call on: call it before announcing readiness.
pub fn upgrade_signals() -> Option<Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::user_defined2()) {
        Ok(signals) => Some(signals),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGUSR2; upgrades need a restart");
            None
        }
    }
}

impl Running {
    /// Let SIGUSR2 start `relaunch` and hand it the listening sockets.
    pub fn allow_upgrades(&mut self, relaunch: Relaunch) {
        self.relaunch = Some(relaunch);
    }

    /// Start the new process off the serving threads.
    pub(super) fn start_upgrade(&self) -> Result<JoinHandle<Outcome>, String> {
        let relaunch = self
            .relaunch
            .clone()
            .ok_or("this process was not started to be upgraded")?;
        let sockets = self
            .sockets
            .iter()
            .map(Socket::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot copy the listening sockets: {e}"))?;
        eprintln!(
            "switchyard: SIGUSR2: starting {} to take over {} listening socket(s)",
            relaunch.exe.display(),
            sockets.len()
        );
        Ok(tokio::task::spawn_blocking(move || {
            hand_over(&relaunch.exe, &relaunch.args, &sockets, UPGRADE_WAIT)
        }))
    }

    /// Say how the upgrade went (standard error, the status file beside the
    /// pid file, systemd); whether this process should now stop.
    pub(super) fn finish_upgrade(&mut self, outcome: Result<Outcome, JoinError>) -> bool {
        let outcome = outcome.unwrap_or_else(|e| Outcome::Failed(format!("the upgrade task: {e}")));
        let (status, stop) = match outcome {
            Outcome::Ready { pid } => {
                eprintln!(
                    "switchyard: upgrade: process {pid} serves; this one ({}) stops accepting and lets its requests finish",
                    std::process::id()
                );
                crate::systemd::notify(&format!("MAINPID={pid}\nSTATUS=upgraded"));
                // The new process serves the Unix sockets' files now.
                self.handed_over = true;
                (format!("ready {pid}"), true)
            }
            Outcome::Failed(reason) => {
                eprintln!("switchyard: upgrade failed, still serving: {reason}");
                // The new process may have written its ID before it failed.
                if let Some(path) = &self.pid_file
                    && let Err(e) = pid_file::write(path)
                {
                    eprintln!(
                        "switchyard: cannot write the pid file {}: {e}",
                        path.display()
                    );
                }
                (format!("failed {reason}"), false)
            }
        };
        if let Some(path) = &self.pid_file
            && let Err(e) = pid_file::write_status(path, &status)
        {
            eprintln!(
                "switchyard: cannot write the upgrade's outcome beside {}: {e}",
                path.display()
            );
        }
        stop
    }
}
