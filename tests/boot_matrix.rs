//! The QEMU boot matrix: real Debian kernels boot a tiny initramfs whose only program is
//! immucore (`/init`), against a Kairos-layout GPT disk, on x86_64, aarch64 and armv7. The test
//! root's `/sbin/init` prints `REPORT: <key> <value>` lines about what it sees and powers off;
//! every assertion is made on those lines (QEMU's exit status says nothing about the guest).
//!
//! Needs `qemu/setup` and the release binaries (`scripts/test` does both).
//! `IMMUCORE_MATRIX_APPEND="rd.immucore.debug"` runs the same matrix, same assertions, with
//! extra command-line words.

mod kit;
mod serial;

use kit::{default_binary, kit, repo, tiny_binary};
use serial::Console;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

const ACTIVE: &str =
    "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM";

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| kit::scratch_dir("boot-matrix"))
}

/// Builds (once per variant) the tiny initramfs of `arch` with the default profile's binary.
fn initramfs(arch: &str, variant: &str, extra: &[&str]) -> PathBuf {
    initramfs_of(arch, variant, &default_binary(arch), extra)
}

/// Builds (once per variant) the tiny initramfs of `arch`: `bin` as /init, modules, and
/// optionally a layout file or a pre-populated /sysroot.
fn initramfs_of(arch: &str, variant: &str, bin: &Path, extra: &[&str]) -> PathBuf {
    // Tests run in parallel: build each variant once, under a lock.
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = scratch().join(format!("initrd-{arch}-{variant}.cpio.gz"));
    if built.contains(&out) {
        return out;
    }
    kit::assert_built(bin);
    assert!(
        repo().join("qemu/cache").join(arch).join("kernel").exists(),
        "no kernel for {arch}: run qemu/setup"
    );
    let mut args = vec![arch, bin.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(extra);
    kit("mkinitramfs", &args);
    built.push(out.clone());
    out
}

fn disk(arch: &str, name: &str, opts: &[&str]) -> PathBuf {
    let out = scratch().join(format!("disk-{arch}-{name}.img"));
    let mut args = vec![arch, out.to_str().unwrap()];
    args.extend_from_slice(opts);
    kit("mkdisk", &args);
    out
}

/// What the guest reported: every `REPORT:` line by key, and the whole console text.
struct Boot {
    out: Console,
    wall_s: f64,
}

impl std::ops::Deref for Boot {
    type Target = Console;
    fn deref(&self) -> &Console {
        &self.out
    }
}

impl Boot {
    fn writable(&self, path: &str) -> bool {
        self.all("writable")
            .iter()
            .any(|l| l == &format!("{path} yes"))
    }
}

fn boot(arch: &str, disk: &Path, initrd: &Path, cmdline: &str, extra: &[&str]) -> Boot {
    static BOOTS: AtomicUsize = AtomicUsize::new(0);
    let n = BOOTS.fetch_add(1, Ordering::Relaxed);
    let serial = scratch().join(format!("serial-{arch}-{}-{n}.log", std::process::id()));
    let start = Instant::now();
    // IMMUCORE_MATRIX_APPEND adds words to every command line: the whole matrix with
    // `rd.immucore.debug` must assert exactly the same mounts.
    let cmdline = match std::env::var("IMMUCORE_MATRIX_APPEND") {
        Ok(extra) => format!("{cmdline} {extra}"),
        Err(_) => cmdline.to_string(),
    };
    let mut args = vec![
        arch,
        disk.to_str().unwrap(),
        initrd.to_str().unwrap(),
        serial.to_str().unwrap(),
        "--append",
        &cmdline,
        "--timeout",
        "150",
    ];
    args.extend_from_slice(extra);
    let status = Command::new(repo().join("qemu/boot"))
        .args(&args)
        .status()
        .expect("run qemu/boot");
    let wall_s = start.elapsed().as_secs_f64();
    // 124 is timeout's status: the guest neither powered off nor rebooted in time.
    assert_ne!(
        status.code(),
        Some(124),
        "{arch}: the VM hung; console:\n{}",
        std::fs::read_to_string(&serial).unwrap_or_default()
    );
    let raw = std::fs::read(&serial).unwrap_or_default();
    let _ = std::fs::remove_file(&serial);
    Boot {
        out: Console::parse(&raw),
        wall_s,
    }
}

/// What every active boot of the test disk shows: the read-only image, the writable overlays,
/// the persistent and OEM volumes, a persistent bind and the sentinel.
fn assert_active_layout(b: &Boot) {
    b.completed();
    assert_eq!(b.one("image"), "active");
    b.assert_mount("/", "ext4 ro");
    assert!(!b.writable("/"), "/ must be read-only");
    for p in ["/etc", "/var", "/srv"] {
        b.assert_mount(p, "overlay");
        assert!(b.writable(p), "{p} must be writable");
    }
    b.assert_mount("/usr/local", "/dev/vda4 ext4 rw");
    b.assert_mount("/oem", "ext4 rw");
    b.assert_mount("/run/initramfs/cos-state", "ext4 ro");
    assert!(
        b.mount("/var/log").is_some(),
        "persistent bind /var/log missing"
    );
    assert_eq!(b.one("sentinel"), "active_mode 1");
}

/// Scenarios 1 and 2: the active boot's layout, then persistence across a second boot.
fn active_and_persistence(arch: &str) {
    let d = disk(arch, "persist", &[]);
    let initrd = initramfs(arch, "plain", &[]);
    let b = boot(arch, &d, &initrd, ACTIVE, &[]);
    assert_active_layout(&b);
    assert_eq!(b.one("log-exists"), "/run/immucore/immucore.log yes");
    // The image's initramfs-stage hook ran chrooted into the new root, before switch_root.
    assert_eq!(b.one("hook"), "stage=initramfs state=active image=active");
    let fstab = b.all("fstab");
    for want in [
        "tmpfs /tmp tmpfs rw 0 0",
        "/dev/disk/by-label/COS_STATE /run/initramfs/cos-state ext4 ro 0 0",
        "/dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0",
        "/dev/disk/by-label/COS_OEM /oem ext4 rw 0 0",
        "tmpfs /run/overlay tmpfs size=25% 0 0",
        "/dev/disk/by-label/COS_PERSISTENT /usr/local ext4 rw 0 0",
        "overlay /etc overlay lowerdir=/sysroot/etc,upperdir=/run/overlay/etc/.overlay/upper,workdir=/run/overlay/etc/.overlay/work 0 0",
        "/usr/local/.state/var-log.bind /var/log none bind 0 0",
        "/usr/local/.state/etc-ssh.bind /etc/ssh none bind 0 0",
    ] {
        assert!(fstab.iter().any(|l| l == want), "{arch}: fstab lacks '{want}': {fstab:#?}");
    }
    // Every mount the guest sees under / (except the kernel's own) is in the fstab.
    for m in b.all("mount") {
        let mp = m.split(' ').next().unwrap();
        if ["/proc", "/sys", "/dev", "/run"].contains(&mp) {
            continue;
        }
        assert!(
            fstab.iter().any(|l| l.split(' ').nth(1) == Some(mp)),
            "{arch}: mount {mp} is not in fstab"
        );
    }
    // The copy-up brought the image's file into the persistent store.
    assert_eq!(b.one("imagefile"), "/etc/ssh/image-file present");
    assert_eq!(b.one("bootcount"), "1");

    let b2 = boot(arch, &d, &initrd, ACTIVE, &[]);
    b2.completed();
    assert_eq!(b2.one("bootcount"), "2");
    let persist = b2.all("persist");
    for (path, state) in [
        ("/usr/local/marker", "present"),
        ("/var/log/marker", "present"),
        ("/etc/ssh/marker", "present"),
        ("/home/marker", "present"),
        ("/etc/marker", "absent"),
        ("/var/marker", "absent"),
        ("/srv/marker", "absent"),
    ] {
        assert!(
            persist.iter().any(|l| l == &format!("{path} {state}")),
            "{arch}: {path} should be {state}: {persist:#?}"
        );
    }
    report_timing(arch, &b);
}

/// The `tiny` profile (no hooks, LVM, fsck, GPT names or probes beyond ext2/3/4) boots the
/// same installed disk: read-only image, overlays, the persistent volume and binds, and what a
/// first boot wrote is there on the second.
fn tiny_active(arch: &str) {
    let d = disk(arch, "tiny", &[]);
    let initrd = initramfs_of(arch, "tiny", &tiny_binary(arch), &[]);
    let b = boot(arch, &d, &initrd, ACTIVE, &[]);
    assert_active_layout(&b);
    // This build has no hooks: the image's initramfs-stage hook did not run.
    assert!(
        !b.reports.contains_key("hook"),
        "{arch}: a hook ran in the tiny build"
    );
    assert_eq!(b.one("imagefile"), "/etc/ssh/image-file present");

    let b2 = boot(arch, &d, &initrd, ACTIVE, &[]);
    b2.completed();
    assert_eq!(b2.one("bootcount"), "2");
    let persist = b2.all("persist");
    for (path, state) in [
        ("/usr/local/marker", "present"),
        ("/var/log/marker", "present"),
        ("/etc/ssh/marker", "present"),
        ("/etc/marker", "absent"),
    ] {
        assert!(
            persist.iter().any(|l| l == &format!("{path} {state}")),
            "{arch}: {path} should be {state}: {persist:#?}"
        );
    }
}

/// Prints the time from the kernel starting /init to immucore exec'ing the real init.
fn report_timing(arch: &str, b: &Boot) {
    let stamp = |needle: &str| {
        b.all("kmsg")
            .iter()
            .find(|l| l.contains(needle))
            .and_then(|l| {
                let l = l.trim_start_matches('[').trim_start();
                l.split(']').next()?.trim().parse::<f64>().ok()
            })
    };
    if let (Some(start), Some(exec)) = (stamp("Run /init"), stamp("switch-root: exec")) {
        eprintln!(
            "{arch}: /init start to exec of the real init: {:.0} ms (boot wall {:.1} s)",
            (exec - start) * 1000.0,
            b.wall_s
        );
        assert!(exec >= start);
    }
}

fn other_states(arch: &str) {
    let initrd = initramfs(arch, "plain", &[]);
    let d = disk(arch, "states", &[]);
    let b = boot(
        arch,
        &d,
        &initrd,
        "root=LABEL=COS_PASSIVE cos-img/filename=/cOS/passive.img rd.cos.oemlabel=COS_OEM",
        &[],
    );
    b.completed();
    assert_eq!(b.one("image"), "passive");
    assert_eq!(b.one("sentinel"), "passive_mode 1");
    b.assert_mount("/usr/local", "ext4 rw");

    let b = boot(
        arch,
        &d,
        &initrd,
        "root=LABEL=COS_SYSTEM cos-img/filename=/cOS/recovery.img rd.cos.oemlabel=COS_OEM",
        &[],
    );
    b.completed();
    assert_eq!(b.one("image"), "recovery");
    assert_eq!(b.one("sentinel"), "recovery_mode 1");
    b.assert_mount("/run/initramfs/cos-state", "ext4 ro");
    // Recovery keeps everything ephemeral: COS_PERSISTENT is not mounted, /usr/local is an overlay.
    b.assert_mount("/usr/local", "overlay");
    assert!(
        !b.console.contains("COS_PERSISTENT ("),
        "recovery must not mount COS_PERSISTENT"
    );

    let b = boot(
        arch,
        &d,
        &initrd,
        "root=LABEL=COS_SYSTEM cos-img/filename=/cOS/recovery.img kairos.reset",
        &[],
    );
    b.completed();
    assert_eq!(b.one("sentinel"), "autoreset_mode 1");
    assert_eq!(b.one("image"), "recovery");
}

fn live_mode(arch: &str) {
    let initrd = initramfs(arch, "live", &["--sysroot", "live"]);
    let d = disk(arch, "live", &[]);
    let b = boot(
        arch,
        &d,
        &initrd,
        "rd.cos.disable rd.cos.oemlabel=COS_OEM",
        &[],
    );
    b.completed();
    assert_eq!(b.one("image"), "live");
    assert_eq!(b.one("sentinel"), "live_mode 1");
    // Only the sentinel and the OEM partition: no image, no overlays, no fstab.
    assert!(b.mount("/run/initramfs/cos-state").is_none());
    assert!(b.mount("/etc").is_none());
    assert!(b.all("fstab").is_empty());
    let kmsg = b.all("kmsg").join("\n");
    assert!(
        kmsg.contains("wait-for-sysroot: /sysroot is ready"),
        "{kmsg}"
    );
}

fn custom_layout(arch: &str) {
    let layout = scratch().join("custom-layout.env");
    std::fs::write(
        &layout,
        "# custom layout\nRW_PATHS=\"/var /etc /srv /home\"\nPERSISTENT_STATE_PATHS=\"/opt /root\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n",
    )
    .unwrap();
    let initrd = initramfs(arch, "custom", &["--layout", layout.to_str().unwrap()]);
    let d = disk(arch, "custom", &["--extra-label", "DATA"]);
    let b = boot(
        arch,
        &d,
        &initrd,
        &format!("{ACTIVE} rd.immucore.mount=LABEL=DATA:/srv/data"),
        &[],
    );
    b.completed();
    b.assert_mount("/home", "overlay");
    b.assert_mount("/opt", "ext4");
    b.assert_mount("/srv/data", "ext4 rw");
    assert!(
        b.mount("/var/log").is_none(),
        "/var/log is not persistent in this layout"
    );
    let layout_lines = b.all("layout");
    assert!(
        layout_lines
            .iter()
            .any(|l| l == "cos-layout.env RW_PATHS=\"/var /etc /srv /home\""),
        "{layout_lines:#?}"
    );
    assert!(b
        .all("fstab")
        .iter()
        .any(|l| l == "/dev/disk/by-label/DATA /srv/data ext4 rw 0 0"));
}

fn no_oem(arch: &str) {
    let initrd = initramfs(arch, "plain", &[]);
    let d = disk(arch, "nooem", &["--no-oem"]);
    let b = boot(
        arch,
        &d,
        &initrd,
        &format!("{ACTIVE} rd.cos.oemtimeout=1"),
        &[],
    );
    b.completed();
    assert!(b.mount("/oem").is_none());
    b.assert_mount("/etc", "overlay");
    b.assert_mount("/usr/local", "ext4 rw");
    assert!(
        b.mount("/var/log").is_some(),
        "binds must not be skipped without OEM"
    );
    assert!(
        b.console.contains(
            "immucore: mount-oem: error: failed: LABEL=COS_OEM did not appear within 1 s"
        ),
        "{}",
        b.console
    );
}

/// A boot that must end in the failure summary and, with rebootonfailure, a reboot.
fn expect_failure(arch: &str, d: &Path, cmdline: &str, reason: &str) -> Boot {
    let initrd = initramfs(arch, "plain", &[]);
    let b = boot(
        arch,
        d,
        &initrd,
        &format!("{cmdline} rd.immucore.rebootonfailure"),
        &[],
    );
    assert!(!b.reports.contains_key("end"), "{arch}: must not boot");
    assert!(
        b.console.contains("IMMUCORE BOOT FAILED"),
        "{arch}: no failure summary:\n{}",
        b.console
    );
    assert!(
        b.console.contains(reason),
        "{arch}: summary lacks '{reason}':\n{}",
        b.console
    );
    assert!(b.console.contains("rebooting in 10 s"), "{}", b.console);
    assert!(
        !b.console.contains("Kernel panic"),
        "{arch}: PID 1 died:\n{}",
        b.console
    );
    b
}

fn failures(arch: &str) {
    let d = disk(arch, "fail", &[]);
    expect_failure(
        arch,
        &d,
        "root=LABEL=COS_ACTIVE rd.cos.oemlabel=COS_OEM",
        "could not get the image name",
    );
    let bad = disk(arch, "bad", &["--bad-active"]);
    expect_failure(arch, &bad, ACTIVE, "is not a filesystem image");
    // A command line immucore refuses: with nothing parsed, rebootonfailure is still honoured
    // (found in the raw text), so the board does not sit in the failure state forever.
    expect_failure(
        arch,
        &d,
        "root=LABEL=COS_ACTIVE cos-img/filename=\"/cOS/active.img",
        "invalid kernel command line: unterminated quote",
    );
    // No COS_STATE ever appears (a blank disk): the 60 s deadline of mount-state is honoured.
    let blank = scratch().join(format!("disk-{arch}-blank.img"));
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let b = expect_failure(
        arch,
        &blank,
        "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.immucore.debug",
        "LABEL=COS_STATE did not appear within 60 s",
    );
    assert!(
        b.wall_s >= 60.0 && b.wall_s < 140.0,
        "{arch}: deadline not honoured: {:.1} s",
        b.wall_s
    );
}

fn late_device(arch: &str) {
    let initrd = initramfs(arch, "hotplug", &["--hotplug"]);
    let d = disk(arch, "late", &[]);
    let b = boot(arch, &d, &initrd, ACTIVE, &["--late-disk", "4"]);
    b.completed();
    assert_eq!(b.one("image"), "active");
    b.assert_mount("/", "ext4 ro");
    b.assert_mount("/usr/local", "/dev/sda4 ext4 rw");
}

/// The root hash of active.img on a `mkdisk --verity` disk.
fn verity_root_hash(d: &Path) -> String {
    let file = format!("{}.roothash", d.display());
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A verified boot (issue 15): the root hash on the command line, `required`; `/` is
/// `/dev/mapper/root`, read-only, and the layout is as usual.
fn verity(arch: &str) {
    let d = disk(arch, "verity", &["--verity"]);
    let initrd = initramfs(arch, "plain", &[]);
    let hash = verity_root_hash(&d);
    let cmdline = format!("{ACTIVE} roothash={hash} rd.immucore.verity=required");
    let b = boot(arch, &d, &initrd, &cmdline, &[]);
    b.completed();
    assert_eq!(b.one("image"), "active");
    b.assert_mount("/", "/dev/mapper/root ext4 ro");
    assert!(!b.writable("/"), "/ must be read-only");
    for p in ["/etc", "/var", "/srv"] {
        b.assert_mount(p, "overlay");
    }
    b.assert_mount("/usr/local", "/dev/vda4 ext4 rw");
    assert_eq!(b.one("verity-probe"), "ok");
    let fstab = b.all("fstab");
    assert!(
        fstab.iter().any(|l| l == "/dev/mapper/root / ext4 ro 0 0"),
        "{arch}: fstab: {fstab:#?}"
    );
    assert!(
        b.console
            .contains("dm-verity /dev/mapper/root with the root hash from roothash="),
        "{arch}: {}",
        b.console
    );
}

/// Corruption: a changed block of a file reads as EIO while the rest boots; with
/// `restart-on-corruption` the reading reboots the VM; a wrong root hash, a damaged hash tree
/// and missing sidecars under `required` each stop the boot with their own reason.
fn verity_corruption(arch: &str) {
    let d = disk(arch, "verity-corrupt", &["--verity", "--verity-corrupt"]);
    let initrd = initramfs(arch, "plain", &[]);
    // The root hash from the sidecar active.img.roothash.
    let b = boot(arch, &d, &initrd, ACTIVE, &[]);
    b.completed();
    b.assert_mount("/", "/dev/mapper/root ext4 ro");
    let probe = b.one("verity-probe");
    assert!(probe.contains("Input/output error"), "{arch}: {probe}");
    assert!(
        b.console
            .contains("the root hash from /cOS/active.img.roothash"),
        "{}",
        b.console
    );

    let restart = format!("{ACTIVE} systemd.verity_root_options=restart-on-corruption");
    let b = boot(arch, &d, &initrd, &restart, &[]);
    assert!(!b.reports.contains_key("end"), "{arch}: must reboot");
    assert!(!b.reports.contains_key("verity-probe"), "{arch}: read it");
    assert!(
        b.console.contains("dm-verity device corrupted"),
        "{arch}: no restart:\n{}",
        b.console
    );

    let wrong = format!("{ACTIVE} roothash={}", "0".repeat(64));
    expect_failure(
        arch,
        &d,
        &wrong,
        "/cOS/active.img does not match the root hash from roothash=",
    );
    expect_failure(
        arch,
        &d,
        "root=LABEL=COS_RECOVERY cos-img/filename=/cOS/recovery.img",
        "/cOS/recovery.img: block 0 fails verification",
    );
    expect_failure(
        arch,
        &d,
        "root=LABEL=COS_PASSIVE cos-img/filename=/cOS/passive.img rd.immucore.verity=required",
        "rd.immucore.verity=required, but /cOS/passive.img has no root hash",
    );
}

macro_rules! per_arch {
    ($scenario:ident: $($arch:ident),*) => {
        mod $scenario {
            $(#[test] fn $arch() { super::$scenario(stringify!($arch)); })*
        }
    };
}

per_arch!(active_and_persistence: x86_64, aarch64, armv7);
per_arch!(other_states: x86_64, aarch64, armv7);
per_arch!(live_mode: x86_64, aarch64, armv7);
per_arch!(custom_layout: x86_64, aarch64, armv7);
per_arch!(no_oem: x86_64, aarch64, armv7);
per_arch!(failures: x86_64, aarch64, armv7);
per_arch!(late_device: x86_64, aarch64, armv7);
per_arch!(tiny_active: x86_64, aarch64, armv7);
per_arch!(verity: x86_64, aarch64, armv7);
per_arch!(verity_corruption: x86_64, aarch64, armv7);
per_arch!(compressed_module_refused: x86_64);

/// The recovery boot of `other_states` alone (COS_SYSTEM image, everything ephemeral), for the
/// 6.12 kernels.
fn recovery(arch: &str) {
    let initrd = initramfs(arch, "plain", &[]);
    let d = disk(arch, "recovery", &[]);
    let b = boot(
        arch,
        &d,
        &initrd,
        "root=LABEL=COS_SYSTEM cos-img/filename=/cOS/recovery.img rd.cos.oemlabel=COS_OEM",
        &[],
    );
    b.completed();
    assert_eq!(b.one("image"), "recovery");
    assert_eq!(b.one("sentinel"), "recovery_mode 1");
    b.assert_mount("/run/initramfs/cos-state", "ext4 ro");
    b.assert_mount("/usr/local", "overlay");
}

/// One failure of `failures`, for the 6.12 kernels: the image is not a filesystem (the loop
/// device and the probe see random bytes), so the boot ends in the summary and a reboot.
fn bad_image(arch: &str) {
    let bad = disk(arch, "bad", &["--bad-active"]);
    expect_failure(arch, &bad, ACTIVE, "is not a filesystem image");
}

/// Debian 12's kernels cannot decompress modules (no `CONFIG_MODULE_DECOMPRESS`): a `.ko.xz` in
/// the list is refused with a message that names it (and here the overlays it would provide
/// are missing), where Debian 13's kernels load the same kind of file.
fn compressed_module_refused(arch: &str) {
    let initrd = initramfs(arch, "xz-overlay", &["--xz-module", "overlay"]);
    let d = disk(arch, "xz", &[]);
    let b = boot(arch, &d, &initrd, ACTIVE, &[]);
    let refused = b.console.lines().any(|l| {
        l.contains("load-modules: warning: kernel/fs/overlayfs/overlay.ko.xz: ")
            && l.ends_with(": the kernel cannot decompress it")
    });
    assert!(refused, "{arch}: no clear message:\n{}", b.console);
    assert!(
        b.mount("/etc").is_none(),
        "{arch}: overlay without its module?"
    );
}

/// `per_arch!` for kit arches whose name is not a Rust identifier: `test_name = "kit-arch"`.
macro_rules! per_kit_arch {
    ($scenario:ident: $($test:ident = $arch:literal),*) => {
        mod $scenario {
            $(#[test] fn $test() { super::super::$scenario($arch); })*
        }
    };
}

/// Debian 13's 6.12 kernels. riscv64 (which has no other) runs the whole matrix; x86_64, aarch64
/// and armv7 the scenarios that exercise kernel-dependent code (compressed modules, loop, ext4,
/// overlayfs, bind mounts, hot-plug, the failure path). Which run where, and why: qemu/README.md.
mod kernel_6_12 {
    per_kit_arch!(active_and_persistence:
        x86_64 = "x86_64-6.12", aarch64 = "aarch64-6.12", armv7 = "armv7-6.12", riscv64 = "riscv64");
    per_kit_arch!(live_mode:
        x86_64 = "x86_64-6.12", aarch64 = "aarch64-6.12", armv7 = "armv7-6.12", riscv64 = "riscv64");
    per_kit_arch!(late_device:
        x86_64 = "x86_64-6.12", aarch64 = "aarch64-6.12", armv7 = "armv7-6.12", riscv64 = "riscv64");
    per_kit_arch!(recovery: x86_64 = "x86_64-6.12", aarch64 = "aarch64-6.12", armv7 = "armv7-6.12");
    per_kit_arch!(bad_image: x86_64 = "x86_64-6.12", aarch64 = "aarch64-6.12", armv7 = "armv7-6.12");
    // recovery and bad_image are parts of these:
    per_kit_arch!(other_states: riscv64 = "riscv64");
    per_kit_arch!(failures: riscv64 = "riscv64");
    per_kit_arch!(custom_layout: riscv64 = "riscv64");
    per_kit_arch!(no_oem: riscv64 = "riscv64");
    per_kit_arch!(tiny_active: riscv64 = "riscv64");
}
