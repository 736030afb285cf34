//! Container state records under the runtime's state directory.
//!
//! Layout (root: `/run/cfs-final`, or `$CFS_FINAL_ROOT`):
//! - `<id>/state.json`: the [`Record`], replaced atomically (write a temporary file, fsync-free
//!   rename(2) over the old one: readers see the old or the new record, never half of one);
//! - `<id>/config.json`: the resolved OCI spec, written once when the container is created
//!   (the record stays small: it is rewritten when the status changes, the spec never is);
//! - `<id>/lock`: flock(2) taken for every read-modify-write of the record;
//! - `<id>/rootfs`: the mount point of the container's root (in its mount namespace only);
//! - `names/<name>`: a symlink to the id. symlink(2) fails with EEXIST if the name is taken,
//!   which makes claiming a name atomic without a global lock.
//!
//! Writable layers and logs are kept out of /run (often a small tmpfs) in
//! `/var/lib/cfs-final/<id>` (or `$CFS_FINAL_DATA`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being set up; no user process yet.
    Created,
    Running,
    Exited,
}

// ANCHOR: record
/// Everything we know about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: Status,
    /// The container's first process, as seen from the host.
    pub pid: Option<i32>,
    /// Its start time (field 22 of /proc/PID/stat), to tell it from a later process that
    /// reuses the pid.
    pub pid_start: Option<u64>,
    /// The runtime process that waits for the container and records its end.
    pub monitor_pid: i32,
    pub monitor_start: Option<u64>,
    pub created: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Why the status is what it is, when it is not obvious (e.g. the runtime was killed).
    pub note: Option<String>,
    pub auto_remove: bool,
    pub detached: bool,
    pub command: Vec<String>,
    pub image: PathBuf,
    pub cgroup: String,
    pub log: Option<PathBuf>,
    /// `--network`: none, host or bridge.
    #[serde(default)]
    pub network: crate::parse::Network,
    /// With `--network bridge`: the address, veth and published ports it holds (what to
    /// release when it ends).
    #[serde(default)]
    pub bridge: Option<crate::network::Attachment>,
    /// The resolved OCI runtime spec the container was created from: kept in
    /// `config.json` next to the record and filled in for `inspect` and `ps --format json`
    /// ([`load_config`]); records of older versions have it inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// OCI `create`: the bundle directory (`final state` reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
}
// ANCHOR_END: record

/// `/run/cfs-final` for root; a rootless user's own: `$XDG_RUNTIME_DIR/cfs-final` (the
/// per-user tmpfs of pam_systemd), else `/tmp/cfs-final-<uid>`.
pub fn root_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CFS_FINAL_ROOT") {
        return PathBuf::from(dir);
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/cfs-final");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("cfs-final"),
        _ => PathBuf::from(format!("/tmp/cfs-final-{uid}")),
    }
}

/// `/var/lib/cfs-final` for root; `$XDG_DATA_HOME/cfs-final` (default
/// `~/.local/share/cfs-final`) for a rootless user, else `/tmp/cfs-final-<uid>/data`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CFS_FINAL_DATA") {
        return PathBuf::from(dir);
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/var/lib/cfs-final");
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty() && Path::new(h).is_dir());
    match (std::env::var_os("XDG_DATA_HOME"), home) {
        (Some(d), _) if !d.is_empty() => PathBuf::from(d).join("cfs-final"),
        (_, Some(h)) => PathBuf::from(h).join(".local/share/cfs-final"),
        _ => PathBuf::from(format!("/tmp/cfs-final-{uid}/data")),
    }
}

pub fn container_dir(id: &str) -> PathBuf {
    root_dir().join(id)
}

pub fn container_data_dir(id: &str) -> PathBuf {
    data_dir().join(id)
}

fn names_dir() -> PathBuf {
    root_dir().join("names")
}

/// An exclusive flock(2) on a container's lock file, released when dropped (closing the
/// file releases the lock).
pub struct Lock {
    _file: fs::File,
}

pub fn lock(id: &str) -> Result<Lock> {
    lock_path(&container_dir(id).join("lock"))
}

/// An exclusive flock(2) on the file at `path` (created if missing), retried on EINTR.
pub fn lock_path(path: &Path) -> Result<Lock> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    loop {
        // SAFETY: flock(2) on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(Lock { _file: file });
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
}

/// A fresh random id: 32 hex digits from getrandom(2).
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Extremely unlikely; fall back to time and pid, still unique enough per host.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ANCHOR: claim_name
/// Claims `name` for `id`; fails if another container has it.
pub fn claim_name(name: &str, id: &str) -> Result<()> {
    let dir = names_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match std::os::unix::fs::symlink(id, dir.join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let owner = fs::read_link(dir.join(name)).unwrap_or_default();
            bail!(
                "the name {name:?} is already in use by container {}\nfix: choose another --name, or remove that container with `final rm -f {name}`",
                owner.display()
            )
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot record the name {name} in {}", dir.display()))
        }
    }
}
// ANCHOR_END: claim_name

