//! Terminals for interactive containers (`man 7 pty`, `man 3 termios`).
//!
//! With stdin a terminal, the container gets a pseudo-terminal of its own: the slave becomes
//! its controlling terminal (so job control and Ctrl-C work *inside*, through the line
//! discipline), our terminal is put in raw mode and the runtime copies bytes both ways and
//! the window size on SIGWINCH.

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_path: PathBuf,
}

pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
}

// ANCHOR: open
/// A new pty pair, sized like our terminal.
pub fn open() -> Result<Pty> {
    let size = window_size(std::io::stdin().as_fd());
    let pair =
        nix::pty::openpty(size.as_ref(), None).context("openpty failed (is /dev/pts mounted?)")?;
    for fd in [&pair.master, &pair.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
    }
    let slave_path =
        nix::unistd::ttyname(&pair.slave).context("ttyname of the pty slave failed")?;
    Ok(Pty {
        master: pair.master,
        slave: pair.slave,
        slave_path,
    })
}
// ANCHOR_END: open

// ANCHOR: open_in
/// A new pty pair in the devpts instance of the container whose first process is `pid`
/// (`final exec -t`): the multiplexer `/proc/PID/root/dev/pts/ptmx` makes it there, so the
/// container sees its own `/dev/pts/N` as docker's exec does; the slave is opened from the
/// master with TIOCGPTPEER (Linux 4.13), not by a path in the container's tree. Falls back to
/// a pty of the host's (whose path the container does not have) if the container has no
/// devpts of its own.
pub fn open_in(pid: i32) -> Result<Pty> {
    use nix::fcntl::OFlag;
    let ptmx = format!("/proc/{pid}/root/dev/pts/ptmx");
    let Ok(master) = nix::fcntl::open(
        ptmx.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return open();
    };
    // SAFETY: ioctls on the master we own, with valid pointers to ints.
    let (n, slave) = unsafe {
        let unlock: libc::c_int = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot unlock the pty");
        }
        let mut n: libc::c_uint = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) < 0 {
            return Err(std::io::Error::last_os_error()).context("TIOCGPTN failed");
        }
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot open the pty's slave (TIOCGPTPEER, Linux 4.13)");
        }
        (n, <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd))
    };
    let pty = Pty {
        master,
        slave,
        slave_path: PathBuf::from(format!("/dev/pts/{n}")),
    };
    copy_window_size(pty.master.as_fd());
    Ok(pty)
}
// ANCHOR_END: open_in

fn window_size(fd: BorrowedFd) -> Option<nix::pty::Winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into valid memory.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some(ws)
}

/// Copies our terminal's size to the container's (the kernel then sends it SIGWINCH).
pub fn copy_window_size(to: BorrowedFd) {
    if let Some(ws) = window_size(std::io::stdin().as_fd()) {
        // SAFETY: TIOCSWINSZ reads a valid winsize.
        unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

/// Our terminal in raw mode while it lives; restored on drop (also on error paths).
pub struct RawMode {
    saved: Termios,
}

pub fn raw_mode() -> Option<RawMode> {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).ok()?;
    let mut raw = saved.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
    Some(RawMode { saved })
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}
