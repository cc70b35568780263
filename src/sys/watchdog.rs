//! The kernel's watchdog device interface (`/dev/watchdog`): its timeout and the keep-alive.

use super::Result;
use core::ffi::c_int;
use linux_raw_sys::ioctl::{WDIOC_KEEPALIVE, WDIOC_SETTIMEOUT};
use rustix::fd::BorrowedFd;
use rustix::ioctl::{ioctl, Updater};

/// Sets the watchdog's timeout to `secs`; returns the one the driver took (it may round).
pub fn set_timeout(fd: BorrowedFd<'_>, secs: u32) -> Result<u32> {
    let mut value = c_int::try_from(secs).unwrap_or(c_int::MAX);
    // SAFETY: WDIOC_SETTIMEOUT reads and writes an int, which lives for the call.
    unsafe {
        ioctl(
            fd,
            Updater::<{ WDIOC_SETTIMEOUT as _ }, c_int>::new(&mut value),
        )
    }?;
    Ok(u32::try_from(value).unwrap_or(0))
}

/// Restarts the watchdog's countdown.
pub fn keepalive(fd: BorrowedFd<'_>) -> Result<()> {
    let mut unused: c_int = 0;
    // SAFETY: WDIOC_KEEPALIVE takes (and ignores) a pointer to an int, which lives for the call.
    unsafe {
        ioctl(
            fd,
            Updater::<{ WDIOC_KEEPALIVE as _ }, c_int>::new(&mut unused),
        )
    }
}
