//! How this run was started: mode of operation, the paths it works on (with the test seams of
//! SPEC §2) and the command line it read.

use crate::util::fixed::Text;
#[cfg(feature = "service")]
use crate::util::words::lookup;
use crate::util::words::word_index;

pub const DEFAULT_SYSROOT: &[u8] = b"/sysroot";
pub const DEFAULT_CONFIG_DIR: &[u8] = b"/etc/immucore";
pub const PROC_CMDLINE: &[u8] = b"/proc/cmdline";

#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Action {
    Boot,
    DryRun,
    Help,
    Version,
    /// `boot-ok`: the booted system marks this boot good (`steps::assessment::boot_ok`).
    #[cfg(feature = "bootassessment")]
    BootOk,
}

/// The program arguments `Env::new` knows, and in `ACTIONS` the action each asks for. Words
/// in one string: a table of (`&str`, action) pairs is 24 bytes a row (qemu/size-lore.md).
#[cfg(not(feature = "bootassessment"))]
const ACTION_WORDS: &[u8] = b"--dry-run --help -h help --version -v version";
#[cfg(feature = "bootassessment")]
const ACTION_WORDS: &[u8] = b"--dry-run --help -h help --version -v version boot-ok";
const ACTIONS: &[Action] = &[
    Action::DryRun,
    Action::Help,
    Action::Help,
    Action::Help,
    Action::Version,
    Action::Version,
    Action::Version,
    #[cfg(feature = "bootassessment")]
    Action::BootOk,
];

pub struct Env {
    pub action: Action,
    /// PID 1 of a tiny initramfs: base mounts, modules and switch_root are ours.
    pub init_mode: bool,
    /// Where the new root is assembled (`IMMUCORE_SYSROOT`, default `/sysroot`).
    pub sysroot: Text<128>,
    /// The initramfs' own configuration (`IMMUCORE_CONFIG_DIR`, default `/etc/immucore`).
    pub config_dir: Text<128>,
    /// The file the command line is read from (`HOST_PROC_CMDLINE`, default `/proc/cmdline`).
    pub cmdline_path: Text<256>,
    /// A word on the command line we do not know, reported by `main`.
    pub bad_arg: Option<Text<64>>,
}

impl Env {
    /// Builds the run's settings from program arguments (without `argv[0]`) and `KEY=value`
    /// environment strings.
    pub fn new<'a>(
        args: impl Iterator<Item = &'a [u8]>,
        env: impl Iterator<Item = &'a [u8]>,
        pid1: bool,
    ) -> Env {
        let mut e = Env {
            action: Action::Boot,
            init_mode: pid1,
            sysroot: Text::EMPTY,
            config_dir: Text::EMPTY,
            cmdline_path: Text::EMPTY,
            bad_arg: None,
        };
        set(&mut e.sysroot, DEFAULT_SYSROOT);
        set(&mut e.config_dir, DEFAULT_CONFIG_DIR);
        set(&mut e.cmdline_path, PROC_CMDLINE);
        for a in args {
            match word_index(ACTION_WORDS, a) {
                Some(i) => e.action = ACTIONS.get(i).copied().unwrap_or(Action::Boot),
                // The kernel passes unknown boot words (`single`, runlevels) to init: they are
                // for the real init, which gets the same argv after switch_root.
                None if pid1 => {}
                None => e.bad_arg.insert(Text::new()).push_lossy(a),
            }
        }
        // The test seams, for the service mode run against a scratch root (tests/mount_ns). A
        // build without it runs only as PID 1, whose environment is the kernel command line's.
        #[cfg(not(feature = "service"))]
        let _ = env;
        #[cfg(feature = "service")]
        for kv in env {
            let Some(eq) = kv.iter().position(|&c| c == b'=') else {
                continue;
            };
            let (key, val) = (kv.get(..eq).unwrap_or(&[]), kv.get(eq + 1..).unwrap_or(&[]));
            match lookup(SEAMS, key) {
                Some(Seam::Sysroot) => set(&mut e.sysroot, val),
                Some(Seam::ConfigDir) => set(&mut e.config_dir, val),
                Some(Seam::CmdlinePath) => set(&mut e.cmdline_path, val),
                None => {}
            }
        }
        e
    }
}

/// The test seams of SPEC §2: what each environment variable `Env::new` reads sets.
#[cfg(feature = "service")]
#[derive(Clone, Copy)]
enum Seam {
    Sysroot,
    ConfigDir,
    CmdlinePath,
}
#[cfg(feature = "service")]
const SEAMS: &[(&str, Seam)] = &[
    ("IMMUCORE_SYSROOT", Seam::Sysroot),
    ("IMMUCORE_CONFIG_DIR", Seam::ConfigDir),
    ("HOST_PROC_CMDLINE", Seam::CmdlinePath),
];

/// Sets `path` to `value` when it fits; an empty or overlong value leaves it as it is.
fn set<const N: usize>(path: &mut Text<N>, value: &[u8]) {
    if !value.is_empty() && value.len() <= N {
        path.clear();
        path.push_lossy(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(args: &[&str], vars: &[&str], pid1: bool) -> Env {
        Env::new(
            args.iter().map(|s| s.as_bytes()),
            vars.iter().map(|s| s.as_bytes()),
            pid1,
        )
    }

    #[test]
    #[cfg(feature = "service")]
    fn defaults_and_seams() {
        let e = env(&[], &["PATH=/bin"], false);
        assert_eq!(e.action, Action::Boot);
        assert_eq!(e.sysroot.as_str(), "/sysroot");
        assert_eq!(e.cmdline_path.as_str(), "/proc/cmdline");
        let e = env(
            &["--dry-run"],
            &["HOST_PROC_CMDLINE=/tmp/c", "IMMUCORE_SYSROOT=/tmp/root"],
            false,
        );
        assert_eq!(e.action, Action::DryRun);
        assert_eq!(e.cmdline_path.as_str(), "/tmp/c");
        assert_eq!(e.sysroot.as_str(), "/tmp/root");
    }

    /// Without the service feature the build is PID 1 only: the environment (the kernel
    /// command line's `key=value` words) cannot move the sysroot or the command line.
    #[test]
    #[cfg(not(feature = "service"))]
    fn seams_need_the_service_feature() {
        let e = env(
            &[],
            &["HOST_PROC_CMDLINE=/tmp/c", "IMMUCORE_SYSROOT=/x"],
            true,
        );
        assert_eq!(e.cmdline_path.as_str(), "/proc/cmdline");
        assert_eq!(e.sysroot.as_str(), "/sysroot");
    }

    #[test]
    fn unknown_words_are_errors_except_as_init() {
        assert!(env(&["--frobnicate"], &[], false).bad_arg.is_some());
        let e = env(&["single"], &[], true);
        assert!(e.bad_arg.is_none());
        assert!(e.init_mode);
        assert_eq!(env(&["version"], &[], false).action, Action::Version);
        assert_eq!(env(&["--help"], &[], false).action, Action::Help);
    }

    #[test]
    fn every_action_word_asks_for_its_action() {
        use Action::*;
        let cases = [
            ("--dry-run", DryRun),
            ("--help", Help),
            ("-h", Help),
            ("help", Help),
            ("--version", Version),
            ("-v", Version),
            ("version", Version),
            #[cfg(feature = "bootassessment")]
            ("boot-ok", BootOk),
        ];
        for (word, action) in cases {
            let e = env(&[word], &[], false);
            assert!(e.action == action && e.bad_arg.is_none(), "{word}");
        }
    }
}
