//! The container's file system view: a mount *plan*, built before fork and executed by the
//! container's first process in one loop (bubblewrap's discipline).
//!
//! Order, and why:
//! 1. Make every mount in the new mount namespace private (`man 7 mount_namespaces`), before
//!    anything else, so nothing we mount or unmount propagates back to the host.
//! 2. Mount the container's root: an overlay (`lower` = the read-only image, `upper` = this
//!    container's changes, so the shared image is never written) or a recursive bind.
//! 3. `pivot_root(2)` into it, with the old root parked on `/.cfs-oldroot`. From here on, a
//!    destination path resolves *inside* the container (a symlink in the image cannot point a
//!    mount at the host), and volume sources are reached through the old root.
//! 4. The spec's mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, volumes, /tmp),
//!    then the device nodes and /dev symlinks, then masked and read-only paths.
//! 5. Detach the old root (`umount2(MNT_DETACH)`): the host's tree is no longer reachable.
//! 6. With `--read-only`, make `/` read-only last (after the mount points were created).

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// Where the old root is parked between pivot_root and its detachment; the container's
/// short id follows, so that containers sharing an image directory (no overlay) never
/// share the mount point.
pub const OLD_ROOT_PREFIX: &str = "/.cfs-oldroot-";

/// How the container's root file system is put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootLayer {
    /// overlay(7): the image read-only below, this container's writable layer above.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
    /// The directory itself (an OCI bundle's rootfs).
    Bind { source: PathBuf },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// mount("", "/", MS_REC|MS_PRIVATE)
    MakePrivate,
    /// Assemble the root at `target` (a host path, only visible in our mount namespace).
    Root {
        layer: RootLayer,
        target: PathBuf,
    },
    /// pivot_root into `root`, the old root parked at `old_root` (a path inside `root`).
    PivotRoot {
        root: PathBuf,
        old_root: PathBuf,
    },
    /// A file system mount at a container path.
    Mount {
        fstype: String,
        source: String,
        target: PathBuf,
        flags: u64,
        data: String,
    },
    /// A bind mount of a host path (reached through the old root) at a container path.
    Bind {
        old_root: PathBuf,
        source: PathBuf,
        target: PathBuf,
        flags: u64,
        readonly: bool,
    },
    /// A character device node (`man 2 mknod`) with mode 0666.
    /// In a user namespace mknod(2) is refused (`man 7 user_namespaces`): the host's node of
    /// the same path is bind-mounted instead, reached through `old_root`.
    Device {
        path: PathBuf,
        major: u64,
        minor: u64,
        old_root: PathBuf,
    },
    Symlink {
        target: String,
        link: PathBuf,
    },
    /// Bind the container's terminal (a pty slave on the host) to /dev/console.
    Console {
        old_root: PathBuf,
        pty: PathBuf,
    },
    /// Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory.
    Mask {
        path: PathBuf,
    },
    /// Bind a path onto itself and make that read-only.
    ReadOnly {
        path: PathBuf,
    },
    /// Create the working directory if missing (before the root may become read-only).
    Workdir {
        path: PathBuf,
    },
    /// umount2(old_root, MNT_DETACH), and remove the mount point if we created it.
    DetachOldRoot {
        old_root: PathBuf,
        remove: bool,
    },
    /// Remount `/` read-only (`--read-only`).
    RootReadOnly,
}

/// Mount flags from OCI option strings (`man 8 mount`); the rest is file-system data.
pub fn parse_options(options: &[String]) -> (MsFlags, String, bool) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut recursive_bind = false;
    for opt in options {
        match opt.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => {
                flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
                recursive_bind = true;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "async" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","), recursive_bind)
}

