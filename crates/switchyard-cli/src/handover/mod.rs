//! Handing the listening sockets to a new process: the zero-downtime binary
//! upgrade (SIGUSR2).
//!
//! The running proxy starts the binary at its own path again, with the
//! same arguments. The new process's standard input is one end of a Unix
//! socket pair, and `SWITCHYARD_HANDOVER` in its environment says so. Over
//! it the old process sends the list of its listening sockets (each one's
//! role and configured address), then each socket's file descriptor
//! (`SCM_RIGHTS`, one per message: nginx passes them by inheritance,
//! HAProxy over a socket; receiving them this way needs no `unsafe`). The
//! new process serves a configured address on the sockets it got for it
//! (binding only the addresses it did not get), then answers `ready`, or
//! `failed REASON` if it cannot start.
//!
//! Only on `ready` does the old process stop accepting. Both processes
//! held the same sockets, so a connection waiting in a backlog is accepted
//! by the new one, never refused; the old one lets its requests in flight
//! finish and exits.

mod spawn;
mod wire;

use std::io::Write;
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};
use switchyard::server::{ListenAddr, Listening};

pub use spawn::{Outcome, hand_over};

/// The variable that tells a new process its standard input is the
/// handover channel.
pub const HANDOVER_VARIABLE: &str = "SWITCHYARD_HANDOVER";

/// What a listening socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Cleartext HTTP (`[server] listen`).
    Http,
    /// HTTPS (`[server.tls] listen`).
    Https,
    /// The admin listener (`[server] admin`).
    Admin,
}

/// A listening socket and what it serves.
#[derive(Debug)]
pub struct Socket {
    /// What it serves.
    pub role: Role,
    /// Its address as the config wrote it (port 0 included), by which the
    /// new process finds it.
    pub configured: ListenAddr,
    /// The socket.
    pub listener: Listening,
}

impl Socket {
    /// Another descriptor of the same socket.
    pub fn try_clone(&self) -> std::io::Result<Socket> {
        Ok(Socket {
            role: self.role,
            configured: self.configured.clone(),
            listener: self.listener.try_clone()?,
        })
    }
}

/// The sockets a new process got from the process it replaces, and the
/// channel to tell that process how starting went. Empty when the process
/// was started any other way.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<Socket>,
    channel: Option<UnixStream>,
}

impl Inherited {
    /// The sockets handed over, when this process was started by an
    /// upgrade (`SWITCHYARD_HANDOVER` set); empty otherwise.
    pub fn from_parent() -> Result<Inherited, String> {
        if std::env::var_os(HANDOVER_VARIABLE).is_none() {
            return Ok(Inherited::default());
        }
        let channel = wire::channel_on_stdin()
            .map_err(|e| format!("cannot use standard input as the handover channel: {e}"))?;
        let sockets = wire::receive(&channel)
            .map_err(|e| format!("cannot receive the listening sockets: {e}"))?;
        Ok(Inherited {
            sockets,
            channel: Some(channel),
        })
    }

    /// Whether this process is taking over from another.
    pub fn is_upgrade(&self) -> bool {
        self.channel.is_some()
    }

    /// The sockets inherited for `configured` in `role`, removed from here.
    pub fn take(&mut self, role: Role, configured: &ListenAddr) -> Vec<Listening> {
        let (taken, kept) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|s| s.role == role && s.configured == *configured);
        self.sockets = kept;
        taken.into_iter().map(|s| s.listener).collect()
    }

    /// Close the sockets no configured address took (the new config dropped
    /// their addresses), and remove the files of such Unix sockets; how many.
    pub fn close_unused(&mut self) -> usize {
        let unused = std::mem::take(&mut self.sockets);
        for socket in &unused {
            if let ListenAddr::Unix(path) = &socket.configured {
                let _ = std::fs::remove_file(path);
            }
        }
        unused.len()
    }

    /// Tell the old process this one serves: it stops accepting now.
    pub fn ready(&mut self) {
        self.say("ready");
    }

    /// Tell the old process this one could not start, and why.
    pub fn failed(&mut self, reason: &str) {
        let one_line = reason.replace('\n', "; ");
        self.say(&format!("failed {one_line}"));
    }

    fn say(&mut self, message: &str) {
        if let Some(mut channel) = self.channel.take() {
            // The old process may have stopped meanwhile: nobody to tell.
            let _ = writeln!(channel, "{message}");
        }
    }
}
