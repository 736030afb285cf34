//! Resource limits through control groups (`man 7 cgroups`), written straight to cgroupfs.
//!
//! Detect, don't assume: on a pure cgroup v2 system `/sys/fs/cgroup` is a cgroup2 file system
//! with one tree; on v1 and on "hybrid" systems (v1 controllers under `/sys/fs/cgroup/<ctrl>`
//! and an often empty cgroup2 at `/sys/fs/cgroup/unified`) every controller has its own tree.
//! We only ever use the controllers we set limits with (memory, pids, cpu), so a container's
//! cgroup is `cfs-final/<id>` in each of those trees (v1) or in the single tree (v2).
//!
//! The layout is detected once per process (one statfs(2)); the handful of files we need
//! (mkdir, a few limits, `tasks`/`cgroup.procs`, rmdir) are written directly. (A general
//! cgroup library parses /proc/self/mountinfo for every handle: three times per `final run`,
//! 13% of its user-space instructions.)
//!
//! The cgroup is created by the runtime on the host *before* the container's process exists,
//! and removed by whoever sees the container end (the runtime, or `rm`/`ps` after the runtime
//! was killed). Nothing else on the host changes.
//!
//! Rootless, cgroups are only possible in a subtree *delegated* to the user on cgroup v2
//! (`man 7 cgroups`, "Cgroup v2 delegation"): a directory whose owner, `cgroup.procs` and
//! `cgroup.subtree_control` were given to the user, as systemd does for `user@UID.service`.
//! The user may create cgroups below it and move its own processes between them, but only
//! from a process already inside it (the writer needs write access to the `cgroup.procs` of
//! the common ancestor of the source and destination cgroups). [`delegated`] finds it by
//! walking up from the caller's own cgroup; the container's cgroup is then
//! `<delegated>/cfs-final/<id>`. cgroup v1 has no safe delegation, so rootless there gets no
//! cgroup, and a note says so.

use anyhow::{anyhow, Context, Result};
use oci_spec::runtime::LinuxResources;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Parent of all our cgroups in every hierarchy.
pub const PARENT: &str = "cfs-final";

pub const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// On v1 the device rules ([`crate::devices`]) need the `devices` hierarchy too; on v2
/// they are an eBPF program attached to the cgroup, not a controller.
pub const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "devices"];

const ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2 (unified): `/sys/fs/cgroup` is cgroup2.
    V2,
    /// cgroup v1 controllers, possibly with an extra (unused by us) cgroup2 mount: "hybrid".
    V1 { hybrid: bool },
}

/// The layout, detected on first use (statfs(2) of `/sys/fs/cgroup`).
pub fn layout() -> Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    *LAYOUT.get_or_init(|| {
        let v2 = nix::sys::statfs::statfs(ROOT)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        if v2 {
            Layout::V2
        } else {
            Layout::V1 {
                hybrid: Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists(),
            }
        }
    })
}

/// A container's cgroup path relative to each hierarchy's root: `cfs-final/<id>` below the
/// root (as root) or below a delegated cgroup `base` (rootless, v2; see [`delegated`]).
pub fn relative_path(base: &str, id: &str) -> String {
    match base.trim_matches('/') {
        "" => format!("{PARENT}/{id}"),
        base => format!("{base}/{PARENT}/{id}"),
    }
}

/// The caller's own cgroup in the unified hierarchy (`0::/path` in /proc/self/cgroup),
/// without the leading slash; `None` if it has none.
fn own_v2_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().trim_matches('/').to_string())
}

fn owned_by_me(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    std::fs::metadata(path).is_ok_and(|m| m.uid() == me)
}

/// A cgroup delegated to this (non-root) user: the directory and its `cgroup.procs` and
/// `cgroup.subtree_control` are the user's.
fn is_delegated(dir: &Path) -> bool {
    owned_by_me(dir)
        && owned_by_me(&dir.join("cgroup.procs"))
        && owned_by_me(&dir.join("cgroup.subtree_control"))
}

