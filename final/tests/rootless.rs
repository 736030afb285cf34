//! Rootless containers and `--userns`, asserted from outside.
//!
//! The test binary runs as root (the workspace's runner); the rootless cases drop to
//! unprivileged users created here: `cfs-rootless` (useradd gives it an /etc/subuid range,
//! so newuidmap maps 65536 ids) and `cfs-rootless-sys`, a system user without a range (the
//! single-id map, written directly). They run `final` through setpriv(1) with a clean
//! environment. Needs root, useradd (passwd) and newuidmap/newgidmap (uidmap). Volumes go to
//! /mnt, a directory the image has: without overlayfs (the v2 guest) a user namespace cannot
//! create new mount points in the image (it belongs to unmapped host root).
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const USER: &str = "cfs-rootless";
const SYS_USER: &str = "cfs-rootless-sys";

fn passwd_field(user: &str, field: usize) -> Option<String> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == user).then(|| f[field].to_string())
        })
}

/// Creates the test users once (kept afterwards, like a CI setup step would).
fn ensure_user(user: &str, system: bool) -> u32 {
    require_root();
    if passwd_field(user, 2).is_none() {
        let mut cmd = Command::new("useradd");
        cmd.args(["-m", "-s", "/bin/sh"]);
        if system {
            cmd.arg("-r");
        }
        let st = cmd.arg(user).status().expect(
            "cannot run useradd: the rootless tests create their users (apt install passwd)",
        );
        // Another test may have created it at the same moment.
        assert!(
            st.success() || passwd_field(user, 2).is_some(),
            "useradd {user} failed"
        );
    }
    passwd_field(user, 2).unwrap().parse().unwrap()
}

/// The final binary and a rootfs where every user can reach them (the workspace may sit in
/// a directory only root can enter, e.g. /root): copies under /tmp if needed.
fn reachable() -> &'static (PathBuf, PathBuf) {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PATHS.get_or_init(|| {
        let uid = ensure_user(USER, false);
        let can = |what: &str, path: &Path| {
            Command::new("setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "test",
                    what,
                ])
                .arg(path)
                .status()
                .expect("setpriv (util-linux) is needed for the rootless tests")
                .success()
        };
        let rootfs = cfs_support::default_rootfs_dir();
        assert!(
            rootfs.join("bin/busybox").exists() || rootfs.join("bin/sh").exists(),
            "no default rootfs at {}: run `cargo run -p final -- run true` once",
            rootfs.display()
        );
        let dir = PathBuf::from(format!("/tmp/cfs-rootless-test-{}", std::process::id()));
        let bin = if can("-x", Path::new(FINAL)) {
            PathBuf::from(FINAL)
        } else {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let copy = dir.join("final");
            std::fs::copy(FINAL, &copy).unwrap();
            copy
        };
        let rootfs = if can("-x", &rootfs.join("bin")) {
            rootfs
        } else {
            let copy = dir.join("rootfs");
            let st = Command::new("cp")
                .args(["-a"])
                .arg(&rootfs)
                .arg(&copy)
                .status()
                .unwrap();
            assert!(st.success(), "cannot copy the rootfs to {}", copy.display());
            copy
        };
        (bin, rootfs)
    })
}

/// `final ARGS...` as `user` (no root, no inherited environment but HOME/PATH and `env`).
fn as_user(user: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    as_user_in(None, user, env, args)
}

/// [`as_user`], started in the cgroup v2 directory `cgroup` (as a login session or a user's
/// service manager puts the user's processes in their cgroup) when given.
fn as_user_in(cgroup: Option<&Path>, user: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let uid = ensure_user(user, user == SYS_USER);
    let home = passwd_field(user, 5).unwrap();
    let (bin, _) = reachable();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--init-groups",
        "--",
        "env",
        "-i",
        &format!("HOME={home}"),
        "PATH=/usr/local/bin:/usr/bin:/bin",
    ]);
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(bin).args(args).current_dir("/");
    // Opened here; the child (still root, before setpriv) moves itself by writing "0": no
    // allocation between fork and exec.
    let procs = cgroup.map(|dir| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .unwrap()
    });
    if let Some(procs) = procs.as_ref() {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = procs.as_raw_fd();
        // SAFETY: one write(2) in the child before exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    drop(procs);
    finish(out)
}

