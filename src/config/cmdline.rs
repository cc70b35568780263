//! Kernel command line (SPEC §3).
//!
//! Unlike upstream, which matches by prefix and by substring of the whole line (reference §2.1),
//! keys here match exactly: `rd.immucore.debugrw` does not turn on `rd.immucore.debug`, and a
//! `netboot` inside some other token does not select live mode. Quoting follows the kernel: a
//! double quote may wrap spaces, anywhere in the token; the quotes themselves are dropped.

use crate::config::path::{check_path, normalize};
use crate::util::fixed::{packed_name, packed_names, parse_u64, utf8_valid_up_to, List, Text};

/// Longest command line accepted (the kernel's own limit on x86 is 2048, other arches 4096).
pub const MAX_CMDLINE: usize = 4096;
const MAX_MOUNTS: usize = 16;
const DEFAULT_OVERLAY: &[u8] = b"tmpfs:20%";
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
    /// Name of the `/run/cos/<sentinel>` file announcing the state to the booted system. (The
    /// name tables below list the states in variant order.)
    pub fn sentinel(self) -> &'static str {
        packed_names!(
            NAMES,
            ENDS,
            [
                "active_mode",
                "passive_mode",
                "recovery_mode",
                "autoreset_mode",
                "live_mode",
                "unknown"
            ]
        );
        packed_name(NAMES, &ENDS, self as usize)
    }

    /// Label of the partition holding the image files.
    pub fn images_label(self) -> Option<&'static str> {
        packed_names!(
            NAMES,
            ENDS,
            ["COS_STATE", "COS_STATE", "COS_RECOVERY", "COS_RECOVERY"]
        );
        non_empty(packed_name(NAMES, &ENDS, self as usize))
    }

    /// Filesystem label inside the root image.
    pub fn root_label(self) -> Option<&'static str> {
        packed_names!(
            NAMES,
            ENDS,
            ["COS_ACTIVE", "COS_PASSIVE", "COS_SYSTEM", "COS_SYSTEM"]
        );
        non_empty(packed_name(NAMES, &ENDS, self as usize))
    }

    /// Sub-directory of the sysext/confext stores used in this state.
    pub fn extension_dir(self) -> Option<&'static str> {
        match self {
            BootState::Active | BootState::Passive | BootState::Recovery => Some(self.name()),
            BootState::AutoReset => Some(BootState::Recovery.name()),
            BootState::Live | BootState::Unknown => None,
        }
    }

    /// `active`, `passive`, `recovery`, `autoreset`, `live` or `unknown`: the sentinel name
    /// without its `_mode` (one table of strings instead of two).
    pub fn name(self) -> &'static str {
        let sentinel = self.sentinel();
        sentinel.strip_suffix("_mode").unwrap_or(sentinel)
    }
}

