//! `mount-bind`: persistent paths. Each path gets a store directory
//! `<PERSISTENT_STATE_TARGET>/<dash>.bind` on the persistent volume; missing content is copied
//! up from the image, then the store is bind-mounted over the path (reference §6.12).

use super::{add_failure, err, err_errno, failures, fstab::Fstab, log_error, Ctx, Error};
use crate::config::path::{dash_name, is_within};
use crate::copy::{copy_missing, CopyStats, Missed};
use crate::log;
use crate::sys::{self, inroot::fd_path, inroot::Root};
use crate::util::fixed::Text;
use rustix::fd::AsFd;
use rustix::fs::OFlags;

/// Of `(mount point, volume)` pairs, the volume whose mount point holds `target` (the longest
/// matching mount point).
pub fn holder_of<'a, T>(target: &[u8], volumes: impl Iterator<Item = (&'a [u8], T)>) -> Option<T> {
    let mut best: Option<(usize, T)> = None;
    for (mp, v) in volumes {
        if is_within(target, mp) && best.as_ref().is_none_or(|(len, _)| mp.len() > *len) {
            best = Some((mp.len(), v));
        }
    }
    best.map(|(_, v)| v)
}

pub fn mount_bind(ctx: &mut Ctx) -> Result<(), Error> {
    let Ctx {
        ref layout,
        ref mut fstab,
        ref volumes,
        ref root,
        ..
    } = *ctx;
    if layout.binds.is_empty() {
        return Ok(());
    }
    let root = super::mounted_root(root)?;
    let target = layout.state_target.as_bytes();
    // Binding onto the image or an overlay would look like persistence and lose every write at
    // reboot: refuse loudly when the store's own volume did not mount.
    let volumes = volumes.iter().flatten();
    if let Some(v) = holder_of(target, volumes.map(|v| (v.mountpoint.as_bytes(), v))) {
        if !v.mounted {
            return Err(err(b"persistent binds skipped: {}, which holds {}, is not mounted (data bound now would be lost at reboot)", &[v.device.as_bytes(), target]));
        }
    }
    let mut order = [0u8; 96];
    let n = layout.bind_order(&mut order);
    let mut failed = Text::<256>::new();
    let mut stats = CopyStats::default();
    let mut bound = 0u64;
    for &i in order.iter().take(n) {
        let Some(path) = layout.binds.get(i as usize) else {
            continue;
        };
        match bind_one(root, fstab, path, target, &mut stats) {
            Ok(()) => bound += 1,
            Err(_) => {
                log_error(log::Level::Error, b"{}");
                add_failure(&mut failed, b"bind failed for", b",", &[path]);
            }
        }
    }
    // One flush for all the copies: the renames of copied files become durable together.
    // `syncfs` of the store's filesystem, not `sync`: it reports a failed writeback (EIO).
    if stats.files | stats.dirs | stats.links != 0 {
        // syncfs needs a real open (an O_PATH descriptor gets EBADF).
        let flushed = root
            .open_at(target, OFlags::RDONLY | OFlags::DIRECTORY, 0)
            .and_then(|store| sys::syncfs(store.as_fd()));
        if let Err(e) = flushed {
            log::warn_errno(b"cannot flush {}: {}", &[target], e);
        }
    }
    log_copied(
        b"{} persistent paths bound from {} (copied up {} files, {} dirs, {} links)",
        log::num(bound).as_bytes(),
        target,
        &stats,
        None,
    );
    failures(&failed)
}