pub fn release_name(name: &str, id: &str) {
    let link = names_dir().join(name);
    if fs::read_link(&link).is_ok_and(|target| target == Path::new(id)) {
        let _ = fs::remove_file(link);
    }
}

/// Creates the container's state directory, its spec (`config.json`, serialised straight
/// from the struct, once) and its first record.
pub fn create(rec: &Record, spec: &impl Serialize) -> Result<()> {
    let dir = container_dir(&rec.id);
    fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let config = dir.join("config.json");
    fs::write(&config, serde_json::to_vec(spec)?)
        .with_context(|| format!("cannot write {}", config.display()))?;
    save(rec)
}

/// The record's spec: inline in records of older versions, else from `config.json`.
pub fn load_config(rec: &Record) -> Result<serde_json::Value> {
    if let Some(config) = &rec.config {
        return Ok(config.clone());
    }
    let path = container_dir(&rec.id).join("config.json");
    let text = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("corrupt spec {}", path.display()))
}

// ANCHOR: save
/// Writes the record atomically.
pub fn save(rec: &Record) -> Result<()> {
    let dir = container_dir(&rec.id);
    let tmp = dir.join(".state.json.tmp");
    let json = serde_json::to_vec_pretty(rec)?;
    fs::write(&tmp, json).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, dir.join("state.json"))
        .with_context(|| format!("cannot replace {}", dir.join("state.json").display()))
}
// ANCHOR_END: save

pub fn load(id: &str) -> Result<Record> {
    let path = container_dir(id).join("state.json");
    let text = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("corrupt state record {}", path.display()))
}

// ANCHOR: update
/// Reads, changes and writes the record under its lock.
pub fn update(id: &str, change: impl FnOnce(&mut Record)) -> Result<Record> {
    let _lock = lock(id)?;
    let mut rec = load(id)?;
    change(&mut rec);
    save(&rec)?;
    Ok(rec)
}
// ANCHOR_END: update

/// Removes the record, its name and its data directory.
pub fn remove(rec: &Record) -> Result<()> {
    release_name(&rec.name, &rec.id);
    let data = container_data_dir(&rec.id);
    if data.exists() {
        remove_tree(&data).with_context(|| format!("cannot remove {}", data.display()))?;
    }
    let dir = container_dir(&rec.id);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

/// remove_dir_all, and for a rootless user a second try after making every directory
/// accessible: overlayfs leaves `work/work` with mode 000 (root ignores that, a user cannot).
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            fn open_up(dir: &Path) {
                use std::os::unix::fs::PermissionsExt;
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
                for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        open_up(&entry.path());
                    }
                }
            }
            open_up(dir);
            fs::remove_dir_all(dir)
        }
        other => other,
    }
}

/// All container ids with a state directory.
pub fn ids() -> Vec<String> {
    let Ok(entries) = fs::read_dir(root_dir()) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    ids.sort();
    ids
}

/// Finds a container by name, full id or unique id prefix.
pub fn find(what: &str) -> Result<String> {
    if let Ok(id) = fs::read_link(names_dir().join(what)) {
        let id = id.to_string_lossy().into_owned();
        if container_dir(&id).join("state.json").exists() {
            return Ok(id);
        }
    }
    let matches: Vec<String> = ids()
        .into_iter()
        .filter(|id| id.starts_with(what))
        .collect();
    match matches.as_slice() {
        [id] if !what.is_empty() => Ok(id.clone()),
        [] | [_] => bail!("no such container: {what}\nfix: `final ps -a` lists the containers"),
        _ => bail!("{what:?} matches several containers; give more of the id or the name"),
    }
}

/// Start time of a process in clock ticks since boot (`man 5 proc`, /proc/PID/stat field 22).
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

// ANCHOR: alive
/// Is `pid` still the process that was recorded with `start`? Zombies count as gone.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let state = stat[close + 2..].chars().next();
    if matches!(state, Some('Z') | Some('X')) {
        return false;
    }
    start.is_none() || process_start(pid) == start
}
// ANCHOR_END: alive

/// Now as RFC 3339 in UTC, e.g. `2024-05-01T12:00:00Z` (no date crate needed).
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    rfc3339(secs)
}

pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn ids_are_random_hex() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn own_process_is_alive_and_start_time_matters() {
        let me = std::process::id() as i32;
        let start = process_start(me);
        assert!(start.is_some());
        assert!(alive(me, start));
        assert!(!alive(me, start.map(|s| s + 1)));
    }
}
