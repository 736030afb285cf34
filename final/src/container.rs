//! Container lifecycle: create-and-run from a spec, wait, and the operations on existing
//! containers (list, inspect, kill, stop, remove, exec, logs), with recovery of containers
//! whose runtime was killed.
//!
//! One process model for everything: the process that clones the container (the *monitor*)
//! waits for it, forwards signals, relays the terminal, records the exit and cleans up.
//! In the foreground the monitor is `final run` itself; with `--detach` it is a forked copy
//! in its own session (no re-exec), and `final run` returns once the container started.

use crate::cgroups::ContainerCgroup;
use crate::channel::{self, Message};
use crate::process::{self, InitConfig, Stdio};
use crate::rootfs::{self, RootLayer};
use crate::state::{self, Record, Status};
use crate::tty;
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ANCHOR: create_options
/// What is not part of the OCI spec: identity, metadata and how to attach.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// 32 hex digits; generated when empty.
    pub id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub detach: bool,
    pub auto_remove: bool,
    /// Give the container a pty (only when our stdin is a terminal).
    pub tty: bool,
    /// Put a private writable overlay over the spec's root (`final run`), instead of using
    /// the directory itself (an OCI bundle).
    pub overlay: bool,
    /// `--network`; with `Bridge`, the spec must have a new network namespace.
    pub network: crate::parse::Network,
    /// `-p`: published ports (bridge only).
    pub ports: Vec<crate::parse::Port>,
    /// OCI `create` ([`crate::oci`]): the bundle the spec came from. The command then waits,
    /// after the whole setup, until `start`; the container's stdio is the caller's, passed
    /// through as it is, and the id is not printed.
    pub bundle: Option<PathBuf>,
    /// OCI `--pid-file`: where to write the container's pid once it is created.
    pub pid_file: Option<PathBuf>,
}
// ANCHOR_END: create_options

// ANCHOR: status_code
/// Exit status of a command that ended by signal `n`: 128+n, as shells and docker.
pub fn status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}
// ANCHOR_END: status_code

/// Root, or a user who may create user namespaces (rootless mode, [`crate::userns`]).
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        if let Some(why) = crate::userns::unprivileged_blocked() {
            bail!("final runs rootless containers in a user namespace, and this system forbids that: {why}\nor run final as root (sudo)");
        }
    }
    Ok(())
}

/// The signals the monitor handles itself; blocked before clone (and unblocked in the child).
fn monitor_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    set
}

/// Undo what a failed or finished container left on the host: its network attachment, its
/// cgroup and writable layer (and, with `remove`, its record and name).
fn cleanup(rec: &Record, remove: bool) -> Result<()> {
    let id = rec.id.as_str();
    let net_result = match &rec.bridge {
        Some(att) => crate::network::release(id, att),
        None => Ok(()),
    };
    // A rootless container without a delegated cgroup has none (see `start`).
    let cg_result = match rec.cgroup.as_str() {
        "" => Ok(()),
        rel => ContainerCgroup::at(rel).destroy(),
    };
    let layer = state::container_data_dir(id);
    for sub in ["upper", "work"] {
        let _ = state::remove_tree(&layer.join(sub));
    }
    if remove {
        state::remove(rec)?;
    }
    cg_result.and(net_result)
}

// ANCHOR: run
/// `final run`: options → spec → [`create`].
pub fn run(mut opts: crate::spec::RunOptions, mut create_opts: CreateOptions) -> Result<i32> {
    if create_opts.id.is_empty() {
        create_opts.id = state::new_id();
    }
    if opts.hostname.is_empty() {
        opts.hostname = create_opts.id[..12].to_string();
    }
    let spec = crate::spec::build(&opts)?;
    create(spec, create_opts)
}
// ANCHOR_END: run

/// `final ps`'s table.
pub fn table(recs: &[Record]) -> String {
    let mut out = format!(
        "{:<12}  {:<20}  {:<24}  {:<20}  {}\n",
        "ID", "NAME", "STATUS", "CREATED", "COMMAND"
    );
    for r in recs {
        let status = match (r.status, r.exit_code) {
            (Status::Running, _) => "running".to_string(),
            (Status::Created, _) => "created".to_string(),
            (Status::Exited, Some(code)) if r.oom_killed => format!("exited ({code}, OOM)"),
            (Status::Exited, Some(code)) => format!("exited ({code})"),
            (Status::Exited, None) => "exited (unknown)".to_string(),
        };
        out += &format!(
            "{:<12}  {:<20}  {:<24}  {:<20}  {}\n",
            &r.id[..12],
            r.name,
            status,
            r.created,
            r.command.join(" ")
        );
    }
    out
}

