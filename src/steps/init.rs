//! The steps only PID 1 runs, before any other: the API filesystems and the kernel modules.

use super::{err_errno, Ctx, Error};
use crate::log;
use crate::sys::{self, Flags};
use crate::util::fixed::Text;
use crate::util::words::split;

/// A filesystem the kernel provides that every program expects at a fixed place.
pub struct ApiFilesystem {
    pub path: &'static [u8],
    pub fstype: &'static [u8],
    pub flags: Flags,
    pub data: &'static [u8],
}

/// The API filesystems, in the order `base-mounts` mounts them.
pub const API_FILESYSTEMS: [ApiFilesystem; 4] = [
    ApiFilesystem {
        path: b"/proc",
        fstype: b"proc",
        flags: Flags::NOSUID.union(Flags::NODEV).union(Flags::NOEXEC),
        data: b"",
    },
    ApiFilesystem {
        path: b"/sys",
        fstype: b"sysfs",
        flags: Flags::NOSUID.union(Flags::NODEV).union(Flags::NOEXEC),
        data: b"",
    },
    ApiFilesystem {
        path: b"/dev",
        fstype: b"devtmpfs",
        flags: Flags::NOSUID,
        data: b"mode=0755",
    },
    ApiFilesystem {
        path: b"/run",
        fstype: b"tmpfs",
        flags: Flags::NOSUID.union(Flags::NODEV),
        data: b"mode=0755",
    },
];

/// `base-mounts`: the API filesystems, each unless it is mounted already. Run before the plan
/// exists (`app`): as PID 1 nothing is mounted yet, not even `/proc` with the command line.
pub fn base_mounts() -> Result<(), Error> {
    for fs in &API_FILESYSTEMS {
        let _ = sys::mkdir_p(fs.path, 0o755);
        if sys::is_mountpoint_path(fs.path) {
            continue;
        }
        sys::mount(fs.fstype, fs.path, fs.fstype, fs.flags, fs.data)
            .map_err(|e| err_errno(b"cannot mount {} on {}", &[fs.fstype, fs.path], e))?;
    }
    log::open_kmsg();
    log::open_file();
    log::info(b"mounted /proc /sys /dev /run", &[]);
    Ok(())
}

/// `load-modules`: every module file listed in `<config>/modules` (relative to
/// `/lib/modules/<release>/`; `.ko`, or compressed `.ko.xz`, `.ko.zst`, `.ko.gz`), in order.
/// A missing or failing module is logged, not fatal.
pub fn load_modules(ctx: &mut Ctx) -> Result<(), Error> {
    let mut list_path = Text::<160>::new();
    list_path.push_lossy(ctx.env.config_dir.as_bytes());
    list_path.push_lossy(b"/modules");
    let mut buf = [0u8; 8192];
    let n = match sys::read_file(list_path.as_bytes(), &mut buf) {
        Ok(n) => n,
        Err(sys::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err_errno(b"cannot read {}", &[list_path.as_bytes()], e)),
    };
    let mut release = Text::<64>::new();
    sys::kernel_release(&mut release);
    let (mut loaded, mut failed) = (0u64, 0u64);
    for line in split(buf.get(..n).unwrap_or(&[]), b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let mut path = Text::<512>::new();
        path.push_lossy(b"/lib/modules/");
        path.push_lossy(release.as_bytes());
        path.push_lossy(b"/");
        path.push_lossy(line);
        match sys::load_module(path.as_bytes()) {
            Ok(()) | Err(sys::Errno::EXIST) => loaded += 1,
            // A kernel without CONFIG_MODULE_DECOMPRESS refuses the flag (EOPNOTSUPP), one
            // older than 5.17 does not know it, and one that decompresses another format finds
            // no valid header (EINVAL). (The tiny build prints the plain errno.)
            #[cfg(feature = "module-hints")]
            Err(e @ (sys::Errno::NOTSUP | sys::Errno::INVAL))
                if sys::is_compressed_module(line) =>
            {
                failed += 1;
                log::warn_errno(b"{}: {}: the kernel cannot decompress it", &[line], e);
            }
            Err(e) => {
                failed += 1;
                log::warn_errno(b"{}: {}", &[line], e);
            }
        }
    }
    log::info(
        b"loaded {} modules, {} failed",
        &[log::num(loaded).as_bytes(), log::num(failed).as_bytes()],
    );
    Ok(())
}
