//! The container's first process: how it is created (clone(2) straight into the new
//! namespaces, no re-exec of the runtime) and what it does before execve(2) ([`init`]).
//!
//! Everything the child needs is computed *before* the clone ([`InitConfig`]): strings are
//! already C strings, the mount plan is built, the seccomp filter compiled. The child only
//! makes system calls, which keeps the hot path short and the failure modes few.

use crate::channel::{Channel, Message};
use crate::rootfs::MountOp;
use crate::security::CapSets;
use anyhow::{anyhow, bail, Context, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// Where the container's stdin/stdout/stderr come from.
#[derive(Debug)]
pub enum Stdio {
    /// The runtime's own 0, 1, 2 (foreground without a terminal: byte-exact pipes).
    Inherit,
    /// A pty slave: becomes the controlling terminal and 0, 1, 2.
    Pty(RawFd),
    /// Explicit descriptors (detached: /dev/null and the log file).
    Fds {
        stdin: RawFd,
        stdout: RawFd,
        stderr: RawFd,
    },
}

/// What the child does, prepared by the parent.
pub struct InitConfig {
    pub hostname: Option<CString>,
    pub plan: Vec<MountOp>,
    pub new_cgroup_ns: bool,
    pub new_net_ns: bool,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub cwd: PathBuf,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The container's PATH, for finding argv[0] (not the runtime's PATH).
    pub path: Vec<Vec<u8>>,
    pub caps: CapSets,
    /// The spec's rlimits (`process.rlimits`), set before the capabilities are dropped.
    pub rlimits: Vec<(nix::sys::resource::Resource, u64, u64)>,
    pub no_new_privs: bool,
    pub seccomp: Vec<seccompiler::BpfProgram>,
    pub stdio: Stdio,
    /// Kill the container if the runtime dies (foreground runs).
    pub die_with_parent: bool,
    /// `--network bridge`: the address and gateway to give `eth0` (set by the caller).
    pub bridge: Option<crate::network::Attachment>,
    /// In a new user namespace: become root inside (the mapped id) before the setup.
    pub new_user_ns: bool,
    /// /proc/PID/setgroups is `deny` (rootless single-id map): setgroups(2) must be skipped.
    pub setgroups_denied: bool,
    /// The cgroup files (v1 `tasks`, v2 `cgroup.procs`) the child writes `0` into to join
    /// its cgroup, opened by the parent before clone ([`crate::cgroups::ContainerCgroup::join_files`]).
    pub cgroup_join: Vec<RawFd>,
    /// Wait for the parent's `Proceed` (sync 1) before the setup: only when the parent has
    /// work on the child's behalf first (user id maps, the veth pair).
    pub wait_for_parent: bool,
    /// OCI `create`: an O_PATH descriptor of the start FIFO. After the whole setup the child
    /// reports `Created` and blocks opening it for writing until `final start` opens it for
    /// reading ([`crate::oci`]).
    pub start_gate: Option<RawFd>,
}

/// The setrlimit(2) resource for an OCI rlimit type.
fn resource(typ: oci_spec::runtime::PosixRlimitType) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource as R;
    use oci_spec::runtime::PosixRlimitType as T;
    match typ {
        T::RlimitCpu => R::RLIMIT_CPU,
        T::RlimitFsize => R::RLIMIT_FSIZE,
        T::RlimitData => R::RLIMIT_DATA,
        T::RlimitStack => R::RLIMIT_STACK,
        T::RlimitCore => R::RLIMIT_CORE,
        T::RlimitRss => R::RLIMIT_RSS,
        T::RlimitNproc => R::RLIMIT_NPROC,
        T::RlimitNofile => R::RLIMIT_NOFILE,
        T::RlimitMemlock => R::RLIMIT_MEMLOCK,
        T::RlimitAs => R::RLIMIT_AS,
        T::RlimitLocks => R::RLIMIT_LOCKS,
        T::RlimitSigpending => R::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        T::RlimitNice => R::RLIMIT_NICE,
        T::RlimitRtprio => R::RLIMIT_RTPRIO,
        T::RlimitRttime => R::RLIMIT_RTTIME,
    }
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{what} contains a NUL byte: {s:?}"))
}

