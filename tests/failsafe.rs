//! QEMU boots of the failure handling (README "Failure handling, watchdog and fallback"), on
//! x86_64, aarch64 and armv7: what PID 1 does after a fatal error (Kairos' command line ends in
//! a reboot; the power-off and halt variants), with the failure summary on both consoles of a
//! two-console command line; the hardware watchdog (`rd.immucore.watchdog=`): a root whose init
//! hangs resets the VM, one whose init takes the watchdog over does not; image fallback
//! (`rd.immucore.fallback`): a corrupted active image boots passive, active and passive both
//! corrupted boot recovery, and without the key the same disk fails as before (on x86_64 also
//! an image that fails dm-verity).
//!
//! Needs `qemu/setup` and the release binaries of the default profile (`scripts/test` does
//! both). Timing assertions have wide margins: TCG on shared cores.

mod kit;
mod serial;

use kit::{default_binary, kit, repo};
use serial::Console;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Kairos' failure words (its GRUB config, every entry), and an image that is not there.
const KAIROS: &str = "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/missing.img \
     rd.cos.oemlabel=COS_OEM panic=5 rd.emergency=reboot rd.shell=0 systemd.crash_reboot=yes";

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| kit::scratch_dir("failsafe"))
}

/// The initramfs of `arch` with the default profile's binary and the second-console and
/// watchdog modules (`mkinitramfs --failsafe`).
fn initramfs(arch: &str) -> PathBuf {
    let bin = default_binary(arch);
    kit::assert_built(&bin);
    // Tests run in parallel: each initramfs is built once.
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = scratch().join(format!("initrd-{arch}.cpio.gz"));
    if built.contains(&out) {
        return out;
    }
    kit(
        "mkinitramfs",
        &[
            arch,
            bin.to_str().unwrap(),
            out.to_str().unwrap(),
            "--failsafe",
        ],
    );
    built.push(out.clone());
    out
}

/// A fresh copy of the disk `opts` make, named `name` (one per test: tests run in parallel).
fn disk(arch: &str, name: &str, opts: &[&str]) -> PathBuf {
    let out = scratch().join(format!("disk-{arch}-{name}.img"));
    let mut args = vec![arch, out.to_str().unwrap()];
    args.extend_from_slice(opts);
    kit("mkdisk", &args);
    out
}

/// The second console of a two-console command line: a second UART on x86_64, the virtio
/// console on the arm boards (their virt machine has one UART).
fn second_console(arch: &str) -> &'static str {
    match arch {
        "x86_64" => "ttyS1",
        _ => "hvc0",
    }
}

fn first_console(arch: &str) -> &'static str {
    match arch {
        "x86_64" => "ttyS0",
        _ => "ttyAMA0",
    }
}

/// A running `qemu/boot`, in its own process group (so that it can be ended whole), with the
/// logs of its two consoles.
struct Vm {
    child: Child,
    serial: PathBuf,
    serial2: PathBuf,
    started: Instant,
}

/// What a VM printed on its consoles, how it ended (QEMU's exit status; `None`: still running
/// when it was stopped) and its wall time.
struct Ended {
    first: Console,
    second: Console,
    status: Option<i32>,
    wall_s: f64,
}

impl Vm {
    /// Boots `arch` with a second console (`console=<second> console=<first>`: the first, the
    /// log file qemu/boot writes, is the last and so `/dev/console`).
    fn start(arch: &str, disk: &Path, initrd: &Path, cmdline: &str, extra: &[&str]) -> Vm {
        use std::os::unix::process::CommandExt;
        static BOOTS: AtomicUsize = AtomicUsize::new(0);
        let n = BOOTS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{arch}-{}-{n}", std::process::id());
        let serial = scratch().join(format!("serial-{tag}.log"));
        let serial2 = scratch().join(format!("serial2-{tag}.log"));
        let cmdline = format!(
            "console={} console={} {cmdline}",
            second_console(arch),
            first_console(arch)
        );
        let mut args = vec![
            arch,
            disk.to_str().unwrap(),
            initrd.to_str().unwrap(),
            serial.to_str().unwrap(),
            "--serial2",
            serial2.to_str().unwrap(),
            "--append",
            &cmdline,
            "--timeout",
            "240",
        ];
        args.extend_from_slice(extra);
        let child = Command::new(repo().join("qemu/boot"))
            .args(&args)
            .process_group(0)
            .spawn()
            .expect("run qemu/boot");
        Vm {
            child,
            serial,
            serial2,
            started: Instant::now(),
        }
    }

    fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// Waits until QEMU exits by itself.
    fn wait(mut self) -> Ended {
        let status = self.child.wait().expect("wait for qemu/boot").code();
        assert_ne!(
            status,
            Some(124),
            "the VM hung; console:\n{}",
            self.console_text()
        );
        self.end(status)
    }

    /// Waits until the first console shows `needle`, then until QEMU exits by itself: how it
    /// ended, and the seconds from `needle` to the exit.
    fn wait_after(mut self, needle: &str) -> (Ended, f64) {
        let deadline = Instant::now() + Duration::from_secs(200);
        let mut seen = None;
        let status = loop {
            if seen.is_none() && self.console_text().contains(needle) {
                seen = Some(Instant::now());
            }
            if let Some(status) = self.child.try_wait().expect("poll qemu/boot") {
                break status.code();
            }
            assert!(Instant::now() < deadline, "{}", self.console_text());
            std::thread::sleep(Duration::from_millis(250));
        };
        let seen = seen.unwrap_or_else(|| panic!("no '{needle}':\n{}", self.console_text()));
        let after = seen.elapsed().as_secs_f64();
        assert_ne!(status, Some(124), "the VM hung:\n{}", self.console_text());
        (self.end(status), after)
    }

    /// Waits until the first console shows `needle`, then `linger` more, then ends the VM if
    /// it still runs.
    fn wait_for(mut self, needle: &str, linger: Duration) -> Ended {
        let deadline = Instant::now() + Duration::from_secs(200);
        while !self.console_text().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "QEMU exited ({status}) before '{needle}':\n{}",
                    self.console_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no '{needle}':\n{}",
                self.console_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        std::thread::sleep(linger);
        let status = match self.child.try_wait().expect("poll qemu/boot") {
            Some(status) => status.code(),
            None => {
                // The whole group: qemu/boot, timeout and QEMU.
                let group = format!("-{}", self.child.id());
                let _ = Command::new("kill").args(["--", &group]).status();
                let _ = self.child.wait();
                None
            }
        };
        self.end(status)
    }

