//! The measuring half of `cargo xtask bench`, run as root through `scripts/run-as-root`.
//!
//! It starts every runtime as a whole process (spawn, then `wait4(2)` for the exit status
//! and the resource usage), times it with the monotonic clock, and prints one tab-separated
//! line per sample on stdout; `bench.rs` turns them into the tables. Progress goes to stderr.
//!
//! Everything runs in a private mount namespace. On a cgroup v1 "hybrid" host an empty tmpfs
//! hides the (unused) cgroup2 mount at /sys/fs/cgroup/unified there, because crun 1.8
//! refuses the hybrid layout otherwise; every runtime sees the same view, and the host's
//! mount table never changes.

use super::sys;
use super::Options;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The limits every cgroup-capable runtime gets (the same as `--memory 64m --pids-limit 64`).
const MEMORY: &str = "64m";
const PIDS: &str = "64";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where `final` keeps its records and writable layers during the benchmark.
const BENCH_RUN: &str = "/run/cfs-bench";
const BENCH_LIB: &str = "/var/lib/cfs-bench";
const FINAL_ROOT: &str = "/run/cfs-bench/final";
const FINAL_DATA: &str = "/var/lib/cfs-bench/final";

/// One way of starting `true` in a container.
struct Variant {
    name: &'static str,
    what: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// crun and runc need a unique container id as their last argument.
    needs_id: bool,
    env: Vec<(&'static str, String)>,
}

impl Variant {
    fn command(&self, tag: &str, n: usize) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if self.needs_id {
            cmd.arg(format!("cfs-bench-{}-{tag}{n}", std::process::id()));
        }
        // The same small environment for every runtime.
        cmd.env_clear().env("PATH", PATH);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // A real fork(2) rather than posix_spawn's vfork: a vfork child execs from *our*
        // address space, and the kernel counts that address space's peak RSS (several MiB
        // of this program) into the child's ru_maxrss. After fork only our few anonymous
        // pages are the child's; the "spawn only" row shows that floor.
        // SAFETY: the hook does nothing, so it is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| Ok(()));
        }
        cmd
    }

    fn describe(&self) -> String {
        let mut line = self.program.display().to_string();
        for a in &self.args {
            line.push(' ');
            line.push_str(a);
        }
        if self.needs_id {
            line.push_str(" ID");
        }
        line
    }
}

struct Sample {
    ms: f64,
    rss_kib: u64,
    cpu_ms: f64,
    ok: bool,
}

/// Starts one container with stdio on /dev/null and waits for it.
fn launch(v: &Variant, tag: &str, n: usize, log: &std::fs::File) -> Result<Sample> {
    let mut cmd = v.command(tag, n);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone()?);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", v.name))?;
    let reaped = sys::wait_child(child.id())?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(Sample {
        ms,
        rss_kib: reaped.maxrss_kib,
        cpu_ms: reaped.cpu_ms,
        ok: reaped.status == 0,
    })
}

