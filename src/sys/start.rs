//! Process entry point, memory intrinsics and panic handler for the static, libc-free binary.
//!
//! Only the `immucore` binary includes this file: host tests and fuzzers link the library
//! against std, which provides all three itself. Neither is this file in the binary's own
//! test build (`cargo clippy --all-targets` checks it), which links std as well: a second
//! panic handler there would not compile.
#![cfg(not(test))]

use core::arch::global_asm;

// The kernel starts `_start` with the stack pointer on `argc`, followed by the argv and envp
// arrays. Each stub passes that pointer to `start_rust` and keeps the stack 16-byte aligned.
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym start_rust,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "bl {entry}",
    "brk #0",
    entry = sym start_rust,
);

// In ARM state: the rest of the binary is Thumb-2 code, which has no `bic sp, sp, #15`.
#[cfg(target_arch = "arm")]
global_asm!(
    ".arm",
    ".globl _start",
    "_start:",
    "mov fp, #0",
    "mov lr, #0",
    "mov r0, sp",
    "bic sp, sp, #15",
    "bl {entry}",
    "udf #0",
    entry = sym start_rust,
);

#[cfg(target_arch = "riscv64")]
global_asm!(
    ".globl _start",
    "_start:",
    ".option push",
    ".option norelax",
    "lla gp, __global_pointer$",
    ".option pop",
    "mv a0, sp",
    "andi sp, sp, -16",
    "call {entry}",
    "unimp",
    entry = sym start_rust,
);

/// Reads argc/argv/envp off the initial stack and runs the program; never returns.
unsafe extern "C" fn start_rust(sp: *const usize) -> ! {
    // SAFETY: the kernel lays out argc, argv[argc], NULL, envp..., NULL at `sp`.
    let argc = unsafe { *sp };
    let argv = unsafe { sp.add(1) } as *const *const u8;
    let envp = unsafe { argv.add(argc + 1) };
    // The auxiliary vector follows envp's NULL; keep it for `getauxval`.
    let mut p = envp;
    while !unsafe { *p }.is_null() {
        p = unsafe { p.add(1) };
    }
    AUXV.store(
        unsafe { p.add(1) } as *mut usize,
        core::sync::atomic::Ordering::Relaxed,
    );
    // SAFETY: argv and envp are the kernel's NULL-terminated arrays on the initial stack.
    let code =
        immucore::app::main(unsafe { immucore::sys::args::ProcessArgs::from_raw(argv, envp) });
    immucore::sys::exit(code)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    immucore::sys::on_panic()
}

// Memory intrinsics the compiler emits calls to. Plain byte loops: LLVM does not turn a loop
// inside a function with these names back into a call to itself.
#[no_mangle]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    while i < n {
        unsafe { *dst.add(i) = *src.add(i) };
        i += 1;
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        let mut i = 0;
        while i < n {
            unsafe { *dst.add(i) = *src.add(i) };
            i += 1;
        }
    } else {
        let mut i = n;
        while i > 0 {
            i -= 1;
            unsafe { *dst.add(i) = *src.add(i) };
        }
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let mut i = 0;
    while i < n {
        unsafe { *dst.add(i) = c as u8 };
        i += 1;
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}

/// The precompiled `core` refers to the unwinding personality even with `panic = "abort"`;
/// nothing ever unwinds here, so it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[no_mangle]
unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

static AUXV: core::sync::atomic::AtomicPtr<usize> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// compiler_builtins asks which CPU features exist (aarch64 LSE atomics) through libc's
/// `getauxval`; answer from the auxiliary vector the kernel gave us.
#[no_mangle]
unsafe extern "C" fn getauxval(key: usize) -> usize {
    let mut p = AUXV.load(core::sync::atomic::Ordering::Relaxed) as *const usize;
    if p.is_null() {
        return 0;
    }
    loop {
        let (k, v) = unsafe { (*p, *p.add(1)) };
        if k == 0 {
            return 0;
        }
        if k == key {
            return v;
        }
        p = unsafe { p.add(2) };
    }
}
