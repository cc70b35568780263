//! Kernel command line (SPEC §3).
//!
//! Unlike upstream, which matches by prefix and by substring of the whole line (reference §2.1),
//! keys here match exactly: `rd.immucore.debugrw` does not turn on `rd.immucore.debug`, and a
//! `netboot` inside some other token does not select live mode. Quoting follows the kernel: a
//! double quote may wrap spaces, anywhere in the token; the quotes themselves are dropped.
//!
//! A repeated key: `root=` and `cos-img/filename=` take their LAST value, as the kernel, dracut
//! and systemd read `root=` (this is how an entry is overridden at the bootloader prompt); every
//! other key takes its first value, and its `rd.immucore.*` spelling beats `rd.cos.*` whatever
//! the order. An empty value (`key=`) counts as absent. `KEYS` says it key by key. Volumes
//! (`rd.cos.mount=` ones, then `rd.immucore.mount=`) are kept up to 16; an invalid one, and
//! each one beyond 16, is skipped with a warning naming it.
//!
//! [`parse`] runs in three phases: `tokenize` splits the line into tokens, `collect` files
//! each token under its key, and `resolve` turns what was collected into a [`Cmdline`].

use crate::config::path::{check_path, normalize, normalize_device};
use crate::util::fixed::{hex_pair, parse_u64, utf8_valid_up_to, List, Text};
use crate::util::words::{is_word_of, lookup, word_index};

/// Longest command line accepted (the kernel's own limit on x86 is 2048, other arches 4096).
pub const MAX_CMDLINE: usize = 4096;
const MAX_MOUNTS: usize = 16;
/// Backing of `/run/overlay` when neither the command line nor the layout names one.
pub const DEFAULT_OVERLAY: &[u8] = b"tmpfs:20%";
/// The end of the warning for a refused overlay value (`number_warnings_name_their_defaults`
/// checks that it names `DEFAULT_OVERLAY`).
const USING_DEFAULT_OVERLAY: &[u8] = b", using tmpfs:20%";

/// Numeric keys: the smallest value accepted, the default, and the warning for anything else
/// (which names the default).
struct NumberRule {
    min: u32,
    default: u32,
    bad: &'static [u8],
}
const OEM_TIMEOUT_S: NumberRule = NumberRule {
    min: 0,
    default: 5,
    bad: b"not a number, using 5",
};
#[cfg(any(feature = "service", feature = "live"))]
const SYSROOT_WAIT_S: NumberRule = NumberRule {
    min: 1,
    default: 120,
    bad: b"not a positive number, using 120",
};

/// Which system the command line boots (reference §3.2/§3.3).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum BootState {
    Active,
    Passive,
    Recovery,
    AutoReset,
    Live,
    Unknown,
}

impl BootState {
    /// Appends the name of the `/run/cos/<sentinel>` file announcing the state to the booted
    /// system: `<name>_mode`, or `unknown`.
    pub fn push_sentinel<const N: usize>(self, out: &mut Text<N>) {
        out.push_lossy(self.name().as_bytes());
        if self != BootState::Unknown {
            out.push_lossy(b"_mode");
        }
    }

    /// Label of the partition holding the image files.
    pub fn images_label(self) -> Option<&'static str> {
        match self {
            BootState::Active | BootState::Passive => Some("COS_STATE"),
            BootState::Recovery | BootState::AutoReset => Some("COS_RECOVERY"),
            BootState::Live | BootState::Unknown => None,
        }
    }

    /// Filesystem label inside the root image.
    pub fn root_label(self) -> Option<&'static str> {
        match self {
            BootState::Active => Some("COS_ACTIVE"),
            BootState::Passive => Some("COS_PASSIVE"),
            BootState::Recovery | BootState::AutoReset => Some("COS_SYSTEM"),
            BootState::Live | BootState::Unknown => None,
        }
    }

    /// Sub-directory of the sysext/confext stores used in this state.
    pub fn extension_dir(self) -> Option<&'static str> {
        match self {
            BootState::Active | BootState::Passive | BootState::Recovery => Some(self.name()),
            BootState::AutoReset => Some(BootState::Recovery.name()),
            BootState::Live | BootState::Unknown => None,
        }
    }

    /// The state's name in the log: the sentinel without its `_mode`.
    pub fn name(self) -> &'static str {
        match self {
            BootState::Active => "active",
            BootState::Passive => "passive",
            BootState::Recovery => "recovery",
            BootState::AutoReset => "autoreset",
            BootState::Live => "live",
            BootState::Unknown => "unknown",
        }
    }
}

/// `rd.immucore.verity=`: whether the root image is put under dm-verity.
#[cfg(feature = "verity")]
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Verity {
    /// Verified when a root hash is available (`roothash=` or `<image>.roothash`).
    Auto,
    /// A root image without a root hash is refused.
    Required,
    Off,
}

/// Normal boot from an image, or live/disabled (reference §7.3).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Mode {
    Normal,
    Live,
}

/// `fsck.mode=` as systemd-fsck reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum FsckMode {
    Auto,
    Skip,
    Force,
}

/// `fsck.repair=`: `Preen` → `-a`, `Yes` → `-y`, `No` → `-n`, `None` → no flag.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum FsckRepair {
    Preen,
    Yes,
    No,
    None,
}

/// Everything the command line configures, with defaults applied.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub struct Cmdline {
    pub mode: Mode,
    pub state: BootState,
    /// `cos-img/filename=` (the last one), normalized; empty when absent. A name without the
    /// leading `/` is read from the top of the images partition, as upstream joins it.
    pub image: Text<256>,
    /// Empty: the caller looks for a `COS_OEM` filesystem.
    pub oem_label: Text<64>,
    pub oem_timeout_s: u32,
    /// Backing of `/run/overlay`, always valid for [`overlay_backing`].
    pub overlay: Text<128>,
    /// Valid `<device>:<mountpoint>` specs as given: `rd.cos.mount=` ones, then
    /// `rd.immucore.mount=`; at most 16, the surplus skipped with a warning naming it.
    pub mounts: List<2048, MAX_MOUNTS>,
    pub debugrw: bool,
    pub debug: bool,
    pub reboot_on_failure: bool,
    /// `rd.immucore.sysrootwait=` (read with the `service` feature, 0 without).
    pub sysroot_wait_s: u32,
    pub fsck_mode: FsckMode,
    /// `fsck.repair=` (read with the `fsck` feature, `Preen` without).
    pub fsck_repair: FsckRepair,
    /// `init=`; empty: the caller tries its fallbacks.
    pub init: Text<256>,
    pub shell_allowed: bool,
    /// `rd.immucore.fallback`: an unusable image falls back active -> passive -> recovery.
    #[cfg(feature = "fallback")]
    pub fallback: bool,
    /// `roothash=` as given (the verity step checks it); empty when absent.
    #[cfg(feature = "verity")]
    pub roothash: Text<128>,
    #[cfg(feature = "verity")]
    pub verity: Verity,
    /// `systemd.verity_root_options=` as given (the verity step checks it).
    #[cfg(feature = "verity")]
    pub verity_options: Text<256>,
    /// `rd.immucore.bootassessment`: Kairos' boot assessment in the initramfs
    /// (`steps::assessment`).
    #[cfg(feature = "bootassessment")]
    pub boot_assessment: bool,
    /// `root=live:...` and dracut dmsquash-live's keys (feature `live`).
    #[cfg(feature = "live")]
    pub live: LiveRoot,
    /// `root=bootc-live:<source>`: the source (an archive path, or `<device>:<path>`); empty
    /// when the root is not an OCI archive. The other bootc-live keys are read by the step
    /// itself (`steps::oci`), with dracut's semantics.
    #[cfg(feature = "oci")]
    pub bootc_source: Text<256>,
    /// Upstream keys present on this command line that we do not implement (for a debug line).
    pub ignored: List<1024, 16>,
    /// Tolerated problems, as messages for the log.
    pub warnings: List<1024, 8>,
}

/// A command line we refuse: `reason`, and the offending token (cut to 64 bytes).
#[derive(Clone, PartialEq)]
#[cfg_attr(test, derive(Debug))]
pub struct CmdlineError {
    pub reason: &'static str,
    pub token: Text<64>,
}

fn error(reason: &'static str, token: &[u8]) -> CmdlineError {
    let mut e = CmdlineError {
        reason,
        token: Text::EMPTY,
    };
    e.token.push_lossy(token);
    e
}

// ---------------------------------------------------------------------------------------------
// The keys

/// Where a single-valued key's value goes (one per `Cmdline` setting; two spellings of a key
/// share one).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
enum Slot {
    Root,
    Image,
    OemLabel,
    OemTimeout,
    Overlay,
    SysrootWait,
    FsckMode,
    FsckRepair,
    Shell,
    Init,
    #[cfg(feature = "verity")]
    RootHash,
    #[cfg(feature = "verity")]
    Verity,
    #[cfg(feature = "verity")]
    VerityOptions,
    #[cfg(feature = "live")]
    LiveDir,
    #[cfg(feature = "live")]
    LiveImage,
    #[cfg(feature = "live")]
    LiveOverlaySize,
    #[cfg(feature = "live")]
    RootFlags,
}

/// Which value of a repeated key counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wins {
    First,
    Last,
}
use Wins::{First, Last};

/// How a spelling ranks: a value of a higher rank beats any value of a lower one, whatever the
/// order on the line.
const RD_COS: u8 = 1;
const RD_IMMUCORE: u8 = 2;
/// A key with a single spelling.
const ONLY: u8 = 1;

/// What a value longer than `limit` bytes does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overlong {
    /// Refuses the command line ("value too long"): cut, the value would name something else.
    Refused,
    /// Nothing special: the key's own check judges the whole value (a number too large, a
    /// word we do not know) and warns, quoting at most `limit` bytes of it.
    Judged,
}
use Overlong::{Judged, Refused};

/// An effect of a bare key (its value, if any, is not read).
#[derive(Clone, Copy)]
enum Flag {
    DebugRw,
    Debug,
    RebootOnFailure,
    /// Live mode: immucore mounts nothing of its own.
    Disable,
    Reset,
    RecoveryMode,
    #[cfg(feature = "fallback")]
    Fallback,
    #[cfg(feature = "bootassessment")]
    BootAssessment,
    /// `rd.live.ram` (its value is read: `=0`, `=no`, `=off` turn it off, as dracut's getargbool).
    #[cfg(feature = "live")]
    LiveRam,
    /// dracut's overlayfs switches (`rd.live.overlay.overlayfs`, `rd.overlayfs`, `rd.overlay`):
    /// accepted, overlayfs is the only mode of immucore's live roots.
    #[cfg(feature = "live")]
    Overlayfs,
}

/// Which list a volume spec goes to: upstream merges every `rd.cos.mount=` before every
/// `rd.immucore.mount=`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MountList {
    Cos,
    Immucore,
}

/// What a key sets.
#[derive(Clone, Copy)]
enum Sets {
    /// A single value: its slot, the rank of this spelling, which repeated value counts, its
    /// longest value in bytes (for kept values, the capacity of the `Cmdline` field) and what a
    /// longer one does.
    Value {
        slot: Slot,
        rank: u8,
        wins: Wins,
        limit: u16,
        overlong: Overlong,
    },
    /// One more volume spec (refused without the `cmdline-mounts` feature).
    #[cfg_attr(not(feature = "cmdline-mounts"), allow(dead_code))]
    Mount(MountList),
    Flag(Flag),
    /// An upstream feature out of scope (UKI, in-RAM, remote config): named in a debug line.
    OutOfScope,
    /// A key of a cargo feature this build lacks, whose silent absence would be unsafe (a
    /// verified boot asked for): the command line is refused, naming why.
    #[cfg_attr(feature = "verity", allow(dead_code))]
    NeedsFeature(Needs),
}

/// A cargo feature that a key needs (`Sets::NeedsFeature`). Field-less rather than the refusal
/// text: `Sets` stays 8 bytes and a row of `KEYS` 24 instead of 40 (qemu/size-lore.md).
#[derive(Clone, Copy)]
enum Needs {
    #[cfg_attr(feature = "verity", allow(dead_code))]
    Verity,
}

