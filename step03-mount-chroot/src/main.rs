//! # Step 03: a filesystem of its own (the mount namespace and chroot)
//!
//! The container still sees the host's files. Two things change that. A new mount namespace
//! gives the container its own copy of the mount table (mount_namespaces(7)); and chroot(2)
//! makes a directory holding a root filesystem (`--rootfs DIR`, by default a small busybox tree
//! the workspace builds for you) the container's `/`.
//!
//! A copy of the mount table is not enough on its own: on systemd machines `/` is a *shared*
//! mount, so mounts made in our copy would propagate back to the host. The very first thing the
//! container does is to make every mount private, recursively, before it mounts anything.
//!
//! The shape of every step: the runtime (this process) creates the namespaces, forks a child,
//! the child finishes setting up the container and `exec`s the user's command, and the runtime
//! waits for it and exits with its status.
//!
//! PID 1 is special (pid_namespaces(7)): when it exits, the kernel kills everything else in the
//! namespace, and it receives only the signals it has installed a handler for. A `sleep` that
//! is PID 1 ignores Ctrl-C, exactly as in `docker run` without `--init`.
//!
//! Man pages: mount_namespaces(7), mount(2) (MS_PRIVATE, MS_REC), chroot(2), chdir(2),
//! namespaces(7), pid_namespaces(7), unshare(2), fork(2), execvp(3), waitpid(2), prctl(2).
//!
//! Try it: `cargo run -p step03-mount-chroot -- run /bin/sh` and look around with `ls /`.

use anyhow::Result;
use clap::Parser;

/// This program's name, for messages.
const NAME: &str = env!("CARGO_BIN_NAME");

// ANCHOR: cli
/// Step 03: run a command in new UTS, PID and mount namespaces, chrooted into a root filesystem.
#[derive(Parser)]
#[command(version)]
enum Cli {
    /// Run CMD [ARGS]... in a new container.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Hostname inside the container.
    #[arg(long, default_value = "container", value_parser = parse_hostname)]
    hostname: String,

    /// Root filesystem directory [default: the workspace's busybox tree in .rootfs/default]
    #[arg(long, value_name = "DIR")]
    rootfs: Option<std::path::PathBuf>,

    /// The command to run and its arguments, passed through verbatim.
    #[arg(required = true, trailing_var_arg = true)]
    cmd: Vec<String>,
}
// ANCHOR_END: cli

fn main() {
    let Cli::Run(args) = Cli::parse();
    // Exit statuses as docker and podman use them: the command's own status, 128+N when it
    // was killed by signal N, and 125 when the runtime itself failed.
    let status = run(&args).unwrap_or_else(|err| {
        eprintln!("{NAME}: error: {err:#}");
        125
    });
    std::process::exit(status);
}

// ANCHOR: run
#[cfg(target_os = "linux")]
fn run(args: &RunArgs) -> Result<i32> {
    use anyhow::{bail, Context};
    use nix::sched::{unshare, CloneFlags};
    use nix::sys::signal::{signal, SigHandler, Signal};
    use nix::unistd::{fork, geteuid, ForkResult};

    // Creating namespaces needs CAP_SYS_ADMIN (namespaces(7)). `cargo run` runs this binary
    // through the workspace's runner, which uses sudo when you are not root.
    if !geteuid().is_root() {
        bail!("creating namespaces needs root: use `cargo run -p {NAME} -- run ...` (it asks sudo for you) or run this binary with sudo");
    }

    // The root filesystem: checked here, so that a wrong --rootfs is a clear error before any
    // namespace exists. Building the default one is not part of the lesson (see support/).
    let rootfs = cfs_support::rootfs(args.rootfs.as_deref())?;

    // ANCHOR: namespaces
    // The namespaces this container gets. unshare(2) moves *this* process into the new UTS
    // and mount namespaces; for CLONE_NEWPID it is our next child that becomes PID 1 of the
    // new one.
    // ANCHOR: ex_mount_namespace
    let namespaces = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    unshare(namespaces).context("unshare(CLONE_NEWUTS | CLONE_NEWPID | CLONE_NEWNS) failed")?;
    // ANCHOR_END: ex_mount_namespace
    // ANCHOR_END: namespaces

    // While the container runs, Ctrl-C and Ctrl-\ are meant for it, not for us: like
    // system(3), ignore them here so that we always live to report the exit status.
    // SAFETY: no handler function is installed, only the SIG_IGN disposition.
    unsafe {
        signal(Signal::SIGINT, SigHandler::SigIgn).context("signal(SIGINT)")?;
        signal(Signal::SIGQUIT, SigHandler::SigIgn).context("signal(SIGQUIT)")?;
    }

    // SAFETY: this program is single-threaded, so the child may do anything after fork(2).
    match unsafe { fork() }.context("fork(2) failed")? {
        ForkResult::Child => child(args, &rootfs),
        ForkResult::Parent { child } => wait_for(child),
    }
}
// ANCHOR_END: run

