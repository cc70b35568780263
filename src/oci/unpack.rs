//! Applies layers (tar streams) to a tree, as the OCI spec's "Applying Changesets" says:
//! `.wh.<name>` removes what lower layers made, `.wh..wh..opq` empties a directory of lower
//! content, a directory over a directory keeps it with the new attributes, anything else
//! replaces what was there; hardlinks may point into lower layers; owners, modes, times and
//! extended attributes are kept.
//!
//! Every path goes through the target's `Root` (`openat2(RESOLVE_IN_ROOT)`): a `..`, an
//! absolute path or a symlink pointing out resolves inside the tree, so a layer cannot write
//! outside it. The last component is always handled with the `*at` calls and no-follow flags.
//!
//! Which entries of a directory came from lower layers (for an opaque whiteout) is told by
//! their inode numbers: the target is a tmpfs, which numbers new inodes in increasing order,
//! so whatever has an inode number below the first one made by the current layer is lower.
//! (A directory of the layer that existed below keeps its inode: producers write the opaque
//! marker right after the directory's own entry, before its children, as the spec asks.)

use super::tar::{Entry, Input, Kind, Reader, TarError};
use super::Error;
use crate::log;
use crate::sys::inroot::Root;
use crate::sys::{CBuf, Errno};
use crate::util::fixed::Text;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

/// Bytes copied per write.
const CHUNK: usize = 64 * 1024;
/// Deepest directory tree removed (a whiteout over a lower directory).
const MAX_REMOVE_DEPTH: u32 = 256;
/// A progress line every this many bytes of content.
const PROGRESS_EVERY: u64 = 64 << 20;
const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What the unpacking did so far.
#[derive(Default, Clone, Copy)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
}

/// The tree the layers go into.
pub struct Target {
    root: Root,
    pub stats: Stats,
    next_progress: u64,
    /// Which layer, of how many, is being applied (for the progress lines).
    pub layer: (usize, usize),
}

fn fs_error(what: &[u8], path: &[u8], e: Errno) -> Error {
    let error = Error::new(b"{} {}", &[what, path]);
    error.with_errno(e)
}

impl Target {
    /// The tree at `path`, which must be a tmpfs (see the module comment).
    pub fn open(path: &[u8]) -> Result<Target, Error> {
        let root = Root::open(path).map_err(|e| fs_error(b"cannot open", path, e))?;
        let magic =
            crate::sys::fs_magic(root.fd()).map_err(|e| fs_error(b"cannot statfs", path, e))?;
        if magic != crate::sys::TMPFS_MAGIC {
            return Err(Error::new(
                b"{} is not a tmpfs (layers are applied into one)",
                &[path],
            ));
        }
        Ok(Target {
            root,
            stats: Stats::default(),
            next_progress: PROGRESS_EVERY,
            layer: (1, 1),
        })
    }

