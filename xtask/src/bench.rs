//! `cargo xtask bench`: start-to-exit time, time after idle, 50 concurrent starts, peak RSS
//! and (optionally) cold build times of `final` and the steps against crun, runc and
//! bubblewrap, written to `bench/RESULTS.md` and `bench/startup.svg`.
//!
//! Two halves. This one runs as you: it builds the release binaries, makes sure the default
//! root file system exists, finds the other runtimes (installing nothing), starts the
//! measuring half as root through `scripts/run-as-root`, times the cold builds and writes
//! the report. The measuring half (`bench/measure.rs`) is this same program started with
//! `bench --measure`: the runner never elevates a binary called `xtask`, so it is started
//! from a copy in `target/bench/cfs-bench`.

#[cfg(target_os = "linux")]
mod measure;
mod report;
#[cfg(target_os = "linux")]
mod sys;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const HELP: &str = "\
usage: cargo xtask bench [OPTIONS]

Benchmarks `final run` and the step binaries against crun, runc and bubblewrap (those that are
installed) and writes bench/RESULTS.md and bench/startup.svg. Takes a few minutes.

options:
  --runs N          warm rounds, every runtime once per round (default 30)
  --idle-runs N     rounds with one launch every --idle-ms (default 6; 0 skips)
  --idle-ms MS      pause before each launch in the idle rounds (default 1000)
  --concurrent N    containers started at once (default 50; 0 skips)
  --batches N       concurrent batches per runtime (default 3)
  --build-times     also time cold `cargo build`s of the steps and the workspace (slow)
  --out DIR         where the report goes (default bench/)
  --no-build        measure the release binaries already in the target directory
";

const PACKAGES: [&str; 6] = [
    "final",
    "step01-uts",
    "step02-pid",
    "step03-mount-chroot",
    "step04-proc",
    "step05-cgroups",
];

/// Options of both halves (the measuring half gets the paths too).
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub warmup: usize,
    pub idle_runs: usize,
    pub idle_ms: u64,
    pub concurrent: usize,
    pub batches: usize,
    pub build_times: bool,
    pub no_build: bool,
    pub out: PathBuf,
    pub measure: bool,
    pub work: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
    pub crun: Option<PathBuf>,
    pub runc: Option<PathBuf>,
    pub bwrap: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            runs: 30,
            warmup: 2,
            idle_runs: 6,
            idle_ms: 1000,
            concurrent: 50,
            batches: 3,
            build_times: false,
            no_build: false,
            out: crate::workspace().join("bench"),
            measure: false,
            work: None,
            bin_dir: None,
            rootfs: None,
            crun: None,
            runc: None,
            bwrap: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (key, inline) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let mut value = || -> Result<String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .with_context(|| format!("{key} needs a value\n{HELP}"))
            };
            let number = |v: String| -> Result<usize> {
                v.parse()
                    .with_context(|| format!("{key} takes a number, not {v:?}"))
            };
            match key {
                "-h" | "--help" => {
                    print!("{HELP}");
                    std::process::exit(0);
                }
                "--runs" => o.runs = number(value()?)?.max(1),
                "--warmup" => o.warmup = number(value()?)?,
                "--idle-runs" => o.idle_runs = number(value()?)?,
                "--idle-ms" => o.idle_ms = number(value()?)? as u64,
                "--concurrent" => o.concurrent = number(value()?)?,
                "--batches" => o.batches = number(value()?)?,
                "--build-times" => o.build_times = true,
                "--no-build" => o.no_build = true,
                "--out" => o.out = PathBuf::from(value()?),
                "--measure" => o.measure = true,
                "--work" => o.work = Some(value()?.into()),
                "--bin-dir" => o.bin_dir = Some(value()?.into()),
                "--rootfs" => o.rootfs = Some(value()?.into()),
                "--crun" => o.crun = Some(value()?.into()),
                "--runc" => o.runc = Some(value()?.into()),
                "--bwrap" => o.bwrap = Some(value()?.into()),
                _ => bail!("unknown option {arg:?}\n{HELP}"),
            }
        }
        Ok(o)
    }

    /// The arguments that start the measuring half with these options.
    fn measure_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["bench".into(), "--measure".into()];
        for (k, v) in [
            ("--runs", self.runs),
            ("--warmup", self.warmup),
            ("--idle-runs", self.idle_runs),
            ("--idle-ms", self.idle_ms as usize),
            ("--concurrent", self.concurrent),
            ("--batches", self.batches),
        ] {
            a.push(k.into());
            a.push(v.to_string());
        }
        for (k, v) in [
            ("--work", &self.work),
            ("--bin-dir", &self.bin_dir),
            ("--rootfs", &self.rootfs),
            ("--crun", &self.crun),
            ("--runc", &self.runc),
            ("--bwrap", &self.bwrap),
        ] {
            if let Some(p) = v {
                a.push(k.into());
                a.push(p.to_string_lossy().into_owned());
            }
        }
        a
    }
}

