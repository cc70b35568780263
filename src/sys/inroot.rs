//! Path resolution confined to the sysroot. Every mkdir, mount target and copy inside the new
//! root goes through `openat2(RESOLVE_IN_ROOT)`: a symlink in the image, absolute or relative,
//! resolves as if the sysroot were `/`, so it can never lead outside it.

use super::{CBuf, Errno, Result};
use crate::util::fixed::Text;
use crate::util::words::split;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// An open directory that acts as `/` for the paths resolved through it.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    pub fn open(path: &[u8]) -> Result<Root> {
        Ok(Root {
            fd: super::open(path, OFlags::PATH | OFlags::DIRECTORY, 0)?,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` (absolute, interpreted inside the root) with `flags`.
    pub fn open_at(&self, path: &[u8], flags: OFlags, mode: u32) -> Result<OwnedFd> {
        let rel = strip_slashes(path);
        let rel = if rel.is_empty() { &b"."[..] } else { rel };
        rustix::fs::openat2(
            &self.fd,
            CBuf::new().c_str(rel)?,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            RESOLVE,
        )
    }

    /// Opens the existing directory `path` for reading, in one lookup, if no component of it
    /// is a symlink (`ELOOP` if one is).
    pub fn open_dir_literal(&self, path: &[u8]) -> Result<OwnedFd> {
        let rel = strip_slashes(path);
        let rel = if rel.is_empty() { &b"."[..] } else { rel };
        rustix::fs::openat2(
            &self.fd,
            CBuf::new().c_str(rel)?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE.union(ResolveFlags::NO_SYMLINKS),
        )
    }

    /// Opens an existing directory inside the root as an `O_PATH` handle.
    pub fn dir(&self, path: &[u8]) -> Result<OwnedFd> {
        self.open_at(path, OFlags::PATH | OFlags::DIRECTORY, 0)
    }

    /// `mkdir -p` inside the root; returns the final directory. A component that exists but
    /// is not a directory (or a symlink whose target is missing) is an error, never followed
    /// out of the root.
    pub fn mkdir_p(&self, path: &[u8], mode: u32) -> Result<OwnedFd> {
        let rel = strip_slashes(path);
        // The deepest directory that exists, looked for from the path up: usually the path
        // itself or its parent, so one or two lookups rather than one per component.
        let mut end = rel.len();
        let mut parent = loop {
            let prefix = rel.get(..end).unwrap_or(rel);
            match self.dir(prefix) {
                Err(Errno::NOENT) if end > 0 => {
                    end = prefix.iter().rposition(|&c| c == b'/').unwrap_or(0);
                }
                found => break found?,
            }
        };
        // Then each missing component, made in its parent and looked up again from the root.
        for comp in split(rel.get(end..).unwrap_or(&[]), b'/') {
            end += comp.len() + 1;
            if comp.is_empty() || comp == b"." {
                continue;
            }
            let mut c = CBuf::new();
            let made = rustix::fs::mkdirat(&parent, c.c_str(comp)?, Mode::from_raw_mode(mode));
            // EEXIST: the lookup found nothing there, so a dangling symlink: refuse rather than
            // guess.
            made.map_err(|e| if e == Errno::EXIST { Errno::LOOP } else { e })?;
            parent = self.dir(rel.get(..end - 1).unwrap_or(rel))?;
        }
        Ok(parent)
    }
}

fn strip_slashes(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|&c| c != b'/').unwrap_or(path.len());
    path.get(start..).unwrap_or(&[])
}

/// `/proc/self/fd/N`: a path the kernel resolves to exactly the object behind `fd`, used as a
/// mount target so the mount lands on what `openat2` resolved, not on a re-resolved path.
pub fn fd_path(fd: BorrowedFd<'_>) -> Text<32> {
    let mut t = Text::new();
    let _ = t
        .push(b"/proc/self/fd/")
        .and_then(|_| t.push_num(fd.as_raw_fd() as u64));
    t
}

/// The absolute path of the object behind `fd`, as the kernel names it.
pub fn real_path(fd: BorrowedFd<'_>, out: &mut Text<512>) -> Result<()> {
    super::readlink(fd_path(fd).as_bytes(), out)
}
