//! `mount-bind`: persistent paths. Each path gets a store directory
//! `<PERSISTENT_STATE_TARGET>/<dash>.bind` on the persistent volume; missing content is copied
//! up from the image, then the store is bind-mounted over the path (reference §6.12).
//!
//! What the user already has is never hidden:
//! - An existing store is bound even when entries of the image could not be added to it (a
//!   full partition on an upgrade, say): the step fails, naming the path, and the path is
//!   listed in [`INCOMPLETE_FILE`].
//! - The very first copy fills `<target>/.immucore-partial.<dash>.bind` and renames it to the
//!   store's name only once it is complete. A first copy that cannot finish leaves the path
//!   unbound (the image's content stays visible, writes are ephemeral), fails the step and
//!   lists the path in [`INCOMPLETE_FILE`]; the next boot resumes it where it stopped.
//! - Overlays, volumes and binds already mounted below a path stay where they were configured:
//!   they are bound again below the store once it is mounted (the more specific path wins).

use super::{add_failure, err, err_errno, failures, fstab::Fstab, Ctx, Error, Volume};
use crate::config::layout::Layout;
use crate::config::path::{dash_name, is_within};
use crate::copy::{copy_missing, CopyStats, Missed};
use crate::log;
use crate::sys::{self, inroot::fd_path, inroot::real_path, inroot::Root, CBuf, Errno};
use crate::util::fixed::Text;
use core::ffi::CStr;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, RenameFlags};

/// One line per persistent path whose store lacks entries of the image, for the booted system
/// to check: `<path> <bound|unbound> <entries not added> <first one> <operation> <errno>`
/// (the first entry relative to the path, `.` for the path itself, blanks and `\` escaped as
/// `\ooo`; errno a number; `-` for an operation or errno not known). Absent when every store is
/// complete.
pub const INCOMPLETE_FILE: &[u8] = b"/run/immucore/persistent-incomplete";

/// Prefix of a store whose first copy has not finished.
const PARTIAL_PREFIX: &[u8] = b".immucore-partial.";

/// Mounts below one persistent path that can be kept visible (more is an error, never a
/// silent drop).
const MAX_KEPT: usize = 16;

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

/// True when two paths get the same store name (`/var/lib/foo-bar`, `/var/lib/foo/bar`).
fn same_store(a: &[u8], b: &[u8]) -> bool {
    let dash = |c: &u8| if *c == b'/' { b'-' } else { *c };
    a.len() == b.len() && a.iter().map(dash).eq(b.iter().map(dash))
}

