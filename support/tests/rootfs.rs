//! The default root filesystem is usable whichever way it was built: its shell starts in a
//! chroot and finds the programs the lessons use. Runs as root (the workspace runner).

#![cfg(target_os = "linux")]

use cfs_support::{build_rootfs, Source};
use std::path::Path;
use std::process::Command;

fn assert_usable(root: &Path) {
    assert!(
        nix_is_root(),
        "these tests build device nodes and chroot: run them as root (`cargo test` uses sudo)"
    );
    let out = Command::new("chroot")
        .arg(root)
        .args([
            "/bin/sh",
            "-c",
            "echo hello from $(hostname) && ls / && id -u && ps >/dev/null; echo ps=$?",
        ])
        .output()
        .expect("chroot(8) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shell in {} failed: {out:?}",
        root.display()
    );
    assert!(stdout.contains("hello from"), "{stdout}");
    for dir in ["proc", "dev", "tmp", "etc"] {
        assert!(
            stdout.lines().any(|l| l == dir),
            "no /{dir} in the rootfs: {stdout}"
        );
    }
    assert!(stdout.contains("\n0\n"), "id -u should print 0: {stdout}");
    assert!(root.join("dev/null").exists() && root.join("dev/zero").exists());
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn built_from_the_hosts_own_programs() {
    let root = scratch("rootfs-host");
    let source = build_rootfs(&root, Source::HostPrograms).expect("builds");
    assert!(source.contains("host"), "{source}");
    assert_usable(&root);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn built_automatically() {
    let root = scratch("rootfs-auto");
    build_rootfs(&root, Source::Auto).expect("builds");
    assert_usable(&root);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_missing_rootfs_says_how_to_fix_it() {
    let err = cfs_support::rootfs(Some(Path::new("/nonexistent/rootfs"))).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("/nonexistent/rootfs")
            && text.contains("does not exist")
            && text.contains("fix:"),
        "{text}"
    );
    let err = cfs_support::check_rootfs(Path::new("/proc/self")).unwrap_err();
    assert!(
        format!("{err:#}").contains("does not look like a root filesystem"),
        "{err:#}"
    );
}
