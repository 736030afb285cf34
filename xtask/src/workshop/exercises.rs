//! The workshop's metadata: per step, the regions of the step's `src/main.rs` that the exercise
//! takes out (marked there with `// ANCHOR: ex_NAME` ... `// ANCHOR_END: ex_NAME`), the
//! `todo!()` message that replaces each, and the progressive hints.
//!
//! The code itself is never copied here: an exercise is the step's own source with its marked
//! regions replaced (see generate.rs), so it cannot drift from the lessons.
//!
//! Todo messages end up inside `todo!("...")`: no `{`, `}` or `"` (a unit test checks).

pub struct Exercise {
    pub step: u8,
    /// The step crate's directory (and package name).
    pub package: &'static str,
    pub title: &'static str,
    /// Rough time a participant needs, for the facilitator's schedule.
    pub minutes: u32,
    pub regions: &'static [Region],
    /// Given one per `cargo xtask workshop hint N`, from gentle to nearly the answer.
    pub hints: &'static [&'static str],
    /// The step's own checks that the untouched exercise already passes, because the code
    /// they test is scaffolding the exercise keeps (argument validation by clap, the --rootfs
    /// check). `dev-check` asserts that every *other* own check fails unsolved.
    pub scaffold_checks: &'static [&'static str],
}

pub struct Region {
    /// The marker name without its `ex_` prefix.
    pub name: &'static str,
    /// What to do, as the `todo!()` message.
    pub todo: &'static str,
    /// The region is the body of a `Drop::drop`: a `todo!()` there must not run while another
    /// panic unwinds (that would abort), so it is generated behind `!std::thread::panicking()`.
    pub in_drop: bool,
}

const fn region(name: &'static str, todo: &'static str) -> Region {
    Region {
        name,
        todo,
        in_drop: false,
    }
}