/// The plan for `spec`. `layer` says how to build the root, `root_target` where (a host
/// directory), `pty` the container's terminal if it has one.
pub fn plan(
    spec: &Spec,
    layer: RootLayer,
    root_target: &Path,
    id: &str,
    pty: Option<&Path>,
) -> Result<Vec<MountOp>> {
    // Park the old root on a directory the image already has, if it has one we may use:
    // creating and removing `/.cfs-oldroot-ID` costs a copy-up-free but real directory in
    // the writable layer (with overlayfs: a block allocated and freed on the host's file
    // system, ~1 ms on a `discard`-mounted ext4). Otherwise create one.
    let image = match &layer {
        RootLayer::Overlay { lower, .. } => lower,
        RootLayer::Bind { source } => source,
    };
    let (old_root, created) = match existing_old_root(spec, image) {
        Some(existing) => (existing, false),
        None => (
            PathBuf::from(format!("{OLD_ROOT_PREFIX}{}", &id[..id.len().min(12)])),
            true,
        ),
    };
    // ANCHOR: plan_start
    let mut ops = vec![
        MountOp::MakePrivate,
        MountOp::Root {
            layer,
            target: root_target.to_path_buf(),
        },
        MountOp::PivotRoot {
            root: root_target.to_path_buf(),
            old_root: old_root.clone(),
        },
    ];
    // ANCHOR_END: plan_start
    let mut dev_is_tmpfs = false;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let target = m.destination().clone();
        if !target.is_absolute() {
            bail!(
                "mount destination {} must be an absolute path",
                target.display()
            );
        }
        let options = m.options().clone().unwrap_or_default();
        let (flags, data, _) = parse_options(&options);
        let fstype = m.typ().clone().unwrap_or_default();
        if fstype == "bind" || flags.contains(MsFlags::MS_BIND) {
            let source = m
                .source()
                .clone()
                .ok_or_else(|| anyhow!("bind mount {} has no source", target.display()))?;
            ops.push(MountOp::Bind {
                old_root: old_root.clone(),
                source,
                target,
                flags: (flags & !MsFlags::MS_RDONLY).bits(),
                readonly: flags.contains(MsFlags::MS_RDONLY),
            });
        } else {
            if target == Path::new("/dev") && fstype == "tmpfs" {
                dev_is_tmpfs = true;
            }
            ops.push(MountOp::Mount {
                fstype: fstype.clone(),
                source: m
                    .source()
                    .as_ref()
                    .map_or(fstype, |s| s.to_string_lossy().into_owned()),
                target,
                flags: flags.bits(),
                data,
            });
        }
    }
    // ANCHOR: devices
    if dev_is_tmpfs {
        // The devices every container gets (OCI runtime spec, "Default Devices"). Not the
        // host's /dev: no disks, no /dev/mem, no /dev/kmsg.
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            ops.push(MountOp::Device {
                path: Path::new("/dev").join(name),
                major,
                minor,
                old_root: old_root.clone(),
            });
        }
        for (target, link) in [
            ("pts/ptmx", "/dev/ptmx"),
            ("/proc/self/fd", "/dev/fd"),
            ("/proc/self/fd/0", "/dev/stdin"),
            ("/proc/self/fd/1", "/dev/stdout"),
            ("/proc/self/fd/2", "/dev/stderr"),
            ("/proc/kcore", "/dev/core"),
        ] {
            ops.push(MountOp::Symlink {
                target: target.into(),
                link: link.into(),
            });
        }
        if let Some(pty) = pty {
            ops.push(MountOp::Console {
                old_root: old_root.clone(),
                pty: pty.to_path_buf(),
            });
        }
    }
    // ANCHOR_END: devices
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        ops.push(MountOp::Mask { path: path.into() });
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        ops.push(MountOp::ReadOnly { path: path.into() });
    }
    if let Some(p) = spec.process() {
        ops.push(MountOp::Workdir {
            path: p.cwd().clone(),
        });
    }
    // ANCHOR: plan_end
    ops.push(MountOp::DetachOldRoot {
        old_root,
        remove: created,
    });
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        ops.push(MountOp::RootReadOnly);
    }
    // ANCHOR_END: plan_end
    Ok(ops)
}

