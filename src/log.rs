//! Logging without `core::fmt`: a message is a template whose `{}` marks are replaced by the
//! arguments in order (one static string per call site instead of a list of parts). Lines go to the console
//! (`immucore: <step>: <message>`), in init mode also to `/dev/kmsg`, and to
//! `/run/immucore/immucore.log` with boot-time stamps. Lines logged before `/run` is usable are
//! kept in memory and written when the file is opened.

use crate::sys::{self, Global};
use crate::util::fixed::{fmt_u64, hex_pair, Text};
use crate::util::words::split;
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::IoSlice;

pub const LOG_DIR: &[u8] = b"/run/immucore";
pub const LOG_FILE: &[u8] = b"/run/immucore/immucore.log";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

struct Logger {
    debug: bool,
    kmsg: Option<OwnedFd>,
    /// We turned off the kernel's rate limit of `/dev/kmsg` writers and must restore it.
    kmsg_limit_lifted: bool,
    file: Option<OwnedFd>,
    /// What was logged before the file could be opened; flushed into it on open.
    early: Text<8192>,
    /// Keeps lines off the console (`--dry-run`, whose output is the plan). All-zero initial
    /// state keeps the logger in .bss, out of the binary.
    quiet: bool,
    /// The step the lines belong to (`set_step`); none outside steps.
    step: Option<&'static str>,
    /// More consoles that get the console lines (`add_console`).
    #[cfg(feature = "consoles")]
    consoles: [Option<OwnedFd>; MAX_CONSOLES],
}

/// The most consoles `add_console` keeps.
#[cfg(feature = "consoles")]
pub const MAX_CONSOLES: usize = 4;

static LOGGER: Global<Logger> = Global::new(Logger {
    debug: false,
    kmsg: None,
    kmsg_limit_lifted: false,
    file: None,
    early: Text::EMPTY,
    quiet: false,
    step: None,
    #[cfg(feature = "consoles")]
    consoles: [None, None, None, None],
});

pub fn set_debug(on: bool) {
    LOGGER.with(|l| l.debug = on);
}

pub fn set_console(on: bool) {
    LOGGER.with(|l| l.quiet = !on);
}

/// Names the step the following lines belong to (`immucore: <step>: ...`); `""` for lines of
/// no step. The plan sets it as each step starts, so step code does not pass it at every call.
#[inline(never)]
pub fn set_step(step: &'static str) {
    LOGGER.with(|l| l.step = Some(step));
}

/// Also send the console lines to `fd`, another console (`boot::tee_to_consoles`); ignored
/// beyond `MAX_CONSOLES`.
#[cfg(feature = "consoles")]
pub fn add_console(fd: OwnedFd) {
    LOGGER.with(|l| {
        if let Some(free) = l.consoles.iter_mut().find(|c| c.is_none()) {
            *free = Some(fd);
        }
    });
}

/// Also send lines to the kernel log (init mode: the console may be invisible, kmsg is not).
///
/// The kernel lets a `/dev/kmsg` writer log 10 lines per 5 s by default, which would drop most
/// of a boot's lines: the limit is lifted (`printk_devkmsg=on`) until `restore_kmsg_limit`, as
/// the initramfs is the only writer then.
pub fn open_kmsg() {
    let fd = sys::open(b"/dev/kmsg", rustix::fs::OFlags::WRONLY, 0).ok();
    let mut mode = [0u8; 16];
    let lifted = sys::read_file(DEVKMSG, &mut mode)
        .is_ok_and(|n| mode.get(..n) == Some(b"ratelimit\n"))
        && sys::write_existing(DEVKMSG, b"on\n").is_ok();
    LOGGER.with(|l| {
        l.kmsg = fd;
        l.kmsg_limit_lifted = lifted;
    });
}

const DEVKMSG: &[u8] = b"/proc/sys/kernel/printk_devkmsg";

/// Puts the kernel's `/dev/kmsg` rate limit back before the real init takes over.
pub fn restore_kmsg_limit() {
    if LOGGER.with(|l| core::mem::take(&mut l.kmsg_limit_lifted)) {
        let _ = sys::write_existing(DEVKMSG, b"ratelimit\n");
    }
}

/// Opens `/run/immucore/immucore.log` (appending) and writes the lines kept so far.
pub fn open_file() {
    if sys::mkdir_p(LOG_DIR, 0o755).is_err() {
        return;
    }
    let flags =
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE | rustix::fs::OFlags::APPEND;
    let Ok(fd) = sys::open(LOG_FILE, flags, 0o644) else {
        return;
    };
    LOGGER.with(|l| {
        let _ = sys::write_all(fd.as_fd(), l.early.as_bytes());
        l.early.clear();
        l.file = Some(fd);
    });
}

/// Longest line (from `immucore: ` on, without the newline); longer ones end in `...`.
const MAX_LINE: usize = 1024;

pub fn log(level: Level, template: &[u8], args: &[&[u8]]) {
    emit(template, args, level);
}

