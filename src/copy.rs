//! Persistent-bind copy-up: fills the state directory with what the read-only image has at the
//! same place, like `rsync -aqAXx` limited to missing entries. Whatever already exists in the
//! store is user data and is never modified, replaced or deleted; existing directories are only
//! descended into so that their missing children get copied.
//!
//! Safety rules, because the image may be hostile and power may fail at any time:
//! - every entry is opened relative to its parent's fd by one name with `O_NOFOLLOW`, so no
//!   symlink (in the image or in the store) is ever followed;
//! - nothing under a real name is ever half-made. What is missing in a directory that existed
//!   before is built under `.immucore-tmp.<name>`, completely (data, owner, mode, xattrs,
//!   times; a directory with everything below it), and only renamed into place, without
//!   replacing anything, after one `syncfs` for the whole directory: the flushes grow with the
//!   directories that were missing something, not with the files. Below a new directory,
//!   entries are made under their real names: the whole tree is still a temporary. An
//!   interrupted run leaves only temporaries, which the next run removes (with everything
//!   below them) before it copies again; names with that prefix in the image are reserved and
//!   not copied;
//! - the copy never leaves the image's filesystem (`rsync -x`): a volume or overlay mounted
//!   below the path is neither entered nor copied;
//! - an entry that cannot be copied (a full store, an xattr the store refuses, a tree deeper
//!   than `MAX_DEPTH`) is counted in `Missed` and the copy goes on with the next;
//! - depth, buffers and names are bounded; nothing allocates.

use crate::sys::{self, Errno, Global};
use crate::util::fixed::{copy_bytes, Text};
use core::ffi::CStr;
use core::mem::MaybeUninit;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, Stat, Timestamps};

/// Deepest directory level copied below the top. Each level holds two open directories and a
/// listing buffer (about 1.5 KiB of stack): 256 levels stay far within PID 1's 8 MiB stack and
/// its 1024 descriptors. A subtree below it is left out and named in `Missed`.
pub const MAX_DEPTH: u32 = 256;

const TMP_PREFIX: &[u8] = b".immucore-tmp.";

/// The kernel's limits for one xattr value and for the list of a file's xattr names
/// (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`).
const XATTR_MAX: usize = 1 << 16;

#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct CopyStats {
    /// Regular files and special files (fifos, devices) created.
    pub files: u32,
    pub dirs: u32,
    /// Symlinks created.
    pub links: u32,
}

/// The top directories could not be listed: nothing was copied.
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug))]
pub struct CopyError {
    pub errno: Errno,
    /// The operation that failed: "stat", "readdir", ...
    pub what: &'static str,
}

/// Entries of the image that could not be added to the store (the copy goes on past them).
#[derive(Default)]
#[cfg_attr(test, derive(Debug))]
pub struct Missed {
    pub count: u32,
    /// Path relative to the top of the first entry not added (cut at 256 bytes).
    pub first: Text<256>,
    /// The operation of the first failure ("depth": a subtree below `MAX_DEPTH`); "" if none.
    pub what: &'static str,
    /// The error of the first failure; `None` for a subtree left out for its depth.
    pub errno: Option<Errno>,
}

/// The operation under way: a one-byte store before each step, named only when it fails.
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug, PartialEq))]
enum Op {
    Chmod,
    Chown,
    Create,
    Depth,
    Mkdir,
    Mknod,
    Open,
    Read,
    Readdir,
    Readlink,
    Remove,
    Rename,
    Stat,
    Symlink,
    Syncfs,
    Utimes,
    Write,
    Xattr,
}

impl Op {
    /// The names in the order of the variants, each padded to 8 bytes: one string instead of
    /// a table of 16-byte `&str`s and one of lengths (qemu/size-lore.md).
    const NAMES: &'static str = "chmod   chown   create  depth   mkdir   mknod   open    read    \
                                 readdir readlinkremove  rename  stat    symlink syncfs  utimes  \
                                 write   xattr   ";

    fn name(self) -> &'static str {
        let at = self as usize * 8;
        Op::NAMES.get(at..at + 8).unwrap_or("").trim_ascii_end()
    }
}

type Result<T, E = Errno> = core::result::Result<T, E>;

/// One copy in progress. `op` is the operation under way, set before each step that can
/// fail: errors travel up as a bare errno (small, in registers) to the directory loop that
/// counts the entry as missed, naming it with `op` and `path`.
struct Walk<'a> {
    stats: &'a mut CopyStats,
    missed: &'a mut Missed,
    /// The entry being copied, relative to the top directory (cut at 256 bytes).
    path: Text<256>,
    op: Op,
    /// The filesystem of the top of the image tree: the copy never leaves it.
    dev: u64,
    /// Why an entry that failed (or a temporary an interrupted run left) could not be
    /// removed: it may be half-made, and a temporary can no longer be told from a complete
    /// one, so nothing more is renamed into place in this run (what waits is counted as
    /// missed; the next run removes it).
    stuck: Option<Errno>,
}

/// Copies every entry of directory `src` that is missing in directory `dst`. Both must be
/// directories freshly opened for reading (each is listed from its start). An entry that
/// cannot be copied is counted in `missed` and the copy goes on; what was completed stays
/// (every entry is whole or absent). `Err` only when `src` or `dst` themselves cannot be
/// read.
///
/// New entries are flushed (`syncfs`) before they get their real names; the caller makes the
/// last renames durable with one sync after all its copies.
pub fn copy_missing(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    stats: &mut CopyStats,
    missed: &mut Missed,
) -> Result<(), CopyError> {
    let mut w = Walk {
        stats,
        missed,
        path: Text::new(),
        op: Op::Stat,
        dev: 0,
        stuck: None,
    };
    let top = rfs::fstat(src);
    let r = ok_ref(&top).and_then(|st| {
        w.dev = st.st_dev;
        fill(&mut w, src, dst, 0, false)
    });
    r.map_err(|errno| CopyError {
        errno,
        what: w.op.name(),
    })
}

// Test seam: the kill tests stop the copy dead (no clean-up runs) at the Nth change to the
// store, as a power cut or SIGKILL would. Nothing in a release build.
#[cfg(test)]
std::thread_local!(static KILL_AT: core::cell::Cell<u32> = const { core::cell::Cell::new(0) });

/// The payload of a simulated kill.
#[cfg(test)]
struct Killed;

/// Called before every change to the store.
#[inline(always)]
fn step() {
    #[cfg(test)]
    KILL_AT.with(|k| match k.get() {
        0 => {}
        1 => std::panic::resume_unwind(std::boxed::Box::new(Killed)),
        n => k.set(n - 1),
    });
}

