//! # Step 05: limits (cgroups)
//!
//! Namespaces decide what the container can *see*; control groups decide how much it can
//! *use*. The runtime creates a cgroup, writes the limits into it (`--pids-limit`, `--memory`,
//! `--cpus`), and the container's first process joins it before it runs anything, so that it
//! and every process it starts are counted and limited. A fork bomb hits `pids.max`; a memory
//! hog is killed by the kernel's OOM killer (we report exit status 137 and say why).
//!
//! Two cgroup layouts exist (cgroups(7)): v1 has one tree per controller
//! (/sys/fs/cgroup/pids/..., /sys/fs/cgroup/memory/...), v2 a single tree with every
//! controller's files in one directory. Most distributions now mount pure v2; some hosts are
//! v1 or "hybrid". The cgroups-rs crate detects which one this host has, so this program
//! works on all of them. The cgroup is removed when the container ends, on every path.
//!
//! The shape of every step: the runtime (this process) creates the namespaces, forks a child,
//! the child finishes setting up the container and `exec`s the user's command, and the runtime
//! waits for it and exits with its status.
//!
//! PID 1 is special (pid_namespaces(7)): when it exits, the kernel kills everything else in the
//! namespace, and it receives only the signals it has installed a handler for. A `sleep` that
//! is PID 1 ignores Ctrl-C, exactly as in `docker run` without `--init`.
//!
//! Man pages: cgroups(7), the kernel's admin-guide/cgroup-v2.rst, proc(5), pid_namespaces(7),
//! mount(2), mount_namespaces(7), chroot(2), namespaces(7), unshare(2), fork(2), execvp(3),
//! waitpid(2), prctl(2), sigaction(2).
//!
//! Try it: `cargo run -p step05-cgroups -- run --memory 32m --pids-limit 10 /bin/sh`

use anyhow::Result;
use clap::Parser;

/// This program's name, for messages.
const NAME: &str = env!("CARGO_BIN_NAME");

// ANCHOR: cli
/// Step 05: run a command in new namespaces, chrooted, with its own /proc, under cgroup limits.
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

    /// Maximum number of processes (and threads) in the container (pids.max).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pids_limit: Option<i64>,

    /// Memory limit, e.g. 64m or 1g (memory.max, or memory.limit_in_bytes on cgroup v1).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<i64>,

    /// CPU time limit in CPUs, e.g. 0.5 or 2 (cpu.max, or the CFS quota on cgroup v1).
    #[arg(long, value_name = "FLOAT", value_parser = parse_cpus)]
    cpus: Option<f64>,

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

    // ANCHOR: create_cgroup
    // The container's cgroup, with its limits. From here on, whatever happens (an error, the
    // container's end, a SIGTERM to us), dropping `cgroup` removes it again.
    let cgroup = ContainerCgroup::create(args)?;
    // ANCHOR_END: create_cgroup

    // ANCHOR: namespaces
    // The namespaces this container gets. unshare(2) moves *this* process into the new UTS
    // and mount namespaces; for CLONE_NEWPID it is our next child that becomes PID 1 of the
    // new one.
    let namespaces = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    unshare(namespaces).context("unshare(CLONE_NEWUTS | CLONE_NEWPID | CLONE_NEWNS) failed")?;
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
        ForkResult::Child => child(args, &rootfs, &cgroup),
        ForkResult::Parent { child } => {
            forward_termination_to(child)?;
            let status = wait_for(child)?;
            // ANCHOR: oom
            if status == 128 + Signal::SIGKILL as i32 && cgroup.oom_killed() {
                eprintln!("{NAME}: the container was killed by the kernel's OOM killer: it hit its memory limit (--memory)");
            }
            // ANCHOR_END: oom
            Ok(status)
        }
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
fn child(args: &RunArgs, rootfs: &std::path::Path, cgroup: &ContainerCgroup) -> ! {
    use nix::mount::{mount, MsFlags};
    use nix::unistd::{chdir, chroot, sethostname};

    // ANCHOR: join
    // ANCHOR: ex_join
    // Join the cgroup first, before anything else runs, and while the host's /sys/fs/cgroup
    // is still reachable (before chroot). Writing 0 means "the writer" (cgroups(7)); our PID
    // here is 1, which in the host's view would be init. On v1 we write to `tasks`, which
    // moves just this thread (all we have): `cgroup.procs` moves a whole thread group under
    // a global lock that can wait milliseconds for the kernel (an RCU grace period). v2
    // only has `cgroup.procs` for this.
    let me = cgroups_rs::CgroupPid::from(0);
    let joined = match cgroup.0.v2() {
        true => cgroup.0.add_task_by_tgid(me),
        false => cgroup.0.add_task(me),
    };
    if let Err(err) = joined {
        fail(&format!("joining cgroup {} failed: {err}", cgroup.0.path()));
    }
    // ANCHOR_END: ex_join
    // ANCHOR_END: join

    // Only our UTS namespace's copy of the hostname changes (uts_namespaces(7)).
    if let Err(err) = sethostname(&args.hostname) {
        fail(&format!("sethostname({:?}) failed: {err}", args.hostname));
    }

    // ANCHOR: private
    // Our mount namespace started as a copy of the host's, with the same propagation: where
    // `/` is shared (systemd makes it so), a mount here would appear on the host too. Make
    // every mount private, recursively, before mounting anything (mount_namespaces(7)).
    let none: Option<&str> = None;
    if let Err(err) = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none) {
        fail(&format!(
            "making / private (mount MS_REC|MS_PRIVATE) failed: {err}"
        ));
    }
    // ANCHOR_END: private

    // ANCHOR: chroot
    // From now on `/` means the root filesystem. chroot(2) does not change the current
    // directory, so go to the new `/` as well, or `..` would still lead to the host.
    if let Err(err) = chroot(rootfs).and_then(|()| chdir("/")) {
        fail(&format!("chroot({}) failed: {err}", rootfs.display()));
    }
    // ANCHOR_END: chroot

    // ANCHOR: proc
    // A fresh procfs, mounted by PID 1 of the new PID namespace, shows that namespace's
    // processes (pid_namespaces(7)). nosuid, nodev, noexec: nothing there should run.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(err) = mount(Some("proc"), "/proc", Some("proc"), flags, none) {
        fail(&format!(
            "mounting proc on /proc failed: {err} (the root filesystem needs an empty /proc directory)"
        ));
    }
    // ANCHOR_END: proc

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

