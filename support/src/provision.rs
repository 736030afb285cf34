//! Builds the default root filesystem, offline, from what the host already has.
//!
//! Preferred source: a statically linked busybox (`apt install busybox-static`, present on many
//! distributions): one binary plus a symlink per applet gives a complete small userland.
//! Fallback: the host's own programs (`sh`, `ls`, `ps`, ...) copied with the shared libraries
//! `ldd` says they need, at the same paths.
//!
//! The tree is built in a temporary directory next to the final one and renamed into place,
//! so an interrupted build never leaves a half-made root filesystem behind, and a lock file
//! keeps two concurrent first runs from building it twice.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the layout changes, so existing trees are rebuilt.
const LAYOUT_VERSION: &str = "cfs-rootfs 1";
const MARKER: &str = ".cfs-rootfs";

/// What [`provision_default_rootfs`] did.
#[derive(Debug)]
pub struct ProvisionReport {
    pub dir: PathBuf,
    /// `None` when an up-to-date tree was already there.
    pub built_from: Option<String>,
}

/// Makes sure `<workspace>/.rootfs/default` exists and is complete; rebuilds it when `force`.
pub fn provision_default_rootfs(force: bool) -> Result<ProvisionReport> {
    provision_default_rootfs_from(force, Source::Auto)
}

/// [`provision_default_rootfs`], choosing where the programs come from.
pub fn provision_default_rootfs_from(force: bool, source: Source) -> Result<ProvisionReport> {
    let dir = crate::default_rootfs_dir();
    if !force && is_complete(&dir) {
        return Ok(ProvisionReport {
            dir,
            built_from: None,
        });
    }
    let parent = dir
        .parent()
        .expect("default rootfs has a parent")
        .to_path_buf();
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let lock_path = parent.join(".lock");
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("cannot create lock file {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    // Someone else may have finished building while we waited for the lock.
    if !force && is_complete(&dir) {
        return Ok(ProvisionReport {
            dir,
            built_from: None,
        });
    }

    let staging = parent.join(format!(".build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let built_from = build_rootfs(&staging, source).inspect_err(|_| {
        let _ = fs::remove_dir_all(&staging);
    })?;
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove the old root filesystem {}", dir.display()))?;
    }
    fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    eprintln!(
        "note: built the default root filesystem in {} ({built_from})",
        dir.display()
    );
    Ok(ProvisionReport {
        dir,
        built_from: Some(built_from),
    })
}

fn is_complete(dir: &Path) -> bool {
    fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m.starts_with(LAYOUT_VERSION))
}

/// Where the programs of a root filesystem come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A static busybox if the host has one, the host's programs otherwise.
    Auto,
    /// The host's own programs and their shared libraries.
    HostPrograms,
}

/// Builds a root filesystem in `root` (which must not exist yet, or be empty).
pub fn build_rootfs(root: &Path, source: Source) -> Result<String> {
    fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let busybox = match source {
        Source::Auto => find_static_busybox(),
        Source::HostPrograms => None,
    };
    let source = match busybox {
        Some(busybox) => {
            install_busybox(root, &busybox)?;
            format!("static busybox from {}", busybox.display())
        }
        None => {
            install_host_programs(root)?;
            let mut text = "the host's own programs and their libraries".to_string();
            if source == Source::Auto {
                text += " (no static busybox found; `apt install busybox-static` gives a \
                         smaller, more complete one)";
            }
            text
        }
    };
    skeleton(root)?;
    fs::write(
        root.join(MARKER),
        format!("{LAYOUT_VERSION}\nsource: {source}\n"),
    )
    .context("cannot write the rootfs marker")?;
    Ok(source)
}

/// A busybox with no dynamic loader works in any directory we chroot into.
fn find_static_busybox() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = which("busybox").into_iter().collect();
    candidates.extend(["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"].map(PathBuf::from));
    candidates.into_iter().find(|p| p.is_file() && is_static(p))
}

fn is_static(binary: &Path) -> bool {
    // ldd prints "not a dynamic executable" (glibc) or "statically linked" for static binaries.
    match Command::new("ldd").arg(binary).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            text.contains("not a dynamic executable") || text.contains("statically linked")
        }
        Err(_) => false,
    }
}