/// How a persistent path ended up.
enum Bound {
    /// Its store is mounted on it (now, or by an earlier run).
    Yes,
    /// Its store is mounted on it, but entries of the image are missing from it.
    Incomplete,
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
    let configured = volumes.iter().flatten();
    if let Some(v) = holder_of(target, configured.map(|v| (v.mountpoint.as_bytes(), v))) {
        if !v.mounted {
            return Err(err(b"persistent binds skipped: {}, which holds {}, is not mounted (data bound now would be lost at reboot)", &[v.device.as_bytes(), target]));
        }
    }
    let mut order = [0u8; 96];
    let n = layout.bind_order(&mut order);
    let order = order.get(..n).unwrap_or(&[]);
    let mut not_bound = Text::<256>::new();
    let mut incomplete = Text::<256>::new();
    let mut report = Text::<4096>::new();
    let mut stats = CopyStats::default();
    let mut mounts = Mounts::read();
    let mut bound = 0u64;
    // The store's directory, made if missing, once for every path (each path fails on its own
    // if it cannot be).
    let targets = root
        .mkdir_p(target, 0o755)
        .and_then(|made| open_dir_at(made.as_fd(), c"."));
    // One place for all the paths, each loop turn setting its path.
    let mut at = Place {
        root,
        layout,
        volumes,
        target,
        targets: targets.as_ref().map(AsFd::as_fd).map_err(|e| *e),
        path: b"",
    };
    for (k, &i) in order.iter().enumerate() {
        let Some(path) = layout.binds.get(i as usize) else {
            continue;
        };
        if layout.rw_paths.contains(path) {
            log::warn(
                b"{} is in RW_PATHS too: it stays an ephemeral overlay and is NOT persistent",
                &[path],
            );
            continue;
        }
        let earlier = order.get(..k).unwrap_or(&[]).iter();
        let mut twin = earlier.filter_map(|&j| layout.binds.get(j as usize));
        if let Some(first) = twin.find(|p| same_store(p, path)) {
            log::error(
                b"{} not bound: its store name is the one of {} (both map to the same .bind directory)",
                &[path, first],
            );
            add_failure(&mut not_bound, b"bind failed for", b",", &[path]);
            continue;
        }
        at.path = path;
        match bind_one(&at, fstab, &mut stats, &mut report, &mut mounts) {
            Ok(Bound::Yes) => bound += 1,
            Ok(Bound::Incomplete) => {
                bound += 1;
                add_failure(
                    &mut incomplete,
                    b"copy-up incomplete (bound) for",
                    b",",
                    &[path],
                );
            }
            Err(e) => {
                e.log(log::Level::Error, b"{}");
                add_failure(&mut not_bound, b"bind failed for", b",", &[path]);
            }
        }
    }
    flush(root, target, &stats);
    write_report(&report);
    log_copied(
        b"{} persistent paths bound from {} (copied up {} files, {} dirs, {} links)",
        log::num(bound).as_bytes(),
        target,
        &stats,
        None,
    );
    if !not_bound.is_empty() && !incomplete.is_empty() {
        not_bound.push_lossy(b"; ");
    }
    not_bound.push_lossy(incomplete.as_bytes());
    failures(&not_bound)
}

/// One flush for all the copies: the renames of copied files become durable together.
/// `syncfs` of the store's filesystem, not `sync`: it reports a failed writeback (EIO).
fn flush(root: &Root, target: &[u8], stats: &CopyStats) {
    if stats.files | stats.dirs | stats.links == 0 {
        return;
    }
    // syncfs needs a real open (an O_PATH descriptor gets EBADF).
    let flushed = root
        .open_at(target, OFlags::RDONLY | OFlags::DIRECTORY, 0)
        .and_then(|store| sys::syncfs(store.as_fd()));
    if let Err(e) = flushed {
        log::warn_errno(b"cannot flush {}: {}", &[target], e);
    }
}

/// Writes [`INCOMPLETE_FILE`], or removes one an earlier run in this boot left when every
/// store is complete now.
fn write_report(report: &Text<4096>) {
    let written = if report.is_empty() {
        match rustix::fs::unlink(c"/run/immucore/persistent-incomplete") {
            Err(Errno::NOENT) => Ok(()),
            r => r,
        }
    } else {
        let _ = sys::mkdir_p(log::LOG_DIR, 0o755);
        sys::write_path_atomic(INCOMPLETE_FILE, report.as_bytes(), 0o644)
    };
    if let Err(e) = written {
        log::warn_errno(b"cannot write {}: {}", &[INCOMPLETE_FILE], e);
    }
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

/// What one bind needs to know: the root, the configured mounts (to keep those below the
/// path), the store directory and the path.
struct Place<'a> {
    root: &'a Root,
    layout: &'a Layout,
    volumes: &'a [Option<Volume>],
    target: &'a [u8],
    /// `target`, opened for reading (or why it could not be).
    targets: Result<BorrowedFd<'a>, Errno>,
    path: &'a [u8],
}

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// `name` in `dir`, a directory opened for reading, not following a symlink.
fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, name, DIR, Mode::empty())
}

