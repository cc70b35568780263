//! The only layer with raw syscalls and `unsafe`: small safe wrappers over rustix that the rest
//! of the program uses. Everything takes byte-string paths and copies them into a stack buffer
//! with a terminating NUL, so no call allocates and overlong paths fail with `ENAMETOOLONG`.

pub mod args;
#[cfg(feature = "verity")]
pub mod dm;
pub mod inroot;
pub mod loopdev;
#[cfg(feature = "oci")]
pub mod mapped;
mod raw;
#[cfg(feature = "watchdog")]
pub mod watchdog;

use core::ffi::CStr;
use core::mem::MaybeUninit;
use linux_raw_sys::general as ms;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, CWD};
pub use rustix::io::Errno;
use rustix::mount::MountFlags;

pub type Result<T> = core::result::Result<T, Errno>;

/// Longest path or mount data string accepted (one page is the kernel's limit for data).
pub const MAX_C: usize = 1024;

/// The `PATH` of every program immucore starts (fsck, lvm, hooks, the rescue shell): the
/// usual directories, `sbin` first as for root.
pub const PATH_ENV: &CStr = c"PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// Room for a NUL-terminated copy of a byte string, on the stack: `CBuf::new().c_str(s)?`.
/// The copy is made in place, never moved: a buffer is a kilobyte. It starts uninitialised
/// (no kilobyte cleared per path); `c_str` writes every byte it hands out.
pub struct CBuf {
    buf: [MaybeUninit<u8>; MAX_C],
}

impl Default for CBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl CBuf {
    pub const fn new() -> CBuf {
        CBuf {
            buf: [MaybeUninit::uninit(); MAX_C],
        }
    }

    /// `s` with a NUL appended, in this buffer; `EINVAL` if `s` holds a NUL, `ENAMETOOLONG`
    /// if it does not fit.
    #[inline(never)]
    pub fn c_str(&mut self, s: &[u8]) -> Result<&CStr> {
        let dst = self.buf.get_mut(..=s.len()).ok_or(Errno::NAMETOOLONG)?;
        // A plain loop: `contains` brings its own copy of core's word-at-a-time `memchr`.
        #[allow(clippy::manual_contains)]
        if s.iter().any(|&c| c == 0) {
            return Err(Errno::INVAL);
        }
        let p = dst.as_mut_ptr().cast::<u8>();
        // SAFETY: `dst` has room for `s.len() + 1` bytes; `s` goes into the first ones and a
        // NUL into the last, so all of `dst` is initialised, and `s` holds no NUL.
        unsafe {
            core::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            p.add(s.len()).write(0);
            Ok(CStr::from_bytes_with_nul_unchecked(
                core::slice::from_raw_parts(p, s.len() + 1),
            ))
        }
    }
}

/// The C string at the start of `bytes`, up to its first NUL; `None` when there is none. A plain
/// loop: core's `CStr::from_bytes_until_nul` brings its own copy of `memchr` (about 250 B).
pub fn c_str_until_nul(bytes: &[u8]) -> Option<&CStr> {
    let end = bytes.iter().position(|&c| c == 0)?;
    let with_nul = bytes.get(..=end)?;
    // SAFETY: `with_nul` ends at the first NUL of `bytes`: it holds exactly one, at its end.
    Some(unsafe { CStr::from_bytes_with_nul_unchecked(with_nul) })
}

/// `f(path)` with `path` as a C string: the conversion exists once for all one-path calls.
#[inline(never)]
fn with_path<T>(path: &[u8], f: fn(&CStr) -> Result<T>) -> Result<T> {
    f(CBuf::new().c_str(path)?)
}

fn fd_from_raw(n: i32) -> BorrowedFd<'static> {
    // SAFETY: used only for the standard descriptors 0..=2, which this program never closes.
    unsafe { BorrowedFd::borrow_raw(n) }
}

pub fn stdout() -> BorrowedFd<'static> {
    fd_from_raw(1)
}

pub fn stderr() -> BorrowedFd<'static> {
    fd_from_raw(2)
}

