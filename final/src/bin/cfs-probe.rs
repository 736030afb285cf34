//! A probe that behaviour tests run *inside* containers (bind-mounted with the host's
//! libraries) to report what busybox cannot: seccomp verdicts, open descriptors, the result
//! of a chroot escape attempt. Each verb prints one line of facts.

#[cfg(not(target_os = "linux"))]
fn main() {
    cfs_support::not_linux()
}

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING): `man 2 keyctl`.
        Some("keyctl") => {
            // SAFETY: a syscall with integer arguments only.
            let rc = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i64, 0, 0, 0) };
            let err = std::io::Error::last_os_error();
            println!(
                "keyctl rc={rc} errno={}",
                if rc < 0 {
                    err.raw_os_error().unwrap_or(0)
                } else {
                    0
                }
            );
        }
        // System calls an allow list (docker's profile) answers differently from a deny list:
        // each printed as name=ok or name=errno.
        Some("syscalls") => {
            let verdict = |rc: i64| -> String {
                if rc >= 0 {
                    "ok".into()
                } else {
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(0)
                        .to_string()
                }
            };
            // SAFETY: raw system calls with integer arguments or pointers to our own buffers;
            // the clones run only `_exit`.
            unsafe {
                let me = libc::getpid();
                let pidfd = libc::syscall(libc::SYS_pidfd_open, me, 0);
                // Not in docker's list (it needs CAP_SYS_PTRACE there).
                let getfd = verdict(libc::syscall(libc::SYS_pidfd_getfd, pidfd, 1, 0));
                // In docker's list since Linux 4.8: read our own memory.
                let mut src = [7u8; 8];
                let mut dst = [0u8; 8];
                let local = libc::iovec {
                    iov_base: dst.as_mut_ptr().cast(),
                    iov_len: 8,
                };
                let remote = libc::iovec {
                    iov_base: src.as_mut_ptr().cast(),
                    iov_len: 8,
                };
                let vm = verdict(libc::process_vm_readv(me, &local, 1, &remote, 1, 0) as i64);
                let clone_ns = |flags: i64| {
                    let rc =
                        libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as i64, 0, 0, 0, 0);
                    if rc == 0 {
                        libc::_exit(0);
                    }
                    if rc > 0 {
                        libc::waitpid(rc as i32, std::ptr::null_mut(), 0);
                    }
                    verdict(rc)
                };
                let newuts = clone_ns(libc::CLONE_NEWUTS as i64);
                let plain = clone_ns(0);
                let clone3 = verdict(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0));
                let vsock = verdict(libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) as i64);
                let inet = verdict(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as i64);
                let query = verdict(libc::personality(0xffff_ffff) as i64);
                let norandom =
                    verdict(libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) as i64);
                println!(
                    "pidfd_getfd={} process_vm_readv={} clone_newuts={} clone={} clone3={} vsock={} inet={} personality_query={} personality_norandom={}",
                    getfd, vm, newuts, plain, clone3, vsock, inet, query, norandom
                );
            }
        }
        Some("fds") => {
            let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            // read_dir's own descriptor shows up too; report it apart.
            fds.sort();
            println!("fds {}", fds.join(","));
        }
        // The classic chroot(2) escape: chroot into a subdirectory while keeping the cwd
        // outside it, walk up with "..", chroot to what we reach. Against a chroot-only
        // "container" this reaches the host's root; after pivot_root with the old root
        // detached there is nothing above "/".
        Some("escape") => {
            let marker = args.get(2).cloned().unwrap_or_default();
            let _ = std::fs::create_dir_all("/tmp/escape-jail");
            // SAFETY: chroot/chdir with valid C strings.
            unsafe {
                let jail = std::ffi::CString::new("/tmp/escape-jail").unwrap();
                let rc = libc::chroot(jail.as_ptr());
                if rc != 0 {
                    println!(
                        "escape chroot-failed errno={}",
                        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                    );
                    return;
                }
                let up = std::ffi::CString::new("..").unwrap();
                for _ in 0..64 {
                    libc::chdir(up.as_ptr());
                }
                let dot = std::ffi::CString::new(".").unwrap();
                libc::chroot(dot.as_ptr());
            }
            let found = std::path::Path::new(&marker).exists();
            println!("escape marker-visible={found}");
        }
        _ => {
            eprintln!("usage: cfs-probe keyctl|fds|escape MARKER");
            std::process::exit(2);
        }
    }
}