// ANCHOR: create
/// Creates a container from `spec` and runs it; returns its exit status (foreground), or 0
/// once it started (detached). The single code path for every container.
pub fn create(spec: Spec, opts: CreateOptions) -> Result<i32> {
    require_root()?;
    let id = if opts.id.is_empty() {
        state::new_id()
    } else {
        opts.id.clone()
    };
    let name = opts.name.clone().unwrap_or_else(|| id[..12].to_string());
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| anyhow!("the spec has no root"))?;
    let image = root.path().clone();
    check_network(&spec, &opts)?;

    let state_root = state::root_dir();
    std::fs::create_dir_all(&state_root)
        .with_context(|| format!("cannot create the state directory {}", state_root.display()))?;
    check_own_dir(&state_root)?;
    state::claim_name(&name, &id)?;
    let mut rec = Record {
        id: id.clone(),
        name: name.clone(),
        labels: opts.labels.clone(),
        status: Status::Created,
        pid: None,
        pid_start: None,
        monitor_pid: std::process::id() as i32,
        monitor_start: state::process_start(std::process::id() as i32),
        created: state::now(),
        started: None,
        finished: None,
        exit_code: None,
        oom_killed: false,
        note: None,
        auto_remove: opts.auto_remove,
        detached: opts.detach,
        command: spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default(),
        image: image.clone(),
        cgroup: cgroup_path(&id, &spec),
        log: (opts.detach && opts.bundle.is_none())
            .then(|| state::container_data_dir(&id).join("container.log")),
        network: opts.network,
        bridge: None,
        config: None,
        bundle: opts.bundle.clone(),
    };
    if let Err(err) = state::create(&rec, &spec) {
        let _ = state::remove(&rec);
        return Err(err);
    }

    // From here on, every failure removes all traces of the container.
    let started = start(&spec, &opts, &mut rec, &image);
    match started {
        Ok(Started::Foreground(code)) => Ok(code),
        Ok(Started::DetachedParent) => Ok(0),
        Err(err) => {
            if let Err(clean) = cleanup(&rec, true) {
                return Err(err.context(format!("cleaning up also failed: {clean:#}")));
            }
            Err(err)
        }
    }
}
// ANCHOR_END: create

/// A rootless user's state directory must be its own and private (the /tmp fallback could
/// have been created by someone else first).
fn check_own_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return Ok(());
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    if meta.uid() != uid {
        bail!(
            "the state directory {} belongs to uid {}, not to you (uid {uid})\nfix: set XDG_RUNTIME_DIR (or CFS_FINAL_ROOT) to a directory of your own",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

/// `-p` and `--network bridge` need the spec's own network namespace.
fn check_network(spec: &Spec, opts: &CreateOptions) -> Result<()> {
    use crate::parse::Network;
    if !opts.ports.is_empty() && opts.network != Network::Bridge {
        bail!("-p/--publish needs --network bridge (with --network host the container's ports are the host's already; with none it has no address to forward to)\nfix: add --network bridge");
    }
    let new_netns = process::clone_flags(spec)
        .0
        .contains(nix::sched::CloneFlags::CLONE_NEWNET);
    if opts.network == Network::Bridge && !new_netns {
        bail!("--network bridge needs a new network namespace in the spec");
    }
    Ok(())
}

// ANCHOR: rootless_cgroup
/// Where the container's cgroup goes ([`crate::cgroups::relative_path`]): below the root of
/// each hierarchy for root; for a rootless user, below the cgroup v2 subtree delegated to
/// it (systemd's `user@UID.service`), or nowhere ("") if there is none, with a note when
/// limits were asked for rather than silently ignoring them.
fn cgroup_path(id: &str, spec: &Spec) -> String {
    if nix::unistd::geteuid().is_root() {
        return crate::cgroups::relative_path("", id);
    }
    match crate::cgroups::delegated() {
        Ok(base) => crate::cgroups::relative_path(&base, id),
        Err(why) => {
            let limited = spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .is_some_and(|r| r.memory().is_some() || r.cpu().is_some() || r.pids().is_some());
            if limited {
                eprintln!("final: note: --memory/--cpus/--pids-limit are not applied: a rootless container gets a cgroup only in a cgroup v2 subtree delegated to you, and {why}");
            }
            String::new()
        }
    }
}
// ANCHOR_END: rootless_cgroup

enum Started {
    Foreground(i32),
    DetachedParent,
}

/// A failure of the container's command itself (not found, not executable): the status
/// to exit with, after the message was printed.
#[derive(Debug)]
pub struct CommandFailed(pub i32);

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the container's command failed to start (status {})",
            self.0
        )
    }
}