/// Writes all of `data`, retrying on short writes and EINTR; errors are ignored by callers that
/// only log, so it returns the first hard error.
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => data = data.get(n..).unwrap_or(&[]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends the process with `code` (all threads).
pub fn exit(code: i32) -> ! {
    raw::exit_group(code)
}

/// A panic is a bug. In PID 1 it must not end the process (that is a kernel panic), so init
/// mode parks forever after saying so; otherwise exit with a distinct status.
pub fn on_panic() -> ! {
    let _ = write_all(stderr(), b"immucore: internal error (panic)\n");
    if is_pid1() {
        loop {
            sleep_ms(3_600_000);
        }
    }
    exit(101)
}

// ---- time ----

/// Milliseconds of CLOCK_BOOTTIME: since boot, including suspend, so log times match the
/// kernel's timestamps.
pub fn now_ms() -> u64 {
    raw::boottime_ms()
}

pub fn sleep_ms(ms: u64) {
    let req = rustix::time::Timespec {
        tv_sec: (ms / 1000) as _,
        tv_nsec: ((ms % 1000) * 1_000_000) as _,
    };
    let _ = rustix::thread::nanosleep(&req);
}

// ---- files ----

pub fn open(path: &[u8], flags: OFlags, mode: u32) -> Result<OwnedFd> {
    rustix::fs::open(
        CBuf::new().c_str(path)?,
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
}

/// Reads a whole file into `buf`; `EFBIG` when it does not fit.
pub fn read_file(path: &[u8], buf: &mut [u8]) -> Result<usize> {
    let fd = open(path, OFlags::RDONLY, 0)?;
    read_fd(fd.as_fd(), buf)
}

pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    let mut len = 0;
    loop {
        let rest = buf.get_mut(len..).unwrap_or(&mut []);
        if rest.is_empty() {
            let mut probe = [0u8; 1];
            return match rustix::io::read(fd, &mut probe) {
                Ok(0) => Ok(len),
                _ => Err(Errno::FBIG),
            };
        }
        match rustix::io::read(fd, rest) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads exactly `buf.len()` bytes at `off` (block devices, superblocks).
pub fn pread_exact(fd: BorrowedFd<'_>, off: u64, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or(&mut []);
        match rustix::io::pread(fd, rest, off + done as u64) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Creates or replaces `name` (resolved from `dir`) with `data`: written to `<name>.tmp` first,
/// then renamed, so a reader (or a power cut) never sees a half-written file.
pub fn write_file_atomic(dir: BorrowedFd<'_>, name: &[u8], data: &[u8], mode: u32) -> Result<()> {
    let mut tmp = crate::util::fixed::Text::<256>::new();
    tmp.push_lossy(name);
    tmp.push_lossy(b".tmp");
    // Cut short means it did not fit.
    if tmp.len() != name.len() + 4 {
        return Err(Errno::NAMETOOLONG);
    }
    let (mut tmp_c, mut name_c) = (CBuf::new(), CBuf::new());
    let (tmp_c, name_c) = (tmp_c.c_str(tmp.as_bytes())?, name_c.c_str(name)?);
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rustix::fs::openat(dir, tmp_c, flags, Mode::from_raw_mode(mode))?;
    write_all(fd.as_fd(), data)?;
    rustix::fs::fsync(&fd)?;
    drop(fd);
    rustix::fs::renameat(dir, tmp_c, dir, name_c)
}

/// `write_file_atomic` for a path outside the sysroot (files in `/run`): `<path>.tmp` is in
/// the same directory, so both resolve from the working directory.
pub fn write_path_atomic(path: &[u8], data: &[u8], mode: u32) -> Result<()> {
    write_file_atomic(CWD, path, data, mode)
}

/// Writes `data` into the existing file `path` (sysctls in /proc/sys cannot be renamed over).
pub fn write_existing(path: &[u8], data: &[u8]) -> Result<()> {
    let fd = open(path, OFlags::WRONLY | OFlags::TRUNC, 0)?;
    write_all(fd.as_fd(), data)
}

/// The target of the symlink `path`, into `out`.
pub fn readlink(path: &[u8], out: &mut crate::util::fixed::Text<512>) -> Result<()> {
    let mut p = CBuf::new();
    let p = p.c_str(path)?;
    // Uninitialised: the kernel fills what it returns.
    let mut buf = [MaybeUninit::<u8>::uninit(); 512];
    let (name, rest) = rustix::fs::readlinkat_raw(CWD, p, &mut buf)?;
    // A full buffer may hold a cut-off target.
    if rest.is_empty() {
        return Err(Errno::NAMETOOLONG);
    }
    out.clear();
    out.push(name).map_err(|_| Errno::NAMETOOLONG)
}

/// Splits `/a/b/c` into (`/a/b`, `c`); a bare name gets `.` as directory.
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&c| c == b'/') {
        Some(0) => (b"/", path.get(1..).unwrap_or(&[])),
        Some(i) => (
            path.get(..i).unwrap_or(&[]),
            path.get(i + 1..).unwrap_or(&[]),
        ),
        None => (b".", path),
    }
}

pub fn exists(path: &[u8]) -> bool {
    with_path(path, |p| rustix::fs::access(p, rustix::fs::Access::EXISTS)).is_ok()
}

/// The file type bits of `path`'s mode (`stat`, following symlinks).
fn file_type(path: &[u8]) -> Result<u64> {
    with_path(path, |p| {
        Ok(u64::from(rustix::fs::stat(p)?.st_mode & 0o170000))
    })
}

/// A regular file this process may execute.
pub fn is_executable(path: &[u8]) -> bool {
    file_type(path) == Ok(0o100000)
        && with_path(path, |p| rustix::fs::access(p, rustix::fs::Access::EXEC_OK)).is_ok()
}

pub fn is_dir(path: &[u8]) -> bool {
    file_type(path) == Ok(0o040000)
}

/// `mkdir -p` for paths of the initramfs itself (`/run/...`), not for the sysroot: the
/// sysroot's `mkdir -p` (one implementation) with `/` as the root, where resolving in the root
/// is plain resolution. A relative path is made under the working directory, as its root:
/// an absolute symlink on the way resolves there too.
pub fn mkdir_p(path: &[u8], mode: u32) -> Result<()> {
    let top: &[u8] = if path.first() == Some(&b'/') {
        b"/"
    } else {
        b"."
    };
    inroot::Root::open(top)?.mkdir_p(path, mode).map(drop)
}

pub fn symlink(target: &[u8], link: &[u8]) -> Result<()> {
    let (mut t, mut l) = (CBuf::new(), CBuf::new());
    rustix::fs::symlink(t.c_str(target)?, l.c_str(link)?)
}

/// Calls `f(name, type)` for each entry of the directory `dir` (skipping `.` and `..`). A `dyn`
/// callback, so the directory reading exists once for every caller.
pub fn for_each_entry(
    dir: BorrowedFd<'_>,
    f: &mut dyn FnMut(&[u8], rustix::fs::FileType),
) -> Result<()> {
    let fd = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 2048];
    // Over a borrowed fd: the same `RawDir` type as the copy code, so one `next` in the binary.
    let mut it = rustix::fs::RawDir::new(fd.as_fd(), &mut buf);
    while let Some(entry) = it.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        f(name, entry.file_type());
    }
    Ok(())
}