    /// The inode number the next new file will get (the tmpfs counter, read by making and
    /// removing a file at the top of the tree).
    fn next_inode(&self) -> Result<u64, Error> {
        let name = c".immucore-layer-start";
        let dir = self
            .root
            .dir(b"/")
            .map_err(|e| fs_error(b"cannot open", b"/", e))?;
        let _ = rustix::fs::unlinkat(&dir, name, AtFlags::empty());
        let made = rustix::fs::openat(
            &dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = made.map_err(|e| fs_error(b"cannot create a file in", b"the target", e))?;
        let ino = rustix::fs::fstat(&fd).map(|s| s.st_ino);
        let _ = rustix::fs::unlinkat(&dir, name, AtFlags::empty());
        ino.map_err(|e| fs_error(b"cannot stat a file in", b"the target", e))
    }

    /// Applies one layer's tar stream.
    pub fn apply<I: Input>(&mut self, input: I) -> Result<(), Error> {
        let first_new_inode = self.next_inode()?;
        let mut reader = Reader::new(input);
        let mut entry = Entry::new();
        loop {
            let more = reader.next(&mut entry).map_err(tar_error)?;
            if !more {
                return Ok(());
            }
            self.apply_entry(&mut reader, &entry, first_new_inode)
                .map_err(|e| e.within(b"entry {}: ", &[entry.path.as_bytes()]))?;
            self.stats.entries += 1;
        }
    }

    fn apply_entry<I: Input>(
        &mut self,
        reader: &mut Reader<I>,
        entry: &Entry,
        first_new_inode: u64,
    ) -> Result<(), Error> {
        let mut path: Text<{ super::tar::MAX_PATH }> = Text::new();
        normalize(entry.path.as_bytes(), &mut path);
        let (parent, name) = crate::sys::split_parent(path.as_bytes());
        if name.is_empty() {
            // The root itself (`./`): only its attributes.
            if entry.kind == Kind::Directory {
                let dir = self
                    .root
                    .dir(b"/")
                    .map_err(|e| fs_error(b"cannot open", b"/", e))?;
                return set_attributes(dir.as_fd(), c".", entry, true);
            }
            return Err(Error::new(
                b"an entry that is not a directory names the root",
                &[],
            ));
        }
        let dir = match self.root.dir(parent) {
            Err(Errno::NOENT) => self.root.mkdir_p(parent, 0o755),
            r => r,
        }
        .map_err(|e| fs_error(b"cannot make the directory", parent, e))?;
        let mut c = CBuf::new();
        if name == OPAQUE {
            return remove_children(dir.as_fd(), first_new_inode, 0);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() {
                return Err(Error::new(b"a whiteout without a name", &[]));
            }
            let hidden = c
                .c_str(hidden)
                .map_err(|e| fs_error(b"bad whiteout", name, e))?;
            return remove_tree(dir.as_fd(), hidden, 0);
        }
        let cname = c.c_str(name).map_err(|e| fs_error(b"bad name", name, e))?;
        let existing = rustix::fs::statat(&dir, cname, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_dir =
            existing.is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if entry.kind == Kind::Directory && existing_dir {
            return set_attributes(dir.as_fd(), cname, entry, false);
        }
        if existing.is_some() {
            remove_tree(dir.as_fd(), cname, 0)?;
        }
        let mode = Mode::from_raw_mode(entry.mode);
        let made = match entry.kind {
            Kind::Directory => rustix::fs::mkdirat(&dir, cname, Mode::from_raw_mode(0o700)),
            Kind::File => {
                let flags = OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::WRONLY
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(&dir, cname, flags, Mode::from_raw_mode(0o600))
                    .map_err(|e| fs_error(b"cannot create", path.as_bytes(), e))?;
                self.copy_content(reader, &fd)?;
                Ok(())
            }
            Kind::Symlink => {
                let mut t = CBuf::new();
                let target = t
                    .c_str(entry.link.as_bytes())
                    .map_err(|e| fs_error(b"bad link target", entry.link.as_bytes(), e))?;
                rustix::fs::symlinkat(target, &dir, cname)
            }
            Kind::HardLink => {
                let mut target: Text<{ super::tar::MAX_PATH }> = Text::new();
                normalize(entry.link.as_bytes(), &mut target);
                let flags = OFlags::PATH | OFlags::NOFOLLOW;
                let source = self
                    .root
                    .open_at(target.as_bytes(), flags, 0)
                    .map_err(|e| fs_error(b"hardlink target missing:", target.as_bytes(), e))?;
                // A hardlink has the attributes of its target: nothing more to set.
                return rustix::fs::linkat(&source, c"", &dir, cname, AtFlags::EMPTY_PATH)
                    .map_err(|e| fs_error(b"cannot hardlink to", target.as_bytes(), e));
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let kind = match entry.kind {
                    Kind::CharDevice => FileType::CharacterDevice,
                    Kind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(entry.dev_major, entry.dev_minor);
                rustix::fs::mknodat(&dir, cname, kind, mode, dev)
            }
        };
        made.map_err(|e| fs_error(b"cannot create", path.as_bytes(), e))?;
        set_attributes(dir.as_fd(), cname, entry, false)
    }

    fn copy_content<I: Input>(
        &mut self,
        reader: &mut Reader<I>,
        fd: &OwnedFd,
    ) -> Result<(), Error> {
        let mut buf = [0u8; CHUNK];
        loop {
            let n = reader.read_data(&mut buf).map_err(tar_error)?;
            if n == 0 {
                return Ok(());
            }
            let data = buf.get(..n).unwrap_or(&[]);
            crate::sys::write_all(fd.as_fd(), data).map_err(|e| {
                if e == Errno::NOSPC {
                    Error::new(
                        b"the target is full (bootc.live.size= makes it larger)",
                        &[],
                    )
                } else {
                    fs_error(b"cannot write", b"", e)
                }
            })?;
            self.stats.bytes += n as u64;
            if self.stats.bytes >= self.next_progress {
                self.next_progress += PROGRESS_EVERY;
                log::info(
                    b"layer {} of {}: {} MiB unpacked",
                    &[
                        log::num(self.layer.0 as u64).as_bytes(),
                        log::num(self.layer.1 as u64).as_bytes(),
                        log::num(self.stats.bytes >> 20).as_bytes(),
                    ],
                );
            }
        }
    }
}

fn tar_error(e: TarError) -> Error {
    Error::new(
        b"{} at byte {} of the layer",
        &[e.message.as_bytes(), log::num(e.offset).as_bytes()],
    )
}

/// `path` with `.` and empty components dropped and `..` applied lexically, never above the
/// top: the path as it lies inside the tree, without its leading `/`.
pub fn normalize(path: &[u8], out: &mut Text<{ super::tar::MAX_PATH }>) {
    out.clear();
    for comp in path.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let cut = out.as_bytes().iter().rposition(|&c| c == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                if !out.is_empty() {
                    out.push_lossy(b"/");
                }
                out.push_lossy(comp);
            }
        }
    }
}

/// Owner, mode, extended attributes and times of `name` in `dir`, in that order (a chown
/// clears the set-id bits, so the mode comes after it).
fn set_attributes(
    dir: BorrowedFd<'_>,
    name: &core::ffi::CStr,
    entry: &Entry,
    is_root: bool,
) -> Result<(), Error> {
    let at = |what: &[u8], e| fs_error(what, entry.path.as_bytes(), e);
    let flags = if is_root {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let uid = rustix::fs::Uid::from_raw(entry.uid);
    let gid = rustix::fs::Gid::from_raw(entry.gid);
    rustix::fs::chownat(dir, name, Some(uid), Some(gid), flags)
        .map_err(|e| at(b"cannot chown", e))?;
    if entry.kind != Kind::Symlink {
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(entry.mode), AtFlags::empty())
            .map_err(|e| at(b"cannot chmod", e))?;
    }
    if entry.xattrs().next().is_some() {
        // The object itself, through the directory already resolved: `/proc/self/fd/N/name`.
        let mut path: Text<1024> = Text::new();
        path.push_lossy(crate::sys::inroot::fd_path(dir).as_bytes());
        path.push_lossy(b"/");
        path.push_lossy(name.to_bytes());
        let mut p = CBuf::new();
        let p = p
            .c_str(path.as_bytes())
            .map_err(|e| at(b"path too long", e))?;
        for (key, value) in entry.xattrs() {
            let mut k = CBuf::new();
            let k = k.c_str(key).map_err(|e| at(b"bad xattr name", e))?;
            rustix::fs::lsetxattr(p, k, value, rustix::fs::XattrFlags::empty()).map_err(|e| {
                let error = Error::new(b"cannot set xattr {} on {}", &[key, entry.path.as_bytes()]);
                error.with_errno(e)
            })?;
        }
    }
    let time = Timespec {
        tv_sec: entry.mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(dir, name, &times, flags).map_err(|e| at(b"cannot set the times of", e))
}

/// Removes `name` in `dir`, a whole tree if it is a directory; nothing there is fine.
fn remove_tree(dir: BorrowedFd<'_>, name: &core::ffi::CStr, depth: u32) -> Result<(), Error> {
    let what = name.to_bytes();
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(fs_error(b"cannot stat", what, e)),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        if depth >= MAX_REMOVE_DEPTH {
            return Err(Error::new(
                b"a directory tree deeper than 256 levels at {}",
                &[what],
            ));
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let sub = rustix::fs::openat(dir, name, flags, Mode::empty())
            .map_err(|e| fs_error(b"cannot open", what, e))?;
        remove_children(sub.as_fd(), u64::MAX, depth + 1)?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
            .map_err(|e| fs_error(b"cannot remove", what, e))
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())
            .map_err(|e| fs_error(b"cannot remove", what, e))
    }
}

/// Removes every entry of `dir` whose inode number is below `below` (all of them for
/// `u64::MAX`). Reads the directory again until a pass removes nothing, so removing while
/// reading never skips an entry.
fn remove_children(dir: BorrowedFd<'_>, below: u64, depth: u32) -> Result<(), Error> {
    loop {
        let mut removed = false;
        let fd = rustix::fs::openat(
            dir,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fs_error(b"cannot open", b"a directory", e))?;
        let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 2048];
        let mut it = rustix::fs::RawDir::new(fd.as_fd(), &mut buf);
        while let Some(item) = it.next() {
            let item = item.map_err(|e| fs_error(b"cannot read", b"a directory", e))?;
            let name = item.file_name();
            if matches!(name.to_bytes(), b"." | b"..") || item.ino() >= below {
                continue;
            }
            remove_tree(dir, name, depth)?;
            removed = true;
        }
        if !removed {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_paths_inside() {
        let mut out = Text::new();
        for (path, want) in [
            (&b"./usr/bin/sh"[..], &b"usr/bin/sh"[..]),
            (b"/etc//passwd", b"etc/passwd"),
            (b"../../etc/shadow", b"etc/shadow"),
            (b"a/b/../../../c", b"c"),
            (b"./", b""),
            (b"a/./b/", b"a/b"),
        ] {
            normalize(path, &mut out);
            assert_eq!(out.as_bytes(), want, "{:?}", core::str::from_utf8(path));
        }
    }
}
