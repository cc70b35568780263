//! What each step of the plan does to the system (the step table, `plan::STEPS`, names the
//! function of each). `Ctx` carries what steps hand to each other (the mounted root, the
//! layout, the fstab lines, which volumes mounted). Helpers shared by several steps (the mount
//! primitive, fsck, option strings) live here too.

#[cfg(feature = "bootassessment")]
pub mod assessment;
pub mod binds;
#[cfg(feature = "fallback")]
pub mod fallback;
pub mod fstab;
#[cfg(feature = "hooks")]
pub mod hooks;
pub mod init;
#[cfg(feature = "live")]
pub mod live;
#[cfg(feature = "oci")]
pub mod oci;
pub mod overlay;
pub mod root;
#[cfg(feature = "verity")]
pub mod verity;
pub mod volumes;

#[cfg(feature = "fsck")]
use crate::config::cmdline::FsckRepair;
use crate::config::cmdline::{BootState, Cmdline, Device, FsckMode};
use crate::config::layout::Layout;
use crate::config::state::Env;
use crate::dev::scan::{self, Table};
use crate::log;
use crate::sys::inroot::{fd_path, Root};
use crate::sys::{self, Flags, Global};
use crate::util::fixed::Text;
use crate::util::words::{is_word_of, split, word_index};
use core::ffi::CStr;
use rustix::fd::AsFd;

/// A step failed; `message` says why. The text is kept aside rather than in the error, so the
/// results of all step code stay small instead of carrying 256 bytes through every `?`. A
/// token, neither `Copy` nor `Clone`: reading the message (`message`, `log`) consumes it, so
/// an error's text is read at most once, and only through the error it belongs to.
#[must_use = "a step error is returned, or its message read (`message`, `log`)"]
#[cfg_attr(test, derive(Debug))]
pub struct Error(());

/// The text of the last step error (the program is single-threaded).
static MESSAGE: Global<Text<256>> = Global::new(Text::new());

/// A step error: `template` with its `{}` marks replaced by `args` (see `log::expand`).
pub fn err(template: &[u8], args: &[&[u8]]) -> Error {
    MESSAGE.with(|m| {
        m.clear();
        log::expand(template, args, &mut |c| m.push_lossy(&[c]));
    });
    Error(())
}

/// A step error naming what failed and the errno.
pub fn err_errno(template: &[u8], args: &[&[u8]], e: sys::Errno) -> Error {
    let error = err(template, args);
    MESSAGE.with(|m| {
        m.push_lossy(b": ");
        m.push_lossy(log::errno(e).as_bytes());
    });
    error
}

/// Adds an item (`parts` joined) to the list of what failed in a step that tries several
/// things and fails after trying all: `head` starts the list, `sep` and a space separate items.
fn add_failure(list: &mut Text<256>, head: &[u8], sep: &[u8], parts: &[&[u8]]) {
    list.push_lossy(if list.is_empty() { head } else { sep });
    list.push_lossy(b" ");
    for part in parts {
        list.push_lossy(part);
    }
}

/// The outcome of a step that tried several things: an error naming what failed, if any did.
fn failures(list: &Text<256>) -> Result<(), Error> {
    if list.is_empty() {
        Ok(())
    } else {
        Err(err(b"{}", &[list.as_bytes()]))
    }
}

/// A mount a step would make is there already (upstream counts that as done).
#[inline(never)]
fn log_already_mounted(path: &[u8]) {
    log::info(b"{} is already mounted", &[path]);
}

impl Error {
    /// Why the step failed.
    pub fn message(self) -> Text<256> {
        let mut text = Text::new();
        MESSAGE.with(|m| text.push_lossy(m.as_bytes()));
        text
    }

    /// Logs why the step failed into `template`'s `{}` (for one of several things a step
    /// tries: the step goes on).
    pub fn log(self, level: log::Level, template: &[u8]) {
        MESSAGE.with(|m| log::log(level, template, &[m.as_bytes()]));
    }
}

/// One volume from `VOLUMES` / `rd.*.mount` and whether it got mounted.
pub struct Volume {
    pub mountpoint: Text<256>,
    /// The fstab spec (`/dev/disk/by-label/X`), also the identity of the volume.
    pub device: Text<192>,
    pub dev: Device,
    pub mounted: bool,
}