impl std::error::Error for CommandFailed {}

fn start(spec: &Spec, opts: &CreateOptions, rec: &mut Record, image: &Path) -> Result<Started> {
    let id = rec.id.clone();
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let cg = match rec.cgroup.as_str() {
        "" => None,
        rel => Some(ContainerCgroup::create(rel, resources)?),
    };
    let mapping = crate::userns::from_spec(spec);

    // --network bridge: an address and the published ports, recorded before anything else
    // can fail so that every cleanup path releases them; resolv.conf and hosts to bind.
    let mut bridged_spec;
    let spec = if opts.network == crate::parse::Network::Bridge {
        let att = crate::network::prepare(&id, &opts.ports)?;
        rec.bridge = Some(att.clone());
        *rec = state::update(&id, |r| r.bridge = Some(att.clone()))?;
        let hostname = spec.hostname().clone().unwrap_or_default();
        let (resolv, hosts) =
            crate::network::write_etc_files(&state::container_dir(&id), &att, &hostname)?;
        bridged_spec = spec.clone();
        let mut mounts = bridged_spec.mounts().clone().unwrap_or_default();
        for (dest, source) in [("/etc/resolv.conf", resolv), ("/etc/hosts", hosts)] {
            // See spec.rs: no new mount points in the image's /etc in a user namespace.
            if mapping.is_some() && !image.join(&dest[1..]).exists() {
                continue;
            }
            mounts.push(
                oci_spec::runtime::MountBuilder::default()
                    .destination(dest)
                    .typ("bind")
                    .source(source)
                    .options(
                        ["rbind", "nosuid", "nodev", "noexec", "rw"]
                            .map(String::from)
                            .to_vec(),
                    )
                    .build()?,
            );
        }
        bridged_spec.set_mounts(Some(mounts));
        &bridged_spec
    } else {
        spec
    };

    let root_target = state::container_dir(&id).join("rootfs");
    std::fs::create_dir_all(&root_target)
        .with_context(|| format!("cannot create {}", root_target.display()))?;
    // The data directory holds the writable layer and the log of a detached container.
    let data = state::container_data_dir(&id);
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    // ANCHOR: layer
    let overlay = opts.overlay && overlay_available();
    if opts.overlay && !overlay {
        eprintln!(
            "final: note: overlayfs is not available, so the container writes straight into {} (`final doctor` says how to enable it)",
            image.display()
        );
    }
    let layer = if overlay {
        let data = state::container_data_dir(&id);
        let (upper, work) = (data.join("upper"), data.join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            // Root's --userns: overlay copies up with the credentials of its mounter, the
            // container's root, so the layer must belong to that root's host ids. (Rootless:
            // the user created it and is root inside already.)
            if let (Some((uid, gid)), true) = (
                mapping.as_ref().and_then(|m| m.outside_root()),
                nix::unistd::geteuid().is_root(),
            ) {
                nix::unistd::chown(d.as_path(), Some(uid.into()), Some(gid.into()))
                    .with_context(|| format!("cannot give {} to uid {uid}", d.display()))?;
            }
        }
        RootLayer::Overlay {
            lower: image.to_path_buf(),
            upper,
            work,
        }
    } else {
        RootLayer::Bind {
            source: image.to_path_buf(),
        }
    };
    // ANCHOR_END: layer

    // Detached: fork the monitor now; this process only waits to hear that the container
    // started (or why it did not), then returns.
    let mut report: Option<OwnedFd> = None;
    if opts.detach {
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // SAFETY: single-threaded; the child continues below as the monitor.
        match unsafe { nix::unistd::fork() }.context("fork of the monitor failed")? {
            nix::unistd::ForkResult::Parent { child } => {
                drop(write_end);
                return wait_for_detached(read_end, child, rec);
            }
            nix::unistd::ForkResult::Child => {
                drop(read_end);
                nix::unistd::setsid().ok();
                report = Some(write_end);
                state::update(&id, |r| {
                    r.monitor_pid = std::process::id() as i32;
                    r.monitor_start = state::process_start(r.monitor_pid);
                })?;
            }
        }
    }
    let result = monitor(
        spec,
        opts,
        rec,
        cg.as_ref(),
        layer,
        &root_target,
        &mut report,
    );
    if opts.detach {
        // The detached monitor: report a failure to `final run`, then end here.
        let code = match &result {
            Ok(_) => 0,
            Err(err) => {
                let code = err.downcast_ref::<CommandFailed>().map_or(125, |c| c.0);
                if let Some(fd) = report.take() {
                    // Still starting: `final run -d` is waiting for this.
                    let _ = nix::unistd::write(&fd, format!("{code} {err:#}").as_bytes());
                }
                let _ = cleanup(rec, true);
                code
            }
        };
        // SAFETY: the monitor process ends here without returning into main.
        unsafe { libc::_exit(code) }
    }
    result.map(Started::Foreground)
}

