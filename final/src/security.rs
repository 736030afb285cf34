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
    // (action, syscall) with a rule without conditions: it matches whatever other rules of
    // the same action say (seccompiler reads an empty rule list as "always").
    let mut always: Vec<(String, i64)> = Vec::new();
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
        let key = format!("{act:?}");
        let entry = by_action
            .entry(key.clone())
            .or_insert_with(|| (act.clone(), BTreeMap::new()));
        for name in rule.names() {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            let rules = entry.1.entry(nr).or_default();
            if conditions.is_empty() {
                always.push((key.clone(), nr));
            } else {
                rules.push(
                    SeccompRule::new(conditions.clone())
                        .map_err(|e| anyhow!("bad seccomp rule for {name}: {e}"))?,
                );
            }
        }
    }
    for (key, nr) in always {
        if let Some(rules) = by_action.get_mut(&key).and_then(|(_, r)| r.get_mut(&nr)) {
            rules.clear();
        }
    }
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| anyhow!("seccomp: unsupported architecture: {e:?}"))?;
    // seccompiler builds one filter per action; the kernel runs every loaded filter and takes
    // the most restrictive verdict (`man 2 seccomp`, "the highest-precedence action"). So:
    // - with a default of allow (a deny list), each action's filter allows what it does not
    //   match, and they compose exactly like one filter;
    // - with another default (an allow list, docker's), the allow filter answers everything
    //   else with the default, and every other action's filter allows what it does not
    //   match. A call with an unconditional rule of another action (clone3 → ENOSYS) is let
    //   through the allow filter, so that its own verdict, not the default, decides it. A
    //   conditional rule of another action cannot be composed that way and is refused.
    let allow_key = format!("{:?}", SeccompAction::Allow);
    if default != SeccompAction::Allow {
        let mut passed: Vec<i64> = Vec::new();
        for (key, (_, rules)) in &by_action {
            if *key == allow_key {
                continue;
            }
            for (nr, conditions) in rules {
                if !conditions.is_empty() {
                    bail!("seccomp: a conditional rule with an action other than allow, under a default action other than allow (syscall {nr}), is not supported by final");
                }
                passed.push(*nr);
            }
        }
        let allow = by_action
            .entry(allow_key.clone())
            .or_insert_with(|| (SeccompAction::Allow, BTreeMap::new()));
        for nr in passed {
            allow.1.insert(nr, Vec::new());
        }
    }
    let mut programs = Vec::new();
    for (_, (act, rules)) in by_action {
        if rules.is_empty() || act == default {
            continue;
        }
        let mismatch = if act == SeccompAction::Allow {
            default.clone()
        } else {
            SeccompAction::Allow
        };
        let filter = SeccompFilter::new(rules, mismatch, act, arch)
            .map_err(|e| anyhow!("cannot build the seccomp filter: {e}"))?;
        let bpf: BpfProgram = filter
            .try_into()
            .map_err(|e| anyhow!("cannot compile the seccomp filter: {e:?}"))?;
        programs.push(bpf);
    }
    Ok(programs)
}

/// A system call's number on this architecture, from its name (the `syscalls` crate's table);
/// `None` for a name this architecture does not have.
pub fn syscall_number(name: &str) -> Option<i64> {
    name.parse::<syscalls::Sysno>().ok().map(|s| s.id() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles_and_knows_its_syscalls() {
        let profile = crate::spec::default_seccomp().unwrap();
        let progs = compile_seccomp(&profile).unwrap();
        // The allow list (EPERM for the rest), and ENOSYS for clone3.
        assert_eq!(progs.len(), 2);
        assert!(syscall_number("keyctl").is_some());
        assert!(syscall_number("no_such_call").is_none());
        // Every architecture-neutral name of the list is known where CI runs.
        #[cfg(target_arch = "x86_64")]
        {
            let known = crate::spec::ALLOWED_SYSCALLS
                .iter()
                .filter(|n| syscall_number(n).is_some())
                .count();
            assert!(known > 280, "only {known} names known");
            for name in ["read", "execve", "clone", "openat", "arch_prctl", "chroot"] {
                assert!(syscall_number(name).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn conditional_rules_of_other_actions_need_an_allow_default() {
        use oci_spec::runtime::*;
        let rule = LinuxSyscallBuilder::default()
            .names(vec!["clone".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .args(vec![LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(1u64)
                .op(LinuxSeccompOperator::ScmpCmpEq)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let profile = |default| {
            LinuxSeccompBuilder::default()
                .default_action(default)
                .syscalls(vec![rule.clone()])
                .build()
                .unwrap()
        };
        assert!(compile_seccomp(&profile(LinuxSeccompAction::ScmpActAllow)).is_ok());
        let err = compile_seccomp(&profile(LinuxSeccompAction::ScmpActErrno)).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
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