// ANCHOR: clone_flags
/// The namespaces to clone into. The cgroup namespace is *not* among them: it is unshared
/// by the child once it sits in its own cgroup, so that its cgroup root is the
/// container's cgroup and not the runtime's (`man 7 cgroup_namespaces`).
pub fn clone_flags(spec: &Spec) -> (CloneFlags, bool) {
    let mut flags = CloneFlags::empty();
    let mut cgroup = false;
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        if ns.path().is_some() {
            continue; // joining an existing namespace: issue 6 (--network host) and OCI.
        }
        match ns.typ() {
            LinuxNamespaceType::Pid => flags |= CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Network => flags |= CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => flags |= CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => flags |= CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Mount => flags |= CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::User => flags |= CloneFlags::CLONE_NEWUSER,
            LinuxNamespaceType::Cgroup => cgroup = true,
            LinuxNamespaceType::Time => {}
        }
    }
    (flags, cgroup)
}
// ANCHOR_END: clone_flags

impl InitConfig {
    pub fn from_spec(
        spec: &Spec,
        plan: Vec<MountOp>,
        stdio: Stdio,
        die_with_parent: bool,
    ) -> Result<InitConfig> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| anyhow!("the spec has no process"))?;
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            bail!("the spec's process has no args: nothing to run");
        }
        let argv = args
            .iter()
            .map(|a| cstring(a, "an argument"))
            .collect::<Result<Vec<_>>>()?;
        let env = process.env().clone().unwrap_or_default();
        let envp = env
            .iter()
            .map(|e| cstring(e, "an environment variable"))
            .collect::<Result<Vec<_>>>()?;
        let path_var = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(crate::spec::DEFAULT_PATH);
        let path = path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| d.as_bytes().to_vec())
            .collect();
        let (flags, new_cgroup_ns) = clone_flags(spec);
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(profile) => crate::security::compile_seccomp(profile)?,
            None => Vec::new(),
        };
        let user = process.user();
        Ok(InitConfig {
            hostname: match spec.hostname() {
                Some(h) if flags.contains(CloneFlags::CLONE_NEWUTS) => {
                    Some(cstring(h, "the hostname")?)
                }
                Some(_) => bail!("a hostname requires the UTS namespace"),
                None => None,
            },
            plan,
            new_cgroup_ns,
            new_net_ns: flags.contains(CloneFlags::CLONE_NEWNET),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            cwd: process.cwd().clone(),
            argv,
            envp,
            path,
            caps: CapSets::from_spec(process.capabilities().as_ref())?,
            rlimits: process
                .rlimits()
                .iter()
                .flatten()
                .map(|r| (resource(r.typ()), r.soft(), r.hard()))
                .collect(),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp,
            stdio,
            die_with_parent,
            bridge: None,
            new_user_ns: flags.contains(CloneFlags::CLONE_NEWUSER),
            setgroups_denied: false,
            cgroup_join: Vec::new(),
            wait_for_parent: false,
            start_gate: None,
        })
    }
}

// ANCHOR: clone_into
/// clone(2) like fork(2) (the child runs on a copy of our stack and returns here) but into
/// new namespaces. With `cgroup_fd` (cgroup v2), clone3(2)'s CLONE_INTO_CGROUP starts the
/// child directly in its cgroup; returns whether that worked, so the caller attaches
/// otherwise.
///
/// # Safety
/// The caller must be single-threaded (as after fork(2), only async-signal-safe work is
/// guaranteed in the child of a multi-threaded process).
pub unsafe fn clone_into(
    flags: CloneFlags,
    cgroup_fd: Option<RawFd>,
) -> Result<(Option<Pid>, bool)> {
    let exit_signal = libc::SIGCHLD as u64;
    if let Some(fd) = cgroup_fd {
        // struct clone_args (`man 2 clone3`), the CLONE_ARGS_SIZE_VER2 layout.
        let mut args = [0u64; 11];
        args[0] = flags.bits() as u64 | 0x2_0000_0000; // CLONE_INTO_CGROUP
        args[4] = exit_signal;
        args[10] = fd as u64;
        // SAFETY: args is a valid clone_args of the given size; stack 0 = fork semantics.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                args.as_mut_ptr(),
                std::mem::size_of_val(&args),
            )
        };
        match rc {
            0 => return Ok((None, true)),
            pid if pid > 0 => return Ok((Some(Pid::from_raw(pid as i32)), true)),
            _ => {} // ENOSYS/E2BIG/EINVAL on older kernels: fall back to clone + attach.
        }
    }
    // SAFETY: raw clone with a NULL stack behaves like fork(2) in the child.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags.bits() as u64 | exit_signal,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match rc {
        0 => Ok((None, false)),
        pid if pid > 0 => Ok((Some(Pid::from_raw(pid as i32)), false)),
        _ => {
            let err = std::io::Error::last_os_error();
            // EPERM/EACCES/ENOSPC with CLONE_NEWUSER: a policy (AppArmor, a sysctl) or the
            // max_user_namespaces limit refused the user namespace (`man 2 clone`).
            let userns_refused = flags.contains(CloneFlags::CLONE_NEWUSER)
                && matches!(
                    err.raw_os_error(),
                    Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOSPC)
                );
            Err(err).with_context(|| {
                if userns_refused {
                    format!(
                        "clone({flags:?}) failed: this system refused to create a user namespace: {}",
                        crate::userns::refused()
                    )
                } else {
                    format!(
                        "clone({flags:?}) failed; `final doctor` checks that namespaces can be created"
                    )
                }
            })
        }
    }
}
// ANCHOR_END: clone_into

