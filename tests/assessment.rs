//! QEMU boots of the boot assessment without a bootloader (`rd.immucore.bootassessment`, README
//! "Boot assessment without a bootloader"), with the `full` profile's binary as PID 1, on
//! x86_64, aarch64 and armv7:
//! - an active boot whose init reboots without `immucore boot-ok` makes the next boot passive,
//!   with `/run/cos/upgrade_failure`; `immucore boot-ok` there clears the flag, and the next
//!   boot is active again (and its own `boot-ok` clears the flag it set);
//! - power cuts (QEMU killed) at random points around the block's rewrite leave on the disk
//!   either the old block or the new one, byte for byte (x86_64).
//!
//! The disk's `/boot_assessment` is made by GRUB's own `grub-editenv` (`qemu/mkdisk
//! --boot-assessment`), and read back on the host from the disk image with `debugfs`.
//! Needs `qemu/setup` and the full profile's release binaries (`scripts/test` does both).

mod kit;

use kit::{full_binary, kit, repo};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The command line of an active boot with the assessment, whose init is the assessment
/// boots' (`assess=ok` or not decides whether it runs `immucore boot-ok`).
const ACTIVE: &str = "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img \
     rd.cos.oemlabel=COS_OEM rd.immucore.bootassessment init=/sbin/init-assess \
     rd.immucore.rebootonfailure";

/// The block as the test disk has it: made by `grub-editenv set` of these.
const ARMED: &str = "enable_boot_assessment=yes";

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| kit::scratch_dir("assessment"))
}

/// The full profile's initramfs of `arch` (built once per test run).
fn initramfs(arch: &str) -> PathBuf {
    let bin = full_binary(arch);
    kit::assert_built(&bin);
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = scratch().join(format!("initrd-{arch}.cpio.gz"));
    if !built.contains(&out) {
        kit(
            "mkinitramfs",
            &[arch, bin.to_str().unwrap(), out.to_str().unwrap()],
        );
        built.push(out.clone());
    }
    out
}

/// A fresh disk named `name` with the block armed and the full binary in its images.
fn disk(arch: &str, name: &str) -> PathBuf {
    let out = scratch().join(format!("disk-{arch}-{name}.img"));
    let bin = full_binary(arch);
    kit(
        "mkdisk",
        &[
            arch,
            out.to_str().unwrap(),
            "--boot-assessment",
            ARMED,
            bin.to_str().unwrap(),
        ],
    );
    out
}

/// One boot through `qemu/faults/run` (QEMU exits on the guest's reboot or power-off), with
/// the runner's `extra` options (`--kill-on`, `--mark`). Returns the console and what the
/// runner printed.
fn boot(arch: &str, disk: &Path, append: &str, tag: &str, extra: &[&str]) -> (String, String) {
    let serial = scratch().join(format!("serial-{arch}-{tag}.log"));
    let initrd = initramfs(arch);
    let mut cmd = Command::new(repo().join("qemu/faults/run"));
    cmd.args([
        arch,
        disk.to_str().unwrap(),
        initrd.to_str().unwrap(),
        serial.to_str().unwrap(),
        "--append",
        append,
        "--timeout",
        "240",
    ]);
    cmd.args(extra);
    let out = cmd.output().expect("run qemu/faults/run");
    let runner = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "qemu/faults/run failed: {runner}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&std::fs::read(&serial).unwrap()).into_owned();
    assert!(
        !runner.contains("exit 124"),
        "{arch} {tag}: the VM did not end in 240 s:\n{console}"
    );
    (console, runner)
}

/// The byte offset of the GPT partition named `name` in `disk`.
fn partition_offset(disk: &Path, name: &str) -> u64 {
    let out = Command::new("partx")
        .args(["-g", "-o", "NAME,START", disk.to_str().unwrap()])
        .output()
        .expect("run partx");
    let text = String::from_utf8_lossy(&out.stdout);
    let start: u64 = text
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next())?
        })
        .unwrap_or_else(|| panic!("no partition {name} in {}: {text}", disk.display()))
        .parse()
        .unwrap();
    start * 512
}

