//! Loop devices over image files: `LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE` (Linux ≥ 5.8), with the
//! `LOOP_SET_FD` + `LOOP_SET_STATUS64` fallback of util-linux for older kernels.

use super::{open, sleep_ms, Errno, Result};
use crate::util::fixed::Text;
use linux_raw_sys::loop_device::{
    loop_config, loop_info64, LO_FLAGS_AUTOCLEAR, LO_FLAGS_READ_ONLY,
};
use linux_raw_sys::loop_device::{
    LOOP_CLR_FD, LOOP_CONFIGURE, LOOP_CTL_GET_FREE, LOOP_GET_STATUS64, LOOP_SET_FD,
    LOOP_SET_STATUS64,
};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::OFlags;
use rustix::ioctl::{ioctl, Ioctl, IoctlOutput, Opcode};

/// An ioctl (opcode, argument) whose integer return value is the result (LOOP_CTL_GET_FREE
/// returns the index). The opcode is a value, not a const parameter, so there is one copy of
/// the call for all loop ioctls.
struct ReturnsInt(Opcode, usize);

// SAFETY: each use passes an opcode whose argument is the integer or pointer in `.1`.
unsafe impl Ioctl for ReturnsInt {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;
    fn opcode(&self) -> Opcode {
        self.0
    }
    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        self.1 as *mut core::ffi::c_void
    }
    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut core::ffi::c_void,
    ) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

#[inline(never)]
pub(super) fn call(fd: BorrowedFd<'_>, op: Opcode, arg: usize) -> Result<IoctlOutput> {
    // SAFETY: the loop ioctls used here take an integer or a pointer to a struct that lives for
    // the duration of the call.
    unsafe { ioctl(fd, ReturnsInt(op, arg)) }
}

/// An attached loop device: the open device (keep it until the mount holds its own reference,
/// or autoclear would detach it) and its `/dev/loopN` path.
pub struct Loop {
    pub fd: OwnedFd,
    pub path: Text<32>,
}

/// Attaches `image` (an open file) to a free loop device. `read_only` also asks for autoclear,
/// so the device goes away with its last user.
pub fn attach(image: BorrowedFd<'_>, read_only: bool, name: &[u8]) -> Result<Loop> {
    let ctl = open(b"/dev/loop-control", OFlags::RDWR, 0)?;
    // Another process may take the device between GET_FREE and configuring it: ask again.
    for _ in 0..16 {
        let index = call(ctl.as_fd(), LOOP_CTL_GET_FREE, 0)?;
        let mut path = Text::<32>::new();
        path.push_lossy(b"/dev/loop");
        let _ = path.push_num(index as u64); // at most 20 digits: fits
        let dev = open_node(path.as_bytes(), read_only)?;
        match configure(dev.as_fd(), image, read_only, name) {
            Ok(()) => return Ok(Loop { fd: dev, path }),
            Err(Errno::BUSY) | Err(Errno::AGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::BUSY)
}

/// The backing file of the loop device `dev`, as its device and inode numbers (those
/// `sys::file_id` gives for the file), the way util-linux's `losetup -j` compares them.
pub fn backing_file(dev: BorrowedFd<'_>) -> Result<(u64, u64)> {
    // SAFETY: loop_info64 is a plain C struct for which all-zero is valid.
    let mut info: loop_info64 = unsafe { core::mem::zeroed() };
    call(
        dev,
        LOOP_GET_STATUS64,
        &mut info as *mut loop_info64 as usize,
    )?;
    Ok((info.lo_device, info.lo_inode))
}

/// devtmpfs creates the node when the device is allocated; allow it a moment (util-linux
/// retries the same way for udev).
fn open_node(path: &[u8], read_only: bool) -> Result<OwnedFd> {
    let flags = if read_only {
        OFlags::RDONLY
    } else {
        OFlags::RDWR
    };
    let mut tries = 0;
    loop {
        match open(path, flags, 0) {
            Err(Errno::NOENT) if tries < 40 => {
                tries += 1;
                sleep_ms(25);
            }
            r => return r,
        }
    }
}

fn configure(
    dev: BorrowedFd<'_>,
    image: BorrowedFd<'_>,
    read_only: bool,
    name: &[u8],
) -> Result<()> {
    // SAFETY: loop_config is a plain C struct for which all-zero is valid.
    let mut cfg: loop_config = unsafe { core::mem::zeroed() };
    cfg.fd = image.as_raw_fd() as u32;
    // The fallback passes the same status (`cfg.info`), less the read-only flag, which
    // LOOP_SET_STATUS64 cannot set (see `configure_legacy`).
    let info = &mut cfg.info;
    info.lo_flags = LO_FLAGS_AUTOCLEAR as u32;
    if read_only {
        info.lo_flags |= LO_FLAGS_READ_ONLY as u32;
    }
    for (d, s) in info.lo_file_name.iter_mut().zip(name.iter().take(63)) {
        *d = *s;
    }
    match call(dev, LOOP_CONFIGURE, &mut cfg as *mut loop_config as usize) {
        Ok(_) => Ok(()),
        Err(Errno::INVAL) | Err(Errno::NOTTY) | Err(Errno::NOSYS) => {
            configure_legacy(dev, image, &mut cfg.info)
        }
        Err(e) => Err(e),
    }
}

/// Pre-5.8 kernels: two steps. Read-only cannot be set through SET_STATUS; it follows from the
/// image being opened read-only, which the caller does for read-only images.
fn configure_legacy(
    dev: BorrowedFd<'_>,
    image: BorrowedFd<'_>,
    info: &mut loop_info64,
) -> Result<()> {
    call(dev, LOOP_SET_FD, image.as_raw_fd() as usize)?;
    info.lo_flags = LO_FLAGS_AUTOCLEAR as u32;
    let mut r = Err(Errno::AGAIN);
    for _ in 0..20 {
        r = call(dev, LOOP_SET_STATUS64, info as *mut loop_info64 as usize);
        // The kernel flushes the page cache and asks to retry if it was dirtied meanwhile.
        if !matches!(r, Err(Errno::AGAIN)) {
            break;
        }
        sleep_ms(10);
    }
    match r {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = call(dev, LOOP_CLR_FD, 0);
            Err(e)
        }
    }
}
