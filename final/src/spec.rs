//! `final run`'s options turned into an OCI runtime spec (the `config.json` model).
//!
//! Everything the container *is* lives in the [`Spec`]: the process (args, env, cwd, user,
//! capabilities, no_new_privs), the mounts, the namespaces, masked and read-only paths, the
//! cgroup resources and the seccomp profile. [`crate::container::create`] starts a container
//! from a `Spec` and nothing else, so the OCI verbs (`create`/`start` on a bundle, issue 5's
//! follow-up) reuse the same path with a spec read from `config.json`.
//!
//! The defaults follow docker's: its capability set (`man 7 capabilities`), its masked and
//! read-only `/proc` paths, its seccomp profile's denied syscalls (`man 2 seccomp`).

use crate::parse::{Id, UserSpec, Volume};
use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscallBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What `final run` was asked for, after parsing and before resolving against the rootfs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub hostname: String,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub user: Option<UserSpec>,
    pub volumes: Vec<Volume>,
    pub read_only: bool,
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    /// `--ulimit`: the process's rlimits; none means the runtime's own are inherited (as
    /// docker's containers inherit dockerd's).
    pub ulimits: Vec<oci_spec::runtime::PosixRlimit>,
    pub tty: bool,
    /// `--network host` leaves the network namespace out of the spec (the host's is shared).
    pub network: crate::parse::Network,
    /// A user namespace with these id maps (rootless, or root's `--userns`).
    pub userns: Option<crate::userns::Mapping>,
}

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ANCHOR: caps
/// Docker's default capability set (moby `oci/caps/defaults.go`); everything else, notably
/// CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE and CAP_NET_ADMIN, is dropped from all sets
/// including the bounding set, so no exec can regain it (`man 7 capabilities`).
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];
// ANCHOR_END: caps

// ANCHOR: devices
/// Docker's device rules (as runc's default list): deny every device, then allow creating
/// any character or block node (CAP_MKNOD stays in the set) but *using* only the few a
/// program expects: null, zero, full, random, urandom, tty, console, ptmx and the pty
/// slaves (`c 136:*`). So a node for the host's disk can be made, and not opened.
/// (type, major, minor, access); `None` is `*`.
pub const DEFAULT_DEVICES: [(char, Option<i64>, Option<i64>, &str); 11] = [
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"), // null
    ('c', Some(1), Some(5), "rwm"), // zero
    ('c', Some(1), Some(7), "rwm"), // full
    ('c', Some(1), Some(8), "rwm"), // random
    ('c', Some(1), Some(9), "rwm"), // urandom
    ('c', Some(5), Some(0), "rwm"), // tty
    ('c', Some(5), Some(1), "rwm"), // console
    ('c', Some(5), Some(2), "rwm"), // ptmx
    ('c', Some(136), None, "rwm"),  // pts/*
];
// ANCHOR_END: devices

/// [`DEFAULT_DEVICES`] as OCI rules, after the deny-everything rule.
fn device_rules() -> Result<Vec<oci_spec::runtime::LinuxDeviceCgroup>> {
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
    let mut rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?];
    for (typ, major, minor, access) in DEFAULT_DEVICES {
        let mut rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(if typ == 'b' {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            })
            .access(access);
        if let Some(m) = major {
            rule = rule.major(m);
        }
        if let Some(m) = minor {
            rule = rule.minor(m);
        }
        rules.push(rule.build()?);
    }
    Ok(rules)
}

// ANCHOR: masked
/// Paths under /proc and /sys that leak host information or offer host control; docker hides
/// them (files: /dev/null bound over them; directories: an empty read-only tmpfs).
pub const MASKED_PATHS: [&str; 13] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/sysrq-trigger",
];

/// Readable but not writable: writing kernel tunables (/proc/sys) would change the host.
pub const READONLY_PATHS: [&str; 4] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"];
// ANCHOR_END: masked

/// Docker's default seccomp profile (moby's `profiles/seccomp/default.json`): the system calls
/// any container may make. Everything else fails with EPERM: kernel keyrings (not
/// namespaced), modules, clocks, mount and namespace manipulation, BPF, kexec, swap, reboot,
/// and any system call added to the kernel after this list was written. Names from every
/// architecture docker supports; the ones this architecture lacks are skipped when compiled.
/// Unlike docker, io_uring stays out (docker 25 removed it too: a large attack surface).
pub const ALLOWED_SYSCALLS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// What docker's capability set (`DEFAULT_CAPS`) and architecture rules add to the list:
/// chroot (CAP_SYS_CHROOT), ptrace and process_vm_* (allowed since Linux 4.8, where seccomp
/// can no longer be bypassed through ptrace), and architecture-specific calls.
pub const ALLOWED_WITH_DEFAULT_CAPS: &[&str] = &[
    "chroot",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "arch_prctl",
    "modify_ldt",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
    "swapcontext",
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "s390_runtime_instr",
    "riscv_flush_icache",
];