// Out of line, with `Kept::attach`: inlined into the step dispatch they cost about 300 bytes more.
#[inline(never)]
fn bind_one(
    at: &Place,
    fstab: &mut Fstab,
    stats: &mut CopyStats,
    report: &mut Text<4096>,
    mounts: &mut Mounts,
) -> Result<Bound, Error> {
    let (root, path) = (at.root, at.path);
    // Cannot fail: layout paths are normalized to at most `MAX_PATH` (240) bytes when the
    // layout is read (`config::path::normalize`), so the names and the store path fit.
    let mut name = Text::<256>::new();
    let _ = dash_name(path, &mut name);
    name.push_lossy(b".bind");
    let mut store = Text::<512>::new();
    store.push_lossy(at.target);
    store.push_lossy(b"/");
    store.push_lossy(name.as_bytes());
    let store = store.as_bytes();
    let name = name.as_bytes();
    // Usually the path has no symlink in it: one confined open for reading (the copy lists
    // it), after making it if the image lacks it (`made`). Through a symlink, it is made if
    // missing by the confined lookup, then opened again for reading by itself (`.`).
    let mut made = false;
    let literal = match root.open_dir_literal(path) {
        Err(Errno::NOENT) => make_dir(root, path).and_then(|()| {
            made = true;
            root.open_dir_literal(path)
        }),
        opened => opened,
    };
    let src_dir = literal
        .or_else(|_| {
            let dir = root.mkdir_p(path, 0o755)?;
            open_dir_at(dir.as_fd(), c".")
        })
        .map_err(|e| err_errno(b"cannot create {} in the new root", &[path], e))?;
    // Each fd borrowed once: every `as_fd` is a call.
    let src = src_dir.as_fd();
    // The store in the store's directory is opened by name, never through a symlink. One
    // message for every step: the store is not usable either way.
    let cannot_create = |e| err_errno(b"cannot create {} in the new root", &[store], e);
    let targets = at.targets.map_err(cannot_create)?;
    let (mut name_c, mut partial_c) = (CBuf::new(), CBuf::new());
    let name_c = name_c.c_str(name).map_err(cannot_create)?;
    let existing = match open_dir_at(targets, name_c) {
        Ok(dir) => Some(dir),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(cannot_create(e)),
    };
    // A directory made just now is empty and no mount point: the image has nothing there to
    // copy up and nothing is mounted on it.
    if !made && sys::is_mountpoint(src, b"") {
        return already_mounted(path, store, src, existing.as_ref(), fstab);
    }
    let mut partial = Text::<256>::new();
    partial.push_lossy(PARTIAL_PREFIX);
    partial.push_lossy(name);
    if partial.len() != PARTIAL_PREFIX.len() + name.len() {
        return Err(cannot_create(Errno::NAMETOOLONG));
    }
    let partial = partial.as_bytes();
    let partial_c = partial_c.c_str(partial).map_err(cannot_create)?;
    let first_copy = existing.is_none();
    let dst_dir = match existing {
        Some(dir) => dir,
        None => match rustix::fs::mkdirat(targets, partial_c, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => open_dir_at(targets, partial_c),
            Err(e) => Err(e),
        }
        .map_err(cannot_create)?,
    };
    let dst = dst_dir.as_fd();
    let before = *stats;
    let mut missed = Missed::default();
    let copied = match made {
        true => Ok(()),
        false => copy_missing(src, dst, stats, &mut missed),
    };
    if let Err(e) = copied {
        // The top directories could not be listed: nothing was added.
        missed.count = missed.count.max(1);
        missed.first.clear();
        missed.first.push_lossy(b".");
        missed.what = e.what;
        missed.errno = Some(e.errno);
    }
    if missed.count > 0 && first_copy {
        return Err(incomplete(report, at, partial, false, &missed));
    }
    let mut kept = Kept::new();
    kept.find(at, src, mounts)?;
    if first_copy {
        rustix::fs::renameat_with(targets, partial_c, targets, name_c, RenameFlags::NOREPLACE)
            .map_err(|e| {
                err_errno(
                    b"cannot rename {}/{} to {}",
                    &[at.target, partial, store],
                    e,
                )
            })?;
    }
    sys::mount_bind(fd_path(dst).as_bytes(), fd_path(src).as_bytes())
        .map_err(|e| err_errno(b"bind mount on {} from {} failed", &[path, store], e))?;
    #[cfg(feature = "nested-mounts")]
    kept.attach(root, path)?;
    // Only a copy-up is news (a first boot, new paths in an upgraded image).
    log_copied(
        b"{} on {} (copied {} files, {} dirs, {} links)",
        store,
        path,
        stats,
        Some(&before),
    );
    fstab.add(store, path, b"none", b"bind");
    if missed.count == 0 {
        return Ok(Bound::Yes);
    }
    incomplete(report, at, name, true, &missed).log(log::Level::Error, b"{}");
    Ok(Bound::Incomplete)
}

