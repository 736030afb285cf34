//! Support code that is *not* part of the lessons.
//!
//! The step crates and `final` reach this crate in one line each:
//! - [`rootfs`] finds (and on first use builds) the default root filesystem, or checks the one
//!   given with `--rootfs`;
//! - [`not_linux`] is what every binary prints on a system without Linux namespaces.
//!
//! Nothing here creates namespaces or touches the host beyond the workspace's `.rootfs/`
//! directory.

use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
mod provision;

#[cfg(target_os = "linux")]
pub use provision::{
    build_rootfs, provision_default_rootfs, provision_default_rootfs_from, ProvisionReport, Source,
};

/// Where the default root filesystem lives: `<workspace>/.rootfs/default`.
///
/// The path is fixed at compile time from this crate's location, so it is the same whether
/// a binary runs through `cargo run` (as root, through sudo) or directly.
pub fn default_rootfs_dir() -> PathBuf {
    workspace_dir().join(".rootfs").join("default")
}

/// The workspace this crate was built in.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("support/ always sits inside the workspace")
        .to_path_buf()
}

/// The root filesystem a container should use.
///
/// With `Some(dir)` (from `--rootfs DIR`) the directory is checked and returned as an absolute
/// path. With `None` the workspace's default root filesystem is returned, built first if it
/// does not exist yet (offline, from a static busybox or from the host's own binaries).
/// Errors say what is wrong and how to fix it.
pub fn rootfs(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(dir) => check_rootfs(dir),
        None => default_rootfs(),
    }
}

#[cfg(target_os = "linux")]
fn default_rootfs() -> anyhow::Result<PathBuf> {
    provision_default_rootfs(false).map(|report| report.dir)
}

#[cfg(not(target_os = "linux"))]
fn default_rootfs() -> anyhow::Result<PathBuf> {
    not_linux()
}

/// Checks that `dir` looks like a root filesystem a container can start in.
pub fn check_rootfs(dir: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::bail;
    let fix = "fix: pass a directory holding an unpacked root filesystem, for example \
               `mkdir rootfs && docker export $(docker create alpine) | tar -C rootfs -x`, \
               or leave out --rootfs to use the workspace's default one";
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("root filesystem {} does not exist\n{fix}", dir.display())
        }
        Err(err) => bail!(
            "cannot read root filesystem {}: {err}\n{fix}",
            dir.display()
        ),
    };
    if !meta.is_dir() {
        bail!(
            "root filesystem {} is not a directory\n{fix}",
            dir.display()
        );
    }
    let has_programs = ["bin", "usr/bin", "sbin"]
        .iter()
        .any(|sub| dir.join(sub).is_dir());
    if !has_programs {
        bail!(
            "{} does not look like a root filesystem: it has no bin/, usr/bin/ or sbin/ inside\n{fix}",
            dir.display()
        );
    }
    std::path::absolute(dir)
        .map_err(|err| anyhow::anyhow!("cannot resolve {}: {err}", dir.display()))
}

/// Exit status for "the runtime itself failed", as docker and podman use it.
pub const EXIT_RUNTIME_ERROR: i32 = 125;

/// What every binary of this workspace does on a system without Linux namespaces.
pub fn not_linux() -> ! {
    let prog = std::env::args()
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "this program".into());
    eprintln!(
        "{prog}: containers are built from Linux kernel features (namespaces, cgroups, \
         pivot_root), and this is not Linux.\n\
         fix: run the workspace inside a Linux VM. On a Mac: `brew install lima && limactl \
         start && lima` (or UTM, or multipass); on Windows: WSL2 (`wsl --install -d Debian`). \
         Inside the VM install Rust (rustup) and busybox-static, clone this repository and run \
         the same cargo commands. See README.md, \"Not on Linux?\"."
    );
    std::process::exit(EXIT_RUNTIME_ERROR)
}
