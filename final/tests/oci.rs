//! The OCI verbs on a bundle: `create`, `start`, `state`, `kill`, `delete`, as runc's callers
//! use them, asserted from outside: the created container exists (pid, namespaces, cgroup)
//! while its command has not run; `start` runs it with the caller's stdio; `state` follows
//! the runtime spec's states; nothing is left after `delete`. The bundle's config.json comes
//! from `final spec`, with the root given relative to the bundle.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Deletes the container when dropped, so a failed assertion leaves nothing waiting.
struct Deleted<'a>(&'a str);

impl Drop for Deleted<'_> {
    fn drop(&mut self) {
        let _ = final_(&["delete", "--force", self.0]);
    }
}

fn state(id: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["state", id])).unwrap()
}

/// The container's record id (for its state directory and cgroups).
fn record_id(name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(&["inspect", name])).unwrap();
    v[0]["id"].as_str().unwrap().to_string()
}

fn traces(id: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = ["/run/cfs-final", "/var/lib/cfs-final"]
        .iter()
        .map(|d| Path::new(d).join(id))
        .collect();
    for hier in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        found.push(hier.path().join("cfs-final").join(id));
    }
    found.push(Path::new("/sys/fs/cgroup/cfs-final").join(id));
    found.into_iter().filter(|p| p.exists()).collect()
}

#[test]
fn create_start_state_delete() {
    let dir = bundle(&[
        "sh",
        "-c",
        "echo started as $(hostname) in $(readlink /proc/1/ns/pid); sleep 1; echo bye",
    ]);
    let id = unique("oci");
    let out = dir.join("out.log");
    let pid_file = dir.join("pid");
    assert_eq!(oci_create(&dir, &id, &out, Some(&pid_file)), 0);
    let _guard = Deleted(&id);

    // Created: the process exists, in its own namespaces and cgroup, and waits.
    let created = state(&id);
    assert_eq!(created["status"], "created");
    assert_eq!(created["id"], id.as_str());
    assert_eq!(created["ociVersion"], "1.0.2");
    assert_eq!(
        created["bundle"],
        std::fs::canonicalize(&dir).unwrap().to_str().unwrap()
    );
    let pid = created["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    let pid_s = pid.to_string();
    for ns in ["pid", "mnt", "uts", "net", "ipc"] {
        assert_ne!(ns_inode(&pid_s, ns), ns_inode("self", ns), "{ns}");
    }
    let rec = record_id(&id);
    assert!(
        !traces(&rec).is_empty(),
        "a created container has a cgroup and state"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "the command ran before start"
    );
    assert!(
        ok(&["ps", "-a"]).contains("created"),
        "ps -a lists created containers"
    );

    // Start: the command runs, with the caller's stdio.
    ok(&["start", &id]);
    assert_eq!(state(&id)["status"], "running");
    wait_for("the command to end", || state(&id)["status"] == "stopped");
    let stopped = state(&id);
    assert_eq!(stopped["pid"], 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("started as oci in pid:["), "{text}");
    assert!(text.ends_with("bye\n"), "{text}");
    assert_eq!(final_(&["start", &id]).code, 125, "started twice");

    // Delete: nothing left.
    ok(&["delete", &id]);
    assert_eq!(final_(&["state", &id]).code, 125);
    assert_eq!(traces(&rec), Vec::<PathBuf>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_created_container_can_be_killed_or_deleted_with_force() {
    let dir = bundle(&["sh", "-c", "echo ran"]);
    let out = dir.join("out.log");
    // kill: the waiting process dies; the container is stopped and its command never ran.
    let id = unique("oci-kill");
    assert_eq!(oci_create(&dir, &id, &out, None), 0);
    let _guard = Deleted(&id);
    ok(&["kill", &id, "KILL"]);
    wait_for("stopped", || state(&id)["status"] == "stopped");
    ok(&["delete", &id]);
    // delete without --force refuses a created container; with it, removes everything.
    let id = unique("oci-del");
    assert_eq!(oci_create(&dir, &id, &out, None), 0);
    let _guard2 = Deleted(&id);
    let rec = record_id(&id);
    let refused = final_(&["delete", &id]);
    assert_eq!(refused.code, 125);
    assert!(refused.stderr.contains("is created"), "{}", refused.stderr);
    ok(&["delete", "--force", &id]);
    assert_eq!(traces(&rec), Vec::<PathBuf>::new());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    let _ = std::fs::remove_dir_all(&dir);
}