// ANCHOR: cgroup
/// The container's cgroup. Dropping it removes the cgroup (rmdir), so that no path out of
/// `run` leaves one behind.
#[cfg(target_os = "linux")]
struct ContainerCgroup(cgroups_rs::Cgroup);

#[cfg(target_os = "linux")]
impl ContainerCgroup {
    fn create(args: &RunArgs) -> Result<Self> {
        use anyhow::Context;
        use cgroups_rs::{cpu::CpuController, hierarchies, memory::MemController};
        use cgroups_rs::{pid::PidController, Cgroup, MaxValue};

        // auto() looks at what is mounted on /sys/fs/cgroup: cgroup2 means pure v2, anything
        // else v1 (a "hybrid" host has v1 controllers plus an empty v2 tree; v1 is what counts).
        let hierarchy = hierarchies::auto();
        let v2 = hierarchy.v2();
        let name = format!("cfs-{NAME}-{}", std::process::id());
        let controllers = ["pids", "memory", "cpu"].map(String::from).to_vec();
        let cgroup = Cgroup::new_with_specified_controllers(hierarchy, &name, Some(controllers))
            .with_context(|| {
                format!(
                    "creating cgroup {name} under /sys/fs/cgroup failed (cgroup {}): the pids, \
                     memory and cpu controllers must be available (see `cat /proc/cgroups`, or \
                     /sys/fs/cgroup/cgroup.controllers on v2)",
                    if v2 { "v2" } else { "v1" }
                )
            })?;
        let cgroup = ContainerCgroup(cgroup);
        let cg = &cgroup.0;

        // ANCHOR: ex_limits
        if let Some(max) = args.pids_limit {
            let pids: &PidController = cg.controller_of().context("no pids controller")?;
            pids.set_pid_max(MaxValue::Value(max))
                .with_context(|| format!("setting pids.max to {max} in cgroup {name}"))?;
        }
        if let Some(bytes) = args.memory {
            let memory: &MemController = cg.controller_of().context("no memory controller")?;
            memory.set_limit(bytes).with_context(|| {
                format!("setting the memory limit to {bytes} bytes in cgroup {name}")
            })?;
            // No escaping the limit into swap: v1 limits memory+swap together (memsw), v2 limits
            // swap on its own. Without swap accounting the file does not exist and there is no
            // swap to limit, so a failure here changes nothing.
            let _ = memory.set_memswap_limit(if v2 { 0 } else { bytes });
        }
        if let Some(cpus) = args.cpus {
            let cpu: &CpuController = cg.controller_of().context("no cpu controller")?;
            // CFS bandwidth control: `quota` microseconds of CPU time per `period`.
            // 1.5 CPUs = 150 ms of CPU time every 100 ms.
            let period: u64 = 100_000;
            let quota = (cpus * period as f64).round() as i64;
            cpu.set_cfs_quota_and_period(Some(quota), Some(period))
                .with_context(|| {
                    format!("setting the CPU quota to {quota}/{period} in cgroup {name}")
                })?;
        }
        // ANCHOR_END: ex_limits
        Ok(cgroup)
    }