pub const MAX_VOLUMES: usize = 16;

/// In declaration order (`repr(C)`), the small fields every step reads first and the large
/// buffers last: the context is 27 KB, and a field at a small offset is a shorter instruction
/// (an 8-bit displacement on x86_64; no `lui` on riscv64, whose offsets are 12-bit).
#[repr(C)]
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub cmd: &'a Cmdline,
    /// The boot state the steps assemble: the command line's, unless a step chose another
    /// image (image fallback, boot assessment). The sentinel, the layout and the binds follow it.
    pub state: BootState,
    /// The assembled root, once `mount-root` (or `wait-for-sysroot`) succeeded.
    pub root: Option<Root>,
    /// The loop device over the image (held open until the root mount holds it) and the
    /// filesystem type `discover-state` found on it.
    pub root_loop: Option<(sys::loopdev::Loop, &'static str)>,
    /// Image fallback (`rd.immucore.fallback`): the image tried instead, what failed.
    #[cfg(feature = "fallback")]
    pub fallback: fallback::Fallback<'a>,
    pub layout: Layout,
    pub fstab: fstab::Fstab,
    pub volumes: [Option<Volume>; MAX_VOLUMES],
    pub devices: Table,
    /// The live medium's device node, once `mount-live-medium` found it (feature `live`).
    #[cfg(feature = "live")]
    pub live_medium: Text<192>,
}

impl<'a> Ctx<'a> {
    pub fn new(env: &'a Env, cmd: &'a Cmdline) -> Self {
        Ctx {
            env,
            cmd,
            layout: Layout::default(),
            fstab: fstab::Fstab::new(),
            volumes: [const { None }; MAX_VOLUMES],
            // As PID 1 only immucore and the programs it runs change the disks.
            devices: match sys::is_pid1() {
                true => Table::reusing_probes(),
                false => Table::new(),
            },
            root: None,
            root_loop: None,
            state: cmd.state,
            #[cfg(feature = "fallback")]
            fallback: fallback::Fallback::new(),
            #[cfg(feature = "live")]
            live_medium: Text::EMPTY,
        }
    }

    pub fn root(&self) -> Result<&Root, Error> {
        mounted_root(&self.root)
    }

    pub fn sysroot(&self) -> &[u8] {
        self.env.sysroot.as_bytes()
    }

    /// The image file the steps assemble: the command line's, the one image fallback chose
    /// instead, or the passive image when the boot assessment chose it instead of the active
    /// one (as GRUB's fallback entry does).
    #[cfg_attr(
        not(any(feature = "fallback", feature = "bootassessment")),
        inline(always)
    )]
    pub fn image(&self) -> &'a [u8] {
        #[cfg(feature = "fallback")]
        if let Some(image) = self.fallback.image() {
            return image;
        }
        #[cfg(feature = "bootassessment")]
        if self.state == BootState::Passive && self.cmd.state == BootState::Active {
            return assessment::PASSIVE_IMAGE;
        }
        self.cmd.image.as_bytes()
    }
}

/// The assembled root, or the error of a step that needs it before it is mounted.
#[inline(never)]
fn mounted_root(root: &Option<Root>) -> Result<&Root, Error> {
    root.as_ref()
        .ok_or_else(|| err(b"the root is not mounted", &[]))
}

/// Mount flags and data string for an fstab-style option list (reference §6.3): flag words
/// become flags, everything else joins the data string in order. (`data` has the capacity of
/// a log line: its `Text` methods exist once for both.)
pub fn mount_options(opts: &[u8], data: &mut Text<2048>) -> Flags {
    let mut flags = Flags::empty();
    for o in split(opts, b',').filter(|o| !o.is_empty()) {
        if o == b"rw" {
            flags.remove(Flags::RDONLY);
        } else if let Some(flag) = word_index(FLAG_WORDS, o) {
            flags |= FLAGS.get(flag).copied().unwrap_or(Flags::empty());
        } else if !is_word_of(DEFAULT_WORDS, o) {
            if !data.is_empty() {
                data.push_lossy(b",");
            }
            data.push_lossy(o);
        }
    }
    flags
}