impl Needs {
    /// Why a build without the feature refuses the key.
    fn refusal(self) -> &'static str {
        match self {
            Needs::Verity => VERITY_MISSING,
        }
    }
}

/// A key `parse` knows, and what it sets.
struct KeySpec {
    name: &'static str,
    sets: Sets,
}

/// A row of [`KEYS`] for a single-valued key.
const fn value(
    name: &'static str,
    slot: Slot,
    rank: u8,
    wins: Wins,
    limit: usize,
    overlong: Overlong,
) -> KeySpec {
    // Evaluated at compile time: a limit that does not fit fails the build.
    assert!(limit <= u16::MAX as usize, "limit too large");
    let limit = limit as u16;
    let sets = Sets::Value {
        slot,
        rank,
        wins,
        limit,
        overlong,
    };
    KeySpec { name, sets }
}

const fn mount(name: &'static str, list: MountList) -> KeySpec {
    let sets = Sets::Mount(list);
    KeySpec { name, sets }
}

const fn flag(name: &'static str, flag: Flag) -> KeySpec {
    let sets = Sets::Flag(flag);
    KeySpec { name, sets }
}

/// A row for a key of a feature this build lacks (see `Sets::NeedsFeature`).
#[cfg_attr(feature = "verity", allow(dead_code))]
const fn needs_feature(name: &'static str, needs: Needs) -> KeySpec {
    let sets = Sets::NeedsFeature(needs);
    KeySpec { name, sets }
}

const fn out_of_scope(name: &'static str) -> KeySpec {
    let sets = Sets::OutOfScope;
    KeySpec { name, sets }
}

/// Every key `parse` knows (and, like `kairos.ram`, each `kairos.ram.*` option is out of
/// scope). Single values: name, slot, rank, which repeated value wins, limit, what a longer
/// value does. (A table rather than a `match` on byte strings, which compiles to a long chain
/// of inline comparisons: about 8 KB of code, see size-report.md.)
#[rustfmt::skip]
const KEYS: &[KeySpec] = &[
    //    name                       slot               rank         wins   limit        overlong
    value("root",                    Slot::Root,        ONLY,        Last,  MAX_CMDLINE, Refused),
    value("cos-img/filename",        Slot::Image,       ONLY,        Last,  256,         Refused),
    value("rd.immucore.oemlabel",    Slot::OemLabel,    RD_IMMUCORE, First, 64,          Refused),
    value("rd.cos.oemlabel",         Slot::OemLabel,    RD_COS,      First, 64,          Refused),
    value("rd.immucore.oemtimeout",  Slot::OemTimeout,  RD_IMMUCORE, First, 24,          Judged),
    value("rd.cos.oemtimeout",       Slot::OemTimeout,  RD_COS,      First, 24,          Judged),
    value("rd.immucore.overlay",     Slot::Overlay,     RD_IMMUCORE, First, 128,         Refused),
    value("rd.cos.overlay",          Slot::Overlay,     RD_COS,      First, 128,         Refused),
    value("rd.immucore.sysrootwait", Slot::SysrootWait, ONLY,        First, 24,          Judged),
    value("fsck.mode",               Slot::FsckMode,    ONLY,        First, 8,           Judged),
    value("fsck.repair",             Slot::FsckRepair,  ONLY,        First, 8,           Judged),
    value("rd.shell",                Slot::Shell,       ONLY,        First, 8,           Judged),
    value("init",                    Slot::Init,        ONLY,        First, 256,         Refused),
    #[cfg(feature = "verity")]
    value("roothash",                Slot::RootHash,    ONLY,        First, 128,         Refused),
    #[cfg(feature = "verity")]
    value("rd.immucore.verity",      Slot::Verity,      ONLY,        First, 16,          Judged),
    #[cfg(feature = "verity")]
    value("systemd.verity_root_options", Slot::VerityOptions, ONLY,  First, 256,         Refused),
    // Without the feature a verified boot cannot happen: refused, never booted unverified.
    #[cfg(not(feature = "verity"))]
    needs_feature("roothash",            Needs::Verity),
    #[cfg(not(feature = "verity"))]
    needs_feature("rd.immucore.verity",  Needs::Verity),
    // dracut's getarg: the last value of a repeated key counts.
    #[cfg(feature = "live")]
    value("rd.live.dir",             Slot::LiveDir,     ONLY,        Last,  128,         Refused),
    #[cfg(feature = "live")]
    value("rd.live.squashimg",       Slot::LiveImage,   ONLY,        Last,  128,         Refused),
    #[cfg(feature = "live")]
    value("rd.live.overlay.size",    Slot::LiveOverlaySize, ONLY,    Last,  24,          Judged),
    #[cfg(feature = "live")]
    value("rootflags",               Slot::RootFlags,   ONLY,        Last,  128,         Refused),
    #[cfg(feature = "live")]
    flag("rd.live.ram",                  Flag::LiveRam),
    #[cfg(feature = "live")]
    flag("rd.live.overlay.overlayfs",    Flag::Overlayfs),
    #[cfg(feature = "live")]
    flag("rd.overlayfs",                 Flag::Overlayfs),
    #[cfg(feature = "live")]
    flag("rd.overlay",                   Flag::Overlayfs),
    mount("rd.cos.mount",                MountList::Cos),
    mount("rd.immucore.mount",           MountList::Immucore),
    flag("rd.cos.debugrw",               Flag::DebugRw),
    flag("rd.immucore.debugrw",          Flag::DebugRw),
    flag("rd.immucore.debug",            Flag::Debug),
    flag("rd.immucore.rebootonfailure",  Flag::RebootOnFailure),
    flag("rd.cos.disable",               Flag::Disable),
    flag("rd.immucore.disable",          Flag::Disable),
    flag("netboot",                      Flag::Disable),
    flag("kairos.reset",                 Flag::Reset),
    flag("recovery-mode",                Flag::RecoveryMode),
    // Without the feature the key is unknown, and an unusable image stops the boot as it
    // would without the key (no row: the tiny build has no bytes for one).
    #[cfg(feature = "fallback")]
    flag("rd.immucore.fallback",         Flag::Fallback),
    #[cfg(feature = "bootassessment")]
    flag("rd.immucore.bootassessment",   Flag::BootAssessment),
    out_of_scope("rd.immucore.uki"),
    out_of_scope("rd.immucore.securebootdisabled"),
    out_of_scope("kairos.config_url"),
    out_of_scope("cos.setup"),
    out_of_scope("kairos.ram"),
    // A build without the watchdog feature names the key in its "not supported" line.
    #[cfg(not(feature = "watchdog"))]
    out_of_scope("rd.immucore.watchdog"),
];

/// dracut's boolean words for "off".
const OFF: &[u8] = b"0 no off";

/// Why a build without the `verity` feature refuses `roothash=` and `rd.immucore.verity=`.
const VERITY_MISSING: &str =
    "dm-verity asked for, but this build lacks the verity feature: refusing to boot unverified";

