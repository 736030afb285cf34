//! Workspace tooling, run as `cargo xtask <command>` (an alias in .cargo/config.toml).
//!
//! xtask runs as you, never as root: where a command needs root it runs a workspace binary
//! through the same runner `cargo run` uses (scripts/run-as-root).

mod bench;
mod book;
mod workshop;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  rootfs [--from-host]
                    rebuild the default root filesystem in .rootfs/default (from a static
                    busybox if there is one; --from-host: from the host's own programs)
  v2-test [FILTER]  run the step05 and final behaviour tests inside a pure cgroup v2 guest
                    (QEMU; needs qemu-system-x86, busybox-static, cpio, xz-utils)
  workshop <cmd>    the workshop exercises: list, start N, check N, hint N, solution N,
                    diff N, watch N, doctor, dev-check (see `cargo xtask workshop help`)
  book              check the book (diffs fresh, includes, links, transcripts) and build it
  book-diffs        regenerate the step diffs in learning_docs/src/generated (--check: compare)
  book-lint         check the book's includes, anchors, links and pages
  book-transcripts  run the book's try-it transcripts and compare their output [FILTER]
  bench [--runs N] [--build-times]
                    benchmark final and the steps against crun, runc and bubblewrap; writes
                    bench/RESULTS.md (see `cargo xtask bench --help`)
";

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("rootfs") => rootfs(rest),
        Some("v2-test") => v2_test(rest),
        Some("workshop") => workshop::run(rest),
        Some("book") => book::all(rest),
        Some("book-diffs") => book::diffs(rest),
        Some("book-lint") => book::lint_cmd(rest),
        Some("book-transcripts") => book::transcripts(rest),
        Some("bench") => bench::run(rest),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

/// The workspace root (xtask/ sits in it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf()
}

/// Runs `cmd` in the workspace; fails if it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(workspace());
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd);
    }
    Ok(())
}

/// The cargo that runs us (`cargo xtask` sets $CARGO).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo xtask rootfs`: rebuild the default root filesystem on purpose (as root, via the
/// runner, like every step does on first use).
fn rootfs(options: &[String]) -> Result<()> {
    run_cmd(cfs_rootfs().args(options))
}

/// `cargo run` of support's `cfs-rootfs` (it builds as root, through the runner).
fn cfs_rootfs() -> Command {
    let mut cmd = cargo();
    cmd.current_dir(workspace()).args([
        "run",
        "--quiet",
        "-p",
        "cfs-support",
        "--bin",
        "cfs-rootfs",
        "--",
    ]);
    cmd
}

/// Builds the test binaries of `package` and returns their paths (cargo's JSON messages).
pub fn test_binaries(package: &str) -> Result<Vec<PathBuf>> {
    let out = cargo()
        .current_dir(workspace())
        .args(["test", "--no-run", "--message-format=json", "-p", package])
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "building the tests of {package} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| l.contains("\"profile\"") && l.contains("\"test\":true"))
        .filter_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .collect())
}

/// `cargo xtask v2-test [FILTER...]`: behaviour tests inside a throw-away pure cgroup v2 guest,
/// as on Ubuntu 22.04+, Fedora or Debian 12 desktops, whatever this host has: step05's (which
/// re-run every step's checks) and final's. One guest boot per test binary; FILTER goes to
/// each test binary.
fn v2_test(extra: &[String]) -> Result<()> {
    let ws = workspace();
    let debug = target_dir().join("debug");
    run_cmd(cargo().args(["build", "--quiet", "-p", "step05-cgroups", "-p", "final"]))?;
    let rootfs = default_rootfs()?;
    let final_bins = vec![
        debug.join("final"),
        debug.join("cfs-probe"),
        // the pty tests run their commands under script(1); `final spec`'s test runs runc
        PathBuf::from("/usr/bin/script"),
        PathBuf::from("/usr/sbin/runc"),
    ];
    // The rootless tests run final as the users they create on the host (`cargo test -p
    // final --test rootless` makes them), through setpriv, with newuidmap's subuid ranges.
    let mut rootless = final_bins.clone();
    rootless.extend(
        [
            "/usr/bin/setpriv",
            "/usr/bin/newuidmap",
            "/usr/bin/newgidmap",
            "/etc/passwd",
            "/etc/group",
            "/etc/subuid",
            "/etc/subgid",
            "/home/cfs-rootless",
        ]
        .map(PathBuf::from),
    );
    if !Path::new("/home/cfs-rootless").exists() {
        bail!(
            "the rootless tests' user cfs-rootless does not exist yet: run `cargo test -p final \
             --test rootless` once first (it creates it)"
        );
    }
    // (package, test binary, what it needs in the guest besides itself, its arguments)
    let suites: Vec<(&str, &str, Vec<PathBuf>, Vec<&str>)> = vec![
        (
            "step05-cgroups",
            "behaviour",
            vec![debug.join("step05-cgroups")],
            vec![],
        ),
        ("final", "isolation", final_bins.clone(), vec![]),
        ("final", "options", final_bins.clone(), vec![]),
        ("final", "errors", final_bins.clone(), vec![]),
        ("final", "lifecycle", final_bins.clone(), vec![]),
        ("final", "leftovers", final_bins.clone(), vec![]),
        ("final", "oci", final_bins.clone(), vec![]),
        // the guest has no nftables and no bridge module: the none/host/-p checks only
        (
            "final",
            "network",
            final_bins.clone(),
            vec![
                "--exact",
                "none_is_the_default_and_has_only_loopback",
                "host_shares_the_host_network_namespace",
                "publish_needs_bridge",
            ],
        ),
        ("final", "rootless", rootless, vec!["--test-threads=1"]),
    ];
    let mut failed = Vec::new();
    let mut built: Vec<(&str, Vec<PathBuf>)> = Vec::new();
    for (package, name, needs, args) in suites {
        if !built.iter().any(|(p, _)| *p == package) {
            built.push((package, test_binaries(package)?));
        }
        let binaries = &built
            .iter()
            .find(|(p, _)| *p == package)
            .expect("just built")
            .1;
        let binary = binaries
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}-")))
            })
            .with_context(|| format!("no test binary {name} in {package}"))?;
        println!("==== {package}/{name} in a pure cgroup v2 guest");
        let mut cmd = Command::new(ws.join("scripts/v2-guest.sh"));
        for path in needs.iter().chain([&rootfs]) {
            cmd.arg("--with").arg(path);
        }
        cmd.arg(binary).args(args).args(extra);
        if let Err(err) = run_cmd(&mut cmd) {
            eprintln!("xtask: {err:#}");
            failed.push(format!("{package}/{name}"));
        }
    }
    if !failed.is_empty() {
        bail!("failed in the v2 guest: {}", failed.join(", "));
    }
    Ok(())
}

/// The default root filesystem, built first (as root, through the runner) if it is missing.
/// Its one-time build note goes to stderr here, not into anything a caller captures later.
pub fn default_rootfs() -> Result<PathBuf> {
    let out = cfs_rootfs()
        .arg("--if-missing")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cfs-rootfs")?;
    if !out.status.success() {
        bail!("cannot build the default root filesystem (try `cargo xtask rootfs`)");
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(match dir.is_empty() {
        true => workspace().join(".rootfs/default"),
        false => PathBuf::from(dir),
    })
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}
