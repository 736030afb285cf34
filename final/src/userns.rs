//! User namespaces (`man 7 user_namespaces`): rootless containers and `--userns`.
//!
//! The container's first process is cloned with CLONE_NEWUSER together with the other
//! CLONE_NEW* flags; the kernel creates the user namespace first and makes it the owner of
//! the others, so the child holds every capability *over its own namespaces* and none over
//! the host's. Until its uid_map/gid_map are written it runs as the overflow user (65534):
//! the parent writes them before sync 1, and the child goes on only after that.
//!
//! Who may write which map (`man 7 user_namespaces`, "Defining user and group ID mappings"):
//! - root (CAP_SETUID/CAP_SETGID in the parent namespace): any map, written directly;
//! - an ordinary user: only its own uid and gid, one line each, and only after writing
//!   `deny` to /proc/PID/setgroups (so the container cannot drop supplementary groups that
//!   deny it access on the host);
//! - through the setuid helpers newuidmap(1)/newgidmap(1) (package uidmap): the user's own
//!   id plus the subordinate ranges /etc/subuid and /etc/subgid grant it (`man 5 subuid`).
//!
//! Rootless `final` maps the user to root inside (0 → the user's uid), and, when the helpers
//! and a subordinate range exist, 1..=count to that range, as podman does.

use crate::parse::IdMap;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The maps to write for one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub uid: Vec<IdMap>,
    pub gid: Vec<IdMap>,
    /// Written with newuidmap/newgidmap (set-uid helpers) rather than directly.
    pub helper: bool,
    /// `deny` written to /proc/PID/setgroups: setgroups(2) fails inside.
    pub setgroups_denied: bool,
}

impl Mapping {
    /// The host uid and gid of root inside (to own the writable layer).
    pub fn outside_root(&self) -> Option<(u32, u32)> {
        let find = |maps: &[IdMap]| maps.iter().find(|m| m.inside == 0).map(|m| m.outside);
        Some((find(&self.uid)?, find(&self.gid)?))
    }

    /// Is `id` (a gid inside) mapped?
    pub fn maps_gid(&self, id: u32) -> bool {
        self.gid
            .iter()
            .any(|m| id >= m.inside && id - m.inside < m.count)
    }
}

/// A sysctl under /proc/sys (or under `$CFS_FINAL_PROC_SYS`, so that tests can present the
/// settings of a system that forbids user namespaces without changing this one's).
fn read_trim(path: &str) -> Option<String> {
    let rel = path.strip_prefix("/proc/sys/").unwrap_or(path);
    let base = std::env::var_os("CFS_FINAL_PROC_SYS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/sys"));
    std::fs::read_to_string(base.join(rel))
        .ok()
        .map(|s| s.trim().to_string())
}

// ANCHOR: blocked
/// Why this system refuses unprivileged user namespaces outright, with the fix; None if its
/// hard switches allow them. AppArmor's switch is not one of them: a profile with a `userns,`
/// rule lets a program through it, so final tries and explains a refusal afterwards
/// ([`refused`]).
pub fn unprivileged_blocked() -> Option<String> {
    if read_trim("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled: user.max_user_namespaces is 0\nfix: sudo sysctl -w user.max_user_namespaces=15000 (and set it in /etc/sysctl.d/ to keep it)".into());
    }
    if read_trim("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("unprivileged user namespaces are disabled: kernel.unprivileged_userns_clone is 0 (Debian's switch)\nfix: sudo sysctl -w kernel.unprivileged_userns_clone=1 (and set it in /etc/sysctl.d/ to keep it)".into());
    }
    None
}

/// Is Ubuntu's (23.10+) AppArmor restriction on unprivileged user namespaces switched on?
/// Programs without a profile that allows `userns,` are then refused (or confined so that
/// writing their id maps fails).
pub fn apparmor_restricts() -> bool {
    read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
}

/// The AppArmor restriction and its fixes.
pub const APPARMOR: &str = "AppArmor restricts unprivileged user namespaces: kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10 and later)\nfix: allow final with an AppArmor profile (/etc/apparmor.d/final: `abi <abi/4.0>, include <tunables/global> profile final /path/to/final flags=(unconfined) { userns, }`, then `sudo apparmor_parser -r /etc/apparmor.d/final`), or run it as root, or (less safe, system-wide) sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0";

