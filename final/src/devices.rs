//! Which device nodes a container may use: the spec's `linux.resources.devices` rules,
//! enforced by the kernel's device controller (`man 7 cgroups`, "devices").
//!
//! Why it matters: docker's capability set keeps CAP_MKNOD, so root in a container can
//! `mknod /tmp/sda b 8 0`. Namespaces do not isolate devices; only the device controller
//! stops that node from being opened (and the host's disk from being read through it).
//!
//! - cgroup v1 has a `devices` hierarchy with `devices.deny` / `devices.allow` files: one
//!   line per rule, e.g. `a` (deny everything) then `c 1:3 rwm` (allow /dev/null).
//! - cgroup v2 has no device files: the kernel runs an eBPF program of type
//!   BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup at every open(2) and mknod(2) of a
//!   device node, and allows the access if it returns 1 (`man 2 bpf`; the kernel's
//!   Documentation/admin-guide/cgroup-v2.rst, "Device controller"). [`program`] turns the rules
//!   into such a program, a few instructions per rule; [`attach`] loads it with bpf(2) and
//!   attaches it to the container's cgroup, which keeps it until the cgroup is removed.
//!
//! The program is emitted here, instruction by instruction, as runc and crun do: the crates
//! that load eBPF either want an object file from a BPF compiler toolchain (aya) or a C
//! library (libbpf-rs), both far heavier than the fifteen lines of encoding below.
//!
//! Rules are read in order and the *last* matching rule decides (a later `allow` punches a
//! hole in an earlier deny-all); the program checks them from the last to the first and
//! returns at the first match. A device no rule matches is allowed: the controller's default
//! before any rule, as in a fresh v1 cgroup.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The v1 file and line for each rule, in order (`devices.deny` `a`, `devices.allow`
/// `c 1:3 rwm`, ...).
pub fn v1_lines(rules: &[LinuxDeviceCgroup]) -> Vec<(&'static str, String)> {
    rules
        .iter()
        .map(|r| {
            let file = if r.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            let line = match r.typ().unwrap_or_default() {
                // "a" alone means every device and every access.
                LinuxDeviceType::A if r.major().is_none() && r.minor().is_none() => "a".into(),
                _ => {
                    let num = |n: Option<i64>| {
                        n.filter(|n| *n >= 0).map_or("*".into(), |n| n.to_string())
                    };
                    let access = r
                        .access()
                        .as_deref()
                        .filter(|a| !a.is_empty())
                        .unwrap_or("rwm");
                    let typ = match r.typ().unwrap_or_default() {
                        LinuxDeviceType::B => "b",
                        LinuxDeviceType::C | LinuxDeviceType::U => "c",
                        _ => "a",
                    };
                    format!("{typ} {}:{} {access}", num(r.major()), num(r.minor()))
                }
            };
            (file, line)
        })
        .collect()
}

// ANCHOR: bpf_program
/// One eBPF instruction (`struct bpf_insn`): opcode, destination and source registers,
/// a signed 16-bit jump offset and a signed 32-bit immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

