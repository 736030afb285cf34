//! Lifecycle: detach, logs, ps, exec, stop, kill, rm, OOM, limits, pipes, and recovery when
//! the runtime itself is SIGKILLed.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn inspect(name: &str) -> serde_json::Value {
    let json = ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0].clone()
}

fn cgroup_exists(id: &str) -> bool {
    std::path::Path::new(&format!("/sys/fs/cgroup/memory/cfs-final/{id}")).exists()
        || std::path::Path::new(&format!("/sys/fs/cgroup/pids/cfs-final/{id}")).exists()
        || std::path::Path::new(&format!("/sys/fs/cgroup/cfs-final/{id}")).exists()
}

#[test]
fn detach_logs_ps_exec_stop_rm() {
    let name = unique("web");
    let id = ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "sh",
        "-c",
        "echo started; echo to-stderr >&2; while true; do sleep 1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 32, "run -d prints the id: {id}");
    wait_for("the log", || ok(&["logs", &name]).contains("to-stderr"));
    assert_eq!(ok(&["logs", &name]), "started\nto-stderr\n");

    let ps = ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&name) && l.contains("running")),
        "{ps}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&["ps", "--format", "json"])).unwrap();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == name.as_str()));

    // exec joins the container's namespaces and cgroup.
    let rec = inspect(&name);
    let pid = rec["pid"].as_i64().unwrap().to_string();
    let out = ok(&["exec", &name, "sh", "-c", "hostname; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; grep -E 'memory|^0::' /proc/self/cgroup | head -1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], &id[..12]);
    assert_eq!(lines[1], ns_inode(&pid, "pid"));
    assert_eq!(lines[2], ns_inode(&pid, "mnt"));
    assert!(
        lines[3].ends_with(":/"),
        "exec'd process not at the root of the container's cgroup namespace: {out}"
    );
    assert_eq!(final_(&["exec", &name, "sh", "-c", "exit 9"]).code, 9);
    assert_eq!(final_(&["exec", &name, "nope"]).code, 127);

    // rm without -f refuses a running container.
    let r = final_(&["rm", &name]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("running"), "{}", r.stderr);

    // sh as PID 1 ignores SIGTERM: stop falls back to SIGKILL after --time.
    let started = Instant::now();
    ok(&["stop", "--time", "1", &name]);
    assert!(started.elapsed() >= Duration::from_millis(900));
    let rec = inspect(&name);
    assert_eq!(rec["status"], "exited");
    assert_eq!(rec["exit_code"], 137);
    assert_eq!(rec["oom_killed"], false);
    assert!(!cgroup_exists(&id), "cgroup left after the container ended");
    ok(&["rm", &name]);
    assert!(!std::path::Path::new(&format!("/run/cfs-final/{id}")).exists());
    assert!(!std::path::Path::new(&format!("/var/lib/cfs-final/{id}")).exists());
    assert_ne!(final_(&["logs", &name]).code, 0);
}

#[test]
fn kill_sends_the_signal_and_rm_force_removes() {
    let name = unique("k");
    ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "sh",
        "-c",
        "trap 'exit 3' USR1; while true; do sleep 0.1; done",
    ]);
    wait_for("running", || inspect(&name)["status"] == "running");
    std::thread::sleep(Duration::from_millis(200));
    ok(&["kill", &name, "USR1"]);
    wait_for("exit", || inspect(&name)["status"] == "exited");
    assert_eq!(inspect(&name)["exit_code"], 3);
    ok(&["rm", &name]);

    let name = unique("f");
    let id = ok(&["run", "-d", "--name", &name, "sleep", "1000"])
        .trim()
        .to_string();
    ok(&["rm", "-f", &name]);
    assert!(!cgroup_exists(&id));
    assert!(!std::path::Path::new(&format!("/run/cfs-final/{id}")).exists());
    assert!(!ok(&["ps", "-a"]).contains(&name));
}

