//! The handover's messages, old process to new: a 4-byte big-endian
//! length and that many bytes of JSON listing the sockets (role and
//! configured address, in order), then one message per socket of one byte
//! (`s`) carrying its file descriptor. The descriptors travel one per
//! message so that the new process reads each with exactly one byte and
//! never discards a descriptor with bytes it read for something else.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use serde::{Deserialize, Serialize};
use switchyard::server::{ListenAddr, Listening};

use super::{Role, Socket};

/// The byte each descriptor travels with.
const CARRIER: u8 = b's';

/// The longest listing accepted (a few hundred sockets fit in far less).
const MAX_LISTING: usize = 1 << 20;

/// How long the new process waits for the old one's messages.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    role: Role,
    /// `ip:port` or `unix:/path`.
    configured: String,
}

/// The new process's end of the channel: its standard input.
pub(super) fn channel_on_stdin() -> io::Result<UnixStream> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    let channel = UnixStream::from(stdin);
    // Fails with ENOTSOCK if standard input is not a socket.
    channel.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
    Ok(channel)
}

/// Send `sockets` over `channel` (the old process's side).
pub(super) fn send(mut channel: &UnixStream, sockets: &[Socket]) -> io::Result<()> {
    let listing: Vec<Entry> = sockets
        .iter()
        .map(|s| Entry {
            role: s.role,
            configured: s.configured.to_string(),
        })
        .collect();
    let json = serde_json::to_vec(&listing).map_err(io::Error::other)?;
    let length = u32::try_from(json.len()).map_err(io::Error::other)?;
    channel.write_all(&length.to_be_bytes())?;
    channel.write_all(&json)?;
    for socket in sockets {
        let fds = [socket.listener.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("no room for a descriptor in the message"));
        }
        let sent = sendmsg(
            channel,
            &[IoSlice::new(&[CARRIER])],
            &mut control,
            SendFlags::empty(),
        )?;
        if sent != 1 {
            return Err(io::Error::other(
                "a descriptor's message was not sent whole",
            ));
        }
    }
    Ok(())
}

/// Receive the sockets the old process sends (the new process's side).
pub(super) fn receive(mut channel: &UnixStream) -> io::Result<Vec<Socket>> {
    let mut length = [0; 4];
    channel.read_exact(&mut length)?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_LISTING {
        return Err(io::Error::other(format!(
            "a listing of {length} bytes is too long"
        )));
    }
    let mut json = vec![0; length];
    channel.read_exact(&mut json)?;
    let listing: Vec<Entry> = serde_json::from_slice(&json).map_err(io::Error::other)?;
    listing
        .into_iter()
        .map(|entry| {
            let fd = receive_descriptor(channel)?;
            let configured: ListenAddr = entry.configured.parse().map_err(io::Error::other)?;
            let listener = match configured {
                ListenAddr::Tcp(_) => Listening::Tcp(fd.into()),
                ListenAddr::Unix(_) => Listening::Unix(fd.into()),
            };
            Ok(Socket {
                role: entry.role,
                configured,
                listener,
            })
        })
        .collect()
}

fn receive_descriptor(channel: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        channel,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if received.bytes != 1 || byte[0] != CARRIER {
        return Err(io::Error::other(
            "the old process closed the channel before sending every socket",
        ));
    }
    let mut descriptors = control.drain().filter_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    descriptors
        .next()
        .ok_or_else(|| io::Error::other("a socket's message came without its descriptor"))
}
