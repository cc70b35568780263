//! Live roots assembled by immucore as PID 1 (feature `live`), booted under QEMU on x86_64,
//! aarch64 and armv7 with the default profile: the Kairos live ISO (as a CD-ROM, then written
//! to a disk), the recovery squashfs on a Kairos disk, a squashfs delivered as a second initrd
//! (netboot), `rd.live.ram` with the CD-ROM removed after boot, the failures (x86_64), and a
//! real systemd root (x86_64): the dracut test's Debian root on the ISO.
//! Inputs come from qemu/mklive and qemu/mkdisk (xorriso, mksquashfs, cpio); the guest's test
//! root (`/sbin/init-live`, then qemu/mkroot's `/sbin/init`) prints `REPORT:` lines, on which
//! every assertion is made.
//!
//! Needs `qemu/setup` and the release binaries (`scripts/test` does both).

mod kit;
mod serial;

use kit::{default_binary, kit, repo};
use serial::Console;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Kairos' command line of its live ISO (AuroraBoot's grub.cfg).
macro_rules! kairos_iso {
    () => {
        "cdroot root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.live.squashimg=rootfs.squashfs \
         rd.cos.disable rd.live.overlay.overlayfs"
    };
}
/// The live ISO's command line plus the test root's init.
const ISO: &str = concat!(kairos_iso!(), " init=/sbin/init-live");
/// Kairos' command line of its recovery system.
const RECOVERY: &str = "root=live:LABEL=COS_RECOVERY rd.live.dir=/ \
                        rd.live.squashimg=/cOS/recovery.squashfs rd.cos.oemlabel=COS_OEM \
                        init=/sbin/init-live";
/// A failure powers the VM off (after its pause, which `--until` cuts short).
const FAIL: &str = "rd.emergency=poweroff rd.shell=0";

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| kit::scratch_dir("live"))
}

/// `qemu/mklive ARCH <kind> ... OUT`, once per test process (tests share the inputs).
fn built(arch: &str, kind: &str) -> PathBuf {
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let ext = match kind {
        "iso" => "iso",
        "netboot" => "cpio",
        _ => "cpio.gz",
    };
    let out = scratch().join(format!("{kind}-{arch}.{ext}"));
    if built.contains(&out) {
        return out;
    }
    let out_s = out.to_str().unwrap();
    if kind == "initramfs" {
        let bin = default_binary(arch);
        kit::assert_built(&bin);
        kit("mklive", &[arch, kind, bin.to_str().unwrap(), out_s]);
    } else {
        kit("mklive", &[arch, kind, out_s]);
    }
    built.push(out.clone());
    out
}

/// A Kairos disk whose COS_RECOVERY holds `/cOS/recovery.squashfs` compressed with `comp`.
fn recovery_disk(arch: &str, comp: &str) -> PathBuf {
    let out = scratch().join(format!("disk-{arch}-recovery-{comp}.img"));
    kit(
        "mkdisk",
        &[arch, out.to_str().unwrap(), "--recovery-squashfs", comp],
    );
    out
}

struct Boot {
    out: Console,
}

impl std::ops::Deref for Boot {
    type Target = Console;
    fn deref(&self) -> &Console {
        &self.out
    }
}

impl Boot {
    /// What every live boot shows: `/` a writable overlay whose lower is the image on
    /// `/run/rootfsbase` (a squashfs), its upper on a tmpfs under `/run`, and nothing written
    /// by an earlier boot (the test root writes its markers on every boot).
    fn assert_live_root(&self, image: &str) {
        self.completed();
        assert_eq!(self.one("image"), image);
        self.assert_mount(
            "/",
            "overlay rw,relatime,lowerdir=/run/rootfsbase,upperdir=/run/overlayfs/upper,workdir=/run/overlayfs/work",
        );
        self.assert_mount("/run/rootfsbase", "/dev/loop");
        self.assert_mount("/run/rootfsbase", "squashfs ro");
        self.assert_mount("/run/overlayfs", "tmpfs rw");
        assert!(self.all("writable").iter().any(|l| l == "/ yes"));
        assert!(
            self.all("persist").iter().all(|l| l.ends_with(" absent")),
            "{:?}",
            self.all("persist")
        );
        assert_eq!(self.one("bootcount"), "1");
    }

