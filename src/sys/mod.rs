//! The only layer with raw syscalls and `unsafe`: safe wrappers the rest of the program uses.
mod raw;

pub use raw::fork;

/// Ends the process with `code` (all threads).
pub fn exit(code: i32) -> ! {
    raw::exit_group(code)
}

fn stderr() -> rustix::fd::BorrowedFd<'static> {
    // SAFETY: fd 2 is never closed by this program.
    unsafe { rustix::fd::BorrowedFd::borrow_raw(2) }
}

/// A panic is a bug; in PID 1 it must not end the process (that is a kernel panic).
pub fn on_panic() -> ! {
    let _ = rustix::io::write(stderr(), b"immucore: internal error (panic)\n");
    exit(101)
}
