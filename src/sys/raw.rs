//! Raw system calls that rustix does not offer publicly (its `runtime` module is unstable):
//! `exit_group`, `execve`, a plain `fork`, the signal mask, a `statx` without rustix's
//! compatibility probe, and one `mount` for every kind of mount.

use core::arch::asm;
use core::ffi::CStr;
use linux_raw_sys::general as nr;
use rustix::io::Errno;

#[cfg(target_arch = "x86_64")]
unsafe fn syscall4(n: u32, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall4(n: u32, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("svc 0", in("x8") n as usize, inlateout("x0") a as isize => ret, in("x1") b, in("x2") c, in("x3") d,
             options(nostack));
    }
    ret
}

// The binary is Thumb-2 code, where r7 is the frame pointer and cannot be an asm operand: the
// syscall number is swapped into it around the `svc`.
#[cfg(target_arch = "arm")]
unsafe fn syscall4(n: u32, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("mov {tmp}, r7", "mov r7, {n}", "svc 0", "mov r7, {tmp}", n = in(reg) n as usize, tmp = out(reg) _,
             inlateout("r0") a as isize => ret, in("r1") b, in("r2") c, in("r3") d, options(nostack));
    }
    ret
}

#[cfg(target_arch = "riscv64")]
unsafe fn syscall4(n: u32, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("ecall", in("a7") n as usize, inlateout("a0") a as isize => ret, in("a1") b, in("a2") c, in("a3") d,
             options(nostack));
    }
    ret
}

// Five-argument variants, for `statx`.
#[cfg(target_arch = "x86_64")]
unsafe fn syscall5(n: u32, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
             in("r8") e, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall5(n: u32, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("svc 0", in("x8") n as usize, inlateout("x0") a as isize => ret, in("x1") b, in("x2") c, in("x3") d,
             in("x4") e, options(nostack));
    }
    ret
}

#[cfg(target_arch = "arm")]
unsafe fn syscall5(n: u32, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("mov {tmp}, r7", "mov r7, {n}", "svc 0", "mov r7, {tmp}", n = in(reg) n as usize, tmp = out(reg) _,
             inlateout("r0") a as isize => ret, in("r1") b, in("r2") c, in("r3") d, in("r4") e, options(nostack));
    }
    ret
}

#[cfg(target_arch = "riscv64")]
unsafe fn syscall5(n: u32, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("ecall", in("a7") n as usize, inlateout("a0") a as isize => ret, in("a1") b, in("a2") c, in("a3") d,
             in("a4") e, options(nostack));
    }
    ret
}

/// `statx(dir, path, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)`: whether `path` is the root of a
/// mount (`STATX_ATTR_MOUNT_ROOT`, Linux >= 5.8); false on any error. Straight to the kernel:
/// rustix's wrapper adds a fallback probe and returns the 256-byte result by value.
pub fn is_mount_root(dir: rustix::fd::BorrowedFd<'_>, path: &core::ffi::CStr) -> bool {
    use rustix::fd::AsRawFd;
    // Not cleared: read only after the kernel filled it.
    let mut st = core::mem::MaybeUninit::<nr::statx>::uninit();
    // SAFETY: `path` is NUL-terminated and the kernel writes at most one `statx` into `st`.
    let r = unsafe {
        syscall5(
            nr::__NR_statx,
            dir.as_raw_fd() as usize,
            path.as_ptr() as usize,
            (nr::AT_SYMLINK_NOFOLLOW | nr::AT_EMPTY_PATH) as usize,
            0,
            st.as_mut_ptr() as usize,
        )
    };
    if r != 0 {
        return false;
    }
    // SAFETY: a successful `statx` writes the whole struct.
    let st = unsafe { st.assume_init_ref() };
    st.stx_attributes & st.stx_attributes_mask & u64::from(nr::STATX_ATTR_MOUNT_ROOT) != 0
}

/// `mount(2)` straight to the kernel (rustix's wrapper passes its arguments through a chain of
/// closures); no data string when `data` is `None`.
pub fn mount(
    source: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: u32,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let data = data.map_or(core::ptr::null(), CStr::as_ptr);
    // SAFETY: the strings are NUL-terminated and live across the call; the kernel only reads
    // them.
    let r = unsafe {
        syscall5(
            nr::__NR_mount,
            source.as_ptr() as usize,
            target.as_ptr() as usize,
            fstype.as_ptr() as usize,
            flags as usize,
            data as usize,
        )
    };
    if r < 0 {
        return Err(Errno::from_raw_os_error(-r as i32));
    }
    Ok(())
}

/// Ends every thread of the process.
pub fn exit_group(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an int and does not return.
        unsafe { syscall4(nr::__NR_exit_group, code as usize, 0, 0, 0) };
    }
}

/// Replaces the process image; returns the errno on failure.
///
/// # Safety
/// `path` must be NUL-terminated; `argv` and `envp` NULL-terminated arrays of such strings.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> i32 {
    let r = unsafe {
        syscall4(
            nr::__NR_execve,
            path as usize,
            argv as usize,
            envp as usize,
            0,
        )
    };
    -(r as i32)
}

/// `fork()`: returns 0 in the child, the child's pid in the parent, or `-errno`.
///
/// Safe for this program because it is single-threaded and holds no locks.
pub fn fork() -> isize {
    // clone(SIGCHLD, 0, ...) is fork on every architecture; argument order past the second
    // differs per arch but those are zero here.
    // SAFETY: no new stack is given, so the child continues on a copy of ours.
    unsafe {
        syscall4(
            nr::__NR_clone,
            linux_raw_sys::general::SIGCHLD as usize,
            0,
            0,
            0,
        )
    }
}

/// Blocks (`block == true`) or unblocks the signals in `mask` (bit n-1 for signal n); returns
/// the signals that are pending.
pub fn sigmask(block: bool, mask: u64) -> u64 {
    let how = if block {
        nr::SIG_BLOCK
    } else {
        nr::SIG_UNBLOCK
    };
    let set: u64 = mask;
    // SAFETY: the kernel reads 8 bytes of `set` and writes nothing (no old set).
    unsafe {
        syscall4(
            nr::__NR_rt_sigprocmask,
            how as usize,
            &set as *const u64 as usize,
            0,
            8,
        )
    };
    let mut pending: u64 = 0;
    // SAFETY: the kernel writes 8 bytes into `pending`.
    unsafe {
        syscall4(
            nr::__NR_rt_sigpending,
            &mut pending as *mut u64 as usize,
            8,
            0,
            0,
        )
    };
    pending
}

/// CLOCK_BOOTTIME in milliseconds, straight from the kernel: rustix would go through the vDSO,
/// whose ELF parser costs more bytes than the few syscalls a boot makes.
pub fn boottime_ms() -> u64 {
    // 64-bit seconds and nanoseconds on every arch (clock_gettime64 on 32-bit arm).
    let mut ts = [0i64; 2];
    #[cfg(target_arch = "arm")]
    let n = nr::__NR_clock_gettime64;
    #[cfg(not(target_arch = "arm"))]
    let n = nr::__NR_clock_gettime;
    // SAFETY: the kernel writes one struct __kernel_timespec (two 64-bit fields) into `ts`.
    unsafe {
        syscall4(
            n,
            nr::CLOCK_BOOTTIME as usize,
            ts.as_mut_ptr() as usize,
            0,
            0,
        )
    };
    (ts[0] as u64)
        .wrapping_mul(1000)
        .wrapping_add(ts[1] as u64 / 1_000_000)
}