/// `None` for the empty name `packed_name` gives the states without one (live, unknown).
fn non_empty(name: &'static str) -> Option<&'static str> {
    Some(name).filter(|n| !n.is_empty())
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
    /// `cos-img/filename=`, normalized; empty when absent.
    pub image: Text<256>,
    /// Empty: the caller looks for a `COS_OEM` filesystem.
    pub oem_label: Text<64>,
    pub oem_timeout_s: u32,
    /// Backing of `/run/overlay`, always valid for [`overlay_backing`].
    pub overlay: Text<128>,
    /// Valid `<device>:<mountpoint>` specs as given: `rd.cos.mount=` ones, then `rd.immucore.mount=`.
    pub mounts: List<2048, MAX_MOUNTS>,
    pub debugrw: bool,
    pub debug: bool,
    pub reboot_on_failure: bool,
    pub sysroot_wait_s: u32,
    pub fsck_mode: FsckMode,
    pub fsck_repair: FsckRepair,
    /// `init=`; empty: the caller tries its fallbacks.
    pub init: Text<256>,
    pub shell_allowed: bool,
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

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Where each single-valued parameter is kept in `parse` (`u8`, which keeps `KEYS` small).
const ROOT: u8 = 0;
const IMAGE: u8 = 1;
const OEM_LABEL: u8 = 2;
const OEM_TIMEOUT: u8 = 3;
const OVERLAY: u8 = 4;
const SYSROOT_WAIT: u8 = 5;
const FSCK_MODE: u8 = 6;
const FSCK_REPAIR: u8 = 7;
const SHELL: u8 = 8;
const INIT: u8 = 9;
const VALUES: usize = 10;

/// Longest value of each parameter above (for kept values, the capacity of their `Cmdline`
/// field), and whether a longer one is refused ("value too long"). Numbers that do not fit are
/// reported as bad numbers instead, and unknown words just mean "default", so those are only
/// judged at the end. (`u16`: a smaller table.)
const LIMITS: [(u16, bool); VALUES] = [
    (4096, true), // ROOT (MAX_CMDLINE)
    (256, true),  // IMAGE
    (64, true),   // OEM_LABEL
    (24, false),  // OEM_TIMEOUT
    (128, true),  // OVERLAY
    (24, false),  // SYSROOT_WAIT
    (8, false),   // FSCK_MODE
    (8, false),   // FSCK_REPAIR
    (8, false),   // SHELL
    (256, true),  // INIT
];

/// A single-valued parameter: the first non-empty value of the highest-ranked spelling
/// (`rd.immucore.*` = 2 beats `rd.cos.*` = 1); `rank` 0 while absent.
#[derive(Clone, Copy)]
struct Choice {
    rank: u8,
    /// Where the key (the spelling used) starts in the unquoted tokens; the value follows it
    /// after its `=`.
    key: usize,
    /// Where the value lies in the unquoted tokens.
    start: usize,
    len: usize,
}

/// What was chosen for a parameter: key, value (cut to the limit), and whether it was longer.
type Chosen<'a> = Option<(&'a [u8], &'a [u8], bool)>;

/// The choices of `parse` and `unquoted`, the tokens they point into. The helpers below take
/// it with a slot, so each use is one call.
struct Picks<'a> {
    choices: &'a [Choice; VALUES],
    unquoted: &'a [u8],
}

/// The choice in `slot`, resolved.
#[inline(never)]
fn chosen<'a>(picks: &Picks<'a>, slot: u8) -> Chosen<'a> {
    let unquoted = picks.unquoted;
    let slot = usize::from(slot);
    let choice = picks.choices.get(slot)?;
    if choice.rank == 0 {
        return None;
    }
    let value = unquoted.get(choice.start..choice.start + choice.len)?;
    let limit = usize::from(LIMITS.get(slot)?.0);
    let name = unquoted.get(choice.key..choice.start.checked_sub(1)?)?;
    Some((
        name,
        value.get(..limit).unwrap_or(value),
        value.len() > limit,
    ))
}

/// Which word of the space-separated `list` was chosen: 0 when the key is absent, `n` for its
/// `n`th word, `usize::MAX` for any other value (including one cut to its limit).
fn word(picks: &Picks<'_>, slot: u8, list: &'static [u8]) -> usize {
    let Some((_, value, cut)) = chosen(picks, slot) else {
        return 0;
    };
    match word_index(list, value) {
        Some(i) if !cut => i + 1,
        _ => usize::MAX,
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

/// The value chosen in `slot` if `check` accepts it; otherwise a warning ending in `then`, and
/// nothing.
fn checked<'a>(
    picks: &Picks<'a>,
    slot: u8,
    check: fn(&[u8]) -> Result<(), &'static str>,
    then: &[u8],
    warnings: &mut List<1024, 8>,
) -> &'a [u8] {
    let Some((key, value, _)) = chosen(picks, slot) else {
        return &[];
    };
    match check(value) {
        Ok(()) => value,
        Err(reason) => {
            warn(warnings, key, value, reason.as_bytes(), then);
            &[]
        }
    }
}

