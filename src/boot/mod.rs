//! Init mode (PID 1 of a tiny initramfs): the hand-over to the real init, what the run leaves
//! behind for people, and what happens when there is no root to hand over to. (The API
//! filesystems and kernel modules are steps: `steps::init`.)

pub mod report;
pub mod switch_root;

use crate::log;
use crate::sys;

/// Fatal failure in init mode: there is no root. PID 1 must never exit, so this ends in a
/// reboot, a shell or an endless wait.
pub fn fail(reboot_on_failure: bool, shell_allowed: bool) -> ! {
    sys::sync();
    if reboot_on_failure {
        log::error(b"rebooting in 10 s (rd.immucore.rebootonfailure)", &[]);
        sys::sleep_ms(10_000);
        sys::sync();
        let _ = sys::reboot();
    } else if shell_allowed && sys::is_executable(b"/bin/sh") {
        log::error(b"starting /bin/sh (rd.shell=0 prevents this)", &[]);
        let e = sys::args::exec_shell();
        log::error(b"cannot start /bin/sh: {}", &[log::errno(e).as_bytes()]);
    } else {
        log::error(
            b"waiting forever; reset the machine, or boot with rd.immucore.rebootonfailure",
            &[],
        );
    }
    loop {
        sys::sleep_ms(60_000);
        sys::reap_children();
    }
}