// Opcodes (include/uapi/linux/bpf.h, bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // dst &= imm (32-bit)
const ALU32_RSH_K: u8 = 0x74; // dst >>= imm (32-bit)
const ALU32_MOV_X: u8 = 0xbc; // dst = src (32-bit)
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const JMP_JNE_K: u8 = 0x55; // if dst != imm: skip `off` instructions
const JMP_EXIT: u8 = 0x95; // return r0

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }: access_type is
// (access << 16) | type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// The device program for `rules`: registers r2 = device type, r3 = requested access,
/// r4 = major, r5 = minor, then one block per rule (last rule first) that falls through to
/// the next block on any mismatch and otherwise returns the rule's verdict.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<u64> {
    let mut out = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = ctx->access_type
        insn(ALU32_MOV_X, 3, 2, 0, 0),      // r3 = r2
        insn(ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(ALU32_RSH_K, 3, 0, 0, 16),     // r3 = access
        insn(LDX_MEM_W, 4, 1, 4, 0),        // r4 = ctx->major
        insn(LDX_MEM_W, 5, 1, 8, 0),        // r5 = ctx->minor
    ];
    for rule in rules.iter().rev() {
        // The block: checks that jump past it on a mismatch, then the verdict. Jumps are
        // kept as (register, immediate) until the block's length is known.
        enum Step {
            Insn(u64),
            SkipUnless(u8, i32), // if reg != imm: jump to the next block
        }
        let mut block = Vec::new();
        match rule.typ().unwrap_or_default() {
            LinuxDeviceType::B => block.push(Step::SkipUnless(2, DEV_BLOCK)),
            LinuxDeviceType::C | LinuxDeviceType::U => block.push(Step::SkipUnless(2, DEV_CHAR)),
            LinuxDeviceType::P => continue, // FIFOs are not devices: never asked about
            LinuxDeviceType::A => {}
        }
        let access = rule.access().as_deref().unwrap_or("rwm");
        let allowed = access.chars().fold(0, |bits, c| match c {
            'm' => bits | ACC_MKNOD,
            'r' => bits | ACC_READ,
            'w' => bits | ACC_WRITE,
            _ => bits,
        });
        if allowed != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // The rule covers the request only if every requested bit is in `allowed`:
            // r1 = access & !allowed must be 0 (r1, the context pointer, is free now).
            block.push(Step::Insn(insn(ALU32_MOV_X, 1, 3, 0, 0)));
            block.push(Step::Insn(insn(ALU32_AND_K, 1, 0, 0, !allowed & 0x7)));
            block.push(Step::SkipUnless(1, 0));
        }
        if let Some(major) = rule.major().filter(|m| *m >= 0) {
            block.push(Step::SkipUnless(4, major as i32));
        }
        if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
            block.push(Step::SkipUnless(5, minor as i32));
        }
        block.push(Step::Insn(insn(
            ALU64_MOV_K,
            0,
            0,
            0,
            i32::from(rule.allow()),
        )));
        block.push(Step::Insn(insn(JMP_EXIT, 0, 0, 0, 0)));
        let len = block.len();
        let unconditional = len == 2;
        out.extend(block.into_iter().enumerate().map(|(i, step)| match step {
            Step::Insn(x) => x,
            // The offset counts from the next instruction: to just past this block's exit.
            Step::SkipUnless(reg, imm) => insn(JMP_JNE_K, reg, 0, (len - i - 1) as i16, imm),
        }));
        // A rule that matches everything (docker's leading `a` deny) decides every request
        // that reaches it: nothing after it could run, and the verifier refuses unreachable
        // instructions.
        if unconditional {
            return out;
        }
    }
    // No rule matched: allowed.
    out.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    out.push(insn(JMP_EXIT, 0, 0, 0, 0));
    out
}
// ANCHOR_END: bpf_program

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs may be attached below (nested containers) and above (systemd's own
/// device policies): all of them must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The part of `union bpf_attr` that BPF_PROG_LOAD reads.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The part of `union bpf_attr` that BPF_PROG_ATTACH reads.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a properly laid out prefix of union bpf_attr, and the size passed is
    // its own; the kernel reads (and for PROG_LOAD, writes the log into) only that.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

// ANCHOR: bpf_attach
/// Loads the device program for `rules` and attaches it to the cgroup v2 directory `dir`.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = load(rules, dir)?;
    let cgroup = std::fs::File::open(dir)
        .with_context(|| format!("cannot open the cgroup {}", dir.display()))?;
    let mut attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attach).with_context(|| {
        format!(
            "cannot attach the device filter to the cgroup {}",
            dir.display()
        )
    })?;
    // The cgroup holds the program now; our descriptors can go.
    Ok(())
}
// ANCHOR_END: bpf_attach

/// Can this process load a device program (`final doctor`)?
pub fn can_load() -> Result<()> {
    load(&[], Path::new("(none)")).map(drop)
}