/// `final run --rm --memory 32m true` as the rootless user, from the test's own cgroup.
fn run_with_a_memory_limit() -> Run {
    let rootfs = reachable().1.to_string_lossy().into_owned();
    as_user(
        USER,
        &[],
        &[
            "run", "--rm", "--rootfs", &rootfs, "--memory", "32m", "true",
        ],
    )
}

/// `final run --rm --rootfs R [opts] sh -c SCRIPT` as `user`, asserting success.
fn user_sh(user: &str, opts: &[&str], script: &str) -> Run {
    let rootfs = reachable().1.to_string_lossy().into_owned();
    let mut args = vec!["run", "--rm", "--rootfs", &rootfs];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["sh", "-c", script]);
    let r = as_user(user, &[], &args);
    assert_eq!(r.code, 0, "{args:?} as {user}: {}{}", r.stdout, r.stderr);
    r
}

fn subuid_range(user: &str) -> (u32, u32) {
    let text = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == user).then(|| (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .unwrap_or_else(|| {
            panic!("useradd gave {user} no /etc/subuid range (is uidmap installed, so /etc/subuid exists?)")
        })
}

fn map_lines(text: &str) -> Vec<Vec<u32>> {
    text.lines()
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .filter(|v: &Vec<u32>| v.len() == 3)
        .collect()
}

#[test]
fn rootless_is_root_inside_with_the_subuid_range() {
    let uid = ensure_user(USER, false);
    let (start, count) = subuid_range(USER);
    let r = user_sh(USER, &[], "id -u; id -g; cat /proc/self/uid_map");
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("0"));
    assert_eq!(lines.next(), Some("0"));
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        map_lines(&rest.join("\n")),
        vec![vec![0, uid, 1], vec![1, start, count]]
    );
}