#[test]
fn oom_kill_is_137_and_recorded() {
    let name = unique("oom");
    let r = final_(&[
        "run",
        "--name",
        &name,
        "--memory",
        "16m",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(r.code, 137, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("survived"));
    let rec = inspect(&name);
    assert_eq!(rec["oom_killed"], true);
    assert_eq!(rec["exit_code"], 137);
    ok(&["rm", &name]);
    // The same command without a limit survives: the limit, not the command, killed it.
    assert!(sh(
        &[],
        "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo survived"
    )
    .contains("survived"));
}

#[test]
fn pids_limit_stops_fork_bombs() {
    // The subshell starts 8 sleeps; the processes are then counted with a shell glob, which
    // needs no fork. Without the limit there would be 9 (the shell and 8 sleeps).
    let out = sh(
        &["--pids-limit", "5"],
        "(for i in 1 2 3 4 5 6 7 8; do sleep 2 & done) 2>/dev/null; echo status=$?; set -- /proc/[0-9]*; echo $#",
    );
    let mut lines = out.lines();
    assert_ne!(lines.next(), Some("status=0"), "all forks succeeded: {out}");
    let n: u32 = lines.next().unwrap().parse().unwrap();
    assert!(n <= 5, "{n} processes despite --pids-limit 5");
}

#[test]
fn limits_are_written_to_the_cgroup() {
    let name = unique("lim");
    ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--memory",
        "32m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "sleep",
        "100",
    ]);
    let id = inspect(&name)["id"].as_str().unwrap().to_string();
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let dir = format!("/sys/fs/cgroup/cfs-final/{id}");
        assert_eq!(read(&format!("{dir}/memory.max")), (32 << 20).to_string());
        assert_eq!(read(&format!("{dir}/cpu.max")), "50000 100000");
        assert_eq!(read(&format!("{dir}/pids.max")), "20");
    } else {
        assert_eq!(
            read(&format!(
                "/sys/fs/cgroup/memory/cfs-final/{id}/memory.limit_in_bytes"
            )),
            (32 << 20).to_string()
        );
        assert_eq!(
            read(&format!(
                "/sys/fs/cgroup/cpu/cfs-final/{id}/cpu.cfs_quota_us"
            )),
            "50000"
        );
        assert_eq!(
            read(&format!("/sys/fs/cgroup/pids/cfs-final/{id}/pids.max")),
            "20"
        );
    }
    ok(&["rm", "-f", &name]);
    assert!(!cgroup_exists(&id));
}

