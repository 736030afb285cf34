//! Privilege reduction in the container's first process, the last steps before execve(2):
//! capabilities (`man 7 capabilities`), no_new_privs (`man 2 prctl`, PR_SET_NO_NEW_PRIVS)
//! and the seccomp filter (`man 2 seccomp`).
//!
//! The seccomp filter is compiled from the spec's `linux.seccomp` section *before* fork
//! ([`compile_seccomp`]), so the child only has to load it.

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::{BTreeMap, HashSet};

/// OCI capability names ("CAP_CHOWN") to the `caps` crate's values.
fn to_caps(set: &HashSet<Capability>) -> Result<caps::CapsHashSet> {
    set.iter()
        .map(|c| {
            let name = serde_json::to_value(c)?;
            let name = name.as_str().unwrap_or_default();
            name.parse::<caps::Capability>()
                .map_err(|e| anyhow!("unknown capability {name}: {e}"))
        })
        .collect()
}

/// Capability sets as the process should have them, converted once before fork.
pub struct CapSets {
    bounding: caps::CapsHashSet,
    effective: caps::CapsHashSet,
    permitted: caps::CapsHashSet,
    inheritable: caps::CapsHashSet,
    ambient: caps::CapsHashSet,
}

impl CapSets {
    pub fn from_spec(spec: Option<&LinuxCapabilities>) -> Result<CapSets> {
        let empty = HashSet::new();
        let get = |s: Option<&HashSet<Capability>>| to_caps(s.unwrap_or(&empty));
        let Some(spec) = spec else {
            return Ok(CapSets {
                bounding: Default::default(),
                effective: Default::default(),
                permitted: Default::default(),
                inheritable: Default::default(),
                ambient: Default::default(),
            });
        };
        Ok(CapSets {
            bounding: get(spec.bounding().as_ref())?,
            effective: get(spec.effective().as_ref())?,
            permitted: get(spec.permitted().as_ref())?,
            inheritable: get(spec.inheritable().as_ref())?,
            ambient: get(spec.ambient().as_ref())?,
        })
    }

    // ANCHOR: drop_bounding
    /// Drops every capability not in the bounding set from the bounding set (needs
    /// CAP_SETPCAP, so this runs while we are still fully privileged root). After this no
    /// execve, not even of a setuid-root or file-capability binary, can gain them back.
    pub fn drop_bounding(&self) -> Result<()> {
        for cap in caps::all() {
            if !self.bounding.contains(&cap) {
                // One prctl per capability, without reading the set first: dropping one
                // that is already gone succeeds, and one this kernel does not know (EINVAL)
                // cannot be held either.
                // SAFETY: prctl(2) with integer arguments only.
                let rc = unsafe {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap.index() as libc::c_ulong, 0, 0, 0)
                };
                let err = std::io::Error::last_os_error();
                if rc != 0 && err.raw_os_error() != Some(libc::EINVAL) {
                    return Err(err)
                        .with_context(|| format!("cannot drop {cap} from the bounding set"));
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: drop_bounding

    /// Sets the remaining sets; runs after setuid(2) (with PR_SET_KEEPCAPS for non-root).
    pub fn apply(&self) -> Result<()> {
        // Order matters: permitted bounds effective and inheritable; ambient needs both.
        caps::set(
            None,
            caps::CapSet::Effective,
            &self.effective.union(&self.permitted).cloned().collect(),
        )
        .context("cannot set effective capabilities")?;
        caps::set(None, caps::CapSet::Permitted, &self.permitted)
            .context("cannot set permitted capabilities")?;
        caps::set(None, caps::CapSet::Effective, &self.effective)
            .context("cannot set effective capabilities")?;
        caps::set(None, caps::CapSet::Inheritable, &self.inheritable)
            .context("cannot set inheritable capabilities")?;
        if !self.ambient.is_empty() {
            caps::set(None, caps::CapSet::Ambient, &self.ambient)
                .context("cannot set ambient capabilities")?;
        }
        Ok(())
    }
}

// ANCHOR: no_new_privs
/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: execve can never grant privileges again (setuid bits and
/// file capabilities are ignored). Also what lets an unprivileged process load seccomp.
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS) failed")
}
// ANCHOR_END: no_new_privs

/// Loads a compiled filter into the calling thread. Called last before execve.
pub fn load_seccomp(filters: &[BpfProgram]) -> Result<()> {
    for prog in filters {
        seccompiler::apply_filter(prog)
            .map_err(|e| anyhow!("cannot load the seccomp filter: {e}"))?;
    }
    Ok(())
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(1)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        other => bail!("seccomp action {other:?} is not supported by final"),
    })
}