/// Makes the directory `path`, which the confined lookup did not find, in its parent (made as
/// needed through that lookup); never through a symlink at its own name (`EEXIST`).
fn make_dir(root: &Root, path: &[u8]) -> Result<(), Errno> {
    let (parent, name) = sys::split_parent(path);
    let parent = root.mkdir_p(parent, 0o755)?;
    rustix::fs::mkdirat(
        &parent,
        CBuf::new().c_str(name)?,
        Mode::from_raw_mode(0o755),
    )
}

/// Reports entries of the image that could not be added to the store `<target>/<name>` of
/// `at.path`: a line of [`INCOMPLETE_FILE`] and the step error (returned, for the caller to
/// log or fail with), saying whether the store got `bound` all the same.
fn incomplete(report: &mut Text<4096>, at: &Place, name: &[u8], bound: bool, m: &Missed) -> Error {
    let state: [&[u8]; 2] = if bound {
        [b"bound", b"bound anyway"]
    } else {
        [b"unbound", b"not bound, the next boot resumes the copy"]
    };
    add_report_line(report, at.path, state[0], m);
    let count = log::num(m.count.into());
    let mut errno = Text::<64>::new();
    if let Some(e) = m.errno {
        errno.push_lossy(b": ");
        errno.push_lossy(log::errno(e).as_bytes());
    }
    let args: [&[u8]; 8] = [
        at.path,
        at.target,
        name,
        count.as_bytes(),
        m.first.as_bytes(),
        m.what.as_bytes(),
        errno.as_bytes(),
        state[1],
    ];
    err(
        b"{}: copy-up into {}/{} incomplete, {} entries of the image not added (first '{}' ({}){}); {}",
        &args,
    )
}

/// Adds the line of `path` to the report of [`INCOMPLETE_FILE`] (dropped whole if it does not
/// fit: the step's failure names the path anyway).
fn add_report_line(report: &mut Text<4096>, path: &[u8], state: &[u8], m: &Missed) {
    let mut first = Text::<1024>::new();
    for &c in m.first.as_bytes() {
        let octal = [
            b'\\',
            b'0' + (c >> 6),
            b'0' + ((c >> 3) & 7),
            b'0' + (c & 7),
        ];
        let blank = c <= b' ' || c == b'\\' || c == 0x7f;
        first.push_lossy(if blank {
            &octal
        } else {
            core::slice::from_ref(&c)
        });
    }
    let errno = match m.errno {
        Some(e) => log::num(e.raw_os_error() as u64),
        None => Text::from(b"-").unwrap_or_default(),
    };
    // No empty field: the fields are split at blanks.
    if first.is_empty() {
        first.push_lossy(b".");
    }
    let what = if m.what.is_empty() { "-" } else { m.what };
    let count = log::num(m.count.into());
    let fields: [&[u8]; 6] = [
        path,
        state,
        count.as_bytes(),
        first.as_bytes(),
        what.as_bytes(),
        errno.as_bytes(),
    ];
    let start = report.len();
    log::expand(b"{} {} {} {} {} {}\n", &fields, &mut |c| {
        report.push_lossy(&[c])
    });
    // Cut short: the closing newline did not fit.
    if !report.as_bytes().ends_with(b"\n") {
        report.truncate(start);
    }
}