// ANCHOR: init
/// The child's life: set the container up, then exec. Never returns.
pub fn init(cfg: &InitConfig, chan: &Channel, in_cgroup: bool) -> ! {
    exec_or_report(setup(cfg, chan, in_cgroup), cfg, chan)
}

/// After the setup: exec the command, or tell the parent why not (sync 2) and exit with
/// docker's status (125 setup, 126 not executable, 127 not found).
fn exec_or_report(setup: Result<()>, cfg: &InitConfig, chan: &Channel) -> ! {
    let setup = setup.and_then(|()| match cfg.start_gate {
        // A command that cannot be found fails `create` itself (as with runc), not `start`.
        Some(gate) if command_found(cfg) => wait_for_start(gate, chan),
        _ => Ok(()),
    });
    let (code, message) = match setup {
        Ok(()) => exec(cfg),
        Err(err) => (125, format!("{err:#}")),
    };
    let _ = chan.send(&Message::Failed { code, message });
    // SAFETY: _exit(2) is always safe; no destructors or atexit handlers in the child.
    unsafe { libc::_exit(code) }
}
// ANCHOR_END: init

// ANCHOR: start_gate
/// OCI `create`: tell the parent the container is created, then block until `final start`
/// opens the FIFO for reading. The FIFO was opened O_PATH on the host before pivot_root; its
/// `/proc/self/fd` link reopens it for writing from inside (the open(2) of a FIFO blocks until
/// the other end is opened, `man 7 fifo`).
fn wait_for_start(gate: RawFd, chan: &Channel) -> Result<()> {
    // Everything but stdio, the FIFO and the sync socket is closed now rather than at
    // execve: the wait may be long, and `final create` returns only when the last copy of
    // its report pipe (inherited through clone) is gone.
    let keep = {
        let mut k = [gate, chan.raw()];
        k.sort_unstable();
        k
    };
    let mut from = 3;
    for fd in keep.into_iter().chain([i32::MAX]) {
        if fd > from {
            // SAFETY: closes descriptors only; nothing in this process uses the others.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, (fd - 1) as u32, 0) };
        }
        from = fd.saturating_add(1);
    }
    chan.send(&Message::Created)?;
    let path = format!("/proc/self/fd/{gate}");
    let fifo = nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context("cannot open the start FIFO")?;
    nix::unistd::write(&fifo, b"0").context("cannot write to the start FIFO")?;
    Ok(())
}
// ANCHOR_END: start_gate

/// Is there something to execute under argv[0] (a path, or a name on the container's PATH)?
fn command_found(cfg: &InitConfig) -> bool {
    let name = cfg.argv[0].as_bytes();
    let executable = |path: &[u8]| {
        CString::new(path).is_ok_and(|p| {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::access(p.as_ptr(), libc::X_OK) == 0 }
        })
    };
    if name.contains(&b'/') {
        return executable(name);
    }
    cfg.path.iter().any(|dir| {
        let mut full = dir.clone();
        full.push(b'/');
        full.extend_from_slice(name);
        executable(&full)
    })
}

/// For `final exec`: the caller already joined the container; finish and exec.
pub fn finish_and_exec(cfg: &InitConfig, chan: &Channel) -> ! {
    exec_or_report(finish(cfg, chan), cfg, chan)
}