/// Why the kernel refused a user namespace (clone, or writing its maps, failed with EPERM or
/// EACCES), with the fix: the switch that is on, else where to look.
pub fn refused() -> String {
    if let Some(why) = unprivileged_blocked() {
        return why;
    }
    if apparmor_restricts() {
        return APPARMOR.into();
    }
    "none of user.max_user_namespaces, kernel.unprivileged_userns_clone and kernel.apparmor_restrict_unprivileged_userns explains it (a security module or a container manager may)\nfix: run final as root, or see `final doctor`".into()
}

/// Can this process create a user namespace? A forked child tries unshare(CLONE_NEWUSER) and
/// writes its own uid_map (the step AppArmor's confinement makes fail); its exit status is the
/// answer.
pub fn can_create() -> bool {
    let uid = nix::unistd::geteuid().as_raw();
    let map = format!("0 {uid} 1");
    // SAFETY: the child only calls async-signal-safe functions (unshare, open, write, _exit)
    // on memory prepared before the fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let ok = unsafe {
                libc::unshare(libc::CLONE_NEWUSER) == 0 && {
                    let fd = libc::open(c"/proc/self/uid_map".as_ptr(), libc::O_WRONLY);
                    fd >= 0 && libc::write(fd, map.as_ptr().cast(), map.len()) == map.len() as isize
                }
            };
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => matches!(
            nix::sys::wait::waitpid(child, None),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
        ),
        Err(_) => false,
    }
}
// ANCHOR_END: blocked

/// The first range for `user` (name or uid) in /etc/subuid or /etc/subgid (`man 5 subuid`):
/// lines `name-or-id:start:count`.
pub fn subordinate(file: &Path, name: Option<&str>, id: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        let [who, start, count] = f.as_slice() else {
            return None;
        };
        let ours = Some(*who) == name || who.parse::<u32>() == Ok(id);
        let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
        (ours && count > 0).then_some((start, count))
    })
}

/// The login name of `uid` from /etc/passwd (no NSS: subuid files name local users).
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    })
}

/// A set-uid helper on PATH or in /usr/bin.
fn helper(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

// ANCHOR: mapping
/// The mapping for a container: `rootless` (not root: always one), or root's `--userns`.
pub fn mapping(request: Option<&crate::parse::Userns>) -> Result<Option<Mapping>> {
    use crate::parse::Userns;
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if uid != 0 {
        if let Some(why) = unprivileged_blocked() {
            bail!("cannot run a rootless container: {why}");
        }
        if let Some(Userns::Map(_)) = request {
            bail!("--userns INSIDE:OUTSIDE:COUNT needs root; rootless containers always map you to root inside (and your /etc/subuid range above it)\nfix: leave out --userns");
        }
        let name = user_name(uid);
        let sub_u = subordinate(Path::new("/etc/subuid"), name.as_deref(), uid);
        let sub_g = subordinate(Path::new("/etc/subgid"), name.as_deref(), uid);
        let one = |id| IdMap {
            inside: 0,
            outside: id,
            count: 1,
        };
        if let (Some((us, uc)), Some((gs, gc)), Some(_), Some(_)) =
            (sub_u, sub_g, helper("newuidmap"), helper("newgidmap"))
        {
            let range = |start, count| IdMap {
                inside: 1,
                outside: start,
                count,
            };
            return Ok(Some(Mapping {
                uid: vec![one(uid), range(us, uc)],
                gid: vec![one(gid), range(gs, gc)],
                helper: true,
                setgroups_denied: false,
            }));
        }
        return Ok(Some(Mapping {
            uid: vec![one(uid)],
            gid: vec![one(gid)],
            helper: false,
            setgroups_denied: true,
        }));
    }
    let map = match request {
        None | Some(Userns::Host) => return Ok(None),
        Some(Userns::Map(m)) => *m,
        Some(Userns::Auto) => {
            let (start, count) =
                subordinate(Path::new("/etc/subuid"), Some("root"), 0).unwrap_or((100_000, 65_536));
            IdMap {
                inside: 0,
                outside: start,
                count,
            }
        }
    };
    Ok(Some(Mapping {
        uid: vec![map],
        gid: vec![map],
        helper: false,
        setgroups_denied: false,
    }))
}
// ANCHOR_END: mapping

/// The mapping of a spec with a user namespace (OCI `linux.uidMappings`/`gidMappings`), and
/// how to write it: an ordinary user needs the helpers for anything beyond its own id.
pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Option<Mapping> {
    use oci_spec::runtime::LinuxNamespaceType;
    let linux = spec.linux().as_ref()?;
    let has_userns = linux
        .namespaces()
        .as_ref()?
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if !has_userns {
        return None;
    }
    let conv = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| IdMap {
                inside: m.container_id(),
                outside: m.host_id(),
                count: m.size(),
            })
            .collect::<Vec<_>>()
    };
    let (uid, gid) = (conv(linux.uid_mappings()), conv(linux.gid_mappings()));
    let rootless = !nix::unistd::geteuid().is_root();
    let helper = rootless && (uid.len() > 1 || gid.len() > 1 || uid.iter().any(|m| m.count > 1));
    Some(Mapping {
        uid,
        gid,
        helper,
        setgroups_denied: rootless && !helper,
    })
}

fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
        .collect()
}

// ANCHOR: write_maps
/// Writes the child's uid_map and gid_map (in the parent, before sync 1).
pub fn write_maps(pid: i32, m: &Mapping) -> Result<()> {
    if m.helper {
        for (prog, maps) in [("newuidmap", &m.uid), ("newgidmap", &m.gid)] {
            let bin = helper(prog)
                .with_context(|| format!("{prog} is not installed\nfix: apt install uidmap"))?;
            let mut args = vec![pid.to_string()];
            for x in maps {
                args.extend([x.inside, x.outside, x.count].map(|n| n.to_string()));
            }
            let out = std::process::Command::new(&bin)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()
                .with_context(|| format!("cannot run {}", bin.display()))?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if apparmor_restricts() && stderr.contains("not permitted") {
                    bail!(
                        "{prog} {} failed: {}\n{APPARMOR}",
                        args.join(" "),
                        stderr.trim()
                    );
                }
                bail!(
                    "{prog} {} failed: {}\nfix: check your ranges in /etc/subuid and /etc/subgid (`man 5 subuid`) and that {} is set-uid root (apt install --reinstall uidmap)",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    bin.display()
                );
            }
        }
        return Ok(());
    }
    let write = |file: &str, text: &str| -> Result<()> {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| {
            let what = format!(
                "cannot write {:?} to {path} (user_namespaces(7))",
                text.trim()
            );
            // EPERM/EACCES: the kernel (AppArmor's confinement) refused; say which switch.
            if e.kind() == std::io::ErrorKind::PermissionDenied && apparmor_restricts() {
                anyhow::Error::new(e).context(format!("{what}: {APPARMOR}"))
            } else {
                anyhow::Error::new(e).context(what)
            }
        })
    };
    write("uid_map", &map_text(&m.uid))?;
    if m.setgroups_denied {
        write("setgroups", "deny")?;
    }
    write("gid_map", &map_text(&m.gid))
}
// ANCHOR_END: write_maps

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_id() {
        let f = std::env::temp_dir().join(format!("cfs-subuid-{}", std::process::id()));
        std::fs::write(&f, "alice:100000:65536\n1001:165536:1000\nbroken\n").unwrap();
        assert_eq!(subordinate(&f, Some("alice"), 1000), Some((100000, 65536)));
        assert_eq!(subordinate(&f, Some("bob"), 1001), Some((165536, 1000)));
        assert_eq!(subordinate(&f, Some("carol"), 1002), None);
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn maps_render_as_the_kernel_expects() {
        let m = [
            IdMap {
                inside: 0,
                outside: 1000,
                count: 1,
            },
            IdMap {
                inside: 1,
                outside: 100000,
                count: 65536,
            },
        ];
        assert_eq!(map_text(&m), "0 1000 1\n1 100000 65536\n");
        let mapping = Mapping {
            uid: m.to_vec(),
            gid: m.to_vec(),
            helper: true,
            setgroups_denied: false,
        };
        assert_eq!(mapping.outside_root(), Some((1000, 1000)));
        assert!(mapping.maps_gid(5));
        assert!(!mapping.maps_gid(70000));
    }
}
