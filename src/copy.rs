//! Persistent-bind copy-up: fills the state directory with what the read-only image has at the
//! same place, like `rsync -aqAX` limited to missing entries. Whatever already exists in the
//! store is user data and is never modified, replaced or deleted; existing directories are only
//! descended into so that their missing children get copied.
//!
//! Safety rules, because the image may be hostile and power may fail at any time:
//! - every entry is opened relative to its parent's fd by one name with `O_NOFOLLOW`, so no
//!   symlink (in the image or in the store) is ever followed;
//! - non-directories are built under `.immucore-tmp.<name>`, completed (data, owner, mode,
//!   xattrs, times, fsync) and only then renamed into place without replacing anything, so a
//!   half-made entry never carries a real name. Leftover temporaries are removed on the next
//!   run, and names with that prefix in the image are reserved and not copied.
//! - depth, buffers and names are bounded; nothing allocates.

use crate::sys::{self, Errno};
use crate::util::fixed::{copy_bytes, packed_name, packed_names, Text};
use core::ffi::CStr;
use core::mem::MaybeUninit;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, Stat, Timestamps};

/// Deepest directory level copied; the image's trees are shallow, a deeper one is an attack or
/// a loop and is reported instead of exhausting the stack.
pub const MAX_DEPTH: u32 = 32;

const TMP_PREFIX: &[u8] = b".immucore-tmp.";

#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct CopyStats {
    /// Regular files and special files (fifos, devices) created.
    pub files: u32,
    pub dirs: u32,
    /// Symlinks created.
    pub links: u32,
}

#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug))]
pub struct CopyError {
    pub errno: Errno,
    /// The operation that failed: "open", "mkdir", "write", "chown", ...
    pub what: &'static str,
}

/// The operation under way, as a small code: a one-byte store before each step, named only
/// when the copy fails.
#[derive(Clone, Copy)]
enum Op {
    Chmod,
    Chown,
    Create,
    Depth,
    Fsync,
    Mkdir,
    Mknod,
    Open,
    Readdir,
    Readlink,
    Rename,
    Stat,
    Symlink,
    Utimes,
    Write,
    Xattr,
}

// The names of the operations back to back, in `Op` order, and where each one ends: a byte
// per name instead of a 16-byte string reference.
packed_names!(
    OP_NAMES,
    OP_ENDS,
    [
        "chmod", "chown", "create", "depth", "fsync", "mkdir", "mknod", "open", "readdir",
        "readlink", "rename", "stat", "symlink", "utimes", "write", "xattr"
    ]
);

impl Op {
    fn name(self) -> &'static str {
        packed_name(OP_NAMES, &OP_ENDS, self as usize)
    }
}

/// Entries of the image that could not be added to the store (the copy goes on past them).
#[derive(Default)]
pub struct Missed {
    pub count: u32,
    pub first: Text<256>,
    pub what: &'static str,
    pub errno: Option<Errno>,
}

/// Interim shim with the signature of the copy that goes on past failing entries: this one
/// stops at the first (replaced by the copy helper's `copy_missing` at merge).
pub fn copy_missing(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    stats: &mut CopyStats,
    missed: &mut Missed,
) -> Result<(), CopyError> {
    let mut at = Text::new();
    if let Err(e) = copy_until_error(src, dst, stats, &mut at) {
        missed.count += 1;
        missed.first = at;
        missed.what = e.what;
        missed.errno = Some(e.errno);
    }
    Ok(())
}

type Result<T, E = Errno> = core::result::Result<T, E>;

/// One copy in progress. `op` is the operation under way, set before each step that can
/// fail: errors travel up as a bare errno (small, in registers) and `op` and `path` name the
/// failure once, at the top.
struct Walk<'a> {
    stats: &'a mut CopyStats,
    /// The entry being copied, relative to the top directory; only shortened again on success.
    path: &'a mut Text<256>,
    op: Op,
}