/// The number chosen in `slot`, or the default of `rule` with its warning when it is not one
/// (or is below its minimum).
fn number(picks: &Picks<'_>, slot: u8, rule: &NumberRule, warnings: &mut List<1024, 8>) -> u32 {
    let Some((key, value, cut)) = chosen(picks, slot) else {
        return rule.default;
    };
    match parse_u64(value).and_then(|n| u32::try_from(n).ok()) {
        Some(n) if !cut && n >= rule.min => n,
        _ => {
            warn(warnings, key, value, rule.bad, b"");
            rule.default
        }
    }
}

/// Boot state and live flag named by a `root=` value: `[live:]LABEL=<l>`, `[live:]CDLABEL=<l>`
/// or `[live:]/dev/disk/by-label/<l>`.
fn root_state(value: &[u8]) -> (bool, Option<BootState>) {
    let (live, rest) = match value.strip_prefix(b"live:") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    const PREFIXES: &[u8] = b"LABEL= CDLABEL= /dev/disk/by-label/";
    // The labels, then the state of each.
    const LABELS: &[u8] = b"COS_ACTIVE COS_PASSIVE COS_RECOVERY COS_SYSTEM";
    const STATES: [BootState; 4] = [
        BootState::Active,
        BootState::Passive,
        BootState::Recovery,
        BootState::Recovery,
    ];
    let label = words(PREFIXES).find_map(|p| rest.strip_prefix(p));
    let state = label.and_then(|l| word_index(LABELS, l));
    (live, state.and_then(|i| STATES.get(i).copied()))
}

/// Keeps a valid mount spec, or warns and skips an invalid one; the error is why the spec
/// does not fit.
fn add_mount(
    mounts: &mut List<2048, MAX_MOUNTS>,
    warnings: &mut List<1024, 8>,
    key: &[u8],
    value: &[u8],
) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    if let Err(reason) = volume_spec(value) {
        warn(warnings, key, value, reason.as_bytes(), b", ignored");
        return Ok(());
    }
    mounts.push(value).map_err(|_| why_full(mounts))
}

/// Why a spec did not fit in `mounts`: too many of them, or too many bytes.
#[inline(never)]
fn why_full(mounts: &List<2048, MAX_MOUNTS>) -> &'static str {
    if mounts.len() >= MAX_MOUNTS {
        "more than 16 mounts"
    } else {
        "mount specs too long in total"
    }
}

/// Flags set by bare keys.
const DEBUG_RW: u8 = 1;
const DEBUG: u8 = 2;
const REBOOT_ON_FAILURE: u8 = 4;
const DISABLE: u8 = 8;
const RESET: u8 = 16;
const RECOVERY_MODE: u8 = 32;

/// What a command line key sets.
#[derive(Clone, Copy)]
enum Key {
    /// The single-valued parameter kept in this slot (see `LIMITS`).
    Value(u8),
    CosMount,
    ImmucoreMount,
    /// These flag bits.
    Flag(u8),
    /// Upstream features out of scope (UKI, in-RAM, remote config): named for a debug line.
    OutOfScope,
}

/// Defines `KEY_NAMES`, the names of the keys `parse` knows, each followed by a space (one
/// string: a string slice per key would take 16 bytes of table each), and `KEYS`, what each one
/// sets, in the same order.
macro_rules! keys {
    ($($name:literal => $key:expr, $rank:literal;)*) => {
        const KEY_NAMES: &str = concat!($($name, " "),*);
        const KEYS: &[(Key, u8)] = &[$(($key, $rank)),*];
    };
}