/// `path` is a mount point already: its store, bound by an earlier run in this boot (recorded
/// in the fstab again, which describes what is mounted, whoever mounted it), or something
/// else, which stays and leaves the path without persistence.
fn already_mounted(
    path: &[u8],
    store: &[u8],
    src: BorrowedFd<'_>,
    existing: Option<&OwnedFd>,
    fstab: &mut Fstab,
) -> Result<Bound, Error> {
    let inode = |fd: BorrowedFd<'_>| rustix::fs::fstat(fd).map(|st| (st.st_dev, st.st_ino));
    // Only a second run in the same boot finds its store bound: service mode (PID 1 runs once).
    let ours = cfg!(feature = "service")
        && existing.is_some_and(|store| inode(store.as_fd()).ok() == inode(src).ok());
    if !ours {
        return Err(err(
            b"{} is mounted already, not from its store {}: it is NOT persistent",
            &[path, store],
        ));
    }
    super::log_already_mounted(path);
    fstab.add(store, path, b"none", b"bind");
    Ok(Bound::Yes)
}

/// The mounts below a persistent path (overlays, volumes, other binds), held open while the
/// store is bound over the path, then bound again at the same place below the store.
struct Kept {
    mounts: [Option<(OwnedFd, Text<256>)>; MAX_KEPT],
}

impl Kept {
    fn new() -> Kept {
        Kept {
            mounts: [const { None }; MAX_KEPT],
        }
    }

    /// Finds the configured mount points that are mounted below `src`, compared by the paths
    /// the kernel gives, so symlinks in the image count as they resolve.
    fn find(&mut self, at: &Place, src: BorrowedFd<'_>, mounts: &mut Mounts) -> Result<(), Error> {
        let mut top = Text::<512>::new();
        real_path(src, &mut top).map_err(|e| err_errno(b"cannot name {}", &[at.path], e))?;
        top.push_lossy(b"/");
        // (The tiny profile, which only refuses such paths, keeps the scan alone: no room.)
        #[cfg(feature = "nested-mounts")]
        if !mounts.below(top.as_bytes()) {
            // The path is about to be bound: a mount point below the paths still to come.
            mounts.add(top.as_bytes());
            return Ok(());
        }
        #[cfg(feature = "nested-mounts")]
        mounts.add(top.as_bytes());
        let _ = mounts;
        let volumes = at.volumes.iter().flatten().filter(|v| v.mounted);
        let configured = (at.layout.rw_paths.iter())
            .chain(volumes.map(|v| v.mountpoint.as_bytes()))
            .chain(at.layout.binds.iter());
        let mut slots = self.mounts.iter_mut();
        for mount_point in configured {
            let Ok(fd) = at.root.dir(mount_point) else {
                continue;
            };
            let mut real = Text::<512>::new();
            if !sys::is_mountpoint(fd.as_fd(), b"") || real_path(fd.as_fd(), &mut real).is_err() {
                continue;
            }
            let Some(rel) = real.as_bytes().strip_prefix(top.as_bytes()) else {
                continue;
            };
            // Without the feature nothing is bound again below the store: the path is refused
            // rather than hide what is mounted there.
            if !cfg!(feature = "nested-mounts") {
                return Err(err(
                    b"{} not bound: {} is mounted below it (keeping it visible needs the nested-mounts feature)",
                    &[at.path, mount_point],
                ));
            }
            let slot = slots.next().ok_or_else(|| {
                err(
                    b"{} not bound: more than 16 mounts below it to keep visible",
                    &[at.path],
                )
            })?;
            // Fits: below a path of at most 240 bytes, and within `MAX_PATH` itself.
            *slot = Some((fd, Text::from(rel).unwrap_or_default()));
        }
        Ok(())
    }