/// `/boot_assessment` of `COS_STATE` in the disk image, as the disk holds it (read with
/// debugfs, no journal replay: what a power cut left).
fn block_on_disk(disk: &Path) -> Vec<u8> {
    let offset = partition_offset(disk, "state");
    let fs = format!("{}?offset={offset}", disk.display());
    let out = Command::new("debugfs")
        .args(["-R", "cat /boot_assessment", &fs])
        .output()
        .expect("run debugfs");
    assert!(
        out.status.success(),
        "debugfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The variables of a block as GRUB's `grub-editenv list` reads them.
fn grub_list(block: &[u8], tag: &str) -> String {
    let file = scratch().join(format!("block-{tag}"));
    std::fs::write(&file, block).unwrap();
    let out = Command::new("grub-editenv")
        .args([file.to_str().unwrap(), "list"])
        .output()
        .expect("run grub-editenv");
    assert!(out.status.success(), "grub-editenv list: {:?}", out);
    String::from_utf8(out.stdout).unwrap()
}

/// The `REPORT:` lines of the test init on a console.
fn reports(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter_map(|l| l.split_once("REPORT: ").map(|(_, r)| r.trim_end()))
        .collect()
}

fn failure_scenario(arch: &str) {
    let started = Instant::now();
    let disk = disk(arch, "fallback");
    assert_eq!(block_on_disk(&disk).len(), 1024);
    assert_eq!(
        grub_list(&block_on_disk(&disk), arch),
        "enable_boot_assessment=yes\n"
    );

    // 1. Active, tried: the flag is set before the root is assembled; the init dies without
    //    boot-ok (a reboot), as a failed upgrade would.
    let (console, _) = boot(arch, &disk, &format!("{ACTIVE} assess=reboot"), "1", &[]);
    let r = reports(&console);
    assert!(r.contains(&"image active"), "{arch} boot 1:\n{console}");
    assert!(
        r.contains(&"sentinel active_mode 1"),
        "{arch} boot 1:\n{console}"
    );
    assert!(
        !r.iter().any(|l| l.contains("upgrade_failure")),
        "{console}"
    );
    assert!(
        r.contains(&"cos-state ro"),
        "COS_STATE read-only again:\n{console}"
    );
    assert!(r.contains(&"rebooting without boot-ok"), "{console}");
    let block = block_on_disk(&disk);
    assert_eq!(block.len(), 1024);
    assert_eq!(
        grub_list(&block, arch),
        "enable_boot_assessment=yes\nboot_assessment_tentative=yes\n"
    );

    // 2. The try never cleared its flag: passive, with upgrade_failure; boot-ok there clears
    //    the flag (try the active image again).
    let (console, _) = boot(arch, &disk, &format!("{ACTIVE} assess=ok"), "2", &[]);
    let r = reports(&console);
    assert!(r.contains(&"image passive"), "{arch} boot 2:\n{console}");
    assert!(r.contains(&"sentinel passive_mode 1"), "{console}");
    assert!(r.contains(&"sentinel upgrade_failure 1"), "{console}");
    assert!(!r.contains(&"sentinel active_mode 1"), "{console}");
    assert!(
        console.contains("booting the passive image /cOS/passive.img instead"),
        "the fallback is said on the console:\n{console}"
    );
    assert!(r.contains(&"boot-ok exit 0"), "{console}");
    assert!(r.contains(&"cos-state ro after boot-ok"), "{console}");
    assert_eq!(
        grub_list(&block_on_disk(&disk), arch),
        "enable_boot_assessment=yes\nboot_assessment_tentative=\n"
    );

    // 3. Active again, tried, and this time blessed, by a boot-ok that finds COS_STATE by
    //    label (not mounted at /run/initramfs/cos-state any more).
    let append = format!("{ACTIVE} assess=ok-unmounted");
    let (console, _) = boot(arch, &disk, &append, "3", &[]);
    let r = reports(&console);
    assert!(r.contains(&"image active"), "{arch} boot 3:\n{console}");
    assert!(
        !r.iter().any(|l| l.contains("upgrade_failure")),
        "{console}"
    );
    assert!(r.contains(&"cos-state unmounted"), "{console}");
    assert!(r.contains(&"boot-ok exit 0"), "{console}");
    assert_eq!(
        grub_list(&block_on_disk(&disk), arch),
        "enable_boot_assessment=yes\nboot_assessment_tentative=\n"
    );
    eprintln!(
        "{arch}: three assessment boots in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn x86_64_failed_try_boots_passive_and_boot_ok_rearms() {
    failure_scenario("x86_64");
}

#[test]
fn aarch64_failed_try_boots_passive_and_boot_ok_rearms() {
    failure_scenario("aarch64");
}

#[test]
fn armv7_failed_try_boots_passive_and_boot_ok_rearms() {
    failure_scenario("armv7");
}

/// Power cuts around the block's rewrite. A calibration boot measures, on the host's clock, the
/// time from immucore's first line (base-mounts) to the line after the rewrite (the modules,
/// the mount of COS_STATE, the read, the remount, the write, the flush and the remount happen
/// in between); then QEMU is killed at points spread over that window, and once after it. Each cut leaves the old block
/// or the new one, byte for byte; the new one is what `grub-editenv set` makes of the old.
#[test]
fn x86_64_power_cut_leaves_the_old_or_the_new_block() {
    let arch = "x86_64";
    let started = Instant::now();
    let pristine = disk(arch, "powercut");
    let old = block_on_disk(&pristine);
    // The new block as GRUB's tool writes it: ours must be the same bytes.
    let file = scratch().join("block-powercut-new");
    std::fs::write(&file, &old).unwrap();
    let set = Command::new("grub-editenv")
        .args([
            file.to_str().unwrap(),
            "set",
            "boot_assessment_tentative=yes",
        ])
        .status()
        .unwrap();
    assert!(set.success());
    let new = std::fs::read(&file).unwrap();
    assert_ne!(old, new);
    let fresh = |name: &str| {
        let disk = scratch().join(format!("disk-{arch}-powercut-{name}.img"));
        let copy = Command::new("cp")
            .args([
                "--sparse=always",
                pristine.to_str().unwrap(),
                disk.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(copy.success());
        disk
    };
    let append = format!("{ACTIVE} assess=reboot");
    let (start_mark, end_mark) = ("base-mounts: mounted", "trying the active image");

    let disk = fresh("calibration");
    let marks = ["--mark", start_mark, "--mark", end_mark];
    let (console, runner) = boot(arch, &disk, &append, "cut-calibration", &marks);
    let at = |mark: &str| -> f64 {
        let line = runner
            .lines()
            .find(|l| l.starts_with("mark ") && l.ends_with(mark));
        let t = line.and_then(|l| l.split_whitespace().nth(1));
        t.unwrap_or_else(|| panic!("no {mark:?} in {runner}\n{console}"))
            .parse()
            .unwrap()
    };
    let window = at(end_mark) - at(start_mark);
    assert_eq!(
        block_on_disk(&disk),
        new,
        "the calibration boot wrote the new block"
    );
    let _ = std::fs::remove_file(&disk);
    eprintln!("power cuts: base-mounts to the rewritten block: {window:.2} s");

    // Spread over the window with a little jitter from the clock, so that runs differ; the
    // last one a second after it.
    let jitter = f64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_micros(),
    ) / 1e6;
    const CUTS: usize = 5;
    let mut delays: Vec<f64> = (0..CUTS)
        .map(|i| window * (i as f64 + jitter) / CUTS as f64)
        .collect();
    delays.push(window + 1.0);
    let (mut saw_old, mut saw_new) = (0, 0);
    for (i, delay) in delays.iter().enumerate() {
        let disk = fresh(&i.to_string());
        let delay_text = format!("{delay:.3}");
        let cut = ["--kill-on", start_mark, "--delay", &delay_text];
        let (console, runner) = boot(arch, &disk, &append, &format!("cut-{i}"), &cut);
        assert!(
            runner.contains("killed"),
            "no power cut in run {i}: {runner}\n{console}"
        );
        let block = block_on_disk(&disk);
        if block == old {
            saw_old += 1;
        } else if block == new {
            saw_new += 1;
        } else {
            panic!(
                "run {i} (cut {delay:.3} s after base-mounts): the block is neither the old nor the new one:\n{}",
                String::from_utf8_lossy(&block)
            );
        }
        let _ = std::fs::remove_file(&disk);
    }
    eprintln!(
        "power cuts: {saw_old} left the old block, {saw_new} the new one ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    // The last cut comes a second after the write: the disk has the new block by then.
    assert!(saw_new > 0, "no run saw the rewritten block");
}