/// Can this kernel mount overlayfs (`/proc/filesystems` lists the loaded file systems; a
/// modular overlay is loaded on first mount, so try the module directory too)?
pub fn overlay_available() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("\toverlay"))
        || nix::sys::utsname::uname().is_ok_and(|u| {
            std::path::Path::new("/lib/modules")
                .join(u.release())
                .join("kernel/fs/overlayfs")
                .exists()
        })
}

/// `final run -d` after forking the monitor: wait for "started" (EOF) or an error.
fn wait_for_detached(read_end: OwnedFd, monitor: Pid, rec: &Record) -> Result<Started> {
    let mut msg = Vec::new();
    let mut file = std::fs::File::from(read_end);
    std::io::Read::read_to_end(&mut file, &mut msg)?;
    if msg.is_empty() {
        if rec.bundle.is_none() {
            println!("{}", rec.id);
        }
        return Ok(Started::DetachedParent);
    }
    let _ = waitpid(monitor, None);
    let text = String::from_utf8_lossy(&msg);
    let (code, message) = text.split_once(' ').unwrap_or(("125", &text));
    let code: i32 = code.parse().unwrap_or(125);
    if code != 125 {
        eprintln!("final: {message}");
        return Err(anyhow!(CommandFailed(code)));
    }
    // The monitor already cleaned up; make sure nothing is left either way.
    let _ = cleanup(rec, true);
    Err(anyhow!("{message}"))
}

