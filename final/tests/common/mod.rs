//! Helpers for the behaviour tests: run the built `final` binary as root and look at the
//! host from outside. Without root the tests fail with a clear message; they never skip.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const FINAL: &str = env!("CARGO_BIN_EXE_final");
pub const PROBE: &str = env!("CARGO_BIN_EXE_cfs-probe");

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these behaviour tests create containers and need root: run `cargo test -p final` \
         (the workspace runner uses sudo) or run the test binary as root"
    );
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn finish(out: Output) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let code = out
        .status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    Run {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `final ARGS...` with stdin from /dev/null.
pub fn final_(args: &[&str]) -> Run {
    require_root();
    let out = Command::new(FINAL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot start the final binary");
    finish(out)
}

/// `final ARGS...`, asserting success, returning stdout.
pub fn ok(args: &[&str]) -> String {
    let r = final_(args);
    assert_eq!(
        r.code, 0,
        "final {args:?} failed with {}:\n{}{}",
        r.code, r.stdout, r.stderr
    );
    r.stdout
}

/// `final run [opts] sh -c SCRIPT`, asserting success.
pub fn sh(opts: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["sh", "-c", script]);
    ok(&args)
}

/// Volume flags that make the probe (a glibc program) runnable in the busybox rootfs:
/// the host's libraries, read-only, and the probe itself at /probe.
pub fn probe_volumes() -> Vec<String> {
    let mut v = vec![format!("{PROBE}:/probe:ro")];
    for lib in ["/lib", "/lib64"] {
        if Path::new(lib).exists() {
            v.push(format!("{lib}:{lib}:ro"));
        }
    }
    v
}

pub fn probe(verb: &[&str]) -> String {
    let vols = probe_volumes();
    let mut args = vec!["run", "--rm"];
    for v in &vols {
        args.push("-v");
        args.push(v);
    }
    args.push("/probe");
    args.extend_from_slice(verb);
    ok(&args)
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// What a container may leave on the host: the host's mounts, our cgroups in every
/// hierarchy, state and data directories.
#[derive(Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    pub mounts: BTreeSet<String>,
    pub cgroups: BTreeSet<PathBuf>,
    pub state: BTreeSet<PathBuf>,
}

fn list(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

pub fn snapshot() -> HostSnapshot {
    // Mount point, root and file system of every host mount (ids change; these must not).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-").unwrap_or(0);
            format!("{} {} {} {}", f[3], f[4], f[sep + 1], f[sep + 2])
        })
        .collect();
    let mut cgroups = BTreeSet::new();
    for hier in list(Path::new("/sys/fs/cgroup")) {
        cgroups.extend(list(&hier.join("cfs-final")));
    }
    cgroups.extend(list(Path::new("/sys/fs/cgroup/cfs-final")));
    let mut state = list(Path::new("/run/cfs-final"));
    state.extend(list(Path::new("/var/lib/cfs-final")));
    state.extend(list(Path::new("/run/cfs-final/names")));
    HostSnapshot {
        mounts,
        cgroups,
        state,
    }
}

