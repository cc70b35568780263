//! Fault injection: power loss during the copy-up of persistent paths, a device that disappears
//! before it is mounted, loop devices that are all busy, and the debug flag changing nothing.
//!
//! The QEMU tests (x86_64, TCG) drive `qemu/faults/run`, which boots like `qemu/boot` and injects
//! the fault at a point found on the serial console; assertions are made on the `REPORT:` lines
//! of the test root's /sbin/init. The loop-device test runs in service mode in a private mount
//! namespace (tests/common). Needs root, `qemu/setup` and the x86_64 release binary.
//!
//! `IMMUCORE_FAULT_SEED=<n>` replays the power-loss test's random kill points.

mod common;
mod serial;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use serial::Console;

const ARCH: &str = "x86_64";
const ACTIVE: &str =
    "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM";

/// One VM at a time: the kill points are timed against a calibration boot, which parallel VMs
/// on the same CPUs would skew.
static VM: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch() -> PathBuf {
    let d = repo().join("target/faults");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn kit(script: &str, args: &[&str]) {
    let out = Command::new(repo().join("qemu").join(script))
        .args(args)
        .output()
        .expect("run qemu kit");
    assert!(
        out.status.success(),
        "qemu/{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn initramfs() -> PathBuf {
    let bin = repo().join("target/x86_64-unknown-linux-musl/release/immucore");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release --target x86_64-unknown-linux-musl",
        bin.display()
    );
    assert!(
        repo().join("qemu/cache/x86_64/kernel").exists(),
        "no x86_64 kernel: run qemu/setup"
    );
    // Built once per run of this test binary (the binary may have changed since the last).
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = scratch().join(format!("initrd-{ARCH}.cpio.gz"));
            kit(
                "mkinitramfs",
                &[ARCH, bin.to_str().unwrap(), out.to_str().unwrap()],
            );
            out
        })
        .clone()
}

/// What a faulted run printed (`trigger`, `killed`, `unplugged`, `mark` times) and what the
/// guest reported.
struct Run {
    host: Vec<String>,
    out: Console,
    wall_s: f64,
}

impl std::ops::Deref for Run {
    type Target = Console;
    fn deref(&self) -> &Console {
        &self.out
    }
}

impl Run {
    fn completed(&self) -> bool {
        self.reports.contains_key("end")
    }

    /// Seconds of a host line `<word> T ...`.
    fn host_time(&self, word: &str, rest: &str) -> Option<f64> {
        self.host.iter().find_map(|l| {
            let mut it = l.splitn(3, ' ');
            (it.next()? == word).then_some(())?;
            let t = it.next()?.parse().ok()?;
            (it.next().unwrap_or("") == rest).then_some(t)
        })
    }

    /// (mount point, source, type, options) of every mount the guest saw.
    fn mounts(&self) -> BTreeSet<String> {
        self.all("mount").iter().cloned().collect()
    }
}

fn run(disk: &Path, serial_name: &str, cmdline: &str, extra: &[&str]) -> Run {
    let serial = scratch().join(serial_name);
    let initrd = initramfs();
    let mut args = vec![
        ARCH,
        disk.to_str().unwrap(),
        initrd.to_str().unwrap(),
        serial.to_str().unwrap(),
        "--append",
        cmdline,
        "--timeout",
        "240",
    ];
    args.extend_from_slice(extra);
    let start = Instant::now();
    let out = Command::new(repo().join("qemu/faults/run"))
        .args(&args)
        .output()
        .expect("run qemu/faults/run");
    let wall_s = start.elapsed().as_secs_f64();
    let console = Console::parse(&std::fs::read(&serial).unwrap_or_default());
    assert!(
        out.status.success(),
        "qemu/faults/run failed or timed out ({}):\n{}\nconsole:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        console.console
    );
    Run {
        host: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        out: console,
        wall_s,
    }
}