/// `log` with the level last: `info`, `warn`, `error` and `debug` pass their arguments on as
/// they came and only add the level.
#[inline(never)]
fn emit(template: &[u8], args: &[&[u8]], level: Level) {
    LOGGER.with(|l| {
        if level == Level::Debug && !l.debug {
            return;
        }
        // One buffer serves all outputs: the file gets it whole (the time stamp first), the
        // console the line after the stamp, `/dev/kmsg` the priority and that line.
        let mut buf = Line::new();
        push_stamp(&mut buf, sys::now_ms());
        let start = buf.len();
        buf.push_lossy(b"immucore: ");
        if let Some(step) = l.step.filter(|s| !s.is_empty()) {
            buf.push_lossy(step.as_bytes());
            buf.push_lossy(b": ");
        }
        buf.push_lossy(match level {
            Level::Warn => b"warning: ",
            Level::Error => b"error: ",
            _ => b"",
        });
        // Values from the command line, layout files and disks end up in messages: a control
        // character in one must not start a forged line on the console or in the log.
        expand(template, args, &mut |c| {
            if c < 0x20 || c == 0x7f {
                let [high, low] = hex_pair(c);
                buf.push_lossy(&[b'\\', b'x', high, low]);
            } else {
                buf.push_lossy(&[c]);
            }
        });
        if buf.len() - start >= MAX_LINE {
            buf.truncate(start + MAX_LINE - 4);
            buf.push_lossy(b"...");
        }
        buf.push_lossy(b"\n");
        let stamped = buf.as_bytes();
        let line = stamped.get(start..).unwrap_or(&[]);
        if !l.quiet {
            let _ = sys::write_all(sys::stderr(), line);
            #[cfg(feature = "consoles")]
            for fd in l.consoles.iter().flatten() {
                // A console that cannot take the line now (non-blocking) loses it.
                let _ = sys::write_all(fd.as_fd(), line);
            }
        }
        if let Some(k) = &l.kmsg {
            // The kernel log priority of the level.
            let prio: &[u8] = match level {
                Level::Debug => b"<7>",
                Level::Info => b"<6>",
                Level::Warn => b"<4>",
                Level::Error => b"<3>",
            };
            // One write is one kernel log record.
            let _ = rustix::io::writev(k, &[IoSlice::new(prio), IoSlice::new(line)]);
        }
        match &l.file {
            Some(f) => {
                let _ = sys::write_all(f.as_fd(), stamped);
            }
            None => l.early.push_lossy(stamped),
        }
    });
}

/// A log line with its time stamp (at most 24 bytes) and newline. A capacity other code uses
/// too (its `Text` methods then exist once), a kilobyte more than needed.
type Line = Text<2048>;
/// The most a `Line` holds: the time stamp, the line and the newline.
const LINE_BYTES: usize = 24 + MAX_LINE + 1;
const _: () = assert!(LINE_BYTES <= 2048);

/// `[   12.345] ` like the kernel's own timestamps, from milliseconds since boot.
fn push_stamp(out: &mut Line, ms: u64) {
    let mut digits = [0u8; 20];
    let secs = fmt_u64(ms / 1000, &mut digits);
    out.push_lossy(b"[");
    for _ in secs.len()..5 {
        out.push_lossy(b" ");
    }
    out.push_lossy(secs);
    out.push_lossy(b".");
    // Three digits with leading zeros: the last three of 1000 + the fraction.
    out.push_lossy(
        fmt_u64(1000 + ms % 1000, &mut digits)
            .get(1..)
            .unwrap_or(&[]),
    );
    out.push_lossy(b"] ");
}

/// Feeds `template` to `out` byte by byte with each `{}` replaced by the next of `args` (a `{}`
/// without an argument left stays as it is).
pub fn expand(template: &[u8], args: &[&[u8]], out: &mut dyn FnMut(u8)) {
    let mut args = args.iter();
    let mut i = 0;
    while let Some(&c) = template.get(i) {
        if c == b'{' && template.get(i + 1) == Some(&b'}') {
            if let Some(arg) = args.next() {
                arg.iter().for_each(|&b| out(b));
                i += 2;
                continue;
            }
        }
        out(c);
        i += 1;
    }
}

pub fn info(template: &[u8], args: &[&[u8]]) {
    emit(template, args, Level::Info);
}

pub fn warn(template: &[u8], args: &[&[u8]]) {
    emit(template, args, Level::Warn);
}

/// `warn` with the text of `e` after `args` (at most three), for the template's last `{}`.
#[inline(never)]
pub fn warn_errno(template: &[u8], args: &[&[u8]], e: sys::Errno) {
    let text = errno(e);
    // The errno text in every slot that no argument takes.
    let mut all = [text.as_bytes(); 4];
    for (slot, a) in all.iter_mut().zip(args) {
        *slot = a;
    }
    emit(
        template,
        all.get(..=args.len()).unwrap_or(&all),
        Level::Warn,
    );
}

pub fn error(template: &[u8], args: &[&[u8]]) {
    emit(template, args, Level::Error);
}

