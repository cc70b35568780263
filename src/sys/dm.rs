//! Device-mapper: a read-only mapped device with a single target (dm-verity over loop devices),
//! made with the ioctls of `/dev/mapper/control` (`include/uapi/linux/dm-ioctl.h`): create the
//! device, load its table, resume it (which makes the loaded table live).

use super::{loopdev, open, CBuf, Errno, Result};
use crate::util::fixed::{copy_bytes, Text};
use linux_raw_sys::ioctl::{DM_DEV_CREATE, DM_DEV_REMOVE, DM_DEV_SUSPEND, DM_TABLE_LOAD};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, CWD};

/// The interface version we speak (4.x: every kernel since 2.6).
const VERSION: [u32; 3] = [4, 0, 0];
/// The table is read-only (dm-verity refuses any other).
const DM_READONLY_FLAG: u32 = 1;
/// Longest target parameter line, NUL included: a verity line with a 512-bit hash, a 256-byte
/// salt and every option is about 900 bytes.
pub const MAX_PARAMS: usize = 1024;

/// `struct dm_ioctl`: 312 bytes, the header of every request.
#[repr(C)]
struct Header {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; 128],
    uuid: [u8; 129],
    data: [u8; 7],
}

/// `struct dm_target_spec`, followed by its NUL-terminated parameters.
#[repr(C)]
struct Target {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
    params: [u8; MAX_PARAMS],
}

/// A request: the header, and for DM_TABLE_LOAD the one target.
#[repr(C)]
struct Request {
    header: Header,
    target: Target,
}

const _: () = assert!(core::mem::size_of::<Header>() == 312);
const _: () = assert!(core::mem::size_of::<Target>() == 40 + MAX_PARAMS);

impl Request {
    /// A request about the device `name` (at most 127 bytes, checked by the caller).
    fn new(name: &[u8]) -> Request {
        // SAFETY: plain C structs of integers and byte arrays: all-zero is valid.
        let mut r: Request = unsafe { core::mem::zeroed() };
        r.header.version = VERSION;
        r.header.data_size = core::mem::size_of::<Request>() as u32;
        r.header.data_start = core::mem::size_of::<Header>() as u32;
        copy_bytes(&mut r.header.name, name);
        r
    }

    fn send(&mut self, control: BorrowedFd<'_>, op: rustix::ioctl::Opcode) -> Result<()> {
        loopdev::call(control, op, self as *mut Request as usize).map(drop)
    }
}

/// Creates the read-only device `name` (`/dev/mapper/<name>`, made here as a node) with one
/// target of `sectors` 512-byte sectors: `target` (`verity`) with parameter line `params`.
/// Returns the open device. On failure nothing is left behind (the device is removed).
/// `EINVAL` from the table load: the target refused the line; the kernel log says why.
pub fn create_read_only(
    name: &[u8],
    target: &[u8],
    sectors: u64,
    params: &[u8],
) -> Result<(OwnedFd, Text<32>)> {
    if name.len() > 127 || target.len() > 15 || params.len() >= MAX_PARAMS {
        return Err(Errno::NAMETOOLONG);
    }
    let control = open(b"/dev/mapper/control", OFlags::RDWR, 0)?;
    let control = control.as_fd();
    let mut create = Request::new(name);
    create.send(control, DM_DEV_CREATE)?;
    let dev = create.header.dev;
    let mut load = Request::new(name);
    load.header.flags = DM_READONLY_FLAG;
    load.header.target_count = 1;
    load.target.length = sectors;
    copy_bytes(&mut load.target.target_type, target);
    copy_bytes(&mut load.target.params, params);
    let made = load
        .send(control, DM_TABLE_LOAD)
        // No DM_SUSPEND_FLAG: resume, which swaps the loaded table in.
        .and_then(|()| Request::new(name).send(control, DM_DEV_SUSPEND))
        .and_then(|()| make_node(name, dev));
    match made {
        Ok(node) => Ok(node),
        Err(e) => {
            let _ = Request::new(name).send(control, DM_DEV_REMOVE);
            Err(e)
        }
    }
}

/// Removes the device `name` (its node stays; a new device of that name replaces it).
pub fn remove(name: &[u8]) -> Result<()> {
    let control = open(b"/dev/mapper/control", OFlags::RDWR, 0)?;
    Request::new(name).send(control.as_fd(), DM_DEV_REMOVE)
}

/// `/dev/mapper/<name>` as a block node of `dev` (devtmpfs makes only `/dev/dm-<minor>`; udev,
/// which would add the name, does not run in an initramfs of ours), opened read-only.
fn make_node(name: &[u8], dev: u64) -> Result<(OwnedFd, Text<32>)> {
    let mut path = Text::<32>::new();
    path.push(b"/dev/mapper/")
        .and_then(|()| path.push(name))
        .map_err(|_| Errno::NAMETOOLONG)?;
    let mut c_path = CBuf::new();
    let c = c_path.c_str(path.as_bytes())?;
    match rustix::fs::unlinkat(CWD, c, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    // The kernel hands out `dev` in the encoding of `st_rdev`, which mknod takes. Where udev
    // runs (service mode), its dm rules may have made the name meanwhile: the same device.
    let mode = Mode::from_raw_mode(0o600);
    match rustix::fs::mknodat(CWD, c, FileType::BlockDevice, mode, dev) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    Ok((open(path.as_bytes(), OFlags::RDONLY, 0)?, path))
}
