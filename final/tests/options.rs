//! `final run`'s options and errors: volumes, env, workdir, user, read-only, labels, exit
//! codes, and the bad inputs that must be refused with a useful message.
#![cfg(target_os = "linux")]

mod common;
use common::*;

#[test]
fn volumes_read_only_and_read_write() {
    let dir = std::env::temp_dir().join(unique("cfs-vol"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("in"), "from host").unwrap();
    let rw = format!("{}:/data", dir.display());
    let out = sh(
        &["-v", &rw],
        "cat /data/in; echo from-container > /data/out",
    );
    assert_eq!(out, "from host");
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap(),
        "from-container\n"
    );
    let ro = format!("{}:/data/deep/ro:ro", dir.display());
    let out = sh(
        &["-v", &ro],
        "cat /data/deep/ro/in; echo x > /data/deep/ro/nope 2>/dev/null || echo refused",
    );
    assert_eq!(out, "from hostrefused\n");
    assert!(!dir.join("nope").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn env_workdir_and_user() {
    let out = sh(
        &[
            "-e",
            "GREETING=hi there",
            "-e",
            "PATH=/bin:/usr/bin",
            "-w",
            "/srv/app",
            "-u",
            "1000:1000",
        ],
        "echo \"$GREETING\"; echo $PATH; pwd; id -u; id -g; echo $HOME",
    );
    assert_eq!(out, "hi there\n/bin:/usr/bin\n/srv/app\n1000\n1000\n/\n");
    let root = sh(&[], "echo $HOME; id -u");
    assert_eq!(root, "/root\n0\n");
}

#[test]
fn read_only_root_keeps_tmp_writable() {
    let out = sh(
        &["--read-only"],
        "touch /x 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-ok",
    );
    assert_eq!(out, "tmp-ok\n");
    // Without --read-only, writes go to the container's own overlay layer, not the shared
    // image; without overlayfs they go to the image, and the user is told so.
    let marker = unique("layer");
    let r = final_(&["run", "--rm", "touch", &format!("/{marker}")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let in_image = cfs_support::default_rootfs_dir().join(&marker);
    if cfs_final::container::overlay_available() {
        assert!(
            !in_image.exists(),
            "the container wrote into the shared image"
        );
    } else {
        assert!(in_image.exists());
        assert!(
            r.stderr.contains("overlayfs is not available"),
            "{}",
            r.stderr
        );
        std::fs::remove_file(in_image).unwrap();
    }
}

#[test]
fn labels_and_record_in_inspect() {
    let name = unique("lbl");
    ok(&[
        "run",
        "--name",
        &name,
        "--label",
        "team=core",
        "--label",
        "tier=test",
        "true",
    ]);
    let json = ok(&["inspect", &name]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rec = &v[0];
    assert_eq!(rec["name"], name.as_str());
    assert_eq!(rec["labels"]["team"], "core");
    assert_eq!(rec["labels"]["tier"], "test");
    assert_eq!(rec["status"], "exited");
    assert_eq!(rec["exit_code"], 0);
    assert!(rec["started"].is_string() && rec["finished"].is_string());
    assert_eq!(rec["config"]["process"]["args"][0], "true");
    ok(&["rm", &name]);
    assert_ne!(final_(&["inspect", &name]).code, 0);
}

#[test]
fn exit_codes_follow_docker() {
    assert_eq!(final_(&["run", "--rm", "sh", "-c", "exit 42"]).code, 42);
    // A signal ends a process in the container: 128+N (the shell reports it the same way).
    assert_eq!(
        final_(&["run", "--rm", "sh", "-c", "sh -c 'kill -TERM $$'; exit $?"]).code,
        128 + 15
    );
    let nf = final_(&["run", "--rm", "no-such-command"]);
    assert_eq!(nf.code, 127, "{}", nf.stderr);
    assert!(nf.stderr.contains("no-such-command"), "{}", nf.stderr);
    let ne = final_(&["run", "--rm", "/etc/passwd"]);
    assert_eq!(ne.code, 126, "{}", ne.stderr);
    assert_eq!(final_(&["run", "--rm", "/no/such/file"]).code, 127);
}

/// `--ulimit` sets the container's rlimits (and an exec'd process's: the same spec); without
/// it the container has the runtime's own, as a docker container has dockerd's. A hard
/// limit above the runtime's is refused for a runtime without CAP_SYS_RESOURCE, by the
/// kernel: here the runtime is root, so it is granted.
#[test]
fn ulimit_sets_rlimits_and_exec_gets_them_too() {
    let name = unique("ulimit");
    ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--ulimit",
        "nofile=512:4096",
        "--ulimit",
        "core=0:-1",
        "sleep",
        "30",
    ]);
    let exec = ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "ulimit -Sn; ulimit -Hn; ulimit -Hc",
    ]);
    let pid = {
        let json = ok(&["inspect", &name]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v[0]["pid"].as_i64().unwrap()
    };
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    ok(&["rm", "-f", &name]);
    assert_eq!(
        exec.lines().collect::<Vec<_>>(),
        ["512", "4096", "unlimited"]
    );
    let line = |name: &str| -> Vec<String> {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {limits}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(line("Max open files")[3..5], ["512", "4096"]);
    assert_eq!(line("Max core file size")[4..6], ["0", "unlimited"]);

    // No --ulimit: the runtime's own limits (this test process's, inherited through it).
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let inherited = sh(&[], "ulimit -Sn; ulimit -Hn");
    assert_eq!(
        inherited.lines().collect::<Vec<_>>(),
        [soft.to_string(), hard.to_string()]
    );
}

/// `final spec` prints the spec `final run` builds from the same options, and it is a spec
/// another OCI runtime runs as it is: runc starts the command with the hostname, rlimits,
/// capabilities and device rules in it. Needs runc (apt install runc).
#[test]
fn spec_is_the_config_json_runc_runs() {
    require_root();
    let rootfs = cfs_support::default_rootfs_dir();
    let bundle = std::env::temp_dir().join(unique("cfs-spec"));
    std::fs::create_dir_all(&bundle).unwrap();
    // runc creates mount points in the root: give it a copy.
    let copy = bundle.join("rootfs");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&rootfs)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    let script = "hostname; ulimit -n; grep CapEff /proc/self/status; mknod /dev/nodriver c 240 0 && head -c 1 /dev/nodriver 2>&1; true";
    let spec = ok(&[
        "spec",
        "--rootfs",
        copy.to_str().unwrap(),
        "--hostname",
        "from-spec",
        "--memory",
        "48m",
        "--ulimit",
        "nofile=300",
        "sh",
        "-c",
        script,
    ]);
    let v: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(v["process"]["args"][2], script);
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 48 << 20);
    assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
    std::fs::write(bundle.join("config.json"), &spec).unwrap();
    let id = unique("cfs-spec");
    let out = std::process::Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runc is needed for this test (apt install runc)");
    let _ = std::process::Command::new("runc")
        .args(["delete", "-f", &id])
        .output();
    let _ = std::fs::remove_dir_all(&bundle);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runc: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..2], ["from-spec", "300"], "{stdout}");
    // docker's capability set, as final gives it (see isolation.rs)
    assert_eq!(lines[2], "CapEff:\t00000000a80425fb", "{stdout}");
    assert!(lines[3].contains("Operation not permitted"), "{stdout}");
}