/// What `key` sets; `None` for a key `parse` does not know.
fn key_spec(key: &[u8]) -> Option<Sets> {
    match KEYS.iter().find(|spec| spec.name.as_bytes() == key) {
        Some(spec) => Some(spec.sets),
        None if key.starts_with(b"kairos.ram.") => Some(Sets::OutOfScope),
        None => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: tokenize

/// Where a token, key or value lies in [`Collected::line`].
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
struct Span {
    // `u16`: a line is at most `MAX_CMDLINE` (4096) bytes, and a smaller `Choice` is copied
    // with less code.
    start: u16,
    len: u16,
}

impl Span {
    /// The bytes of `line` the span covers.
    fn of(self, line: &[u8]) -> &[u8] {
        let start = usize::from(self.start);
        line.get(start..start + usize::from(self.len))
            .unwrap_or(&[])
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Splits the next token off `rest` the way the kernel does (a double quote may wrap spaces,
/// anywhere in the token) and appends it without its quotes to `line` at `used`. Returns where
/// the unquoted token lies, or the raw token when its quote is never closed; `None` at the end
/// of the line. `line` holds any line of at most `MAX_CMDLINE` bytes: unquoting never grows.
#[inline(never)]
fn tokenize<'a>(
    rest: &mut &'a [u8],
    line: &mut [u8; MAX_CMDLINE],
    used: &mut usize,
) -> Option<Result<Span, &'a [u8]>> {
    let skip = rest.iter().position(|&c| !is_space(c))?;
    let start = *used;
    let mut in_quote = false;
    let mut end = skip;
    for &c in rest.get(skip..).unwrap_or(&[]) {
        if is_space(c) && !in_quote {
            break;
        }
        end += 1;
        if c == b'"' {
            in_quote = !in_quote;
        } else if let Some(slot) = line.get_mut(*used) {
            *slot = c;
            *used += 1;
        }
    }
    let raw = rest.get(skip..end).unwrap_or(&[]);
    *rest = rest.get(end..).unwrap_or(&[]);
    if in_quote {
        return Some(Err(raw));
    }
    let len = *used - start;
    // Both at most MAX_CMDLINE: they fit a u16.
    let (start, len) = (start as u16, len as u16);
    Some(Ok(Span { start, len }))
}

// ---------------------------------------------------------------------------------------------
// Phase 2: collect

/// The value chosen so far for a slot: where its key (the spelling used) and value lie, and
/// what the row of that spelling says about its length. `rank` 0: absent.
#[derive(Clone, Copy)]
struct Choice {
    rank: u8,
    key: Span,
    value: Span,
    limit: u16,
    overlong: Overlong,
}

/// All zero bytes (only `rank` counts while absent; `Refused` is the first variant), so the
/// choices start cleared at once instead of copied from a table: 170 bytes less code.
const ABSENT: Choice = Choice {
    rank: 0,
    key: Span { start: 0, len: 0 },
    value: Span { start: 0, len: 0 },
    limit: 0,
    overlong: Refused,
};

/// The choice of every slot.
#[derive(Clone, Copy)]
struct Choices {
    root: Choice,
    image: Choice,
    oem_label: Choice,
    oem_timeout: Choice,
    overlay: Choice,
    sysroot_wait: Choice,
    fsck_mode: Choice,
    fsck_repair: Choice,
    shell: Choice,
    init: Choice,
    #[cfg(feature = "verity")]
    root_hash: Choice,
    #[cfg(feature = "verity")]
    verity: Choice,
    #[cfg(feature = "verity")]
    verity_options: Choice,
    #[cfg(feature = "live")]
    live_dir: Choice,
    #[cfg(feature = "live")]
    live_image: Choice,
    #[cfg(feature = "live")]
    live_overlay_size: Choice,
    #[cfg(feature = "live")]
    rootflags: Choice,
}

impl Choices {
    fn slot(&mut self, slot: Slot) -> &mut Choice {
        match slot {
            Slot::Root => &mut self.root,
            Slot::Image => &mut self.image,
            Slot::OemLabel => &mut self.oem_label,
            Slot::OemTimeout => &mut self.oem_timeout,
            Slot::Overlay => &mut self.overlay,
            Slot::SysrootWait => &mut self.sysroot_wait,
            Slot::FsckMode => &mut self.fsck_mode,
            Slot::FsckRepair => &mut self.fsck_repair,
            Slot::Shell => &mut self.shell,
            Slot::Init => &mut self.init,
            #[cfg(feature = "verity")]
            Slot::RootHash => &mut self.root_hash,
            #[cfg(feature = "verity")]
            Slot::Verity => &mut self.verity,
            #[cfg(feature = "verity")]
            Slot::VerityOptions => &mut self.verity_options,
            #[cfg(feature = "live")]
            Slot::LiveDir => &mut self.live_dir,
            #[cfg(feature = "live")]
            Slot::LiveImage => &mut self.live_image,
            #[cfg(feature = "live")]
            Slot::LiveOverlaySize => &mut self.live_overlay_size,
            #[cfg(feature = "live")]
            Slot::RootFlags => &mut self.rootflags,
        }
    }
}

/// The bare keys present.
#[derive(Clone, Copy, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Flags {
    debugrw: bool,
    debug: bool,
    reboot_on_failure: bool,
    disable: bool,
    reset: bool,
    recovery_mode: bool,
    #[cfg(feature = "fallback")]
    fallback: bool,
    #[cfg(feature = "bootassessment")]
    boot_assessment: bool,
    #[cfg(feature = "live")]
    live_ram: bool,
}

impl Flags {
    fn set(&mut self, flag: Flag) {
        let bit = match flag {
            Flag::DebugRw => &mut self.debugrw,
            Flag::Debug => &mut self.debug,
            Flag::RebootOnFailure => &mut self.reboot_on_failure,
            Flag::Disable => &mut self.disable,
            Flag::Reset => &mut self.reset,
            Flag::RecoveryMode => &mut self.recovery_mode,
            #[cfg(feature = "fallback")]
            Flag::Fallback => &mut self.fallback,
            #[cfg(feature = "bootassessment")]
            Flag::BootAssessment => &mut self.boot_assessment,
            #[cfg(feature = "live")]
            Flag::LiveRam => &mut self.live_ram,
            #[cfg(feature = "live")]
            Flag::Overlayfs => return,
        };
        *bit = true;
    }
}

/// What [`collect`] gathered for [`resolve`].
struct Collected {
    /// Every token without its quotes, back to back: the choices point into it.
    line: [u8; MAX_CMDLINE],
    used: usize,
    choices: Choices,
    flags: Flags,
    /// `rd.immucore.mount=` specs, appended to `Cmdline::mounts` at the end.
    #[cfg(feature = "cmdline-mounts")]
    late_mounts: List<2048, MAX_MOUNTS>,
}

/// No choice made yet.
const NO_CHOICES: Choices = Choices {
    root: ABSENT,
    image: ABSENT,
    oem_label: ABSENT,
    oem_timeout: ABSENT,
    overlay: ABSENT,
    sysroot_wait: ABSENT,
    fsck_mode: ABSENT,
    fsck_repair: ABSENT,
    shell: ABSENT,
    init: ABSENT,
    #[cfg(feature = "verity")]
    root_hash: ABSENT,
    #[cfg(feature = "verity")]
    verity: ABSENT,
    #[cfg(feature = "verity")]
    verity_options: ABSENT,
    #[cfg(feature = "live")]
    live_dir: ABSENT,
    #[cfg(feature = "live")]
    live_image: ABSENT,
    #[cfg(feature = "live")]
    live_overlay_size: ABSENT,
    #[cfg(feature = "live")]
    rootflags: ABSENT,
};

impl Collected {
    /// Nothing collected yet. (Not a constant: a constant that is not all zeros would be kept
    /// whole, line buffer and all, in the binary, to be copied.)
    fn new() -> Collected {
        Collected {
            line: [0; MAX_CMDLINE],
            used: 0,
            choices: NO_CHOICES,
            flags: Flags::default(),
            #[cfg(feature = "cmdline-mounts")]
            late_mounts: List::new(),
        }
    }

    // Out of line: inlined into its eight callers it costs more on x86_64 and riscv64
    // (qemu/size-lore.md).
    #[inline(never)]
    fn get(&self, span: Span) -> &[u8] {
        span.of(&self.line)
    }
}

/// Records an out-of-scope key once; the list only feeds a debug line, so a full one drops it.
fn note_ignored(ignored: &mut List<1024, 16>, key: &[u8]) {
    let _ = ignored.push_unique(key);
}

/// Adds `key=value: <reason><then>` to the warnings; a full warning list drops the message,
/// since warnings only inform.
#[inline(never)]
fn warn(warnings: &mut List<1024, 8>, key: &[u8], value: &[u8], reason: &[u8], then: &[u8]) {
    let mut msg: Text<200> = Text::new();
    let parts = [key, value, reason, then];
    crate::log::expand(b"{}={}: {}{}", &parts, &mut |b| msg.push_lossy(&[b]));
    let _ = warnings.push(msg.as_bytes());
}

/// Keeps a valid mount spec; an invalid one, or one more than 16, is skipped with a warning.
/// The error: the specs no longer fit in their bytes (the boot stops).
#[cfg(feature = "cmdline-mounts")]
fn add_mount(
    mounts: &mut List<2048, MAX_MOUNTS>,
    warnings: &mut List<1024, 8>,
    key: &[u8],
    value: &[u8],
) -> Result<(), CmdlineError> {
    let refused = match volume_spec(value) {
        Err(reason) => reason,
        Ok(_) if mounts.len() >= MAX_MOUNTS => "more than 16 mounts",
        Ok(_) => {
            return mounts
                .push(value)
                .map_err(|_| error("mount specs too long in total", value))
        }
    };
    warn(warnings, key, value, refused.as_bytes(), b", ignored");
    Ok(())
}

/// The key and value of `token` (`text`, its bytes): around its first `=`; without one the
/// whole token is the key and the value is empty.
fn split_at_equals(token: Span, text: &[u8]) -> (Span, Span) {
    // A position in the token, so at most MAX_CMDLINE: it fits a u16.
    let key_len = text.iter().position(|&c| c == b'=').unwrap_or(text.len()) as u16;
    let value_len = token.len.saturating_sub(key_len + 1);
    let key = Span {
        len: key_len,
        ..token
    };
    let value = Span {
        start: token.start + token.len - value_len,
        len: value_len,
    };
    (key, value)
}

/// Reads the command line (`body`, at most `MAX_CMDLINE` bytes) token by token into `col`:
/// the choice of each single-valued key, the flags, the mounts. Mounts, ignored keys and
/// warnings go straight to `c`. The error: an unterminated quote, or mount specs too long.
fn collect(body: &[u8], col: &mut Collected, c: &mut Cmdline) -> Result<(), CmdlineError> {
    let mut rest = body;
    while let Some(token) = tokenize(&mut rest, &mut col.line, &mut col.used) {
        let token = token.map_err(|raw| error("unterminated quote", raw))?;
        let (key, value) = split_at_equals(token, col.get(token));
        let Some(sets) = key_spec(col.get(key)) else {
            continue;
        };
        match sets {
            Sets::Value {
                slot,
                rank,
                wins,
                limit,
                overlong,
            } => {
                let choice = col.choices.slot(slot);
                let wins = match wins {
                    First => rank > choice.rank,
                    Last => rank >= choice.rank,
                };
                if value.len > 0 && wins {
                    *choice = Choice {
                        rank,
                        key,
                        value,
                        limit,
                        overlong,
                    };
                }
            }
            #[cfg(feature = "cmdline-mounts")]
            Sets::Mount(list) if value.len > 0 => {
                let mounts = match list {
                    MountList::Cos => &mut c.mounts,
                    MountList::Immucore => &mut col.late_mounts,
                };
                let (key, value) = (key.of(&col.line), value.of(&col.line));
                add_mount(mounts, &mut c.warnings, key, value)?;
            }
            #[cfg(not(feature = "cmdline-mounts"))]
            Sets::Mount(_) if value.len > 0 => {
                let why = "volumes on the command line need the cmdline-mounts feature, which this build lacks";
                return Err(error(why, col.get(token)));
            }
            Sets::Mount(_) => {}
            #[cfg(feature = "live")]
            Sets::Flag(Flag::LiveRam) => col.flags.live_ram = !is_word_of(OFF, col.get(value)),
            Sets::Flag(flag) => col.flags.set(flag),
            Sets::OutOfScope => note_ignored(&mut c.ignored, col.get(key)),
            // `rd.immucore.verity=off` asks for nothing this build lacks.
            Sets::NeedsFeature(_) if col.get(value) == b"off" => {}
            Sets::NeedsFeature(needs) => return Err(error(needs.refusal(), col.get(token))),
        }
    }
    #[cfg(feature = "cmdline-mounts")]
    for spec in col.late_mounts.iter() {
        add_mount(&mut c.mounts, &mut c.warnings, b"rd.immucore.mount", spec)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 3: resolve

/// Why `resolve` refuses the command line, and the offending text in [`Collected::line`].
type Refusal = (&'static str, Span);

/// A chosen value: the key spelling used, and the value.
struct Chosen<'a> {
    key: &'a [u8],
    value: &'a [u8],
}

impl Collected {
    /// The value chosen in `choice`, `None` when absent; a refused overlong value is an error.
    /// An overlong value that is judged comes back cut to its limit.
    fn chosen(&self, choice: &Choice) -> Result<Option<Chosen<'_>>, Refusal> {
        if choice.rank == 0 {
            return Ok(None);
        }
        let value = self.get(choice.value);
        let limit = usize::from(choice.limit);
        if value.len() > limit && choice.overlong == Refused {
            let whole = Span {
                len: choice.key.len + 1 + choice.value.len,
                ..choice.key
            };
            return Err(("value too long", whole));
        }
        Ok(Some(Chosen {
            key: self.get(choice.key),
            value: value.get(..limit).unwrap_or(value),
        }))
    }

    /// The value chosen in `choice` if `check` accepts it; otherwise a warning ending in
    /// `then`, and nothing.
    fn checked(
        &self,
        choice: &Choice,
        check: fn(&[u8]) -> Result<(), &'static str>,
        then: &[u8],
        warnings: &mut List<1024, 8>,
    ) -> Result<&[u8], Refusal> {
        let Some(Chosen { key, value }) = self.chosen(choice)? else {
            return Ok(&[]);
        };
        Ok(match check(value) {
            Ok(()) => value,
            Err(reason) => {
                warn(warnings, key, value, reason.as_bytes(), then);
                &[]
            }
        })
    }

    /// The number chosen in `choice`, or the default of `rule` with its warning when it is not
    /// one (or is below its minimum).
    fn number(
        &self,
        choice: &Choice,
        rule: &NumberRule,
        warnings: &mut List<1024, 8>,
    ) -> Result<u32, Refusal> {
        let Some(Chosen { key, value }) = self.chosen(choice)? else {
            return Ok(rule.default);
        };
        let whole = self.get(choice.value);
        Ok(match parse_u64(whole).and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= rule.min => n,
            _ => {
                warn(warnings, key, value, rule.bad, b"");
                rule.default
            }
        })
    }

    /// The word chosen in `choice` (empty when absent).
    fn word(&self, choice: &Choice) -> Result<&[u8], Refusal> {
        Ok(match self.chosen(choice)? {
            // The whole value: a cut one is no word we know.
            Some(_) => self.get(choice.value),
            None => &[],
        })
    }
}

/// Boot state and live flag named by a `root=` value: `[live:]LABEL=<l>`, `[live:]CDLABEL=<l>`
/// or `[live:]/dev/disk/by-label/<l>`.
fn root_state(value: &[u8]) -> (bool, Option<BootState>) {
    let (live, rest) = match value.strip_prefix(b"live:") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    const PREFIXES: [&str; 3] = ["LABEL=", "CDLABEL=", "/dev/disk/by-label/"];
    // The labels, and in `STATES` the state of each (words in one string, qemu/size-lore.md).
    const LABELS: &[u8] = b"COS_ACTIVE COS_PASSIVE COS_RECOVERY COS_SYSTEM";
    const STATES: [BootState; 4] = [
        BootState::Active,
        BootState::Passive,
        BootState::Recovery,
        BootState::Recovery,
    ];
    let label = PREFIXES
        .iter()
        .find_map(|p| rest.strip_prefix(p.as_bytes()));
    let state = label.and_then(|l| word_index(LABELS, l));
    (live, state.and_then(|i| STATES.get(i).copied()))
}

/// The image path of a `cos-img/filename=` value, normalized into `image`. Upstream joins the
/// value to the images partition's mount point, so `cOS/active.img` names `/cOS/active.img`.
fn image_path(value: &[u8], image: &mut Text<256>) -> Result<(), &'static str> {
    let mut absolute: Text<257> = Text::new();
    if value.first() != Some(&b'/') {
        absolute.push_lossy(b"/");
    }
    // Never cut: the value is at most 256 bytes (`KEYS`).
    absolute.push_lossy(value);
    normalize(absolute.as_bytes(), image)
}

/// Turns what `collect` gathered into the settings of `c`, defaults applied. The error: a
/// value that cannot be used and has no safe default (an image path that escapes, a value too
/// long to keep).
fn resolve(col: &Collected, c: &mut Cmdline) -> Result<(), Refusal> {
    let choices = &col.choices;
    #[cfg(feature = "oci")]
    resolve_bootc(col, c)?;
    if let Some(image) = col.chosen(&choices.image)? {
        // The error names the value as given.
        image_path(image.value, &mut c.image).map_err(|reason| (reason, choices.image.value))?;
    }
    let warnings = &mut c.warnings;
    let oem_then = b", looking for COS_OEM";
    let oem = col.checked(&choices.oem_label, check_tag, oem_then, warnings)?;
    c.oem_label.push_lossy(oem);
    let overlay_ok = |value: &[u8]| overlay_backing(value).map(drop);
    let overlay = col.checked(
        &choices.overlay,
        overlay_ok,
        USING_DEFAULT_OVERLAY,
        warnings,
    )?;
    c.overlay.push_lossy(match overlay {
        [] => DEFAULT_OVERLAY,
        spec => spec,
    });
    let init = col.checked(&choices.init, check_path, b", using the default", warnings)?;
    c.init.push_lossy(init);

    let flags = col.flags;
    let (root_live, root_boot_state) = match col.chosen(&choices.root)? {
        Some(root) => root_state(root.value),
        None => (false, None),
    };
    #[cfg(feature = "oci")]
    let root_live = root_live || !c.bootc_source.is_empty();
    c.mode = if flags.disable || root_live {
        Mode::Live
    } else {
        Mode::Normal
    };
    // Same order as upstream §3.2, with exact tokens instead of substrings: kairos.reset, then
    // the label in root=, then recovery-mode, then live mode.
    c.state = if flags.reset {
        BootState::AutoReset
    } else if let Some(state) = root_boot_state {
        state
    } else if flags.recovery_mode {
        BootState::Recovery
    } else if c.mode == Mode::Live {
        BootState::Live
    } else {
        BootState::Unknown
    };
    c.debugrw = flags.debugrw;
    c.debug = flags.debug;
    c.reboot_on_failure = flags.reboot_on_failure;
    #[cfg(feature = "fallback")]
    {
        c.fallback = flags.fallback;
    }
    #[cfg(feature = "bootassessment")]
    {
        c.boot_assessment = flags.boot_assessment;
    }

    c.oem_timeout_s = col.number(&choices.oem_timeout, &OEM_TIMEOUT_S, warnings)?;
    // Only the wait for a sysroot someone else assembles (service) and fsck use these.
    #[cfg(any(feature = "service", feature = "live"))]
    {
        c.sysroot_wait_s = col.number(&choices.sysroot_wait, &SYSROOT_WAIT_S, warnings)?;
    }
    const MODES: &[(&str, FsckMode)] = &[("skip", FsckMode::Skip), ("force", FsckMode::Force)];
    let mode = lookup(MODES, col.word(&choices.fsck_mode)?);
    c.fsck_mode = mode.unwrap_or(FsckMode::Auto);
    #[cfg(feature = "fsck")]
    {
        const REPAIRS: &[(&str, FsckRepair)] = &[
            ("", FsckRepair::Preen),
            ("preen", FsckRepair::Preen),
            ("yes", FsckRepair::Yes),
            ("no", FsckRepair::No),
        ];
        let repair = lookup(REPAIRS, col.word(&choices.fsck_repair)?);
        c.fsck_repair = repair.unwrap_or(FsckRepair::None);
    }
    let shell = col.word(&choices.shell)?;
    c.shell_allowed = !is_word_of(OFF, shell);
    #[cfg(feature = "verity")]
    resolve_verity(col, c)?;
    #[cfg(feature = "live")]
    resolve_live(col, c)?;
    Ok(())
}

/// `roothash=`, `rd.immucore.verity=` and `systemd.verity_root_options=`. The hash and the
/// options are kept as given: the verity step checks them, and a bad one is fatal there.
#[cfg(feature = "verity")]
fn resolve_verity(col: &Collected, c: &mut Cmdline) -> Result<(), Refusal> {
    let choices = &col.choices;
    if let Some(hash) = col.chosen(&choices.root_hash)? {
        c.roothash.push_lossy(hash.value);
    }
    if let Some(options) = col.chosen(&choices.verity_options)? {
        c.verity_options.push_lossy(options.value);
    }
    const MODES: &[(&str, Verity)] = &[
        ("", Verity::Auto),
        ("auto", Verity::Auto),
        ("required", Verity::Required),
        ("off", Verity::Off),
    ];
    c.verity = match lookup(MODES, col.word(&choices.verity)?) {
        Some(mode) => mode,
        None => {
            let value = col.get(choices.verity.value);
            let reason = b"not one of required, auto, off";
            warn(
                &mut c.warnings,
                b"rd.immucore.verity",
                value,
                reason,
                b", using auto",
            );
            Verity::Auto
        }
    };
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Live roots (feature `live`): dracut dmsquash-live's keys

/// `rd.live.dir=` when absent (dracut's default).
#[cfg(feature = "live")]
pub const LIVE_DIR: &[u8] = b"LiveOS";
/// `rd.live.squashimg=` when absent (dracut's default).
#[cfg(feature = "live")]
pub const LIVE_IMAGE: &[u8] = b"squashfs.img";
/// `rd.live.overlay.size=`: MiB, as dracut reads it; 0 (absent or refused) means the default.
#[cfg(feature = "live")]
const LIVE_OVERLAY_MIB: NumberRule = NumberRule {
    min: 1,
    default: 0,
    bad: b"not a positive number of MiB, using the default (50% of RAM)",
};

/// What `root=live:<source>` and dmsquash-live's keys ask for.
#[cfg(feature = "live")]
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub struct LiveRoot {
    /// What follows `root=live:` (`CDLABEL=x`, `LABEL=x`, `/dev/sr0`, `/rootfs.squashfs`, a
    /// URL...), as given; empty when `root=` names no live root. The live steps judge it.
    pub source: Text<256>,
    /// The image's path on the medium: `rd.live.dir=` + `/` + `rd.live.squashimg=`, normalized.
    pub image: Text<256>,
    /// `rd.live.ram`: the image is copied into RAM before it is mounted.
    pub ram: bool,
    /// `rd.live.overlay.size=` in MiB; 0: the default.
    pub overlay_mib: u32,
    /// `rootflags=`: extra options of the image mount.
    pub rootflags: Text<128>,
}

#[cfg(feature = "live")]
impl LiveRoot {
    const NONE: LiveRoot = LiveRoot {
        source: Text::EMPTY,
        image: Text::EMPTY,
        ram: false,
        overlay_mib: 0,
        rootflags: Text::EMPTY,
    };
}

/// Fills `c.live` from `root=live:...`, `rd.live.*` and `rootflags=`.
#[cfg(feature = "live")]
fn resolve_live(col: &Collected, c: &mut Cmdline) -> Result<(), Refusal> {
    let choices = &col.choices;
    let live = &mut c.live;
    if let Some(root) = col.chosen(&choices.root)? {
        if let Some(source) = root.value.strip_prefix(b"live:") {
            live.source
                .push(source)
                .map_err(|_| ("live root source too long", choices.root.value))?;
        }
    }
    let dir = col.chosen(&choices.live_dir)?.map_or(LIVE_DIR, |d| d.value);
    let name = col
        .chosen(&choices.live_image)?
        .map_or(LIVE_IMAGE, |n| n.value);
    // `/` + dir + `/` + name: at most 259 bytes, normalized to at most 256 (or refused).
    let mut joined = Text::<260>::new();
    for part in [b"/".as_slice(), dir, b"/", name] {
        joined.push_lossy(part);
    }
    let bad = if choices.live_image.rank > 0 {
        choices.live_image.value
    } else {
        choices.live_dir.value
    };
    normalize(joined.as_bytes(), &mut live.image).map_err(|reason| (reason, bad))?;
    live.ram = col.flags.live_ram;
    live.overlay_mib = col.number(
        &choices.live_overlay_size,
        &LIVE_OVERLAY_MIB,
        &mut c.warnings,
    )?;
    if let Some(flags) = col.chosen(&choices.rootflags)? {
        live.rootflags.push_lossy(flags.value);
    }
    Ok(())
}

/// `root=bootc-live:<source>`: keeps the source, which makes the boot a live one (immucore
/// assembles the root from the archive; no image file, no overlays).
#[cfg(feature = "oci")]
fn resolve_bootc(col: &Collected, c: &mut Cmdline) -> Result<(), Refusal> {
    let choices = &col.choices;
    let Some(root) = col.chosen(&choices.root)? else {
        return Ok(());
    };
    let Some(source) = root.value.strip_prefix(b"bootc-live:") else {
        return Ok(());
    };
    if source.is_empty() || c.bootc_source.push(source).is_err() {
        return Err((
            "root=bootc-live: needs a source of at most 256 bytes",
            choices.root.value,
        ));
    }
    Ok(())
}

/// Calls `f` with each token of the command line, unquoted as the kernel does (for the keys a
/// step reads itself, with its own semantics: `steps::oci`).
#[cfg(feature = "oci")]
pub fn for_each_token(text: &[u8], f: &mut dyn FnMut(&[u8])) {
    let mut line = [0u8; MAX_CMDLINE];
    let mut rest = text.get(..MAX_CMDLINE.min(text.len())).unwrap_or(text);
    let mut used = 0;
    while let Some(token) = tokenize(&mut rest, &mut line, &mut used) {
        match token {
            Ok(span) => f(span.of(&line)),
            Err(raw) => f(raw),
        }
    }
}

/// Parses the command line (`/proc/cmdline` contents, trailing newline allowed). Not inlined:
/// its one caller, `main`, is so large that the inlined copy needs more code.
#[inline(never)]
pub fn parse(text: &[u8]) -> Result<Cmdline, CmdlineError> {
    // Without a trailing newline (by hand: `strip_suffix` would be one more generic instance).
    let newline = usize::from(text.last() == Some(&b'\n'));
    let body = text.get(..text.len() - newline).unwrap_or(text);
    if body.len() > MAX_CMDLINE {
        return Err(error("command line too long", body));
    }
    // Every field `resolve` decides is set there; these are only its starting zeros.
    let mut c = Cmdline {
        mode: Mode::Normal,
        state: BootState::Active,
        image: Text::EMPTY,
        oem_label: Text::EMPTY,
        oem_timeout_s: 0,
        overlay: Text::EMPTY,
        mounts: List::new(),
        debugrw: false,
        debug: false,
        reboot_on_failure: false,
        sysroot_wait_s: 0,
        fsck_mode: FsckMode::Auto,
        fsck_repair: FsckRepair::Preen,
        init: Text::EMPTY,
        shell_allowed: false,
        #[cfg(feature = "fallback")]
        fallback: false,
        #[cfg(feature = "verity")]
        roothash: Text::EMPTY,
        #[cfg(feature = "verity")]
        verity: Verity::Auto,
        #[cfg(feature = "verity")]
        verity_options: Text::EMPTY,
        #[cfg(feature = "bootassessment")]
        boot_assessment: false,
        #[cfg(feature = "live")]
        live: LiveRoot::NONE,
        #[cfg(feature = "oci")]
        bootc_source: Text::EMPTY,
        ignored: List::new(),
        warnings: List::new(),
    };
    let mut col = Collected::new();
    collect(body, &mut col, &mut c)?;
    resolve(&col, &mut c).map_err(|(reason, token)| error(reason, col.get(token)))?;
    Ok(c)
}

/// How a device is named.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum DeviceKind {
    Label,
    Uuid,
    PartLabel,
    PartUuid,
    Path,
}

impl DeviceKind {
    /// `LABEL`, `UUID`, `PARTLABEL` or `PARTUUID` (`LABEL=x`...); `""` for a path.
    pub fn tag(self) -> &'static str {
        match self {
            DeviceKind::Label => "LABEL",
            DeviceKind::Uuid => "UUID",
            DeviceKind::PartLabel => "PARTLABEL",
            DeviceKind::PartUuid => "PARTUUID",
            DeviceKind::Path => "",
        }
    }
}