/// xorshift64*: a reproducible sequence from the printed seed.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `checked=1984 mismatched=0 ...` → map.
fn fields(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The number in `(copied N files` of the rancher bind line, if the copy-up completed.
fn rancher_copied(console: &str) -> Option<u64> {
    let l = console
        .lines()
        .find(|l| l.contains("var-lib-rancher.bind on /var/lib/rancher (copied "))?;
    l.split("(copied ").nth(1)?.split(' ').next()?.parse().ok()
}

const FILES: u64 = 1984; // 2000 small + 4 big in the image, minus 20 the user already has
const FAULTS: usize = 6;

/// Power cut at random points of the first boot's copy-up, then a normal boot: every file in the
/// store is absent or identical to the image's, the user's own versions are never replaced, no
/// temporary is left, and the second boot completes the copy-up and the boot.
#[test]
fn power_loss_during_copy_up_never_leaves_a_half_written_file() {
    let _vm = VM.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let pristine = scratch().join("copyup-pristine.img");
    kit("faults/mkdisk-copyup", &[ARCH, pristine.to_str().unwrap()]);
    let disk = scratch().join("copyup.img");
    let fresh = || {
        std::fs::copy(&pristine, &disk).unwrap();
    };
    let seed: u64 = std::env::var("IMMUCORE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("power-loss test: seed {seed} (IMMUCORE_FAULT_SEED={seed} replays it)");
    let mut rng = Rng(seed);

    // Calibration, also the control: no fault, the verifier sees a complete, correct store.
    fresh();
    let start_mark = "immucore: custom-mount:";
    // The end of the rancher copy-up (its bind line, logged when it copied something): the
    // copy-up is a small part of custom-mount to write-fstab now that it flushes once per
    // directory, and the cuts aim at it.
    let end_mark = "var-lib-rancher.bind on /var/lib/rancher [(]copied ";
    let cal = run(
        &disk,
        "copyup-calibration.log",
        ACTIVE,
        &["--mark", start_mark, "--mark", end_mark],
    );
    assert!(
        cal.completed(),
        "calibration boot did not finish:\n{}",
        cal.console
    );
    let v = fields(cal.one("verify"));
    assert_eq!(
        (
            v["checked"],
            v["mismatched"],
            v["leftovers"],
            v["user_kept"],
            v["user_lost"],
            v["missing"]
        ),
        (FILES, 0, 0, 20, 0, 0),
        "control boot: {}",
        cal.one("verify")
    );
    assert_eq!(rancher_copied(&cal.console), Some(FILES));
    let window =
        cal.host_time("mark", end_mark).unwrap() - cal.host_time("mark", start_mark).unwrap();
    assert!(
        window > 0.2,
        "copy-up window too short to aim at: {window:.2} s"
    );
    eprintln!("copy-up window (custom-mount to the end of the rancher copy-up): {window:.2} s");

    let mut checked = 0;
    let mut inside = 0;
    // Boots on a shared machine vary in speed: a cut that came after the copy-up shows that
    // it ended before that delay in this boot, and the next cuts aim below it.
    let mut window = window;
    for k in 0..FAULTS {
        fresh();
        let delay = window * rng.next_f64();
        let cut = run(
            &disk,
            &format!("copyup-cut{k}.log"),
            ACTIVE,
            &["--kill-on", start_mark, "--delay", &format!("{delay:.3}")],
        );
        assert!(
            cut.host.iter().any(|l| l.starts_with("killed ")),
            "fault {k}: the VM was not killed: {:?}\n{}",
            cut.host,
            cut.console
        );
        assert!(
            !cut.completed(),
            "fault {k}: booted to the end before the cut"
        );
        let during = rancher_copied(&cut.console).is_none();
        inside += during as usize;
        if !during {
            window = window.min(delay);
        }

        let after = run(&disk, &format!("copyup-after{k}.log"), ACTIVE, &[]);
        assert!(
            after.completed(),
            "fault {k} (cut {delay:.2} s into the copy-up): the next boot did not finish:\n{}",
            after.console
        );
        let v = fields(after.one("verify"));
        assert!(
            after
                .mounts()
                .iter()
                .any(|m| m.starts_with("/var/lib/rancher /dev/vda3 ")),
            "fault {k}: the next boot did not bind /var/lib/rancher:\n{}",
            after.console
        );
        // The bind line counts only when something was copied (info level); a cut after the
        // copy-up completed leaves nothing to copy.
        let copied_now = rancher_copied(&after.console).unwrap_or(0);
        eprintln!(
            "fault {k}: cut {delay:.2} s after custom-mount ({}), store had {} of {FILES} files, \
             next boot copied {copied_now}; verify: {}",
            if during {
                "during copy-up"
            } else {
                "after the copy-up"
            },
            FILES - copied_now,
            after.one("verify")
        );
        assert_eq!(
            v["mismatched"],
            0,
            "fault {k}: half-written or wrong files in the store: {:?}",
            after.all("mismatch")
        );
        assert_eq!(
            v["leftovers"],
            0,
            "fault {k}: temporaries left: {:?}",
            after.all("leftover")
        );
        assert_eq!(
            (v["user_kept"], v["user_lost"]),
            (20, 0),
            "fault {k}: the user's files were replaced: {:?}",
            after.all("user-lost")
        );
        assert_eq!(
            v["missing"], 0,
            "fault {k}: the next boot did not complete the copy-up"
        );
        assert_eq!(v["checked"], FILES);
        checked += v["checked"];
    }
    eprintln!(
        "power-loss test: {FAULTS} faults injected ({inside} during the copy-up itself), {checked} \
         files checked, 0 mismatched, 0 user files lost, wall {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        inside * 2 >= FAULTS,
        "only {inside} of {FAULTS} cuts landed inside the copy-up: the aim is off"
    );
    let _ = std::fs::remove_file(&disk);
}

/// An extra volume's disk is hot-unplugged (QEMU `device_del`) after the boot started and before
/// custom-mount: custom-mount fails with a clear error within its 3 s deadline and the boot
/// completes; with the disk left in, the same boot mounts it (control).
#[test]
fn device_that_disappears_before_mount() {
    let _vm = VM.lock().unwrap_or_else(|e| e.into_inner());
    let disk = scratch().join("unplug.img");
    kit("mkdisk", &[ARCH, disk.to_str().unwrap()]);
    let data = scratch().join("unplug-data.img");
    let _ = std::fs::remove_file(&data);
    common::sh(&format!(
        "truncate -s 8M {d} && mkfs.ext4 -q -F -L DATA {d}",
        d = data.display()
    ));
    // A missing OEM label holds the boot for 8 s in mount-oem: time for the guest's PCIe hotplug
    // driver (which waits 5 s after the attention button) to remove the disk.
    let cmdline =
        "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=NO_SUCH_OEM \
         rd.cos.oemtimeout=8 rd.immucore.mount=LABEL=DATA:/srv/data";
    let with = run(
        &disk,
        "unplug-control.log",
        cmdline,
        &["--extra-disk", data.to_str().unwrap()],
    );
    assert!(
        with.completed(),
        "control boot did not finish:\n{}",
        with.console
    );
    assert!(
        with.all("mount")
            .iter()
            .any(|m| m.starts_with("/srv/data /dev/vdb ext4 rw")),
        "control: DATA not mounted: {:#?}",
        with.all("mount")
    );

    let gone = run(
        &disk,
        "unplug.log",
        cmdline,
        &[
            "--extra-disk",
            data.to_str().unwrap(),
            "--unplug-on",
            "immucore: mount-state: mounted",
        ],
    );
    assert!(
        gone.host.iter().any(|l| l.starts_with("unplugged ")),
        "device_del not sent: {:?}",
        gone.host
    );
    assert!(
        gone.completed(),
        "the boot did not finish:\n{}",
        gone.console
    );
    for line in [
        "immucore: custom-mount: error: LABEL=DATA did not appear within 3 s",
        "immucore: custom-mount: error: failed: not mounted: /dev/disk/by-label/DATA on /srv/data",
    ] {
        assert!(
            gone.console.lines().any(|l| l == line),
            "no clear custom-mount error {line:?}:\n{}",
            gone.console
        );
    }
    // Within the deadline: kernel-log stamps of the step before (mount-oem's failure) and of
    // the volume's error are about 3 s apart (overlays in between take milliseconds).
    let stamp = |needle: &str| -> f64 {
        gone.console
            .lines()
            .find(|l| l.starts_with('[') && l.contains(needle))
            .and_then(|l| l[1..].split(']').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no kernel-log line with {needle:?}:\n{}", gone.console))
    };
    let waited = stamp("LABEL=DATA did not appear") - stamp("mount-oem: error: failed");
    assert!(
        (2.9..4.5).contains(&waited),
        "custom-mount waited {waited:.2} s for the vanished disk (deadline 3 s)"
    );
    assert!(
        !gone
            .all("mount")
            .iter()
            .any(|m| m.starts_with("/srv/data ")),
        "DATA mounted although unplugged"
    );
    // Everything else of the layout is there.
    for p in ["/ ", "/etc ", "/var ", "/usr/local ", "/var/log "] {
        assert!(
            gone.all("mount").iter().any(|m| m.starts_with(p)),
            "{p}not mounted: {:#?}",
            gone.all("mount")
        );
    }
    eprintln!(
        "device_disappears: control {:.0} s, unplugged {:.0} s",
        with.wall_s, gone.wall_s
    );
}

/// The active boot with and without `rd.immucore.debug`: the same mounts (point, source, type,
/// options), the same fstab, the same layout; only the log is longer.
#[test]
fn debug_flag_changes_no_mount() {
    let _vm = VM.lock().unwrap_or_else(|e| e.into_inner());
    let disk = scratch().join("debug.img");
    let mut results = Vec::new();
    for (name, cmdline) in [
        ("plain", ACTIVE.to_string()),
        ("debug", format!("{ACTIVE} rd.immucore.debug")),
    ] {
        // A fresh disk each time: the first boot's copy-up must not make the second differ.
        kit("mkdisk", &[ARCH, disk.to_str().unwrap()]);
        let r = run(&disk, &format!("debug-{name}.log"), &cmdline, &[]);
        assert!(r.completed(), "{name} boot did not finish:\n{}", r.console);
        results.push(r);
    }
    let (plain, debug) = (&results[0], &results[1]);
    let (a, b) = (plain.mounts(), debug.mounts());
    assert!(a.len() > 20, "too few mounts to compare: {a:#?}");
    assert_eq!(
        a.symmetric_difference(&b).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "mounts differ with rd.immucore.debug"
    );
    assert_eq!(plain.all("fstab"), debug.all("fstab"), "fstab differs");
    assert_eq!(
        plain.all("layout"),
        debug.all("layout"),
        "cos-layout.env differs"
    );
    assert_eq!(plain.all("sentinel"), debug.all("sentinel"));
    let debug_lines = |r: &Run| {
        r.console
            .lines()
            .filter(|l| l.contains("immucore: "))
            .count()
    };
    assert!(
        debug_lines(debug) > debug_lines(plain),
        "rd.immucore.debug logged nothing more"
    );
    eprintln!("debug comparison: {} mounts identical", a.len());
}

// ---------------------------------------------------------------------------------------------
// Service mode

/// Loop devices all busy: the node LOOP_CTL_GET_FREE names is (in this namespace) a loop device
/// already in use, so every LOOP_CONFIGURE gets EBUSY. discover-state gives up after its retries
/// with an error naming the loop device problem, quickly, and leaves nothing attached.
#[test]
fn all_loop_devices_busy_fails_fast_and_clearly() {
    use common::*;
    let t = Bench::new("loop-busy");
    let disk = t.attach(&standard_disk());
    let start = Instant::now();
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: &format!(
            "n=$(losetup -f) && for i in $(seq 100); do [ -e $n ] && break; sleep 0.05; done && \
             mount --bind {busy} $n && echo $n > $W/hijacked",
            busy = disk.dev
        ),
        ..Default::default()
    });
    let wall = start.elapsed().as_secs_f64();
    o.expect_code(1);
    assert_eq!(
        o.step_error("discover-state").as_deref(),
        Some("cannot attach /cOS/active.img to a loop device: device or resource busy"),
        "{}",
        o.dump()
    );
    o.expect_stderr(
        "Reason: discover-state: cannot attach /cOS/active.img to a loop device: device or resource busy",
    );
    assert!(wall < 10.0, "took {wall:.1} s: a hang or busy wait");
    let mounted: Vec<_> = o
        .mounts
        .iter()
        .filter(|m| m.target != "/tmp" && m.target != "/run/initramfs/cos-state")
        .collect();
    assert!(mounted.is_empty(), "mounted {mounted:?}\n{}", o.dump());
    drop(disk);
    let leaked = loop_devices_on_images();
    assert!(leaked.is_empty(), "loop devices left: {leaked:?}");
}

/// /dev/loop-control is not a loop control device (here /dev/null): a clear error, no hang.
#[test]
fn unusable_loop_control_fails_fast_and_clearly() {
    use common::*;
    let t = Bench::new("loop-control");
    let _disk = t.attach(&standard_disk());
    let start = Instant::now();
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: "mount --bind /dev/null /dev/loop-control",
        ..Default::default()
    });
    let wall = start.elapsed().as_secs_f64();
    o.expect_code(1);
    let e = o.step_error("discover-state").unwrap_or_default();
    assert!(
        e.starts_with("cannot attach /cOS/active.img to a loop device: "),
        "{}",
        o.dump()
    );
    assert!(wall < 10.0, "took {wall:.1} s: a hang or busy wait");
    assert!(
        o.mounts
            .iter()
            .all(|m| m.target == "/tmp" || m.target == "/run/initramfs/cos-state"),
        "{}",
        o.dump()
    );
}

/// The same, asking for words instead of a number: log::errno has no text for ENOTTY, so the
/// error reads "errno 25".
#[test]
fn unusable_loop_control_error_is_in_words() {
    use common::*;
    let t = Bench::new("loop-control-words");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: "mount --bind /dev/null /dev/loop-control",
        ..Default::default()
    });
    o.expect_code(1);
    assert_eq!(
        o.step_error("discover-state").as_deref(),
        Some("cannot attach /cOS/active.img to a loop device: inappropriate ioctl for device"),
        "{}",
        o.dump()
    );
}
