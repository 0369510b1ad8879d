//! The old process's side of an upgrade: start the new process, send it
//! the sockets, and wait for its word.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{HANDOVER_VARIABLE, Socket, wire};

/// How an upgrade ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new process serves: the old one stops accepting.
    Ready {
        /// The new process's ID.
        pid: u32,
    },
    /// The new process did not start; the old one keeps serving.
    Failed(String),
}

/// Start `exe` with `args`, hand it `sockets`, and wait up to `wait` for it
/// to say it serves. A new process that fails, exits or stays silent is
/// stopped (if still running) and reaped; the reason is in the outcome.
/// Blocks: run it off the serving threads.
pub fn hand_over(exe: &Path, args: &[OsString], sockets: &[Socket], wait: Duration) -> Outcome {
    let deadline = Instant::now() + wait;
    let (ours, theirs) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => return Outcome::Failed(format!("cannot make the handover channel: {e}")),
    };
    let spawned = Command::new(exe)
        .args(args)
        .env(HANDOVER_VARIABLE, std::process::id().to_string())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn();
    // The Command, and with it our copy of the new process's end, is gone:
    // when the new process exits, reading our end sees the end of file.
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", exe.display())),
    };
    let pid = child.id();
    if let Err(e) = wire::send(&ours, sockets) {
        return give_up(
            child,
            format!("cannot send the listening sockets: {e}"),
            EXIT_WAIT,
        );
    }
    match read_word(&ours, deadline) {
        Word::Ready => Outcome::Ready { pid },
        Word::Failed(reason) => give_up(child, reason, EXIT_WAIT),
        Word::Closed => {
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            Outcome::Failed(format!(
                "the new process ({pid}) exited before it was ready ({status})"
            ))
        }
        Word::Silent => give_up(
            child,
            format!(
                "the new process ({pid}) was not ready within {}",
                humantime::format_duration(wait)
            ),
            // Silent all along: no need to wait for it to exit by itself.
            Duration::ZERO,
        ),
        Word::Garbled(e) => give_up(
            child,
            format!("reading the new process's answer: {e}"),
            EXIT_WAIT,
        ),
    }
}

/// How long a new process that will not serve has to exit by itself
/// (writing out its logs) before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Stop (if it still runs, after `wait`) and reap a new process that will
/// not serve.
fn give_up(mut child: Child, reason: String, wait: Duration) -> Outcome {
    let deadline = Instant::now() + wait;
    while let Ok(None) = child.try_wait() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    Outcome::Failed(reason)
}

/// What the new process said.
enum Word {
    Ready,
    Failed(String),
    Closed,
    Silent,
    Garbled(std::io::Error),
}

fn read_word(channel: &UnixStream, deadline: Instant) -> Word {
    let left = deadline.saturating_duration_since(Instant::now());
    if let Err(e) = channel.set_read_timeout(Some(left.max(Duration::from_millis(1)))) {
        return Word::Garbled(e);
    }
    let mut line = String::new();
    match BufReader::new(channel).read_line(&mut line) {
        Ok(0) => Word::Closed,
        Ok(_) => {
            let line = line.trim_end();
            if line == "ready" {
                Word::Ready
            } else if let Some(reason) = line.strip_prefix("failed ") {
                Word::Failed(reason.to_string())
            } else {
                Word::Garbled(std::io::Error::other(format!("unexpected {line:?}")))
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Word::Silent
        }
        Err(e) => Word::Garbled(e),
    }
}
