//! `rd.immucore.watchdog=<seconds>`: a hardware watchdog armed from the start of PID 1 to the
//! real init. It is opened as soon as `/dev` is there (`start`, after base-mounts; a driver
//! that is a module is looked for again after every step, so it counts from load-modules on),
//! pinged between steps and while waiting for devices (`keepalive`), and left armed at switch
//! root: the descriptor closes on exec without the magic close, so the real init must take the
//! watchdog over (systemd: `RuntimeWatchdogSec=`). A hang anywhere in between resets the board.

use crate::log;
use crate::sys::{self, Global};
use crate::util::fixed::parse_u64;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::OFlags;

/// The devices tried, in order: the first watchdog's legacy node, then its numbered one.
const DEVICES: [&[u8]; 2] = [b"/dev/watchdog", b"/dev/watchdog0"];

/// The longest timeout taken (one hour); longer values are refused with a warning.
const MAX_TIMEOUT_S: u64 = 3600;

struct Watchdog {
    /// The timeout asked for; 0: no watchdog wanted.
    wanted_s: u32,
    fd: Option<OwnedFd>,
}

static WATCHDOG: Global<Watchdog> = Global::new(Watchdog {
    wanted_s: 0,
    fd: None,
});

/// The timeout `rd.immucore.watchdog=<seconds>` asks for (the last such word), if any; a value
/// that is not a number of seconds from 1 to an hour is refused with a warning.
pub fn wanted_timeout(cmdline: &[u8]) -> Option<u32> {
    let key = b"rd.immucore.watchdog=";
    let value = crate::boot::cmdline_words(cmdline)
        .filter_map(|w| w.strip_prefix(key))
        .next_back()?;
    match parse_u64(value) {
        Some(s @ 1..=MAX_TIMEOUT_S) => u32::try_from(s).ok(),
        _ => {
            log::warn(
                b"rd.immucore.watchdog={}: not a number of seconds from 1 to 3600; no watchdog",
                &[value],
            );
            None
        }
    }
}

/// In init mode, once `/dev` is there: arms the watchdog if the command line asks for one.
pub fn start(cmdline: &[u8]) {
    let Some(secs) = wanted_timeout(cmdline) else {
        return;
    };
    WATCHDOG.with(|w| {
        w.wanted_s = secs;
        open(w);
    });
}

/// Opens the first watchdog device there is and sets its timeout.
fn open(w: &mut Watchdog) {
    for path in DEVICES {
        let Ok(fd) = sys::open(path, OFlags::WRONLY, 0) else {
            continue;
        };
        match sys::watchdog::set_timeout(fd.as_fd(), w.wanted_s) {
            Ok(took) => log::info(
                b"watchdog {} armed: {} s",
                &[path, log::num(u64::from(took)).as_bytes()],
            ),
            // Armed anyway (opening starts it), with the driver's default timeout.
            Err(e) => log::warn_errno(
                b"watchdog {}: cannot set the timeout ({}); the driver's own counts",
                &[path],
                e,
            ),
        }
        w.fd = Some(fd);
        return;
    }
}

/// Restarts the watchdog's countdown; while none is open but one is wanted, looks for it again
/// (its driver may be a module that load-modules has just loaded).
pub fn keepalive() {
    WATCHDOG.with(|w| match &w.fd {
        Some(fd) => {
            let _ = sys::watchdog::keepalive(fd.as_fd());
        }
        None if w.wanted_s > 0 => open(w),
        None => {}
    });
}

/// Before switch root: a last keep-alive, and the hand-over in the log (or that there was no
/// device to hand over).
pub fn hand_over() {
    keepalive();
    WATCHDOG.with(|w| match (&w.fd, w.wanted_s) {
        (Some(_), _) => log::info(
            b"watchdog left armed for the real init, which must keep it alive",
            &[],
        ),
        (None, 0) => {}
        (None, _) => log::warn(
            b"rd.immucore.watchdog: no watchdog device (/dev/watchdog, /dev/watchdog0): going on without",
            &[],
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_a_whole_word_number_of_seconds() {
        assert_eq!(wanted_timeout(b"quiet rd.immucore.watchdog=30\n"), Some(30));
        assert_eq!(
            wanted_timeout(b"rd.immucore.watchdog=5 rd.immucore.watchdog=60"),
            Some(60)
        );
        assert_eq!(wanted_timeout(b"quiet"), None);
        for refused in ["0", "", "3601", "ten", "-1", "99999999999999999999"] {
            let line = std::format!("rd.immucore.watchdog={refused}");
            assert_eq!(wanted_timeout(line.as_bytes()), None, "{refused}");
        }
        assert_eq!(wanted_timeout(b"xrd.immucore.watchdog=5"), None);
    }
}