fn install_busybox(root: &Path, busybox: &Path) -> Result<()> {
    let target = root.join("bin/busybox");
    fs::create_dir_all(root.join("bin"))?;
    fs::copy(busybox, &target)
        .with_context(|| format!("cannot copy {} into the rootfs", busybox.display()))?;
    let list = Command::new(&target)
        .arg("--list-full")
        .output()
        .with_context(|| format!("cannot run {} --list-full", target.display()))?;
    if !list.status.success() {
        bail!("{} --list-full failed", busybox.display());
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" || applet == "linuxrc" {
            continue;
        }
        let link = root.join(applet);
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir)?;
        }
        if !link.exists() {
            symlink("/bin/busybox", &link)
                .with_context(|| format!("cannot link {}", link.display()))?;
        }
    }
    Ok(())
}

/// Programs a learner (and the tests) use in the container when there is no busybox.
const HOST_PROGRAMS: &[&str] = &[
    "sh", "ls", "cat", "echo", "ps", "hostname", "id", "sleep", "true", "false", "env", "mount",
    "umount", "readlink", "grep", "head", "tail", "dd", "mkdir", "rm", "rmdir", "uname", "stat",
    "touch", "wc", "kill", "ln", "cp", "mv", "pwd", "sed", "awk", "chmod", "chown", "test", "expr",
    "seq", "sort", "tr", "cut", "df", "find", "xargs", "whoami", "nproc", "free",
];

fn install_host_programs(root: &Path) -> Result<()> {
    // Mirror merged-/usr symlinks (/bin -> usr/bin ...) so copied paths resolve the same way.
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(top);
        if let Ok(target) = fs::read_link(&host) {
            symlink(&target, root.join(top))?;
            // Create what the link points to, so paths through it resolve from the start.
            let target = target.strip_prefix("/").unwrap_or(&target);
            fs::create_dir_all(root.join(target))?;
        }
    }
    let mut files = BTreeSet::new();
    let mut found_shell = false;
    for name in HOST_PROGRAMS {
        let Some(path) = which(name) else { continue };
        found_shell |= *name == "sh";
        files.insert(path.clone());
        files.extend(shared_libraries(&path)?);
    }
    if !found_shell {
        bail!(
            "cannot build a root filesystem: no static busybox and no `sh` on this host\n\
             fix: install busybox-static (apt install busybox-static), or pass --rootfs DIR"
        );
    }
    for file in files {
        copy_preserving_path(root, &file)?;
    }
    Ok(())
}

fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd to find shared libraries (install libc-bin)")?;
    // Lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
    // "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copies `file` to the same path under `root`, following symlinks on the way.
fn copy_preserving_path(root: &Path, file: &Path) -> Result<()> {
    let real =
        fs::canonicalize(file).with_context(|| format!("cannot resolve {}", file.display()))?;
    // The real file first: through the rootfs's own merged-/usr links `file` may name the
    // very same place, which must then stay the file and not become a link to itself.
    for path in [real.clone(), file.to_path_buf()] {
        let dest = root.join(path.strip_prefix("/").unwrap_or(&path));
        if dest.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        if path == real {
            fs::copy(&real, &dest).with_context(|| format!("cannot copy {}", real.display()))?;
        } else {
            symlink(&real, &dest)?;
        }
    }
    Ok(())
}

fn skeleton(root: &Path) -> Result<()> {
    for dir in [
        "proc", "sys", "dev", "tmp", "root", "etc", "home", "run", "var/tmp", "mnt",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    for sticky in ["tmp", "var/tmp"] {
        fs::set_permissions(root.join(sticky), fs::Permissions::from_mode(0o1777))?;
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(
        root.join("etc/group"),
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    )?;
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    // A few device nodes, so that programs which open /dev/null or /dev/zero work in steps that
    // do not yet mount a /dev of their own (man 4 null, man 2 mknod). Without permission to
    // create device nodes (e.g. a nodev mount), the tree is still usable.
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = root.join("dev").join(name);
        if let Err(err) = mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        ) {
            eprintln!(
                "note: cannot create {} ({err}); continuing without it",
                path.display()
            );
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
        }
    }
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
