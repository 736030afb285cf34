//! The checks, feature by feature. Each returns `Err` with what a learner needs to hear.

use crate::host::{self, Outcome};
use crate::{s, Check, Feature, Runtime};
use std::time::Duration;

macro_rules! check {
    ($feature:ident, $name:ident, $property:literal) => {
        Check {
            feature: Feature::$feature,
            name: stringify!($name),
            property: $property,
            run: $name,
        }
    };
}

pub static ALL: &[Check] = &[
    check!(Uts, hostname_is_set, "`run --hostname NAME hostname` prints NAME"),
    check!(Uts, host_hostname_is_unchanged, "the host keeps its hostname while and after a container sets its own"),
    check!(Uts, uts_namespace_is_new, "the container's process is in a new UTS namespace (/proc/PID/ns/uts differs from the host's)"),
    check!(Uts, exit_status_is_the_commands, "the runtime exits with the command's own exit status (0, 7)"),
    check!(Uts, killed_by_signal_is_128_plus_n, "a container killed by SIGKILL makes the runtime exit with 137 (128+9)"),
    check!(Uts, command_not_found_is_127, "a command that does not exist gives exit status 127 and says so"),
    check!(Uts, not_executable_is_126, "a file that cannot be executed gives exit status 126 and says so"),
    check!(Uts, arguments_pass_through_verbatim, "everything after CMD reaches it unchanged, options included"),
    check!(Uts, bad_input_is_a_usage_error, "a hostname over 64 bytes or an unknown option is refused with a clear message"),
    check!(Pid, command_is_pid_1, "the command is PID 1 inside the container"),
    check!(Pid, pid_namespace_is_new, "the container's process is in a new PID namespace"),
    check!(Mount, mount_namespace_is_new, "the container's process is in a new mount namespace"),
    check!(Mount, root_is_the_rootfs, "the container's / is the root filesystem, not the host's"),
    check!(Mount, mounts_are_private, "the container's mounts are private even where the host's / is shared (as under systemd)"),
    check!(Mount, host_mounts_are_unchanged, "the host's mount table is the same before, during and after a container"),
    check!(Mount, missing_rootfs_is_a_clear_error, "a missing or unusable --rootfs gives exit status 125 and a message with the fix"),
    check!(Proc, ps_shows_only_the_container, "ps inside the container lists only the container's processes"),
    check!(Proc, proc_is_not_left_mounted, "nothing stays mounted after the container ends"),
    check!(Cgroups, command_starts_in_the_cgroup, "the command is in the container's cgroup from its first instruction"),
    check!(Cgroups, limits_are_written, "--pids-limit, --memory and --cpus are written to the container's cgroup"),
    check!(Cgroups, pids_limit_is_enforced, "with --pids-limit 5 the fifth process cannot be created"),
    check!(Cgroups, fork_bomb_is_contained, "a fork bomb under --pids-limit ends, and the host can still start processes"),
    check!(Cgroups, memory_hog_is_oom_killed, "a memory hog over --memory is killed (exit 137, with a note); under a roomy limit it succeeds"),
    check!(Cgroups, cgroup_is_removed_after_exit, "the container's cgroup is removed when it ends: success, failure, or killed"),
    check!(Cgroups, cgroup_is_removed_after_sigterm, "SIGTERM to the runtime ends the container and removes its cgroup"),
    check!(Cgroups, cgroup_is_removed_after_ctrl_c, "Ctrl-C reaches the container; the runtime outlives it and removes its cgroup"),
    check!(Cgroups, bad_limits_are_usage_errors, "--memory 12q, --cpus -1 and --pids-limit 0 are refused, and no cgroup is left behind"),
];

// ---------------------------------------------------------------------------------------------
// helpers

fn expect_status(outcome: &Outcome, status: i32, what: &str) -> Result<(), String> {
    if outcome.status == status {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected exit status {status}, got {}",
            outcome.describe()
        ))
    }
}

/// A container running `sleep` with a unique duration, so we can find its process.
struct Sleeper {
    running: host::Running,
    /// The container's process, as the host numbers it.
    pid: i32,
}

