//! immucore: mounts a Kairos/cOS immutable OS root at boot.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod sys;
pub mod util;

/// Program entry after `_start`: returns the exit status (never returns in init mode).
///
/// # Safety
/// `argv` and `envp` must be the NULL-terminated arrays the kernel passed to the process.
pub unsafe fn main(_argc: usize, _argv: *const *const u8, _envp: *const *const u8) -> i32 {
    let _ = rustix::io::write(unsafe { rustix::fd::BorrowedFd::borrow_raw(1) }, b"hello\n");
    0
}
