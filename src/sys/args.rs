//! The argument and environment vectors the kernel gave the process, behind a safe type: they
//! are read as byte strings and handed on unchanged to the init that replaces us (`exec`).

use super::raw;
use core::ffi::{c_char, CStr};
use rustix::io::Errno;

/// argv and envp as the kernel laid them out at `_start`.
#[derive(Clone, Copy)]
pub struct ProcessArgs {
    argv: *const *const u8,
    envp: *const *const u8,
}

impl ProcessArgs {
    /// # Safety
    /// `argv` and `envp` must each be NULL or a NULL-terminated array of NUL-terminated strings
    /// that live as long as the process (the kernel's initial stack at `_start`).
    pub unsafe fn from_raw(argv: *const *const u8, envp: *const *const u8) -> Self {
        ProcessArgs { argv, envp }
    }

    /// The arguments, the program name included.
    pub fn args(self) -> impl Iterator<Item = &'static [u8]> {
        strings(self.argv)
    }

    /// The environment, as `KEY=value` strings.
    pub fn vars(self) -> impl Iterator<Item = &'static [u8]> {
        strings(self.envp)
    }

    /// Replaces the process by `path` with these same arguments and environment; returns only
    /// with the reason it could not.
    pub fn exec(self, path: &CStr) -> Errno {
        // SAFETY: both arrays are valid and NULL-terminated (the contract of `from_raw`).
        Errno::from_raw_os_error(unsafe {
            raw::execve(path.as_ptr() as *const u8, self.argv, self.envp)
        })
    }
}

/// Iterates a NULL-terminated string array that `ProcessArgs::from_raw` vouched for.
fn strings(p: *const *const u8) -> impl Iterator<Item = &'static [u8]> {
    let mut i = 0;
    core::iter::from_fn(move || {
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is NULL-terminated (checked next) and `i` never passes the NULL.
        let s = unsafe { *p.add(i) };
        if s.is_null() {
            return None;
        }
        i += 1;
        // SAFETY: every entry is a NUL-terminated string living as long as the process.
        Some(unsafe { CStr::from_ptr(s as *const c_char) }.to_bytes())
    })
}

/// Starts `/bin/sh` with an empty argument list beyond its name and `PATH_ENV` (the rescue
/// shell of a failed boot); returns only with the reason it could not.
pub fn exec_shell() -> Errno {
    let argv: [*const u8; 2] = [c"/bin/sh".as_ptr() as *const u8, core::ptr::null()];
    let envp: [*const u8; 2] = [super::PATH_ENV.as_ptr() as *const u8, core::ptr::null()];
    // SAFETY: both arrays are NULL-terminated and point at static NUL-terminated strings.
    Errno::from_raw_os_error(unsafe {
        raw::execve(
            c"/bin/sh".as_ptr() as *const u8,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    })
}