/// The option words that are mount flags, and in `FLAGS` the flag each sets (`rw` clears
/// `ro`'s). Words in one string: a table of `&[u8]` pairs is 24 bytes a row (qemu/size-lore.md).
const FLAG_WORDS: &[u8] = b"ro nosuid nodev noexec noatime relatime sync bind";
const FLAGS: [Flags; 8] = [
    Flags::RDONLY,
    Flags::NOSUID,
    Flags::NODEV,
    Flags::NOEXEC,
    Flags::NOATIME,
    Flags::RELATIME,
    Flags::SYNCHRONOUS,
    Flags::BIND,
];

/// The option words that restate a default: no flag, and nothing for the filesystem either.
const DEFAULT_WORDS: &[u8] = b"suid dev exec async defaults auto";

/// Where a mount goes: a path of the initramfs itself, or a path inside the sysroot (resolved
/// with `RESOLVE_IN_ROOT`, created if missing).
pub enum Target<'p> {
    Host(&'p [u8]),
    InRoot(&'p [u8]),
}

impl<'p> Target<'p> {
    /// The path as configured (also the mount point the fstab names).
    fn path(&self) -> &'p [u8] {
        match *self {
            Target::Host(p) | Target::InRoot(p) => p,
        }
    }
}

/// The outcome of `mount_at`.
#[derive(PartialEq, Eq)]
pub enum Mounted {
    Now,
    Already,
}

/// Mounts `source` on `target`; an existing mount there counts as done (upstream behaviour).
/// Inlined: the call with one more argument is shorter than a function passing them on.
#[inline(always)]
pub fn mount_at(
    ctx: &Ctx,
    source: &[u8],
    target: Target,
    fstype: &[u8],
    opts: &[u8],
) -> Result<Mounted, Error> {
    mount_checked(ctx, source, target, fstype, opts, false)
}

/// `mount_at`, checking the device `source` with fsck first when `check`, unless
/// the target is mounted already.
fn mount_checked(
    ctx: &Ctx,
    source: &[u8],
    target: Target,
    fstype: &[u8],
    opts: &[u8],
    check: bool,
) -> Result<Mounted, Error> {
    let mut data = Text::<2048>::new();
    let flags = mount_options(opts, &mut data);
    let path = target.path();
    // In the new root the directory is resolved once and mounted on through its fd.
    let (dir, at);
    let on: &[u8] = match target {
        Target::Host(_) => {
            sys::mkdir_p(path, 0o755).map_err(|e| err_errno(b"cannot create {}", &[path], e))?;
            if sys::is_mountpoint_path(path) {
                return Ok(Mounted::Already);
            }
            path
        }
        Target::InRoot(_) => {
            dir = ctx
                .root()?
                .mkdir_p(path, 0o755)
                .map_err(|e| err_errno(b"cannot create {} in the new root", &[path], e))?;
            if sys::is_mountpoint(dir.as_fd(), b"") {
                return Ok(Mounted::Already);
            }
            at = fd_path(dir.as_fd());
            at.as_bytes()
        }
    };
    if check {
        fsck(ctx.cmd, source);
    }
    sys::mount(source, on, fstype, flags, data.as_bytes())
        .map_err(|e| err_errno(b"mounting {} on {} failed", &[source, path], e))?;
    Ok(Mounted::Now)
}