/// Runs `v` once, untimed, with its stderr captured: does it work at all here?
fn check(v: &Variant) -> Result<()> {
    let out = v
        .command("check", 0)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", v.program.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            v.describe(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The OCI `config.json` for crun and runc: `final spec` with the options the `final` variant
/// runs with, so every runtime gets the same spec (docker's mounts, capabilities, device
/// rules, masked and read-only paths, seccomp, six namespaces, memory and pids limits) and
/// the bench's root file system. No cgroupsPath: each runtime picks its own.
fn oci_config(final_bin: &Path, rootfs: &Path) -> Result<Vec<u8>> {
    let out = Command::new(final_bin)
        .arg("spec")
        .args(["--hostname", "bench", "--rootfs"])
        .arg(rootfs)
        .args(["--memory", MEMORY, "--pids-limit", PIDS, "true"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run `final spec`")?;
    if !out.status.success() {
        bail!(
            "`final spec` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Is `/sys/fs/cgroup/unified` a cgroup2 mount next to v1 controllers (the hybrid layout)?
fn hybrid_cgroups() -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let fstype_at = |point: &str| {
        info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (left.split(' ').nth(4)? == point).then(|| right.split(' ').next().map(String::from))?
        })
    };
    fstype_at("/sys/fs/cgroup/unified").as_deref() == Some("cgroup2")
        && fstype_at("/sys/fs/cgroup").as_deref() != Some("cgroup2")
}

/// What the benchmark could leave behind: our cgroups (anywhere in any hierarchy), runtime
/// state directories and final's records and writable layers. Other people may run
/// containers on this machine meanwhile: only what is recognisably ours counts.
fn leftovers(skip_unified: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    fn walk(dir: &Path, parent: &str, skip: Option<&Path>, found: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if Some(path.as_path()) == skip {
                continue;
            }
            // final's cgroups are cfs-final/<id>; a live container of somebody else's has
            // its record in the default state directory, ours never do.
            let final_leak =
                parent == "cfs-final" && !Path::new("/run/cfs-final").join(&name).exists();
            if final_leak || name.starts_with("cfs-bench-") || name.starts_with("cfs-step") {
                found.insert(format!("cgroup {}", path.display()));
            }
            walk(&path, &name, skip, found);
        }
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    walk(
        Path::new("/sys/fs/cgroup"),
        "",
        skip_unified.then_some(unified),
        &mut found,
    );
    for dir in ["/run/crun", "/run/runc"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("cfs-bench-") {
                found.insert(format!("state {dir}/{name}"));
            }
        }
    }
    for dir in [FINAL_ROOT, &format!("{FINAL_ROOT}/names"), FINAL_DATA] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "names" {
                found.insert(format!("state {dir}/{name}"));
            }
        }
    }
    found
}

