//! `final doctor` reports this machine's facts and the fix for each problem.
#![cfg(target_os = "linux")]

mod common;
use common::*;

#[test]
fn doctor_reports_the_cgroup_layout_and_checks() {
    let r = final_(&["doctor"]);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let layout = if v2 { "cgroups: v2" } else { "cgroups: v1" };
    assert!(r.stdout.contains(layout), "{}", r.stdout);
    for what in [
        "running as root",
        "overlayfs",
        "seccomp",
        "cgroup controller memory",
        "default root filesystem",
    ] {
        assert!(
            r.stdout.contains(what),
            "doctor does not check {what}:\n{}",
            r.stdout
        );
    }
    // Every failed check comes with a fix, and the exit status says whether any failed.
    let failed = r.stdout.lines().filter(|l| l.starts_with("FAIL")).count();
    assert_eq!(r.stdout.matches("fix: ").count(), failed);
    assert_eq!(r.code, if failed == 0 { 0 } else { 1 });
}