// ANCHOR: delegated
/// Where a rootless container's cgroup can go: the top of the delegated subtree the caller
/// runs in (relative to /sys/fs/cgroup, e.g. `user.slice/user-1000.slice/user@1000.service`
/// under systemd). The error says why there is none and what to do, for a note.
pub fn delegated() -> std::result::Result<String, String> {
    if layout() != Layout::V2 {
        return Err("this machine uses cgroup v1, which cannot be delegated to an ordinary user safely (rootless limits need cgroup v2)\nfix: run as root for limits, or boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2".into());
    }
    let own = own_v2_cgroup().unwrap_or_default();
    // The highest ancestor-or-self of our cgroup that is delegated to us: moving a process
    // needs write access to the common ancestor's cgroup.procs, which that one grants.
    let mut top = None;
    let mut rel = Path::new(&own);
    while !rel.as_os_str().is_empty() && is_delegated(&Path::new(ROOT).join(rel)) {
        top = Some(rel.to_string_lossy().into_owned());
        rel = rel.parent().unwrap_or(Path::new(""));
    }
    if let Some(top) = top {
        return Ok(top);
    }
    // An ssh login or a console session runs in session-N.scope, outside the subtree systemd
    // delegates to the user's own service manager; systemd-run --user moves us into it.
    let uid = nix::unistd::geteuid().as_raw();
    let user_service = format!("user.slice/user-{uid}.slice/user@{uid}.service");
    let why = if is_delegated(&Path::new(ROOT).join(&user_service)) {
        format!("systemd delegated /{user_service} to you, but final runs in /{own}, outside it (a login session such as ssh)")
    } else {
        format!("your cgroup /{own} is not delegated to you")
    };
    Err(format!("{why}\nfix: start final inside your systemd user session: `systemd-run --user --scope final run ...` (or run as root)"))
}
// ANCHOR_END: delegated

/// The v1 controllers we use that this machine offers, each with its hierarchy's root.
fn v1_hierarchies() -> &'static [(&'static str, PathBuf)] {
    static FOUND: OnceLock<Vec<(&'static str, PathBuf)>> = OnceLock::new();
    // Every distribution mounts v1 controllers (or a symlink to them, as cpu ->
    // cpu,cpuacct) at /sys/fs/cgroup/<controller>; `final doctor` checks the same place.
    FOUND.get_or_init(|| {
        V1_CONTROLLERS
            .iter()
            .map(|c| (*c, Path::new(ROOT).join(c)))
            .filter(|(_, root)| root.join("cgroup.procs").exists())
            .collect()
    })
}

/// The v1 controllers we use that this machine has mounted (`final doctor`).
pub fn v1_controllers() -> Vec<&'static str> {
    v1_hierarchies().iter().map(|(c, _)| *c).collect()
}

/// The controllers we use that the v2 cgroup `base` offers its descendants: only those in
/// its `cgroup.controllers` can be enabled below it (all of the machine's at the root; what
/// was delegated, in a delegated cgroup).
pub fn v2_controllers(base: &str) -> Vec<&'static str> {
    let available = std::fs::read_to_string(Path::new(ROOT).join(base).join("cgroup.controllers"))
        .unwrap_or_default();
    CONTROLLERS
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect()
}

