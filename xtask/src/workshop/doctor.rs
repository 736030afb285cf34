//! `cargo xtask workshop doctor`: what a participant runs before the workshop day. Each item
//! says what it found and, when something is missing, the fix. Runs as you; the one thing
//! that needs root (creating namespaces) goes through scripts/run-as-root like everything else.

use crate::{target_dir, workspace};
use anyhow::{bail, Result};
use std::process::{Command, Stdio};

enum Verdict {
    Good(String),
    /// Works, but worth knowing (and the fix).
    Warn(String, String),
    /// Blocks the workshop (and the fix).
    Fail(String, String),
}
use Verdict::*;

/// A named item of the self-check.
type Item = (&'static str, fn() -> Verdict);

pub fn run() -> Result<()> {
    println!("Checking this machine for the container-from-scratch workshop.\n");
    let items: Vec<Item> = vec![
        ("Linux", linux),
        ("kernel", kernel),
        ("root or sudo", root_or_sudo),
        ("Rust", rust),
        ("C linker", linker),
        ("cgroups", cgroups),
        ("root filesystem", rootfs),
        ("namespaces", namespaces),
        ("disk space", disk),
        ("prebuilt", prebuilt),
    ];
    let (mut fails, mut warns) = (0, 0);
    for (name, check) in items {
        match check() {
            Good(found) => println!("  ok    {name:<16} {found}"),
            Warn(found, fix) => {
                warns += 1;
                println!("  note  {name:<16} {found}\n        {:<16} fix: {fix}", "");
            }
            Fail(found, fix) => {
                fails += 1;
                println!("  FAIL  {name:<16} {found}\n        {:<16} fix: {fix}", "");
            }
        }
    }
    println!();
    if fails > 0 {
        bail!("{fails} problem(s) to fix before the workshop (and {warns} note(s))");
    }
    println!("Ready for the workshop ({warns} note(s)).");
    Ok(())
}

const VM: &str = "use a Linux VM: on a Mac `multipass launch --name cfs 24.04` or UTM, on Windows \
                  WSL 2 (Ubuntu) or multipass; then install Rust and clone this repository inside it";

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn linux() -> Verdict {
    if cfg!(target_os = "linux") {
        let distro = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "Linux".into());
        if std::path::Path::new("/.dockerenv").exists() || std::env::var_os("container").is_some() {
            return Warn(
                format!("{distro}, inside a container"),
                "namespaces and cgroups may be refused in a container: use a VM or a \
                 `docker run --privileged` container"
                    .into(),
            );
        }
        Good(distro)
    } else {
        Fail(
            format!(
                "{}: containers are a Linux kernel feature",
                std::env::consts::OS
            ),
            VM.into(),
        )
    }
}

fn kernel() -> Verdict {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (4, 18) {
        Good(release.to_string())
    } else {
        Fail(
            format!("{release}: older than 4.18"),
            "use a distribution from the last five years (Debian 11+, Ubuntu 20.04+, Fedora)"
                .into(),
        )
    }
}

fn root_or_sudo() -> Verdict {
    if output("id", &["-u"]).as_deref() == Some("0") {
        return Good("you are root".into());
    }
    if output("sudo", &["-n", "true"]).is_some() {
        return Good("sudo works (without a password prompt right now)".into());
    }
    if output("sh", &["-c", "command -v sudo"]).is_some() {
        let groups = output("id", &["-Gn"]).unwrap_or_default();
        if groups
            .split_whitespace()
            .any(|g| g == "sudo" || g == "wheel")
        {
            return Good("sudo is installed and you may use it (it will ask your password)".into());
        }
        return Warn(
            "sudo is installed; you are not in the sudo or wheel group".into(),
            "check that `sudo true` works; if not, as root: usermod -aG sudo $USER, then log in again"
                .into(),
        );
    }
    Fail(
        "not root, and sudo is not installed".into(),
        "as root: apt install sudo && usermod -aG sudo $USER (dnf install sudo on Fedora), then \
         log in again"
            .into(),
    )
}

fn rust() -> Verdict {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap_or_default();
    let wanted = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let Some(rustc) = output("rustc", &["--version"]) else {
        return Fail(
            "rustc not found".into(),
            "install Rust with rustup: https://rustup.rs".into(),
        );
    };
    let have = rustc.split_whitespace().nth(1).unwrap_or("0").to_string();
    if version(&have) >= version(&wanted) {
        Good(format!("{rustc} (this workspace needs {wanted}+)"))
    } else {
        Fail(
            format!("{rustc}, this workspace needs {wanted} or newer"),
            "rustup update stable".into(),
        )
    }
}

fn linker() -> Verdict {
    match output("cc", &["--version"]) {
        Some(v) => Good(v.lines().next().unwrap_or("cc").to_string()),
        None => Fail(
            "no C compiler/linker (cc): Rust needs one to link".into(),
            "apt install build-essential (Debian/Ubuntu), dnf install gcc (Fedora)".into(),
        ),
    }
}

