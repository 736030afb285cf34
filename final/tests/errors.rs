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
    oci_create_refusals();
    assert_eq!(before, snapshot(), "a failed start left something behind");
}

/// `final create` on bundles it cannot run: a command the container does not have fails
/// create itself (as runc's does) with 127; spec fields final does not implement are refused
/// by name, not skipped; a missing bundle is named.
fn oci_create_refusals() {
    // A command the container does not have: create fails (as runc's does), 127.
    let dir = bundle(&["no-such-command"]);
    let out = dir.join("out.log");
    let id = unique("oci-404");
    assert_eq!(oci_create(&dir, &id, &out, None), 127);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("no-such-command"));
    assert_eq!(final_(&["state", &id]).code, 125);
    // Spec fields final does not implement: refused by name, not skipped.
    let config = dir.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    spec["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/true"}]});
    spec["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    std::fs::write(&config, spec.to_string()).unwrap();
    let id = unique("oci-hooks");
    assert_eq!(oci_create(&dir, &id, &out, None), 125);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("hooks") && text.contains("linux.sysctl") && text.contains("fix:"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // No bundle at all.
    let r = final_(&["create", "--bundle", "/no/such/bundle", "x"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("/no/such/bundle"), "{}", r.stderr);
}
