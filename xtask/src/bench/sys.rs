//! The few system calls the benchmark needs that the standard library does not wrap:
//! `wait4(2)` (exit status *and* resource usage of one child), `unshare(2)`, `mount(2)` and
//! `geteuid(2)`. The C library is linked into every Rust program already, so declaring them
//! here costs no dependency.

use std::ffi::CString;
use std::io;
use std::os::raw::{c_char, c_int, c_long, c_ulong, c_void};

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Timeval {
    sec: c_long,
    usec: c_long,
}

/// `struct rusage` (getrusage(2)): two timevals, then 14 longs starting with ru_maxrss.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss: c_long,
    rest: [c_long; 13],
}

extern "C" {
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
    fn unshare(flags: c_int) -> c_int;
    fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    fn geteuid() -> u32;
}

/// What `wait4` reports about a child that ended.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// The raw wait status (see `waitpid(2)`): 0 means "exited with status 0".
    pub status: i32,
    /// Peak resident set size in KiB: the largest of the child and of the descendants it
    /// waited for (the kernel reports RUSAGE_BOTH), each process image counted separately.
    pub maxrss_kib: u64,
    /// User + system CPU time of the child and its reaped descendants, in milliseconds.
    pub cpu_ms: f64,
}

/// Waits for child `pid` (retrying on EINTR) and returns its status and resource usage.
pub fn wait_child(pid: u32) -> io::Result<Reaped> {
    let mut status: c_int = 0;
    let mut ru = Rusage::default();
    loop {
        // SAFETY: valid pointers to a c_int and a correctly laid out struct rusage.
        let rc = unsafe { wait4(pid as c_int, &mut status, 0, &mut ru) };
        if rc >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let ms = |t: Timeval| t.sec as f64 * 1000.0 + t.usec as f64 / 1000.0;
    Ok(Reaped {
        status,
        maxrss_kib: ru.maxrss.max(0) as u64,
        cpu_ms: ms(ru.utime) + ms(ru.stime),
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { geteuid() == 0 }
}

const CLONE_NEWNS: c_int = 0x0002_0000;
const MS_NOSUID: c_ulong = 2;
const MS_NODEV: c_ulong = 4;
const MS_NOEXEC: c_ulong = 8;
const MS_REC: c_ulong = 0x4000;
const MS_PRIVATE: c_ulong = 1 << 18;

/// Moves this process into a private mount namespace: nothing mounted from now on is seen by
/// the host, and everything disappears when the last process in it ends.
pub fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain system calls with valid NUL-terminated strings.
    unsafe {
        if unshare(CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        let root = CString::new("/").expect("no NUL");
        if mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            MS_REC | MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Mounts an empty tmpfs on `target` (in the current mount namespace).
pub fn mount_empty_tmpfs(target: &str) -> io::Result<()> {
    let source = CString::new("tmpfs").expect("no NUL");
    let target = CString::new(target).map_err(io::Error::other)?;
    let data = CString::new("size=16m,mode=755").expect("no NUL");
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe {
        mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