fn sleeper(rt: &Runtime, options: &[&str], seconds: &str) -> Result<Sleeper, String> {
    let mut args: Vec<&str> = options.to_vec();
    args.extend(["sleep", seconds]);
    let running = rt.spawn(&args)?;
    let marker = format!("sleep {seconds}");
    let pid = running.find_descendant(&marker).map_err(|e| {
        format!("{e}: the container did not start `{marker}` (is the runtime running the command?)")
    })?;
    Ok(Sleeper { running, pid })
}

impl Sleeper {
    /// Kills the container's process and waits for the runtime.
    fn stop(self) -> Result<Outcome, String> {
        host::kill(self.pid, libc::SIGKILL);
        self.running.wait(Duration::from_secs(20))
    }
}

fn new_namespace(rt: &Runtime, kind: &str, seconds: &str) -> Result<(), String> {
    let c = sleeper(rt, &[], seconds)?;
    let inside = host::namespace(Some(c.pid), kind)?;
    let outside = host::namespace(None, kind)?;
    c.stop()?;
    if inside == outside {
        return Err(format!(
            "the container's process is still in the host's {kind} namespace ({inside}): \
             did you pass CLONE_NEW{} to unshare before fork?",
            kind.to_uppercase().replace("MNT", "NS")
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// step 01: UTS

fn hostname_is_set(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&["--hostname", "cfs-check", "hostname"])?;
    expect_status(&out, 0, "`run --hostname cfs-check hostname`")?;
    match out.stdout.trim() {
        "cfs-check" => Ok(()),
        got => Err(format!(
            "the container reports hostname {got:?}, expected \"cfs-check\": call sethostname in the \
             container, after unshare(CLONE_NEWUTS)"
        )),
    }
}

fn host_hostname_is_unchanged(rt: &Runtime) -> Result<(), String> {
    let before = host::hostname();
    let c = sleeper(rt, &["--hostname", "cfs-leak"], "71.101")?;
    let during = host::hostname();
    c.stop()?;
    let after = host::hostname();
    if during != before || after != before {
        return Err(format!(
            "the host's hostname changed ({before:?} -> {during:?} -> {after:?}): sethostname ran \
             in the host's UTS namespace. (Restore it with `hostname {before}`.)"
        ));
    }
    Ok(())
}

fn uts_namespace_is_new(rt: &Runtime) -> Result<(), String> {
    new_namespace(rt, "uts", "71.102")
}

fn exit_status_is_the_commands(rt: &Runtime) -> Result<(), String> {
    expect_status(&rt.run(&["true"])?, 0, "`run true`")?;
    expect_status(&rt.run(&["sh", "-c", "exit 7"])?, 7, "`run sh -c 'exit 7'`")
}

fn killed_by_signal_is_128_plus_n(rt: &Runtime) -> Result<(), String> {
    let c = sleeper(rt, &[], "71.103")?;
    let out = c.stop()?;
    expect_status(&out, 137, "container killed with SIGKILL")
}

fn command_not_found_is_127(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&["no-such-command-cfs"])?;
    expect_status(&out, 127, "`run no-such-command-cfs`")?;
    if !out.stderr.contains("no-such-command-cfs") {
        return Err(format!(
            "the error message does not name the command: {}",
            out.describe()
        ));
    }
    Ok(())
}

fn not_executable_is_126(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&["/etc/passwd"])?;
    expect_status(
        &out,
        126,
        "`run /etc/passwd` (a file that is not executable)",
    )?;
    if !out.stderr.contains("/etc/passwd") {
        return Err(format!(
            "the error message does not name the file: {}",
            out.describe()
        ));
    }
    Ok(())
}

fn arguments_pass_through_verbatim(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&[
        "sh",
        "-c",
        "echo \"$# [$1] [$2]\"",
        "sh",
        "--hostname",
        "-x y",
    ])?;
    expect_status(&out, 0, "`run sh -c 'echo ...' sh --hostname '-x y'`")?;
    match out.stdout.trim() {
        "2 [--hostname] [-x y]" => Ok(()),
        got => Err(format!(
            "the command received {got:?} instead of \"2 [--hostname] [-x y]\": arguments after CMD \
             must be passed through as they are"
        )),
    }
}