#[cfg(not(target_os = "linux"))]
fn run(_: &RunArgs) -> Result<i32> {
    cfs_support::not_linux()
}

// ANCHOR: child
/// Runs in the forked child, inside the new namespaces: finish the container, then exec.
#[cfg(target_os = "linux")]
fn child(args: &RunArgs, rootfs: &std::path::Path) -> ! {
    use nix::mount::{mount, MsFlags};
    use nix::unistd::{chdir, chroot, sethostname};

    // Only our UTS namespace's copy of the hostname changes (uts_namespaces(7)).
    if let Err(err) = sethostname(&args.hostname) {
        fail(&format!("sethostname({:?}) failed: {err}", args.hostname));
    }

    // ANCHOR: private
    // ANCHOR: ex_private
    // Our mount namespace started as a copy of the host's, with the same propagation: where
    // `/` is shared (systemd makes it so), a mount here would appear on the host too. Make
    // every mount private, recursively, before mounting anything (mount_namespaces(7)).
    let none: Option<&str> = None;
    if let Err(err) = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none) {
        fail(&format!(
            "making / private (mount MS_REC|MS_PRIVATE) failed: {err}"
        ));
    }
    // ANCHOR_END: ex_private
    // ANCHOR_END: private

    // ANCHOR: chroot
    // ANCHOR: ex_chroot
    // From now on `/` means the root filesystem. chroot(2) does not change the current
    // directory, so go to the new `/` as well, or `..` would still lead to the host.
    if let Err(err) = chroot(rootfs).and_then(|()| chdir("/")) {
        fail(&format!("chroot({}) failed: {err}", rootfs.display()));
    }
    // ANCHOR_END: ex_chroot
    // ANCHOR_END: chroot

    exec(&args.cmd)
}
// ANCHOR_END: child

// ANCHOR: exec
/// Replaces the child with the user's command (execvp(3) searches PATH).
#[cfg(target_os = "linux")]
fn exec(cmd: &[String]) -> ! {
    use nix::errno::Errno;
    use nix::sys::prctl::set_pdeathsig;
    use nix::sys::signal::{signal, SigHandler, Signal};
    use std::ffi::CString;

    // Undo what the runtime ignored: dispositions set to "ignore" survive execve(2).
    // SAFETY: restoring the default disposition installs no handler.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigDfl);
        let _ = signal(Signal::SIGQUIT, SigHandler::SigDfl);
    }
    // If the runtime dies, take the container down with it instead of leaving it orphaned
    // (PR_SET_PDEATHSIG, prctl(2)).
    if let Err(err) = set_pdeathsig(Signal::SIGKILL) {
        fail(&format!("prctl(PR_SET_PDEATHSIG) failed: {err}"));
    }

    // Arguments come from argv, which cannot hold NUL bytes, so CString::new cannot fail.
    let argv: Vec<CString> = cmd
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).expect("argv strings contain no NUL"))
        .collect();
    let err = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
    // Only reached when exec failed. 127 and 126 are what shells (and docker) use.
    let status = match err {
        Errno::ENOENT | Errno::ENOTDIR => 127,
        _ => 126,
    };
    let why = match status {
        127 => "command not found",
        _ => "cannot execute it",
    };
    eprintln!("{NAME}: {}: {why} ({err})", cmd[0]);
    std::process::exit(status)
}
// ANCHOR_END: exec

/// Setup in the child failed before exec: report it as a runtime error.
#[cfg(target_os = "linux")]
fn fail(message: &str) -> ! {
    eprintln!("{NAME}: error: {message}");
    std::process::exit(125)
}

// ANCHOR: wait
/// Waits for the container's process and turns how it ended into our exit status.
#[cfg(target_os = "linux")]
fn wait_for(child: nix::unistd::Pid) -> Result<i32> {
    use anyhow::Context;
    use nix::errno::Errno;
    use nix::sys::wait::{waitpid, WaitStatus};

    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(err) => return Err(err).context("waitpid(2) failed"),
        }
    }
}
// ANCHOR_END: wait

/// HOST_NAME_MAX is 64 bytes on Linux (gethostname(2)).
fn parse_hostname(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "a hostname must be 1 to 64 bytes long, this one is {} bytes",
            name.len()
        ));
    }
    Ok(name.to_string())
}
