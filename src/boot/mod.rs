//! Init mode (PID 1 of a tiny initramfs): the hand-over to the real init, what the run leaves
//! behind for people, and what happens when there is no root to hand over to. (The API
//! filesystems and kernel modules are steps: `steps::init`.)

pub mod report;
pub mod switch_root;

use crate::log;
use crate::sys;
use rustix::system::RebootCommand;

/// A reboot, power-off or halt: the `reboot(2)` command, and what the log calls doing it.
pub type Stop = (RebootCommand, &'static [u8]);

/// The reboot, power-off or halt `cmdline` asks for after a fatal error: a reboot if
/// `rd.emergency=reboot` (dracut) or `rd.immucore.rebootonfailure` (upstream, which looks for
/// the bare word too) is there, else a power-off for `rd.emergency=poweroff`, else a halt for
/// `rd.emergency=halt`. `None`: the shell `rd.shell` allows, or waiting.
///
/// Words are matched whole (split at spaces, so also in a line the parser refused). Unlike
/// dracut, which first opens the shell `rd.shell` allows, an asked-for action wins, and reboot
/// wins over the others: a board in the field has nobody at its console, and the shell is
/// allowed by default. (Not a key of `cmdline::parse`: this costs less of the tiny build.)
pub fn asked_stop(cmdline: &[u8]) -> Option<Stop> {
    let has = |word: &[u8]| cmdline_words(cmdline).any(|w| w == word);
    if has(b"rd.emergency=reboot") || has(b"rd.immucore.rebootonfailure") {
        Some((RebootCommand::Restart, b"rebooting"))
    } else if has(b"rd.emergency=poweroff") {
        Some((RebootCommand::PowerOff, b"powering off"))
    } else if has(b"rd.emergency=halt") {
        Some((RebootCommand::Halt, b"halting"))
    } else {
        None
    }
}

/// The words of the kernel command line `cmdline` (split at spaces and the final newline).
pub fn cmdline_words(cmdline: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> + Clone {
    cmdline.split(|&c| c <= b' ')
}

/// How long the failure summary stays on the consoles before a reboot, power-off or halt: the
/// one deadline between a fatal error and the action (`fail`'s message says it).
pub const READING_PAUSE_MS: u64 = 10_000;

/// The consoles `console=` words name (`ttyS0` of `console=ttyS0,115200n8`), without the last
/// one: the kernel makes that one `/dev/console`, where log lines go anyway. Only plain device
/// names (letters and digits) count: the name becomes a path under `/dev`.
#[cfg(feature = "consoles")]
pub fn other_consoles(cmdline: &[u8]) -> impl Iterator<Item = &[u8]> {
    let names = cmdline_words(cmdline).filter_map(|w| {
        let value = w.strip_prefix(b"console=")?;
        crate::util::words::split(value, b',').next()
    });
    let last = names.clone().next_back();
    names.filter(move |name| {
        Some(*name) != last && !name.is_empty() && name.iter().all(u8::is_ascii_alphanumeric)
    })
}

/// Sends the log lines from now on (the failure summary, the action) to every console of the
/// command line, not only to `/dev/console`: a board may have a serial line and a screen, and
/// someone looks at either (a halt reason that reached only the last console was Kairos issue
/// 4618). A console that cannot be opened is left out.
#[cfg(feature = "consoles")]
pub fn tee_to_consoles(cmdline: &[u8]) {
    use rustix::fs::OFlags;
    for name in other_consoles(cmdline).take(log::MAX_CONSOLES) {
        let mut path = crate::util::fixed::Text::<64>::new();
        path.push_lossy(b"/dev/");
        if path.push(name).is_err() {
            continue;
        }
        // Non-blocking: a serial line without carrier or flow control must not stop PID 1.
        let flags = OFlags::WRONLY | OFlags::NOCTTY | OFlags::NONBLOCK;
        if let Ok(fd) = sys::open(path.as_bytes(), flags, 0) {
            log::add_console(fd);
        }
    }
}

/// Fatal failure in init mode: there is no root. PID 1 must never exit, so this ends in what
/// `cmdline` asks for (`asked_stop`) after the reading pause; else in a shell if
/// `shell_allowed` and there is one; else in an endless wait.
pub fn fail(cmdline: &[u8], shell_allowed: bool) -> ! {
    sys::sync();
    if let Some((command, doing)) = asked_stop(cmdline) {
        log::error(b"{} in 10 s", &[doing]);
        sys::sleep_ms(READING_PAUSE_MS);
        sys::sync();
        let _ = sys::reboot(command);
    } else if shell_allowed && sys::is_executable(b"/bin/sh") {
        log::error(b"starting /bin/sh (rd.shell=0 prevents this)", &[]);
        let e = sys::args::exec_shell();
        log::error(b"cannot start /bin/sh: {}", &[log::errno(e).as_bytes()]);
    }
    log::error(
        b"waiting forever; reset the machine, or boot with rd.emergency=reboot",
        &[],
    );
    loop {
        sys::sleep_ms(60_000);
        sys::reap_children();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "consoles")]
    #[test]
    fn other_consoles_are_all_but_the_last() {
        let names = |line: &'static [u8]| other_consoles(line).collect::<std::vec::Vec<_>>();
        let two = b"console=ttyS1 root=LABEL=COS_ACTIVE console=ttyS0,115200n8\n";
        assert_eq!(names(two), [b"ttyS1"]);
        let three = b"console=tty0 console=ttyAMA0,115200 console=hvc0";
        assert_eq!(names(three), [&b"tty0"[..], b"ttyAMA0"]);
        assert!(names(b"console=ttyS0 quiet").is_empty());
        assert!(names(b"quiet").is_empty());
        // Not a device name: no path outside /dev, no empty name.
        let odd = b"console=../run/x console=tty/0 console= console=,9600 console=ttyS0";
        assert!(names(odd).is_empty());
    }

    /// What `asked_stop` asks for, by the name the log gives it.
    fn asked(cmdline: &[u8]) -> Option<&'static str> {
        asked_stop(cmdline).map(|(_, doing)| core::str::from_utf8(doing).unwrap())
    }

    #[test]
    fn failure_action_precedence() {
        let kairos =
            b"console=tty1 panic=5 rd.emergency=reboot rd.shell=0 systemd.crash_reboot=yes\n";
        assert_eq!(asked(kairos), Some("rebooting"));
        assert_eq!(asked(b"rd.emergency=poweroff"), Some("powering off"));
        assert_eq!(asked(b"rd.emergency=halt\n"), Some("halting"));
        // Reboot beats the others, whoever asks for it and in whatever order.
        let all = b"rd.emergency=halt rd.emergency=poweroff rd.emergency=reboot";
        assert_eq!(asked(all), Some("rebooting"));
        assert_eq!(asked(b"rd.emergency=halt"), Some("halting"));
        let upstream = b"rd.emergency=halt rd.immucore.rebootonfailure";
        assert_eq!(asked(upstream), Some("rebooting"));
        assert_eq!(
            asked(b"rd.emergency=poweroff rd.emergency=halt"),
            Some("powering off")
        );
        // Nothing asked (then the shell or waiting): a word dracut does not know asks for
        // nothing; words are matched whole.
        assert_eq!(asked(b"root=LABEL=COS_ACTIVE rd.shell=0"), None);
        assert_eq!(asked(b"rd.emergency=explode rd.emergency="), None);
        assert_eq!(asked(b"xrd.emergency=reboot rd.emergency=rebooted"), None);
        assert_eq!(asked(b"rd.cos.mount=LABEL=rd.emergency=reboot"), None);
    }
}