/// Finds `dev` (waiting up to `timeout_ms`), checks it with fsck when one is installed, mounts
/// it with the filesystem type its superblock names and records it in the fstab (with `opts`,
/// under the target path) when it mounted it now, or also when it was mounted already if
/// `record_already`.
pub fn mount_device(
    ctx: &mut Ctx,
    dev: &Device,
    target: Target,
    opts: &[u8],
    timeout_ms: u64,
    record_already: bool,
) -> Result<(), Error> {
    let mut why = Text::<256>::new();
    let Some((node, known)) = scan::wait_for(&mut ctx.devices, dev, timeout_ms, &mut why) else {
        return Err(err(b"{}", &[why.as_bytes()]));
    };
    let node = node.as_bytes();
    // The scan probed the superblock already; only a /dev path or a udev link is new here.
    let Some(fs) = known.or_else(|| scan::probe_node(node).map(|f| f.fs)) else {
        return Err(err(
            b"{} has no filesystem that immucore recognises",
            &[node],
        ));
    };
    let fstype = fs.name().as_bytes();
    let mut spec = Text::<192>::new();
    dev.by_path(&mut spec);
    let spec = spec.as_bytes();
    let path = target.path();
    // One argument list for both lines: the last is the filesystem type, then the mount point.
    let mut args = [spec, node, fstype];
    log::debug(b"found {} at {} ({})", &args);
    let now = mount_checked(ctx, node, target, fstype, opts, true)? == Mounted::Now;
    if let Some(last) = args.last_mut() {
        *last = path;
    }
    let template: &[u8] = if now {
        b"mounted {} ({}) on {}"
    } else {
        b"already mounted: {} ({}) on {}"
    };
    log::info(template, &args);
    if now || record_already {
        ctx.fstab.add(spec, path, fstype, opts);
    }
    Ok(())
}

/// fsck of a large, damaged filesystem can take minutes; a hung one must not hold the boot.
#[cfg(feature = "fsck")]
const FSCK_TIMEOUT_MS: u64 = 600_000;

/// Where fsck may be installed, first found wins.
#[cfg(feature = "fsck")]
const FSCK_PATHS: [&CStr; 4] = [
    c"/usr/sbin/fsck",
    c"/sbin/fsck",
    c"/usr/bin/fsck",
    c"/bin/fsck",
];

/// fsck's flag for `fsck.repair=`, if it has one.
#[cfg(feature = "fsck")]
fn repair_flag(repair: FsckRepair) -> Option<&'static CStr> {
    match repair {
        FsckRepair::Preen => Some(c"-a"),
        FsckRepair::Yes => Some(c"-y"),
        FsckRepair::No => Some(c"-n"),
        FsckRepair::None => None,
    }
}

/// Runs `fsck <dev> [-f] [-a|-y|-n]` before the first mount, as systemd-fsck would, when an
/// fsck binary exists. Its result is logged, never fatal: the mount decides. Kept out of
/// `mount_checked`: the two are smaller apart.
#[cfg(feature = "fsck")]
#[inline(never)]
pub fn fsck(cmd: &Cmdline, node: &[u8]) {
    if cmd.fsck_mode == FsckMode::Skip {
        return;
    }
    let Some(bin) = FSCK_PATHS
        .into_iter()
        .find(|path| sys::is_executable(path.to_bytes()))
    else {
        return;
    };
    let mut dev = sys::CBuf::new();
    let Ok(dev) = dev.c_str(node) else {
        return;
    };
    let force = cmd.fsck_mode == FsckMode::Force;
    let argv: &[&CStr] = match (force, repair_flag(cmd.fsck_repair)) {
        (true, Some(repair)) => &[bin, dev, c"-f", repair],
        (true, None) => &[bin, dev, c"-f"],
        (false, Some(repair)) => &[bin, dev, repair],
        (false, None) => &[bin, dev],
    };
    match run_program(
        argv,
        &[RUN_PATH],
        None,
        FSCK_TIMEOUT_MS,
        [b"fsck ", node],
        1,
    ) {
        Ok(status) => {
            let (level, template): (_, &[u8]) = if status == 0 {
                (log::Level::Debug, b"fsck {}: clean")
            } else {
                (log::Level::Info, b"fsck {}: errors corrected")
            };
            log::log(level, template, &[node]);
        }
        Err(e) => e.log(log::Level::Warn, b"{}"),
    }
}

/// A build without the fsck feature mounts unchecked; if the command line asks for fsck
/// (`fsck.mode=force`), it says so, once.
#[cfg(not(feature = "fsck"))]
pub fn fsck(cmd: &Cmdline, _node: &[u8]) {
    if first_forced_fsck(cmd.fsck_mode) {
        log::warn(
            b"fsck.mode=force needs the fsck feature, which this build lacks: mounting unchecked",
            &[],
        );
    }
}