// Test seam: the store refuses every removal (as a filesystem gone bad can).
#[cfg(test)]
std::thread_local!(static REFUSE_REMOVAL: core::cell::Cell<bool> = const { core::cell::Cell::new(false) });

/// Counts the entry at `w.path` as not added, failed with `e` in `w.op`.
#[inline(never)]
fn miss(w: &mut Walk, e: Errno) {
    let m = &mut *w.missed;
    if m.count == 0 {
        m.first = w.path.clone();
        m.what = w.op.name();
        m.errno = match w.op {
            Op::Depth => None,
            _ => Some(e),
        };
    }
    m.count = m.count.saturating_add(1);
}

/// `.`, `..` and reserved temporary names: never copied.
fn skipped(name: &CStr) -> bool {
    let nb = name.to_bytes();
    nb == b"." || nb == b".." || nb.starts_with(TMP_PREFIX)
}

/// Appends `/name` (or `name` at the top) to the walk's path; returns the length to cut back to.
#[inline(never)]
fn enter(w: &mut Walk, name: &CStr) -> usize {
    let mark = w.path.len();
    if mark > 0 {
        w.path.push_lossy(b"/");
    }
    w.path.push_lossy(name.to_bytes());
    mark
}

/// A directory of another filesystem (a volume or overlay mounted below the path): neither
/// entered nor copied. Directories only, as `rsync -x`: an overlay reports the filesystem of
/// the layer a file comes from for files, its own for directories.
fn elsewhere(w: &Walk, st: &Stat) -> bool {
    file_type(st) == FileType::Directory && st.st_dev != w.dev
}

/// The level below `depth`, or the failure that leaves the subtree out.
fn deeper(w: &mut Walk, depth: u32) -> Result<u32> {
    if depth >= MAX_DEPTH {
        w.op = Op::Depth;
        return Err(Errno::LOOP); // never shown: `miss` reports a depth without an errno
    }
    Ok(depth + 1)
}

/// Adds to `dst` what `src` has and it lacks. In a store directory that existed before this
/// copy (`new` false), each missing entry is built under a temporary name, then comes one
/// flush, then the renames. In a directory this copy made (`new`: a temporary itself, or
/// below one), entries are made under their real names. `Err` only when `src` or `dst`
/// cannot be listed; an entry that fails is counted as missed.
fn fill(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    depth: u32,
    new: bool,
) -> Result<()> {
    w.op = Op::Readdir;
    if !new {
        remove_stale(w, dst)?;
    }
    let mut made = false;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut it = rfs::RawDir::new(src, &mut buf);
    while let Some(ent) = it.next() {
        w.op = Op::Readdir;
        let ent = ent?;
        let name = ent.file_name();
        if skipped(name) {
            continue;
        }
        let mark = enter(w, name);
        match add(w, src, dst, name, depth, new) {
            Ok(pending) => made |= pending,
            Err(e) => miss(w, e),
        }
        w.path.truncate(mark);
    }
    if made {
        publish_all(w, dst)?;
    }
    Ok(())
}

/// Removes the temporaries an interrupted earlier run left in `dst`, with everything below
/// them. `dst` is read to its end; `publish_all` rewinds it.
fn remove_stale(w: &mut Walk, dst: BorrowedFd<'_>) -> Result<()> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut it = rfs::RawDir::new(dst, &mut buf);
    while let Some(ent) = it.next() {
        let ent = ent?;
        let name = ent.file_name();
        if name.to_bytes().starts_with(TMP_PREFIX) {
            remove_or_stop(w, dst, name);
        }
    }
    Ok(())
}

/// Removes a temporary that may be half-made; when that fails, nothing more is published.
fn remove_or_stop(w: &mut Walk, dir: BorrowedFd<'_>, name: &CStr) {
    if let Err(e) = remove(dir, name, 0) {
        w.stuck = Some(e);
    }
}