fn bad_input_is_a_usage_error(rt: &Runtime) -> Result<(), String> {
    let long = "h".repeat(65);
    let out = rt.run(&["--hostname", &long, "true"])?;
    if out.status != 2 || !out.stderr.contains("64") {
        return Err(format!(
            "a 65-byte hostname should be refused with a usage error (status 2) that names the 64-byte limit: {}",
            out.describe()
        ));
    }
    let out = rt.run(&["--frobnicate", "true"])?;
    if out.status != 2 || !out.stderr.contains("--frobnicate") {
        return Err(format!(
            "an unknown option should be a usage error (status 2) naming it: {}",
            out.describe()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// step 02: PID

fn command_is_pid_1(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&["sh", "-c", "echo $$"])?;
    expect_status(&out, 0, "`run sh -c 'echo $$'`")?;
    match out.stdout.trim() {
        "1" => Ok(()),
        got => Err(format!(
            "PID inside is {got}, expected 1: unshare(CLONE_NEWPID) before fork, so that the child \
             is born in the new PID namespace"
        )),
    }
}

fn pid_namespace_is_new(rt: &Runtime) -> Result<(), String> {
    new_namespace(rt, "pid", "71.201")
}

// ---------------------------------------------------------------------------------------------
// step 03: mount namespace, private propagation, chroot

fn mount_namespace_is_new(rt: &Runtime) -> Result<(), String> {
    new_namespace(rt, "mnt", "71.301")
}

fn root_is_the_rootfs(rt: &Runtime) -> Result<(), String> {
    let rootfs = rt.rootfs()?;
    let c = sleeper(rt, &[], "71.302")?;
    let root = std::fs::read_link(format!("/proc/{}/root", c.pid))
        .map_err(|e| format!("cannot read /proc/{}/root: {e}", c.pid))?;
    c.stop()?;
    let expected = std::fs::canonicalize(&rootfs).unwrap_or(rootfs);
    if root != expected {
        return Err(format!(
            "the container's / is {}, expected the root filesystem {}: chroot into it (and chdir(\"/\"))",
            root.display(),
            expected.display()
        ));
    }
    // And from the inside: the rootfs has a marker file the host's / does not have.
    let out = rt.run(&["cat", "/.cfs-rootfs"])?;
    expect_status(
        &out,
        0,
        "`run cat /.cfs-rootfs` (a file only the default root filesystem has)",
    )
}

/// Runs the container inside a mount namespace whose / is *shared*, as systemd sets it up,
/// and returns (that namespace's mountinfo before, during, after, the container's mount
/// namespace's whole mount table).
fn under_shared_root(rt: &Runtime, seconds: &str) -> Result<[String; 4], String> {
    let script = "cat /proc/self/mountinfo; echo @@@; \"$@\"; echo @@@; cat /proc/self/mountinfo";
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "shared",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&rt.bin)
    .args(["run", "sleep", seconds]);
    let running =
        host::Running::spawn(cmd).map_err(|e| format!("{e} (unshare comes with util-linux)"))?;
    let wrapper = running.pid();
    let marker = format!("sleep {seconds}");
    let container = running.find_descendant(&marker)?;
    let during = host::mountinfo(Some(wrapper))?;
    let inside = host::namespace_mountinfo(container)?;
    host::kill(container, libc::SIGKILL);
    let out = running.wait(Duration::from_secs(20))?;
    let parts: Vec<&str> = out.stdout.split("@@@\n").collect();
    if parts.len() != 3 {
        return Err(format!(
            "unexpected output from the unshare wrapper: {}",
            out.describe()
        ));
    }
    Ok([parts[0].to_string(), during, parts[2].to_string(), inside])
}

fn mounts_are_private(rt: &Runtime) -> Result<(), String> {
    let [.., inside] = under_shared_root(rt, "71.303")?;
    let shared: Vec<&str> = inside.lines().filter(|l| l.contains(" shared:")).collect();
    if !shared.is_empty() {
        return Err(format!(
            "{} of the container's mounts still propagate to the host (\"shared:\" in its mountinfo), e.g. {:?}: \
             make / private recursively (MS_REC | MS_PRIVATE) before mounting anything",
            shared.len(),
            shared[0]
        ));
    }
    Ok(())
}

fn host_mounts_are_unchanged(rt: &Runtime) -> Result<(), String> {
    let host_before = host::mountinfo(None)?;
    let [before, during, after, _] = under_shared_root(rt, "71.304")?;
    let host_after = host::mountinfo(None)?;
    for (when, seen) in [
        ("while the container ran", &during),
        ("after it ended", &after),
    ] {
        if *seen != before {
            return Err(format!(
                "with / shared (as under systemd) the host's mount table changed {when}: {}. \
                 Did you make / private before mounting?",
                host::mount_diff(&before, seen)
            ));
        }
    }
    if host_after != host_before {
        return Err(format!(
            "the host's mount table changed: {}",
            host::mount_diff(&host_before, &host_after)
        ));
    }
    Ok(())
}

fn missing_rootfs_is_a_clear_error(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&["--rootfs", "/nonexistent/cfs-rootfs", "true"])?;
    if out.status != 125
        || !out.stderr.contains("/nonexistent/cfs-rootfs")
        || !out.stderr.contains("fix")
    {
        return Err(format!(
            "a missing --rootfs should fail with status 125 and a message naming the path and the fix: {}",
            out.describe()
        ));
    }
    let out = rt.run(&["--rootfs", "/etc/passwd", "true"])?;
    if out.status != 125 || !out.stderr.contains("not a directory") {
        return Err(format!(
            "a --rootfs that is a file should fail with status 125: {}",
            out.describe()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// step 04: /proc

fn ps_shows_only_the_container(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&["sh", "-c", "ps -o pid,comm"])?;
    expect_status(&out, 0, "`run sh -c 'ps -o pid,comm'`")?;
    let rows: Vec<(u32, String)> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next().unwrap_or("").to_string()))
        })
        .collect();
    if rows.is_empty() {
        return Err(
            "ps inside the container lists no processes at all: mount a proc filesystem on /proc \
                    (from inside the new PID namespace)"
                .into(),
        );
    }
    let foreign: Vec<&(u32, String)> = rows
        .iter()
        .filter(|(_, comm)| comm != "sh" && comm != "ps")
        .collect();
    if !foreign.is_empty() || !rows.iter().any(|(pid, _)| *pid == 1) {
        return Err(format!(
            "ps inside the container lists {} processes, among them {:?}: /proc shows another PID \
             namespace's processes. Mount a fresh proc from inside the container's PID namespace",
            rows.len(),
            foreign.iter().take(3).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

fn proc_is_not_left_mounted(rt: &Runtime) -> Result<(), String> {
    let rootfs = rt.rootfs()?;
    let before = host::mountinfo(None)?;
    let out = rt.run(&["ls", "/proc/1"])?;
    expect_status(&out, 0, "`run ls /proc/1`")?;
    let after = host::mountinfo(None)?;
    let root = s(&rootfs);
    if let Some(line) = after.lines().find(|l| l.contains(&root)) {
        return Err(format!(
            "after the container ended, the host still has a mount in the root filesystem: {line}"
        ));
    }
    if before != after {
        return Err(format!(
            "the host's mount table changed: {}",
            host::mount_diff(&before, &after)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// step 05: cgroups

const CONTROLLERS: &[&str] = &["pids", "memory", "cpu"];

fn command_starts_in_the_cgroup(rt: &Runtime) -> Result<(), String> {
    let out = rt.run(&["--pids-limit", "50", "cat", "/proc/self/cgroup"])?;
    expect_status(&out, 0, "`run --pids-limit 50 cat /proc/self/cgroup`")?;
    let in_own = out.stdout.lines().any(|l| {
        let mut p = l.splitn(3, ':');
        let (ctrls, path) = (p.nth(1).unwrap_or(""), p.next().unwrap_or("/"));
        path != "/"
            && (ctrls.is_empty() && host::cgroup_v2() || ctrls.split(',').any(|c| c == "pids"))
    });
    if !in_own {
        return Err(format!(
            "the command's first view of /proc/self/cgroup shows it in the root cgroup:\n{}\n\
             join the container's cgroup in the child before exec (write 0 to cgroup.procs)",
            out.stdout.trim()
        ));
    }
    Ok(())
}

fn limits_are_written(rt: &Runtime) -> Result<(), String> {
    let c = sleeper(
        rt,
        &["--pids-limit", "42", "--memory", "48m", "--cpus", "0.5"],
        "71.501",
    )?;
    let pid = c.pid;
    let read = |ctrl: &str, v1: &str, v2: &str| {
        host::cgroup_file(pid, ctrl, if host::cgroup_v2() { v2 } else { v1 })
    };
    let pids = read("pids", "pids.max", "pids.max");
    let memory = read("memory", "memory.limit_in_bytes", "memory.max");
    let cpu = if host::cgroup_v2() {
        read("cpu", "", "cpu.max")
    } else {
        read("cpu", "cpu.cfs_quota_us", "")
            .and_then(|q| Ok(format!("{q} {}", read("cpu", "cpu.cfs_period_us", "")?)))
    };
    c.stop()?;
    let expected = [
        ("pids.max", pids?, "42"),
        ("memory limit", memory?, "50331648"),
        ("cpu quota", cpu?, "50000 100000"),
    ];
    for (what, got, want) in expected {
        if got != want {
            return Err(format!(
                "the container's {what} is {got:?}, expected {want:?}"
            ));
        }
    }
    Ok(())
}

fn pids_limit_is_enforced(rt: &Runtime) -> Result<(), String> {
    let script = "for i in 1 2 3 4 5 6 7 8; do sleep 30 & echo started $i; done";
    let out = rt.run(&["--pids-limit", "5", "sh", "-c", script])?;
    let started = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("started"))
        .count();
    if started != 4 {
        return Err(format!(
            "with --pids-limit 5 the shell (1 process) should start exactly 4 background sleeps, it started \
             {started}: {}",
            out.describe()
        ));
    }
    if !out.stderr.to_lowercase().contains("fork") {
        return Err(format!(
            "the shell should have reported a failed fork: {}",
            out.describe()
        ));
    }
    Ok(())
}

fn fork_bomb_is_contained(rt: &Runtime) -> Result<(), String> {
    // Never set off a fork bomb without a limit in place.
    let c = sleeper(rt, &["--pids-limit", "20"], "71.502")?;
    let limit = host::cgroup_file(c.pid, "pids", "pids.max");
    c.stop()?;
    if limit.as_deref() != Ok("20") {
        return Err(format!(
            "not setting off the fork bomb: --pids-limit 20 does not reach the container's cgroup ({limit:?})"
        ));
    }
    let started = std::time::Instant::now();
    let out = rt.run(&[
        "--pids-limit",
        "20",
        "sh",
        "-c",
        // After setting it off, the shell waits with builtins only: while the bomb churns at
        // the limit, a fork of its own (`sleep`) may fail, and busybox sh exits on a failed
        // fork, which would say nothing about the limit.
        "f() { f | f & }; f; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo survived",
    ])?;
    if started.elapsed() > Duration::from_secs(45) {
        return Err(format!(
            "the fork bomb was not contained: the container took {:?}",
            started.elapsed()
        ));
    }
    if !out.stdout.contains("survived") {
        return Err(format!(
            "the container's shell did not survive its fork bomb: {}",
            out.describe()
        ));
    }
    let host_ok = std::process::Command::new("true")
        .status()
        .is_ok_and(|s| s.success());
    if !host_ok {
        return Err("after the fork bomb the host cannot start a process".into());
    }
    Ok(())
}

fn memory_hog_is_oom_killed(rt: &Runtime) -> Result<(), String> {
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    let mut args = vec!["--memory", "32m"];
    args.extend(hog);
    let out = rt.run(&args)?;
    expect_status(&out, 137, "a 64 MiB hog under --memory 32m")?;
    if !out.stderr.to_lowercase().contains("memory") {
        return Err(format!(
            "exit 137, but no note saying the container hit its memory limit: {}",
            out.describe()
        ));
    }
    let mut args = vec!["--memory", "256m"];
    args.extend(hog);
    expect_status(&rt.run(&args)?, 0, "the same hog under --memory 256m")
}

fn cgroup_is_removed_after_exit(rt: &Runtime) -> Result<(), String> {
    // killed
    let c = sleeper(rt, &["--pids-limit", "10"], "71.503")?;
    let dirs = host::cgroup_dirs(c.pid, CONTROLLERS)?;
    if dirs.is_empty() {
        return Err("the container's process is in no cgroup of its own".into());
    }
    c.stop()?;
    host::gone(&dirs).map_err(|e| format!("after the container was killed: {e}"))?;
    // success and failure: the cgroup is named after the runtime's PID, so look for any
    // cgroup that holds that PID's name once the runtime has finished.
    for (args, status) in [
        (vec!["--pids-limit", "10", "true"], 0),
        (vec!["--pids-limit", "10", "no-such-cmd"], 127),
    ] {
        let running = rt.spawn(&args)?;
        let pid = running.pid();
        let out = running.wait(Duration::from_secs(30))?;
        expect_status(&out, status, &format!("`run {}`", args.join(" ")))?;
        let left = leftover_cgroups(rt, pid);
        if !left.is_empty() {
            return Err(format!(
                "after `run {}` these cgroups were left behind: {left:?}",
                args.join(" ")
            ));
        }
    }
    Ok(())
}

/// Cgroup directories named after this run of the runtime (`cfs-NAME-PID`).
fn leftover_cgroups(rt: &Runtime, runtime_pid: i32) -> Vec<std::path::PathBuf> {
    let suffix = format!("-{runtime_pid}");
    host::runtime_cgroups(&rt.name())
        .into_iter()
        .filter(|dir| dir.to_string_lossy().ends_with(&suffix))
        .collect()
}

fn cgroup_is_removed_after_sigterm(rt: &Runtime) -> Result<(), String> {
    let c = sleeper(rt, &["--pids-limit", "10"], "71.504")?;
    let dirs = host::cgroup_dirs(c.pid, CONTROLLERS)?;
    let container = c.pid;
    host::kill(c.running.pid(), libc::SIGTERM);
    let out = c.running.wait(Duration::from_secs(20))?;
    if host::is_alive(container) {
        return Err(
            "after SIGTERM to the runtime, the container's process is still running".into(),
        );
    }
    if out.status == 143 {
        return Err("SIGTERM killed the runtime itself (status 143): handle it, end the container, clean up".into());
    }
    host::gone(&dirs).map_err(|e| format!("after SIGTERM to the runtime: {e}"))
}

fn cgroup_is_removed_after_ctrl_c(rt: &Runtime) -> Result<(), String> {
    let script = "trap 'exit 130' INT; echo ready; while :; do sleep 0.1; done";
    let running = rt.spawn(&["--pids-limit", "10", "sh", "-c", script])?;
    let container = running.find_descendant(&format!("sh -c {script}"))?;
    let dirs = host::cgroup_dirs(container, CONTROLLERS)?;
    // Ctrl-C sends SIGINT to the terminal's whole foreground process group.
    std::thread::sleep(Duration::from_millis(200));
    host::kill(-running.pid(), libc::SIGINT);
    let out = running.wait(Duration::from_secs(20))?;
    expect_status(
        &out,
        130,
        "Ctrl-C (SIGINT to the process group) with a container that exits 130 on it",
    )?;
    host::gone(&dirs).map_err(|e| format!("after Ctrl-C: {e}"))
}

fn bad_limits_are_usage_errors(rt: &Runtime) -> Result<(), String> {
    for (option, value) in [("--memory", "12q"), ("--cpus", "-1"), ("--pids-limit", "0")] {
        let running = rt.spawn(&[option, value, "true"])?;
        let pid = running.pid();
        let out = running.wait(Duration::from_secs(30))?;
        if out.status != 2 || !out.stderr.contains(value) {
            return Err(format!(
                "`{option} {value}` should be a usage error (status 2) naming the value: {}",
                out.describe()
            ));
        }
        let left = leftover_cgroups(rt, pid);
        if !left.is_empty() {
            return Err(format!(
                "after refusing `{option} {value}` these cgroups were left behind: {left:?}"
            ));
        }
    }
    Ok(())
}