/// A block device as configured: `LABEL=x`, `UUID=x`, `PARTLABEL=x`, `PARTUUID=x` or `/dev/...`
/// (which may contain `:`, as every `/dev/disk/by-path` name does).
#[derive(Clone, PartialEq)]
#[cfg_attr(test, derive(Debug))]
pub struct Device {
    pub kind: DeviceKind,
    /// The tag value, or the normalized `/dev/...` path.
    pub value: Text<128>,
}

/// Longest `/dev/disk/by-*/` directory prefix (`/dev/disk/by-partlabel/`).
const BY_DIR_MAX: usize = 23;

/// Bytes udev keeps as they are in `/dev/disk/by-*` names; every other byte is written `\xNN`
/// (blkid's `blkid_encode_string`; bytes of multibyte UTF-8 characters stay as they are).
fn is_plain_in_by_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&c) || c >= 0x80
}

/// A tag value names a file under `/dev/disk/by-*`: it must not name the directory itself or
/// its parent, and must fit a `Text<192>` once encoded the udev way.
fn check_tag(value: &[u8]) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty label or id");
    }
    if value == b"." || value == b".." {
        return Err("label or id is . or ..");
    }
    if value
        .iter()
        .any(|&c| c < b' ' || c == 0x7f || c == b'\\' || c == b'"')
    {
        return Err("label or id contains a control character, quote or backslash");
    }
    if utf8_valid_up_to(value) != value.len() {
        return Err("label or id is not UTF-8");
    }
    let encoded: usize = value
        .iter()
        .map(|&c| if is_plain_in_by_name(c) { 1 } else { 4 })
        .sum();
    if encoded + BY_DIR_MAX > 192 || value.len() > 128 {
        return Err("label or id too long");
    }
    Ok(())
}