/// personality(2) personas docker allows: PER_LINUX, PER_LINUX32, UNAME26 (and with 32),
/// and 0xffffffff (the query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The CLONE_NEW* flags (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET):
/// clone(2) is allowed only without any of them, as docker does without CAP_SYS_ADMIN (new
/// namespaces inside would escape the container's limits).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7e02_0000;

/// socket(2)'s AF_VSOCK (host/guest sockets): refused, as docker does.
const AF_VSOCK: u64 = 40;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

// ANCHOR: seccomp
/// Docker's default seccomp profile as an OCI `linux.seccomp` section: deny by default
/// (EPERM), allow the lists above, allow socket, personality and clone only with the
/// arguments docker allows, and answer clone3 with ENOSYS so that libcs fall back to clone(2),
/// whose flags a classic BPF filter can inspect (clone3 passes them behind a pointer).
pub fn default_seccomp() -> Result<LinuxSeccomp> {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let allow_if = |name: &str, index: usize, op: LinuxSeccompOperator, value: u64| {
        LinuxSyscallBuilder::default()
            .names(vec![name.to_string()])
            .action(LinuxSeccompAction::ScmpActAllow)
            .args(vec![LinuxSeccompArgBuilder::default()
                .index(index)
                .value(value)
                .op(op)
                .build()?])
            .build()
    };
    let mut syscalls = vec![LinuxSyscallBuilder::default()
        .names(names(
            &[ALLOWED_SYSCALLS, ALLOWED_WITH_DEFAULT_CAPS].concat(),
        ))
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()?];
    syscalls.push(allow_if(
        "socket",
        0,
        LinuxSeccompOperator::ScmpCmpNe,
        AF_VSOCK,
    )?);
    for persona in PERSONALITIES {
        syscalls.push(allow_if(
            "personality",
            0,
            LinuxSeccompOperator::ScmpCmpEq,
            persona,
        )?);
    }
    // (arg0 & flags) == 0: MASKED_EQ compares with valueTwo, which defaults to 0.
    syscalls.push(allow_if(
        "clone",
        0,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
        CLONE_NAMESPACE_FLAGS,
    )?);
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(ENOSYS)
            .build()?,
    );
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .syscalls(syscalls)
        .build()?)
}
// ANCHOR_END: seccomp

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

// ANCHOR: default_mounts
/// The mounts every container gets, docker's set: /proc, a small tmpfs /dev with its own
/// devpts instance (`man 4 pts`), /dev/shm, /dev/mqueue and a read-only /sys.
fn default_mounts() -> Result<Vec<Mount>> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ])
}
// ANCHOR_END: default_mounts

// ANCHOR: userns_mounts
/// What a user namespace changes in the default mounts:
/// - devpts' `gid=5` needs group 5 mapped inside (a single-id map has only 0);
/// - sysfs may only be mounted by the owner of the network namespace
///   (`man 7 network_namespaces`): with the host's network, bind the host's /sys instead.
fn adapt_mounts_to_userns(
    mounts: &mut [Mount],
    m: &crate::userns::Mapping,
    host_network: bool,
) -> Result<()> {
    for mnt in mounts.iter_mut() {
        if mnt.typ().as_deref() == Some("devpts") && !m.maps_gid(5) {
            let opts = mnt
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| o != "gid=5")
                .collect::<Vec<_>>();
            mnt.set_options(Some(opts));
        }
        if host_network && mnt.typ().as_deref() == Some("sysfs") {
            *mnt = mount(
                "/sys",
                "bind",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro"],
            )?;
        }
    }
    Ok(())
}
// ANCHOR_END: userns_mounts