/// `cargo xtask bench [OPTIONS]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut opts = Options::parse(args)?;
    if opts.measure {
        #[cfg(target_os = "linux")]
        return measure::main(&opts);
        #[cfg(not(target_os = "linux"))]
        bail!("the benchmark starts Linux containers: run it on Linux");
    }
    if !cfg!(target_os = "linux") {
        bail!("the benchmark starts Linux containers: run it on Linux (see README, \"Not on Linux?\")");
    }
    let ws = crate::workspace();

    // The other runtimes: used when installed, never installed from here.
    let mut missing = Vec::new();
    for (name, slot) in [
        ("crun", &mut opts.crun),
        ("runc", &mut opts.runc),
        ("bwrap", &mut opts.bwrap),
    ] {
        *slot = find_program(name);
        if slot.is_none() {
            missing.push(name.to_string());
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "bench: not installed, so not measured: {}\n       install them with `sudo apt-get install -y --no-install-recommends crun runc bubblewrap` (Debian/Ubuntu) or `sudo dnf install crun runc bubblewrap`",
            missing.join(", ")
        );
    }

    // Optimised binaries, linked statically and position-dependent, as we would ship them: no
    // dynamic loader work at each start and about 0.5 MiB less resident memory (the
    // performance chapter measures it). With an explicit --target, cargo keeps RUSTFLAGS away
    // from build scripts and proc macros, which must stay ordinary host programs.
    // Absolute paths: the measuring half and the runtimes run from other directories.
    let target = std::path::absolute(crate::target_dir())?;
    let triple = host_triple()?;
    let bin_dir = target.join(&triple).join("release");
    opts.bin_dir = Some(bin_dir.clone());
    if opts.no_build {
        for p in PACKAGES {
            let bin = bin_dir.join(p);
            if !bin.is_file() {
                bail!("{} is missing: run without --no-build", bin.display());
            }
        }
    } else {
        eprintln!("bench: building the release binaries");
        let mut build = crate::cargo();
        build.env("RUSTFLAGS", STATIC_RUSTFLAGS).args([
            "build",
            "--release",
            "--quiet",
            "--target",
            &triple,
        ]);
        for p in PACKAGES {
            build.args(["-p", p]);
        }
        crate::run_cmd(&mut build)?;
    }

    // The default busybox root file system (built as root by the support crate if missing);
    // the measuring half copies it, so that every runtime gets the same one.
    opts.rootfs = Some(std::path::absolute(crate::default_rootfs()?)?);

    // The measuring half: a copy of this program (see the module comment), as root.
    let work = target.join("bench");
    std::fs::create_dir_all(&work)?;
    let exe = work.join("cfs-bench");
    let _ = std::fs::remove_file(&exe);
    std::fs::copy(std::env::current_exe()?, &exe)
        .with_context(|| format!("cannot copy xtask to {}", exe.display()))?;
    opts.work = Some(work.clone());

    let mounts_before = host_mounts();
    eprintln!("bench: measuring (as root, through scripts/run-as-root)");
    let started = Instant::now();
    let measured = Command::new(ws.join("scripts/run-as-root"))
        .arg(&exe)
        .args(opts.measure_args())
        .current_dir(&ws)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run scripts/run-as-root")?;
    if !measured.status.success() {
        bail!("the measuring part failed ({})", measured.status);
    }
    eprintln!(
        "bench: measured in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mounts_after = host_mounts();
    let raw = String::from_utf8_lossy(&measured.stdout).into_owned();
    let data = report::Data::parse(&raw);

    let build_times = if opts.build_times {
        build_times()?
    } else {
        Vec::new()
    };

    let mut command = String::from("cargo xtask bench");
    for a in args {
        command.push(' ');
        command.push_str(a);
    }
    let cx = report::Context {
        command,
        machine: machine(&opts),
        missing,
        runs: opts.runs,
        idle_runs: opts.idle_runs,
        idle_ms: opts.idle_ms,
        host_mounts: mount_diff(&mounts_before, &mounts_after, &work),
        build_times,
    };
    let md = report::markdown(&data, &cx);
    std::fs::create_dir_all(&opts.out)?;
    std::fs::write(opts.out.join("RESULTS.md"), &md)?;
    std::fs::write(opts.out.join("startup.svg"), report::svg(&data))?;
    std::fs::write(opts.out.join("raw.tsv"), &raw)?;
    print!("{md}");
    eprintln!(
        "bench: wrote {}/RESULTS.md, startup.svg and raw.tsv",
        opts.out.display()
    );
    if !data.leaks.is_empty() {
        bail!("the benchmark left things behind (see above)");
    }
    Ok(())
}