pub fn open_dir(path: &[u8]) -> Result<OwnedFd> {
    open(path, OFlags::RDONLY | OFlags::DIRECTORY, 0)
}

// ---- mounts ----

pub use rustix::mount::MountFlags as Flags;

pub fn mount(
    source: &[u8],
    target: &[u8],
    fstype: &[u8],
    flags: MountFlags,
    data: &[u8],
) -> Result<()> {
    mount_raw(source, target, fstype, flags.bits(), data)
}

/// `mount(2)` for every kind of mount, with its flags as the kernel takes them (`MS_MOVE` and
/// the others that `MountFlags` leaves to separate rustix calls, each a wrapper of its own);
/// an empty `data` is none. Where the kernel ignores the source or type, they are `""`.
#[inline(never)]
fn mount_raw(source: &[u8], target: &[u8], fstype: &[u8], flags: u32, data: &[u8]) -> Result<()> {
    let (mut s, mut t, mut f, mut d) = (CBuf::new(), CBuf::new(), CBuf::new(), CBuf::new());
    let (s, t, f) = (s.c_str(source)?, t.c_str(target)?, f.c_str(fstype)?);
    let data = if data.is_empty() {
        None
    } else {
        Some(d.c_str(data)?)
    };
    raw::mount(s, t, f, flags, data)
}