pub static EXERCISES: &[Exercise] = &[
    Exercise {
        step: 1,
        package: "step01-uts",
        title: "a hostname of its own (UTS namespace)",
        minutes: 20,
        regions: &[
            region(
                "uts_namespace",
                "step 01: move this process into a new UTS namespace (unshare with \
                 CloneFlags::CLONE_NEWUTS), before the fork below, so that the child inherits it",
            ),
            region(
                "hostname",
                "step 01: in the child, set the container's hostname to args.hostname \
                 (sethostname); on error call fail(...)",
            ),
        ],
        hints: &[
            "A UTS namespace holds two strings: the hostname and the NIS domain name \
             (`man 7 uts_namespaces`). The runtime creates the namespace in run(), before fork; \
             the child, already inside it, sets the name. Two todo!()s, in the order the \
             program reaches them.",
            "nix::sched::unshare(flags) moves the *calling* process into new namespaces; every \
             child it forks afterwards inherits them. It returns nix::Result<()>: `?` works once \
             you add context, e.g. `.context(\"unshare(CLONE_NEWUTS) failed\")?`.",
            "In child(): nix::unistd::sethostname(&args.hostname). The child cannot return an \
             error to main(): on failure call fail(&format!(...)), which exits with 125.",
            "In run():\n    let namespaces = CloneFlags::CLONE_NEWUTS;\n    \
             unshare(namespaces).context(\"unshare(CLONE_NEWUTS) failed\")?;\nIn child():\n    \
             if let Err(err) = sethostname(&args.hostname) {\n        \
             fail(&format!(\"sethostname failed: {err}\"));\n    }",
        ],
        scaffold_checks: &["bad_input_is_a_usage_error"],
    },
    Exercise {
        step: 2,
        package: "step02-pid",
        title: "PID 1 (PID namespace)",
        minutes: 10,
        regions: &[region(
            "pid_namespace",
            "step 02: unshare the UTS namespace as in step 01 and now also a new PID namespace: \
             combine CloneFlags::CLONE_NEWUTS and CloneFlags::CLONE_NEWPID with |",
        )],
        hints: &[
            "`man 7 pid_namespaces`: the first process created in a new PID namespace is its \
             PID 1. Which process in this program is created after unshare?",
            "unshare(CLONE_NEWPID) does not move the caller: the runtime stays where it is, and \
             its *next child* is born as PID 1 of the new namespace. The fork() below is that \
             child, so nothing else has to change.",
            "CloneFlags are bit flags: CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID. \
             Keep step 01's UTS namespace, or sethostname would rename the host!",
            "    let namespaces = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID;\n    \
             unshare(namespaces).context(\"unshare(CLONE_NEWUTS | CLONE_NEWPID) failed\")?;",
        ],
        scaffold_checks: &[],
    },
    Exercise {
        step: 3,
        package: "step03-mount-chroot",
        title: "a filesystem of its own (mount namespace, private mounts, chroot)",
        minutes: 30,
        regions: &[
            region(
                "mount_namespace",
                "step 03: unshare the UTS and PID namespaces as before and now also a new mount \
                 namespace: CloneFlags::CLONE_NEWNS",
            ),
            region(
                "private",
                "step 03: before mounting anything, make every mount private, recursively: \
                 mount / with MsFlags::MS_REC | MsFlags::MS_PRIVATE (see mount_namespaces(7)); on \
                 error call fail(...)",
            ),
            region(
                "chroot",
                "step 03: make rootfs the container's / (chroot) and go there (chdir to /); on \
                 error call fail(...)",
            ),
        ],
        hints: &[
            "Three pieces, in the order the program reaches them: a new mount namespace \
             (unshare, in run()), private propagation and chroot (both in child()). Each \
             todo!() says which one it is.",
            "CLONE_NEWNS creates the mount namespace (NS: it was the first namespace, hence the \
             name). It starts as a copy of the host's mount table, propagation included: on \
             systemd hosts / is shared (`findmnt -o TARGET,PROPAGATION /`), so a mount in the \
             copy would appear on the host too.",
            "nix::mount::mount(source, target, fstype, flags, data): to change propagation only \
             the target and the flags matter, the rest is None. None needs a type: \
             `let none: Option<&str> = None;`.",
            "chroot(2) changes what / means, but not the current directory: follow it with \
             chdir(\"/\") or `..` still leads to the host. Both are in nix::unistd.",
            "In run(): `let namespaces = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID | \
             CloneFlags::CLONE_NEWNS;`\nIn child():\n    let none: Option<&str> = None;\n    \
             if let Err(err) = mount(none, \"/\", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, \
             none) { fail(...) }\n    if let Err(err) = chroot(rootfs).and_then(|()| \
             chdir(\"/\")) { fail(...) }",
        ],
        scaffold_checks: &["missing_rootfs_is_a_clear_error"],
    },
    Exercise {
        step: 4,
        package: "step04-proc",
        title: "/proc that shows only the container",
        minutes: 15,
        regions: &[region(
            "proc",
            "step 04: mount a fresh proc filesystem on /proc, here in the child (PID 1 of the \
             container, after chroot): mount with source and type proc; on error call fail(...)",
        )],
        hints: &[
            "ps, top and kill read /proc (`man 5 proc`). In your container /proc is still an \
             empty directory of the root filesystem: try `cargo run -p step03-mount-chroot -- \
             run ps`.",
            "A proc filesystem shows the PID namespace of the process that mounts it \
             (pid_namespaces(7), \"/proc and PID namespaces\"). The child is PID 1 of the \
             container's namespace: mount it there, after chroot, so that it lands on the root \
             filesystem's /proc.",
            "Nothing to unmount afterwards: the mount lives in the container's private mount \
             namespace (step 03) and goes away with it. Sensible flags: MS_NOSUID | MS_NODEV | \
             MS_NOEXEC. The `none` variable from step 03 is still in scope.",
            "    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;\n    \
             if let Err(err) = mount(Some(\"proc\"), \"/proc\", Some(\"proc\"), flags, none) {\n    \
                 fail(&format!(\"mounting proc on /proc failed: {err}\"));\n    }",
        ],
        scaffold_checks: &[],
    },
    Exercise {
        step: 5,
        package: "step05-cgroups",
        title: "limits (cgroups)",
        minutes: 40,
        regions: &[
            region(
                "limits",
                "step 05: write the limits the user asked for into the cgroup cg: \
                 args.pids_limit to pids.max, args.memory to the memory limit, args.cpus to a \
                 CFS quota per 100000 us period",
            ),
            region(
                "join",
                "step 05: join the container's cgroup (cgroup.0) first, before chroot and exec: \
                 add this process, as tgid 0 (the writer), to it; on error call fail(...)",
            ),
            Region {
                name: "remove",
                todo: "step 05: remove the container's cgroup (self.0) when ContainerCgroup is \
                       dropped; on error print a warning, never panic in drop",
                in_drop: true,
            },
        ],
        hints: &[
            "Three pieces: write the limits (ContainerCgroup::create), join the cgroup (in \
             child()), remove it (Drop). `man 7 cgroups`; look around in /sys/fs/cgroup/pids/ \
             (cgroup v1) or /sys/fs/cgroup/ (v2) while a container runs.",
            "cgroups-rs gives typed controllers: `let pids: &PidController = \
             cg.controller_of().context(\"no pids controller\")?;` then \
             `pids.set_pid_max(MaxValue::Value(max))`. MemController has set_limit(bytes); \
             CpuController has set_cfs_quota_and_period(Some(quota), Some(period)).",
            "--cpus 0.5 means 50 ms of CPU time in every 100 ms: period = 100_000 (us), quota = \
             (cpus * period as f64).round() as i64. If the machine has swap, a memory hog \
             escapes into it: also limit swap with memory.set_memswap_limit(...) (v1: same \
             bytes as the limit, memory+swap; v2: 0).",
            "Join in the child, not in the runtime: with `let me = \
             cgroups_rs::CgroupPid::from(0)` (0 means the writer), `cgroup.0.add_task(me)` on \
             v1 (the `tasks` file: this one thread, cheap) or `cgroup.0.add_task_by_tgid(me)` on \
             v2 (`cgroup.procs`; `cgroup.0.v2()` tells which). Before chroot, because afterwards \
             /sys/fs/cgroup is out of reach; before exec, so that the command never runs \
             unlimited.",
            "Remove in Drop::drop: `if let Err(err) = self.0.delete() { eprintln!(...) }`. \
             delete() fails while processes are still in the cgroup; the runtime has waited for \
             the container by then, and Drop also runs on the error paths and after SIGTERM.",
        ],
        scaffold_checks: &["bad_limits_are_usage_errors"],
    },
];

pub fn exercise(step: u8) -> anyhow::Result<&'static Exercise> {
    EXERCISES
        .iter()
        .find(|e| e.step == step)
        .ok_or_else(|| anyhow::anyhow!("there is no exercise {step}: the steps are 1 to 5"))
}