    /// The failure summary, naming the step and `why`.
    fn assert_failed(&self, step: &str, why: &str) {
        let c = &self.console;
        assert!(
            c.contains("IMMUCORE BOOT FAILED"),
            "no failure summary; console:\n{c}"
        );
        let line = format!("immucore: {step}: error: failed: {why}");
        assert!(c.contains(&line), "no '{line}'; console:\n{c}");
        assert!(
            c.contains("powering off in 10 s"),
            "no failure action; console:\n{c}"
        );
        assert!(
            !self.reports.contains_key("image"),
            "a root booted; console:\n{c}"
        );
    }
}

/// Boots the live initramfs of `arch` with `cmdline` and `qemu/liveboot` options `extra`.
fn boot(arch: &str, cmdline: &str, extra: &[&str]) -> Boot {
    static BOOTS: AtomicUsize = AtomicUsize::new(0);
    let n = BOOTS.fetch_add(1, Ordering::Relaxed);
    let serial = scratch().join(format!("serial-{arch}-{}-{n}.log", std::process::id()));
    let initrd = built(arch, "initramfs");
    let mut args = vec![
        arch,
        initrd.to_str().unwrap(),
        serial.to_str().unwrap(),
        "--append",
        cmdline,
        "--timeout",
        "240",
    ];
    args.extend_from_slice(extra);
    let status = Command::new(repo().join("qemu/liveboot"))
        .args(&args)
        .status()
        .expect("run qemu/liveboot");
    let raw = std::fs::read(&serial).unwrap_or_default();
    assert_ne!(
        status.code(),
        Some(124),
        "{arch}: the VM hung; console:\n{}",
        String::from_utf8_lossy(&raw)
    );
    let _ = std::fs::remove_file(&serial);
    Boot {
        out: Console::parse(&raw),
    }
}