impl Device {
    pub fn parse(spec: &[u8]) -> Result<Device, &'static str> {
        const TAGGED: [DeviceKind; 4] = [
            DeviceKind::Label,
            DeviceKind::Uuid,
            DeviceKind::PartLabel,
            DeviceKind::PartUuid,
        ];
        let mut device = Device {
            kind: DeviceKind::Path,
            value: Text::EMPTY,
        };
        if let Some((value, kind)) = TAGGED.iter().find_map(|&kind| {
            // Prefixes as slices (`as_slice`) throughout: one `strip_prefix` instance for all
            // of them, not one more for each array length.
            let value = spec
                .strip_prefix(kind.tag().as_bytes())?
                .strip_prefix(b"=".as_slice())?;
            Some((value, kind))
        }) {
            check_tag(value)?;
            device.kind = kind;
            // Never cut: check_tag allows at most 128 bytes.
            device.value.push_lossy(value);
            return Ok(device);
        }
        if !spec.starts_with(b"/dev/") {
            return Err("unknown device (use LABEL=, UUID=, PARTLABEL=, PARTUUID= or /dev/...)");
        }
        let mut path = Text::new();
        normalize_device(spec, &mut path)?;
        // `/dev/`, `/dev/.` normalize to `/dev` itself: a directory, not a device node. (Any
        // other path starting with `/dev/` keeps that start: `..` is refused.)
        if path.as_bytes() == b"/dev" {
            return Err("no device name after /dev/");
        }
        device
            .value
            .push(path.as_bytes())
            .map_err(|_| "device path too long")?;
        Ok(device)
    }

    /// The device node path as udev names it (`LABEL=my data` → `/dev/disk/by-label/my\x20data`);
    /// also the fstab spec. `value` keeps the raw label for superblock comparisons.
    pub fn by_path(&self, out: &mut Text<192>) {
        out.clear();
        if self.kind == DeviceKind::Path {
            out.push_lossy(self.value.as_bytes());
            return;
        }
        // Always fits: check_tag bounds the encoded length. `LABEL` → `/dev/disk/by-label/`.
        out.push_lossy(b"/dev/disk/by-");
        for c in self.kind.tag().bytes() {
            out.push_lossy(&[c.to_ascii_lowercase()]);
        }
        out.push_lossy(b"/");
        for c in self.value.as_bytes() {
            let [high, low] = hex_pair(*c);
            let escaped = [b'\\', b'x', high, low];
            out.push_lossy(if is_plain_in_by_name(*c) {
                core::slice::from_ref(c)
            } else {
                &escaped
            });
        }
    }
}

/// Splits `<device>:<mountpoint>` (cmdline mounts and layout `VOLUMES`) at the last `:` that is
/// followed by `/`, where the absolute mount point starts: a mount point never has a `:`, so the
/// device before it may (`/dev/disk/by-path/pci-0000:00:1f.2-ata-1:/data`). The mount point
/// comes back normalized.
pub fn volume_spec(raw: &[u8]) -> Result<(Device, Text<256>), &'static str> {
    let colon = raw
        .windows(2)
        .rposition(|pair| pair == b":/")
        .ok_or("no mount point")?;
    let mut spec = (Device::parse(raw.get(..colon).unwrap_or(&[]))?, Text::new());
    normalize(raw.get(colon + 1..).unwrap_or(&[]), &mut spec.1)?;
    Ok(spec)
}

/// Backing store of `/run/overlay`.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub enum Backing<'a> {
    /// `tmpfs:<size>`, size as tmpfs `size=` takes it (`20%`, `512m`, `2G`).
    Tmpfs(&'a [u8]),
    Device(Device),
}

