//! Networking. For now every container gets its own network namespace with only the
//! loopback interface, brought up here (`man 7 network_namespaces`, `man 7 netdevice`).
//! Bridge/veth/NAT and `--network host` come with issue 6; they will plug in here, driven by
//! the spec's network namespace entry (a path to join for `host`, none for a new one).

use anyhow::{Context, Result};

/// `ip link set lo up`, with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls on a throwaway socket.
pub fn loopback_up() -> Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket(AF_INET) for configuring lo failed")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and a properly initialised ifreq for these two ioctls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error()).context("ioctl(SIOCGIFFLAGS, lo) failed");
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error())
                .context("ioctl(SIOCSIFFLAGS, lo up) failed");
        }
    }
    Ok(())
}