fn cgroups() -> Verdict {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fstype = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"/sys/fs/cgroup")).then(|| f.get(2).copied().unwrap_or("").to_string())
    });
    let wanted = ["pids", "memory", "cpu"];
    let (version, available): (&str, Vec<String>) = match fstype.as_deref() {
        Some("cgroup2") => {
            let c =
                std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
            ("v2", c.split_whitespace().map(String::from).collect())
        }
        Some(_) => {
            // v1 or hybrid: a controller counts when it is enabled and mounted.
            let enabled: Vec<String> = std::fs::read_to_string("/proc/cgroups")
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.get(3) == Some(&"1")).then(|| f[0].to_string())
                })
                .collect();
            let mounted: Vec<String> = mounts
                .lines()
                .filter(|l| l.split_whitespace().nth(2) == Some("cgroup"))
                .filter_map(|l| l.split_whitespace().nth(3))
                .flat_map(|opts| opts.split(',').map(String::from))
                .collect();
            let hybrid = mounts.lines().any(|l| l.contains(" cgroup2 "));
            (
                if hybrid { "v1 (hybrid)" } else { "v1" },
                enabled
                    .into_iter()
                    .filter(|c| mounted.contains(c))
                    .collect(),
            )
        }
        None => {
            return Fail(
                "nothing mounted on /sys/fs/cgroup".into(),
                "use a systemd-based distribution, or mount cgroup2 on /sys/fs/cgroup".into(),
            )
        }
    };
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !available.iter().any(|a| a == w))
        .collect();
    if missing.is_empty() {
        Good(format!(
            "cgroup {version}, controllers pids, memory and cpu available"
        ))
    } else {
        Fail(
            format!(
                "cgroup {version}, missing controller(s): {}",
                missing.join(", ")
            ),
            "exercise 5 needs them. Memory disabled (Raspberry Pi OS): add cgroup_enable=memory \
             to the kernel command line and reboot; on v2 in a container or VM, enable them in \
             the parent cgroup's cgroup.subtree_control"
                .into(),
        )
    }
}

fn rootfs() -> Verdict {
    let default = workspace().join(".rootfs/default");
    if default.join(".cfs-rootfs").exists() {
        return Good(format!("{} is built", default.display()));
    }
    let busybox = output("sh", &["-c", "command -v busybox"]);
    match busybox {
        Some(path) => {
            let file = output("file", &["-L", &path]).unwrap_or_default();
            if file.contains("statically linked") || file.contains("static-pie") {
                Good(format!(
                    "static busybox at {path} (the rootfs is built from it on first use)"
                ))
            } else {
                Warn(
                    format!("busybox at {path} is not static: the rootfs will use the host's own programs"),
                    "apt install busybox-static (a smaller, more complete rootfs)".into(),
                )
            }
        }
        None if output("sh", &["-c", "command -v sh && command -v ls"]).is_some() => Warn(
            "no busybox: the rootfs will be made of the host's own programs and libraries".into(),
            "apt install busybox-static (dnf install busybox on Fedora) for a more complete one"
                .into(),
        ),
        None => Fail(
            "no busybox and no host programs to build a root filesystem from".into(),
            "apt install busybox-static".into(),
        ),
    }
}

fn namespaces() -> Verdict {
    let Some(unshare) = output("sh", &["-c", "command -v unshare"]) else {
        return Fail(
            "unshare(1) not found".into(),
            "apt install util-linux (the checks use it too)".into(),
        );
    };
    // As root, like the steps: this may ask for your sudo password once.
    let status = Command::new(workspace().join("scripts/run-as-root"))
        .arg(&unshare)
        .args([
            "--uts",
            "--pid",
            "--mount",
            "--fork",
            "--propagation",
            "private",
            "true",
        ])
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match status {
        std::result::Result::Ok(out) if out.status.success() => {
            Good("unshare --uts --pid --mount works as root".into())
        }
        std::result::Result::Ok(out) => Fail(
            format!(
                "unshare --uts --pid --mount failed as root: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "in a container: use a VM (or --privileged); otherwise check that sudo works".into(),
        ),
        Err(e) => Fail(
            format!("cannot run scripts/run-as-root: {e}"),
            "run doctor from the clone".into(),
        ),
    }
}

fn disk() -> Verdict {
    let ws = workspace();
    let free_kib = output("df", &["-Pk", &ws.to_string_lossy()]).and_then(|t| {
        t.lines()
            .nth(1)?
            .split_whitespace()
            .nth(3)?
            .parse::<u64>()
            .ok()
    });
    match free_kib {
        Some(kib) if kib >= 2 * 1024 * 1024 => Good(format!("{} GiB free", kib / 1024 / 1024)),
        Some(kib) => Fail(
            format!("{} MiB free next to the workspace", kib / 1024),
            "the build needs about 2 GiB: free some space (`cargo clean` in other projects)".into(),
        ),
        None => Warn(
            "cannot tell (df failed)".into(),
            "make sure 2 GiB are free".into(),
        ),
    }
}

fn prebuilt() -> Verdict {
    if target_dir().join("debug/step05-cgroups").exists() {
        Good("the workspace is built: no downloads or long builds on the day".into())
    } else {
        Warn(
            "the workspace is not built yet".into(),
            "run `cargo build` now, at home: it downloads and compiles the dependencies once \
             (conference wifi is slow), then the exercises build in seconds"
                .into(),
        )
    }
}