#[test]
fn rootless_without_a_range_maps_only_the_user() {
    let uid = ensure_user(SYS_USER, true);
    let r = user_sh(
        SYS_USER,
        &[],
        "id -u; cat /proc/self/uid_map; cat /proc/self/setgroups",
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(map_lines(lines[1]), vec![vec![0, uid, 1]]);
    assert_eq!(lines[2], "deny");
}

#[test]
fn rootless_namespaces_are_all_new_and_the_command_really_runs_as_the_user() {
    let uid = ensure_user(USER, false);
    let r = user_sh(
        USER,
        &[],
        "for n in user pid mnt net uts ipc; do readlink /proc/self/ns/$n; done; hostname; ls /sys/class/net; touch /tmp/t && echo tmp-writable",
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    for (i, n) in ["user", "pid", "mnt", "net", "uts", "ipc"]
        .iter()
        .enumerate()
    {
        assert_ne!(
            lines[i],
            ns_inode("self", n),
            "{n} namespace shared with the host"
        );
    }
    assert!(r.stdout.contains("\nlo\n"), "{}", r.stdout);
    assert!(r.stdout.contains("tmp-writable"), "{}", r.stdout);
    // From outside, a detached rootless container's processes belong to the user.
    let rootfs = reachable().1.to_string_lossy().into_owned();
    let name = unique("rl");
    let run = as_user(
        USER,
        &[],
        &[
            "run", "-d", "--name", &name, "--rootfs", &rootfs, "sleep", "30",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ps = as_user(USER, &[], &["inspect", &name]);
    let v: serde_json::Value = serde_json::from_str(&ps.stdout).unwrap();
    let pid = v[0]["pid"].as_i64().unwrap();
    let owner = std::fs::metadata(format!("/proc/{pid}")).unwrap().uid();
    let exec = as_user(USER, &[], &["exec", &name, "id", "-u"]);
    let rm = as_user(USER, &[], &["rm", "-f", &name]);
    assert_eq!(
        owner, uid,
        "the container's process is not the user's on the host"
    );
    assert_eq!(exec.code, 0, "{}", exec.stderr);
    assert_eq!(exec.stdout.trim(), "0");
    assert_eq!(rm.code, 0, "{}", rm.stderr);
}

#[test]
fn files_root_creates_on_a_volume_belong_to_the_user() {
    let uid = ensure_user(USER, false);
    let dir = std::env::temp_dir().join(unique("cfs-rl-vol"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    let vol = format!("{}:/mnt", dir.display());
    user_sh(
        USER,
        &["-v", &vol],
        "echo made-inside > /mnt/file; chown 0:0 /mnt/file",
    );
    let meta = std::fs::metadata(dir.join("file")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(meta.uid(), uid, "root inside must be the user outside");
}

#[test]
fn the_container_cannot_write_what_the_user_cannot() {
    ensure_user(USER, false);
    // A root-owned directory (0755) and a root-owned file (0644) of the host.
    let dir = std::env::temp_dir().join(unique("cfs-rl-ro"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("owned-by-root"), "host\n").unwrap();
    let vol = format!("{}:/mnt", dir.display());
    let r = user_sh(
        USER,
        &["-v", &vol],
        "echo x > /mnt/new 2>/dev/null && echo created; echo x >> /mnt/owned-by-root 2>/dev/null && echo appended; rm -f /mnt/owned-by-root 2>/dev/null; echo done",
    );
    let content = std::fs::read_to_string(dir.join("owned-by-root")).unwrap();
    let created = dir.join("new").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(r.stdout.trim(), "done", "{}", r.stdout);
    assert_eq!(content, "host\n");
    assert!(!created);
}

#[test]
fn rootless_state_lives_under_xdg_runtime_dir() {
    let uid = ensure_user(USER, false);
    let xdg = std::env::temp_dir().join(unique("cfs-rl-xdg"));
    std::fs::create_dir_all(&xdg).unwrap();
    std::os::unix::fs::chown(&xdg, Some(uid), Some(uid)).unwrap();
    let xdg_s = xdg.to_string_lossy().into_owned();
    let rootfs = reachable().1.to_string_lossy().into_owned();
    let name = unique("xdg");
    let env = [("XDG_RUNTIME_DIR", xdg_s.as_str())];
    let r = as_user(
        USER,
        &env,
        &[
            "run", "-d", "--name", &name, "--rootfs", &rootfs, "sleep", "30",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    let state = xdg.join("cfs-final").join(&id).join("state.json");
    let existed = state.exists();
    let in_roots_dir = Path::new("/run/cfs-final").join(&id).exists();
    let rm = as_user(USER, &env, &["rm", "-f", &name]);
    let gone = !xdg.join("cfs-final").join(&id).exists();
    let _ = std::fs::remove_dir_all(&xdg);
    assert!(existed, "no {}", state.display());
    assert!(!in_roots_dir);
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert!(gone, "rm left the state directory");
}

#[test]
fn rootless_limits_and_bridge_are_explained() {
    ensure_user(USER, false);
    let rootfs = reachable().1.to_string_lossy().into_owned();
    let r = run_with_a_memory_limit();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The user's own cgroup (here: the test's, root's) is not delegated to it; the note says
    // why and how (cgroup v2), or that cgroup v1 cannot be delegated.
    assert!(r.stderr.contains("not applied"), "{}", r.stderr);
    let why = if cgroup_v2() {
        [
            "is not delegated to you",
            "fix: start final inside your systemd user session",
        ]
    } else {
        ["this machine uses cgroup v1", "fix: run as root"]
    };
    for w in why {
        assert!(r.stderr.contains(w), "{w}: {}", r.stderr);
    }
    let r = as_user(
        USER,
        &[],
        &[
            "run",
            "--rm",
            "--rootfs",
            &rootfs,
            "--network",
            "bridge",
            "true",
        ],
    );
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("needs root") && r.stderr.contains("fix:"),
        "{}",
        r.stderr
    );
    // --network host works rootless: the host's interfaces, the user's own namespace.
    let r = user_sh(USER, &["--network", "host"], "readlink /proc/self/ns/net");
    assert_eq!(r.stdout.trim(), ns_inode("self", "net"));
}

#[test]
fn root_with_userns_maps_root_to_an_unprivileged_range() {
    let dir = std::env::temp_dir().join(unique("cfs-userns-vol"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(300_000), Some(300_000)).unwrap();
    let vol = format!("{}:/mnt", dir.display());
    let out = sh(
        &["--userns", "0:300000:65536", "-v", &vol],
        "id -u; cat /proc/self/uid_map; echo x > /mnt/f; echo x > /newfile && echo layer-writable; true",
    );
    let owner = std::fs::metadata(dir.join("f")).map(|m| m.uid());
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(map_lines(lines[1]), vec![vec![0, 300_000, 65_536]]);
    assert_eq!(owner.unwrap(), 300_000);
    // The writable layer is an overlay owned by the mapped root; without overlayfs (the v2
    // test guest) the container writes into the image, which belongs to unmapped host root.
    let overlay = std::fs::read_to_string("/proc/filesystems")
        .unwrap()
        .contains("\toverlay");
    assert_eq!(out.contains("layer-writable"), overlay, "{out}");
    // auto: root's /etc/subuid range, or 100000:65536.
    let out = sh(&["--userns", "auto"], "cat /proc/self/uid_map");
    assert_ne!(map_lines(&out)[0][1], 0, "auto mapped root to host root");
}

/// A system whose hard switches forbid unprivileged user namespaces, presented through
/// `$CFS_FINAL_PROC_SYS` (a copy of the relevant /proc/sys files): this machine's own
/// settings stay untouched. final refuses up front, and doctor fails, with the fix.
#[test]
fn forbidden_user_namespaces_are_explained_with_the_fix() {
    ensure_user(USER, false);
    let rootfs = reachable().1.to_string_lossy().into_owned();
    for (file, names) in [
        ("user/max_user_namespaces", "user.max_user_namespaces"),
        (
            "kernel/unprivileged_userns_clone",
            "kernel.unprivileged_userns_clone",
        ),
    ] {
        let fake = fake_proc_sys(file, "0");
        let env = [("CFS_FINAL_PROC_SYS", fake.to_str().unwrap())];
        let run = as_user(USER, &env, &["run", "--rm", "--rootfs", &rootfs, "true"]);
        let doctor = as_user(USER, &env, &["doctor"]);
        let _ = std::fs::remove_dir_all(&fake);
        assert_eq!(run.code, 125, "{}", run.stderr);
        assert!(
            run.stderr.contains(names) && run.stderr.contains("fix: "),
            "{}",
            run.stderr
        );
        assert_eq!(doctor.code, 1, "{}", doctor.stdout);
        assert!(
            doctor
                .stdout
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains(names)),
            "{}",
            doctor.stdout
        );
    }
}

/// A fake /proc/sys with one setting.
fn fake_proc_sys(file: &str, value: &str) -> PathBuf {
    let fake = std::env::temp_dir().join(unique("cfs-procsys"));
    let path = fake.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, value).unwrap();
    fake
}

/// Ubuntu's AppArmor switch (faked at 1) does not refuse up front: a profile may allow final.
/// This kernel allows user namespaces (as one with such a profile would), so the rootless run
/// works and doctor passes the check with a note about the switch.
#[test]
fn apparmor_switch_alone_does_not_refuse_when_the_kernel_allows() {
    ensure_user(USER, false);
    let rootfs = reachable().1.to_string_lossy().into_owned();
    let fake = fake_proc_sys("kernel/apparmor_restrict_unprivileged_userns", "1");
    let env = [("CFS_FINAL_PROC_SYS", fake.to_str().unwrap())];
    let run = as_user(
        USER,
        &env,
        &["run", "--rm", "--rootfs", &rootfs, "id", "-u"],
    );
    let doctor = as_user(USER, &env, &["doctor"]);
    let _ = std::fs::remove_dir_all(&fake);
    assert_eq!((run.code, run.stdout.trim()), (0, "0"), "{}", run.stderr);
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.starts_with("ok    rootless") && l.contains("allowed")),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.starts_with("note")
                && l.contains("apparmor_restrict_unprivileged_userns is 1")),
        "{}",
        doctor.stdout
    );
    assert!(
        !doctor.stdout.contains("FAIL  rootless"),
        "{}",
        doctor.stdout
    );
}

/// With the AppArmor switch (faked at 1) and a kernel that does refuse: the user runs final in
/// a user namespace (made here by root, mapping root and the user) whose own
/// user.max_user_namespaces is 0, so the kernel refuses final's clone(CLONE_NEWUSER) and
/// doctor's attempt (with ENOSPC here; AppArmor's refusal is EPERM or EACCES, or a failing
/// uid_map write, all handled the same way). The error and doctor's FAIL name the AppArmor restriction and its fix.
#[test]
fn kernel_refusal_under_the_apparmor_switch_names_it_with_the_fix() {
    let uid = ensure_user(USER, false);
    let (bin, rootfs) = reachable();
    let home = passwd_field(USER, 5).unwrap();
    let fake = fake_proc_sys("kernel/apparmor_restrict_unprivileged_userns", "1");
    // util-linux's setpriv by absolute path: a busybox sh (as in the v2 guest) would
    // otherwise run its own, smaller setpriv applet in preference to PATH.
    let setpriv = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("setpriv"))
        .find(|p| p.is_file())
        .expect("setpriv (util-linux) is needed for the rootless tests");
    let in_limited_userns = |args: &[&str]| -> Run {
        let script = format!(
            "echo 0 > /proc/sys/user/max_user_namespaces && exec {} --reuid={uid} --regid={uid} --clear-groups env -i HOME={home} PATH=/usr/local/bin:/usr/bin:/bin CFS_FINAL_PROC_SYS={} {} \"$@\"",
            setpriv.display(),
            fake.display(),
            bin.display()
        );
        let mut child = Command::new("unshare")
            .args(["--user", "sh", "-c", "read go && exec \"$@\"", "sh"])
            .args(["sh", "-c", &script, "sh"])
            .args(args)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let pid = child.id();
        let own = std::fs::read_link("/proc/self/ns/user").unwrap();
        while std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap() == own {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for f in ["uid_map", "gid_map"] {
            std::fs::write(
                format!("/proc/{pid}/{f}"),
                format!("0 0 1\n{uid} {uid} 1\n"),
            )
            .unwrap();
        }
        // The first shell exec'd before the maps existed (as the overflow user, so without
        // capabilities); it execs the script now, as the mapped root.
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        finish(child.wait_with_output().unwrap())
    };
    let run = in_limited_userns(&["run", "--rm", "--rootfs", rootfs.to_str().unwrap(), "true"]);
    let doctor = in_limited_userns(&["doctor"]);
    let _ = std::fs::remove_dir_all(&fake);
    assert_eq!(run.code, 125, "{}", run.stderr);
    for what in [
        "refused to create a user namespace",
        "AppArmor restricts unprivileged user namespaces",
        "fix: allow final with an AppArmor profile",
        "apparmor_parser",
    ] {
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
    }
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains(
            "FAIL  rootless: cannot create a user namespace: AppArmor restricts unprivileged user namespaces"
        ) && doctor.stdout.contains("fix: allow final with an AppArmor profile"),
        "{}",
        doctor.stdout
    );
}

/// Is /sys/fs/cgroup the unified cgroup v2 hierarchy (not v1 or hybrid)?
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A cgroup v2 subtree delegated to `uid` the way systemd delegates `user@UID.service`
/// (`man 7 cgroups`, "Cgroup v2 delegation"; systemd's `Delegate=`): the directory and its
/// cgroup.procs, cgroup.subtree_control and cgroup.threads belong to the user, and the given
/// controllers are enabled for it. The user's processes start in `session`, a leaf below it
/// (where a user's service manager puts a terminal). Removed on drop.
struct Delegation {
    /// The highest cgroup created here (removed with everything below it).
    created: PathBuf,
    top: PathBuf,
    session: PathBuf,
}

impl Delegation {
    /// Below a slice of the test's own.
    fn new(uid: u32, controllers: &[&str]) -> Delegation {
        let slice = format!("{}.slice", unique("cfs-test"));
        Delegation::under(&[&slice], uid, controllers)
    }

    /// Where systemd puts it, `user.slice/user-UID.slice/user@UID.service`: only on a
    /// machine without systemd (the v2 guest), where no user.slice exists.
    fn systemd_like(uid: u32, controllers: &[&str]) -> Delegation {
        assert!(!Path::new("/sys/fs/cgroup/user.slice").exists());
        Delegation::under(
            &["user.slice", &format!("user-{uid}.slice")],
            uid,
            controllers,
        )
    }

    /// Creates the slices (root's), then the delegated `user@UID.service` and its session.
    fn under(slices: &[&str], uid: u32, controllers: &[&str]) -> Delegation {
        let created = Path::new("/sys/fs/cgroup").join(slices[0]);
        let mut slice = PathBuf::from("/sys/fs/cgroup");
        let enable: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
        for s in slices {
            slice.push(s);
            std::fs::create_dir(&slice).unwrap();
            std::fs::write(slice.join("cgroup.subtree_control"), enable.join(" ")).unwrap_or_else(
                |e| panic!("cannot enable {enable:?} for {}: {e}", slice.display()),
            );
        }
        let top = slice.join(format!("user@{uid}.service"));
        let session = top.join("session.scope");
        for dir in [&top, &session] {
            std::fs::create_dir(dir).unwrap();
            for f in [
                "",
                "cgroup.procs",
                "cgroup.subtree_control",
                "cgroup.threads",
            ] {
                std::os::unix::fs::chown(dir.join(f), Some(uid), Some(uid)).unwrap();
            }
        }
        Delegation {
            created,
            top,
            session,
        }
    }

    /// The delegated cgroup as final names it (relative to /sys/fs/cgroup).
    fn rel(&self) -> String {
        self.top
            .strip_prefix("/sys/fs/cgroup")
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// What final left below the delegated cgroup: container cgroups (directories) in
    /// cfs-final.
    fn containers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.top.join("cfs-final"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Delegation {
    fn drop(&mut self) {
        // Deepest first (rmdir(2) of a cgroup with children fails).
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        remove(&self.created);
    }
}

/// The cgroup v2 path of a process (`0::/path` in /proc/PID/cgroup).
fn cgroup_of(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .unwrap()
}

/// A user whose processes run in a cgroup delegated to it (v2) gets limits: the container's
/// cgroup is `<delegated>/cfs-final/<id>`, belongs to the user, holds the limits, enforces
/// them, and goes away with the container; run from outside the subtree systemd delegates
/// (an ssh login), the note says how to get in. On cgroup v1 (nothing can be delegated) the
/// user is told why limits are not applied; the v2 half runs in `cargo xtask v2-test`.
#[test]
fn rootless_limits_apply_in_a_delegated_cgroup() {
    let uid = ensure_user(USER, false);
    let rootfs = reachable().1.to_string_lossy().into_owned();
    if !cgroup_v2() {
        let r = run_with_a_memory_limit();
        assert_eq!(r.code, 0, "{}", r.stderr);
        for w in ["not applied", "this machine uses cgroup v1", "fix: "] {
            assert!(r.stderr.contains(w), "{w}: {}", r.stderr);
        }
        return;
    }
    let d = Delegation::new(uid, &["memory", "pids", "cpu"]);
    let session = Some(d.session.as_path());
    let name = unique("rl-lim");
    let run = as_user_in(
        session,
        USER,
        &[],
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--rootfs",
            &rootfs,
            "--memory",
            "32m",
            "--pids-limit",
            "20",
            "--cpus",
            "0.5",
            "sleep",
            "30",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("not applied"), "{}", run.stderr);
    let id = run.stdout.trim().to_string();
    let ps = as_user_in(session, USER, &[], &["inspect", &name]);
    let v: serde_json::Value = serde_json::from_str(&ps.stdout).unwrap();
    let pid = v[0]["pid"].as_i64().unwrap();
    let cgroup = cgroup_of(pid);
    let dir = Path::new("/sys/fs/cgroup").join(cgroup.trim_start_matches('/'));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let (memory, pids, cpu) = (read("memory.max"), read("pids.max"), read("cpu.max"));
    let owner = std::fs::metadata(&dir).map(|m| m.uid());
    let rm = as_user_in(session, USER, &[], &["rm", "-f", &name]);
    assert_eq!(cgroup, format!("/{}/cfs-final/{id}", d.rel()));
    assert_eq!(
        owner.unwrap(),
        uid,
        "the container's cgroup is not the user's"
    );
    assert_eq!(memory.trim(), "33554432");
    assert_eq!(pids.trim(), "20");
    assert_eq!(cpu.trim(), "50000 100000");
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert!(!dir.exists(), "rm left the cgroup {}", dir.display());

    // Enforced: over the memory limit the kernel kills the container (137, recorded).
    let oom = as_user_in(
        session,
        USER,
        &[],
        &[
            "run",
            "--rootfs",
            &rootfs,
            "--name",
            &format!("{name}-oom"),
            "--memory",
            "16m",
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    let rec = as_user_in(session, USER, &[], &["inspect", &format!("{name}-oom")]);
    let rm = as_user_in(session, USER, &[], &["rm", &format!("{name}-oom")]);
    assert_eq!(oom.code, 137, "{}{}", oom.stdout, oom.stderr);
    assert!(!oom.stdout.contains("survived"));
    let rec: serde_json::Value = serde_json::from_str(&rec.stdout).unwrap();
    assert_eq!(rec[0]["oom_killed"], true);
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert_eq!(d.containers(), Vec::<PathBuf>::new(), "cgroups left behind");
    drop(d);

    // On a machine without systemd (the v2 guest), lay out what systemd makes for a logged-in
    // user and run from outside it, as from an ssh login's session-N.scope: the note names
    // the delegated cgroup and how to get into it.
    if !Path::new("/sys/fs/cgroup/user.slice").exists() {
        let _sd = Delegation::systemd_like(uid, &["memory", "pids"]);
        let ssh = run_with_a_memory_limit();
        assert_eq!(ssh.code, 0, "{}", ssh.stderr);
        for w in [
            format!("systemd delegated /user.slice/user-{uid}.slice/user@{uid}.service to you, but final runs in /"),
            "fix: start final inside your systemd user session: `systemd-run --user --scope final run ...`".to_string(),
        ] {
            assert!(ssh.stderr.contains(&w), "{w}: {}", ssh.stderr);
        }
    }
}

/// A delegated cgroup without the cpu controller (systemd before v252 delegated only memory
/// and pids to users): --cpus fails with the systemd fix and leaves nothing, the delegated
/// controllers work, and `final doctor` shows both. On cgroup v1 doctor says why rootless
/// containers get no cgroup.
#[test]
fn doctor_and_run_name_an_undelegated_controller_with_the_fix() {
    let uid = ensure_user(USER, false);
    let rootfs = reachable().1.to_string_lossy().into_owned();
    if !cgroup_v2() {
        let doctor = as_user(USER, &[], &["doctor"]);
        assert!(
            doctor.stdout.lines().any(|l| l.starts_with("note")
                && l.contains("rootless containers get no cgroup here")
                && l.contains("cgroup v1")),
            "{}",
            doctor.stdout
        );
        return;
    }
    let d = Delegation::new(uid, &["memory", "pids"]);
    let session = Some(d.session.as_path());
    let doctor = as_user_in(session, USER, &[], &["doctor"]);
    let cpus = as_user_in(
        session,
        USER,
        &[],
        &["run", "--rm", "--rootfs", &rootfs, "--cpus", "0.5", "true"],
    );
    let left = d.containers();
    let memory = as_user_in(
        session,
        USER,
        &[],
        &[
            "run",
            "--rm",
            "--rootfs",
            &rootfs,
            "--memory",
            "32m",
            "sh",
            "-c",
            "cat /proc/self/cgroup",
        ],
    );
    let outside = as_user(USER, &[], &["doctor"]);
    for line in [
        format!(
            "ok    rootless cgroup: /sys/fs/cgroup/{} is delegated to you",
            d.rel()
        ),
        "ok    cgroup controller memory".to_string(),
        "ok    cgroup controller pids".to_string(),
        "FAIL  cgroup controller cpu".to_string(),
    ] {
        assert!(doctor.stdout.contains(&line), "{line}: {}", doctor.stdout);
    }
    assert!(doctor.stdout.contains("Delegate=cpu"), "{}", doctor.stdout);
    assert_eq!(cpus.code, 125, "{}", cpus.stderr);
    for w in [
        "--cpus needs the cpu cgroup controller, which is not delegated to you",
        "fix: have systemd delegate it",
        "Delegate=cpu cpuset io memory pids",
    ] {
        assert!(cpus.stderr.contains(w), "{w}: {}", cpus.stderr);
    }
    assert_eq!(left, Vec::<PathBuf>::new(), "a failed run left its cgroup");
    assert_eq!(memory.code, 0, "{}", memory.stderr);
    assert!(!memory.stderr.contains("not applied"), "{}", memory.stderr);
    assert!(
        outside.stdout.lines().any(|l| l.starts_with("note")
            && l.contains("rootless containers get no cgroup here")
            && l.contains("is not delegated to you")),
        "{}",
        outside.stdout
    );
    assert_eq!(d.containers(), Vec::<PathBuf>::new(), "cgroups left behind");
}
