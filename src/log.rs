//! Logging without `core::fmt`: a message is a template whose `{}` marks are replaced by the
//! arguments in order (one static string per call site instead of a list of parts). Lines go to the console
//! (`immucore: <step>: <message>`), in init mode also to `/dev/kmsg`, and to
//! `/run/immucore/immucore.log` with boot-time stamps. Lines logged before `/run` is usable are
//! kept in memory and written when the file is opened.

use crate::sys::{self, Global};
use crate::util::fixed::{fmt_u64, Text};
use rustix::fd::{AsFd, OwnedFd};

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
}

static LOGGER: Global<Logger> = Global::new(Logger {
    debug: false,
    kmsg: None,
    kmsg_limit_lifted: false,
    file: None,
    early: Text::new(),
    quiet: false,
});

pub fn set_debug(on: bool) {
    LOGGER.with(|l| l.debug = on);
}

pub fn set_console(on: bool) {
    LOGGER.with(|l| l.quiet = !on);
}

pub fn debug_enabled() -> bool {
    LOGGER.with(|l| l.debug)
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

pub fn log(level: Level, step: &str, template: &[u8], args: &[&[u8]]) {
    LOGGER.with(|l| {
        if level == Level::Debug && !l.debug {
            return;
        }
        let mut line = Text::<1024>::new();
        line.push_lossy(b"immucore: ");
        if !step.is_empty() {
            line.push_lossy(step.as_bytes());
            line.push_lossy(b": ");
        }
        match level {
            Level::Warn => line.push_lossy(b"warning: "),
            Level::Error => line.push_lossy(b"error: "),
            _ => {}
        }
        // Values from the command line, layout files and disks end up in messages: a control
        // character in one must not start a forged line on the console or in the log.
        expand(template, args, &mut |c| {
            if c < 0x20 || c == 0x7f {
                line.push_lossy(b"\\x");
                line.push_lossy(&[HEX[(c >> 4) as usize & 15], HEX[c as usize & 15]]);
            } else {
                line.push_lossy(&[c]);
            }
        });
        if line.len() == 1024 {
            line.truncate(1020);
            line.push_lossy(b"...");
        }
        line.push_lossy(b"\n");
        if !l.quiet {
            let _ = sys::write_all(sys::stderr(), line.as_bytes());
        }
        if let Some(k) = &l.kmsg {
            let prio: &[u8] = match level {
                Level::Error => b"<3>",
                Level::Warn => b"<4>",
                Level::Info => b"<6>",
                Level::Debug => b"<7>",
            };
            let mut kline = Text::<1100>::new();
            kline.push_lossy(prio);
            kline.push_lossy(line.as_bytes());
            let _ = sys::write_all(k.as_fd(), kline.as_bytes());
        }
        let mut stamped = Text::<1100>::new();
        push_stamp(&mut stamped, sys::now_ms());
        stamped.push_lossy(line.as_bytes());
        match &l.file {
            Some(f) => {
                let _ = sys::write_all(f.as_fd(), stamped.as_bytes());
            }
            None => l.early.push_lossy(stamped.as_bytes()),
        }
    });
}

/// `[   12.345] ` like the kernel's own timestamps, from milliseconds since boot.
fn push_stamp(out: &mut Text<1100>, ms: u64) {
    let mut digits = [0u8; 20];
    let secs = fmt_u64(ms / 1000, &mut digits);
    out.push_lossy(b"[");
    for _ in secs.len()..5 {
        out.push_lossy(b" ");
    }
    out.push_lossy(secs);
    out.push_lossy(b".");
    let frac = ms % 1000;
    out.push_lossy(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
    out.push_lossy(b"] ");
}

const HEX: [u8; 16] = *b"0123456789abcdef";

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

pub fn info(step: &str, template: &[u8], args: &[&[u8]]) {
    log(Level::Info, step, template, args);
}

pub fn warn(step: &str, template: &[u8], args: &[&[u8]]) {
    log(Level::Warn, step, template, args);
}

pub fn error(step: &str, template: &[u8], args: &[&[u8]]) {
    log(Level::Error, step, template, args);
}

pub fn debug(step: &str, template: &[u8], args: &[&[u8]]) {
    log(Level::Debug, step, template, args);
}

/// Decimal text of `n`, for building messages.
pub fn num(n: u64) -> Text<20> {
    let mut t = Text::new();
    let _ = t.push_num(n);
    t
}

/// The text of an errno (`ENOENT (No such file or directory)` style, short).
pub fn errno(e: sys::Errno) -> Text<48> {
    let mut t = Text::new();
    let name: &[u8] = match e {
        sys::Errno::NOENT => b"no such file or directory",
        sys::Errno::ACCESS => b"permission denied",
        sys::Errno::PERM => b"operation not permitted",
        sys::Errno::BUSY => b"device or resource busy",
        sys::Errno::EXIST => b"file exists",
        sys::Errno::NOTDIR => b"not a directory",
        sys::Errno::INVAL => b"invalid argument",
        sys::Errno::ROFS => b"read-only file system",
        sys::Errno::NOSPC => b"no space left on device",
        sys::Errno::NODEV => b"no such device (filesystem type not supported?)",
        sys::Errno::NXIO => b"no such device or address",
        sys::Errno::LOOP => b"symbolic link loop or dangling symlink",
        sys::Errno::XDEV => b"path leads outside the root",
        sys::Errno::NAMETOOLONG => b"name too long",
        sys::Errno::IO => b"input/output error",
        sys::Errno::FBIG => b"file too large",
        sys::Errno::NOEXEC => b"exec format error",
        sys::Errno::AGAIN => b"resource temporarily unavailable",
        sys::Errno::NOTTY => b"inappropriate ioctl for device",
        sys::Errno::TIMEDOUT => b"timed out (killed)",
        sys::Errno::UCLEAN => b"structure needs cleaning (filesystem corrupted)",
        _ => b"errno ",
    };
    t.push_lossy(name);
    if name == b"errno " {
        t.push_lossy(num(e.raw_os_error() as u64).as_bytes());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