/// pivot_root(2) only needs *some* directory under the new root to park the old root on, so
/// use an existing directory of the image: nothing is created in the container's root, and
/// nothing removed (mounting over a directory does not change it). In a user namespace
/// without overlayfs this is also the only way: the root is the image directory itself,
/// owned by host root, which is unmapped there, so `/.cfs-oldroot-*` cannot be created in it
/// (EACCES). Not a volume target, not the working directory (both are set up while the old
/// root is parked), not /tmp (it may get a tmpfs then); outside a user namespace only a
/// real directory, not a symlink.
fn existing_old_root(spec: &Spec, image: &Path) -> Option<PathBuf> {
    use oci_spec::runtime::LinuxNamespaceType;
    let userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    let mut busy: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .collect();
    if let Some(p) = spec.process() {
        busy.push(p.cwd().clone());
    }
    ["/mnt", "/media", "/opt", "/srv", "/home"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| {
            let host = image.join(d.strip_prefix("/").unwrap_or(d));
            let is_dir = if userns {
                host.is_dir()
            } else {
                std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir())
            };
            is_dir && !busy.iter().any(|t| t.starts_with(d))
        })
}

/// Runs the plan. Called in the container's first process, in its new mount namespace.
pub fn execute(ops: &[MountOp]) -> Result<()> {
    for op in ops {
        execute_one(op).with_context(|| describe(op))?;
    }
    Ok(())
}

fn describe(op: &MountOp) -> String {
    match op {
        MountOp::MakePrivate => "cannot make the mount tree private".into(),
        MountOp::Root { target, .. } => {
            format!("cannot mount the root file system on {}", target.display())
        }
        MountOp::PivotRoot { root, .. } => format!("cannot pivot_root into {}", root.display()),
        MountOp::Mount { fstype, target, .. } => {
            format!("cannot mount {fstype} on {}", target.display())
        }
        MountOp::Bind { source, target, .. } => format!(
            "cannot bind-mount volume {} on {}",
            source.display(),
            target.display()
        ),
        MountOp::Device { path, .. } => format!("cannot create device {}", path.display()),
        MountOp::Symlink { link, .. } => format!("cannot create symlink {}", link.display()),
        MountOp::Console { pty, .. } => format!("cannot bind {} on /dev/console", pty.display()),
        MountOp::Mask { path } => format!("cannot mask {}", path.display()),
        MountOp::ReadOnly { path } => format!("cannot make {} read-only", path.display()),
        MountOp::Workdir { path } => {
            format!("cannot create the working directory {}", path.display())
        }
        MountOp::DetachOldRoot { old_root, .. } => {
            format!("cannot detach the old root {}", old_root.display())
        }
        MountOp::RootReadOnly => "cannot make / read-only".into(),
    }
}

fn none() -> Option<&'static str> {
    None
}

/// `host_path` as seen through the parked old root, between pivot_root and its detachment.
fn via_old_root(old_root: &Path, host_path: &Path) -> PathBuf {
    old_root.join(host_path.strip_prefix("/").unwrap_or(host_path))
}

/// Creates `path` as a directory or, when `file`, an empty file, with missing parents.
fn make_mount_point(path: &Path, file: bool) -> Result<()> {
    if file {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::symlink_metadata(path).is_err() {
            std::fs::File::create(path)?;
        }
    } else {
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_dir() => {
                bail!(
                    "{} exists in the container and is not a directory",
                    path.display()
                )
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir_all(path)?,
        }
    }
    Ok(())
}