    /// Did the kernel's OOM killer kill a process in this cgroup?
    fn oom_killed(&self) -> bool {
        use cgroups_rs::memory::MemController;
        let Some(memory) = self.0.controller_of::<MemController>() else {
            return false;
        };
        if self.0.v2() {
            // v2: "oom_kill N" in memory.events.
            let events = std::path::Path::new(cgroups_rs::hierarchies::UNIFIED_MOUNTPOINT)
                .join(self.0.path())
                .join("memory.events");
            std::fs::read_to_string(events).is_ok_and(|text| {
                text.lines()
                    .filter_map(|line| line.strip_prefix("oom_kill "))
                    .any(|count| count.trim() != "0")
            })
        } else {
            // v1: "oom_kill N" in memory.oom_control.
            memory.memory_stat().oom_control.oom_kill > 0
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        // ANCHOR: ex_remove
        // rmdir(2) succeeds once no process is left in the cgroup; cgroups-rs retries briefly
        // while the kernel finishes tearing the last ones down.
        if let Err(err) = self.0.delete() {
            eprintln!(
                "{NAME}: warning: could not remove cgroup {}: {err}",
                self.0.path()
            );
        }
        // ANCHOR_END: ex_remove
    }
}
// ANCHOR_END: cgroup

// ANCHOR: termination
/// The container's PID, for the signal handler below.
#[cfg(target_os = "linux")]
static CONTAINER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Asked to terminate (SIGTERM, or SIGHUP when the terminal goes away), we kill the container
/// and carry on: the wait returns and the cgroup is removed as on any other path. (SIGTERM
/// itself would not do: PID 1 of a namespace ignores signals it has no handler for.)
#[cfg(target_os = "linux")]
fn forward_termination_to(container: nix::unistd::Pid) -> Result<()> {
    use anyhow::Context;
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    extern "C" fn kill_container(_: std::ffi::c_int) {
        let pid = CONTAINER.load(std::sync::atomic::Ordering::SeqCst);
        // kill(2) is async-signal-safe.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    CONTAINER.store(container.as_raw(), std::sync::atomic::Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(kill_container),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only reads an atomic and calls kill(2).
        unsafe { sigaction(signal, &action) }.with_context(|| format!("sigaction({signal})"))?;
    }
    Ok(())
}
// ANCHOR_END: termination

// ANCHOR: parse
/// Sizes as docker takes them: a whole number with an optional unit b, k, m or g.
fn parse_size(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => lower.split_at(at),
        None => (lower.as_str(), ""),
    };
    let scale: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit in {text:?}: use b, k, m or g, as in 64m or 1g"
            ))
        }
    };
    let number: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: use a number and a unit, as in 64m or 1g"))?;
    match number.checked_mul(scale) {
        Some(bytes) if bytes >= 1 << 20 => Ok(bytes),
        Some(_) => Err(format!(
            "{text:?} is too small: the limit must be at least 1m"
        )),
        None => Err(format!("{text:?} is too large")),
    }
}

/// A positive number of CPUs, at most the number this machine has.
fn parse_cpus(text: &str) -> Result<f64, String> {
    let cpus: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of CPUs: use e.g. 0.5 or 2"))?;
    let available = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if !(0.01..=available).contains(&cpus) {
        return Err(format!(
            "--cpus must be between 0.01 and {available} (the CPUs this machine has)"
        ));
    }
    Ok(cpus)
}
// ANCHOR_END: parse

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