pub fn mount_bind(source: &[u8], target: &[u8]) -> Result<()> {
    mount_raw(source, target, b"", ms::MS_BIND, b"")
}

pub fn mount_move(source: &[u8], target: &[u8]) -> Result<()> {
    mount_raw(source, target, b"", ms::MS_MOVE, b"")
}

/// Makes every mount under `/` private, so MS_MOVE works (it refuses shared parents).
pub fn make_root_private() -> Result<()> {
    mount_raw(b"", b"/", b"", ms::MS_PRIVATE | ms::MS_REC, b"")
}

/// True when `path` is the root of a mount (statx `STATX_ATTR_MOUNT_ROOT`, Linux ≥ 5.8).
pub fn is_mountpoint(dir: BorrowedFd<'_>, path: &[u8]) -> bool {
    CBuf::new()
        .c_str(path)
        .is_ok_and(|p| raw::is_mount_root(dir, p))
}

pub fn is_mountpoint_path(path: &[u8]) -> bool {
    is_mountpoint(rustix::fs::CWD, path)
}

/// The device node (`/dev/<name>`) of the block device holding the filesystem of `path`, into
/// `node` (untouched on error), found from its device number through
/// `/sys/dev/block/<major>:<minor>`. `ENODEV` for a
/// filesystem without one (tmpfs, overlay, btrfs subvolumes: device major 0).
pub fn block_device_of(path: &[u8], node: &mut crate::util::fixed::Text<32>) -> Result<()> {
    let dev = with_path(path, |p| Ok(rustix::fs::stat(p)?.st_dev))?;
    let major = u64::from(rustix::fs::major(dev));
    if major == 0 {
        return Err(Errno::NODEV);
    }
    let mut link = crate::util::fixed::Text::<64>::new();
    link.push_lossy(b"/sys/dev/block/");
    let _ = link.push_num(major);
    link.push_lossy(b":");
    let _ = link.push_num(u64::from(rustix::fs::minor(dev)));
    let mut target = crate::util::fixed::Text::<512>::new();
    readlink(link.as_bytes(), &mut target)?;
    // `../../devices/.../block/sda/sda1`: the device's name is the last component.
    let (_, name) = split_parent(target.as_bytes());
    let mut found = crate::util::fixed::Text::<32>::new();
    found
        .push(b"/dev/")
        .and_then(|()| found.push(name))
        .map_err(|_| Errno::NAMETOOLONG)?;
    *node = found;
    Ok(())
}