/// Copies every entry of directory `src` that is missing in directory `dst`. Both must be
/// directories freshly opened for reading (each is listed once, from its start). Stops at the
/// first error, leaving in `path` where it failed (relative to `src`, cut if longer); what was
/// completed before it stays (every entry is whole or absent).
///
/// Files are fsync'd before their rename; the caller makes the renames durable with one sync
/// after all its copies (one journal commit instead of one per directory).
pub fn copy_until_error(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    stats: &mut CopyStats,
    path: &mut Text<256>,
) -> Result<(), CopyError> {
    path.clear();
    let mut w = Walk {
        stats,
        path,
        op: Op::Readdir,
    };
    copy_dir(&mut w, src, dst, 0).map_err(|errno| CopyError {
        errno,
        what: w.op.name(),
    })
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

fn copy_dir(w: &mut Walk, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, depth: u32) -> Result<()> {
    remove_stale(dst);
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut it = rfs::RawDir::new(src, &mut buf);
    while let Some(ent) = it.next() {
        w.op = Op::Readdir;
        let ent = ent?;
        let name = ent.file_name();
        let nb = name.to_bytes();
        if nb == b"." || nb == b".." || nb.starts_with(TMP_PREFIX) {
            continue;
        }
        let mark = w.path.len();
        if mark > 0 {
            w.path.push_lossy(b"/");
        }
        w.path.push_lossy(nb);
        copy_entry(w, src, dst, name, depth)?;
        w.path.truncate(mark);
    }
    Ok(())
}

/// Removes temporaries an interrupted earlier run left in `dst` (read through `dst` itself: it
/// is a fresh fd that is never read as a directory otherwise).
fn remove_stale(dst: BorrowedFd<'_>) {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut it = rfs::RawDir::new(dst, &mut buf);
    while let Some(Ok(ent)) = it.next() {
        if ent.file_name().to_bytes().starts_with(TMP_PREFIX) {
            unlink(dst, ent.file_name());
        }
    }
}

// Out of line: its stat, temporary name and file descriptors stay out of the frame of the
// directory loop.
#[inline(never)]
fn copy_entry(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    depth: u32,
) -> Result<()> {
    let st = lstat(w, src, name);
    let st = ok_ref(&st)?;
    let ft = file_type(st);
    let is_dir = ft == FileType::Directory;
    if is_dir && depth >= MAX_DEPTH {
        w.op = Op::Depth;
        return Err(Errno::LOOP);
    }
    // Same name on both sides: only a directory pair is entered; anything else in the store
    // (newer, older, other type) is kept as it is.
    let exists = match ok_ref(&lstat(w, dst, name)).map(file_type) {
        Ok(FileType::Directory) if is_dir => true,
        Ok(_) => return Ok(()),
        Err(Errno::NOENT) => false,
        Err(e) => return Err(e),
    };
    if is_dir {
        // A new directory is created under its final name; the next run descends into a
        // partial one and adds its missing children. (Its owner, mode and xattrs come right
        // after the mkdir: a power cut in between leaves root's 0700, which no later run
        // repairs.)
        if !exists {
            w.op = Op::Mkdir;
            rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
        }
        let (s_dir, d_dir) = (open_dir(w, src, name)?, open_dir(w, dst, name)?);
        // Borrowed once: each `as_fd` is a call.
        let (s, d) = (s_dir.as_fd(), d_dir.as_fd());
        if !exists {
            owner_mode_xattrs(w, s, d, st)?;
        }
        copy_dir(w, s, d, depth + 1)?;
        if !exists {
            // Times last: creating the children changed them.
            set_times(w, dst, name, st)?;
            bump(&mut w.stats.dirs);
        }
        return Ok(());
    }
    let mut tbuf = [0u8; 256];
    let tmp = tmp_name(name.to_bytes(), &mut tbuf);
    let made = match ft {
        FileType::RegularFile => new_file(w, src, dst, name, tmp, st),
        FileType::Symlink | FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
            new_special(w, src, dst, name, tmp, ft, st)
        }
        // Sockets belong to a running service and mean nothing in a copy.
        _ => return Ok(()),
    };
    match made.and_then(|()| publish(w, dst, tmp, name)) {
        Ok(true) => {
            let stats = &mut *w.stats;
            bump(if ft == FileType::Symlink {
                &mut stats.links
            } else {
                &mut stats.files
            });
        }
        // Not placed (`Ok(false)`: `name` appeared meanwhile and is kept as it is) or failed.
        r => {
            unlink(dst, tmp);
            r?;
        }
    }
    Ok(())
}

/// `.immucore-tmp.<name>`, the name cut so the whole stays within NAME_MAX. Two long names
/// sharing a cut prefix are harmless: entries are built one after the other, and a temporary
/// never outlives its entry (renamed, or removed on failure; `remove_stale` clears those an
/// interrupted run left), so each is made fresh (`O_EXCL`).
fn tmp_name<'a>(name: &[u8], buf: &'a mut [u8; 256]) -> &'a CStr {
    copy_bytes(buf, TMP_PREFIX);
    // At most 255 - 14 bytes of the name: the zeroed buffer keeps a NUL at its end.
    if let Some(rest) = buf.get_mut(TMP_PREFIX.len()..255) {
        copy_bytes(rest, name);
    }
    sys::c_str_until_nul(buf).unwrap_or(c".immucore-tmp.")
}