/// A user resolved against the container's own /etc/passwd and /etc/group.
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Looks `who` up in the rootfs's passwd/group files. Numbers need no entry (as docker);
/// names must exist.
pub fn resolve_user(rootfs: &Path, who: Option<&UserSpec>) -> Result<ResolvedUser> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    // name:password:uid:gid:gecos:home:shell (`man 5 passwd`)
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let Some(who) = who else {
        return Ok(ResolvedUser {
            uid: 0,
            gid: 0,
            home: "/root".into(),
        });
    };
    let (uid, mut gid, home) = match &who.user {
        Id::Num(uid) => {
            let entry = entries.iter().find(|f| f[2].parse() == Ok(*uid));
            let gid = entry.and_then(|f| f[3].parse().ok()).unwrap_or(*uid);
            let home = entry.map_or("/", |f| f[5]).to_string();
            (*uid, gid, home)
        }
        Id::Name(name) => {
            let Some(f) = entries.iter().find(|f| f[0] == name) else {
                bail!(
                    "unknown user {name:?}: not in the container's {}\nfix: use a numeric UID (-u 1000) or a user that exists in the root filesystem",
                    rootfs.join("etc/passwd").display()
                );
            };
            (
                f[2].parse().unwrap_or(0),
                f[3].parse().unwrap_or(0),
                f[5].to_string(),
            )
        }
    };
    match &who.group {
        None => {}
        Some(Id::Num(g)) => gid = *g,
        Some(Id::Name(name)) => {
            let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
            let found = group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == name);
            match found.and_then(|f| f[2].parse().ok()) {
                Some(g) => gid = g,
                None => bail!(
                    "unknown group {name:?}: not in the container's {}\nfix: use a numeric GID (-u 1000:1000)",
                    rootfs.join("etc/group").display()
                ),
            }
        }
    }
    Ok(ResolvedUser { uid, gid, home })
}

