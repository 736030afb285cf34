//! Looking at the host from the outside: processes, namespaces, mounts, cgroups.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// How a finished command ended.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status as a shell reports it: the code, or 128+N for signal N.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// A one-line description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit status {}, stdout {:?}, stderr {:?}",
            self.status,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }
}

fn clip(text: &str) -> String {
    let text = text.trim_end();
    if text.len() > 400 {
        let mut end = 400;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &text[..end])
    } else {
        text.to_string()
    }
}

/// A command running in the background, in its own process group, its output captured.
pub struct Running {
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Result<Running, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let out = child.stdout.take().map(reader);
        let err = child.stderr.take().map(reader);
        Ok(Running { child, out, err })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the first descendant process whose command line starts with `marker`: the
    /// container's command once exec'd (before that, the forked child still carries the
    /// runtime's command line, which merely *contains* the marker).
    pub fn find_descendant(&self, marker: &str) -> Result<i32, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pid) = descendants(self.pid())
                .into_iter()
                .find(|pid| cmdline(*pid).starts_with(marker))
            {
                return Ok(pid);
            }
            // A runtime that has already ended will not start it: say so now, not in 20 s.
            if !is_alive(self.pid()) {
                return Err(format!(
                    "the runtime (pid {}) ended before any process running {marker:?} appeared",
                    self.pid()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no process running {marker:?} appeared under the runtime (pid {}) within 20 s",
                    self.pid()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `timeout` for the command to end; kills its process group after that.
    pub fn wait(mut self, timeout: Duration) -> Result<Outcome, String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    kill(-self.pid(), libc::SIGKILL);
                    let _ = self.child.wait();
                    return Err(format!(
                        "{} did not finish within {} s (killed it)",
                        self.child.id(),
                        timeout.as_secs()
                    ));
                }
                Err(e) => return Err(format!("waiting for the runtime failed: {e}")),
            }
        };
        use std::os::unix::process::ExitStatusExt;
        let status = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let stdout = self
            .out
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ok(Outcome {
            status,
            stdout,
            stderr,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A check that bails out early must not leave a container running.
        if let Ok(None) = self.child.try_wait() {
            kill(-self.pid(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `cmd` to completion with stdin from /dev/null.
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Result<Outcome, String> {
    Running::spawn(cmd)?.wait(timeout)
}

/// kill(2); a negative pid means a process group.
pub fn kill(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) == 0 }
}

pub fn is_alive(pid: i32) -> bool {
    // A zombie still answers kill(pid, 0), so look at its state too.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                != Some(true)
        })
        .unwrap_or(false)
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// All processes below `root` in the host's process tree.
pub fn descendants(root: i32) -> Vec<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|pid| Some((pid, parent_of(pid)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            all.iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The namespace a process is in, e.g. "uts:[4026531838]".
pub fn namespace(pid: Option<i32>, kind: &str) -> Result<String, String> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/ns/{kind}"),
        None => format!("/proc/self/ns/{kind}"),
    };
    std::fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| format!("cannot read {path}: {e}"))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub fn mountinfo(pid: Option<i32>) -> Result<String, String> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/mountinfo"),
        None => "/proc/self/mountinfo".to_string(),
    };
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// The whole mount table of `pid`'s mount namespace. Not /proc/PID/mountinfo: after chroot
/// that lists only the mounts below the process's root (often none at all), which would hide
/// mounts that are still shared with the host. nsenter(1) enters the namespace at its root.
pub fn namespace_mountinfo(pid: i32) -> Result<String, String> {
    let out = Command::new("nsenter")
        .arg(format!("--mount=/proc/{pid}/ns/mnt"))
        .args(["cat", "/proc/self/mountinfo"])
        .output()
        .map_err(|e| format!("cannot run nsenter (it comes with util-linux): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nsenter into the mount namespace of {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lines of `after` that are not in `before` and the other way round, for messages.
pub fn mount_diff(before: &str, after: &str) -> String {
    let added: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    let removed: Vec<&str> = before
        .lines()
        .filter(|l| !after.lines().any(|a| a == *l))
        .collect();
    format!("appeared: {added:?}; disappeared: {removed:?}")
}

/// Is this a pure cgroup v2 host (one unified tree at /sys/fs/cgroup)?
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directories of the cgroups `pid` is in, for the given controllers (v1), or its one
/// directory (v2). Root cgroups ("/") are left out.
pub fn cgroup_dirs(pid: i32, controllers: &[&str]) -> Result<Vec<PathBuf>, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("cannot read /proc/{pid}/cgroup: {e}"))?;
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("/"),
        );
        if path == "/" {
            continue;
        }
        let rel = path.trim_start_matches('/');
        if cgroup_v2() {
            if ctrls.is_empty() {
                dirs.push(Path::new("/sys/fs/cgroup").join(rel));
            }
        } else if let Some(ctrl) = ctrls.split(',').find(|c| controllers.contains(c)) {
            if let Some(mount) = v1_mount_point(ctrl) {
                dirs.push(mount.join(rel));
            }
        }
    }
    Ok(dirs)
}

/// Where the v1 hierarchy of `controller` is mounted.
pub fn v1_mount_point(controller: &str) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        if right.next()? != "cgroup" {
            return None;
        }
        let options = right.nth(1)?;
        options
            .split(',')
            .any(|o| o == controller)
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or("")))
    })
}

/// Reads a cgroup file of `controller` for process `pid` (v1: that controller's hierarchy).
pub fn cgroup_file(pid: i32, controller: &str, file: &str) -> Result<String, String> {
    let dirs = cgroup_dirs(pid, &[controller])?;
    let dir = dirs.first().ok_or_else(|| {
        format!("process {pid} is in no {controller} cgroup of its own (only the root cgroup)")
    })?;
    std::fs::read_to_string(dir.join(file))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", dir.join(file).display()))
}

/// Waits until none of `dirs` exists any more (a removed cgroup can take a moment).
pub fn gone(dirs: &[PathBuf]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "these cgroup directories were left behind: {left:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cgroup directories named after runs of the runtime `name` (`cfs-NAME-PID`), in every
/// hierarchy.
pub fn runtime_cgroups(name: &str) -> Vec<PathBuf> {
    let prefix = format!("cfs-{name}-");
    let roots: Vec<PathBuf> = if cgroup_v2() {
        vec!["/sys/fs/cgroup".into()]
    } else {
        ["pids", "memory", "cpu"]
            .iter()
            .filter_map(|c| v1_mount_point(c))
            .collect()
    };
    roots
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}
