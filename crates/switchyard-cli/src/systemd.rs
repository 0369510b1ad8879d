//! Telling systemd how the proxy is doing (`Type=notify` units,
//! `sd_notify(3)`): `READY=1` once every listener is bound, `RELOADING=1`
//! when a SIGHUP reload starts and `READY=1` again when it ends,
//! `STOPPING=1` when the proxy starts to drain. Without `NOTIFY_SOCKET` in
//! the environment (not under systemd) nothing is sent.
//!
//! A datagram to the socket the variable names (a path, or an abstract
//! name written with a leading `@`) is all the protocol is, so this is a
//! few lines rather than a dependency.

use std::io;
use std::os::unix::net::UnixDatagram;

/// The variable systemd sets for `Type=notify` services.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The service is up: every listener is bound.
pub fn ready() {
    notify("READY=1\nSTATUS=serving");
}

/// A reload (SIGHUP) started; [`ready`] follows when it ends.
pub fn reloading() {
    // MONOTONIC_USEC (optional beside it) needs CLOCK_MONOTONIC, which std
    // does not expose without `unsafe`; the unit is `Type=notify`, where
    // systemd does not require it.
    notify("RELOADING=1\nSTATUS=reloading");
}

/// The proxy stopped accepting and is letting requests in flight finish.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}

/// Send `state` to systemd, if it listens; a failure is logged, never fatal.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send(&socket.to_string_lossy(), state) {
        tracing::warn!(error = %e, socket = %socket.to_string_lossy(), "cannot notify systemd");
    }
}

fn send(socket: &str, state: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sender.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            sender.send_to(state.as_bytes(), socket)?;
        }
    }
    Ok(())
}
