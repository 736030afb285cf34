//! # Step 02: PID 1 (the PID namespace)
//!
//! Step 01 gave the container its own hostname. Now it gets its own process numbers: in a new
//! PID namespace the first process is PID 1, and it can only see and signal processes of its
//! own namespace. Unlike the other namespaces, `unshare(CLONE_NEWPID)` does not move the caller:
//! it decides where the caller's *next child* is born, which is why every step forks.
//!
//! The shape of every step: the runtime (this process) creates the namespaces, forks a child,
//! the child finishes setting up the container and `exec`s the user's command, and the runtime
//! waits for it and exits with its status.
//!
//! PID 1 is special (pid_namespaces(7)): when it exits, the kernel kills everything else in the
//! namespace, and it receives only the signals it has installed a handler for. A `sleep` that
//! is PID 1 ignores Ctrl-C, exactly as in `docker run` without `--init`.
//!
//! Man pages: namespaces(7), pid_namespaces(7), unshare(2), fork(2), execvp(3), waitpid(2),
//! prctl(2).
//!
//! Try it: `cargo run -p step02-pid -- run /bin/sh -c 'echo "my PID is $$"'`

use anyhow::Result;
use clap::Parser;

/// This program's name, for messages.
const NAME: &str = env!("CARGO_BIN_NAME");

// ANCHOR: cli
/// Step 02: run a command as PID 1 of new UTS and PID namespaces.
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

    // ANCHOR: namespaces
    // The namespaces this container gets. unshare(2) moves *this* process into the new UTS
    // namespace; for CLONE_NEWPID it is our next child that becomes PID 1 of the new one.
    // ANCHOR: ex_pid_namespace
    let namespaces = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID;
    unshare(namespaces).context("unshare(CLONE_NEWUTS | CLONE_NEWPID) failed")?;
    // ANCHOR_END: ex_pid_namespace
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
        ForkResult::Child => child(args),
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
fn child(args: &RunArgs) -> ! {
    use nix::unistd::sethostname;

    // Only our UTS namespace's copy of the hostname changes (uts_namespaces(7)).
    if let Err(err) = sethostname(&args.hostname) {
        fail(&format!("sethostname({:?}) failed: {err}", args.hostname));
    }

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
