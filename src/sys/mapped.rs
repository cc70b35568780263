//! A whole file mapped read-only into memory (the OCI archive): its members are then plain
//! slices, read where they lie, and the kernel pages them in and out as needed.

use super::Result;
use rustix::fd::AsFd;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// A read-only private mapping of a file, unmapped when dropped.
pub struct Mapped {
    ptr: *mut core::ffi::c_void,
    len: usize,
}

impl Mapped {
    /// Maps the file behind `fd` whole. An empty file maps to an empty slice.
    pub fn new(fd: impl AsFd) -> Result<Mapped> {
        let size = rustix::fs::fstat(&fd)?.st_size;
        let len = usize::try_from(size).map_err(|_| super::Errno::FBIG)?;
        if len == 0 {
            return Ok(Mapped {
                ptr: core::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh mapping (no address hint) aliases no Rust object; it is read-only
        // and private, so the slice handed out is never written through.
        let ptr = unsafe {
            mmap(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::PRIVATE,
                fd,
                0,
            )?
        };
        Ok(Mapped { ptr, len })
    }

    /// The file's bytes. A file truncated by someone else while mapped makes the kernel kill
    /// the reader (SIGBUS); the archive is only ever in a filesystem this program owns.
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `new`, unmapped once; no slice outlives `self`.
            let _ = unsafe { munmap(self.ptr, self.len) };
        }
    }
}

/// Anonymous memory of a size known only at run time (a zstd layer's window, up to 128 MiB):
/// the kernel gives pages as they are touched, and takes them all back when dropped.
#[cfg(feature = "zstd")]
pub struct Anonymous {
    ptr: *mut core::ffi::c_void,
    len: usize,
}

#[cfg(feature = "zstd")]
impl Anonymous {
    pub fn new(len: usize) -> Result<Anonymous> {
        let len = len.max(1);
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )?
        };
        Ok(Anonymous { ptr, len })
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` writable bytes for as long as `self` lives, and `&mut self`
        // makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }
}

#[cfg(feature = "zstd")]
impl Drop for Anonymous {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no slice outlives `self`.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}