pub fn debug(template: &[u8], args: &[&[u8]]) {
    emit(template, args, Level::Debug);
}

/// Decimal text of `n`, for building messages.
pub fn num(n: u64) -> Text<20> {
    let mut t = Text::new();
    let _ = t.push_num(n);
    t
}

/// The errnos with a text of their own, and those texts, one a line in the same order. Two
/// plain tables: a `match` compiles to a jump table over the whole errno range (qemu/size-lore.md).
const NAMED_ERRNOS: [sys::Errno; 21] = {
    use sys::Errno as E;
    [
        E::NOENT,
        E::ACCESS,
        E::PERM,
        E::BUSY,
        E::EXIST,
        E::NOTDIR,
        E::INVAL,
        E::ROFS,
        E::NOSPC,
        E::NODEV,
        E::NXIO,
        E::LOOP,
        E::XDEV,
        E::NAMETOOLONG,
        E::IO,
        E::FBIG,
        E::NOEXEC,
        E::AGAIN,
        E::NOTTY,
        E::TIMEDOUT,
        E::UCLEAN,
    ]
};
const ERRNO_TEXTS: &[u8] = concat!(
    "no such file or directory\n",
    "permission denied\n",
    "operation not permitted\n",
    "device or resource busy\n",
    "file exists\n",
    "not a directory\n",
    "invalid argument\n",
    "read-only file system\n",
    "no space left on device\n",
    "no such device (filesystem type not supported?)\n",
    "no such device or address\n",
    "symbolic link loop or dangling symlink\n",
    "path leads outside the root\n",
    "name too long\n",
    "input/output error\n",
    "file too large\n",
    "exec format error\n",
    "resource temporarily unavailable\n",
    "inappropriate ioctl for device\n",
    "timed out (killed)\n",
    "structure needs cleaning (filesystem corrupted)\n",
)
.as_bytes();

/// The text of an errno (`no such file or directory`; `errno 95` for the ones not named).
pub fn errno(e: sys::Errno) -> Text<48> {
    let mut t = Text::new();
    let named = NAMED_ERRNOS.iter().position(|&n| n == e);
    match named.and_then(|i| split(ERRNO_TEXTS, b'\n').nth(i)) {
        Some(text) => t.push_lossy(text),
        None => {
            t.push_lossy(b"errno ");
            let _ = t.push_num(e.raw_os_error() as u64);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn expanded(template: &[u8], args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        expand(template, args, &mut |c| out.push(c));
        out
    }

    #[test]
    fn expand_fills_marks_in_order_and_keeps_extra_marks() {
        assert_eq!(expanded(b"{} on {}", &[b"/a", b"/b"]), b"/a on /b");
        assert_eq!(expanded(b"x {} {}", &[b"1"]), b"x 1 {}");
        assert_eq!(expanded(b"{", &[b"1"]), b"{");
        assert_eq!(expanded(b"", &[b"1"]), b"");
    }

    #[test]
    fn every_named_errno_has_its_text() {
        // One text a line, as many as named errnos (the last line ends with `\n` too).
        let lines = split(ERRNO_TEXTS, b'\n');
        assert_eq!(lines.count(), NAMED_ERRNOS.len() + 1);
        assert_eq!(
            errno(sys::Errno::NODEV).as_str(),
            "no such device (filesystem type not supported?)"
        );
        assert_eq!(
            errno(sys::Errno::NOENT).as_str(),
            "no such file or directory"
        );
        assert_eq!(
            errno(sys::Errno::UCLEAN).as_str(),
            "structure needs cleaning (filesystem corrupted)"
        );
        assert_eq!(errno(sys::Errno::NOTSUP).as_str(), "errno 95");
    }

    /// The test harness runs tests on many threads, and some of them log: naming steps and
    /// logging from several threads at once must be sound (ThreadSanitizer reported a data
    /// race here), and every line sees a whole step name, never half of another.
    #[test]
    fn logging_from_many_threads_is_sound() {
        const STEPS: [&str; 2] = ["a", "a-much-longer-step-name"];
        set_console(false);
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..2_000 {
                        set_step(STEPS[(i + t) % 2]);
                        warn(b"line {}", &[b"x"]);
                        // Other tests name their own steps meanwhile: any whole name will do.
                        let step = LOGGER.with(|l| l.step).unwrap_or("");
                        assert!(
                            step.len() < 64 && step.chars().all(|c| c.is_ascii_graphic())
                                || step.is_empty(),
                            "{step:?}"
                        );
                    }
                });
            }
        });
        set_step("");
        set_console(true);
    }

    #[test]
    fn stamps_look_like_the_kernels() {
        let stamp = |ms| {
            let mut t = Line::new();
            push_stamp(&mut t, ms);
            String::from(t.as_str())
        };
        assert_eq!(stamp(12_345), "[   12.345] ");
        assert_eq!(stamp(7), "[    0.007] ");
        assert_eq!(stamp(1_234_567_890), "[1234567.890] ");
        assert_eq!(stamp(u64::MAX).len(), 24);
    }
}