    fn end(self, status: Option<i32>) -> Ended {
        let read = |p: &Path| {
            let raw = std::fs::read(p).unwrap_or_default();
            let _ = std::fs::remove_file(p);
            Console::parse(&raw)
        };
        Ended {
            first: read(&self.serial),
            second: read(&self.serial2),
            status,
            wall_s: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// The kernel's time stamp (seconds) of the first line of `console` that contains `needle`.
fn stamp(console: &str, needle: &str) -> Option<f64> {
    console
        .lines()
        .filter(|l| l.contains(needle))
        .find_map(|l| {
            let inside = l.strip_prefix('[')?.split_once(']')?.0;
            inside.trim().parse().ok()
        })
}

/// The failure summary and `doing` (the action's log line) on both consoles. On the second,
/// lines without the kernel's time stamp: immucore wrote them there itself (the kernel's copy
/// of the `/dev/kmsg` line has one).
fn assert_summary_on_both(arch: &str, e: &Ended, doing: &str) {
    for (name, c) in [("first", &e.first), ("second", &e.second)] {
        for want in [
            "immucore: error:         IMMUCORE BOOT FAILED",
            "immucore: error: Reason: discover-state: cannot open image /cOS/missing.img",
            doing,
        ] {
            assert!(
                c.console.lines().any(|l| l.starts_with(want)),
                "{arch}: the {name} console lacks '{want}':\n{}",
                c.console
            );
        }
    }
}

/// Kairos' command line with a missing image: the summary on both consoles, a reboot 10 s
/// after it (with -no-reboot, QEMU exits).
fn kairos_reboots(arch: &str) {
    let d = disk(arch, "reboot", &[]);
    let initrd = initramfs(arch);
    let e = Vm::start(arch, &d, &initrd, KAIROS, &[]).wait();
    assert_summary_on_both(arch, &e, "immucore: error: rebooting in 10 s");
    let c = &e.first.console;
    let failed = stamp(c, "IMMUCORE BOOT FAILED").expect("time stamp of the summary");
    let reset =
        stamp(c, "reboot: Restarting system").unwrap_or_else(|| panic!("{arch}: no reboot:\n{c}"));
    // The reading pause, then at once the reset (the guest clock runs on TCG too).
    let took = reset - failed;
    eprintln!(
        "{arch}: fatal error to reset: {took:.2} s (wall {:.1} s)",
        e.wall_s
    );
    assert!((10.0..25.0).contains(&took), "{arch}: {took:.2} s\n{c}");
    assert!(!c.contains("Kernel panic"), "{arch}: PID 1 died:\n{c}");
}

/// `rd.emergency=poweroff`: QEMU exits after a power-down, not a restart.
fn poweroff(arch: &str) {
    let d = disk(arch, "poweroff", &[]);
    let initrd = initramfs(arch);
    let cmdline = KAIROS.replace("rd.emergency=reboot", "rd.emergency=poweroff");
    let e = Vm::start(arch, &d, &initrd, &cmdline, &[]).wait();
    assert_summary_on_both(arch, &e, "immucore: error: powering off in 10 s");
    let c = &e.first.console;
    assert!(
        c.contains("reboot: Power down"),
        "{arch}: no power-down:\n{c}"
    );
    assert!(!c.contains("Restarting system"), "{arch}:\n{c}");
}

/// `rd.emergency=halt`: the kernel halts and the VM stays, stopped (QEMU does not exit).
fn halt(arch: &str) {
    let d = disk(arch, "halt", &[]);
    let initrd = initramfs(arch);
    let cmdline = KAIROS.replace("rd.emergency=reboot", "rd.emergency=halt");
    let vm = Vm::start(arch, &d, &initrd, &cmdline, &[]);
    let e = vm.wait_for("reboot: System halted", Duration::from_secs(3));
    assert_eq!(e.status, None, "{arch}: QEMU exited after a halt");
    assert_summary_on_both(arch, &e, "immucore: error: halting in 10 s");
}

/// The Kairos layout's active image, booted with a watchdog of 8 s and another `init`.
fn watchdog_cmdline(init: &str) -> String {
    format!(
        "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM \
         rd.immucore.watchdog=8 init={init}"
    )
}

/// The watchdog immucore armed and left armed resets a VM whose init hangs, about 8 s after
/// the last keep-alive (at switch root).
fn watchdog_resets_a_hang(arch: &str) {
    let d = disk(arch, "hang", &[]);
    let initrd = initramfs(arch);
    let cmdline = watchdog_cmdline("/sbin/init-hang");
    let vm = Vm::start(arch, &d, &initrd, &cmdline, &["--watchdog"]);
    let (e, after) = vm.wait_after("REPORT: hang");
    let c = &e.first;
    assert_eq!(c.one("hang"), "active");
    assert!(
        c.console.contains("watchdog /dev/watchdog armed: 8 s"),
        "{}",
        c.console
    );
    assert!(
        c.console.contains("watchdog left armed for the real init"),
        "{}",
        c.console
    );
    eprintln!("{arch}: reset {after:.1} s after the hanging init started");
    // 8 s after switch root, seen from the host (TCG, shared cores: wide margins).
    assert!(
        (3.0..60.0).contains(&after),
        "{arch}: reset after {after:.1} s"
    );
    assert!(!c.console.contains("Kernel panic"), "{}", c.console);
}

/// An init that takes the watchdog over (busybox `watchdog`) keeps the VM alive for 20 s,
/// more than twice the timeout, and powers off.
fn watchdog_taken_over(arch: &str) {
    let d = disk(arch, "feed", &[]);
    let initrd = initramfs(arch);
    let cmdline = watchdog_cmdline("/sbin/init-watchdog");
    let e = Vm::start(arch, &d, &initrd, &cmdline, &["--watchdog"]).wait();
    let c = &e.first;
    assert!(!c.all("watchdog").is_empty(), "{}", c.console);
    assert_eq!(
        c.all("watchdog").last().map(String::as_str),
        Some("survived")
    );
    assert!(c.console.contains("reboot: Power down"), "{}", c.console);
}

/// Kairos' command line for the active image with image fallback (and Kairos' failure words,
/// so a boot that fails ends in a reboot, not a wait).
const FALLBACK: &str = "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img \
     rd.cos.oemlabel=COS_OEM rd.emergency=reboot rd.shell=0 rd.immucore.fallback";

/// The guest booted `booted` in place of the active image, and said so: the warning on the
/// console, the booted state's sentinel alone, `/run/cos/fallback` (the test root's init
/// reports each file of /run/cos, newlines as spaces). Returns the note's reason.
fn assert_fell_back(arch: &str, c: &Console, booted: &str, image: &str) -> String {
    assert_eq!(c.one("image"), booted, "{arch}");
    assert!(
        c.all("end").len() == 1,
        "{arch}: the root's init did not finish"
    );
    let warning = "immucore: mount-root: warning: FALLBACK: the active image /cOS/active.img \
         cannot be used (/cOS/active.img: discover-state: /cOS/active.img is not a filesystem image";
    assert!(c.console.contains(warning), "{arch}: {}", c.console);
    let instead = format!("; booting the {booted} image {image} instead");
    assert!(c.console.contains(&instead), "{arch}: {}", c.console);
    let sentinels = c.all("sentinel");
    let mode = format!("{booted}_mode 1");
    assert!(sentinels.contains(&mode), "{arch}: {sentinels:?}");
    assert!(
        !sentinels.iter().any(|s| s.starts_with("active_mode")),
        "{arch}: {sentinels:?}"
    );
    let note = sentinels
        .iter()
        .find_map(|s| s.strip_prefix("fallback "))
        .unwrap_or_else(|| panic!("{arch}: no /run/cos/fallback: {sentinels:?}"));
    let head = format!(
        "wanted=active wanted_image=/cOS/active.img booted={booted} booted_image={image} reason="
    );
    assert!(note.starts_with(&head), "{arch}: {note}");
    note[head.len()..].to_string()
}

/// The mount points of the booted system with a partition of the disk (`/dev/vdaN`,
/// `/dev/sdaN`) or a bind of one of its directories (the root is a loop device).
fn disk_mounts(c: &Console) -> Vec<String> {
    c.all("mount")
        .iter()
        .filter(|m| {
            m.split(' ')
                .nth(1)
                .is_some_and(|src| src.starts_with("/dev/vd") || src.starts_with("/dev/sd"))
        })
        .map(|m| m.split(' ').next().unwrap_or("").to_string())
        .collect()
}

/// A corrupted active image, `rd.immucore.fallback`: passive boots, with passive's volumes and
/// persistent binds.
fn fallback_passive(arch: &str) {
    let d = disk(arch, "fallback-passive", &["--corrupt-active"]);
    let initrd = initramfs(arch);
    let e = Vm::start(arch, &d, &initrd, FALLBACK, &[]).wait();
    eprintln!("{arch}: fallback to passive, wall {:.1} s", e.wall_s);
    let c = &e.first;
    let reason = assert_fell_back(arch, c, "passive", "/cOS/passive.img");
    assert!(!reason.contains("passive.img"), "{arch}: {reason}");
    let mounts = disk_mounts(c);
    for mp in ["/usr/local", "/oem", "/etc/ssh"] {
        assert!(
            mounts.iter().any(|m| m == mp),
            "{arch}: no {mp} in {mounts:?}"
        );
    }
}

/// Active and passive corrupted: recovery boots from COS_RECOVERY, with recovery's layout (no
/// persistent volume, no persistent binds).
fn fallback_recovery(arch: &str) {
    let d = disk(
        arch,
        "fallback-recovery",
        &["--corrupt-active", "--corrupt-passive"],
    );
    let initrd = initramfs(arch);
    let e = Vm::start(arch, &d, &initrd, FALLBACK, &[]).wait();
    eprintln!("{arch}: fallback to recovery, wall {:.1} s", e.wall_s);
    let c = &e.first;
    let reason = assert_fell_back(arch, c, "recovery", "/cOS/recovery.img");
    assert!(
        reason.contains(
            "; /cOS/passive.img: discover-state: /cOS/passive.img is not a filesystem image"
        ),
        "{arch}: {reason}"
    );
    let mounts = disk_mounts(c);
    assert!(mounts.iter().any(|m| m == "/oem"), "{arch}: {mounts:?}");
    for mp in ["/usr/local", "/etc/ssh", "/var/log"] {
        assert!(
            !mounts.iter().any(|m| m == mp),
            "{arch}: {mp} in {mounts:?}"
        );
    }
    let fstab = c.all("fstab").join("\n");
    assert!(
        fstab.contains("/dev/disk/by-label/COS_RECOVERY /run/initramfs/cos-state ext4 ro 0 0")
            && !fstab.contains("COS_STATE")
            && !fstab.contains("COS_PERSISTENT"),
        "{arch}: {fstab}"
    );
}

/// Without `rd.immucore.fallback` the corrupted active image stops the boot as before: the
/// summary, and Kairos' reboot.
fn fallback_off_fails(arch: &str) {
    let d = disk(arch, "fallback-off", &["--corrupt-active"]);
    let initrd = initramfs(arch);
    let cmdline = FALLBACK.replace(" rd.immucore.fallback", "");
    let e = Vm::start(arch, &d, &initrd, &cmdline, &[]).wait();
    let c = &e.first.console;
    assert!(
        c.contains("Reason: discover-state: /cOS/active.img is not a filesystem image"),
        "{arch}: {c}"
    );
    assert!(c.contains("reboot: Restarting system"), "{arch}: {c}");
    assert!(!c.contains("fallback"), "{arch}: {c}");
    assert!(e.first.all("image").is_empty(), "{arch}: booted");
}

/// dm-verity (`rd.immucore.verity=required`, each image's own `<image>.roothash`): an active
/// image whose first block fails verification (its filesystem intact) boots passive, verified.
fn fallback_verity(arch: &str) {
    let d = disk(
        arch,
        "fallback-verity",
        &["--verity", "--verity-corrupt-first"],
    );
    // The plain initramfs: its modules include dm_mod and dm_verity.
    let initrd = scratch().join(format!("initrd-{arch}-plain.cpio.gz"));
    let bin = default_binary(arch);
    kit(
        "mkinitramfs",
        &[arch, bin.to_str().unwrap(), initrd.to_str().unwrap()],
    );
    let cmdline = format!("{FALLBACK} rd.immucore.verity=required");
    let e = Vm::start(arch, &d, &initrd, &cmdline, &[]).wait();
    let c = &e.first;
    assert_eq!(c.one("image"), "passive", "{arch}: {}", c.console);
    assert!(
        c.console.contains("warning: FALLBACK: the active image /cOS/active.img cannot be used (/cOS/active.img: mount-root: /cOS/active.img: block 0 fails verification"),
        "{arch}: {}",
        c.console
    );
    assert!(
        c.console
            .contains("/cOS/passive.img: dm-verity /dev/mapper/root with the root hash from /cOS/passive.img.roothash"),
        "{arch}: {}",
        c.console
    );
    let root = c.all("mount").iter().find(|m| m.starts_with("/ ")).cloned();
    assert!(
        root.as_deref()
            .is_some_and(|m| m.starts_with("/ /dev/mapper/root ext4 ro")),
        "{arch}: {root:?}"
    );
    assert!(c.all("sentinel").contains(&"passive_mode 1".to_string()));
}

macro_rules! per_arch {
    ($scenario:ident: $($arch:ident),*) => {
        mod $scenario {
            $(#[test] fn $arch() { super::$scenario(stringify!($arch)); })*
        }
    };
}

per_arch!(kairos_reboots: x86_64, aarch64, armv7);
per_arch!(poweroff: x86_64, aarch64, armv7);
per_arch!(halt: x86_64, aarch64, armv7);
per_arch!(watchdog_resets_a_hang: x86_64, aarch64, armv7);
per_arch!(watchdog_taken_over: x86_64, aarch64, armv7);
per_arch!(fallback_passive: x86_64, aarch64, armv7);
per_arch!(fallback_recovery: x86_64, aarch64, armv7);
per_arch!(fallback_off_fails: x86_64, aarch64, armv7);
per_arch!(fallback_verity: x86_64);