/// A container's cgroup.
pub struct ContainerCgroup {
    rel: String,
    /// The cgroup below which `cfs-final/<id>` lives: "" (the root) or a delegated cgroup.
    base: String,
    layout: Layout,
    /// (controller, the cgroup's directory in that controller's hierarchy); on v2 every
    /// controller has the same directory.
    dirs: Vec<(&'static str, PathBuf)>,
    /// The distinct directories: one per v1 controller, the one on v2.
    paths: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
}

fn mkdir(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

impl ContainerCgroup {
    /// Creates the cgroup `rel` ([`relative_path`]) and writes the limits. On error nothing
    /// is left behind.
    pub fn create(rel: &str, resources: Option<&LinuxResources>) -> Result<ContainerCgroup> {
        let this = ContainerCgroup::at(rel);
        let layout = this.layout;
        let made = (|| -> std::io::Result<()> {
            if layout == Layout::V2 {
                // Enable our controllers for the children of the base and of cfs-final.
                let base = Path::new(ROOT).join(&this.base);
                let parent = base.join(PARENT);
                let enable: Vec<String> = this.dirs.iter().map(|(c, _)| format!("+{c}")).collect();
                for dir in [base.as_path(), parent.as_path()] {
                    if dir == parent {
                        mkdir(dir)?;
                    }
                    let control = dir.join("cgroup.subtree_control");
                    if write(&control, &enable.join(" ")).is_err() {
                        for e in &enable {
                            let _ = write(&control, e);
                        }
                    }
                }
                for dir in &this.paths {
                    mkdir(dir)?;
                }
            } else {
                for dir in &this.paths {
                    std::fs::create_dir_all(dir)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = this.destroy();
            let fix = if this.base.is_empty() {
                "run as root, and check `final doctor` for the cgroup controllers"
            } else {
                "check `final doctor`: the cgroup delegated to you must be writable"
            };
            return Err(anyhow!(e)).with_context(|| {
                format!(
                    "cannot create the cgroup {} ({layout:?})\nfix: {fix}",
                    this.rel
                )
            });
        }
        if let Some(res) = resources {
            if let Err(err) = this.apply(res) {
                let _ = this.destroy();
                return Err(err);
            }
        }
        Ok(this)
    }

    /// A handle to the cgroup `rel` as recorded in the container's state (for `exec`, `rm`,
    /// recovery); it need not exist.
    pub fn at(rel: &str) -> ContainerCgroup {
        let rel = rel.trim_matches('/').to_string();
        // rel is <base>/cfs-final/<id>
        let base = Path::new(&rel)
            .parent()
            .and_then(Path::parent)
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        let layout = layout();
        let (dirs, paths): (Vec<(&'static str, PathBuf)>, Vec<PathBuf>) = match layout {
            Layout::V2 => {
                let dir = Path::new(ROOT).join(&rel);
                let dirs = v2_controllers(&base)
                    .into_iter()
                    .map(|c| (c, dir.clone()))
                    .collect();
                (dirs, vec![dir])
            }
            Layout::V1 { .. } => {
                let dirs: Vec<(&'static str, PathBuf)> = v1_hierarchies()
                    .iter()
                    .map(|(c, root)| (*c, root.join(&rel)))
                    .collect();
                let paths = dirs.iter().map(|(_, d)| d.clone()).collect();
                (dirs, paths)
            }
        };
        ContainerCgroup {
            rel,
            base,
            layout,
            dirs,
            paths,
        }
    }

    /// The error for a limit whose controller this cgroup does not have.
    fn missing(&self, option: &str, controller: &str) -> anyhow::Error {
        if self.base.is_empty() {
            anyhow!("{option} needs the {controller} cgroup controller, which is not available\nfix: see `final doctor`")
        } else {
            anyhow!(
                "{option} needs the {controller} cgroup controller, which is not delegated to you (/sys/fs/cgroup/{}/cgroup.controllers)\n\
                 fix: have systemd delegate it to users: sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload, then log in again",
                self.base
            )
        }
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d.as_path())
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        let set = |dir: &Path, file: &str, value: String, setting: &str| -> Result<()> {
            write(&dir.join(file), &value).with_context(|| {
                format!(
                    "cannot set {setting} in the cgroup {}: cannot write {value} to {file}",
                    self.rel
                )
            })
        };
        let v2 = self.layout == Layout::V2;
        if let Some(mem) = res.memory() {
            let dir = self
                .dir_of("memory")
                .ok_or_else(|| self.missing("--memory", "memory"))?;
            if let Some(limit) = mem.limit() {
                let value = |v: i64| match (v2, v) {
                    (true, -1) => "max".to_string(),
                    _ => v.to_string(),
                };
                let file = if v2 {
                    "memory.max"
                } else {
                    "memory.limit_in_bytes"
                };
                set(dir, file, value(limit), "the memory limit")?;
                // No swap beyond the memory limit, so exceeding it is an OOM kill. v1 has the
                // memsw file only with swap accounting on; v2 counts swap separately.
                let swap_file = if v2 {
                    "memory.swap.max"
                } else {
                    "memory.memsw.limit_in_bytes"
                };
                if dir.join(swap_file).exists() {
                    let swap = if v2 {
                        mem.swap().map(|s| s - limit).unwrap_or(0).max(0)
                    } else {
                        mem.swap().unwrap_or(limit)
                    };
                    set(dir, swap_file, value(swap), "the swap limit")?;
                }
            }
        }
        if let Some(pids) = res.pids() {
            let dir = self
                .dir_of("pids")
                .ok_or_else(|| self.missing("--pids-limit", "pids"))?;
            let limit = match pids.limit() {
                n if n < 0 => "max".to_string(),
                n => n.to_string(),
            };
            set(dir, "pids.max", limit, "the pids limit")?;
        }
        if let Some(rules) = res.devices().as_ref().filter(|r| !r.is_empty()) {
            match self.layout {
                Layout::V2 => crate::devices::attach(&self.paths[0], rules)?,
                Layout::V1 { .. } => {
                    let dir = self.dir_of("devices").ok_or_else(|| {
                        anyhow!("the device rules need the devices cgroup controller (/sys/fs/cgroup/devices), which is not mounted\nfix: see `final doctor`")
                    })?;
                    for (file, line) in crate::devices::v1_lines(rules) {
                        set(dir, file, line, "the device rules")?;
                    }
                }
            }
        }
        if let Some(cpu) = res.cpu() {
            if let Some(quota) = cpu.quota() {
                let dir = self
                    .dir_of("cpu")
                    .ok_or_else(|| self.missing("--cpus", "cpu"))?;
                if v2 {
                    let quota = if quota > 0 {
                        quota.to_string()
                    } else {
                        "max".to_string()
                    };
                    let period = cpu.period().unwrap_or(100_000);
                    set(dir, "cpu.max", format!("{quota} {period}"), "the cpu quota")?;
                } else {
                    set(dir, "cpu.cfs_quota_us", quota.to_string(), "the cpu quota")?;
                    if let Some(period) = cpu.period() {
                        set(
                            dir,
                            "cpu.cfs_period_us",
                            period.to_string(),
                            "the cpu quota",
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The files through which the container's first process joins this cgroup by writing
    /// `0` (itself), opened now, before clone(2), while the host's /sys/fs/cgroup is in reach:
    /// on v1 each controller's `tasks`, on v2 `cgroup.procs` (only needed when
    /// clone3(CLONE_INTO_CGROUP) is not available).
    ///
    /// Why `tasks`: writing a pid to v1 `cgroup.procs` moves a whole thread group under the
    /// kernel's global `cgroup_threadgroup_rwsem`, whose write side waits for an RCU grace
    /// period (10–25 ms on an idle machine, and it serialises concurrent starts). A
    /// single-threaded process writing `0` to `tasks` moves only itself and the kernel skips
    /// that lock (`cgroup_procs_write_start`): 20–70 µs.
    pub fn join_files(&self) -> Result<Vec<OwnedFd>> {
        let file = match self.layout {
            Layout::V2 => "cgroup.procs",
            Layout::V1 { .. } => "tasks",
        };
        self.paths
            .iter()
            .map(|d| {
                let path = d.join(file);
                nix::fcntl::open(
                    &path,
                    nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .with_context(|| format!("cannot open {}", path.display()))
            })
            .collect()
    }

    /// Moves the calling (single-threaded) process into this cgroup (`final exec`'s child).
    pub fn attach_self(&self) -> Result<()> {
        for fd in self.join_files()? {
            join(fd.as_raw_fd())
                .with_context(|| format!("cannot move the process into the cgroup {}", self.rel))?;
        }
        Ok(())
    }

    /// Processes currently in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = Vec::new();
        for dir in &self.paths {
            let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Did the kernel's OOM killer kill a process of this cgroup? (v1: memory.oom_control,
    /// v2: memory.events; both have an `oom_kill N` line.)
    pub fn oom_killed(&self) -> bool {
        let file = match self.layout {
            Layout::V2 => "memory.events",
            Layout::V1 { .. } => "memory.oom_control",
        };
        let Some(dir) = self.dir_of("memory") else {
            return false;
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    /// The cgroup's directory in the unified (v2) hierarchy, for clone3(CLONE_INTO_CGROUP).
    pub fn unified_dir(&self) -> Option<PathBuf> {
        match self.layout {
            Layout::V2 => Some(Path::new(ROOT).join(&self.rel)),
            Layout::V1 { .. } => None,
        }
    }

    pub fn exists(&self) -> bool {
        self.paths.iter().any(|d| d.exists())
    }

    /// Kills whatever still runs in the cgroup, then removes it. The directories can only
    /// be removed once the kernel has finished tearing the processes down, hence the retry.
    pub fn destroy(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for pid in self.procs() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let mut last_err = None;
            for dir in &self.paths {
                match std::fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => last_err = Some(e),
                }
            }
            match last_err {
                None if !self.exists() => return Ok(()),
                Some(err) if Instant::now() > deadline => {
                    return Err(anyhow!(
                        "cannot remove the cgroup {}: {err}\nfix: check `cat /sys/fs/cgroup/*/{}/cgroup.procs` for processes still in it",
                        self.rel,
                        self.rel
                    ))
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(anyhow!("cannot remove the cgroup {}", self.rel));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Writes `0` ("the writer") into an open `tasks`/`cgroup.procs`: the calling thread joins
/// that cgroup. Async-signal-safe (one write(2)), for the cloned child.
pub fn join(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: writes one byte from a static buffer to a descriptor.
    let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
