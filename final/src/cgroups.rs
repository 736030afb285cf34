//! Resource limits through control groups (`man 7 cgroups`), with `cgroups-rs`.
//!
//! Detect, don't assume: on a pure cgroup v2 system `/sys/fs/cgroup` is a cgroup2 file system
//! with one tree; on v1 and on "hybrid" systems (v1 controllers under `/sys/fs/cgroup/<ctrl>`
//! and an often empty cgroup2 at `/sys/fs/cgroup/unified`) every controller has its own tree.
//! We only ever use the controllers we set limits with (memory, pids, cpu), so a container's
//! cgroup is `cfs-final/<id>` in each of those trees (v1) or in the single tree (v2).
//!
//! The cgroup is created by the runtime on the host *before* the container's process exists,
//! and removed by whoever sees the container end (the runtime, or `rm`/`ps` after the runtime
//! was killed). Nothing else on the host changes.

use anyhow::{anyhow, Context, Result};
use cgroups_rs::{Cgroup, CgroupPid, Controller, MaxValue};
use oci_spec::runtime::LinuxResources;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Parent of all our cgroups in every hierarchy.
pub const PARENT: &str = "cfs-final";

const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Which cgroup layout this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2 (unified): `/sys/fs/cgroup` is cgroup2.
    V2,
    /// cgroup v1 controllers, possibly with an extra (unused by us) cgroup2 mount: "hybrid".
    V1 { hybrid: bool },
}

pub fn layout() -> Layout {
    if cgroups_rs::hierarchies::is_cgroup2_unified_mode() {
        Layout::V2
    } else {
        Layout::V1 {
            hybrid: std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists(),
        }
    }
}

/// The container's cgroup path relative to each hierarchy's root.
pub fn relative_path(id: &str) -> String {
    format!("{PARENT}/{id}")
}

/// A container's cgroup.
pub struct ContainerCgroup {
    cg: Cgroup,
    layout: Layout,
}

fn controllers() -> Vec<String> {
    let available = match layout() {
        // Only controllers the root offers can be enabled (cgroup.controllers).
        Layout::V2 => {
            std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default()
        }
        Layout::V1 { .. } => CONTROLLERS.join(" "),
    };
    CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| c.to_string())
        .collect()
}

