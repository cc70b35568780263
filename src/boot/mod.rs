//! Init mode (PID 1 of a tiny initramfs): the API filesystems, kernel modules, the hand-over to
//! the real init, and what happens when there is no root to hand over to.

pub mod report;
pub mod switch_root;

use crate::config::state::Env;
use crate::log;
use crate::steps::{err_errno, Error};
use crate::sys;
use crate::util::fixed::{packed_name, packed_names, Text};

// Mount point and filesystem type of each base mount, back to back (see `packed_name`).
packed_names!(
    BASE_NAMES,
    BASE_ENDS,
    ["/proc", "proc", "/sys", "sysfs", "/dev", "devtmpfs", "/run", "tmpfs"]
);

/// `base-mounts`: `/proc`, `/sys`, `/dev` (devtmpfs) and `/run` (tmpfs), unless mounted.
pub fn base_mounts() -> Result<(), Error> {
    use sys::Flags as F;
    // Per mount (in `BASE_NAMES` order): its flags and whether its data string is `mode=0755`.
    // A static table, read in place (an array on the stack costs code to fill).
    static FLAGS: [(F, bool); 4] = [
        (F::NOSUID.union(F::NODEV).union(F::NOEXEC), false),
        (F::NOSUID.union(F::NODEV).union(F::NOEXEC), false),
        (F::NOSUID, true),
        (F::NOSUID.union(F::NODEV), true),
    ];
    for (i, &(flags, mode)) in FLAGS.iter().enumerate() {
        let path = packed_name(BASE_NAMES, &BASE_ENDS, 2 * i).as_bytes();
        let fstype = packed_name(BASE_NAMES, &BASE_ENDS, 2 * i + 1).as_bytes();
        let data: &[u8] = if mode { b"mode=0755" } else { b"" };
        let _ = sys::mkdir_p(path, 0o755);
        if sys::is_mountpoint_path(path) {
            continue;
        }
        sys::mount(fstype, path, fstype, flags, data)
            .map_err(|e| err_errno(b"cannot mount {} on {}", &[fstype, path], e))?;
    }
    log::open_kmsg();
    log::open_file();
    log::info(b"mounted /proc /sys /dev /run", &[]);
    Ok(())
}

/// `load-modules`: every module file listed in `<config>/modules` (relative to
/// `/lib/modules/<release>/`), in order. A missing or failing module is logged, not fatal.
pub fn load_modules(env: &Env) -> Result<(), Error> {
    let mut list_path = Text::<160>::new();
    list_path.push_lossy(env.config_dir.as_bytes());
    list_path.push_lossy(b"/modules");
    let mut buf = [0u8; 8192];
    let n = match sys::read_file(list_path.as_bytes(), &mut buf) {
        Ok(n) => n,
        Err(sys::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err_errno(b"cannot read {}", &[list_path.as_bytes()], e)),
    };
    let mut release = Text::<64>::new();
    sys::kernel_release(&mut release);
    let (mut loaded, mut failed) = (0u64, 0u64);
    for line in buf.get(..n).unwrap_or(&[]).split(|&c| c == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let mut path = Text::<512>::new();
        path.push_lossy(b"/lib/modules/");
        path.push_lossy(release.as_bytes());
        path.push_lossy(b"/");
        path.push_lossy(line);
        match sys::load_module(path.as_bytes()) {
            Ok(()) | Err(sys::Errno::EXIST) => loaded += 1,
            Err(e) => {
                failed += 1;
                log::warn_errno(b"{}: {}", &[line], e);
            }
        }
    }
    log::info(
        b"loaded {} modules, {} failed",
        &[log::num(loaded).as_bytes(), log::num(failed).as_bytes()],
    );
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_mount_names_split_as_meant() {
        let names: std::vec::Vec<_> = (0..8)
            .map(|i| packed_name(BASE_NAMES, &BASE_ENDS, i))
            .collect();
        assert_eq!(
            names,
            ["/proc", "proc", "/sys", "sysfs", "/dev", "devtmpfs", "/run", "tmpfs"]
        );
    }
}