/// Removes `name` (a temporary) from `dir`, if it is there.
#[inline(never)]
fn unlink(dir: BorrowedFd<'_>, name: &CStr) {
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
}

fn new_file(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    tmp: &CStr,
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
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let d_file = rfs::openat(dst, tmp, flags, Mode::from_raw_mode(0o600))?;
    let d = d_file.as_fd();
    copy_data(w, s, d)?;
    // Data first (writing clears setuid and capabilities), then owner (chown clears setuid
    // too), mode, xattrs (security.capability survives from here on), times.
    owner_mode_xattrs(w, s, d, st)?;
    set_times(w, dst, tmp, st)?;
    // Per file and before the rename. One sync before the bind mount would also have all
    // data on disk before anything is bound, but not before the renames: with delayed
    // allocation (ext4) a rename can reach the journal before the data, so after a power cut
    // the real name could hold an empty or partial file, which the next run keeps as user data.
    w.op = Op::Fsync;
    rfs::fsync(d)
}

/// Copies the data with `sendfile`: a splice from the page cache inside the kernel, which every
/// filesystem an image or a store lives on supports, so no read/write fallback is needed.
/// `copy_file_range` would only do better by cloning extents, which needs both sides on one
/// filesystem that can (btrfs, xfs); the image and the store are different filesystems.
fn copy_data(w: &mut Walk, s: BorrowedFd<'_>, d: BorrowedFd<'_>) -> Result<()> {
    w.op = Op::Write;
    loop {
        match rfs::sendfile(d, s, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Symlinks, fifos and device nodes, made at `tmp` and given the owner, mode (symlinks have
/// none) and times of `name` (xattrs are not copied: getting a node's would mean opening it).
#[inline(never)] // keeps its buffer out of the recursive frames
fn new_special(
    w: &mut Walk,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    tmp: &CStr,
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
        rfs::symlinkat(target, dst, tmp)?;
    } else {
        w.op = Op::Mknod;
        // Fifos and device nodes only: one constant per arm instead of rustix's conversion of
        // any type to mode bits.
        let node = match ft {
            FileType::Fifo => FileType::Fifo,
            FileType::CharacterDevice => FileType::CharacterDevice,
            _ => FileType::BlockDevice,
        };
        rfs::mknodat(dst, tmp, node, Mode::from_raw_mode(0o600), st.st_rdev as _)?;
    }
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    w.op = Op::Chown;
    rfs::chownat(dst, tmp, Some(uid(st)), Some(gid(st)), nofollow)?;
    if ft != FileType::Symlink {
        // fchmodat cannot refuse symlinks, but `tmp` is the node just made in the store.
        w.op = Op::Chmod;
        rfs::chmodat(dst, tmp, mode(st), AtFlags::empty())?;
    }
    set_times(w, dst, tmp, st)
}

/// Renames `tmp` to `name` unless `name` exists; `Ok(false)` when it does (left as it is).
fn publish(w: &mut Walk, dst: BorrowedFd<'_>, tmp: &CStr, name: &CStr) -> Result<bool> {
    w.op = Op::Rename;
    match rfs::renameat_with(dst, tmp, dst, name, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        // Filesystems without RENAME_NOREPLACE: look again right before the plain rename, which
        // would replace (nothing else writes the store now).
        Err(Errno::INVAL | Errno::NOSYS) => match lstat(w, dst, name) {
            Ok(_) => Ok(false),
            Err(Errno::NOENT) => {
                w.op = Op::Rename;
                rfs::renameat(dst, tmp, dst, name).map(|()| true)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Owner and mode first (chown clears setuid), then the extended attributes.
fn owner_mode_xattrs(w: &mut Walk, s: BorrowedFd<'_>, d: BorrowedFd<'_>, st: &Stat) -> Result<()> {
    w.op = Op::Chown;
    rfs::fchown(d, Some(uid(st)), Some(gid(st)))?;
    w.op = Op::Chmod;
    rfs::fchmod(d, mode(st))?;
    w.op = Op::Xattr;
    copy_xattrs(s, d)
}

/// The times in `st` for `name` in `dir` (an entry this copy made), not following a symlink.
fn set_times(w: &mut Walk, dir: BorrowedFd<'_>, name: &CStr, st: &Stat) -> Result<()> {
    w.op = Op::Utimes;
    rfs::utimensat(dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)
}

/// Copies all extended attributes; a side without xattr support means there is nothing to copy
/// or nowhere to put it, which is not an error.
#[inline(never)] // keeps its buffer out of the recursive frames
fn copy_xattrs(s: BorrowedFd<'_>, d: BorrowedFd<'_>) -> Result<()> {
    // Uninitialized buffers: the syscalls fill them and hand back the filled part.
    let mut list = [MaybeUninit::<u8>::uninit(); 4096];
    let mut rest: &[u8] = match rfs::flistxattr(s, &mut list) {
        Ok((names, _)) => names,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut val = [MaybeUninit::<u8>::uninit(); 8192];
    while let Some(key) = sys::c_str_until_nul(rest) {
        rest = rest.get(key.to_bytes().len() + 1..).unwrap_or(&[]);
        if key.is_empty() {
            continue;
        }
        let value = match rfs::fgetxattr(s, key, &mut val) {
            Ok((value, _)) => value,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e),
        };
        match rfs::fsetxattr(d, key, value, rfs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
    use std::vec::Vec;
    use std::{format, vec};

    #[test]
    fn op_names() {
        let all = [
            (Op::Chmod, "chmod"),
            (Op::Chown, "chown"),
            (Op::Create, "create"),
            (Op::Depth, "depth"),
            (Op::Fsync, "fsync"),
            (Op::Mkdir, "mkdir"),
            (Op::Mknod, "mknod"),
            (Op::Open, "open"),
            (Op::Readdir, "readdir"),
            (Op::Readlink, "readlink"),
            (Op::Rename, "rename"),
            (Op::Stat, "stat"),
            (Op::Symlink, "symlink"),
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

    /// A failure with the path it happened at.
    #[derive(Debug)]
    struct Failed {
        errno: Errno,
        what: &'static str,
        path: Text<256>,
    }

    fn run(src: &Path, dst: &Path) -> (Result<(), Failed>, CopyStats) {
        let (s, d) = (open(src), open(dst));
        let mut stats = CopyStats::default();
        let mut path = Text::new();
        let r = copy_until_error(s.as_fd(), d.as_fd(), &mut stats, &mut path);
        let r = r.map_err(|e| Failed {
            errno: e.errno,
            what: e.what,
            path,
        });
        (r, stats)
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
                    let mut list = [0u8; 4096];
                    let n = rfs::llistxattr(c(&p).as_c_str(), &mut list[..]).unwrap();
                    for k in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
                        let mut v = [0u8; 4096];
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

        let (r, stats) = run(&src, &dst);
        r.unwrap();
        assert_eq!(snapshot(&dst), before);
        assert_eq!(snapshot(&src), before, "the source is left as it was");
        let want = CopyStats {
            files: 7,
            dirs: 4,
            links: 2,
        };
        assert_eq!(stats, want);

        // A second run finds everything present and changes nothing.
        let (r, stats) = run(&src, &dst);
        r.unwrap();
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

        let (r, stats) = run(&src, &dst);
        r.unwrap();
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

        let (r, stats) = run(&src, &dst);
        r.unwrap();
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

        let (r, stats) = run(&src, &dst);
        r.unwrap();
        assert_eq!(stats, CopyStats::default());
        assert!(fs::symlink_metadata(dst.join("conf")).unwrap().is_dir());
        assert_eq!(fs::read(dst.join("conf/user.cfg")).unwrap(), b"mine");
        assert_eq!(fs::read_link(dst.join("data")).unwrap(), outside);
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn too_deep_trees_are_refused_with_the_path() {
        let base = tmpdir("deep");
        let (src, dst) = (base.join("src"), base.join("dst"));
        let rel = vec!["d"; MAX_DEPTH as usize + 1].join("/");
        fs::create_dir_all(src.join(&rel)).unwrap();
        fs::create_dir(&dst).unwrap();
        let e = run(&src, &dst).0.unwrap_err();
        assert_eq!(
            (e.errno, e.what, e.path.as_str()),
            (Errno::LOOP, "depth", rel.as_str())
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_full_store_keeps_no_partial_file() {
        if !rustix::process::geteuid().is_root() {
            std::eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let base = tmpdir("enospc");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("big"), vec![7u8; 1 << 20]).unwrap();
        let target = c(&dst);
        rustix::mount::mount(
            c"tmpfs",
            target.as_c_str(),
            c"tmpfs",
            rustix::mount::MountFlags::empty(),
            Some(c"size=64k"),
        )
        .unwrap();
        struct Unmount(CString);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ =
                    rustix::mount::unmount(self.0.as_c_str(), rustix::mount::UnmountFlags::DETACH);
            }
        }
        let guard = Unmount(target);

        let (r, _) = run(&src, &dst);
        let e = r.unwrap_err();
        assert_eq!(
            (e.errno, e.what, e.path.as_str()),
            (Errno::NOSPC, "write", "big")
        );
        assert_eq!(
            fs::read_dir(&dst).unwrap().count(),
            0,
            "neither `big` nor its temporary is left"
        );
        drop(guard);
        fs::remove_dir_all(&base).unwrap();
    }
}