/// The time from the kernel starting /init to the real init, from the kernel log lines the
/// test root reports (`[ 8.51] Run /init`, `[ 14.54] bench: real init started`).
fn init_to_real_init_s(b: &Boot) -> f64 {
    let at = |needle: &str| {
        b.all("kmsg")
            .iter()
            .find(|l| l.contains(needle))
            .and_then(|l| {
                l.trim_start_matches('[')
                    .split(']')
                    .next()?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no kmsg '{needle}'; console:\n{}", b.console))
    };
    at("bench: real init started") - at("Run /init")
}

/// The Kairos ISO as a CD-ROM, then the same ISO as a plain disk (written to a USB stick),
/// whose overlay tmpfs is 8 MiB and filled until ENOSPC.
fn iso(arch: &str) {
    let iso = built(arch, "iso");
    let iso = iso.to_str().unwrap();
    let b = boot(arch, ISO, &["--cdrom", iso]);
    b.assert_live_root("live");
    b.assert_mount("/run/initramfs/live", "/dev/sr0 iso9660 ro");
    b.assert_mount("/run/overlayfs", "tmpfs rw,relatime,size=");
    assert_eq!(b.one("sentinel"), "live_mode 1");
    // No OEM partition for the LiveCD, no state, no layout.
    assert!(b.mount("/oem").is_none() && b.mount("/run/initramfs/cos-state").is_none());
    let kmsg = b.all("kmsg").join("\n");
    for step in [
        "mount-live-medium",
        "mount-live-image",
        "mount-live-overlay",
    ] {
        assert!(
            kmsg.contains(&format!("immucore: {step}: mounted")),
            "{kmsg}"
        );
        assert!(
            b.all("timeline").iter().any(|l| l.contains(step)),
            "{step} not in the timeline"
        );
    }
    eprintln!(
        "{arch}: ISO (CD-ROM): /init to the real init {:.2} s",
        init_to_real_init_s(&b)
    );

    // The hybrid ISO as a disk: the disk and its first partition carry COS_LIVE; one medium.
    let cmdline = format!("{ISO} rd.live.overlay.size=8 live.test.fill");
    let b = boot(arch, &cmdline, &["--disk", iso]);
    b.assert_live_root("live");
    // The disk or its first partition, whichever the kernel lists first: the same filesystem.
    b.assert_mount("/run/initramfs/live", "/dev/vda");
    b.assert_mount("/run/initramfs/live", " iso9660 ro");
    b.assert_mount("/run/overlayfs", "tmpfs rw,relatime,size=8192k");
    assert_eq!(b.one("fill"), "No space left on device");
    assert_eq!(b.one("fill-after-rm"), "ok");
}

/// The recovery squashfs on COS_RECOVERY (`comp`ressed as given), with the OEM partition and
/// no COS_PERSISTENT; on x86_64 also the autoreset boot (`kairos.reset`).
fn recovery(arch: &str) {
    let comp = match arch {
        "x86_64" => "none",
        "aarch64" => "gzip",
        _ => "xz",
    };
    let disk = recovery_disk(arch, comp);
    let disk = disk.to_str().unwrap();
    let b = boot(arch, RECOVERY, &["--disk", disk]);
    b.assert_live_root("recovery-squashfs");
    b.assert_mount("/run/initramfs/live", "ext4 ro");
    b.assert_mount("/oem", "ext4 rw");
    assert!(
        b.mount("/usr/local").is_none(),
        "COS_PERSISTENT mounted in recovery"
    );
    assert_eq!(b.one("sentinel"), "recovery_mode 1");
    eprintln!(
        "{arch}: recovery ({comp}): /init to the real init {:.2} s",
        init_to_real_init_s(&b)
    );
    if arch == "x86_64" {
        let b = boot(arch, &format!("{RECOVERY} kairos.reset"), &["--disk", disk]);
        b.assert_live_root("recovery-squashfs");
        assert_eq!(b.one("sentinel"), "autoreset_mode 1");
    }
}

/// Netboot: the squashfs arrives as a second initrd (`root=live:/rootfs.squashfs`), no disk.
fn netboot(arch: &str) {
    let cpio = built(arch, "netboot");
    let cmdline = "root=live:/rootfs.squashfs rd.cos.disable netboot init=/sbin/init-live";
    let b = boot(arch, cmdline, &["--second-initrd", cpio.to_str().unwrap()]);
    b.assert_live_root("netboot");
    assert!(b.mount("/run/initramfs/live").is_none());
    assert_eq!(b.one("sentinel"), "live_mode 1");
}

/// `rd.live.ram`: the image is copied into RAM; the CD-ROM is removed after boot and the
/// root still reads (after the page cache is dropped).
fn ram_unplug(arch: &str) {
    let iso = built(arch, "iso");
    let cmdline = format!("{ISO} rd.live.ram live.test.unplug");
    let b = boot(
        arch,
        &cmdline,
        &["--cdrom", iso.to_str().unwrap(), "--unplug"],
    );
    b.assert_live_root("live");
    b.assert_mount("/run/initramfs/live-ram", "tmpfs");
    assert!(
        b.mount("/run/initramfs/live").is_none(),
        "the medium stayed mounted"
    );
    assert_eq!(b.one("unplugged"), "yes");
    assert_eq!(b.one("after-unplug"), "reads");
    let kmsg = b.all("kmsg").join("\n");
    assert!(kmsg.contains("rd.live.ram: "), "no copy progress: {kmsg}");
}

/// The failures, each ending with the summary and the failure action (x86_64).
fn failures(arch: &str) {
    let iso = built(arch, "iso");
    let cd = [
        "--cdrom",
        iso.to_str().unwrap(),
        "--until",
        "powering off in",
    ];
    let b = boot(
        arch,
        &format!("root=live:http://boot.example/rootfs.squashfs {FAIL}"),
        &cd,
    );
    b.assert_failed(
        "mount-live-medium",
        "root=live:http://boot.example/rootfs.squashfs: immucore has no network; deliver the image \
         as a second initrd (a newc cpio with /rootfs.squashfs) and boot root=live:/rootfs.squashfs",
    );
    let b = boot(
        arch,
        &format!("root=live:CDLABEL=NOT_THERE rd.immucore.sysrootwait=2 {FAIL}"),
        &cd,
    );
    b.assert_failed(
        "mount-live-medium",
        "live medium LABEL=NOT_THERE did not appear within 2 s; devices seen:",
    );
    assert!(
        b.console.contains(" sr0 COS_LIVE"),
        "the CD-ROM not named: {}",
        b.console
    );
    let b = boot(
        arch,
        &format!("{ISO} rd.live.squashimg=missing.squashfs {FAIL}"),
        &cd,
    );
    b.assert_failed(
        "mount-live-image",
        "live image /missing.squashfs not found in /run/initramfs/live: ",
    );
    let b = boot(
        arch,
        &format!("{ISO} rd.live.squashimg=junk.img {FAIL}"),
        &cd,
    );
    b.assert_failed(
        "mount-live-image",
        "live image /junk.img is no squashfs, erofs or ext2/3/4 filesystem",
    );
}

/// A real systemd root: the Debian 12 root of the dracut test (`qemu/dracut/mkdebianroot`,
/// debootstrapped once and cached, with its report unit) packed as the ISO's squashfs, booted
/// as a CD-ROM with Kairos' command line as it is (the root's own /sbin/init: systemd). systemd
/// reaches multi-user.target with no failed unit, `/` is the overlay over the squashfs, and the
/// medium, image and overlay mounts under /run are systemd mount units of the booted system.
/// The root has no kernel modules: what it needs beyond the initramfs' is built in.
fn debian_systemd(arch: &str) {
    let out = Command::new(repo().join("qemu/dracut/mkdebianroot"))
        .output()
        .expect("run qemu/dracut/mkdebianroot");
    assert!(
        out.status.success(),
        "qemu/dracut/mkdebianroot failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let active = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let rootfs = active.with_file_name("rootfs");
    let iso = scratch().join(format!("debian-systemd-{arch}.iso"));
    let started = std::time::Instant::now();
    kit(
        "mklive",
        &[
            arch,
            "iso",
            iso.to_str().unwrap(),
            "--root",
            rootfs.to_str().unwrap(),
        ],
    );
    let made_s = started.elapsed().as_secs_f64();
    let b = boot(
        arch,
        kairos_iso!(),
        &["--cdrom", iso.to_str().unwrap(), "--timeout", "360"],
    );
    b.completed();
    assert_eq!(b.one("pid1"), "systemd");
    assert!(
        b.one("image").starts_with("debian Debian GNU/Linux"),
        "{}",
        b.one("image")
    );
    assert_eq!(
        b.one("failed-count"),
        "0",
        "failed units: {:#?}",
        b.all("failed")
    );
    b.assert_mount(
        "/",
        "overlay rw,relatime,lowerdir=/run/rootfsbase,upperdir=/run/overlayfs/upper,workdir=/run/overlayfs/work",
    );
    b.assert_mount("/run/rootfsbase", "/dev/loop");
    b.assert_mount("/run/rootfsbase", "squashfs ro");
    b.assert_mount("/run/overlayfs", "tmpfs rw,relatime,size=");
    b.assert_mount("/run/initramfs/live", "/dev/sr0 iso9660 ro");
    for unit in [
        "-.mount",
        "run-initramfs-live.mount",
        "run-rootfsbase.mount",
        "run-overlayfs.mount",
    ] {
        assert!(
            b.all("mount-unit")
                .iter()
                .any(|l| l.starts_with(&format!("{unit} "))
                    && l.contains(" active ")
                    && l.contains(" mounted ")),
            "{unit} not active: {:#?}",
            b.all("mount-unit")
        );
    }
    assert_eq!(b.one("sentinel"), "live_mode 1");
    assert_eq!(b.one("log-exists"), "/run/immucore/immucore.log yes");
    // The report wrote /usr/local/bootcount: the root is writable, and this is its first boot.
    assert_eq!(b.one("bootcount"), "1");
    let run_init: f64 = b.one("run-init").parse().unwrap();
    let systemd_us: u64 = b
        .one("userspace")
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("userspace: {}", b.one("userspace")));
    eprintln!(
        "{arch}: Debian systemd ISO: ISO made in {made_s:.1} s; /init at {run_init:.2} s, systemd at {:.2} s \
         (/init to systemd {:.2} s), report at {} s",
        systemd_us as f64 / 1e6,
        systemd_us as f64 / 1e6 - run_init,
        b.one("report-start"),
    );
}

macro_rules! per_arch {
    ($scenario:ident: $($arch:ident),*) => {
        mod $scenario {
            $(#[test] fn $arch() { super::$scenario(stringify!($arch)); })*
        }
    };
}

per_arch!(iso: x86_64, aarch64, armv7);
per_arch!(recovery: x86_64, aarch64, armv7);
per_arch!(netboot: x86_64, aarch64, armv7);
per_arch!(ram_unplug: x86_64, aarch64, armv7);
per_arch!(failures: x86_64);
per_arch!(debian_systemd: x86_64);
