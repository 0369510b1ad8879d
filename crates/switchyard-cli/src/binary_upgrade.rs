//! `switchyard upgrade --pid-file PATH`: ask the running proxy to start
//! the binary at its path again and hand over its listening sockets
//! (SIGUSR2), then wait for the outcome the proxy writes beside its pid
//! file.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, kill_process, test_kill_process};

use crate::pid_file;

/// How often the outcome is looked for.
const POLL: Duration = Duration::from_millis(50);

/// Signal the process `pid_file` names and wait up to `wait` for the
/// upgrade's outcome: what happened, or why it failed.
pub fn run(pid_file: &Path, wait: Duration) -> Result<String, String> {
    let old = pid_file::read(pid_file)?;
    let pid = i32::try_from(old)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{old} in {} is not a process ID", pid_file.display()))?;
    runs_switchyard(old)?;
    let status = pid_file::status_path(pid_file);
    match std::fs::remove_file(&status) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot remove the last outcome {}: {e}",
                status.display()
            ));
        }
    }
    kill_process(pid, Signal::USR2).map_err(|e| format!("cannot signal process {old}: {e}"))?;
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let text = text.trim();
            if let Some(new) = text.strip_prefix("ready ") {
                return Ok(format!(
                    "process {new} serves; process {old} stopped accepting and is letting its requests finish"
                ));
            }
            if let Some(reason) = text.strip_prefix("failed ") {
                return Err(format!(
                    "the upgrade failed; process {old} still serves: {reason}"
                ));
            }
        }
        if test_kill_process(pid) == Err(Errno::SRCH) {
            return Err(format!(
                "process {old} exited before saying how the upgrade went"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no outcome in {} within {}; see process {old}'s error log",
                status.display(),
                humantime::format_duration(wait)
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Refuse to signal a process that does not run a binary named
/// `switchyard…`: the pid file is written by the service, so a stale or
/// tampered one must not make whoever runs `upgrade` (often root) send
/// SIGUSR2, whose default action is to end a process, to another one.
fn runs_switchyard(pid: u32) -> Result<(), String> {
    let link = format!("/proc/{pid}/exe");
    let exe = std::fs::read_link(&link).map_err(|e| {
        format!("cannot tell what process {pid} runs ({link}: {e}); not signalling it")
    })?;
    // After the binary was replaced the link reads "switchyard (deleted)".
    let named = exe
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("switchyard"));
    match named {
        true => Ok(()),
        false => Err(format!(
            "process {pid} runs {}, not switchyard; not signalling it (a stale pid file?)",
            exe.display()
        )),
    }
}