/// Clones the container and waits for it. Runs in `final run` (foreground) or in the
/// detached monitor.
fn monitor(
    spec: &Spec,
    opts: &CreateOptions,
    rec: &mut Record,
    cg: Option<&ContainerCgroup>,
    layer: RootLayer,
    root_target: &Path,
    report: &mut Option<OwnedFd>,
) -> Result<i32> {
    let id = rec.id.clone();
    let mapping = crate::userns::from_spec(spec);
    let mapping = mapping.as_ref();
    let pty = if opts.tty && !opts.detach {
        Some(tty::open()?)
    } else {
        None
    };
    let _devnull;
    let _log;
    let stdio = if let Some(p) = &pty {
        Stdio::Pty(p.slave.as_raw_fd())
    } else if opts.detach && opts.bundle.is_none() {
        let null = std::fs::File::open("/dev/null")?;
        let log_path = rec
            .log
            .clone()
            .unwrap_or_else(|| state::container_data_dir(&id).join("container.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open the log file {}", log_path.display()))?;
        let stdio = Stdio::Fds {
            stdin: null.as_raw_fd(),
            stdout: log.as_raw_fd(),
            stderr: log.as_raw_fd(),
        };
        // The monitor's own stdio must not keep the caller's terminal or pipes open.
        for (fd, target) in [
            (null.as_raw_fd(), 0),
            (log.as_raw_fd(), 1),
            (log.as_raw_fd(), 2),
        ] {
            // SAFETY: dup2 on descriptors we own.
            unsafe { libc::dup2(fd, target) };
        }
        _devnull = null;
        _log = log;
        stdio
    } else {
        Stdio::Inherit
    };

    let plan = rootfs::plan(
        spec,
        layer,
        root_target,
        &id,
        pty.as_ref().map(|p| p.slave_path.as_path()),
    )?;
    let mut cfg = InitConfig::from_spec(spec, plan, stdio, !opts.detach)?;
    cfg.bridge = rec.bridge.clone();
    cfg.setgroups_denied = mapping.is_some_and(|m| m.setgroups_denied);
    // The child joins its cgroup itself (v1 `tasks`, see cgroups.rs) and waits for us only
    // when we have work to do on its behalf first.
    let join_files = match cg {
        Some(cg) => cg.join_files()?,
        None => Vec::new(),
    };
    cfg.cgroup_join = join_files.iter().map(|f| f.as_raw_fd()).collect();
    cfg.wait_for_parent = mapping.is_some() || rec.bridge.is_some();
    // OCI create: the FIFO the child will wait on, opened here (O_PATH) while the host's
    // state directory is still in its reach.
    let start_gate = match &opts.bundle {
        Some(_) => Some(crate::oci::make_start_fifo(&id)?),
        None => None,
    };
    cfg.start_gate = start_gate.as_ref().map(|f| f.as_raw_fd());
    let (flags, _) = process::clone_flags(spec);
    let (parent_chan, child_chan) = channel::pair()?;

    let signals = monitor_signals();
    let old_mask = signals.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let cgroup_dir = cg.and_then(|cg| cg.unified_dir()).and_then(|d| {
        nix::fcntl::open(
            &d,
            nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()
    });

    // SAFETY: the runtime is single-threaded.
    let (child, in_cgroup) =
        match unsafe { process::clone_into(flags, cgroup_dir.as_ref().map(|f| f.as_raw_fd())) } {
            Ok(r) => r,
            Err(e) => {
                let _ = old_mask.thread_set_mask();
                return Err(e);
            }
        };
    let Some(pid) = child else {
        drop(parent_chan);
        process::init(&cfg, &child_chan, in_cgroup)
    };
    drop(child_chan);
    drop(cgroup_dir);
    drop(join_files);
    drop(start_gate);
    let kill_child = || {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    };
    // ANCHOR: maps_and_veth
    // The child waits at sync 1 as the overflow user until its id maps exist.
    if let Some(m) = mapping {
        if let Err(err) = crate::userns::write_maps(pid.as_raw(), m) {
            kill_child();
            return Err(err.context(format!("cannot map the container's user ids (pid {pid})")));
        }
    }
    // The veth pair, with its container end created inside the child's network namespace;
    // the child configures that end itself after sync 1.
    if let Some(att) = &rec.bridge {
        if let Err(err) = crate::network::attach(pid.as_raw(), att) {
            kill_child();
            return Err(err);
        }
    }
    // ANCHOR_END: maps_and_veth
    // ANCHOR: sync
    // sync 1: the id maps and the veth exist; go ahead. (Without them the child did not
    // wait: it joined its cgroup itself and is setting up while we get here.)
    if cfg.wait_for_parent {
        if let Err(err) = parent_chan.send(&Message::Proceed) {
            kill_child();
            return Err(err);
        }
    }
    // While the child works: what the "running" record will say.
    let pid_start = state::process_start(pid.as_raw());
    // sync 2: EOF = the command was exec'd; otherwise why it was not. (OCI create: first
    // `Created`, then sync 2 once `start` let the child go on.)
    let mut message = parent_chan.recv();
    if let Ok(Some(Message::Created)) = message {
        let created = state::update(&id, |r| {
            r.pid = Some(pid.as_raw());
            r.pid_start = pid_start;
        })
        .and_then(|r| {
            if let Some(path) = &opts.pid_file {
                std::fs::write(path, pid.as_raw().to_string())
                    .with_context(|| format!("cannot write the pid file {}", path.display()))?;
            }
            Ok(r)
        });
        match created {
            Ok(r) => *rec = r,
            Err(err) => {
                kill_child();
                return Err(err);
            }
        }
        // `final create` returns now.
        drop(report.take());
        message = parent_chan.recv();
    }
    match message {
        Ok(None) => {}
        Ok(Some(Message::Failed { code, message })) => {
            let _ = waitpid(pid, None);
            let _ = old_mask.thread_set_mask();
            if code == 125 {
                bail!("{message}");
            }
            if !opts.detach {
                eprintln!("final: {message}");
            }
            return Err(anyhow!(CommandFailed(code)).context(message));
        }
        Ok(Some(other)) => {
            kill_child();
            bail!("unexpected message from the container: {other:?}");
        }
        Err(err) => {
            kill_child();
            return Err(err);
        }
    }
    drop(parent_chan);
    // ANCHOR_END: sync

    *rec = state::update(&id, |r| {
        r.status = Status::Running;
        r.pid = Some(pid.as_raw());
        r.pid_start = pid_start;
        r.started = Some(state::now());
    })?;
    // Tell `final run -d` that the container runs: close the pipe without a message.
    drop(report.take());

    let raw = pty.as_ref().and_then(|_| tty::raw_mode());
    let status = wait_loop(pid, &signals, pty.as_ref());
    drop(raw);
    let _ = old_mask.thread_set_mask();
    let status = status?;

    // ANCHOR: oom
    // As docker: OOM-killed if the kernel killed any process of the container for memory.
    let oom = cg.is_some_and(|cg| cg.oom_killed());
    let code = status_code(status).unwrap_or(125);
    let finished = state::update(&id, |r| {
        r.status = Status::Exited;
        r.exit_code = Some(code);
        r.oom_killed = oom;
        r.finished = Some(state::now());
    });
    let rec_now = finished.unwrap_or_else(|_| rec.clone());
    if oom && !opts.detach {
        eprintln!(
            "final: the container was killed by the kernel's OOM killer (memory limit reached)"
        );
    }
    // ANCHOR_END: oom
    cleanup(&rec_now, rec_now.auto_remove)?;
    Ok(code)
}

/// Waits for the container while forwarding signals and, with a pty, relaying bytes.
fn wait_loop(pid: Pid, signals: &SigSet, pty: Option<&tty::Pty>) -> Result<WaitStatus> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let stdin = std::io::stdin();
    let mut stdin_open = pty.is_some();
    let mut master_open = pty.is_some();
    if let Some(p) = pty {
        tty::copy_window_size(p.master.as_fd());
    }
    let mut buf = [0u8; 8192];
    loop {
        // A child may have exited before the signalfd existed: check first, then sleep.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                if let Some(p) = pty {
                    drain(p.master.as_fd(), &mut buf);
                }
                return Ok(s);
            }
            Ok(_) => {}
            Err(e) => return Err(e).context("waitpid on the container failed"),
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = pty {
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            if master_open {
                fds.push(PollFd::new(p.master.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll failed"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            // ANCHOR: forward
            while let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    continue;
                }
                if sig == libc::SIGWINCH {
                    if let Some(p) = pty {
                        tty::copy_window_size(p.master.as_fd());
                    }
                    continue;
                }
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = nix::sys::signal::kill(pid, s);
                }
            }
            // ANCHOR_END: forward
        }
        let mut i = 1;
        if let Some(p) = pty {
            if stdin_open {
                if ready[i] {
                    match nix::unistd::read(&stdin, &mut buf) {
                        Ok(0) | Err(_) => stdin_open = false,
                        Ok(n) => {
                            let _ = write_all(p.master.as_fd(), &buf[..n]);
                        }
                    }
                }
                i += 1;
            }
            if master_open && ready[i] {
                match nix::unistd::read(&p.master, &mut buf) {
                    Ok(0) | Err(_) => master_open = false,
                    Ok(n) => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                }
            }
        }
    }
}

