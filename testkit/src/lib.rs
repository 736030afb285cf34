//! Behaviour checks for the step binaries, shared by the step crates' tests (`cargo test`) and
//! the workshop checker (`cargo xtask workshop check N`): one implementation, parameterised by
//! the binary under test.
//!
//! Each [`Check`] runs the binary as a learner would, and looks at kernel facts from inside
//! and outside the container (hostname, `/proc/<pid>/ns/*`, `/proc/<pid>/root`, mountinfo,
//! cgroup files). A failing check explains, in words, what the container still gets wrong.
//! The checks need root; without it they fail (they are never skipped).

use std::path::{Path, PathBuf};

mod checks;
pub mod host;

pub use checks::ALL;

/// The isolation features, in the order the steps add them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// step01: UTS namespace (hostname), plus exit statuses and argument handling.
    Uts = 1,
    /// step02: PID namespace (PID 1).
    Pid = 2,
    /// step03: mount namespace, private propagation, chroot into the root filesystem.
    Mount = 3,
    /// step04: /proc inside the container.
    Proc = 4,
    /// step05: cgroup limits.
    Cgroups = 5,
}

impl Feature {
    /// The step that introduces this feature.
    pub fn step(self) -> u8 {
        self as u8
    }

    pub fn label(self) -> &'static str {
        match self {
            Feature::Uts => "uts",
            Feature::Pid => "pid",
            Feature::Mount => "mount",
            Feature::Proc => "proc",
            Feature::Cgroups => "cgroups",
        }
    }
}

/// One property a container of some step must have.
pub struct Check {
    pub feature: Feature,
    /// A short identifier, used as the test name.
    pub name: &'static str,
    /// The property, in words ("the command runs as PID 1").
    pub property: &'static str,
    /// Runs the check; `Err` says what the container still gets wrong.
    pub run: fn(&Runtime) -> Result<(), String>,
}

/// The checks a binary of step `step` must pass: its own feature's and every earlier one's.
pub fn checks_for_step(step: u8) -> Vec<&'static Check> {
    ALL.iter().filter(|c| c.feature.step() <= step).collect()
}

/// The checks that the feature of step `step` adds (what a workshop exercise is about).
pub fn checks_of_step(step: u8) -> Vec<&'static Check> {
    ALL.iter().filter(|c| c.feature.step() == step).collect()
}

/// The binary under test.
pub struct Runtime {
    pub bin: PathBuf,
    pub step: u8,
}

impl Runtime {
    pub fn new(bin: impl Into<PathBuf>, step: u8) -> Self {
        Runtime {
            bin: bin.into(),
            step,
        }
    }

    /// The name the binary prints in its messages.
    pub fn name(&self) -> String {
        self.bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `BIN run ARGS...`, run to completion (at most 60 s).
    pub fn run(&self, args: &[&str]) -> Result<host::Outcome, String> {
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.arg("run").args(args);
        host::run_with_timeout(cmd, std::time::Duration::from_secs(60))
    }

    /// `BIN run ARGS...` started in the background, in its own process group.
    pub fn spawn(&self, args: &[&str]) -> Result<host::Running, String> {
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.arg("run").args(args);
        host::Running::spawn(cmd)
    }

    /// The default root filesystem the binary uses (built on first use).
    pub fn rootfs(&self) -> Result<PathBuf, String> {
        cfs_support::rootfs(None).map_err(|e| format!("{e:#}"))
    }
}

/// Runs `check` against `runtime`, first making sure we are root.
pub fn run_check(check: &Check, runtime: &Runtime) -> Result<(), String> {
    if !host::is_root() {
        return Err(
            "the behaviour checks run containers and must run as root: use `cargo test` \
                    or `cargo xtask workshop check N` (the workspace's runner uses sudo)"
                .into(),
        );
    }
    (check.run)(runtime)
}

/// Entry point of a step crate's `tests/behaviour.rs` (a `harness = false` test): one test per
/// check, with libtest's output, filtering and `--test-threads`.
pub fn main(bin: &str, step: u8) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let runtime = std::sync::Arc::new(Runtime::new(bin, step));
    // Build the default root filesystem once, before the tests run in parallel.
    if host::is_root() {
        if let Err(err) = runtime.rootfs() {
            eprintln!("cannot provide the default root filesystem: {err}");
            std::process::exit(101);
        }
    }
    let trials = checks_for_step(step)
        .into_iter()
        .map(|check| {
            let runtime = runtime.clone();
            libtest_mimic::Trial::test(
                format!("{}::{}", check.feature.label(), check.name),
                move || {
                    run_check(check, &runtime)
                        .map_err(|why| format!("{}\n  expected: {}", why, check.property).into())
                },
            )
        })
        .collect();
    let before = host::runtime_cgroups(&runtime.name());
    let conclusion = libtest_mimic::run(&args, trials);
    // Whatever each check looked at, no run may leave a cgroup behind.
    let left: Vec<_> = host::runtime_cgroups(&runtime.name())
        .into_iter()
        .filter(|dir| !before.contains(dir))
        .collect();
    if !left.is_empty() {
        eprintln!(
            "error: these runs of {} left cgroups behind: {left:?}",
            runtime.name()
        );
        std::process::exit(101);
    }
    conclusion.exit()
}

/// `path` as a string for command lines.
pub(crate) fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