// The keys `parse` knows, with the rank of each spelling (`rd.immucore.*` = 2 beats
// `rd.cos.*` = 1, see `Choice`). A table rather than a `match` on byte strings, which compiles
// to a long chain of inline comparisons (8 KB of code, see size-report.md).
keys! {
    "root" => Key::Value(ROOT), 1;
    "cos-img/filename" => Key::Value(IMAGE), 1;
    "rd.immucore.oemlabel" => Key::Value(OEM_LABEL), 2;
    "rd.cos.oemlabel" => Key::Value(OEM_LABEL), 1;
    "rd.immucore.oemtimeout" => Key::Value(OEM_TIMEOUT), 2;
    "rd.cos.oemtimeout" => Key::Value(OEM_TIMEOUT), 1;
    "rd.immucore.overlay" => Key::Value(OVERLAY), 2;
    "rd.cos.overlay" => Key::Value(OVERLAY), 1;
    "rd.immucore.sysrootwait" => Key::Value(SYSROOT_WAIT), 1;
    "fsck.mode" => Key::Value(FSCK_MODE), 1;
    "fsck.repair" => Key::Value(FSCK_REPAIR), 1;
    "rd.shell" => Key::Value(SHELL), 1;
    "init" => Key::Value(INIT), 1;
    "rd.cos.mount" => Key::CosMount, 1;
    "rd.immucore.mount" => Key::ImmucoreMount, 1;
    "rd.cos.debugrw" => Key::Flag(DEBUG_RW), 1;
    "rd.immucore.debugrw" => Key::Flag(DEBUG_RW), 1;
    "rd.immucore.debug" => Key::Flag(DEBUG), 1;
    "rd.immucore.rebootonfailure" => Key::Flag(REBOOT_ON_FAILURE), 1;
    "rd.cos.disable" => Key::Flag(DISABLE), 1;
    "rd.immucore.disable" => Key::Flag(DISABLE), 1;
    "netboot" => Key::Flag(DISABLE), 1;
    "kairos.reset" => Key::Flag(RESET), 1;
    "recovery-mode" => Key::Flag(RECOVERY_MODE), 1;
    "rd.immucore.uki" => Key::OutOfScope, 1;
    "rd.immucore.securebootdisabled" => Key::OutOfScope, 1;
    "kairos.config_url" => Key::OutOfScope, 1;
    "cos.setup" => Key::OutOfScope, 1;
    "kairos.ram" => Key::OutOfScope, 1;
}

/// The words of a space-separated list: word tables kept as one string, since a string slice
/// per word takes 16 bytes of table (one function, so one copy of the splitting code).
pub(crate) fn words(list: &'static [u8]) -> impl Iterator<Item = &'static [u8]> {
    list.split(|&c| c == b' ')
}

/// Index of `word` in the space-separated `list`. Not inlined: one copy of the search serves
/// every word table. (`KEY_NAMES` ends in a space, so an empty word finds the empty last name,
/// which has no entry in `KEYS`.)
#[inline(never)]
pub(crate) fn word_index(list: &[u8], word: &[u8]) -> Option<usize> {
    list.split(|&c| c == b' ').position(|w| w == word)
}

/// Splits the next token off `rest` the way the kernel does (a double quote may wrap spaces,
/// anywhere in the token) and appends it without its quotes to `unquoted` at `used`. Returns the
/// raw token and whether its quotes are closed; `None` at the end of the line.
#[inline(never)]
fn next_token<'a>(
    rest: &mut &'a [u8],
    unquoted: &mut [u8],
    used: &mut usize,
) -> Option<(&'a [u8], bool)> {
    let skip = rest.iter().position(|&c| !is_space(c))?;
    let mut in_quote = false;
    let mut end = skip;
    for &c in rest.get(skip..).unwrap_or(&[]) {
        if is_space(c) && !in_quote {
            break;
        }
        end += 1;
        if c == b'"' {
            in_quote = !in_quote;
        } else if let Some(slot) = unquoted.get_mut(*used) {
            *slot = c;
            *used += 1;
        }
    }
    let raw = rest.get(skip..end).unwrap_or(&[]);
    *rest = rest.get(end..).unwrap_or(&[]);
    Some((raw, !in_quote))
}