// ANCHOR: make_readonly
/// Makes a mount and everything below it read-only (and nosuid/nodev). A plain
/// MS_REMOUNT|MS_RDONLY only reaches the top mount; mount_setattr(2) with AT_RECURSIVE
/// (Linux 5.12) reaches the submounts of a recursive bind too.
fn make_readonly(path: &Path, extra: MsFlags) -> Result<()> {
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd }
    let attr: [u64; 4] = [
        0x1 /* MOUNT_ATTR_RDONLY */ | 0x2 /* NOSUID */ | 0x4, /* NODEV */
        0,
        0,
        0,
    ];
    // SAFETY: valid NUL-terminated path and a properly sized struct mount_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    mount(
        none(),
        path,
        none(),
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra,
        none(),
    )?;
    Ok(())
}
// ANCHOR_END: make_readonly

fn execute_one(op: &MountOp) -> Result<()> {
    match op {
        MountOp::MakePrivate => {
            // Safe: we are in our own mount namespace; from now on nothing propagates.
            mount(
                none(),
                "/",
                none(),
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                none(),
            )?;
        }
        // ANCHOR: root_layer
        MountOp::Root { layer, target } => match layer {
            RootLayer::Overlay { lower, upper, work } => {
                for p in [lower, upper, work] {
                    let s = p.to_string_lossy();
                    if s.contains([',', ':']) {
                        bail!("overlay paths may not contain `,` or `:`: {s}");
                    }
                }
                let data = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    upper.display(),
                    work.display()
                );
                // `volatile` (Linux 5.10): no sync of the upper file system when the overlay
                // goes away with the container. Without it the unmount runs syncfs(2) on the
                // host file system the layer lives on, waiting for all of its dirty data and a
                // journal commit. The layer is deleted when the container ends and never
                // mounted again, so there is nothing to keep. Older kernels: EINVAL, retry.
                let mount_overlay = |data: &str| {
                    mount(
                        Some("overlay"),
                        target,
                        Some("overlay"),
                        MsFlags::empty(),
                        Some(data),
                    )
                };
                mount_overlay(&format!("{data},volatile"))
                    .or_else(|e| match e {
                        nix::errno::Errno::EINVAL => mount_overlay(&data),
                        e => Err(e),
                    })
                    .map_err(|e| {
                        anyhow!("overlay mount failed ({e}); `final doctor` checks overlayfs")
                    })?;
            }
            RootLayer::Bind { source } => {
                mount(
                    Some(source),
                    target,
                    none(),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none(),
                )?;
            }
        },
        // ANCHOR_END: root_layer
        // ANCHOR: pivot
        MountOp::PivotRoot { root, old_root } => {
            let inside = old_root.strip_prefix("/").unwrap_or(old_root);
            let old = root.join(inside);
            std::fs::create_dir_all(&old)?;
            nix::unistd::chdir(root)?;
            // pivot_root(2): the new root must be a mount point (it is: step 2), and
            // neither it nor its parent may be shared (they are not: step 1).
            nix::unistd::pivot_root(".", inside)?;
            nix::unistd::chdir("/")?;
        }
        // ANCHOR_END: pivot
        MountOp::Mount {
            fstype,
            source,
            target,
            flags,
            data,
        } => {
            make_mount_point(target, false)?;
            let flags = MsFlags::from_bits_truncate(*flags);
            let data = (!data.is_empty()).then_some(data.as_str());
            mount(
                Some(source.as_str()),
                target,
                Some(fstype.as_str()),
                flags,
                data,
            )?;
        }
        // ANCHOR: bind
        MountOp::Bind {
            old_root,
            source,
            target,
            flags,
            readonly,
        } => {
            let from = via_old_root(old_root, source);
            let meta = std::fs::metadata(&from)
                .with_context(|| format!("volume source {} is gone", source.display()))?;
            make_mount_point(target, !meta.is_dir()).map_err(|e| {
                let denied = e
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
                if denied {
                    e.context(format!("cannot create the mount point {} in the image: in a user namespace the image belongs to an unmapped user (host root) and, without overlayfs, cannot be changed\nfix: mount the volume on a directory the image already has (e.g. /mnt), or enable overlayfs (`final doctor`)", target.display()))
                } else {
                    e
                }
            })?;
            let flags = MsFlags::from_bits_truncate(*flags) | MsFlags::MS_BIND;
            mount(Some(&from), target, none(), flags, none())?;
            if *readonly {
                make_readonly(target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
            } else if flags.intersects(MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
            {
                // Flags other than MS_BIND|MS_REC are ignored by the bind itself.
                let keep = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
                mount(
                    none(),
                    target,
                    none(),
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | keep,
                    none(),
                )?;
            }
        }
        // ANCHOR_END: bind
        MountOp::Device {
            path,
            major,
            minor,
            old_root,
        } => {
            let mode = Mode::from_bits_truncate(0o666);
            match mknod(path, SFlag::S_IFCHR, mode, makedev(*major, *minor)) {
                Err(nix::errno::Errno::EPERM) => {
                    make_mount_point(path, true)?;
                    mount(
                        Some(&via_old_root(old_root, path)),
                        path,
                        none(),
                        MsFlags::MS_BIND,
                        none(),
                    )?;
                }
                other => other?,
            }
        }
        MountOp::Symlink { target, link } => {
            std::os::unix::fs::symlink(target, link)?;
        }
        MountOp::Console { old_root, pty } => {
            make_mount_point(Path::new("/dev/console"), true)?;
            mount(
                Some(&via_old_root(old_root, pty)),
                "/dev/console",
                none(),
                MsFlags::MS_BIND,
                none(),
            )?;
        }
        // ANCHOR: mask
        MountOp::Mask { path } => match std::fs::metadata(path) {
            Err(_) => {} // Not on this kernel: nothing to hide.
            Ok(meta) if meta.is_dir() => {
                mount(
                    Some("tmpfs"),
                    path,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    none(),
                )?;
            }
            Ok(_) => {
                mount(Some("/dev/null"), path, none(), MsFlags::MS_BIND, none())?;
            }
        },
        // ANCHOR_END: mask
        // ANCHOR: readonly_path
        MountOp::ReadOnly { path } => {
            if std::fs::symlink_metadata(path).is_ok() {
                mount(
                    Some(path),
                    path,
                    none(),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none(),
                )?;
                make_readonly(
                    path,
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                )?;
            }
        }
        // ANCHOR_END: readonly_path
        MountOp::Workdir { path } => match std::fs::metadata(path) {
            Ok(m) if !m.is_dir() => bail!(
                "{} is not a directory inside the container\nfix: pass a directory to --workdir",
                path.display()
            ),
            Ok(_) => {}
            Err(_) => std::fs::create_dir_all(path)?,
        },
        // ANCHOR: detach
        MountOp::DetachOldRoot { old_root, remove } => {
            // Lazy: the old tree disappears from our namespace at once, and the kernel frees
            // it when unused. Private (step 1), so the host does not notice.
            umount2(old_root, MntFlags::MNT_DETACH)?;
            if *remove {
                let _ = std::fs::remove_dir(old_root);
            }
        }
        // ANCHOR_END: detach
        MountOp::RootReadOnly => {
            mount(
                none(),
                "/",
                none(),
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                none(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{build, RunOptions};

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["nosuid", "rbind", "ro", "mode=755", "size=1k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data, rec) = parse_options(&opts);
        assert!(flags.contains(
            MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        ));
        assert_eq!(data, "mode=755,size=1k");
        assert!(rec);
    }

    #[test]
    fn plan_order_is_private_root_pivot_mounts_masks_detach() {
        // An image without /mnt, /media, /opt, /srv or /home: the old root gets a directory
        // of its own.
        let tmp = std::env::temp_dir().join(format!("cfs-plan-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let opts = RunOptions {
            rootfs: tmp.clone(),
            args: vec!["true".into()],
            hostname: "h".into(),
            read_only: true,
            volumes: vec![crate::parse::volume(&format!("{}:/data:ro", tmp.display())).unwrap()],
            ..Default::default()
        };
        let spec = build(&opts).unwrap();
        let layer = RootLayer::Bind {
            source: tmp.clone(),
        };
        let ops = plan(&spec, layer, Path::new("/x"), "0123456789abcdef", None).unwrap();
        assert_eq!(ops[0], MountOp::MakePrivate);
        assert!(matches!(ops[1], MountOp::Root { .. }));
        assert!(
            matches!(&ops[2], MountOp::PivotRoot { old_root, .. } if old_root == Path::new("/.cfs-oldroot-0123456789ab"))
        );
        let pos = |pred: &dyn Fn(&MountOp) -> bool| ops.iter().position(pred).unwrap();
        let proc_at = pos(&|o| matches!(o, MountOp::Mount { fstype, .. } if fstype == "proc"));
        let dev_at =
            pos(&|o| matches!(o, MountOp::Mount { target, .. } if target == Path::new("/dev")));
        let null_at =
            pos(&|o| matches!(o, MountOp::Device { path, .. } if path == Path::new("/dev/null")));
        let mask_at =
            pos(&|o| matches!(o, MountOp::Mask { path } if path == Path::new("/proc/kcore")));
        let bind_at = pos(&|o| matches!(o, MountOp::Bind { readonly: true, .. }));
        let detach_at = pos(&|o| matches!(o, MountOp::DetachOldRoot { .. }));
        assert!(proc_at < mask_at && dev_at < null_at && null_at < mask_at);
        assert!(bind_at < detach_at && mask_at < detach_at);
        assert_eq!(ops.last(), Some(&MountOp::RootReadOnly));
        assert!(ops
            .iter()
            .any(|o| matches!(o, MountOp::Mount { target, .. } if target == Path::new("/tmp"))));
        assert!(!ops.iter().any(|o| matches!(o, MountOp::Console { .. })));
        assert!(
            matches!(&ops[detach_at], MountOp::DetachOldRoot { remove: true, old_root } if old_root == Path::new("/.cfs-oldroot-0123456789ab"))
        );
        let _ = std::fs::remove_dir(&tmp);
    }

    #[test]
    fn old_root_parks_on_an_existing_directory_not_a_volume_or_the_workdir() {
        let image = std::env::temp_dir().join(format!("cfs-park-test-{}", std::process::id()));
        for d in ["mnt", "opt"] {
            std::fs::create_dir_all(image.join(d)).unwrap();
        }
        let plan_for = |opts: RunOptions| {
            let spec = build(&opts).unwrap();
            let layer = RootLayer::Overlay {
                lower: image.clone(),
                upper: "/u".into(),
                work: "/w".into(),
            };
            plan(&spec, layer, Path::new("/x"), "0123456789abcdef", None).unwrap()
        };
        let base = || RunOptions {
            rootfs: image.clone(),
            args: vec!["true".into()],
            hostname: "h".into(),
            ..Default::default()
        };
        let parked = |ops: &[MountOp]| match ops.iter().find_map(|o| match o {
            MountOp::DetachOldRoot { old_root, remove } => Some((old_root.clone(), *remove)),
            _ => None,
        }) {
            Some(p) => p,
            None => panic!("no DetachOldRoot"),
        };
        assert_eq!(parked(&plan_for(base())), ("/mnt".into(), false));
        let with_volume = RunOptions {
            volumes: vec![crate::parse::volume(&format!("{}:/mnt/data", image.display())).unwrap()],
            ..base()
        };
        assert_eq!(parked(&plan_for(with_volume)), ("/opt".into(), false));
        let with_workdir = RunOptions {
            workdir: Some("/mnt/w".into()),
            ..base()
        };
        assert_eq!(parked(&plan_for(with_workdir)), ("/opt".into(), false));
        let _ = std::fs::remove_dir_all(&image);
    }
}
