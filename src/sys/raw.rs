//! Raw system calls that rustix does not offer publicly (its `runtime` module is unstable):
//! `exit_group`, `execve` and a plain `fork`.

use core::arch::asm;
use linux_raw_sys::general as nr;

#[cfg(target_arch = "x86_64")]
unsafe fn syscall3(n: u32, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall3(n: u32, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("svc 0", in("x8") n as usize, inlateout("x0") a as isize => ret, in("x1") b, in("x2") c,
             options(nostack));
    }
    ret
}

#[cfg(target_arch = "arm")]
unsafe fn syscall3(n: u32, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("svc 0", in("r7") n as usize, inlateout("r0") a as isize => ret, in("r1") b, in("r2") c,
             options(nostack));
    }
    ret
}

#[cfg(target_arch = "riscv64")]
unsafe fn syscall3(n: u32, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    unsafe {
        asm!("ecall", in("a7") n as usize, inlateout("a0") a as isize => ret, in("a1") b, in("a2") c,
             options(nostack));
    }
    ret
}

/// Ends every thread of the process.
pub fn exit_group(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an int and does not return.
        unsafe { syscall3(nr::__NR_exit_group, code as usize, 0, 0) };
    }
}

/// Replaces the process image; returns the errno on failure.
///
/// # Safety
/// `path` must be NUL-terminated; `argv` and `envp` NULL-terminated arrays of such strings.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> i32 {
    let r = unsafe { syscall3(nr::__NR_execve, path as usize, argv as usize, envp as usize) };
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
        syscall3(
            nr::__NR_clone,
            linux_raw_sys::general::SIGCHLD as usize,
            0,
            0,
        )
    }
}
