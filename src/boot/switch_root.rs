//! The hand-over from the initramfs to the new root (SPEC §2), in systemd's order
//! (`switch-root.c`, as u-root does too): move the API filesystems into the new root, keep an
//! fd of the old root, make the new root `/`, then free the initramfs through that fd if it is
//! a ramfs/tmpfs (without crossing mounts), and exec the new init.
//!
//! Freeing comes after entering the new root, not before (util-linux's order): if entering
//! fails, the initramfs, with the rescue shell the failure path starts, is still whole.

use crate::log;
use crate::steps::init::API_FILESYSTEMS;
use crate::sys::{self, CBuf, Errno};
use crate::util::fixed::Text;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{fstat, openat, unlinkat, AtFlags, FileType, Mode, OFlags};

const INIT_FALLBACKS: &[&[u8]] = &[b"/sbin/init", b"/etc/init", b"/bin/init", b"/bin/sh"];

/// Moves everything and execs the new init (with the arguments and environment we were started
/// with); returns only after putting the reason it could not into `why`.
#[inline(never)]
pub fn switch_root(
    sysroot: &[u8],
    init: &[u8],
    process: sys::args::ProcessArgs,
    why: &mut Text<512>,
) {
    log::info(b"switching to {}", &[sysroot]);
    let _ = sys::make_root_private();
    // MS_MOVE needs the new root to be a mount point (a live sysroot may be a plain dir). Such a
    // sysroot is a directory of the initramfs: its files are the new root's, none may be freed.
    let sysroot_in_initramfs = !sys::is_mountpoint_path(sysroot);
    if sysroot_in_initramfs {
        let _ = sys::mount_bind(sysroot, sysroot);
    }
    // The API filesystems of the initramfs go with it into the new root.
    for fs in API_FILESYSTEMS.iter().map(|fs| fs.path) {
        let mut target = Text::<256>::new();
        target.push_lossy(sysroot);
        target.push_lossy(fs);
        if let Err(e) = sys::mount_move(fs, target.as_bytes()) {
            log::warn_errno(b"cannot move {} to {}: {}", &[fs, target.as_bytes()], e);
        }
    }
    // The old root, kept open: once the new root is mounted over `/`, this fd is the only way
    // left to reach the initramfs' files.
    let old_root = sys::open_dir(b"/").ok().filter(|fd| {
        !sysroot_in_initramfs
            && matches!(
                sys::fs_magic(fd.as_fd()),
                Ok(sys::RAMFS_MAGIC) | Ok(sys::TMPFS_MAGIC)
            )
    });
    let entered = sys::chdir(sysroot)
        .map_err(|e| (&b"chdir to the new root failed"[..], e))
        .and_then(|()| {
            sys::mount_move(b".", b"/").map_err(|e| (&b"moving the new root onto / failed"[..], e))
        })
        .and_then(|()| {
            sys::chroot(b".")
                .and_then(|()| sys::chdir(b"/"))
                .map_err(|e| (&b"chroot into the new root failed"[..], e))
        });
    if let Err((what, e)) = entered {
        why.push_lossy(what);
        why.push_lossy(b": ");
        why.push_lossy(log::errno(e).as_bytes());
        return;
    }
    // In the new root: the initramfs' memory is freed by deleting its files, staying on its
    // filesystem (the moved API filesystems left empty directories behind).
    if let Some(old_root) = old_root {
        let dev = fstat(&old_root).map(|s| s.st_dev).unwrap_or(0);
        remove_children(old_root.as_fd(), dev, 0);
    }
    #[cfg(feature = "timeline")]
    log_peak_memory();
    why.push_lossy(b"no init could be started (tried");
    for path in core::iter::once(init).chain(INIT_FALLBACKS.iter().copied()) {
        if path.is_empty() {
            continue;
        }
        let mut c = CBuf::new();
        let Ok(c) = c.c_str(path) else { continue };
        log::info(b"exec {}", &[path]);
        log::restore_kmsg_limit();
        let e = process.exec(c);
        if e != Errno::NOENT {
            log::warn_errno(b"cannot exec {}: {}", &[path], e);
        }
        why.push_lossy(b" ");
        why.push_lossy(path);
    }
    why.push_lossy(b")");
}

/// Deletes the contents of `dir`, staying on filesystem `dev` (so mounts below, the new root
/// among them, are never touched). Depth is bounded; the initramfs is shallow.
fn remove_children(dir: BorrowedFd<'_>, dev: u64, depth: u32) {
    if depth > 16 {
        return;
    }
    let _ = sys::for_each_entry(dir, &mut |name, file_type| {
        let mut c = CBuf::new();
        let Ok(name) = c.c_str(name) else { return };
        if file_type != FileType::Directory {
            let _ = unlinkat(dir, name, AtFlags::empty());
            return;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(sub) = openat(dir, name, flags, Mode::empty()) {
            let same = fstat(&sub).is_ok_and(|s| s.st_dev == dev);
            if same && !sys::is_mountpoint(sub.as_fd(), b"") {
                remove_children(sub.as_fd(), dev, depth + 1);
                let _ = unlinkat(dir, name, AtFlags::REMOVEDIR);
            }
        }
    });
}

/// Logs PID 1's peak memory (`VmHWM`), for the boot-cost figures (with the timeline).
#[cfg(feature = "timeline")]
fn log_peak_memory() {
    let mut peak = Text::new();
    super::report::peak_memory(&mut peak);
    if !peak.is_empty() {
        log::info(b"peak memory: VmHWM {}", &[peak.as_bytes()]);
    }
}