// ANCHOR: setup
fn setup(cfg: &InitConfig, chan: &Channel, in_cgroup: bool) -> Result<()> {
    // Kill the container if the runtime dies during the setup (set again after setuid,
    // which clears it; `finish` also checks the runtime did not die before this).
    if cfg.die_with_parent {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .context("prctl(PR_SET_PDEATHSIG) failed")?;
    }
    // Join our cgroup first, before any work is charged to the runtime's cgroup (and so
    // that the cgroup namespace below is rooted there): write 0 ("this thread") into the
    // files the parent opened. We are single-threaded, so on v1 `tasks` moves the whole
    // process without the kernel's global threadgroup lock (see cgroups.rs). On v2
    // clone3(CLONE_INTO_CGROUP) already started us there.
    if !in_cgroup {
        for fd in &cfg.cgroup_join {
            crate::cgroups::join(*fd).context("cannot join the container's cgroup")?;
        }
    }
    // sync 1: only when the parent has work for us first (id maps, veth); otherwise the
    // setup runs while the parent goes on with its own.
    if cfg.wait_for_parent {
        match chan.recv()? {
            Some(Message::Proceed) => {}
            _ => bail!("the runtime went away before the container started"),
        }
    }
    // ANCHOR: become_root
    if cfg.new_user_ns {
        // The parent wrote our uid/gid maps before sync 1. Become root *inside* now, so
        // that what we create (mount points, overlay copy-ups) belongs to the mapped root
        // and not to an unmapped id (root's --userns: we were host root, unmapped here).
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .context("setresgid(0) in the user namespace failed: is gid 0 mapped?")?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .context("setresuid(0) in the user namespace failed: is uid 0 mapped?")?;
    }
    // ANCHOR_END: become_root
    // A session of our own: the container is not in the runtime's process group, so a
    // terminal's Ctrl-C reaches it only through the runtime (or its own pty).
    nix::unistd::setsid().context("setsid failed")?;
    if cfg.new_cgroup_ns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .context("unshare(CLONE_NEWCGROUP) failed")?;
    }
    if let Some(h) = &cfg.hostname {
        nix::unistd::sethostname(h.to_str().unwrap_or_default()).context("sethostname failed")?;
    }
    if cfg.new_net_ns {
        crate::network::loopback_up()?;
    }
    if let Some(att) = &cfg.bridge {
        crate::network::configure_inside(att)?;
    }
    // Not dumpable: until execve, /proc/1/exe (this runtime's binary on the host) and our
    // memory cannot be opened by anything in the container (`man 2 prctl`). execve resets it.
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE) failed")?;

    // umask 0 so device nodes and mount points get exactly the modes we ask for.
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    crate::rootfs::execute(&cfg.plan)?;
    nix::sys::stat::umask(old_umask);

    finish(cfg, chan)
}
// ANCHOR_END: setup