/// bpf(BPF_PROG_LOAD) of the program for `rules`, with the verifier's log in the error.
fn load(rules: &[LinuxDeviceCgroup], dir: &Path) -> Result<OwnedFd> {
    let insns = program(rules);
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"cfs_devices");
    let mut load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let mut loaded = bpf(BPF_PROG_LOAD, &mut load);
    if loaded.is_err() {
        // Again with the verifier's log (not asked for first: writing it costs time).
        load.log_level = 1;
        load.log_size = log.len() as u32;
        load.log_buf = log.as_mut_ptr() as u64;
        loaded = bpf(BPF_PROG_LOAD, &mut load);
    }
    let prog = match loaded {
        // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
        Err(err) => {
            let verifier = String::from_utf8_lossy(&log);
            let verifier = verifier.trim_end_matches('\0').trim();
            let fix = match err.raw_os_error() {
                _ if !verifier.is_empty() => {
                    "the kernel's verifier refused final's device program: a bug in final, please report it with the message above"
                }
                Some(libc::EPERM) => {
                    "loading a cgroup device program needs root (CAP_SYS_ADMIN or CAP_BPF)"
                }
                Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                    "this kernel lacks CONFIG_CGROUP_BPF, which cgroup v2 needs to restrict devices"
                }
                _ => "see `final doctor`",
            };
            bail!(
                "cannot load the device filter for {} (bpf(BPF_PROG_LOAD): {err}){}\nfix: {fix}",
                dir.display(),
                if verifier.is_empty() {
                    String::new()
                } else {
                    format!("; the verifier said: {verifier}")
                }
            );
        }
    };
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// A tiny interpreter for exactly the instructions [`program`] emits, so the rules'
    /// meaning can be checked without a kernel.
    fn run(prog: &[u64], typ: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | typ as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (code, dst, src) = (
                i as u8,
                ((i >> 8) & 0xf) as usize,
                ((i >> 12) & 0xf) as usize,
            );
            let off = (i >> 16) as u16 as i16;
            let imm = (i >> 32) as u32 as i32;
            pc += 1;
            match code {
                LDX_MEM_W => r[dst] = u64::from(ctx[off as usize / 4]),
                ALU32_MOV_X => r[dst] = r[src] & 0xffff_ffff,
                ALU32_AND_K => r[dst] = (r[dst] as u32 & imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> imm) as u64,
                ALU64_MOV_K => r[dst] = imm as i64 as u64,
                JMP_JNE_K => {
                    if r[dst] != imm as i64 as u64 {
                        pc = (pc as i64 + i64::from(off)) as usize;
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    /// Every instruction can be reached (the kernel's verifier refuses programs with dead
    /// code) and every path ends in an exit.
    fn assert_all_reachable(prog: &[u64]) {
        let mut seen = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < prog.len(), "falls off the end at {pc}");
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            let i = prog[pc];
            match i as u8 {
                JMP_EXIT => {}
                JMP_JNE_K => {
                    let off = (i >> 16) as u16 as i16;
                    todo.push(pc + 1);
                    todo.push((pc as i64 + 1 + i64::from(off)) as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        let dead: Vec<usize> = (0..prog.len()).filter(|i| !seen[*i]).collect();
        assert!(dead.is_empty(), "unreachable instructions {dead:?}");
    }

    #[test]
    fn docker_like_rules() {
        use LinuxDeviceType::*;
        let rules = vec![
            rule(false, A, None, None, "rwm"),
            rule(true, C, None, None, "m"),
            rule(true, B, None, None, "m"),
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(true, C, Some(136), None, "rwm"),
        ];
        let p = program(&rules);
        assert_all_reachable(&p);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 7), 1, "a pts");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "/dev/sda read");
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1, "/dev/sda mknod");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_MKNOD, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 4), 0, "/dev/port");
        // A later deny wins over an earlier allow.
        let mut later = rules.clone();
        later.push(rule(false, C, Some(1), Some(3), "w"));
        let p = program(&later);
        assert_all_reachable(&p);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        // No rules: everything is allowed.
        assert_all_reachable(&program(&[]));
        assert_eq!(run(&program(&[]), DEV_BLOCK, rw, 8, 0), 1);
        // Only an allow rule: the rest falls through to the default.
        let only = program(&[rule(true, C, Some(1), Some(3), "r")]);
        assert_all_reachable(&only);
        assert_eq!(run(&only, DEV_CHAR, ACC_READ, 1, 3), 1);
    }

    #[test]
    fn v1_files() {
        use LinuxDeviceType::*;
        let lines = v1_lines(&[
            rule(false, A, None, None, "rwm"),
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(true, C, Some(136), None, "rwm"),
            rule(true, B, None, None, "m"),
        ]);
        assert_eq!(
            lines,
            vec![
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string()),
                ("devices.allow", "c 136:* rwm".to_string()),
                ("devices.allow", "b *:* m".to_string()),
            ]
        );
    }
}