#[test]
fn pipes_are_byte_exact() {
    require_root();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut child = Command::new(FINAL)
        .args(["run", "--rm", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "output differs from input");
}

#[test]
fn recovery_after_the_runtime_is_sigkilled() {
    require_root();
    let name = unique("victim");
    let mut runtime = Command::new(FINAL)
        .args(["run", "--name", &name, "sleep", "1000"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("running", || {
        final_(&["inspect", &name]).code == 0 && inspect(&name)["status"] == "running"
    });
    let rec = inspect(&name);
    let id = rec["id"].as_str().unwrap().to_string();
    let pid = rec["pid"].as_i64().unwrap();
    assert!(cgroup_exists(&id));
    runtime.kill().unwrap(); // SIGKILL
    runtime.wait().unwrap();
    // The container dies with its foreground runtime (PR_SET_PDEATHSIG)...
    wait_for("the container to die", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    // ...and the next ps tells the truth and cleans its cgroup.
    let ps = ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&name) && l.contains("exited (unknown)")),
        "{ps}"
    );
    assert!(!cgroup_exists(&id));
    ok(&["rm", &name]);
    assert!(!std::path::Path::new(&format!("/run/cfs-final/{id}")).exists());

    // A detached container outlives its killed monitor: ps shows it running, rm -f removes it.
    let name = unique("orphan");
    let id = ok(&["run", "-d", "--name", &name, "sleep", "1000"])
        .trim()
        .to_string();
    let monitor = inspect(&name)["monitor_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) on the monitor process we just started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_for("the monitor to die", || {
        !std::path::Path::new(&format!("/proc/{monitor}")).exists()
            || std::fs::read_to_string(format!("/proc/{monitor}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    });
    let ps = ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&name) && l.contains("running")),
        "{ps}"
    );
    ok(&["rm", "-f", &name]);
    assert!(!cgroup_exists(&id));
    assert!(!std::path::Path::new(&format!("/run/cfs-final/{id}")).exists());
}

#[test]
fn concurrent_runs_with_one_name_have_one_winner() {
    require_root();
    let name = unique("race");
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(FINAL)
                .args(["run", "--name", &name, "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners = results.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "exactly one container may get the name");
    for o in results.iter().filter(|o| !o.status.success()) {
        assert_eq!(o.status.code(), Some(125));
        assert!(String::from_utf8_lossy(&o.stderr).contains("already in use"));
    }
    assert_eq!(inspect(&name)["exit_code"], 0);
    ok(&["rm", &name]);
}

/// `sh -c CMD` with a terminal on stdin, as an interactive user would have it: script(1) runs
/// it on a new pty. Its output, without the terminal's \r, and without the ^@ the terminal may
/// echo anywhere when script's own stdin reaches end-of-file.
fn under_a_terminal(cmd: &str) -> String {
    let out = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .output()
        .expect("script(1) from util-linux is needed for this test");
    String::from_utf8_lossy(&out.stdout)
        .replace('\r', "")
        .replace("^@", "")
}

#[test]
fn a_terminal_stdin_gets_a_pty() {
    require_root();
    // script(1) gives `final` a terminal on stdin, as an interactive user would have.
    let cmd = format!("{FINAL} run --rm sh -c 'tty; test -t 0 && echo stdin-is-tty; echo $TERM'");
    let text = under_a_terminal(&cmd);
    assert!(text.contains("/dev/console\n"), "{text}");
    assert!(text.contains("stdin-is-tty\n"), "{text}");
    assert!(text.contains("xterm\n"), "{text}");
    // Without a terminal, plain pipes.
    let plain = sh(&[], "tty; true");
    assert_eq!(plain, "not a tty\n");
}

/// The container's terminal has the user's window size, and follows it when the user's
/// terminal is resized (SIGWINCH to `final`, which copies the new size to the container's
/// pty; the kernel then signals the container's foreground process).
#[test]
fn the_window_size_is_copied_and_follows_a_resize() {
    require_root();
    let cmd = format!(
        "stty rows 40 cols 100; (sleep 0.5; stty rows 50 cols 120 </dev/tty) & \
         {FINAL} run --rm sh -c 'stty size; sleep 2; stty size'"
    );
    let text = under_a_terminal(&cmd);
    let sizes: Vec<&str> = text
        .lines()
        .filter(|l| l.split(' ').count() == 2 && l.split(' ').all(|n| n.parse::<u32>().is_ok()))
        .collect();
    assert_eq!(sizes, ["40 100", "50 120"], "{text:?}");
}

/// `final exec` from a terminal gets a pty of the container's own devpts (as docker exec
/// -t): `tty` names a node the container has, it is the controlling terminal, and it has the
/// user's window size.
#[test]
fn exec_from_a_terminal_gets_a_pty_inside_the_container() {
    let name = unique("exectty");
    ok(&["run", "-d", "--name", &name, "sleep", "30"]);
    let cmd = format!(
        "stty rows 33 cols 77; {FINAL} exec {name} sh -c 't=$(tty); echo tty=$t; test -c $t && echo exists-inside; test -t 0 && echo stdin-is-tty; stty size'"
    );
    let text = under_a_terminal(&cmd);
    ok(&["rm", "-f", &name]);
    assert!(text.contains("tty=/dev/pts/"), "{text:?}");
    assert!(text.contains("exists-inside\n"), "{text:?}");
    assert!(text.contains("stdin-is-tty\n"), "{text:?}");
    assert!(text.contains("33 77\n"), "{text:?}");
}