/// The device and inode numbers of the open file `fd` (to compare with a loop device's
/// backing file).
pub fn file_id(fd: BorrowedFd<'_>) -> Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Filesystem magic of the filesystem holding the open file `fd` (ramfs/tmpfs detection
/// before freeing the initramfs).
pub fn fs_magic(fd: BorrowedFd<'_>) -> Result<u64> {
    Ok(rustix::fs::fstatfs(fd)?.f_type as u64)
}

pub const RAMFS_MAGIC: u64 = 0x8584_58f6;
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

// ---- processes ----

/// How many programs `run` started: one may have changed the disks (`dev::scan` probes them
/// again). Per thread in tests, which run in parallel.
#[cfg(not(test))]
static PROGRAMS_RUN: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
#[cfg(test)]
std::thread_local!(static PROGRAMS_RUN: core::cell::Cell<u32> = const { core::cell::Cell::new(0) });

/// Adds `started` to the count of programs `run` started; returns the count.
fn count_programs(started: u32) -> u32 {
    #[cfg(not(test))]
    {
        // A plain load and store: PID 1 has one thread.
        use core::sync::atomic::Ordering::Relaxed;
        let n = PROGRAMS_RUN.load(Relaxed).wrapping_add(started);
        PROGRAMS_RUN.store(n, Relaxed);
        n
    }
    #[cfg(test)]
    PROGRAMS_RUN.with(|c| {
        c.set(c.get().wrapping_add(started));
        c.get()
    })
}

/// How many programs `run` has started so far.
pub fn programs_run() -> u32 {
    count_programs(0)
}

/// Runs `argv[0]` with `argv` and `envp` (each NUL-terminated strings), optionally chrooted into
/// `chroot_to` in the child, and waits for it, at most `timeout_ms` (then it is killed and the
/// result is `ETIMEDOUT`). Returns the exit status (128+signal if killed by a signal).
pub fn run(
    argv: &[&CStr],
    envp: &[&CStr],
    chroot_to: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<i32> {
    const MAX_ARGS: usize = 16;
    let mut av: [*const u8; MAX_ARGS + 1] = [core::ptr::null(); MAX_ARGS + 1];
    let mut ev: [*const u8; MAX_ARGS + 1] = [core::ptr::null(); MAX_ARGS + 1];
    if argv.len() > MAX_ARGS || envp.len() > MAX_ARGS || argv.is_empty() {
        return Err(Errno::TOOBIG);
    }
    for (slot, a) in av.iter_mut().zip(argv) {
        *slot = a.as_ptr() as *const u8;
    }
    for (slot, e) in ev.iter_mut().zip(envp) {
        *slot = e.as_ptr() as *const u8;
    }
    let mut root_c = CBuf::new();
    let root = match chroot_to {
        Some(r) => Some(root_c.c_str(r)?),
        None => None,
    };
    count_programs(1);
    let pid = raw::fork();
    if pid < 0 {
        return Err(Errno::from_raw_os_error(-pid as i32));
    }
    if pid == 0 {
        // Children start with the default signal mask, whatever the service blocked.
        raw::sigmask(false, STOP_SIGNALS);
        if let Some(r) = root {
            if rustix::process::chroot(r).is_err() || rustix::process::chdir(c"/").is_err() {
                exit(127);
            }
        }
        // SAFETY: av/ev are NULL-terminated arrays of pointers to NUL-terminated strings that
        // live until execve replaces the process.
        unsafe { raw::execve(av[0], av.as_ptr(), ev.as_ptr()) };
        exit(127);
    }
    let pid = rustix::process::Pid::from_raw(pid as i32);
    // A hung child must not hang the boot (PID 1 least of all): wait until the deadline, then
    // kill it and say so. The child's pidfd becomes readable when it exits, so the wait ends
    // then, not at the next poll period (a 1-20 ms backoff cost every hook 10 ms on average).
    let deadline = now_ms().saturating_add(timeout_ms);
    let exited = pid.map_or(Err(Errno::SRCH), |p| {
        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
    });
    let status = match exited {
        Ok(pidfd) => loop {
            let left = deadline.saturating_sub(now_ms());
            let timeout = rustix::time::Timespec {
                tv_sec: (left / 1000) as _,
                tv_nsec: ((left % 1000) * 1_000_000) as _,
            };
            let mut fds = [rustix::event::PollFd::new(
                &pidfd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => break None,
                Ok(_) => {
                    break rustix::process::waitpid(pid, rustix::process::WaitOptions::NOHANG)?
                }
                Err(Errno::INTR) => continue,
                Err(e) => {
                    kill_and_reap(pid);
                    return Err(e);
                }
            }
        },
        // Linux before 5.3 has no pidfd (immucore needs 5.6 for openat2 anyway); no memory or
        // no descriptor left: the child cannot be waited for with a deadline.
        Err(e) => {
            kill_and_reap(pid);
            return Err(e);
        }
    };
    match status {
        Some((_, status)) => {
            if let Some(sig) = status.terminating_signal() {
                return Ok(128 + sig);
            }
            Ok(status.exit_status().unwrap_or(0))
        }
        None => {
            kill_and_reap(pid);
            Err(Errno::TIMEDOUT)
        }
    }
}

/// Kills the child `pid` and waits for it to be gone.
fn kill_and_reap(pid: Option<rustix::process::Pid>) {
    if let Some(p) = pid {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = rustix::process::waitpid(pid, rustix::process::WaitOptions::empty());
}

/// SIGHUP, SIGINT and SIGTERM: what a service manager sends to stop a unit.
const STOP_SIGNALS: u64 = {
    use linux_raw_sys::general::{SIGHUP, SIGINT, SIGTERM};
    1 << (SIGHUP - 1) | 1 << (SIGINT - 1) | 1 << (SIGTERM - 1)
};

/// Service mode: a stop request must not kill the process in the middle of a mount and leave a
/// half-assembled root unreported; the signals are held and checked between steps and while
/// waiting for devices (`stop_requested`). In init mode nothing is held, so nothing is pending.
#[cfg(feature = "service")]
pub fn defer_stop_signals() {
    raw::sigmask(true, STOP_SIGNALS);
}

/// Whether a deferred stop signal arrived during the run (never without the service feature,
/// as nothing defers them then).
pub fn stop_requested() -> bool {
    cfg!(feature = "service") && raw::sigmask(true, 0) & STOP_SIGNALS != 0
}

pub fn is_pid1() -> bool {
    rustix::process::getpid().is_init()
}

/// Reaps any finished children without blocking (PID 1 adopts orphans).
pub fn reap_children() {
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
}

pub fn chdir(path: &[u8]) -> Result<()> {
    with_path(path, |p| rustix::process::chdir(p))
}

pub fn chroot(path: &[u8]) -> Result<()> {
    with_path(path, |p| rustix::process::chroot(p))
}

/// Flushes the filesystem holding `fd` (makes renames and new directories durable).
pub fn syncfs(fd: BorrowedFd<'_>) -> Result<()> {
    rustix::fs::syncfs(fd)
}

pub fn sync() {
    rustix::fs::sync();
}

pub fn reboot(command: rustix::system::RebootCommand) -> Result<()> {
    rustix::system::reboot(command)
}

/// `finit_module` flag: the kernel decompresses the file itself (Linux 5.17+ built with
/// `CONFIG_MODULE_DECOMPRESS`, as Debian 13's; others fail with EOPNOTSUPP or EINVAL).
const MODULE_INIT_COMPRESSED_FILE: core::ffi::c_int = 4;

/// Whether a module file is compressed, by its name: anything but a plain `.ko` (`.ko.xz`,
/// `.ko.zst`, `.ko.gz`; the kernel recognises the format, or refuses the file).
pub fn is_compressed_module(path: &[u8]) -> bool {
    !path.ends_with(b".ko")
}

/// The `finit_module` flags for a module file: a compressed one is handed to the kernel to
/// decompress.
fn finit_module_flags(path: &[u8]) -> core::ffi::c_int {
    if is_compressed_module(path) {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    }
}

/// Loads a kernel module file (`finit_module`, no parameters).
pub fn load_module(path: &[u8]) -> Result<()> {
    let fd = open(path, OFlags::RDONLY, 0)?;
    rustix::system::finit_module(&fd, c"", finit_module_flags(path))
}

/// The running kernel's release (`uname -r`, at most 64 bytes: 65 with the NUL), for
/// `/lib/modules/<release>`.
pub fn kernel_release(out: &mut crate::util::fixed::Text<64>) {
    let u = rustix::system::uname();
    out.push_lossy(u.release().to_bytes());
}

/// Opens a device node read-only for probing.
pub fn open_ro(path: &[u8]) -> Result<OwnedFd> {
    open(path, OFlags::RDONLY | OFlags::NONBLOCK, 0)
}

/// A process-wide value (the logger, the text of the last step error). Access goes through a
/// closure, so no reference outlives the call; callers never re-enter `with` on the same value.
///
/// How access is made exclusive depends on the build. The `immucore` binary is built with
/// `panic = "abort"` (Cargo.toml's profiles) and runs one thread (forked children get their own
/// copy): there a plain cell is sound and costs nothing. Every build that unwinds is a host
/// program linking the library (the unit tests, `tests/*.rs`), whose test harness runs tests on
/// many threads at once: there each access takes a lock.
pub struct Global<T> {
    value: core::cell::UnsafeCell<T>,
    #[cfg(panic = "unwind")]
    locked: core::sync::atomic::AtomicBool,
}

// SAFETY: `with` hands out the value to one caller at a time: in the binary because it has one
// thread, in unwinding builds because of the lock.
unsafe impl<T: Send> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(v: T) -> Self {
        Global {
            value: core::cell::UnsafeCell::new(v),
            #[cfg(panic = "unwind")]
            locked: core::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(panic = "unwind")]
        let _held = SpinLock::acquire(&self.locked);
        // SAFETY: one thread in the binary, the lock elsewhere, and no re-entrant use: this
        // is the only live reference.
        f(unsafe { &mut *self.value.get() })
    }
}

/// A held `Global` lock, released when dropped (also when a test panics while holding it).
#[cfg(panic = "unwind")]
struct SpinLock<'a>(&'a core::sync::atomic::AtomicBool);

#[cfg(panic = "unwind")]
impl<'a> SpinLock<'a> {
    /// A spin lock: the library has no `std` to park on outside its unit tests, and the
    /// sections are a few microseconds long (one log line).
    fn acquire(flag: &'a core::sync::atomic::AtomicBool) -> Self {
        use core::sync::atomic::Ordering;
        while flag
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Unit tests run more threads than cores: give the holder the core (the library
            // has `std` only there).
            #[cfg(test)]
            std::thread::yield_now();
            core::hint::spin_loop();
        }
        SpinLock(flag)
    }
}

#[cfg(panic = "unwind")]
impl Drop for SpinLock<'_> {
    fn drop(&mut self) {
        self.0.store(false, core::sync::atomic::Ordering::Release);
    }
}

/// Gives `path` the permission bits and owner of the object behind `from`.
pub fn copy_owner_and_mode(from: BorrowedFd<'_>, path: &[u8]) -> Result<()> {
    let st = rustix::fs::fstat(from)?;
    let mut p = CBuf::new();
    let p = p.c_str(path)?;
    rustix::fs::chmod(p, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    let owner = rustix::fs::Uid::from_raw(st.st_uid);
    let group = rustix::fs::Gid::from_raw(st.st_gid);
    rustix::fs::chown(p, Some(owner), Some(group))
}

/// Detaches the mount at `path` (lazy unmount: the initramfs-stage chroot helpers).
pub fn unmount_detach(path: &[u8]) -> Result<()> {
    with_path(path, |p| {
        rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_modules_are_handed_to_the_kernel_to_decompress() {
        for name in [
            &b"kernel/fs/ext4/ext4.ko.xz"[..],
            b"loop.ko.zst",
            b"overlay.ko.gz",
        ] {
            assert!(is_compressed_module(name));
            assert_eq!(finit_module_flags(name), MODULE_INIT_COMPRESSED_FILE);
        }
        for name in [&b"kernel/fs/ext4/ext4.ko"[..], b"xz.ko", b"gz.ko"] {
            assert!(!is_compressed_module(name));
            assert_eq!(finit_module_flags(name), 0);
        }
    }

    #[test]
    fn c_str_until_nul_stops_at_the_first_nul() {
        assert_eq!(c_str_until_nul(b"ab\0cd\0"), Some(c"ab"));
        assert_eq!(c_str_until_nul(b"\0"), Some(c""));
        assert_eq!(c_str_until_nul(b"abc"), None);
        assert_eq!(c_str_until_nul(b""), None);
    }

    /// Many threads add one to a shared counter by reading it, yielding, and writing it back:
    /// without exclusive access updates are lost (and it is a data race, as ThreadSanitizer
    /// reported for the logger).
    #[test]
    fn global_access_is_exclusive_across_threads() {
        static COUNTER: Global<u64> = Global::new(0);
        const THREADS: u64 = 8;
        const ROUNDS: u64 = 2_000;
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..ROUNDS {
                        COUNTER.with(|n| {
                            let seen = core::hint::black_box(*n);
                            std::thread::yield_now();
                            *n = seen + 1;
                        });
                    }
                });
            }
        });
        assert_eq!(COUNTER.with(|n| *n), THREADS * ROUNDS);
    }

    #[test]
    fn a_child_past_its_deadline_is_killed_and_reported() {
        let start = now_ms();
        let r = run(&[c"/bin/sleep", c"30"], &[], None, 200);
        assert_eq!(r, Err(Errno::TIMEDOUT));
        assert!(now_ms() - start < 5_000, "the deadline was not honoured");
        assert_eq!(
            run(&[c"/bin/sh", c"-c", c"exit 3"], &[], None, 5_000),
            Ok(3)
        );
    }
}
