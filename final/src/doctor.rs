//! `final doctor`: checks what the runtime needs from this machine and prints the fix for
//! every problem. Returns 0 when all is well, 1 otherwise.

use std::path::Path;

struct Check {
    ok: bool,
    what: String,
    fix: String,
}

fn check(ok: bool, what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        ok,
        what: what.into(),
        fix: fix.into(),
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn run() -> i32 {
    let mut checks = Vec::new();

    let root = nix::unistd::geteuid().is_root();
    let blocked = crate::userns::unprivileged_blocked();
    let apparmor = crate::userns::apparmor_restricts();
    let mut notes: Vec<String> = Vec::new();
    if root {
        checks.push(check(true, "running as root", ""));
        if let Some(why) = &blocked {
            notes.push(format!(
                "rootless mode is not available to other users here: {}",
                why.lines().next().unwrap_or_default()
            ));
        } else if apparmor {
            notes.push("kernel.apparmor_restrict_unprivileged_userns is 1: other users run final rootless only with an AppArmor profile that allows `userns,` (`final doctor` as that user tells)".into());
        }
    } else {
        // The hard switches refuse up front; otherwise ask the kernel itself (AppArmor's
        // switch may be on and a profile allow final anyway).
        let refused = blocked.or_else(|| {
            (!crate::userns::can_create()).then(|| {
                format!(
                    "cannot create a user namespace: {}",
                    crate::userns::refused()
                )
            })
        });
        let (what, fix) = match &refused {
            None => (
                "rootless: unprivileged user namespaces are allowed (created one)".to_string(),
                String::new(),
            ),
            Some(why) => {
                let (what, fix) = why.split_once("\nfix: ").unwrap_or((why, ""));
                (format!("rootless: {what}"), fix.to_string())
            }
        };
        if refused.is_none() && apparmor {
            notes.push("kernel.apparmor_restrict_unprivileged_userns is 1, but final may create user namespaces here (an AppArmor profile allows it)".into());
        }
        checks.push(check(refused.is_none(), what, fix));
        match crate::userns::mapping(None) {
            Ok(Some(m)) if m.helper => notes.push(format!(
                "rootless id map: you are root inside, and ids 1-{} map to your /etc/subuid range (newuidmap)",
                m.uid.get(1).map_or(0, |r| r.count)
            )),
            Ok(Some(_)) => notes.push("rootless id map: only your own id (root inside); for more ids install uidmap (newuidmap) and give your user ranges in /etc/subuid and /etc/subgid".into()),
            _ => {}
        }
        notes.push("--network bridge needs root (without root: none or host)".into());
    }
    if root
        && crate::network::binary("nft").is_none()
        && crate::network::binary("iptables").is_none()
    {
        notes.push(
            "--network bridge needs nftables or iptables (the nft or iptables program): apt install nftables"
                .into(),
        );
    }

    let layout = crate::cgroups::layout();
    let layout_name = match layout {
        crate::cgroups::Layout::V2 => "v2 (unified)",
        crate::cgroups::Layout::V1 { hybrid: true } => {
            "v1, hybrid (final uses the v1 controllers; the cgroup2 mount is ignored)"
        }
        crate::cgroups::Layout::V1 { hybrid: false } => "v1",
    };
    checks.push(check(true, format!("cgroups: {layout_name}"), ""));
    // Which cgroup the limits go to: the root of each hierarchy (root), or the subtree
    // delegated to a rootless user (cgroups.rs), whose controllers are what it was given.
    let delegated = if root {
        Some(String::new())
    } else {
        match crate::cgroups::delegated() {
            Ok(base) => {
                checks.push(check(
                    true,
                    format!("rootless cgroup: /sys/fs/cgroup/{base} is delegated to you (containers get their limits below it)"),
                    "",
                ));
                Some(base)
            }
            Err(why) => {
                notes.push(format!(
                    "rootless containers get no cgroup here, so --memory/--cpus/--pids-limit are not applied: {}",
                    why.replace('\n', "; ")
                ));
                None
            }
        }
    };
    let controllers = match (layout, &delegated) {
        (_, None) => None,
        (crate::cgroups::Layout::V2, Some(base)) => Some((
            crate::cgroups::v2_controllers(base),
            format!("/sys/fs/cgroup/{base}/cgroup.controllers").replace("//", "/"),
        )),
        (crate::cgroups::Layout::V1 { .. }, Some(_)) => Some((
            crate::cgroups::v1_controllers(),
            "/sys/fs/cgroup/<controller>".to_string(),
        )),
    };
    let v1 = matches!(layout, crate::cgroups::Layout::V1 { .. });
    let wanted: &[&str] = if v1 {
        &crate::cgroups::V1_CONTROLLERS
    } else {
        &crate::cgroups::CONTROLLERS
    };
    for (c, (found, where_)) in wanted
        .iter()
        .copied()
        .flat_map(|c| controllers.as_ref().map(|f| (c, f)))
    {
        let fix = if root {
            format!("enable the {c} controller: boot with cgroup_enable={c} (v1) or make sure systemd delegates it (v2: `cat /sys/fs/cgroup/cgroup.controllers`)")
        } else {
            "have systemd delegate it to users: a drop-in /etc/systemd/system/user@.service.d/delegate.conf with `[Service]` and `Delegate=cpu cpuset io memory pids`, then `systemctl daemon-reload` and log in again".to_string()
        };
        checks.push(check(
            found.contains(&c),
            format!("cgroup controller {c} ({where_})"),
            fix,
        ));
    }
    // On v2 the device rules are an eBPF program: try loading one (not attached anywhere).
    if root && !v1 {
        let loaded = crate::devices::can_load();
        checks.push(check(
            loaded.is_ok(),
            "device rules: a cgroup device eBPF program loads (CONFIG_CGROUP_BPF)",
            loaded.err().map(|e| format!("{e:#}")).unwrap_or_default(),
        ));
    }

    let mountinfo = read("/proc/self/mountinfo");
    let root_shared = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .is_some_and(|l| l.contains("shared:"));
    checks.push(check(
        true,
        format!(
            "mount propagation of / is {} (final makes its own namespace private first)",
            if root_shared { "shared" } else { "private" }
        ),
        "",
    ));

    // ANCHOR: overlay_check
    let filesystems = read("/proc/filesystems");
    checks.push(check(
        filesystems.contains("overlay"),
        "overlayfs (each container's writable layer)",
        "load it: `modprobe overlay` (and add `overlay` to /etc/modules)",
    ));
    // ANCHOR_END: overlay_check
    let status = read("/proc/self/status");
    checks.push(check(
        status.contains("Seccomp:"),
        "seccomp filters (CONFIG_SECCOMP_FILTER)",
        "use a kernel built with CONFIG_SECCOMP_FILTER=y",
    ));
    let pivot = Path::new("/proc/self/ns/mnt").exists() && Path::new("/proc/self/ns/pid").exists();
    checks.push(check(
        pivot,
        "namespaces (mnt, pid, uts, ipc, net, cgroup)",
        "use a kernel with CONFIG_NAMESPACES and friends",
    ));

    let default = cfs_support::default_rootfs_dir();
    // Not built yet is fine: the first `final run` builds it (from a static busybox, or the
    // host's own programs).
    if default.join("bin").is_dir() {
        checks.push(check(
            true,
            format!("default root filesystem {}", default.display()),
            "",
        ));
    } else {
        notes.push(format!(
            "default root filesystem {} is not built yet: the first `final run` builds it \
             (a static busybox makes it smaller: apt install busybox-static)",
            default.display()
        ));
    }

    // ANCHOR: report
    for n in &notes {
        println!("note  {n}");
    }
    let mut bad = 0;
    for c in &checks {
        if c.ok {
            println!("ok    {}", c.what);
        } else {
            bad += 1;
            println!("FAIL  {}\n      fix: {}", c.what, c.fix);
        }
    }
    if bad == 0 {
        println!("everything final needs is here");
        0
    } else {
        println!("{bad} problem(s) found");
        1
    }
}
// ANCHOR_END: report