/// Parses `tmpfs:<size>` or a device spec (upstream knows `LABEL=` and `UUID=`; the other
/// device forms work as well).
pub fn overlay_backing(spec: &[u8]) -> Result<Backing<'_>, &'static str> {
    if let Some(size) = spec.strip_prefix(b"tmpfs:") {
        let digits = size.iter().take_while(|c| c.is_ascii_digit()).count();
        let unit = size.get(digits..).unwrap_or(&[]);
        let unit_ok = matches!(
            unit,
            [] | [b'k' | b'K' | b'm' | b'M' | b'g' | b'G' | b't' | b'T' | b'%']
        );
        if digits == 0 || !unit_ok {
            return Err("tmpfs size must be a number with an optional k, m, g, t or % suffix");
        }
        return Ok(Backing::Tmpfs(size));
    }
    Device::parse(spec).map(Backing::Device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warnings spell the defaults out (no formatting code): they must match the values.
    #[test]
    fn number_warnings_name_their_defaults() {
        #[cfg(feature = "service")]
        let rules = [&OEM_TIMEOUT_S, &SYSROOT_WAIT_S];
        #[cfg(not(feature = "service"))]
        let rules = [&OEM_TIMEOUT_S];
        for rule in rules {
            let end = std::format!("using {}", rule.default);
            assert!(rule.bad.ends_with(end.as_bytes()), "{}", rule.default);
        }
        assert!(USING_DEFAULT_OVERLAY.ends_with(DEFAULT_OVERLAY));
    }
    use std::vec::Vec;

    /// A build without the verity feature never boots unverified when a verified boot is
    /// asked for: `roothash=` and `rd.immucore.verity=` (but `off`) refuse the command line.
    #[cfg(not(feature = "verity"))]
    #[test]
    fn verity_keys_without_the_feature_are_refused() {
        for line in [
            "roothash=abcd",
            "rd.immucore.verity=required",
            "rd.immucore.verity=auto",
        ] {
            let e = parse(line.as_bytes()).unwrap_err();
            assert_eq!((e.reason, e.token.as_str()), (VERITY_MISSING, line));
        }
        assert!(parse(b"rd.immucore.verity=off root=LABEL=COS_ACTIVE").is_ok());
    }

    fn ok(line: &str) -> Cmdline {
        parse(line.as_bytes()).unwrap()
    }

    fn items<const B: usize, const I: usize>(list: &List<B, I>) -> Vec<&str> {
        list.iter_str().collect()
    }

    #[test]
    fn kairos_active_line() {
        let c = ok(
            "console=tty1 net.ifnames=1 rd.cos.oemlabel=COS_OEM rd.cos.oemtimeout=10 panic=5 \
                    rd.emergency=reboot rd.shell=0 systemd.crash_reboot=yes root=LABEL=COS_ACTIVE \
                    cos-img/filename=/cOS/active.img\n",
        );
        assert_eq!(c.mode, Mode::Normal);
        assert_eq!(c.state, BootState::Active);
        assert_eq!(c.image.as_str(), "/cOS/active.img");
        assert_eq!(c.oem_label.as_str(), "COS_OEM");
        assert_eq!(c.oem_timeout_s, 10);
        assert!(!c.shell_allowed);
        assert!(c.warnings.is_empty() && c.ignored.is_empty() && c.mounts.is_empty());
    }

    #[test]
    fn defaults() {
        let c = ok("");
        assert_eq!(c.mode, Mode::Normal);
        assert_eq!(c.state, BootState::Unknown);
        assert!(c.image.is_empty() && c.oem_label.is_empty() && c.init.is_empty());
        assert_eq!(c.oem_timeout_s, 5);
        assert_eq!(c.overlay.as_str(), "tmpfs:20%");
        #[cfg(feature = "service")]
        assert_eq!(c.sysroot_wait_s, 120);
        assert_eq!(c.fsck_mode, FsckMode::Auto);
        assert_eq!(c.fsck_repair, FsckRepair::Preen);
        assert!(!c.debugrw && !c.debug && !c.reboot_on_failure);
        assert!(c.shell_allowed);
        assert!(c.mounts.is_empty() && c.ignored.is_empty() && c.warnings.is_empty());
        assert_eq!(ok(" \t\n").state, BootState::Unknown);
    }

    #[test]
    fn quotes_may_wrap_spaces_anywhere_in_a_token() {
        let c = ok(r#"rd.cos.oemlabel="my oem" "init=/sbin/my init" rd.cos.overlay=tmpfs:"30%""#);
        assert_eq!(c.oem_label.as_str(), "my oem");
        assert_eq!(c.init.as_str(), ""); // spaces are refused in paths...
        assert_eq!(
            items(&c.warnings),
            ["init=/sbin/my init: contains a space, quote or backslash, using the default"]
        );
        assert_eq!(c.overlay.as_str(), "tmpfs:30%");
        let c = ok(r#""cos-img/filename=/cOS/a.img" x="a b c""#);
        assert_eq!(c.image.as_str(), "/cOS/a.img");
    }

    #[test]
    fn unterminated_quote_names_the_token() {
        let e = parse(br#"root=LABEL=COS_ACTIVE rd.cos.oemlabel="abc def"#).unwrap_err();
        assert_eq!(e.reason, "unterminated quote");
        assert_eq!(e.token.as_str(), r#"rd.cos.oemlabel="abc def"#);
        assert_eq!(parse(b"\"").unwrap_err().reason, "unterminated quote");
        // The trailing newline is not part of the line.
        let e = parse(b"x=\"a b\n").unwrap_err();
        assert_eq!(e.token.as_str(), "x=\"a b");
    }

    #[test]
    fn keys_match_exactly() {
        let c = ok("rd.immucore.debugrw rd.cos.oemlabelx=FOO rd.immucore.disabled xnetboot rd.cos.mountx=LABEL=a:/a \
                    kairos.resetx recovery-modes kairos.ram_experimental");
        assert!(c.debugrw);
        assert!(!c.debug);
        assert!(c.oem_label.is_empty());
        assert_eq!(c.mode, Mode::Normal);
        assert_eq!(c.state, BootState::Unknown);
        assert!(c.mounts.is_empty() && c.ignored.is_empty());
        let c = ok("rd.immucore.debug rd.cos.debugrw=1 rd.immucore.rebootonfailure");
        assert!(c.debug && c.debugrw && c.reboot_on_failure);
    }

    #[test]
    fn immucore_spelling_wins_and_first_non_empty_wins_except_root_and_image() {
        let c = ok("rd.cos.oemlabel=A rd.immucore.oemlabel= rd.immucore.oemlabel=B rd.cos.oemlabel=C rd.immucore.oemlabel=D");
        assert_eq!(c.oem_label.as_str(), "B");
        let c = ok("rd.cos.oemlabel= rd.cos.oemlabel rd.cos.oemlabel=A rd.cos.oemlabel=B");
        assert_eq!(c.oem_label.as_str(), "A");
        let c = ok("rd.immucore.overlay=tmpfs:1G rd.cos.overlay=tmpfs:2G rd.cos.oemtimeout=7 rd.immucore.oemtimeout=9");
        assert_eq!(c.overlay.as_str(), "tmpfs:1G");
        assert_eq!(c.oem_timeout_s, 9);
        // root= and cos-img/filename= take their last non-empty value (#17).
        let c = ok(
            "cos-img/filename= cos-img/filename=/cOS/passive.img cos-img/filename=/cOS/active.img",
        );
        assert_eq!(c.image.as_str(), "/cOS/active.img");
        let c = ok("root=LABEL=COS_PASSIVE cos-img/filename=/cOS/passive.img \
                    root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img cos-img/filename=");
        assert_eq!(
            (c.state, c.image.as_str()),
            (BootState::Active, "/cOS/active.img")
        );
        let c =
            ok("fsck.mode=skip fsck.mode=force fsck.repair= fsck.repair=no rd.shell=1 rd.shell=0");
        assert_eq!((c.fsck_mode, c.shell_allowed), (FsckMode::Skip, true));
        #[cfg(feature = "fsck")]
        assert_eq!(c.fsck_repair, FsckRepair::No);
    }

    /// Without the `cmdline-mounts` feature a volume on the command line stops the boot (a
    /// persistent store on it would otherwise be bound onto the image), naming the feature; an
    /// empty spec is still absent.
    #[test]
    #[cfg(not(feature = "cmdline-mounts"))]
    fn command_line_volumes_need_their_feature() {
        for line in [
            "rd.cos.mount=LABEL=d:/data",
            "root=LABEL=COS_ACTIVE rd.immucore.mount=LABEL=d:/d",
        ] {
            let e = parse(line.as_bytes()).err().unwrap();
            assert_eq!(e.reason, "volumes on the command line need the cmdline-mounts feature, which this build lacks");
            assert!(
                e.token.as_str().contains("mount=LABEL=d:/d"),
                "{}",
                e.token.as_str()
            );
        }
        assert!(ok("rd.cos.mount= root=LABEL=COS_ACTIVE").mounts.is_empty());
    }

    #[test]
    #[cfg(feature = "cmdline-mounts")]
    fn mounts_keep_order_cos_first() {
        let c = ok(
            "rd.immucore.mount=LABEL=i1:/i1 rd.cos.mount=LABEL=c1:/c1 rd.cos.mount= \
                    rd.immucore.mount=UUID=i2:/i2 rd.cos.mount=/dev/sdb1:/data",
        );
        assert_eq!(
            items(&c.mounts),
            [
                "LABEL=c1:/c1",
                "/dev/sdb1:/data",
                "LABEL=i1:/i1",
                "UUID=i2:/i2"
            ]
        );
    }

    #[test]
    #[cfg(feature = "cmdline-mounts")]
    fn invalid_mounts_are_warned_and_skipped() {
        let c = ok(
            "rd.immucore.mount=LABEL=x rd.cos.mount=LABEL:x:/mnt rd.cos.mount=LABEL=y:/a/../b \
                    rd.cos.mount=LABEL=..:/mnt rd.cos.mount=LABEL=ok:/ok",
        );
        assert_eq!(items(&c.mounts), ["LABEL=ok:/ok"]);
        assert_eq!(
            items(&c.warnings),
            [
                "rd.immucore.mount=LABEL=x: no mount point, ignored",
                "rd.cos.mount=LABEL:x:/mnt: unknown device (use LABEL=, UUID=, PARTLABEL=, PARTUUID= or /dev/...), ignored",
                "rd.cos.mount=LABEL=y:/a/../b: contains .., ignored",
                "rd.cos.mount=LABEL=..:/mnt: label or id is . or .., ignored",
            ]
        );
    }

    /// #16: the 17th mount and later are skipped with a warning naming each; the boot goes on.
    #[test]
    #[cfg(feature = "cmdline-mounts")]
    fn more_than_16_mounts_skip_the_surplus_with_a_warning() {
        let mut line = std::string::String::new();
        for i in 0..16 {
            line += &std::format!("rd.cos.mount=LABEL=d{i}:/m{i} ");
        }
        assert_eq!(ok(&line).mounts.len(), 16);
        let c = ok(&std::format!(
            "rd.immucore.mount=LABEL=x:/x {line} rd.cos.mount=LABEL=y:/y root=LABEL=COS_ACTIVE"
        ));
        assert_eq!(c.mounts.len(), 16);
        assert_eq!(c.mounts.get(15), Some(&b"LABEL=d15:/m15"[..]));
        assert_eq!(c.state, BootState::Active);
        assert_eq!(
            items(&c.warnings),
            [
                "rd.cos.mount=LABEL=y:/y: more than 16 mounts, ignored",
                "rd.immucore.mount=LABEL=x:/x: more than 16 mounts, ignored"
            ]
        );
        // rd.immucore.mount= specs fill what rd.cos.mount= ones leave.
        let mut line = std::string::String::new();
        for i in 0..10 {
            line +=
                &std::format!("rd.immucore.mount=LABEL=i{i}:/i{i} rd.cos.mount=LABEL=c{i}:/c{i} ");
        }
        let c = ok(&line);
        assert_eq!(c.mounts.get(9), Some(&b"LABEL=c9:/c9"[..]));
        assert_eq!(c.mounts.get(15), Some(&b"LABEL=i5:/i5"[..]));
        assert_eq!(c.warnings.len(), 4);
        assert_eq!(
            c.warnings.get(0),
            Some(&b"rd.immucore.mount=LABEL=i6:/i6: more than 16 mounts, ignored"[..])
        );
    }

    #[test]
    #[cfg(feature = "cmdline-mounts")]
    fn mount_specs_over_the_byte_limit_say_so() {
        // Specs of 306 bytes (labels and paths near their limits): six fit in the 2048-byte
        // list, a seventh does not, far from the 16-mount limit.
        let spec = |i: usize| std::format!("LABEL={}{i}:/{}", "l".repeat(59), "m".repeat(238));
        let mut line = std::string::String::new();
        for i in 0..6 {
            line += &std::format!("rd.cos.mount={} ", spec(i));
        }
        for key in ["rd.cos.mount", "rd.immucore.mount"] {
            let e = parse(std::format!("{line}{key}={}", spec(6)).as_bytes()).unwrap_err();
            assert_eq!(e.reason, "mount specs too long in total", "{key}");
        }
    }

    #[test]
    fn boot_states_and_modes() {
        let cases = [
            ("root=LABEL=COS_ACTIVE", BootState::Active, Mode::Normal),
            ("root=LABEL=COS_PASSIVE", BootState::Passive, Mode::Normal),
            ("root=LABEL=COS_SYSTEM cos-img/filename=/cOS/recovery.img", BootState::Recovery, Mode::Normal),
            ("root=LABEL=COS_RECOVERY", BootState::Recovery, Mode::Normal),
            ("root=/dev/disk/by-label/COS_ACTIVE", BootState::Active, Mode::Normal),
            ("root=live:LABEL=COS_RECOVERY rd.live.dir=/ rd.live.squashimg=/cOS/recovery.squashfs", BootState::Recovery, Mode::Live),
            ("root=live:LABEL=COS_RECOVERY vga=795 nomodeset kairos.reset", BootState::AutoReset, Mode::Live),
            ("root=LABEL=COS_SYSTEM kairos.reset", BootState::AutoReset, Mode::Normal),
            ("cdroot root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.cos.disable", BootState::Live, Mode::Live),
            ("root=live:CDLABEL=COS_LIVE", BootState::Live, Mode::Live),
            ("netboot", BootState::Live, Mode::Live),
            ("rd.immucore.disable", BootState::Live, Mode::Live),
            ("rd.cos.disable root=LABEL=COS_ACTIVE", BootState::Active, Mode::Live),
            ("recovery-mode", BootState::Recovery, Mode::Normal),
            ("recovery-mode root=LABEL=COS_ACTIVE", BootState::Active, Mode::Normal),
            ("recovery-mode netboot", BootState::Recovery, Mode::Live),
            ("root=LABEL=COS_OTHER", BootState::Unknown, Mode::Normal),
            ("root=UUID=1234", BootState::Unknown, Mode::Normal),
            ("COS_ACTIVE foo=COS_PASSIVE", BootState::Unknown, Mode::Normal),
            // The last root= wins (#17), an empty one counts as absent.
            ("root= root=LABEL=COS_PASSIVE root=LABEL=COS_ACTIVE", BootState::Active, Mode::Normal),
            ("root=LABEL=COS_ACTIVE root=LABEL=COS_PASSIVE root=", BootState::Passive, Mode::Normal),
        ];
        for (line, state, mode) in cases {
            let c = ok(line);
            assert_eq!((c.state, c.mode), (state, mode), "{line}");
        }
    }

    #[test]
    fn state_tables() {
        use BootState::*;
        let all = [Active, Passive, Recovery, AutoReset, Live, Unknown];
        let sentinels: Vec<_> = all
            .iter()
            .map(|s| {
                let mut t = Text::<16>::new();
                s.push_sentinel(&mut t);
                std::string::String::from(t.as_str())
            })
            .collect();
        assert_eq!(
            sentinels,
            [
                "active_mode",
                "passive_mode",
                "recovery_mode",
                "autoreset_mode",
                "live_mode",
                "unknown"
            ]
        );
        let names: Vec<_> = all.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "active",
                "passive",
                "recovery",
                "autoreset",
                "live",
                "unknown"
            ]
        );
        let images: Vec<_> = all.iter().map(|s| s.images_label()).collect();
        assert_eq!(
            images,
            [
                Some("COS_STATE"),
                Some("COS_STATE"),
                Some("COS_RECOVERY"),
                Some("COS_RECOVERY"),
                None,
                None
            ]
        );
        let roots: Vec<_> = all.iter().map(|s| s.root_label()).collect();
        assert_eq!(
            roots,
            [
                Some("COS_ACTIVE"),
                Some("COS_PASSIVE"),
                Some("COS_SYSTEM"),
                Some("COS_SYSTEM"),
                None,
                None
            ]
        );
        let ext: Vec<_> = all.iter().map(|s| s.extension_dir()).collect();
        assert_eq!(
            ext,
            [
                Some("active"),
                Some("passive"),
                Some("recovery"),
                Some("recovery"),
                None,
                None
            ]
        );
    }

    /// Without the service feature there is no wait for a sysroot: its value is not read, so
    /// a bad one has no warning (a live boot, the one that waits, is refused naming the feature).
    #[test]
    #[cfg(not(feature = "service"))]
    fn sysroot_wait_is_read_with_the_service_feature() {
        let c = ok("rd.cos.oemtimeout=abc rd.immucore.sysrootwait=0");
        assert_eq!((c.oem_timeout_s, c.sysroot_wait_s), (5, 0));
        assert_eq!(
            items(&c.warnings),
            ["rd.cos.oemtimeout=abc: not a number, using 5"]
        );
    }

    #[test]
    #[cfg(feature = "service")]
    fn bad_numbers_warn_and_use_defaults() {
        let c = ok("rd.cos.oemtimeout=abc rd.immucore.sysrootwait=0");
        assert_eq!((c.oem_timeout_s, c.sysroot_wait_s), (5, 120));
        assert_eq!(
            items(&c.warnings),
            [
                "rd.cos.oemtimeout=abc: not a number, using 5",
                "rd.immucore.sysrootwait=0: not a positive number, using 120"
            ]
        );
        let c =
            ok("rd.immucore.oemtimeout=99999999999999999999999999999 rd.immucore.sysrootwait=-1");
        assert_eq!((c.oem_timeout_s, c.sysroot_wait_s), (5, 120));
        assert_eq!(c.warnings.len(), 2);
        let c = ok("rd.cos.oemtimeout=0 rd.immucore.sysrootwait=30");
        assert_eq!((c.oem_timeout_s, c.sysroot_wait_s), (0, 30));
        assert!(c.warnings.is_empty());
        // The winning spelling is used even when bad; the other is not a fallback.
        let c = ok("rd.cos.oemtimeout=7 rd.immucore.oemtimeout=x");
        assert_eq!(c.oem_timeout_s, 5);
    }

    #[test]
    fn fsck_words() {
        let mode = |l: &str| ok(l).fsck_mode;
        assert_eq!(mode("fsck.mode=force"), FsckMode::Force);
        assert_eq!(mode("fsck.mode=auto"), FsckMode::Auto);
        assert_eq!(mode("fsck.mode=skipping"), FsckMode::Auto);
    }

    #[test]
    #[cfg(feature = "fsck")]
    fn fsck_repair_words() {
        let repair = |l: &str| ok(l).fsck_repair;
        assert_eq!(repair("fsck.repair=preen"), FsckRepair::Preen);
        assert_eq!(repair("fsck.repair=yes"), FsckRepair::Yes);
        assert_eq!(repair("fsck.repair=no"), FsckRepair::No);
        assert_eq!(repair("fsck.repair=maybe"), FsckRepair::None);
        assert_eq!(
            repair("fsck.repair=averyveryverylongword"),
            FsckRepair::None
        );
    }

    #[cfg(feature = "verity")]
    #[test]
    fn verity_keys() {
        let mode = |l: &str| ok(l).verity;
        assert_eq!(mode(""), Verity::Auto);
        assert_eq!(mode("rd.immucore.verity=required"), Verity::Required);
        assert_eq!(mode("rd.immucore.verity=off"), Verity::Off);
        let c = ok("rd.immucore.verity=maybe");
        assert_eq!(c.verity, Verity::Auto);
        assert_eq!(
            items(&c.warnings),
            ["rd.immucore.verity=maybe: not one of required, auto, off, using auto"]
        );
        let c = ok("roothash=abcd roothash=ef systemd.verity_root_options=restart-on-corruption");
        assert_eq!(c.roothash.as_bytes(), b"abcd");
        assert_eq!(c.verity_options.as_bytes(), b"restart-on-corruption");
        let long = std::format!("roothash={}", "a".repeat(129));
        assert_eq!(parse(long.as_bytes()).unwrap_err().reason, "value too long");
    }

    #[test]
    fn init_and_shell() {
        let c = ok("init=/usr/lib/systemd/systemd rd.shell=no");
        assert_eq!(c.init.as_str(), "/usr/lib/systemd/systemd");
        assert!(!c.shell_allowed);
        assert!(!ok("rd.shell=off").shell_allowed);
        assert!(ok("rd.shell").shell_allowed);
        let c = ok("init=sbin/init");
        assert!(c.init.is_empty());
        assert_eq!(
            items(&c.warnings),
            ["init=sbin/init: not absolute, using the default"]
        );
    }

    #[test]
    fn out_of_scope_keys_are_listed_once() {
        let c = ok("rd.immucore.uki kairos.ram kairos.ram.wipe kairos.ram.oem=64 rd.immucore.securebootdisabled \
                    kairos.config_url=http://x cos.setup=http://y rd.immucore.uki");
        assert_eq!(
            items(&c.ignored),
            [
                "rd.immucore.uki",
                "kairos.ram",
                "kairos.ram.wipe",
                "kairos.ram.oem",
                "rd.immucore.securebootdisabled",
                "kairos.config_url",
                "cos.setup"
            ]
        );
    }

    #[test]
    fn image_must_be_a_clean_absolute_path() {
        let e = parse(b"cos-img/filename=/cOS/../etc/shadow").unwrap_err();
        assert_eq!(
            (e.reason, e.token.as_str()),
            ("contains ..", "/cOS/../etc/shadow")
        );
        assert_eq!(
            ok("cos-img/filename=//cOS/./active.img").image.as_str(),
            "/cOS/active.img"
        );
    }

    /// #15: a name without the leading `/` is joined to the images partition, as upstream does.
    #[test]
    fn relative_image_names_start_at_the_images_partition() {
        assert_eq!(
            ok("cos-img/filename=cOS/active.img").image.as_str(),
            "/cOS/active.img"
        );
        assert_eq!(
            ok("cos-img/filename=./cOS//recovery.img").image.as_str(),
            "/cOS/recovery.img"
        );
        // Joined, it still may not leave the partition; the error names the value as given.
        let e = parse(b"cos-img/filename=../active.img").unwrap_err();
        assert_eq!(
            (e.reason, e.token.as_str()),
            ("contains ..", "../active.img")
        );
        // The longest value kept (256 bytes) is still judged whole, as too long a path.
        let long = std::format!("cos-img/filename={}", "a".repeat(256));
        assert_eq!(parse(long.as_bytes()).unwrap_err().reason, "too long");
    }

    #[test]
    fn overlong_values_are_errors() {
        let long = "x".repeat(65);
        let e = parse(std::format!("rd.cos.oemlabel={long}").as_bytes()).unwrap_err();
        assert_eq!(e.reason, "value too long");
        assert_eq!(
            e.token.as_str(),
            &std::format!("rd.cos.oemlabel={long}")[..64]
        );
        let e =
            parse(std::format!("rd.cos.overlay=tmpfs:{}", "1".repeat(200)).as_bytes()).unwrap_err();
        assert_eq!(e.reason, "value too long");
        let e =
            parse(std::format!("cos-img/filename=/{}", "a".repeat(300)).as_bytes()).unwrap_err();
        assert_eq!(e.reason, "value too long");
        let e =
            parse(std::format!("cos-img/filename=/{}", "a".repeat(250)).as_bytes()).unwrap_err();
        assert_eq!(e.reason, "too long");
        // Values of keys we do not keep may be anything.
        assert!(parse(std::format!("other={}", "y".repeat(4000)).as_bytes()).is_ok());
    }

    #[test]
    fn overlong_command_line() {
        let line = "a".repeat(4096);
        assert!(parse(line.as_bytes()).is_ok());
        assert!(parse((line.clone() + "\n").as_bytes()).is_ok());
        let e = parse((line + "b").as_bytes()).unwrap_err();
        assert_eq!(e.reason, "command line too long");
        assert_eq!(e.token.len(), 64);
    }

    #[test]
    fn invalid_overlay_and_oem_label_fall_back() {
        let c = ok("rd.cos.overlay=tmpfs:size=1G rd.cos.oemlabel=..");
        assert_eq!(c.overlay.as_str(), "tmpfs:20%");
        assert!(c.oem_label.is_empty());
        assert_eq!(
            items(&c.warnings),
            [
                "rd.cos.oemlabel=..: label or id is . or .., looking for COS_OEM",
                "rd.cos.overlay=tmpfs:size=1G: tmpfs size must be a number with an optional k, m, g, t or % suffix, using tmpfs:20%",
            ]
        );
        assert_eq!(
            ok("rd.immucore.overlay=LABEL=OVL").overlay.as_str(),
            "LABEL=OVL"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 12345u32;
        for _ in 0..300 {
            let len = (seed % 300) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                    b" =\"\t:/aLABEL.rd.cos.mount\x00\xff"[(seed >> 16) as usize % 24]
                })
                .collect();
            let _ = parse(&line);
        }
    }

    #[test]
    fn devices_and_by_paths() {
        let mut out = Text::new();
        let cases = [
            (
                "LABEL=COS_PERSISTENT",
                DeviceKind::Label,
                "/dev/disk/by-label/COS_PERSISTENT",
            ),
            (
                "UUID=1234-abcd",
                DeviceKind::Uuid,
                "/dev/disk/by-uuid/1234-abcd",
            ),
            (
                "PARTLABEL=data",
                DeviceKind::PartLabel,
                "/dev/disk/by-partlabel/data",
            ),
            (
                "PARTUUID=0f-01",
                DeviceKind::PartUuid,
                "/dev/disk/by-partuuid/0f-01",
            ),
            ("/dev/vdb1", DeviceKind::Path, "/dev/vdb1"),
            ("/dev//mapper/./x", DeviceKind::Path, "/dev/mapper/x"),
            (
                "LABEL=my data/x",
                DeviceKind::Label,
                "/dev/disk/by-label/my\\x20data\\x2fx",
            ),
            (
                "LABEL=../../sda",
                DeviceKind::Label,
                "/dev/disk/by-label/..\\x2f..\\x2fsda",
            ),
            (
                "PARTLABEL=dätä#1",
                DeviceKind::PartLabel,
                "/dev/disk/by-partlabel/dätä#1",
            ),
        ];
        for (spec, kind, path) in cases {
            let d = Device::parse(spec.as_bytes()).unwrap();
            assert_eq!(d.kind, kind);
            d.by_path(&mut out);
            assert_eq!(out.as_str(), path);
        }
        assert_eq!(Device::parse(b"LABEL=").unwrap_err(), "empty label or id");
        assert_eq!(
            Device::parse(b"LABEL=..").unwrap_err(),
            "label or id is . or .."
        );
        assert_eq!(
            Device::parse(b"UUID=.").unwrap_err(),
            "label or id is . or .."
        );
        assert_eq!(
            Device::parse(b"LABEL=a\tb").unwrap_err(),
            "label or id contains a control character, quote or backslash"
        );
        assert_eq!(
            Device::parse(b"LABEL=a\"b").unwrap_err(),
            "label or id contains a control character, quote or backslash"
        );
        assert_eq!(
            Device::parse(b"LABEL=\xff").unwrap_err(),
            "label or id is not UTF-8"
        );
        assert!(Device::parse(std::format!("LABEL={}", "x".repeat(128)).as_bytes()).is_ok());
        assert_eq!(
            Device::parse(std::format!("LABEL={}", "x".repeat(129)).as_bytes()).unwrap_err(),
            "label or id too long"
        );
        assert_eq!(
            Device::parse(std::format!("LABEL={}", " ".repeat(43)).as_bytes()).unwrap_err(),
            "label or id too long"
        );
        let mut longest = Text::new();
        Device::parse(std::format!("PARTLABEL={}", " ".repeat(42)).as_bytes())
            .unwrap()
            .by_path(&mut longest);
        assert_eq!(longest.len(), 23 + 42 * 4);
        assert_eq!(Device::parse(b"/dev/../etc/x").unwrap_err(), "contains ..");
        assert!(Device::parse(b"/etc/x").is_err());
        assert!(Device::parse(b"sda1").is_err());
        assert!(Device::parse(b"label=x").is_err());
    }

    #[test]
    fn volume_specs_split_at_last_colon_slash() {
        let (d, mp) = volume_spec(b"LABEL=COS_PERSISTENT:/usr/local").unwrap();
        assert_eq!(
            (d.kind, d.value.as_str(), mp.as_str()),
            (DeviceKind::Label, "COS_PERSISTENT", "/usr/local")
        );
        let (d, mp) = volume_spec(b"LABEL=a:b:/mnt/x/").unwrap();
        assert_eq!((d.value.as_str(), mp.as_str()), ("a:b", "/mnt/x"));
        let (d, mp) = volume_spec(b"/dev/sdb1:/data").unwrap();
        assert_eq!(
            (d.kind, d.value.as_str(), mp.as_str()),
            (DeviceKind::Path, "/dev/sdb1", "/data")
        );
        assert_eq!(volume_spec(b"LABEL=x").unwrap_err(), "no mount point");
        assert_eq!(volume_spec(b"LABEL=x:mnt").unwrap_err(), "no mount point");
        assert_eq!(
            volume_spec(b":/mnt").unwrap_err(),
            "unknown device (use LABEL=, UUID=, PARTLABEL=, PARTUUID= or /dev/...)"
        );
        assert_eq!(volume_spec(b"LABEL=x:/a,b").unwrap_err(), "contains , or :");
    }

    /// The unquoted tokens `tokenize` splits `line` into, or the raw unterminated token.
    fn tokens(line: &str) -> Result<Vec<std::string::String>, std::string::String> {
        let mut buf = [0u8; MAX_CMDLINE];
        let mut used = 0;
        let mut rest = line.as_bytes();
        let mut out = Vec::new();
        while let Some(token) = tokenize(&mut rest, &mut buf, &mut used) {
            let span =
                token.map_err(|raw| std::string::String::from_utf8_lossy(raw).into_owned())?;
            out.push(std::string::String::from_utf8_lossy(span.of(&buf)).into_owned());
        }
        Ok(out)
    }

    #[cfg(feature = "oci")]
    #[test]
    fn bootc_live_roots_are_live_boots_with_a_source() {
        let c = ok("root=bootc-live:/root.oci bootclabel=v1");
        assert_eq!((c.mode, c.state), (Mode::Live, BootState::Live));
        assert_eq!(c.bootc_source.as_bytes(), b"/root.oci");
        let c = ok("root=LABEL=COS_ACTIVE root=bootc-live:LABEL=IMG:/a.oci");
        assert_eq!(
            c.bootc_source.as_bytes(),
            b"LABEL=IMG:/a.oci",
            "the last root= wins"
        );
        let c = ok("root=bootc-live:/a.oci root=LABEL=COS_ACTIVE");
        assert!(c.bootc_source.is_empty() && c.mode == Mode::Normal);
    }

    #[test]
    fn tokenize_splits_like_the_kernel() {
        assert_eq!(tokens(""), Ok(Vec::new()));
        assert_eq!(tokens(" \t\n"), Ok(Vec::new()));
        assert_eq!(
            tokens("a  b\tc=d\n"),
            Ok(["a", "b", "c=d"].map(Into::into).to_vec())
        );
        assert_eq!(
            tokens(r#"x="a b" "y=c d"e q"" "#),
            Ok(["x=a b", "y=c de", "q"].map(Into::into).to_vec())
        );
        assert_eq!(
            tokens(r#"ok bad="open end"#),
            Err(r#"bad="open end"#.into())
        );
    }

    /// `collect` on `line`, and what it gathered.
    fn collected(line: &str) -> (Collected, Cmdline) {
        let mut c = ok("");
        let mut col = Collected::new();
        collect(line.as_bytes(), &mut col, &mut c).unwrap();
        (col, c)
    }

    #[cfg(feature = "cmdline-mounts")]
    fn chosen_value(col: &Collected, choice: &Choice) -> Option<std::string::String> {
        let chosen = col.chosen(choice).unwrap()?;
        Some(std::string::String::from_utf8_lossy(chosen.value).into_owned())
    }

    #[test]
    #[cfg(feature = "cmdline-mounts")]
    fn collect_files_each_token_under_its_key() {
        let (col, c) = collected(
            "root=LABEL=A rd.cos.oemlabel=cos rd.immucore.oemlabel=imm root=LABEL=B \
             rd.immucore.oemlabel=late netboot=1 rd.immucore.debug kairos.ram.size=1 \
             rd.immucore.mount=LABEL=i:/i rd.cos.mount=LABEL=c:/c unknown=x",
        );
        let choices = &col.choices;
        assert_eq!(
            chosen_value(&col, &choices.root).as_deref(),
            Some("LABEL=B")
        );
        assert_eq!(
            chosen_value(&col, &choices.oem_label).as_deref(),
            Some("imm")
        );
        assert_eq!(chosen_value(&col, &choices.init), None);
        assert_eq!(
            col.flags,
            Flags {
                disable: true,
                debug: true,
                ..Flags::default()
            }
        );
        // rd.immucore.mount= specs wait in their own list and are appended at the end.
        assert_eq!(items(&c.mounts), ["LABEL=c:/c", "LABEL=i:/i"]);
        assert_eq!(items(&col.late_mounts), ["LABEL=i:/i"]);
        assert_eq!(items(&c.ignored), ["kairos.ram.size"]);
        // An unterminated quote stops the collection.
        let mut c = ok("");
        let mut col = Collected::new();
        let e = collect(b"a \"b", &mut col, &mut c).unwrap_err();
        assert_eq!((e.reason, e.token.as_str()), ("unterminated quote", "\"b"));
    }

    #[test]
    fn tokens_split_at_their_first_equals_sign() {
        let split = |text: &str| {
            let token = Span {
                start: 3,
                len: text.len() as u16,
            };
            let mut line = std::vec![b'#'; 3];
            line.extend(text.bytes());
            let (key, value) = split_at_equals(token, text.as_bytes());
            (
                std::string::String::from_utf8(key.of(&line).to_vec()).unwrap(),
                std::string::String::from_utf8(value.of(&line).to_vec()).unwrap(),
            )
        };
        assert_eq!(split("root=LABEL=x"), ("root".into(), "LABEL=x".into()));
        assert_eq!(split("netboot"), ("netboot".into(), "".into()));
        assert_eq!(split("init="), ("init".into(), "".into()));
        assert_eq!(split("=x"), ("".into(), "x".into()));
    }

    #[test]
    fn every_key_row_is_found_by_its_name() {
        for spec in KEYS {
            assert!(key_spec(spec.name.as_bytes()).is_some(), "{}", spec.name);
        }
        assert!(key_spec(b"").is_none());
        assert!(key_spec(b"root ").is_none());
    }

    #[test]
    fn resolve_refuses_only_the_overlong_value_that_wins() {
        let long = "i".repeat(300);
        // An overlong image name overridden by a later one is no error: only the winner counts.
        let (col, mut c) = collected(&std::format!(
            "cos-img/filename=/{long} cos-img/filename=/cOS/active.img"
        ));
        resolve(&col, &mut c).unwrap();
        assert_eq!(c.image.as_str(), "/cOS/active.img");
        let (col, mut c) = collected(&std::format!(
            "cos-img/filename=/cOS/active.img cos-img/filename=/{long}"
        ));
        let (reason, token) = resolve(&col, &mut c).unwrap_err();
        assert_eq!(reason, "value too long");
        assert_eq!(
            col.get(token),
            std::format!("cos-img/filename=/{long}").as_bytes()
        );
        // A judged value is not refused: the key's own check warns.
        let (col, mut c) = collected(&std::format!("fsck.mode={long} rd.cos.oemtimeout={long}"));
        resolve(&col, &mut c).unwrap();
        assert_eq!((c.fsck_mode, c.oem_timeout_s), (FsckMode::Auto, 5));
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    #[cfg(feature = "cmdline-mounts")]
    fn by_path_devices_are_volumes() {
        let spec = b"/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part1:/var/lib/data";
        let (d, mp) = volume_spec(spec).unwrap();
        assert_eq!(
            (d.kind, d.value.as_str(), mp.as_str()),
            (
                DeviceKind::Path,
                "/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part1",
                "/var/lib/data"
            )
        );
        let c = ok("rd.cos.mount=/dev/disk/by-path/virtio-pci-0000:00:05.0:/data");
        assert_eq!(
            items(&c.mounts),
            ["/dev/disk/by-path/virtio-pci-0000:00:05.0:/data"]
        );
        assert!(c.warnings.is_empty());
        assert!(overlay_backing(b"/dev/disk/by-path/pci-0000:00:1f.2-ata-1").is_ok());
        // The mount point still may not have one.
        assert_eq!(
            volume_spec(b"/dev/disk/by-path/a:1:/mnt:x").unwrap_err(),
            "contains , or :"
        );
    }

    #[test]
    fn overlay_backings() {
        assert_eq!(overlay_backing(b"tmpfs:20%"), Ok(Backing::Tmpfs(b"20%")));
        assert_eq!(overlay_backing(b"tmpfs:512m"), Ok(Backing::Tmpfs(b"512m")));
        assert_eq!(overlay_backing(b"tmpfs:1024"), Ok(Backing::Tmpfs(b"1024")));
        assert!(matches!(
            overlay_backing(b"UUID=abcd"),
            Ok(Backing::Device(Device {
                kind: DeviceKind::Uuid,
                ..
            }))
        ));
        assert!(overlay_backing(b"tmpfs:").is_err());
        assert!(overlay_backing(b"tmpfs:20%%").is_err());
        assert!(overlay_backing(b"tmpfs:size=1G").is_err());
        assert!(overlay_backing(b"tmpfs").is_err());
        assert!(overlay_backing(b"ramfs:1G").is_err());
    }

    #[cfg(feature = "fallback")]
    #[test]
    fn fallback_is_opt_in_and_matched_exactly() {
        let base = "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img";
        assert!(!ok(base).fallback);
        assert!(ok(&std::format!("{base} rd.immucore.fallback")).fallback);
        // A bare key: a value does not turn it off, and no prefix or other spelling turns it on.
        assert!(ok(&std::format!("{base} rd.immucore.fallback=1")).fallback);
        assert!(
            !ok(&std::format!(
                "{base} rd.immucore.fallbacks rd.cos.fallback"
            ))
            .fallback
        );
    }

    /// dracut dmsquash-live's keys as Kairos writes them, and dracut's defaults.
    #[cfg(feature = "live")]
    #[test]
    fn live_roots() {
        let iso = ok(
            "cdroot root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.live.squashimg=rootfs.squashfs \
                      rd.cos.disable rd.live.overlay.overlayfs",
        );
        assert_eq!((iso.mode, iso.state), (Mode::Live, BootState::Live));
        assert_eq!(iso.live.source.as_str(), "CDLABEL=COS_LIVE");
        assert_eq!(iso.live.image.as_str(), "/rootfs.squashfs");
        assert!(!iso.live.ram && iso.live.overlay_mib == 0 && iso.live.rootflags.is_empty());
        assert!(iso.warnings.is_empty() && iso.ignored.is_empty());

        let recovery = ok("root=live:LABEL=COS_RECOVERY rd.live.dir=/ \
                           rd.live.squashimg=/cOS/recovery.squashfs rd.cos.oemlabel=COS_OEM");
        assert_eq!(recovery.state, BootState::Recovery);
        assert_eq!(recovery.live.image.as_str(), "/cOS/recovery.squashfs");
        let reset = ok("root=live:LABEL=COS_RECOVERY kairos.reset");
        assert_eq!(reset.state, BootState::AutoReset);
        // dracut's defaults: LiveOS/squashfs.img.
        assert_eq!(reset.live.image.as_str(), "/LiveOS/squashfs.img");

        let c = ok(
            "root=live:/rootfs.squashfs rd.live.ram rd.live.overlay.size=512 \
                    rootflags=noatime rd.overlay",
        );
        assert_eq!(c.live.source.as_str(), "/rootfs.squashfs");
        assert!(c.live.ram);
        assert_eq!(c.live.overlay_mib, 512);
        assert_eq!(c.live.rootflags.as_str(), "noatime");
        for off in ["rd.live.ram=0", "rd.live.ram=no", "rd.live.ram=off"] {
            assert!(!ok(&std::format!("root=live:/x {off}")).live.ram, "{off}");
        }
        assert!(ok("root=live:/x rd.live.ram=1").live.ram);
        let bad = ok("root=live:/x rd.live.overlay.size=lots");
        assert_eq!(bad.live.overlay_mib, 0);
        assert_eq!(
            items(&bad.warnings),
            ["rd.live.overlay.size=lots: not a positive number of MiB, using the default (50% of RAM)"]
        );
        // A path that escapes the medium is refused.
        let e = parse(b"root=live:LABEL=x rd.live.squashimg=../../etc/shadow").unwrap_err();
        assert_eq!(
            (e.reason, e.token.as_str()),
            ("contains ..", "../../etc/shadow")
        );
        // As dracut reads them, the last value counts.
        let c = ok("root=live:/x rd.live.squashimg=a.img rd.live.squashimg=b.img");
        assert_eq!(c.live.image.as_str(), "/LiveOS/b.img");
        // Not a live root: no source.
        assert!(ok("root=LABEL=COS_ACTIVE").live.source.is_empty());
    }
}