fn write_all(fd: std::os::fd::BorrowedFd, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Output the container wrote just before it exited.
fn drain(master: std::os::fd::BorrowedFd, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut out = std::io::stdout().lock();
    while let Ok(n) = nix::unistd::read(master, buf) {
        if n == 0 {
            break;
        }
        let _ = out.write_all(&buf[..n]);
    }
    let _ = out.flush();
}

// ANCHOR: reconcile
/// Brings a record in line with reality when its runtime is gone (SIGKILLed, machine
/// crashed...): a dead container is marked exited with an unknown status and its cgroup and
/// layer removed (the record too with --rm); a live one stays running.
pub fn reconcile(id: &str) -> Result<Record> {
    let rec = state::load(id)?;
    if rec.status == Status::Exited || state::alive(rec.monitor_pid, rec.monitor_start) {
        return Ok(rec);
    }
    let container_alive = rec.pid.is_some_and(|p| state::alive(p, rec.pid_start));
    let rec = state::update(id, |r| {
        if container_alive {
            r.note = Some("its runtime was killed; the exit status will not be recorded".into());
        } else {
            r.status = Status::Exited;
            r.finished.get_or_insert_with(state::now);
            r.note = Some("its runtime was killed; exit status unknown".into());
        }
    })?;
    if !container_alive {
        let never_started = rec.pid.is_none();
        cleanup(&rec, rec.auto_remove || never_started)?;
    }
    Ok(rec)
}
// ANCHOR_END: reconcile

/// All containers, reconciled.
pub fn list() -> Vec<Record> {
    state::ids()
        .into_iter()
        .filter_map(|id| reconcile(&id).ok())
        .filter(|r| state::container_dir(&r.id).exists())
        .collect()
}

pub fn lookup(what: &str) -> Result<Record> {
    reconcile(&state::find(what)?)
}

/// A record with its spec filled in (`inspect`, `ps --format json`).
pub fn with_config(mut rec: Record) -> Record {
    if rec.config.is_none() {
        rec.config = state::load_config(&rec).ok();
    }
    rec
}

/// Running, or created and waiting for `start` (OCI): its process exists.
fn is_running(rec: &Record) -> bool {
    matches!(rec.status, Status::Running | Status::Created)
        && rec.pid.is_some_and(|p| state::alive(p, rec.pid_start))
}

pub fn kill(what: &str, signal: i32) -> Result<()> {
    require_root()?;
    let rec = lookup(what)?;
    if !is_running(&rec) {
        bail!("container {} is not running", rec.name);
    }
    let sig = Signal::try_from(signal).map_err(|_| anyhow!("invalid signal {signal}"))?;
    nix::sys::signal::kill(Pid::from_raw(rec.pid.unwrap_or_default()), sig)
        .with_context(|| format!("cannot send {sig} to container {}", rec.name))
}

/// Waits until the record says exited (the monitor recorded it) or `timeout` passes.
fn wait_exited(id: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match reconcile(id) {
            Ok(r)
                if r.status != Status::Exited
                    && r.pid.is_some_and(|p| state::alive(p, r.pid_start)) => {}
            Ok(r) if r.status != Status::Exited => {
                // Dead, but the monitor has not written it down yet.
                if !state::alive(r.monitor_pid, r.monitor_start) {
                    return true;
                }
            }
            _ => return true,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// SIGTERM, then SIGKILL after `timeout` (docker stop).
pub fn stop(what: &str, timeout: Duration) -> Result<()> {
    require_root()?;
    let rec = lookup(what)?;
    if !is_running(&rec) {
        return Ok(());
    }
    let pid = Pid::from_raw(rec.pid.unwrap_or_default());
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    if !wait_exited(&rec.id, timeout) {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        wait_exited(&rec.id, Duration::from_secs(10));
    }
    Ok(())
}

/// Removes a container and every trace of it; `force` kills it first if it runs.
pub fn remove(what: &str, force: bool) -> Result<()> {
    require_root()?;
    let rec = lookup(what)?;
    if is_running(&rec) {
        if !force {
            let what = match rec.status {
                Status::Created => "created (its process waits for `final start`)",
                _ => "running",
            };
            bail!(
                "container {} is {what}\nfix: stop it first (`final stop {}`) or use `final rm -f {}`",
                rec.name, rec.name, rec.name
            );
        }
        let _ = nix::sys::signal::kill(Pid::from_raw(rec.pid.unwrap_or_default()), Signal::SIGKILL);
        wait_exited(&rec.id, Duration::from_secs(10));
    }
    // Let a live monitor finish its own cleanup first, then make sure of it ourselves.
    let deadline = Instant::now() + Duration::from_secs(5);
    while state::alive(rec.monitor_pid, rec.monitor_start)
        && rec.monitor_pid != std::process::id() as i32
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let current = state::load(&rec.id).unwrap_or(rec);
    cleanup(&current, true)
}

/// Output of a detached container.
pub fn logs(what: &str) -> Result<PathBuf> {
    let rec = lookup(what)?;
    rec.log.ok_or_else(|| {
        anyhow!(
            "container {} was not started with --detach: its output went to the terminal",
            rec.name
        )
    })
}

/// Runs `args` in a running container: joins its namespaces and cgroup, then drops
/// privileges exactly like the container's first process (same spec).
pub fn exec(what: &str, args: Vec<String>, env: Vec<(String, String)>, tty: bool) -> Result<i32> {
    use nix::sched::{setns, CloneFlags};
    require_root()?;
    let rec = lookup(what)?;
    if !is_running(&rec) {
        bail!(
            "container {} is not running\nfix: `final ps -a` shows its status",
            rec.name
        );
    }
    let pid = rec.pid.unwrap_or_default();
    let mut spec: Spec = serde_json::from_value(state::load_config(&rec)?)
        .context("the stored config is not a valid spec")?;
    if let Some(mut p) = spec.process().clone() {
        let mut envs = p.env().clone().unwrap_or_default();
        for (k, v) in env {
            envs.retain(|e| !e.starts_with(&format!("{k}=")));
            envs.push(format!("{k}={v}"));
        }
        p.set_env(Some(envs));
        p.set_args(Some(args));
        p.set_terminal(Some(tty));
        spec.set_process(Some(p));
    }
    // Open every namespace first: after joining the mount namespace, /proc is the container's.
    // The user namespace first (`man 2 setns`): joining it gives the capabilities over the
    // container's other namespaces, which it owns. Namespaces the container shares with us
    // (--network host) are skipped: a rootless user may not setns into the host's.
    let kinds = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut fds = Vec::new();
    for (name, flag) in kinds {
        let path = format!("/proc/{pid}/ns/{name}");
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        if ours.is_some() && std::fs::read_link(&path).ok() == ours {
            continue;
        }
        let fd = nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("cannot open {path}"))?;
        fds.push((fd, flag));
    }
    // The pty comes from the container's own devpts, so `tty` inside names a node it has.
    let pty = if tty { Some(tty::open_in(pid)?) } else { None };
    let stdio = match &pty {
        Some(p) => Stdio::Pty(p.slave.as_raw_fd()),
        None => Stdio::Inherit,
    };
    let mut cfg = InitConfig::from_spec(&spec, Vec::new(), stdio, true)?;
    cfg.setgroups_denied = crate::userns::from_spec(&spec).is_some_and(|m| m.setgroups_denied);
    let cg = (!rec.cgroup.is_empty()).then(|| ContainerCgroup::at(&rec.cgroup));
    let (parent_chan, child_chan) = channel::pair()?;
    let signals = monitor_signals();
    let old_mask = signals.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    // SAFETY: single-threaded.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(parent_chan);
            let joined = (|| -> Result<()> {
                if let Some(cg) = &cg {
                    cg.attach_self()?;
                }
                for (fd, flag) in &fds {
                    if *flag == CloneFlags::CLONE_NEWPID {
                        continue;
                    }
                    setns(fd, *flag).with_context(|| format!("setns({flag:?}) failed"))?;
                }
                nix::sys::prctl::set_dumpable(false)?;
                Ok(())
            })();
            // The pid namespace applies to children only: fork once more to be inside it.
            let inner = joined.and_then(|_| {
                match fds.iter().find(|(_, f)| *f == CloneFlags::CLONE_NEWPID) {
                    Some((fd, flag)) => setns(fd, *flag).context("setns(CLONE_NEWPID) failed"),
                    None => Ok(()),
                }
            });
            if let Err(err) = inner {
                let _ = child_chan.send(&Message::Failed {
                    code: 125,
                    message: format!("{err:#}"),
                });
                // SAFETY: end the forked child.
                unsafe { libc::_exit(125) }
            }
            // SAFETY: single-threaded.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    // A session of its own, as the container's first process has: it is not
                    // in the caller's process group (signals come through the runtime), and
                    // with -t the pty can become its controlling terminal (TIOCSCTTY needs a
                    // session leader, `man 4 tty_ioctl`).
                    let _ = nix::unistd::setsid();
                    process::finish_and_exec(&cfg, &child_chan)
                }
                Ok(nix::unistd::ForkResult::Parent { child }) => {
                    drop(child_chan);
                    // Forward the signals the CLI forwards to us, and relay the status.
                    let code = loop {
                        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
                            Ok(s) => {
                                if let Some(c) = status_code(s) {
                                    break c;
                                }
                            }
                            Err(_) => break 125,
                        }
                        if let Ok(sig) = signals.wait() {
                            if sig != Signal::SIGCHLD && sig != Signal::SIGWINCH {
                                let _ = nix::sys::signal::kill(child, sig);
                            }
                        }
                    };
                    // SAFETY: end the forked child with the command's status.
                    unsafe { libc::_exit(code) }
                }
                Err(_) => unsafe { libc::_exit(125) },
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(child_chan);
            let failed = match parent_chan.recv() {
                Ok(Some(Message::Failed { code, message })) => Some((code, message)),
                _ => None,
            };
            if let Some((code, message)) = failed {
                let _ = waitpid(child, None);
                let _ = old_mask.thread_set_mask();
                if code == 125 {
                    bail!("{message}");
                }
                eprintln!("final: {message}");
                return Ok(code);
            }
            let raw = pty.as_ref().and_then(|_| tty::raw_mode());
            let status = wait_loop(child, &signals, pty.as_ref());
            drop(raw);
            let _ = old_mask.thread_set_mask();
            Ok(status_code(status?).unwrap_or(125))
        }
    }
}