/// Turns `final run`'s options into the spec of the container to create.
pub fn build(opts: &RunOptions) -> Result<Spec> {
    if opts.args.is_empty() {
        bail!(
            "no command given: use `final run [OPTIONS] CMD [ARGS]...`, e.g. `final run /bin/sh`"
        );
    }
    let user = resolve_user(&opts.rootfs, opts.user.as_ref())?;

    let cwd = opts.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !cwd.is_absolute() {
        bail!(
            "invalid --workdir {}: it must be an absolute path inside the container",
            cwd.display()
        );
    }

    // Defaults first, so that -e overrides them (the last value of a key wins).
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), opts.hostname.clone()),
        ("HOME".into(), user.home.clone()),
    ];
    if opts.tty {
        env.push(("TERM".into(), "xterm".into()));
    }
    for (k, v) in &opts.env {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }

    let caps: HashSet<Capability> = DEFAULT_CAPS.into_iter().collect();
    // Non-root users get no capabilities at exec time anyway (`man 7 capabilities`,
    // "Capabilities and execution of programs by root"): keep effective/permitted honest.
    let (effective, permitted) = if user.uid == 0 {
        (caps.clone(), caps.clone())
    } else {
        (HashSet::new(), HashSet::new())
    };
    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .args(opts.args.clone())
        .env(
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .cwd(cwd)
        .user(UserBuilder::default().uid(user.uid).gid(user.gid).build()?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps)
                .effective(effective)
                .permitted(permitted)
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()?,
        )
        .no_new_privileges(true)
        .build()?;
    // The builder's default holds RLIMIT_NOFILE 1024 (runc's `spec`); `final run` keeps the
    // runtime's limits unless told otherwise, as docker does.
    let mut process = process;
    process.set_rlimits((!opts.ulimits.is_empty()).then(|| opts.ulimits.clone()));

    // ANCHOR: volumes
    let mut mounts = default_mounts()?;
    if let Some(m) = &opts.userns {
        adapt_mounts_to_userns(&mut mounts, m, opts.network == crate::parse::Network::Host)?;
    }
    for v in &opts.volumes {
        let source = std::fs::canonicalize(&v.source).with_context(|| {
            format!(
                "volume source {} does not exist or cannot be resolved\nfix: create it first (mkdir -p {}) or correct the path",
                v.source.display(),
                v.source.display()
            )
        })?;
        let mut options = vec!["rbind", "nosuid", "nodev"];
        options.push(if v.readonly { "ro" } else { "rw" });
        mounts.push(mount(
            &v.destination.to_string_lossy(),
            "bind",
            &source.to_string_lossy(),
            &options,
        )?);
    }
    // In a user namespace the image's files belong to host root, which is not mapped there,
    // so overlayfs cannot copy their directories up (EOVERFLOW) and /tmp would not be
    // writable. A tmpfs /tmp, as with --read-only.
    if (opts.read_only || opts.userns.is_some())
        && !opts
            .volumes
            .iter()
            .any(|v| v.destination == Path::new("/tmp"))
    {
        // A read-only root still needs scratch space (docker's --read-only --tmpfs /tmp).
        mounts.push(mount(
            "/tmp",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777"],
        )?);
    }
    // ANCHOR_END: volumes

    // OCI: a namespace type absent from the list is shared with the runtime (here: the host).
    let host_network = opts.network == crate::parse::Network::Host;
    if host_network {
        // The host's name service files, read-only, as docker does with --network host: the
        // container uses the host's resolvers and names directly.
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            // In a user namespace a missing mount point cannot be created in the image's
            // /etc (owned by unmapped host root): bind only over files that exist.
            if opts.userns.is_some() && !opts.rootfs.join(&f[1..]).exists() {
                continue;
            }
            if let Ok(source) = std::fs::canonicalize(f) {
                mounts.push(mount(
                    f,
                    "bind",
                    &source.to_string_lossy(),
                    &["rbind", "nosuid", "nodev", "noexec", "ro"],
                )?);
            }
        }
    }
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .filter(|t| !(host_network && *t == LinuxNamespaceType::Network))
    .chain(opts.userns.is_some().then_some(LinuxNamespaceType::User))
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;

    let mut resources = LinuxResourcesBuilder::default();
    if let Some(limit) = opts.memory {
        // memory+swap equal to memory: no swap beyond the limit, so an OOM is an OOM.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()?,
        );
    }
    if let Some(cpus) = opts.cpus {
        const PERIOD: u64 = 100_000;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(PERIOD)
                .quota((cpus * PERIOD as f64).round() as i64)
                .build()?,
        );
    }
    if let Some(limit) = opts.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    // Rootless: no device rules. Loading the v2 device program needs root, and they would
    // add nothing: mknod(2) of a device is refused in a user namespace, so the container can
    // open only device nodes its user could open anyway.
    if nix::unistd::geteuid().is_root() {
        resources = resources.devices(device_rules()?);
    }

    let mut linux = LinuxBuilder::default();
    if let Some(m) = &opts.userns {
        let maps = |maps: &[crate::parse::IdMap]| {
            maps.iter()
                .map(|x| {
                    LinuxIdMappingBuilder::default()
                        .container_id(x.inside)
                        .host_id(x.outside)
                        .size(x.count)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
        };
        linux = linux
            .uid_mappings(maps(&m.uid)?)
            .gid_mappings(maps(&m.gid)?);
    }
    let linux = linux
        .namespaces(namespaces)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .resources(resources.build()?)
        .seccomp(default_seccomp()?)
        .build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(opts.rootfs.clone())
                .readonly(opts.read_only)
                .build()?,
        )
        .hostname(opts.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    /// A throw-away rootfs with an /etc/passwd and /etc/group; one per test (tests run in
    /// parallel and each removes its own).
    fn fake_rootfs() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("cfs-final-spec-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1001:Alice:/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\nstaff:x:50:alice\n").unwrap();
        dir
    }

    #[test]
    fn users_resolve_in_the_rootfs() {
        let root = fake_rootfs();
        let alice = parse::user("alice").unwrap();
        assert_eq!(
            resolve_user(&root, Some(&alice)).unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                home: "/home/alice".into()
            }
        );
        let numeric = parse::user("1000:staff").unwrap();
        assert_eq!(resolve_user(&root, Some(&numeric)).unwrap().gid, 50);
        let stranger = parse::user("7").unwrap();
        assert_eq!(resolve_user(&root, Some(&stranger)).unwrap().uid, 7);
        let bob = parse::user("bob").unwrap();
        assert!(resolve_user(&root, Some(&bob))
            .unwrap_err()
            .to_string()
            .contains("unknown user"));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn spec_from_options() {
        let root = fake_rootfs();
        let opts = RunOptions {
            rootfs: root.clone(),
            args: vec!["sh".into()],
            hostname: "box".into(),
            env: vec![("PATH".into(), "/bin".into()), ("A".into(), "1".into())],
            read_only: true,
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids_limit: Some(10),
            volumes: vec![parse::volume(&format!("{}:/data:ro", root.display())).unwrap()],
            ..Default::default()
        };
        let spec = build(&opts).unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert!(env.contains(&"HOSTNAME=box".to_string()));
        let mounts = spec.mounts().as_ref().unwrap();
        let data = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/data"))
            .unwrap();
        assert!(data.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(mounts.iter().any(|m| m.destination() == Path::new("/tmp")));
        let res = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 10);
        assert!(spec.root().as_ref().unwrap().readonly().unwrap());

        let missing = RunOptions {
            volumes: vec![parse::volume("/does/not/exist:/x").unwrap()],
            ..opts
        };
        let err = format!("{:#}", build(&missing).unwrap_err());
        assert!(err.contains("/does/not/exist"), "{err}");
        let _ = std::fs::remove_dir_all(root);
    }
}