/// Removes `name` from `dir`, with everything below it when it is a directory (a temporary
/// tree: at most `MAX_DEPTH` deep when this copy made it); the error when `name` stays.
fn remove(dir: BorrowedFd<'_>, name: &CStr, depth: u32) -> Result<()> {
    step();
    #[cfg(test)]
    if REFUSE_REMOVAL.with(|r| r.get()) {
        return Err(Errno::PERM);
    }
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) if depth <= MAX_DEPTH => {}
        Err(Errno::NOENT) => return Ok(()),
        r => return r,
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if let Ok(d) = rfs::openat(dir, name, flags, Mode::empty()) {
        let d = d.as_fd();
        let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
        let mut it = rfs::RawDir::new(d, &mut buf);
        while let Some(Ok(ent)) = it.next() {
            let child = ent.file_name();
            if !matches!(child.to_bytes(), b"." | b"..") {
                let _ = remove(d, child, depth + 1); // the directory's removal tells
            }
        }
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// One entry of the image. In a new directory: made under its real name. In one that existed:
/// entered when both are directories, kept as it is when the store has the name, built under
/// a temporary name when it does not. `Ok(true)`: a temporary waits for `publish_all`.
// Out of line: its stat and temporary name stay out of the frame of the directory loop.
#[inline(never)]
fn add(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    depth: u32,
    new: bool,
) -> Result<bool> {
    let st = lstat(w, src, name);
    let st = ok_ref(&st)?;
    if elsewhere(w, st) {
        return Ok(false);
    }
    if new {
        make(w, src, dst, name, name, st, depth)?;
        return Ok(false);
    }
    let is_dir = file_type(st) == FileType::Directory;
    // Same name on both sides: only a directory pair is entered; anything else in the store
    // (newer, older, other type) is kept as it is.
    match ok_ref(&lstat(w, dst, name)).map(file_type) {
        Ok(FileType::Directory) if is_dir => {
            let below = deeper(w, depth)?;
            let (s_dir, d_dir) = (open_dir(w, src, name)?, open_dir(w, dst, name)?);
            fill(w, s_dir.as_fd(), d_dir.as_fd(), below, false)?;
            Ok(false)
        }
        Ok(_) => Ok(false),
        Err(Errno::NOENT) => {
            let mut buf = [0u8; 256];
            let (tmp, cut) = tmp_name(name.to_bytes(), &mut buf);
            make(w, src, dst, name, tmp, st, depth)?;
            if !cut {
                return Ok(true);
            }
            // `publish_all` finds a name in its temporary's, which this one cut: flushed and
            // renamed now (at most one such temporary exists at any time, so two names cut
            // alike never meet).
            let placed = flush(w, dst).and_then(|()| publish(w, dst, tmp, name));
            if placed.is_err() {
                let _ = remove(dst, tmp, 0); // complete: harmless if it stays
            }
            placed.map(|()| false)
        }
        Err(e) => Err(e),
    }
}

/// Flushes the store, then gives every temporary in `dst` its real name (the listing of `dst`
/// holds only this run's temporaries: `remove_stale` cleared the others, failures removed
/// theirs). A temporary whose name cannot be placed is removed and counted as missed.
fn publish_all(w: &mut Walk, dst: BorrowedFd<'_>) -> Result<()> {
    let synced = flush(w, dst);
    let flush_op = w.op;
    w.op = Op::Readdir;
    rfs::seek(dst, rfs::SeekFrom::Start(0))?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut it = rfs::RawDir::new(dst, &mut buf);
    while let Some(ent) = it.next() {
        w.op = Op::Readdir;
        let ent = ent?;
        let tmp = ent.file_name();
        // The real name: what follows the prefix (renamed entries may be listed again, under
        // their real names, which do not start with it).
        let with_nul = tmp.to_bytes_with_nul();
        let Some(name) = with_nul
            .strip_prefix(TMP_PREFIX)
            .and_then(sys::c_str_until_nul)
        else {
            continue;
        };
        let mark = enter(w, name);
        w.op = flush_op;
        if let Err(e) = synced.and_then(|()| publish(w, dst, tmp, name)) {
            let _ = remove(dst, tmp, 0); // complete, or `stuck`: the next run removes it
            miss(w, e);
        }
        w.path.truncate(mark);
    }
    Ok(())
}

/// Flushes the store before temporaries get their real names, unless one that failed could
/// not be removed (`stuck`).
fn flush(w: &mut Walk, dst: BorrowedFd<'_>) -> Result<()> {
    if let Some(e) = w.stuck {
        w.op = Op::Remove;
        return Err(e);
    }
    w.op = Op::Syncfs;
    step();
    rfs::syncfs(dst)
}

/// Renames `tmp` to `name` unless `name` exists, which keeps what is there: the temporary is
/// removed (`name` appeared meanwhile).
fn publish(w: &mut Walk, dst: BorrowedFd<'_>, tmp: &CStr, name: &CStr) -> Result<()> {
    w.op = Op::Rename;
    step();
    let placed = match rfs::renameat_with(dst, tmp, dst, name, RenameFlags::NOREPLACE) {
        Err(Errno::EXIST) => false,
        // Filesystems without RENAME_NOREPLACE: look again right before the plain rename, which
        // would replace (nothing else writes the store now).
        Err(Errno::INVAL | Errno::NOSYS) => match lstat(w, dst, name) {
            Ok(_) => false,
            Err(Errno::NOENT) => {
                w.op = Op::Rename;
                rfs::renameat(dst, tmp, dst, name)?;
                true
            }
            Err(e) => return Err(e),
        },
        r => {
            r?;
            true
        }
    };
    if !placed {
        let _ = remove(dst, tmp, 0); // complete: harmless if it stays
    }
    Ok(())
}

fn open_dir(w: &mut Walk, parent: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd> {
    w.op = Op::Open;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(parent, name, flags, Mode::empty())
}

/// `name` in `dir`, not following a symlink.
#[inline(never)]
fn lstat(w: &mut Walk, dir: BorrowedFd<'_>, name: &CStr) -> Result<Stat> {
    w.op = Op::Stat;
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// The stat in `r`, borrowed where the syscall wrote it: moving it out of the `Result` would
/// copy it.
fn ok_ref(r: &Result<Stat>) -> Result<&Stat> {
    r.as_ref().map_err(|e| *e)
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

#[inline(never)] // one saturating add for all the counters
fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

/// `.immucore-tmp.<name>`, and whether the name had to be cut so the whole stays within
/// NAME_MAX.
fn tmp_name<'a>(name: &[u8], buf: &'a mut [u8; 256]) -> (&'a CStr, bool) {
    copy_bytes(buf, TMP_PREFIX);
    // At most 255 - 14 bytes of the name: the zeroed buffer keeps a NUL at its end.
    let room = buf.get_mut(TMP_PREFIX.len()..255).unwrap_or_default();
    let cut = name.len() > room.len();
    copy_bytes(room, name);
    let tmp = sys::c_str_until_nul(buf).unwrap_or(c".immucore-tmp.");
    (tmp, cut)
}

/// Removes what `made` left at `at` when it failed: a made entry is whole or absent.
fn undo_on_err(w: &mut Walk, dst: BorrowedFd<'_>, at: &CStr, made: Result<()>) -> Result<()> {
    if made.is_err() {
        remove_or_stop(w, dst, at);
    }
    made
}

/// Makes `at` in `dst` a complete copy of the image's `name` in `src`, a directory with
/// everything below it, or nothing (what a failure leaves is removed).
fn make(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    at: &CStr,
    st: &Stat,
    depth: u32,
) -> Result<()> {
    match file_type(st) {
        FileType::Directory => new_dir(w, src, dst, name, at, st, depth),
        FileType::RegularFile => new_file(w, src, dst, name, at, st),
        ft @ (FileType::Symlink
        | FileType::Fifo
        | FileType::CharacterDevice
        | FileType::BlockDevice) => new_special(w, src, dst, name, at, ft, st),
        // Sockets belong to a running service and mean nothing in a copy.
        _ => Ok(()),
    }
}

/// A new directory: made (0700, nobody else's to see yet), given its owner, mode and xattrs,
/// filled with copies of everything below it under their real names (the tree is new: nothing
/// in it is the user's), and given its times last, as creating its children changed them.
/// A child that fails is counted as missed and the directory made without it.
fn new_dir(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    at: &CStr,
    st: &Stat,
    depth: u32,
) -> Result<()> {
    let below = deeper(w, depth)?;
    let s_dir = open_dir(w, src, name)?;
    w.op = Op::Mkdir;
    step();
    rfs::mkdirat(dst, at, Mode::from_raw_mode(0o700))?;
    let filled = fill_new(w, s_dir.as_fd(), dst, at, st, below);
    undo_on_err(w, dst, at, filled)?;
    bump(&mut w.stats.dirs);
    Ok(())
}

fn fill_new(
    w: &mut Walk,
    s: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    at: &CStr,
    st: &Stat,
    depth: u32,
) -> Result<()> {
    let d_dir = open_dir(w, dst, at)?;
    let d = d_dir.as_fd();
    owner_mode_xattrs(w, s, d, st)?;
    fill(w, s, d, depth, true)?;
    set_times(w, d, st)
}

fn new_file(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    at: &CStr,
    st: &Stat,
) -> Result<()> {
    w.op = Op::Open;
    // NONBLOCK: should the entry have turned into a fifo since the stat, open must not hang.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let s_file = rfs::openat(src, name, flags, Mode::empty())?;
    // Borrowed once: each `as_fd` is a call.
    let s = s_file.as_fd();
    w.op = Op::Stat;
    if file_type(ok_ref(&rfs::fstat(s))?) != FileType::RegularFile {
        w.op = Op::Open;
        return Err(Errno::STALE);
    }
    w.op = Op::Create;
    step();
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let d_file = rfs::openat(dst, at, flags, Mode::from_raw_mode(0o600))?;
    let d = d_file.as_fd();
    let made = copy_data(w, s, d)
        // Data first (writing clears setuid and capabilities), then owner (chown clears
        // setuid too), mode, xattrs (security.capability survives from here on), times.
        .and_then(|()| owner_mode_xattrs(w, s, d, st))
        .and_then(|()| set_times(w, d, st));
    undo_on_err(w, dst, at, made)?;
    bump(&mut w.stats.files);
    Ok(())
}

/// Copies the data with `sendfile`: a splice from the page cache inside the kernel, which every
/// filesystem an image or a store lives on supports, so no read/write fallback is needed.
/// `copy_file_range` would only do better by cloning extents, which needs both sides on one
/// filesystem that can (btrfs, xfs); the image and the store are different filesystems.
fn copy_data(w: &mut Walk, s: BorrowedFd<'_>, d: BorrowedFd<'_>) -> Result<()> {
    let mut done = 0u64;
    loop {
        w.op = Op::Write;
        step();
        match rfs::sendfile(d, s, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(n) => done += n as u64,
            Err(Errno::INTR) => {}
            Err(e) => {
                // sendfile fails for either side: reading the byte it stopped at tells which.
                w.op = Op::Read;
                rustix::io::pread(s, &mut [0u8; 1], done)?;
                w.op = Op::Write;
                return Err(e);
            }
        }
    }
}

/// Symlinks, fifos and device nodes, made at `at` and given the owner, mode (symlinks have
/// none) and times of `name` (xattrs are not copied: getting a node's would mean opening it).
#[inline(never)] // keeps its buffer out of the recursive frames
fn new_special(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    at: &CStr,
    ft: FileType,
    st: &Stat,
) -> Result<()> {
    if ft == FileType::Symlink {
        // Targets are at most PATH_MAX - 1 bytes, so a zeroed PATH_MAX buffer keeps a
        // terminator; a full buffer could only mean a cut target.
        w.op = Op::Readlink;
        let mut buf = [0u8; 4096];
        let len = rfs::readlinkat_raw(src, name, &mut buf[..])?;
        if len >= buf.len() {
            return Err(Errno::NAMETOOLONG);
        }
        let target = sys::c_str_until_nul(&buf).ok_or(Errno::INVAL)?;
        w.op = Op::Symlink;
        step();
        rfs::symlinkat(target, dst, at)?;
    } else {
        w.op = Op::Mknod;
        step();
        rfs::mknodat(dst, at, ft, Mode::from_raw_mode(0o600), st.st_rdev as _)?;
    }
    let made = special_metadata(w, dst, at, ft, st);
    undo_on_err(w, dst, at, made)?;
    bump(if ft == FileType::Symlink {
        &mut w.stats.links
    } else {
        &mut w.stats.files
    });
    Ok(())
}

fn special_metadata(
    w: &mut Walk,
    dst: BorrowedFd<'_>,
    at: &CStr,
    ft: FileType,
    st: &Stat,
) -> Result<()> {
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    w.op = Op::Chown;
    step();
    rfs::chownat(dst, at, Some(uid(st)), Some(gid(st)), nofollow)?;
    if ft != FileType::Symlink {
        // fchmodat cannot refuse symlinks, but `at` is the node just made in the store.
        w.op = Op::Chmod;
        step();
        rfs::chmodat(dst, at, mode(st), AtFlags::empty())?;
    }
    w.op = Op::Utimes;
    step();
    rfs::utimensat(dst, at, &times(st), nofollow)
}

/// Owner and mode first (chown clears setuid), then the extended attributes.
fn owner_mode_xattrs(w: &mut Walk, s: BorrowedFd<'_>, d: BorrowedFd<'_>, st: &Stat) -> Result<()> {
    w.op = Op::Chown;
    step();
    rfs::fchown(d, Some(uid(st)), Some(gid(st)))?;
    w.op = Op::Chmod;
    step();
    rfs::fchmod(d, mode(st))?;
    w.op = Op::Xattr;
    copy_xattrs(s, d)
}

/// The times in `st` for the file or directory behind `d` (an entry this copy made).
fn set_times(w: &mut Walk, d: BorrowedFd<'_>, st: &Stat) -> Result<()> {
    w.op = Op::Utimes;
    step();
    rfs::futimens(d, &times(st))
}

/// Room for the largest xattr list and value the kernel has: zeroed static memory, so it costs
/// neither stack (PID 1 copies deep trees) nor file size, and only the pages a copy touches.
struct XattrBufs {
    names: [u8; XATTR_MAX],
    value: [u8; XATTR_MAX],
}

// Used by `copy_xattrs` only, which never re-enters itself (the unit tests, which run on
// several threads, copy one at a time).
static XATTR_BUFS: Global<XattrBufs> = Global::new(XattrBufs {
    names: [0; XATTR_MAX],
    value: [0; XATTR_MAX],
});

/// Copies all extended attributes; a side without xattr support means there is nothing to copy
/// or nowhere to put it, which is not an error.
fn copy_xattrs(s: BorrowedFd<'_>, d: BorrowedFd<'_>) -> Result<()> {
    XATTR_BUFS.with(|XattrBufs { names, value }| {
        let mut rest: &[u8] = match rfs::flistxattr(s, &mut names[..]) {
            Ok(len) => names.get(..len).unwrap_or_default(),
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e),
        };
        while let Some(key) = sys::c_str_until_nul(rest) {
            rest = rest.get(key.to_bytes().len() + 1..).unwrap_or_default();
            if key.is_empty() {
                continue;
            }
            let len = match rfs::fgetxattr(s, key, &mut value[..]) {
                Ok(len) => len,
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(e),
            };
            step();
            let value = value.get(..len).unwrap_or_default();
            match rfs::fsetxattr(d, key, value, rfs::XattrFlags::empty()) {
                Ok(()) | Err(Errno::NOTSUP) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}

fn uid(st: &Stat) -> rfs::Uid {
    rfs::Uid::from_raw(st.st_uid)
}

fn gid(st: &Stat) -> rfs::Gid {
    rfs::Gid::from_raw(st.st_gid)
}

fn mode(st: &Stat) -> Mode {
    Mode::from_raw_mode((st.st_mode & 0o7777) as _)
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: rfs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    #[test]
    fn op_names() {
        let all = [
            (Op::Chmod, "chmod"),
            (Op::Chown, "chown"),
            (Op::Create, "create"),
            (Op::Depth, "depth"),
            (Op::Mkdir, "mkdir"),
            (Op::Mknod, "mknod"),
            (Op::Open, "open"),
            (Op::Read, "read"),
            (Op::Readdir, "readdir"),
            (Op::Readlink, "readlink"),
            (Op::Remove, "remove"),
            (Op::Rename, "rename"),
            (Op::Stat, "stat"),
            (Op::Symlink, "symlink"),
            (Op::Syncfs, "syncfs"),
            (Op::Utimes, "utimes"),
            (Op::Write, "write"),
            (Op::Xattr, "xattr"),
        ];
        for (op, name) in all {
            assert_eq!(op.name(), name);
        }
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("immucore-copy-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn c(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    /// Sets times without following symlinks. The access time lies in the future so that
    /// `relatime` never updates it while the tests read the tree.
    fn set_times(p: &Path, mtime: i64, nsec: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let t = Timestamps {
            last_access: rfs::Timespec {
                tv_sec: now + 3600,
                tv_nsec: 123,
            },
            last_modification: rfs::Timespec {
                tv_sec: mtime,
                tv_nsec: nsec,
            },
        };
        rfs::utimensat(rfs::CWD, c(p).as_c_str(), &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn open(p: &Path) -> OwnedFd {
        rfs::open(
            c(p).as_c_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// One copy at a time: `copy_xattrs` has one buffer for the program.
    static COPY_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn run(src: &Path, dst: &Path) -> (Result<(), CopyError>, CopyStats, Missed) {
        let (s, d) = (open(src), open(dst));
        let mut stats = CopyStats::default();
        let mut missed = Missed::default();
        let _one = COPY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let r = copy_missing(s.as_fd(), d.as_fd(), &mut stats, &mut missed);
        (r, stats, missed)
    }

    /// A copy that completes with nothing missed.
    fn copied(src: &Path, dst: &Path) -> CopyStats {
        let (r, stats, missed) = run(src, dst);
        r.unwrap();
        assert_eq!(missed.count, 0, "{missed:?}");
        stats
    }

    /// Path, [mode uid gid mtime ns atime ns rdev size], content digest or link text, xattrs.
    type Entry = (PathBuf, [i64; 9], Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

    /// Everything `rsync -aAX` keeps, per relative path, sorted.
    fn snapshot(root: &Path) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let meta = [
                    m.mode() as i64,
                    m.uid() as i64,
                    m.gid() as i64,
                    m.mtime(),
                    m.mtime_nsec(),
                    m.atime(),
                    m.atime_nsec(),
                    m.rdev() as i64,
                    m.size() as i64,
                ];
                let ft = m.file_type();
                let content = if ft.is_symlink() {
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
                } else if ft.is_file() {
                    // A digest keeps failure messages readable for the 1 MiB file.
                    let h = fs::read(&p)
                        .unwrap()
                        .iter()
                        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                        });
                    h.to_le_bytes().to_vec()
                } else {
                    Vec::new()
                };
                let mut xattrs = Vec::new();
                if ft.is_file() || ft.is_dir() {
                    let mut list = vec![0u8; XATTR_MAX];
                    let n = rfs::llistxattr(c(&p).as_c_str(), &mut list[..]).unwrap();
                    for k in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
                        let mut v = vec![0u8; XATTR_MAX];
                        let key = CString::new(k).unwrap();
                        let l =
                            rfs::lgetxattr(c(&p).as_c_str(), key.as_c_str(), &mut v[..]).unwrap();
                        xattrs.push((k.to_vec(), v[..l].to_vec()));
                    }
                    xattrs.sort();
                }
                if ft.is_dir() {
                    todo.push(p.clone());
                }
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    meta,
                    content,
                    xattrs,
                ));
            }
        }
        out.sort();
        out
    }

    fn write(p: &Path, data: &[u8], mode: u32, mtime: i64) {
        fs::write(p, data).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        set_times(p, mtime, 0);
    }

    #[test]
    fn copies_a_whole_tree_with_metadata() {
        let base = tmpdir("full");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(src.join("a/b/c")).unwrap();
        fs::create_dir_all(src.join("empty")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("a/b/c/deep.txt"), b"deep").unwrap();
        fs::write(src.join("suid"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(src.join("owned"), b"x").unwrap();
        std::os::unix::fs::lchown(src.join("owned"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::symlink("/../../etc/passwd", src.join("abs")).unwrap();
        std::os::unix::fs::symlink("a/b", src.join("rel")).unwrap();
        std::os::unix::fs::lchown(src.join("rel"), Some(1234), Some(5678)).unwrap();
        rfs::mknodat(
            rfs::CWD,
            c(&src.join("fifo")).as_c_str(),
            FileType::Fifo,
            Mode::from_raw_mode(0o620),
            0,
        )
        .unwrap();
        fs::write(src.join("xfile"), b"attrs").unwrap();
        let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
        fs::write(src.join("big"), &big).unwrap();
        fs::set_permissions(src.join("empty"), fs::Permissions::from_mode(0o1750)).unwrap();
        let user = rfs::XattrFlags::empty();
        rfs::fsetxattr(open(&src.join("xfile")), c"user.test", b"hello", user).unwrap();
        rfs::fsetxattr(open(&src.join("a")), c"user.dir", b"d", user).unwrap();
        let long = "L".repeat(250);
        fs::write(src.join(&long), b"long name").unwrap();
        set_times(&src.join(&long), 1_600_000_000, 0);
        // Times last and deepest first, so creating entries does not change them again.
        for (i, p) in [
            "a/b/c/deep.txt",
            "a/b/c",
            "a/b",
            "a",
            "suid",
            "owned",
            "abs",
            "rel",
            "fifo",
            "xfile",
            "big",
            "empty",
        ]
        .iter()
        .enumerate()
        {
            set_times(
                &src.join(p),
                1_600_000_000 + i as i64 * 1000,
                100_000 + i as i64,
            );
        }
        let before = snapshot(&src);

        let stats = copied(&src, &dst);
        assert_eq!(snapshot(&dst), before);
        assert_eq!(snapshot(&src), before, "the source is left as it was");
        let want = CopyStats {
            files: 7,
            dirs: 4,
            links: 2,
        };
        assert_eq!(stats, want);

        // A second run finds everything present and changes nothing.
        let stats = copied(&src, &dst);
        assert_eq!(stats, CopyStats::default());
        assert_eq!(snapshot(&dst), before);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn existing_entries_are_never_touched() {
        let base = tmpdir("exist");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(src.join("d")).unwrap();
        fs::create_dir_all(dst.join("d")).unwrap();
        write(&src.join("newer"), b"image", 0o644, 1_600_000_000);
        write(&src.join("older"), b"image", 0o644, 1_600_000_000);
        write(&src.join("missing"), b"image", 0o600, 1_600_000_000);
        write(&src.join("d/child"), b"child", 0o644, 1_600_000_000);
        write(&src.join("d/kept"), b"image", 0o644, 1_600_000_000);
        write(&dst.join("newer"), b"store, newer", 0o600, 1_700_000_000);
        write(&dst.join("older"), b"store, older", 0o640, 1_500_000_000);
        write(&dst.join("extra"), b"only in store", 0o644, 1_500_000_000);
        write(&dst.join("d/kept"), b"store", 0o644, 1_500_000_000);
        let kept = snapshot(&dst);

        let stats = copied(&src, &dst);
        assert_eq!(
            stats,
            CopyStats {
                files: 2,
                ..CopyStats::default()
            }
        );
        let after = snapshot(&dst);
        for entry in &kept {
            // Directory times change when children are added; everything else is identical.
            if entry.0 != Path::new("d") {
                assert!(after.contains(entry), "{:?} changed", entry.0);
            }
        }
        assert_eq!(fs::read(dst.join("missing")).unwrap(), b"image");
        assert_eq!(fs::read(dst.join("d/child")).unwrap(), b"child");
        assert_eq!(after.len(), kept.len() + 2);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn leftover_temporaries_are_removed_and_never_copied() {
        let base = tmpdir("stale");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir_all(dst.join("sub")).unwrap();
        fs::write(src.join("x"), b"new").unwrap();
        fs::write(src.join(".immucore-tmp.y"), b"reserved").unwrap();
        fs::write(dst.join(".immucore-tmp.x"), b"half written").unwrap();
        fs::write(dst.join(".immucore-tmp.gone"), b"from an old image").unwrap();
        fs::write(dst.join("sub/.immucore-tmp.z"), b"").unwrap();
        // A directory an interrupted run was filling, with a tree below it.
        fs::create_dir_all(dst.join(".immucore-tmp.tree/a/b")).unwrap();
        fs::write(dst.join(".immucore-tmp.tree/a/b/f"), b"").unwrap();
        std::os::unix::fs::symlink("/", dst.join(".immucore-tmp.tree/a/up")).unwrap();

        let stats = copied(&src, &dst);
        assert_eq!(stats.files, 1);
        let mut names: Vec<_> = fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["sub", "x"]);
        assert_eq!(fs::read_dir(dst.join("sub")).unwrap().count(), 0);
        assert_eq!(fs::read(dst.join("x")).unwrap(), b"new");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn type_mismatch_keeps_the_store_entry_and_follows_no_symlink() {
        let base = tmpdir("mismatch");
        let (src, dst, outside) = (base.join("src"), base.join("dst"), base.join("outside"));
        fs::create_dir_all(src.join("data")).unwrap();
        fs::create_dir_all(dst.join("conf")).unwrap();
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, src.join("conf")).unwrap();
        fs::write(src.join("data/secret"), b"image").unwrap();
        fs::write(dst.join("conf/user.cfg"), b"mine").unwrap();
        // The store's `data` is a symlink out of it: copying into it would write outside.
        std::os::unix::fs::symlink(&outside, dst.join("data")).unwrap();

        let stats = copied(&src, &dst);
        assert_eq!(stats, CopyStats::default());
        assert!(fs::symlink_metadata(dst.join("conf")).unwrap().is_dir());
        assert_eq!(fs::read(dst.join("conf/user.cfg")).unwrap(), b"mine");
        assert_eq!(fs::read_link(dst.join("data")).unwrap(), outside);
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }

    /// A tree `levels` directories deep, with a file at the bottom.
    fn deep_tree(src: &Path, levels: usize) -> String {
        let rel = vec!["d"; levels].join("/");
        fs::create_dir_all(src.join(&rel)).unwrap();
        fs::write(src.join(&rel).join("leaf"), b"bottom").unwrap();
        rel
    }

    #[test]
    fn deep_trees_are_copied_whole() {
        for levels in [40, 100, MAX_DEPTH as usize] {
            let base = tmpdir(&format!("deep{levels}"));
            let (src, dst) = (base.join("src"), base.join("dst"));
            let rel = deep_tree(&src, levels);
            fs::create_dir(&dst).unwrap();
            let stats = copied(&src, &dst);
            assert_eq!((stats.dirs, stats.files), (levels as u32, 1));
            assert_eq!(fs::read(dst.join(&rel).join("leaf")).unwrap(), b"bottom");
            // An existing tree just as deep is entered to its bottom.
            fs::remove_file(dst.join(&rel).join("leaf")).unwrap();
            assert_eq!(copied(&src, &dst).files, 1);
            fs::remove_dir_all(&base).unwrap();
        }
    }

    #[test]
    fn a_subtree_past_the_depth_limit_is_named_and_the_rest_copied() {
        let base = tmpdir("too-deep");
        let (src, dst) = (base.join("src"), base.join("dst"));
        let rel = deep_tree(&src, MAX_DEPTH as usize + 10);
        fs::write(src.join("beside"), b"x").unwrap();
        fs::create_dir(&dst).unwrap();
        let (r, stats, missed) = run(&src, &dst);
        r.unwrap();
        // The deepest level copied is MAX_DEPTH; the subtree below it is one missed entry,
        // named, without an errno (no "symlink loop").
        let first: String = rel.chars().take(2 * MAX_DEPTH as usize + 1).collect();
        assert_eq!(
            (missed.count, missed.what, missed.errno),
            (1, "depth", None)
        );
        assert!(first.starts_with(missed.first.as_str()), "{missed:?}");
        assert_eq!((stats.dirs, stats.files), (MAX_DEPTH, 1));
        let last = vec!["d"; MAX_DEPTH as usize].join("/");
        assert!(dst.join(&last).is_dir());
        assert!(!dst.join(&last).join("d").exists());
        assert_eq!(fs::read(dst.join("beside")).unwrap(), b"x");
        fs::remove_dir_all(&base).unwrap();
    }

    /// Mounts a tmpfs on `at` for the life of the guard (the tests run as root).
    struct Tmpfs(CString);

    impl Tmpfs {
        fn mount(at: &Path, opts: &CStr) -> Option<Tmpfs> {
            if !rustix::process::geteuid().is_root() {
                std::eprintln!("skipped: mounting a tmpfs needs root");
                return None;
            }
            let target = c(at);
            rustix::mount::mount(
                c"tmpfs",
                target.as_c_str(),
                c"tmpfs",
                rustix::mount::MountFlags::empty(),
                Some(opts),
            )
            .unwrap();
            Some(Tmpfs(target))
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(self.0.as_c_str(), rustix::mount::UnmountFlags::DETACH);
        }
    }

    #[test]
    fn a_full_store_keeps_no_partial_file_and_goes_on() {
        let base = tmpdir("enospc");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("big"), vec![7u8; 1 << 20]).unwrap();
        fs::write(src.join("small"), b"fits").unwrap();
        fs::write(src.join("sub/also"), b"fits too").unwrap();
        let Some(store) = Tmpfs::mount(&dst, c"size=64k") else {
            return;
        };

        let (r, stats, missed) = run(&src, &dst);
        r.unwrap();
        assert_eq!(
            (
                missed.count,
                missed.what,
                missed.errno,
                missed.first.as_str()
            ),
            (1, "write", Some(Errno::NOSPC), "big")
        );
        assert_eq!((stats.files, stats.dirs), (2, 1));
        let mut names: Vec<_> = fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["small", "sub"],
            "neither `big` nor a temporary is left"
        );
        assert_eq!(fs::read(dst.join("sub/also")).unwrap(), b"fits too");
        drop(store);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_copy_never_leaves_the_image_filesystem() {
        let base = tmpdir("xdev");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(src.join("lib/storage")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("lib/own"), b"image").unwrap();
        let Some(volume) = Tmpfs::mount(&src.join("lib/storage"), c"size=1m") else {
            return;
        };
        fs::create_dir(src.join("lib/storage/data")).unwrap();
        fs::write(src.join("lib/storage/data/volume-file"), b"on the volume").unwrap();

        let stats = copied(&src, &dst);
        assert_eq!((stats.files, stats.dirs), (1, 1));
        assert_eq!(fs::read(dst.join("lib/own")).unwrap(), b"image");
        assert!(
            !dst.join("lib/storage").exists(),
            "the mounted volume was copied into the store"
        );
        drop(volume);
        fs::remove_dir_all(&base).unwrap();
    }

    /// The image path is on an overlay (as /etc/ssh is): its files report the lower layer's
    /// filesystem, and are copied all the same.
    #[test]
    fn files_of_an_overlay_are_copied() {
        let base = tmpdir("overlay");
        let (src, dst, rw) = (base.join("src"), base.join("dst"), base.join("rw"));
        for d in ["lower/sub", "rw", "src", "dst"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::write(base.join("lower/sshd_config"), b"Port 22").unwrap();
        fs::write(base.join("lower/sub/f"), b"f").unwrap();
        // The upper layer on a tmpfs, as immucore's overlays have it: the layers are then on
        // different filesystems and the overlay's files report the lower one.
        let Some(upper) = Tmpfs::mount(&rw, c"size=1m") else {
            return;
        };
        let store = Tmpfs::mount(&dst, c"size=1m");
        fs::create_dir_all(rw.join("upper")).unwrap();
        fs::create_dir_all(rw.join("work")).unwrap();
        let opts = format!(
            "lowerdir={0}/lower,upperdir={0}/rw/upper,workdir={0}/rw/work",
            base.display()
        );
        let target = c(&src);
        rustix::mount::mount(
            c"overlay",
            target.as_c_str(),
            c"overlay",
            rustix::mount::MountFlags::empty(),
            Some(CString::new(opts).unwrap().as_c_str()),
        )
        .unwrap();
        let overlay = Tmpfs(target);
        let stats = copied(&src, &dst);
        assert_eq!((stats.files, stats.dirs), (2, 1));
        assert_eq!(fs::read(dst.join("sshd_config")).unwrap(), b"Port 22");
        drop((overlay, store, upper));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn xattrs_as_large_as_the_kernel_allows() {
        let base = tmpdir("xattr");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir(&dst).unwrap();
        // tmpfs keeps user.* xattrs of any size the VFS allows; /tmp may not.
        let Some(image) = Tmpfs::mount(&src, c"size=4m") else {
            return;
        };
        let Some(store) = Tmpfs::mount(&dst, c"size=4m") else {
            return;
        };
        fs::create_dir(src.join("dir")).unwrap();
        fs::write(src.join("dir/file"), b"data").unwrap();
        let big: Vec<u8> = (0..60 << 10).map(|i: u32| (i % 251) as u8).collect();
        let user = rfs::XattrFlags::empty();
        let file = open(&src.join("dir/file"));
        rfs::fsetxattr(&file, c"user.big", &big, user).unwrap();
        // Names filling a list far beyond the old 4 KiB buffer.
        for i in 0..200 {
            let key = CString::new(format!("user.{}{i}", "k".repeat(40))).unwrap();
            rfs::fsetxattr(&file, key.as_c_str(), b"v", user).unwrap();
        }
        rfs::fsetxattr(open(&src.join("dir")), c"user.big", &big[..50 << 10], user).unwrap();
        set_times(&src.join("dir/file"), 1_600_000_000, 1);
        set_times(&src.join("dir"), 1_600_000_000, 2);
        let before = snapshot(&src);

        copied(&src, &dst);
        // Not assert_eq: a failure would print 110 KiB of values.
        let after = snapshot(&dst);
        let sizes = |s: &[Entry]| -> Vec<(PathBuf, usize, usize)> {
            s.iter()
                .map(|e| (e.0.clone(), e.3.len(), e.3.iter().map(|x| x.1.len()).sum()))
                .collect()
        };
        assert!(
            after == before,
            "xattrs differ: {:?} vs {:?} (metadata {:?} vs {:?})",
            sizes(&after),
            sizes(&before),
            after.iter().map(|e| e.1).collect::<Vec<_>>(),
            before.iter().map(|e| e.1).collect::<Vec<_>>()
        );
        drop((store, image));
        fs::remove_dir_all(&base).unwrap();
    }

    /// The image tree of the kill tests: a user's home as Kairos has it.
    fn home_tree(src: &Path) {
        let kairos = src.join("home/kairos");
        fs::create_dir_all(kairos.join("sub")).unwrap();
        write(
            &kairos.join(".bashrc"),
            b"alias ll='ls -l'",
            0o644,
            1_600_000_000,
        );
        write(&kairos.join("sub/f"), b"f", 0o600, 1_600_000_001);
        write(&src.join("motd"), b"hello", 0o644, 1_600_000_002);
        std::os::unix::fs::symlink("motd", src.join("link")).unwrap();
        let user = rfs::XattrFlags::empty();
        rfs::fsetxattr(open(&kairos), c"user.dir", b"home", user).unwrap();
        rfs::fsetxattr(open(&kairos.join(".bashrc")), c"user.f", b"rc", user).unwrap();
        for p in [
            "home/kairos/sub/f",
            "home/kairos/.bashrc",
            "home/kairos/sub",
            "home/kairos",
        ] {
            std::os::unix::fs::lchown(src.join(p), Some(1000), Some(1000)).unwrap();
        }
        fs::set_permissions(kairos.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&kairos, fs::Permissions::from_mode(0o750)).unwrap();
        for (i, p) in ["link", "home/kairos/sub", "home/kairos", "home"]
            .iter()
            .enumerate()
        {
            set_times(&src.join(p), 1_600_000_100 + i as i64, 7);
        }
    }

    /// A kill (no clean-up at all) at each change the copy makes to the store in turn, into an
    /// empty store and into one that has `home` already: after the kill, every entry under a
    /// real name is complete (identical to the image's, owner, mode, xattrs and times
    /// included), and the next run completes the store exactly.
    #[test]
    fn a_kill_at_any_step_leaves_nothing_half_made_and_the_next_run_completes() {
        if !rustix::process::geteuid().is_root() {
            std::eprintln!("skipped: giving files other owners needs root");
            return;
        }
        for home_exists in [false, true] {
            let base = tmpdir(&format!("kill-{home_exists}"));
            let (src, dst) = (base.join("src"), base.join("dst"));
            home_tree(&src);
            // What the store must match; an existing `home` is the user's and keeps its own.
            let pre_existing = |e: &Entry| home_exists && e.0 == Path::new("home");
            let want: Vec<Entry> = snapshot(&src)
                .into_iter()
                .filter(|e| !pre_existing(e))
                .collect();
            let mut kill_at = 1;
            loop {
                let _ = fs::remove_dir_all(&dst);
                fs::create_dir(&dst).unwrap();
                if home_exists {
                    fs::create_dir(dst.join("home")).unwrap();
                }
                KILL_AT.with(|k| k.set(kill_at));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&src, &dst)));
                KILL_AT.with(|k| k.set(0));
                let Err(payload) = r else {
                    // More steps than the copy has: it completed.
                    assert!(
                        kill_at > 20,
                        "only {kill_at} steps: the seam is not in place"
                    );
                    break;
                };
                assert!(payload.is::<Killed>(), "step {kill_at}: a real panic");
                for e in snapshot(&dst) {
                    let temporary = e.0.iter().any(|c| c.as_bytes().starts_with(TMP_PREFIX));
                    assert!(
                        temporary || pre_existing(&e) || want.contains(&e),
                        "killed at step {kill_at} (home existed: {home_exists}): {:?} is half-made: {e:?}",
                        e.0
                    );
                }
                copied(&src, &dst);
                let got: Vec<Entry> = snapshot(&dst)
                    .into_iter()
                    .filter(|e| !pre_existing(e))
                    .collect();
                assert_eq!(
                    got, want,
                    "killed at step {kill_at} (home existed: {home_exists}): the next run did not complete the store"
                );
                kill_at += 1;
            }
            std::eprintln!(
                "home existed: {home_exists}: killed at each of {} steps",
                kill_at - 1
            );
            fs::remove_dir_all(&base).unwrap();
        }
    }

    /// An image file that cannot be read: the failure names the read, not the write
    /// (sendfile fails for either). `/proc/self/mem` opens, but reading its first byte fails.
    #[test]
    fn a_read_error_is_named_read() {
        let base = tmpdir("read-error");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("mem"), b"").unwrap();
        fs::write(src.join("fine"), b"fine").unwrap();
        if !rustix::process::geteuid().is_root() {
            std::eprintln!("skipped: a bind mount needs root");
            return;
        }
        let target = c(&src.join("mem"));
        rustix::mount::mount_bind(c"/proc/self/mem", target.as_c_str()).unwrap();
        let bound = Tmpfs(target);
        let (r, stats, missed) = run(&src, &dst);
        r.unwrap();
        assert_eq!(
            (
                missed.count,
                missed.what,
                missed.errno,
                missed.first.as_str()
            ),
            (1, "read", Some(Errno::IO), "mem")
        );
        assert_eq!(stats.files, 1);
        assert!(!dst.join("mem").exists());
        drop(bound);
        fs::remove_dir_all(&base).unwrap();
    }

    /// An entry that failed and cannot be removed may be half-made: from then on nothing is
    /// renamed into place (what waits is counted as missed), and the next run, with a store
    /// that removes again, starts from clean temporaries.
    #[test]
    fn a_failed_entry_that_cannot_be_removed_stops_the_renames() {
        let base = tmpdir("stuck");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("big"), vec![7u8; 1 << 20]).unwrap();
        fs::write(src.join("small"), b"fits").unwrap();
        let Some(store) = Tmpfs::mount(&dst, c"size=64k") else {
            return;
        };
        REFUSE_REMOVAL.with(|r| r.set(true));
        let (r, _, missed) = run(&src, &dst);
        REFUSE_REMOVAL.with(|r| r.set(false));
        r.unwrap();
        assert_eq!(
            (missed.count, missed.what, missed.first.as_str()),
            (3, "write", "big"),
            "big, then both temporaries"
        );
        let names = |d: &Path| {
            let mut n: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&dst), [".immucore-tmp.big", ".immucore-tmp.small"]);

        let (r, stats, missed) = run(&src, &dst);
        r.unwrap();
        assert_eq!((missed.count, missed.what, stats.files), (1, "write", 1));
        assert_eq!(names(&dst), ["small"]);
        drop(store);
        fs::remove_dir_all(&base).unwrap();
    }
}