/// Our container entries in a snapshot (other tests may run containers concurrently, so
/// tests compare only what they can attribute).
pub fn ns_inode(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What `--network bridge` containers may leave on the host: veth host ends (`vcfs*`),
/// addresses held in the allocator, elements of the published-ports map, and the bridge's
/// addresses. (The bridge itself, the `cfs` table and ip_forward stay, as docker0 does.)
#[derive(Debug, PartialEq, Eq)]
pub struct NetSnapshot {
    pub veths: BTreeSet<String>,
    pub held_addresses: BTreeSet<PathBuf>,
    pub port_map: String,
    pub bridge_addresses: String,
}

pub fn net_snapshot() -> NetSnapshot {
    let veths = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vcfs"))
        .collect();
    let held_addresses = list(Path::new("/run/cfs-final/network/addresses"));
    let nft = Command::new("nft")
        .args(["list", "map", "ip", "cfs", "ports"])
        .output()
        .expect("nft must be installed for the bridge tests (apt install nftables)");
    let port_map = String::from_utf8_lossy(&nft.stdout).into_owned();
    let ip = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", "cfs0"])
        .output()
        .expect("cannot run ip (iproute2)");
    let bridge_addresses = String::from_utf8_lossy(&ip.stdout)
        .split_whitespace()
        .filter(|w| w.contains('/'))
        .collect::<Vec<_>>()
        .join(" ");
    NetSnapshot {
        veths,
        held_addresses,
        port_map,
        bridge_addresses,
    }
}

/// A container command serving `body` over HTTP on port 80 (busybox httpd in the foreground).
pub fn httpd(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// The IPv4 address a bridged container got, from `final inspect`.
pub fn container_ip(name: &str) -> String {
    let json = ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0]["bridge"]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no bridge address: {json}"))
        .to_string()
}

/// One HTTP GET of `/` on `addr` (a bounded number of tries while the server starts);
/// returns the body.
pub fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut last = String::new();
    for _ in 0..50 {
        match std::net::TcpStream::connect_timeout(
            &addr.parse().unwrap(),
            std::time::Duration::from_secs(2),
        ) {
            Ok(mut s) => {
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                if let Some((_, body)) = resp.split_once("\r\n\r\n") {
                    return body.to_string();
                }
                last = resp;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no HTTP answer from {addr}: {last}");
}

/// `final run ARGS` in the background (no stdio), returned once the container named `name`
/// is running: for tests that then SIGKILL the runtime.
pub fn spawn_running(name: &str, args: &[&str]) -> std::process::Child {
    let child = Command::new(FINAL)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !final_(&["inspect", name]).stdout.contains("\"running\"") {
        assert!(std::time::Instant::now() < deadline, "container never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// A bundle: a copy of the default rootfs as `rootfs/` and `final spec` of `args` as
/// config.json (root path made relative, as bundles usually have it).
pub fn bundle(args: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("cfs-bundle"));
    std::fs::create_dir_all(&dir).unwrap();
    let cp = Command::new("cp")
        .arg("-a")
        .arg(cfs_support::default_rootfs_dir())
        .arg(dir.join("rootfs"))
        .status()
        .unwrap();
    assert!(cp.success());
    let rootfs = dir.join("rootfs").to_string_lossy().into_owned();
    let mut spec_args = vec!["spec", "--rootfs", &rootfs, "--hostname", "oci"];
    spec_args.extend_from_slice(args);
    let spec = ok(&spec_args).replace(&format!("\"{rootfs}\""), "\"rootfs\"");
    assert!(spec.contains("\"path\": \"rootfs\""), "{spec}");
    std::fs::write(dir.join("config.json"), spec).unwrap();
    dir
}

/// `final create --bundle DIR [--pid-file F] ID` with stdout and stderr going to `out`
/// (the container keeps them: a pipe would stay open as long as it runs).
pub fn oci_create(dir: &Path, id: &str, out: &Path, pid_file: Option<&Path>) -> i32 {
    let log = std::fs::File::create(out).unwrap();
    let mut cmd = Command::new(FINAL);
    cmd.args(["create", "--bundle"]).arg(dir);
    if let Some(p) = pid_file {
        cmd.arg("--pid-file").arg(p);
    }
    cmd.arg(id)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

/// Waits (10 s at most, then fails) until `cond` holds.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `final run --rm --network bridge -p PUBLISH` whose setup fails (the working directory is a
/// file) after the address and the port were taken: exit 125.
pub fn bridged_run_failing_setup(publish: &str) {
    let r = final_(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "-p",
        publish,
        "-w",
        "/etc/passwd",
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
}

/// A bridged `sleep 30` named `name` publishing `publish`, running, its runtime in the
/// background: for tests that SIGKILL the runtime ([`kill_runtime_then_rm`]).
pub fn spawn_bridged(name: &str, publish: &str) -> std::process::Child {
    spawn_running(
        name,
        &[
            "--name",
            name,
            "--network",
            "bridge",
            "-p",
            publish,
            "sleep",
            "30",
        ],
    )
}

/// SIGKILLs a container's runtime; `rm -f` then cleans up after it.
pub fn kill_runtime_then_rm(mut runtime: std::process::Child, name: &str) {
    runtime.kill().unwrap();
    runtime.wait().unwrap();
    ok(&["rm", "-f", name]);
}

/// The network state and the host are as `before` (taken before the bridged runs). The kernel
/// removes a dead namespace's veth asynchronously; final deletes its own at exit, so this
/// should hold at once, but it gets a (bounded) moment.
pub fn assert_bridged_runs_left_nothing(before: &(HostSnapshot, NetSnapshot)) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while net_snapshot() != before.1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        before.1,
        net_snapshot(),
        "bridged containers left network state"
    );
    assert_eq!(
        before.0,
        snapshot(),
        "bridged containers left something on the host"
    );
}