/// `name` on PATH, or in the sbin directories a user's PATH often lacks (runc is in
/// /usr/sbin on Debian).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The host's mount table as (mount point, type, source) lines.
fn host_mounts() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut lines: Vec<String> = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            Some(format!("{point} {} {}", r.next()?, r.next()?))
        })
        .collect();
    lines.sort();
    lines
}

fn mount_diff(before: &[String], after: &[String], work: &Path) -> String {
    let added: Vec<&String> = after.iter().filter(|m| !before.contains(m)).collect();
    let ours: Vec<&&String> = added
        .iter()
        .filter(|m| {
            let w = work.to_string_lossy();
            m.contains(w.as_ref())
                || ["cfs", "crun", "runc", "overlay", "bench"]
                    .iter()
                    .any(|k| m.contains(k))
        })
        .collect();
    if ours.is_empty() {
        format!(
            "unchanged ({} mounts before and after{})",
            after.len(),
            if added.is_empty() {
                String::new()
            } else {
                format!("; {} unrelated new mounts", added.len())
            }
        )
    } else {
        let list: Vec<&str> = ours.iter().map(|s| s.as_str()).collect();
        format!("LEAK: new mounts {}", list.join("; "))
    }
}

/// Cold `cargo build`s in a throw-away target directory.
fn build_times() -> Result<Vec<(String, f64)>> {
    let mut steps = vec!["build".to_string(), "--quiet".to_string()];
    for p in &PACKAGES[1..] {
        steps.push("-p".into());
        steps.push(p.to_string());
    }
    let all = vec![
        "build".to_string(),
        "--quiet".to_string(),
        "--workspace".to_string(),
    ];
    let mut times = Vec::new();
    for (what, args) in [
        ("the five step crates (dev profile, cold)", steps),
        ("the whole workspace (dev profile, cold)", all),
    ] {
        let dir = crate::target_dir().join("bench/build-tmp");
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("bench: timing a cold build of {what}");
        let start = Instant::now();
        crate::run_cmd(crate::cargo().args(&args).env("CARGO_TARGET_DIR", &dir))?;
        times.push((what.to_string(), start.elapsed().as_secs_f64()));
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(times)
}

fn first_line(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Where the numbers come from.
fn machine(opts: &Options) -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    let mounts = host_mounts();
    let fstype = |point: &str| {
        mounts
            .iter()
            .find(|m| m.split(' ').next() == Some(point))
            .and_then(|m| m.split(' ').nth(1))
            .unwrap_or("")
            .to_string()
    };
    let cgroups = if fstype("/sys/fs/cgroup") == "cgroup2" {
        "v2 (unified)".to_string()
    } else if fstype("/sys/fs/cgroup/unified") == "cgroup2" {
        "v1 hybrid (v1 controllers, cgroup2 on /sys/fs/cgroup/unified)".to_string()
    } else {
        "v1".to_string()
    };
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let version = |p: &Option<PathBuf>, arg: &str| {
        p.as_ref()
            .map_or("not installed".into(), |p| first_line(p, arg))
    };
    let rustc = first_line(Path::new("rustc"), "--version");
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(crate::workspace())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    vec![
        ("date".into(), date),
        ("CPU".into(), cpu),
        ("cores".into(), cores.to_string()),
        (
            "memory".into(),
            format!("{:.1} GiB", mem_kib as f64 / 1048576.0),
        ),
        ("OS".into(), os),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_string(),
        ),
        ("cgroups".into(), cgroups),
        ("crun".into(), version(&opts.crun, "--version")),
        ("runc".into(), version(&opts.runc, "--version")),
        ("bubblewrap".into(), version(&opts.bwrap, "--version")),
        ("rustc".into(), rustc),
        (
            "workspace commit".into(),
            format!("{commit} (release build, glibc linked statically, non-PIE)"),
        ),
    ]
}

/// How the benchmarked binaries are linked: glibc statically, position-dependent.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// The triple rustc builds for by default (`rustc -vV`, line `host: ...`).
fn host_triple() -> Result<String> {
    let out = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host triple")
}