/// Logs `template` with `first`, `second` and the numbers of files, directories and symlinks
/// copied since `before`; at debug level when a copy since `before` copied nothing, at info
/// level otherwise.
#[inline(never)]
fn log_copied(
    template: &[u8],
    first: &[u8],
    second: &[u8],
    now: &CopyStats,
    before: Option<&CopyStats>,
) {
    let b = before.copied().unwrap_or_default();
    let (files, dirs, links) = (now.files - b.files, now.dirs - b.dirs, now.links - b.links);
    let level = if before.is_some() && files | dirs | links == 0 {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log(
        level,
        template,
        &[
            first,
            second,
            log::num(files.into()).as_bytes(),
            log::num(dirs.into()).as_bytes(),
            log::num(links.into()).as_bytes(),
        ],
    );
}

fn bind_one(
    root: &Root,
    fstab: &mut Fstab,
    path: &[u8],
    state_target: &[u8],
    stats: &mut CopyStats,
) -> Result<(), Error> {
    // Cannot fail: layout paths are normalized to at most `MAX_PATH` (240) bytes when the
    // layout is read (`config::path::normalize`), so the name and the store path fit.
    let mut dash = Text::<256>::new();
    let _ = dash_name(path, &mut dash);
    let mut store = Text::<512>::new();
    store.push_lossy(state_target);
    store.push_lossy(b"/");
    store.push_lossy(dash.as_bytes());
    store.push_lossy(b".bind");
    let store = store.as_bytes();
    // Made if missing through the confined lookup, then opened again for reading by itself
    // (`.`): the copy lists both directories, which an `O_PATH` descriptor cannot. One message
    // for both steps: the directory is not usable either way, and the errno tells why.
    let dir = |p: &[u8]| {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        root.mkdir_p(p, 0o755)
            .and_then(|made| rustix::fs::openat(made, c".", flags, rustix::fs::Mode::empty()))
            .map_err(|e| err_errno(b"cannot create {} in the new root", &[p], e))
    };
    let src_dir = dir(path)?;
    // Each fd borrowed once: every `as_fd` is a call.
    let src = src_dir.as_fd();
    if sys::is_mountpoint(src, b"") {
        super::log_already_mounted(path);
        return Ok(());
    }
    let dst_dir = dir(store)?;
    let dst = dst_dir.as_fd();
    let before = *stats;
    // Where the copy failed, relative to `path`.
    let mut at = Text::<256>::new();
    // One argument list for both failures: the path and its store (all the bind message
    // uses), then where the copy failed.
    let mut args: [&[u8]; 4] = [path, store, b"", b""];
    let mut missed = Missed::default();
    let failed = match copy_missing(src, dst, stats, &mut missed) {
        Err(e) => Some((e.what, e.errno)),
        // Until the bind goes on past missed entries: the first one fails it as before.
        Ok(()) if missed.count > 0 => {
            at = missed.first.clone();
            Some((missed.what, missed.errno.unwrap_or(sys::Errno::LOOP)))
        }
        Ok(()) => None,
    };
    if let Some((what, errno)) = failed {
        args[2] = at.as_bytes();
        args[3] = what.as_bytes();
        let template = b"copying {} into {} failed at '{}' ({})";
        return Err(err_errno(template, &args, errno));
    }
    let from = fd_path(dst);
    let to = fd_path(src);
    sys::mount_bind(from.as_bytes(), to.as_bytes())
        .map_err(|e| err_errno(b"bind mount on {} from {} failed", &args, e))?;
    // Only a copy-up is news (a first boot, new paths in an upgraded image).
    log_copied(
        b"{} on {} (copied {} files, {} dirs, {} links)",
        store,
        path,
        stats,
        Some(&before),
    );
    fstab.add(store, path, b"none", b"bind");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_holder_is_the_deepest_volume() {
        let mps: [&[u8]; 3] = [b"/usr/local", b"/usr/local/data", b"/oem"];
        let holder_of = |target: &[u8]| holder_of(target, mps.iter().copied().zip(0..));
        assert_eq!(holder_of(b"/usr/local/.state"), Some(0));
        assert_eq!(holder_of(b"/usr/local/data/x"), Some(1));
        assert_eq!(holder_of(b"/var/state"), None);
        assert_eq!(holder_of(b"/usr/localx/.state"), None);
    }
}