/// Parses the command line (`/proc/cmdline` contents, trailing newline allowed). Not inlined:
/// its one caller, `main`, is so large that the inlined copy needs more code.
#[inline(never)]
pub fn parse(text: &[u8]) -> Result<Cmdline, CmdlineError> {
    // Without a trailing newline (by hand: `strip_suffix` would be one more generic instance).
    let newline = usize::from(text.last() == Some(&b'\n'));
    let body = text.get(..text.len() - newline).unwrap_or(text);
    // The fields decided at the end start as zeros (`Active`, 0, `false`), so one clearing
    // makes the whole struct; every one of them is set before `Ok`.
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
        ignored: List::new(),
        warnings: List::new(),
    };
    // A constant: cleared at once, not filled entry by entry.
    const ABSENT: [Choice; VALUES] = [Choice {
        rank: 0,
        key: 0,
        start: 0,
        len: 0,
    }; VALUES];
    let mut choices = ABSENT;
    let mut flags = 0;
    // rd.immucore.mount= values go after all rd.cos.mount= ones, as upstream merges them.
    let mut late_mounts: List<2048, MAX_MOUNTS> = List::new();

    // Every token without its quotes, back to back (never longer than `body`), so the choices
    // can point into it.
    let mut unquoted = [0u8; MAX_CMDLINE];
    let mut used = 0;
    let mut rest = body;
    // Every refusal leaves through the end of this block: why, and the offending token.
    let (reason, token) = 'refuse: {
        if body.len() > MAX_CMDLINE {
            break 'refuse ("command line too long", body);
        }
        loop {
            let start = used;
            let Some((raw, closed)) = next_token(&mut rest, &mut unquoted, &mut used) else {
                break;
            };
            if !closed {
                break 'refuse ("unterminated quote", raw);
            }
            let token = unquoted.get(start..used).unwrap_or(&[]);
            let (key, value_start) = match token.iter().position(|&c| c == b'=') {
                Some(eq) => (token.get(..eq).unwrap_or(&[]), start + eq + 1),
                None => (token, used),
            };
            let value = unquoted.get(value_start..used).unwrap_or(&[]);
            let known = word_index(KEY_NAMES.as_bytes(), key).and_then(|i| KEYS.get(i));
            let (what, rank) = match known {
                Some(&known) => known,
                // Like `kairos.ram`, each of its `kairos.ram.*` options.
                None if key.starts_with(b"kairos.ram.") => (Key::OutOfScope, 1),
                None => continue,
            };
            match what {
                Key::Value(slot) => {
                    let slot = usize::from(slot);
                    let (Some(choice), Some(&(limit, refuse))) =
                        (choices.get_mut(slot), LIMITS.get(slot))
                    else {
                        continue;
                    };
                    if value.is_empty() || rank <= choice.rank {
                        continue;
                    }
                    *choice = Choice {
                        rank,
                        key: start,
                        start: value_start,
                        len: value.len(),
                    };
                    if refuse && value.len() > usize::from(limit) {
                        break 'refuse ("value too long", raw);
                    }
                }
                Key::CosMount | Key::ImmucoreMount => {
                    let mounts = match what {
                        Key::CosMount => &mut c.mounts,
                        _ => &mut late_mounts,
                    };
                    if let Err(reason) = add_mount(mounts, &mut c.warnings, key, value) {
                        break 'refuse (reason, value);
                    }
                }
                Key::Flag(bit) => flags |= bit,
                Key::OutOfScope => note_ignored(&mut c.ignored, key),
            }
        }
        for spec in late_mounts.iter() {
            if c.mounts.push(spec).is_err() {
                break 'refuse (why_full(&c.mounts), spec);
            }
        }

        let unquoted = unquoted.get(..used).unwrap_or(&[]);
        let picks = &Picks {
            choices: &choices,
            unquoted,
        };
        if let Some((_, value, _)) = chosen(picks, IMAGE) {
            if let Err(reason) = normalize(value, &mut c.image) {
                break 'refuse (reason, value);
            }
        }
        let warnings = &mut c.warnings;
        let oem = checked(
            picks,
            OEM_LABEL,
            check_tag,
            b", looking for COS_OEM",
            warnings,
        );
        c.oem_label.push_lossy(oem);
        let overlay_ok = |value: &[u8]| overlay_backing(value).map(drop);
        let overlay = checked(picks, OVERLAY, overlay_ok, USING_DEFAULT_OVERLAY, warnings);
        c.overlay.push_lossy(match overlay {
            [] => DEFAULT_OVERLAY,
            spec => spec,
        });
        let init = checked(picks, INIT, check_path, b", using the default", warnings);
        c.init.push_lossy(init);

        let (root_live, root_boot_state) = match chosen(picks, ROOT) {
            Some((_, value, _)) => root_state(value),
            None => (false, None),
        };
        if flags & DISABLE != 0 || root_live {
            c.mode = Mode::Live;
        }
        // Same order as upstream §3.2, with exact tokens instead of substrings: kairos.reset, then the
        // label in root=, then recovery-mode, then live mode.
        c.state = if flags & RESET != 0 {
            BootState::AutoReset
        } else if let Some(state) = root_boot_state {
            state
        } else if flags & RECOVERY_MODE != 0 {
            BootState::Recovery
        } else if c.mode == Mode::Live {
            BootState::Live
        } else {
            BootState::Unknown
        };
        c.debugrw = flags & DEBUG_RW != 0;
        c.debug = flags & DEBUG != 0;
        c.reboot_on_failure = flags & REBOOT_ON_FAILURE != 0;

        c.oem_timeout_s = number(picks, OEM_TIMEOUT, &OEM_TIMEOUT_S, warnings);
        c.sysroot_wait_s = number(picks, SYSROOT_WAIT, &SYSROOT_WAIT_S, warnings);
        // Settings by `word`'s answer: the first for an absent key, then one per word (a table:
        // a `match` needs more code); `unwrap_or` covers any other value.
        const MODES: [FsckMode; 3] = [FsckMode::Auto, FsckMode::Skip, FsckMode::Force];
        let mode = word(picks, FSCK_MODE, b"skip force");
        c.fsck_mode = MODES.get(mode).copied().unwrap_or(FsckMode::Auto);
        const REPAIRS: [FsckRepair; 4] = [
            FsckRepair::Preen,
            FsckRepair::Preen,
            FsckRepair::Yes,
            FsckRepair::No,
        ];
        let repair = word(picks, FSCK_REPAIR, b"preen yes no");
        c.fsck_repair = REPAIRS.get(repair).copied().unwrap_or(FsckRepair::None);
        // dracut's boolean words for "off".
        c.shell_allowed = !matches!(word(picks, SHELL, b"0 no off"), 1..=3);
        return Ok(c);
    };
    Err(error(reason, token))
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
        packed_names!(NAMES, ENDS, ["LABEL", "UUID", "PARTLABEL", "PARTUUID"]);
        packed_name(NAMES, &ENDS, self as usize)
    }
}

