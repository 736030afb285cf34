//! The OCI runtime command line (runtime-spec `runtime.md`): `create`, `start`, `state`,
//! `kill` and `delete` on a *bundle* (a directory with `config.json` and the root file
//! system), the interface containerd, podman's conmon and friends drive runc and crun with.
//!
//! Thin on purpose: `create` loads the bundle's spec and hands it to
//! [`crate::container::create`], the same path `final run` takes, with three differences:
//! the root is the bundle's directory itself (no writable layer on top), the container's
//! stdio is the caller's, and the command does not run yet. Everything is set up (namespaces,
//! mounts, cgroup, capabilities, seccomp), then the container's first process reports
//! `Created` and blocks opening a FIFO in the state directory for writing (`exec.fifo`, as
//! runc names it). `start` opens it for reading, which lets the process go on to execve(2).
//! The detached monitor records the rest (running, exit status), as for `final run -d`.
//!
//! Spec fields `final` cannot honour are refused, not skipped: a caller must never believe a
//! container has a hook, a device node or a sysctl it does not have.

use crate::container::{self, CreateOptions};
use crate::state::{self, Status};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a created container's first process waits for `start`.
fn start_fifo(id: &str) -> PathBuf {
    state::container_dir(id).join("exec.fifo")
}

/// Makes the start FIFO and opens it O_PATH (no open(2) of a FIFO blocks with O_PATH) for
/// the child to reopen once its setup is done. Mode 0622: the container's user may be
/// anyone (the state directory above it is root's and closed).
pub fn make_start_fifo(id: &str) -> Result<OwnedFd> {
    use nix::sys::stat::Mode;
    let path = start_fifo(id);
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o622))
        .with_context(|| format!("cannot create the start FIFO {}", path.display()))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

// ANCHOR: unsupported
/// The parts of a spec `final` does not implement, each a reason to refuse the bundle.
fn unsupported(spec: &Spec) -> Vec<&'static str> {
    let mut found = Vec::new();
    if spec.hooks().is_some() {
        found.push("hooks");
    }
    if let Some(p) = spec.process() {
        if p.terminal() == Some(true) {
            found.push("process.terminal (a console socket)");
        }
        if p.apparmor_profile().is_some() {
            found.push("process.apparmorProfile");
        }
        if p.selinux_label().is_some() {
            found.push("process.selinuxLabel");
        }
    }
    if let Some(l) = spec.linux() {
        if l.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            found.push("linux.devices");
        }
        if l.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
            found.push("linux.sysctl");
        }
        if l.cgroups_path().is_some() {
            found.push("linux.cgroupsPath");
        }
        if l.namespaces().iter().flatten().any(|n| n.path().is_some()) {
            found.push("linux.namespaces[].path (joining a namespace)");
        }
        if l.mount_label().is_some() {
            found.push("linux.mountLabel");
        }
    }
    found
}
// ANCHOR_END: unsupported

// ANCHOR: create
/// `final create --bundle DIR ID`.
pub fn create(bundle: &Path, id: &str, pid_file: Option<&Path>) -> Result<()> {
    let bundle = std::fs::canonicalize(bundle)
        .with_context(|| format!("cannot find the bundle {}", bundle.display()))?;
    let config = bundle.join("config.json");
    // Through serde_json::Value, as `final exec` reads a container's spec: one instance of
    // the (large) Spec deserializer in the binary rather than two.
    let text = std::fs::read(&config)
        .with_context(|| format!("cannot read the OCI runtime spec {}", config.display()))?;
    let mut spec: Spec = serde_json::from_slice::<serde_json::Value>(&text)
        .and_then(serde_json::from_value)
        .with_context(|| format!("{} is not a valid OCI runtime spec", config.display()))?;
    let refused = unsupported(&spec);
    if !refused.is_empty() {
        bail!(
            "{} uses what final does not support: {}\nfix: remove them from the spec (`final spec` writes one final supports)",
            config.display(),
            refused.join(", ")
        );
    }
    // The spec's root path may be relative to the bundle.
    if let Some(mut root) = spec.root().clone() {
        if root.path().is_relative() {
            root.set_path(bundle.join(root.path()));
            spec.set_root(Some(root));
        }
    }
    let opts = CreateOptions {
        name: Some(crate::parse::name(id).map_err(|e| anyhow!(e))?),
        detach: true,
        overlay: false,
        bundle: Some(bundle),
        pid_file: pid_file.map(Path::to_path_buf),
        ..Default::default()
    };
    container::create(spec, opts).map(drop)
}
// ANCHOR_END: create

// ANCHOR: start
/// `final start ID`: lets a created container's command run.
pub fn start(id: &str) -> Result<()> {
    container::require_root()?;
    let rec = container::lookup(id)?;
    if rec.status != Status::Created || rec.pid.is_none() {
        bail!(
            "container {id} is not waiting to start (it is {})",
            match rec.status {
                Status::Created => "still being created",
                Status::Running => "running",
                Status::Exited => "stopped",
            }
        );
    }
    let path = start_fifo(&rec.id);
    // O_NONBLOCK: the open does not wait for a writer; the read below does, briefly, and
    // sees end-of-file if the process that should be writing is gone.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&fifo),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16))
        .context("cannot wait for the container's process")?;
    let mut byte = [0u8; 1];
    let n = std::io::Read::read(&mut &fifo, &mut byte).unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    if n != 1 {
        bail!("container {id}'s process did not take the start (is it still alive? `final state {id}`)");
    }
    // The monitor records "running" when the exec succeeded, or the command's failure.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = container::lookup(&rec.id).with_context(|| {
            format!("the command of container {id} failed to start, and the container is gone")
        })?;
        match now.status {
            Status::Running => return Ok(()),
            Status::Exited if now.started.is_none() => {
                return Err(anyhow!(container::CommandFailed(
                    now.exit_code.unwrap_or(125)
                )))
                .context(format!(
                    "the command of container {id} could not be started"
                ));
            }
            Status::Exited => return Ok(()), // ran, and already ended
            Status::Created if Instant::now() > deadline => {
                bail!("container {id} did not start within 10 s")
            }
            Status::Created => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}
// ANCHOR_END: start

// ANCHOR: state
/// `final state ID`: the runtime-spec's state JSON.
pub fn state(id: &str) -> Result<String> {
    let rec = container::lookup(id)?;
    let status = match rec.status {
        Status::Created if rec.pid.is_none() => "creating",
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "stopped",
    };
    let annotations = state::load_config(&rec)
        .ok()
        .and_then(|c| c.get("annotations").cloned())
        .unwrap_or_else(|| serde_json::json!({}));
    let live = rec.status != Status::Exited;
    let state = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": rec.name,
        "status": status,
        "pid": if live { rec.pid.unwrap_or(0) } else { 0 },
        "bundle": rec.bundle.as_ref().map(|b| b.display().to_string()).unwrap_or_default(),
        "annotations": annotations,
    });
    Ok(serde_json::to_string_pretty(&state)?)
}
// ANCHOR_END: state