/// Compiles an OCI seccomp section to BPF (`man 2 seccomp`, SECCOMP_SET_MODE_FILTER).
/// Syscall names this architecture does not have are skipped, as runc and docker do.
pub fn compile_seccomp(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut by_action: BTreeMap<String, (SeccompAction, BTreeMap<i64, Vec<SeccompRule>>)> =
        BTreeMap::new();
    for rule in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(rule.action(), rule.errno_ret())?;
        let mut conditions = Vec::new();
        for arg in rule.args().as_deref().unwrap_or_default() {
            let op = match arg.op() {
                LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
                LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
                LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
                LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
                LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
                LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
                LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(arg.value()),
            };
            let value = match arg.op() {
                LinuxSeccompOperator::ScmpCmpMaskedEq => arg.value_two().unwrap_or(0),
                _ => arg.value(),
            };
            conditions.push(
                SeccompCondition::new(arg.index() as u8, SeccompCmpArgLen::Qword, op, value)
                    .map_err(|e| anyhow!("bad seccomp condition: {e}"))?,
            );
        }
        // seccompiler groups rules by their match action: one filter per action, chained.
        let entry = by_action
            .entry(format!("{act:?}"))
            .or_insert_with(|| (act.clone(), BTreeMap::new()));
        for name in rule.names() {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            let rules = entry.1.entry(nr).or_default();
            if !conditions.is_empty() {
                rules.push(
                    SeccompRule::new(conditions.clone())
                        .map_err(|e| anyhow!("bad seccomp rule for {name}: {e}"))?,
                );
            }
        }
    }
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| anyhow!("seccomp: unsupported architecture: {e:?}"))?;
    // The kernel runs every loaded filter and takes the most restrictive verdict, so one
    // filter per action composes exactly like one big filter would.
    let mut programs = Vec::new();
    for (_, (act, rules)) in by_action {
        if rules.is_empty() || act == default {
            continue;
        }
        let filter = SeccompFilter::new(rules, default.clone(), act, arch)
            .map_err(|e| anyhow!("cannot build the seccomp filter: {e}"))?;
        let bpf: BpfProgram = filter
            .try_into()
            .map_err(|e| anyhow!("cannot compile the seccomp filter: {e:?}"))?;
        programs.push(bpf);
    }
    Ok(programs)
}

/// Syscall names to numbers for this architecture (libc's SYS_* constants). Names this
/// architecture does not have (or that this table lacks) give `None`.
pub fn syscall_number(name: &str) -> Option<i64> {
    let key = format!("SYS_{name}");
    let key = key.as_str();
    macro_rules! table {
        ($($n:ident),* $(,)?) => {
            match key {
                $(stringify!($n) => return Some(libc::$n as i64),)*
                _ => {}
            }
        };
    }
    table!(
        SYS_acct,
        SYS_add_key,
        SYS_bpf,
        SYS_clock_adjtime,
        SYS_clock_settime,
        SYS_clone,
        SYS_clone3,
        SYS_delete_module,
        SYS_finit_module,
        SYS_fsconfig,
        SYS_fsmount,
        SYS_fsopen,
        SYS_fspick,
        SYS_get_mempolicy,
        SYS_init_module,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_io_uring_setup,
        SYS_kcmp,
        SYS_kexec_file_load,
        SYS_kexec_load,
        SYS_keyctl,
        SYS_lookup_dcookie,
        SYS_mbind,
        SYS_mount,
        SYS_mount_setattr,
        SYS_move_mount,
        SYS_move_pages,
        SYS_name_to_handle_at,
        SYS_open_by_handle_at,
        SYS_open_tree,
        SYS_perf_event_open,
        SYS_pivot_root,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_ptrace,
        SYS_quotactl,
        SYS_reboot,
        SYS_request_key,
        SYS_set_mempolicy,
        SYS_setns,
        SYS_settimeofday,
        SYS_swapoff,
        SYS_swapon,
        SYS_umount2,
        SYS_unshare,
        SYS_userfaultfd,
        SYS_personality,
        SYS_chroot,
        SYS_syslog,
        SYS_vhangup,
        SYS_nfsservctl,
    );
    #[cfg(target_arch = "x86_64")]
    table!(
        SYS_ioperm,
        SYS_iopl,
        SYS_sysfs,
        SYS__sysctl,
        SYS_uselib,
        SYS_ustat,
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles_and_knows_its_syscalls() {
        let profile = crate::spec::default_seccomp().unwrap();
        let progs = compile_seccomp(&profile).unwrap();
        // EPERM for the denied list and clone with namespace flags, ENOSYS for clone3.
        assert_eq!(progs.len(), 2);
        assert!(progs[0].len() + progs[1].len() > 50);
        assert!(syscall_number("keyctl").is_some());
        assert!(syscall_number("no_such_call").is_none());
        for name in crate::spec::DENIED_SYSCALLS {
            // Every name is known at least on x86_64, where CI runs.
            #[cfg(target_arch = "x86_64")]
            assert!(syscall_number(name).is_some(), "{name}");
            let _ = name;
        }
    }

    #[test]
    fn default_caps_convert() {
        let set: HashSet<Capability> = crate::spec::DEFAULT_CAPS.into_iter().collect();
        let converted = to_caps(&set).unwrap();
        assert_eq!(converted.len(), 14);
        assert!(converted.contains(&caps::Capability::CAP_NET_BIND_SERVICE));
        assert!(!converted.contains(&caps::Capability::CAP_SYS_ADMIN));
    }
}
