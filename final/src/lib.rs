//! `final`: a small container runtime, as a library with one module per concern and a thin
//! CLI (`main.rs`, `cli.rs`).
//!
//! The internal model of a container is an OCI runtime spec ([`spec`]); [`container::create`]
//! is the one code path that turns a spec into a running container:
//!
//! - [`parse`]: command-line values (sizes, volumes, users...), pure and unit-tested;
//! - [`spec`]: `final run` options → OCI `Spec` with docker's defaults;
//! - [`process`]: clone(2) into namespaces, the container's first process up to execve;
//! - [`channel`]: the numbered parent/child sync points;
//! - [`rootfs`]: the mount plan (overlay root, pivot_root, /proc, /dev, /sys, volumes, masks);
//! - [`cgroups`]: limits on cgroup v1, hybrid and v2, written straight to cgroupfs;
//! - [`devices`]: which device nodes a container may use (v1 files, a v2 eBPF program);
//! - [`network`]: `--network none|host|bridge`: loopback, veth + bridge, addresses, NAT;
//! - [`netlink`]: the small synchronous rtnetlink client `network` uses;
//! - [`security`]: capabilities, no_new_privs, seccomp;
//! - [`state`]: records, names, locking;
//! - [`container`]: lifecycle operations and recovery;
//! - [`oci`]: the OCI runtime verbs on a bundle (create, start, state; kill and delete);
//! - [`userns`]: user namespaces: rootless containers and `--userns` (id maps);
//! - [`tty`]: pseudo-terminals; [`doctor`]: checks of the host.

pub mod parse;

#[cfg(target_os = "linux")]
pub mod cgroups;
#[cfg(target_os = "linux")]
pub mod channel;
#[cfg(target_os = "linux")]
pub mod container;
#[cfg(target_os = "linux")]
pub mod devices;
#[cfg(target_os = "linux")]
pub mod doctor;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
pub mod network;
#[cfg(target_os = "linux")]
pub mod oci;
#[cfg(target_os = "linux")]
pub mod process;
#[cfg(target_os = "linux")]
pub mod rootfs;
#[cfg(target_os = "linux")]
pub mod security;
#[cfg(target_os = "linux")]
pub mod spec;
#[cfg(target_os = "linux")]
pub mod state;
#[cfg(target_os = "linux")]
pub mod tty;
#[cfg(target_os = "linux")]
pub mod userns;