    /// Binds every kept mount again below the store now mounted on `path` (its mount point
    /// made in the store if missing, never through a symlink), then detaches the original, which
    /// the store covers. The outer ones first: a recursive bind takes the mounts below along,
    /// and a place that holds a mount already is skipped. If one cannot be bound, the store is
    /// unmounted again: the path keeps the image's content rather than hide a configured mount.
    #[cfg(feature = "nested-mounts")]
    #[inline(never)] // see `bind_one`
    fn attach(&mut self, root: &Root, path: &[u8]) -> Result<(), Error> {
        if self.mounts.iter().all(Option::is_none) {
            return Ok(());
        }
        let bound = root
            .dir(path)
            .map_err(|e| err_errno(b"cannot open {} after binding it", &[path], e))?;
        let bound = bound.as_fd();
        while let Some(next) = (self.mounts.iter_mut())
            .filter(|m| m.is_some())
            .min_by_key(|m| m.as_ref().map_or(0, |(_, rel)| rel.len()))
        {
            let Some((fd, rel)) = next.take() else { break };
            let (from, rel) = (fd_path(fd.as_fd()), rel.as_bytes());
            let attached = mount_point(bound, rel).and_then(|mp| {
                if sys::is_mountpoint(mp.as_fd(), b"") {
                    return Ok(false);
                }
                let (to, bind) = (fd_path(mp.as_fd()), sys::Flags::BIND | sys::Flags::REC);
                sys::mount(from.as_bytes(), to.as_bytes(), b"", bind, b"").map(|()| true)
            });
            match attached {
                Ok(true) => {
                    if let Err(e) = sys::unmount_detach(from.as_bytes()) {
                        log::warn_errno(b"{}/{}: the covered mount stays: {}", &[path, rel], e);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = sys::unmount_detach(fd_path(bound).as_bytes());
                    return Err(err_errno(
                        b"{} not bound: cannot keep {}/{} visible below it",
                        &[path, path, rel],
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What is mounted where, to tell whether anything is mounted below a persistent path: the
/// kernel's mount table, read once when the step begins, and the paths bound since (the only
/// mount points the step adds: mounts kept below a path are bound again where they were).
/// Looking for the configured mount points below a path costs an open, a `statx` and a
/// readlink per configured path, and the kernel formats its whole table on every read; this
/// rules them out in the usual case, where nothing is mounted below.
#[cfg(feature = "nested-mounts")]
pub struct Mounts {
    table: [u8; 16384],
    /// The table's length; `None` when it could not be read whole.
    len: Option<usize>,
    /// The paths bound since, each followed by a newline.
    bound: Text<4096>,
    /// Some did not fit in `bound`.
    full: bool,
}

#[cfg(not(feature = "nested-mounts"))]
pub struct Mounts;

#[cfg(not(feature = "nested-mounts"))]
impl Mounts {
    fn read() -> Mounts {
        Mounts
    }
}

#[cfg(feature = "nested-mounts")]
impl Mounts {
    fn read() -> Mounts {
        let mut m = Mounts {
            table: [0; 16384],
            len: None,
            bound: Text::new(),
            full: false,
        };
        m.len = sys::read_file(b"/proc/self/mountinfo", &mut m.table).ok();
        m
    }

    /// Records the directory `top` (a path as the kernel names it, ending in `/`) as a mount
    /// point.
    fn add(&mut self, top: &[u8]) {
        let path = top.strip_suffix(b"/").unwrap_or(top);
        let before = self.bound.len();
        self.bound.push_lossy(path);
        self.bound.push_lossy(b"\n");
        self.full |= self.bound.len() != before + path.len() + 1;
    }

    /// Whether something may be mounted below `top` (a path as the kernel names it, ending in
    /// `/`). `true` when this cannot tell (the table unread or longer than the buffer, too many
    /// paths bound, or `top` holding a character the table escapes): then every configured
    /// path is checked.
    fn below(&self, top: &[u8]) -> bool {
        let Some(n) = self.len else { return true };
        let escaped = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\\');
        if self.full || top.iter().any(escaped) {
            return true;
        }
        // Field 5 of a line of the table is the mount point; a line of `bound` is one.
        let table = self.table.get(..n).unwrap_or(&[]).split(|&c| c == b'\n');
        let mut mount_points = (table.filter_map(|line| line.split(|&c| c == b' ').nth(4)))
            .chain(self.bound.as_bytes().split(|&c| c == b'\n'));
        mount_points.any(|mp| mp.starts_with(top))
    }
}

/// The directory `rel` below `dir`, each part made if missing and opened by name without
/// following a symlink (the store is user data).
#[cfg(feature = "nested-mounts")]
fn mount_point(dir: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    let mut at = open_dir_at(dir, c".")?;
    for part in crate::util::words::split(rel, b'/').filter(|p| !p.is_empty()) {
        let mut c = CBuf::new();
        let part = c.c_str(part)?;
        match rustix::fs::mkdirat(&at, part, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        at = rustix::fs::openat(&at, part, OFlags::PATH | DIR, Mode::empty())?;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's table of this process: `/proc` is mounted below `/`, nothing below a
    /// directory that does not exist; a name with a blank cannot be compared (the table
    /// escapes it), so the configured paths are checked one by one.
    #[cfg(feature = "nested-mounts")]
    #[test]
    fn mount_table_tells_what_is_mounted_below() {
        let mut m = Mounts::read();
        assert!(m.below(b"/"));
        assert!(!m.below(b"/nonexistent-immucore-test/"));
        assert!(m.below(b"/nonexistent immucore test/"));
        // A path bound during the step counts below its parents, not below itself.
        m.add(b"/nonexistent-immucore-test/a/");
        assert!(m.below(b"/nonexistent-immucore-test/"));
        assert!(!m.below(b"/nonexistent-immucore-test/a/"));
        assert!(!m.below(b"/nonexistent-immucore-test/b/"));
    }

    #[test]
    fn store_holder_is_the_deepest_volume() {
        let mps: [&[u8]; 3] = [b"/usr/local", b"/usr/local/data", b"/oem"];
        let holder_of = |target: &[u8]| holder_of(target, mps.iter().copied().zip(0..));
        assert_eq!(holder_of(b"/usr/local/.state"), Some(0));
        assert_eq!(holder_of(b"/usr/local/data/x"), Some(1));
        assert_eq!(holder_of(b"/var/state"), None);
        assert_eq!(holder_of(b"/usr/localx/.state"), None);
    }

    #[test]
    fn store_names_collide_where_upstream_makes_them_equal() {
        assert!(same_store(b"/var/lib/foo-bar", b"/var/lib/foo/bar"));
        assert!(same_store(b"/a/b", b"/a-b"));
        assert!(!same_store(b"/var/lib/foo", b"/var/lib/foo/bar"));
        assert!(!same_store(b"/a/b", b"/a/c"));
    }

    #[test]
    fn report_lines_escape_blanks_and_name_the_errno() {
        let mut report = Text::new();
        let mut m = Missed {
            count: 3,
            what: "write",
            errno: Some(Errno::NOSPC),
            ..Missed::default()
        };
        m.first.push_lossy(b"dir/a b\\c");
        add_report_line(&mut report, b"/var/lib/big", b"bound", &m);
        m.errno = None;
        add_report_line(&mut report, b"/home", b"unbound", &m);
        let top = Missed {
            count: 1,
            ..Missed::default()
        };
        add_report_line(&mut report, b"/opt", b"bound", &top);
        assert_eq!(
            report.as_str(),
            "/var/lib/big bound 3 dir/a\\040b\\134c write 28\n\
             /home unbound 3 dir/a\\040b\\134c write -\n\
             /opt bound 1 . - -\n"
        );
    }
}