/// Prints one result line (tab-separated) on stdout.
fn emit(fields: &[&str]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", fields.join("\t"));
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

pub fn main(opts: &Options) -> Result<()> {
    if !sys::is_root() {
        bail!("the measuring part must run as root (run `cargo xtask bench`, which starts it through scripts/run-as-root)");
    }
    let work = opts.work.clone().context("--work is required")?;
    let bins = opts.bin_dir.clone().context("--bin-dir is required")?;
    let src = opts.rootfs.clone().context("--rootfs is required")?;

    let before = leftovers(false);
    sys::private_mount_namespace().context("cannot create a private mount namespace")?;
    let hybrid = hybrid_cgroups();
    if hybrid {
        sys::mount_empty_tmpfs("/sys/fs/cgroup/unified")
            .context("cannot hide /sys/fs/cgroup/unified")?;
        emit(&["note", "cgroup v1 hybrid: /sys/fs/cgroup/unified hidden by an empty tmpfs in the benchmark's private mount namespace (crun 1.8 refuses the hybrid layout), for every runtime"]);
    }

    // The same busybox root file system for everybody: a copy of the workspace's default one,
    // so that crun and runc (which create mount points in it) never touch the original.
    let rootfs = work.join("rootfs");
    if !rootfs.join("bin/busybox").exists() {
        let tmp = work.join("rootfs.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&tmp)
            .status()
            .context("cannot run cp")?
            .success();
        if !ok {
            bail!("cannot copy {} to {}", src.display(), tmp.display());
        }
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::rename(&tmp, &rootfs)?;
    }
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    std::fs::write(
        bundle.join("config.json"),
        oci_config(&bins.join("final"), &rootfs)?,
    )?;
    // What the runtimes print on stderr (nothing, when all goes well).
    let log_path = work.join("stderr.log");
    let log = std::fs::File::create(&log_path)?;

    let r = rootfs.to_string_lossy().into_owned();
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut variants = vec![Variant {
        name: "spawn only",
        what: "no container: busybox `true` from the same root file system, started directly (the floor of every number)",
        program: rootfs.join("bin/busybox"),
        args: strings(&["true"]),
        needs_id: false,
        env: Vec::new(),
    }];
    variants.push(Variant {
        name: "final",
        what: "6 namespaces, overlay root, pivot_root, 6 mounts, masked/ro paths, caps, seccomp, memory+pids cgroup, state record",
        program: bins.join("final"),
        args: strings(&["run", "--rm", "--rootfs", &r, "--memory", MEMORY, "--pids-limit", PIDS, "true"]),
        needs_id: false,
        // final's records and writable layers in directories of their own (on the same file
        // systems as its defaults, /run and /var/lib), so that what is left there after the
        // run is ours and nobody else's.
        env: vec![
            ("CFS_FINAL_ROOT", FINAL_ROOT.to_string()),
            ("CFS_FINAL_DATA", FINAL_DATA.to_string()),
        ],
    });
    let bundle_s = bundle.to_string_lossy().into_owned();
    for (name, path, what) in [
        (
            "crun",
            &opts.crun,
            "the same spec, from `final spec` (bind root; cgroup in every v1 controller)",
        ),
        (
            "runc",
            &opts.runc,
            "the same spec, from `final spec` (re-execs itself as `runc init`)",
        ),
    ] {
        if let Some(p) = path {
            variants.push(Variant {
                name,
                what,
                program: p.clone(),
                args: strings(&["run", "--bundle", &bundle_s]),
                needs_id: true,
                env: Vec::new(),
            });
        }
    }
    if let Some(p) = &opts.bwrap {
        variants.push(Variant {
            name: "bwrap",
            what: "--unshare-all, bind root, /proc, /dev; no cgroup, no seccomp, no caps dropped",
            program: p.clone(),
            args: strings(&[
                "--unshare-all",
                "--bind",
                &r,
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--hostname",
                "bench",
                "/bin/true",
            ]),
            needs_id: false,
            env: Vec::new(),
        });
    }
    let step = |name: &'static str, what: &'static str, extra: &[&str]| {
        let mut args = vec!["run".to_string()];
        args.extend(strings(extra));
        args.push("true".into());
        Variant {
            name,
            what,
            program: bins.join(name),
            args,
            needs_id: false,
            env: Vec::new(),
        }
    };
    variants.push(step("step01-uts", "UTS namespace (host file system)", &[]));
    variants.push(step("step02-pid", "+ PID namespace", &[]));
    variants.push(step(
        "step03-mount-chroot",
        "+ mount namespace, chroot",
        &["--rootfs", &r],
    ));
    variants.push(step("step04-proc", "+ /proc", &["--rootfs", &r]));
    variants.push(step(
        "step05-cgroups",
        "+ memory+pids cgroup",
        &["--rootfs", &r, "--memory", MEMORY, "--pids-limit", "64"],
    ));

    // Only what works here is measured; what does not is reported with its error.
    let mut working = Vec::new();
    for v in variants {
        match check(&v) {
            Ok(()) => {
                emit(&["variant", v.name, v.what, &v.describe()]);
                working.push(v);
            }
            Err(err) => {
                let msg = format!("{err:#}").replace(['\n', '\t'], " ");
                progress(&format!("skipping {}: {msg}", v.name));
                emit(&["skip", v.name, &msg]);
            }
        }
    }
    let variants = working;
    let n = variants.len();

    // 1. Warm: rounds of one launch of each variant, back to back; the order rotates every
    // round so that no runtime always follows the same one.
    progress(&format!(
        "warm: {} + {} warm-up rounds of {n} runtimes",
        opts.runs, opts.warmup
    ));
    for round in 0..opts.warmup + opts.runs {
        for k in 0..n {
            let v = &variants[(round + k) % n];
            let s = launch(v, "w", round, &log)?;
            if round >= opts.warmup {
                emit(&[
                    "warm",
                    v.name,
                    &(round - opts.warmup).to_string(),
                    &format!("{:.3}", s.ms),
                    &s.rss_kib.to_string(),
                    &format!("{:.3}", s.cpu_ms),
                    if s.ok { "ok" } else { "failed" },
                ]);
            }
        }
    }

    // 2. After idle: one launch every ~idle_ms, so that the caches the kernel keeps warm in a
    // tight loop (cgroup v1 attach, mostly) have cooled down.
    let idle: Vec<&Variant> = variants
        .iter()
        .filter(|v| ["final", "crun", "runc", "bwrap", "step05-cgroups"].contains(&v.name))
        .collect();
    if opts.idle_runs > 0 && !idle.is_empty() {
        progress(&format!(
            "idle: {} rounds of {} runtimes, one launch every {} ms (~{} s)",
            opts.idle_runs,
            idle.len(),
            opts.idle_ms,
            opts.idle_runs * idle.len() * opts.idle_ms as usize / 1000
        ));
        for round in 0..opts.idle_runs {
            for k in 0..idle.len() {
                let v = idle[(round + k) % idle.len()];
                std::thread::sleep(Duration::from_millis(opts.idle_ms));
                let s = launch(v, "i", round, &log)?;
                emit(&[
                    "idle",
                    v.name,
                    &round.to_string(),
                    &format!("{:.3}", s.ms),
                    &s.rss_kib.to_string(),
                    &format!("{:.3}", s.cpu_ms),
                    if s.ok { "ok" } else { "failed" },
                ]);
            }
        }
    }

    // 3. N containers started at once; the wall time until the last one has exited.
    let conc: Vec<&Variant> = variants
        .iter()
        .filter(|v| ["final", "crun", "runc", "bwrap"].contains(&v.name))
        .collect();
    if opts.concurrent > 0 && opts.batches > 0 {
        progress(&format!(
            "concurrent: {} batches of {} containers per runtime",
            opts.batches, opts.concurrent
        ));
        for batch in 0..opts.batches {
            for k in 0..conc.len() {
                let v = conc[(batch + k) % conc.len()];
                std::thread::sleep(Duration::from_millis(300));
                let start = Instant::now();
                let mut children = Vec::new();
                let mut failed = 0;
                for i in 0..opts.concurrent {
                    let mut cmd = v.command(&format!("c{batch}x"), i);
                    cmd.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(log.try_clone()?);
                    match cmd.spawn() {
                        Ok(c) => children.push(c),
                        Err(_) => failed += 1,
                    }
                }
                let mut peak = 0;
                for c in children {
                    match sys::wait_child(c.id()) {
                        Ok(r) => {
                            peak = peak.max(r.maxrss_kib);
                            if r.status != 0 {
                                failed += 1;
                            }
                        }
                        Err(_) => failed += 1,
                    }
                }
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                emit(&[
                    "conc",
                    v.name,
                    &batch.to_string(),
                    &format!("{:.3}", ms),
                    &failed.to_string(),
                    &opts.concurrent.to_string(),
                ]);
            }
        }
    }

    let said = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Some(first) = said.lines().next() {
        emit(&[
            "note",
            &format!(
                "the runtimes wrote {} lines to stderr, kept in {}; the first: {}",
                said.lines().count(),
                log_path.display(),
                first.replace('\t', " ")
            ),
        ]);
    }

    // 4. Nothing left behind. Runtimes remove cgroups asynchronously at worst; give them a
    // moment before calling anything a leak.
    let mut leaked = Vec::new();
    for _ in 0..20 {
        let after = leftovers(hybrid);
        leaked = after.difference(&before).cloned().collect();
        if leaked.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // final's private state directories must be empty now; then they go.
    for dir in [BENCH_RUN, BENCH_LIB] {
        if leaked.is_empty() {
            let _ = std::fs::remove_dir(format!("{dir}/final/names"));
            let _ = std::fs::remove_dir(format!("{dir}/final"));
            let _ = std::fs::remove_dir(dir);
        }
        if Path::new(dir).exists() {
            leaked.push(format!("state {dir}"));
        }
    }
    if leaked.is_empty() {
        emit(&[
            "clean",
            "our cgroups, crun's and runc's state (/run/crun, /run/runc) and final's records and writable layers",
        ]);
    }
    for l in &leaked {
        emit(&["leak", l]);
    }
    Ok(())
}
