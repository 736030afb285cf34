//! Bad input must be refused with a reason and exit status 125, leaving nothing behind.
//! One test in its own binary, so no other container starts while it compares the host.
#![cfg(target_os = "linux")]

mod common;
use common::*;

fn refused(args: &[&str], needle: &str) {
    let r = final_(args);
    assert_eq!(r.code, 125, "final {args:?}: {}", r.stderr);
    assert!(
        r.stderr.contains(needle),
        "final {args:?}: expected {needle:?} in:\n{}",
        r.stderr
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    // One good run first: the parent directories (cfs-final/ in the cgroup trees, names/)
    // are created once and kept.
    sh(&[], "true");
    let before = snapshot();
    refused(
        &["run", "--rootfs", "/no/such/rootfs", "true"],
        "/no/such/rootfs",
    );
    refused(&["run", "-v", "/no/such/src:/x", "true"], "/no/such/src");
    refused(&["run", "-v", "/tmp:relative", "true"], "absolute");
    refused(&["run", "--label", "novalue", "true"], "KEY=VALUE");
    refused(&["run", "-e", "=x", "true"], "KEY=VALUE");
    refused(&["run", "--memory", "12q", "true"], "12q");
    refused(&["run", "--cpus", "-1", "true"], "--cpus");
    refused(
        &["run", "--ulimit", "nofile=2048:1024", "true"],
        "above the hard",
    );
    refused(&["run", "--ulimit", "files=10", "true"], "unknown type");
    refused(&["run", "-u", "nosuchuser", "true"], "unknown user");
    refused(&["run", "-w", "/etc/passwd", "true"], "not a directory");
    let name = unique("dup");
    ok(&["run", "--name", &name, "true"]);
    refused(&["run", "--name", &name, "true"], "already in use");
    ok(&["rm", &name]);
    assert_eq!(before, snapshot(), "a failed start left something behind");
}