/// The part shared by a container's first process and `final exec`: stdio, working
/// directory, credentials, capabilities, fds, signals, no_new_privs, seccomp.
pub fn finish(cfg: &InitConfig, chan: &Channel) -> Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    match cfg.stdio {
        Stdio::Inherit => {}
        Stdio::Pty(slave) => {
            // SAFETY: TIOCSCTTY on a valid tty fd in a new session makes it our terminal.
            if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
                return Err(std::io::Error::last_os_error()).context("ioctl(TIOCSCTTY) failed");
            }
            dup_to_stdio(slave, slave, slave)?;
        }
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => dup_to_stdio(stdin, stdout, stderr)?,
    }

    // The working directory must exist (created as docker does) and be a directory.
    match std::fs::metadata(&cfg.cwd) {
        Ok(m) if !m.is_dir() => bail!(
            "the working directory {} is not a directory inside the container\nfix: pass a directory to --workdir",
            cfg.cwd.display()
        ),
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(&cfg.cwd)
            .with_context(|| format!("cannot create the working directory {}", cfg.cwd.display()))?,
    }

    // ANCHOR: privileges
    // Resource limits first: raising a hard limit needs CAP_SYS_RESOURCE (in the initial
    // user namespace, so never rootless), which is about to go (`man 2 setrlimit`).
    for &(resource, soft, hard) in &cfg.rlimits {
        nix::sys::resource::setrlimit(resource, soft, hard).with_context(|| {
            let show = |v: u64| match v {
                u64::MAX => "unlimited".to_string(),
                v => v.to_string(),
            };
            format!(
                "cannot set {resource:?} to {}:{} (raising a hard limit above the runtime's needs root)",
                show(soft),
                show(hard)
            )
        })?;
    }
    cfg.caps.drop_bounding()?;
    let gids: Vec<Gid> = cfg
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // ANCHOR: setgroups
    // With setgroups denied (user_namespaces(7)) the process keeps the user's own groups,
    // which is the point: dropping them could grant access on the host.
    if !cfg.setgroups_denied {
        setgroups(&gids).context("setgroups failed")?;
    } else if !gids.is_empty() {
        bail!("supplementary groups cannot be set in a rootless container without newgidmap (setgroups is denied)\nfix: apt install uidmap and give your user a range in /etc/subgid");
    }
    // ANCHOR_END: setgroups
    setgid(Gid::from_raw(cfg.gid)).with_context(|| format!("setgid({}) failed", cfg.gid))?;
    setuid(Uid::from_raw(cfg.uid)).with_context(|| format!("setuid({}) failed", cfg.uid))?;
    nix::unistd::chdir(&cfg.cwd).with_context(|| {
        format!(
            "cannot enter the working directory {} as uid {}",
            cfg.cwd.display(),
            cfg.uid
        )
    })?;
    cfg.caps.apply()?;
    if cfg.die_with_parent {
        // After setuid: a change of credentials clears the parent-death signal.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .context("prctl(PR_SET_PDEATHSIG) failed")?;
        // Did the runtime die before that? Its end of the sync socket is then closed.
        if chan.peer_gone() {
            bail!("the runtime went away before the container started");
        }
    }

    // Only 0, 1, 2 may reach the container: everything else (the sync socket included) is
    // closed at execve. close_range(2) with CLOSE_RANGE_CLOEXEC keeps the socket usable for
    // reporting an exec failure.
    // SAFETY: marks descriptors close-on-exec; touches no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        mark_cloexec_slow()?;
    }

    // Signals blocked or ignored by the runtime would stay so across execve.
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )?;
    for sig in [
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGTTOU,
        libc::SIGTTIN,
    ] {
        // SAFETY: restoring the default disposition installs no handler.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }

    if cfg.no_new_privs {
        crate::security::set_no_new_privs()?;
    }
    // Last: from here on, only the allowed system calls work.
    crate::security::load_seccomp(&cfg.seccomp)?;
    // ANCHOR_END: privileges
    Ok(())
}

fn dup_to_stdio(stdin: RawFd, stdout: RawFd, stderr: RawFd) -> Result<()> {
    for (from, to) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
        // SAFETY: dup2 on descriptors we own.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup2 onto stdio failed");
        }
    }
    Ok(())
}

/// Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: walk /proc/self/fd instead.
fn mark_cloexec_slow() -> Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context("cannot list /proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: sets a flag on a descriptor; a stale one just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// execve(2) the command, searching the *container's* PATH. Returns only on failure, with
/// the exit status docker uses: 127 not found, 126 found but not executable.
pub fn exec(cfg: &InitConfig) -> (i32, String) {
    let name = cfg.argv[0].as_bytes();
    let mut argv: Vec<*const libc::c_char> = cfg.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = cfg.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let shown = String::from_utf8_lossy(name).into_owned();

    let try_exec = |path: &CString| -> std::io::Error {
        // SAFETY: NUL-terminated argv/envp arrays of valid C strings.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        std::io::Error::last_os_error()
    };
    // ANCHOR: exec_verdict
    let verdict = |err: &std::io::Error| -> (i32, String) {
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => (
                127,
                format!("{shown}: no such file or directory in the container"),
            ),
            Some(libc::EACCES) => (126, format!("{shown}: permission denied (not executable)")),
            Some(libc::ENOEXEC) => (
                126,
                format!("{shown}: exec format error (not a program or script with #!)"),
            ),
            _ => (126, format!("{shown}: cannot execute: {err}")),
        }
    };
    // ANCHOR_END: exec_verdict

    if name.contains(&b'/') {
        return verdict(&try_exec(&cfg.argv[0]));
    }
    let mut denied = None;
    for dir in &cfg.path {
        let mut full = dir.clone();
        full.push(b'/');
        full.extend_from_slice(name);
        let Ok(full) = CString::new(full) else {
            continue;
        };
        // Look before leaping: access(F_OK) fails with ENOENT/ENOTDIR exactly where
        // execve would, at a fraction of the cost of a failed execve.
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::access(full.as_ptr(), libc::F_OK) } != 0 {
            let err = std::io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
                continue;
            }
        }
        let err = try_exec(&full);
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => continue,
            _ => denied = Some(err),
        }
    }
    match denied {
        Some(err) => verdict(&err),
        None => (
            127,
            format!("{shown}: command not found in the container's PATH"),
        ),
    }
}