impl ContainerCgroup {
    /// Creates `cfs-final/<id>` and writes the limits. On error nothing is left behind.
    pub fn create(id: &str, resources: Option<&LinuxResources>) -> Result<ContainerCgroup> {
        let path = relative_path(id);
        let layout = layout();
        let cg = Cgroup::new_with_specified_controllers(
            cgroups_rs::hierarchies::auto(),
            &path,
            Some(controllers()),
        )
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| {
            format!(
                "cannot create the cgroup {path} ({layout:?})\nfix: run as root, and check `final doctor` for the cgroup controllers"
            )
        })?;
        let this = ContainerCgroup { cg, layout };
        if let Some(res) = resources {
            if let Err(err) = this.apply(res) {
                let _ = this.destroy();
                return Err(err);
            }
        }
        Ok(this)
    }

    /// A handle to an existing container cgroup (for `exec`, `rm`, recovery).
    pub fn load(id: &str) -> ContainerCgroup {
        let cg = Cgroup::load_with_specified_controllers(
            cgroups_rs::hierarchies::auto(),
            relative_path(id),
            controllers(),
        );
        ContainerCgroup {
            cg,
            layout: layout(),
        }
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        use cgroups_rs::{cpu::CpuController, memory::MemController, pid::PidController};
        let what = |e: cgroups_rs::error::Error, setting: &str| {
            anyhow!("cannot set {setting} in the cgroup {}: {e}", self.cg.path())
        };
        if let Some(mem) = res.memory() {
            let ctl: &MemController = self
                .cg
                .controller_of()
                .ok_or_else(|| anyhow!("--memory needs the memory cgroup controller, which is not available\nfix: see `final doctor`"))?;
            if let Some(limit) = mem.limit() {
                ctl.set_limit(limit)
                    .map_err(|e| what(e, "the memory limit"))?;
                // No swap beyond the memory limit, so exceeding it is an OOM kill. v1 has the
                // memsw file only with swap accounting on; v2 counts swap separately.
                let swap_file = match self.layout {
                    Layout::V2 => "memory.swap.max",
                    Layout::V1 { .. } => "memory.memsw.limit_in_bytes",
                };
                if ctl.path().join(swap_file).exists() {
                    let swap = match self.layout {
                        Layout::V2 => mem.swap().map(|s| s - limit).unwrap_or(0).max(0),
                        Layout::V1 { .. } => mem.swap().unwrap_or(limit),
                    };
                    ctl.set_memswap_limit(swap)
                        .map_err(|e| what(e, "the swap limit"))?;
                }
            }
        }
        if let Some(pids) = res.pids() {
            let ctl: &PidController = self
                .cg
                .controller_of()
                .ok_or_else(|| anyhow!("--pids-limit needs the pids cgroup controller, which is not available\nfix: see `final doctor`"))?;
            ctl.set_pid_max(MaxValue::Value(pids.limit()))
                .map_err(|e| what(e, "the pids limit"))?;
        }
        if let Some(cpu) = res.cpu() {
            if cpu.quota().is_some() {
                let ctl: &CpuController = self
                    .cg
                    .controller_of()
                    .ok_or_else(|| anyhow!("--cpus needs the cpu cgroup controller, which is not available\nfix: see `final doctor`"))?;
                ctl.set_cfs_quota_and_period(cpu.quota(), cpu.period())
                    .map_err(|e| what(e, "the cpu quota"))?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` (and its future children) into this cgroup.
    pub fn attach(&self, pid: i32) -> Result<()> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(pid as u64))
            .map_err(|e| {
                anyhow!(
                    "cannot move process {pid} into the cgroup {}: {e}",
                    self.cg.path()
                )
            })
    }

    /// Processes currently in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        self.cg.procs().into_iter().map(|p| p.pid as i32).collect()
    }

    /// Did the kernel's OOM killer kill a process of this cgroup? (v1: memory.oom_control,
    /// v2: memory.events; both have an `oom_kill N` line.)
    pub fn oom_killed(&self) -> bool {
        let file = match self.layout {
            Layout::V2 => "memory.events",
            Layout::V1 { .. } => "memory.oom_control",
        };
        let Some(dir) = self.memory_dir() else {
            return false;
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    fn memory_dir(&self) -> Option<PathBuf> {
        let ctl: &cgroups_rs::memory::MemController = self.cg.controller_of()?;
        Some(ctl.path().to_path_buf())
    }

    /// The cgroup's directory in the unified (v2) hierarchy, for clone3(CLONE_INTO_CGROUP).
    pub fn unified_dir(&self) -> Option<PathBuf> {
        match self.layout {
            Layout::V2 => Some(PathBuf::from("/sys/fs/cgroup").join(self.cg.path())),
            Layout::V1 { .. } => None,
        }
    }

    pub fn exists(&self) -> bool {
        self.cg.exists()
    }

    /// Kills whatever still runs in the cgroup, then removes it. The directories can only
    /// be removed once the kernel has finished tearing the processes down, hence the retry.
    pub fn destroy(&self) -> Result<()> {
        if !self.cg.exists() {
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
            match self.cg.delete() {
                Ok(()) if !self.cg.exists() => return Ok(()),
                Ok(()) => {}
                Err(err) if Instant::now() > deadline => {
                    return Err(anyhow!(
                        "cannot remove the cgroup {}: {err}\nfix: check `cat /sys/fs/cgroup/*/{}/cgroup.procs` for processes still in it",
                        self.cg.path(),
                        self.cg.path()
                    ))
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err(anyhow!("cannot remove the cgroup {}", self.cg.path()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