/// Whether `mode` forces fsck and this is the first time it is asked.
#[cfg(not(feature = "fsck"))]
fn first_forced_fsck(mode: FsckMode) -> bool {
    // A `Global`, not an atomic swap: on aarch64 that is a call into the compiler's outlined
    // atomics, which bring about 900 B of CPU feature detection along (qemu/size-lore.md).
    static ASKED: Global<bool> = Global::new(false);
    mode == FsckMode::Force && !ASKED.with(|asked| core::mem::replace(asked, true))
}

/// The search path of the programs immucore runs itself (fsck, lvm).
// Unused in a build without fsck, lvm and hooks (the tiny one).
#[cfg_attr(
    not(any(feature = "fsck", feature = "lvm", feature = "hooks")),
    allow(dead_code)
)]
const RUN_PATH: &CStr = sys::PATH_ENV;

/// Runs `argv` (see `sys::run`) and returns its exit status if that is 0 or `also_ok`; else an
/// error naming the program as `what` (`fsck ` and the device, say) with the status or errno.
/// The one outcome check of fsck, lvm and the hooks.
#[cfg_attr(
    not(any(feature = "fsck", feature = "lvm", feature = "hooks")),
    allow(dead_code)
)]
fn run_program(
    argv: &[&CStr],
    envp: &[&CStr],
    chroot_to: Option<&[u8]>,
    timeout_ms: u64,
    what: [&[u8]; 2],
    also_ok: i32,
) -> Result<i32, Error> {
    match sys::run(argv, envp, chroot_to, timeout_ms) {
        Ok(c) if c == 0 || c == also_ok => Ok(c),
        Ok(c) => Err(err(
            b"{}{} exited with status {}",
            &[what[0], what[1], log::num(c as u64).as_bytes()],
        )),
        Err(e) => Err(err_errno(b"cannot run {}{}", &what, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data_in_order() {
        let mut data = Text::new();
        let f = mount_options(b"ro,nosuid,size=25%,mode=0755", &mut data);
        assert_eq!(f, Flags::RDONLY | Flags::NOSUID);
        assert_eq!(data.as_str(), "size=25%,mode=0755");
        let mut data = Text::new();
        let f = mount_options(b"rw,suid,dev,exec,async", &mut data);
        assert_eq!(f, Flags::empty());
        assert!(data.is_empty());
    }

    #[test]
    fn every_flag_word_sets_its_flag() {
        let cases = [
            ("ro", Flags::RDONLY),
            ("nosuid", Flags::NOSUID),
            ("nodev", Flags::NODEV),
            ("noexec", Flags::NOEXEC),
            ("noatime", Flags::NOATIME),
            ("relatime", Flags::RELATIME),
            ("sync", Flags::SYNCHRONOUS),
            ("bind", Flags::BIND),
        ];
        for (word, flag) in cases {
            let mut data = Text::new();
            assert_eq!(mount_options(word.as_bytes(), &mut data), flag, "{word}");
            assert!(data.is_empty(), "{word}");
        }
        // `rw` clears an earlier `ro`; the defaults restate nothing.
        let mut data = Text::new();
        let f = mount_options(b"ro,rw,suid,dev,exec,async,defaults,auto", &mut data);
        assert_eq!(f, Flags::empty());
        assert!(data.is_empty());
    }

    /// The one test that asks (the answer is kept for the whole process).
    #[cfg(not(feature = "fsck"))]
    #[test]
    fn without_fsck_a_forced_fsck_is_reported_once() {
        assert!(!first_forced_fsck(FsckMode::Auto));
        assert!(!first_forced_fsck(FsckMode::Skip));
        assert!(first_forced_fsck(FsckMode::Force));
        assert!(!first_forced_fsck(FsckMode::Force));
    }

    #[cfg(feature = "fsck")]
    #[test]
    fn repair_flags_follow_the_repair_modes() {
        assert_eq!(repair_flag(FsckRepair::Preen), Some(c"-a"));
        assert_eq!(repair_flag(FsckRepair::Yes), Some(c"-y"));
        assert_eq!(repair_flag(FsckRepair::No), Some(c"-n"));
        assert_eq!(repair_flag(FsckRepair::None), None);
    }
}
