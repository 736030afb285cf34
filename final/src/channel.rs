//! The parent/child handshake: one `socketpair(AF_UNIX, SOCK_SEQPACKET|SOCK_CLOEXEC)`
//! (`man 2 socketpair`, `man 7 unix`). Each message is one packet, so no framing is needed.
//!
//! The numbered sync points (the same numbers appear in comments on both sides):
//! - sync 1, parent → child `Proceed`, only when the parent has work on the child's behalf
//!   (user id maps, the veth pair): it is done; the child may set the container up. Otherwise
//!   the child does not wait: it joins its cgroup itself and sets up while the parent goes on.
//! - sync 2, child → parent: either `Failed { code, message }` (setup or exec failed), or
//!   end-of-file: the socket is close-on-exec, so EOF means execve(2) succeeded. For an OCI
//!   `create`, `Created` comes first: the setup is done and the child waits for `start`
//!   (see [`crate::oci`]); then `Failed` or end-of-file as above.

use anyhow::{bail, Context, Result};
use std::os::fd::{AsRawFd, OwnedFd};

// ANCHOR: messages
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Proceed,
    Failed { code: i32, message: String },
    Created,
}
// ANCHOR_END: messages

const PROCEED: u8 = 1;
const FAILED: u8 = 2;
const CREATED: u8 = 3;

pub struct Channel {
    fd: OwnedFd,
}

/// Both ends; the parent keeps one, the child the other.
pub fn pair() -> Result<(Channel, Channel)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair(AF_UNIX, SOCK_SEQPACKET) failed")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Message) -> Result<()> {
        let mut buf = Vec::with_capacity(64);
        match msg {
            Message::Proceed => buf.push(PROCEED),
            Message::Created => buf.push(CREATED),
            Message::Failed { code, message } => {
                buf.push(FAILED);
                buf.extend_from_slice(&code.to_le_bytes());
                // One packet must fit the socket buffer; messages are short sentences.
                buf.extend_from_slice(&message.as_bytes()[..message.len().min(8000)]);
            }
        }
        nix::unistd::write(&self.fd, &buf).context("cannot write to the sync socket")?;
        Ok(())
    }

    /// `None` on end-of-file (the peer closed or exec'd).
    pub fn recv(&self) -> Result<Option<Message>> {
        let mut buf = [0u8; 8192];
        let n = loop {
            match nix::unistd::read(&self.fd, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.context("cannot read from the sync socket")?,
            }
        };
        decode(&buf[..n])
    }

    /// Has the other end been closed (its process died or exec'd)? Does not consume data.
    pub fn peer_gone(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

fn decode(buf: &[u8]) -> Result<Option<Message>> {
    match buf.first() {
        None => Ok(None),
        Some(&PROCEED) => Ok(Some(Message::Proceed)),
        Some(&CREATED) => Ok(Some(Message::Created)),
        Some(&FAILED) if buf.len() >= 5 => {
            let code = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
            let message = String::from_utf8_lossy(&buf[5..]).into_owned();
            Ok(Some(Message::Failed { code, message }))
        }
        Some(tag) => bail!("unexpected sync message tag {tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof() {
        let (a, b) = pair().unwrap();
        a.send(&Message::Proceed).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Message::Proceed));
        b.send(&Message::Created).unwrap();
        assert_eq!(a.recv().unwrap(), Some(Message::Created));
        let failed = Message::Failed {
            code: 127,
            message: "nope: not found".into(),
        };
        b.send(&failed).unwrap();
        assert_eq!(a.recv().unwrap(), Some(failed));
        drop(b);
        assert_eq!(a.recv().unwrap(), None);
    }
}