/// A block device as configured: `LABEL=x`, `UUID=x`, `PARTLABEL=x`, `PARTUUID=x` or `/dev/...`.
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
        normalize(spec, &mut path)?;
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
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hex = |n: u8| HEX.get(usize::from(n & 15)).copied().unwrap_or(b'0');
        for c in self.value.as_bytes() {
            let escaped = [b'\\', b'x', hex(c >> 4), hex(*c)];
            out.push_lossy(if is_plain_in_by_name(*c) {
                core::slice::from_ref(c)
            } else {
                &escaped
            });
        }
    }
}

/// Splits `<device>:<mountpoint>` (cmdline mounts and layout `VOLUMES`) at the last `:` that is
/// followed by `/`; the mount point comes back normalized.
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
        for rule in [&OEM_TIMEOUT_S, &SYSROOT_WAIT_S] {
            let end = std::format!("using {}", rule.default);
            assert!(rule.bad.ends_with(end.as_bytes()), "{}", rule.default);
        }
        assert!(USING_DEFAULT_OVERLAY.ends_with(DEFAULT_OVERLAY));
    }
    use std::vec::Vec;

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
    fn immucore_spelling_wins_and_first_non_empty_wins() {
        let c = ok("rd.cos.oemlabel=A rd.immucore.oemlabel= rd.immucore.oemlabel=B rd.cos.oemlabel=C rd.immucore.oemlabel=D");
        assert_eq!(c.oem_label.as_str(), "B");
        let c = ok("rd.cos.oemlabel= rd.cos.oemlabel rd.cos.oemlabel=A rd.cos.oemlabel=B");
        assert_eq!(c.oem_label.as_str(), "A");
        let c = ok("rd.immucore.overlay=tmpfs:1G rd.cos.overlay=tmpfs:2G rd.cos.oemtimeout=7 rd.immucore.oemtimeout=9");
        assert_eq!(c.overlay.as_str(), "tmpfs:1G");
        assert_eq!(c.oem_timeout_s, 9);
        let c = ok(
            "cos-img/filename= cos-img/filename=/cOS/passive.img cos-img/filename=/cOS/active.img",
        );
        assert_eq!(c.image.as_str(), "/cOS/passive.img");
        let c =
            ok("fsck.mode=skip fsck.mode=force fsck.repair= fsck.repair=no rd.shell=1 rd.shell=0");
        assert_eq!(
            (c.fsck_mode, c.fsck_repair, c.shell_allowed),
            (FsckMode::Skip, FsckRepair::No, true)
        );
    }

    #[test]
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

    #[test]
    fn more_than_16_mounts_is_an_error() {
        let mut line = std::string::String::new();
        for i in 0..16 {
            line += &std::format!("rd.cos.mount=LABEL=d{i}:/m{i} ");
        }
        assert_eq!(ok(&line).mounts.len(), 16);
        let e = parse(std::format!("{line} rd.immucore.mount=LABEL=x:/x").as_bytes()).unwrap_err();
        assert_eq!(
            (e.reason, e.token.as_str()),
            ("more than 16 mounts", "LABEL=x:/x")
        );
        let e = parse(std::format!("{line} rd.cos.mount=LABEL=x:/x").as_bytes()).unwrap_err();
        assert_eq!(e.reason, "more than 16 mounts");
    }

    #[test]
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
            ("root= root=LABEL=COS_PASSIVE root=LABEL=COS_ACTIVE", BootState::Passive, Mode::Normal),
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
        let sentinels: Vec<_> = all.iter().map(|s| s.sentinel()).collect();
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

    #[test]
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
        let repair = |l: &str| ok(l).fsck_repair;
        assert_eq!(mode("fsck.mode=force"), FsckMode::Force);
        assert_eq!(mode("fsck.mode=auto"), FsckMode::Auto);
        assert_eq!(mode("fsck.mode=skipping"), FsckMode::Auto);
        assert_eq!(repair("fsck.repair=preen"), FsckRepair::Preen);
        assert_eq!(repair("fsck.repair=yes"), FsckRepair::Yes);
        assert_eq!(repair("fsck.repair=no"), FsckRepair::No);
        assert_eq!(repair("fsck.repair=maybe"), FsckRepair::None);
        assert_eq!(
            repair("fsck.repair=averyveryverylongword"),
            FsckRepair::None
        );
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
            parse(b"cos-img/filename=cOS/active.img")
                .unwrap_err()
                .reason,
            "not absolute"
        );
        assert_eq!(
            ok("cos-img/filename=//cOS/./active.img").image.as_str(),
            "/cOS/active.img"
        );
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
}
