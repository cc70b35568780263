//! The dracut/systemd-initrd integration (dracut/28immucore) booted for real: the Debian package
//! of `scripts/mkdeb` is installed with `dpkg -i` into a Debian 12 root, and Debian's dracut
//! builds, from that root's binary, module and dracut.conf.d snippet, an uncompressed initramfs
//! for the QEMU kit's Debian x86_64 kernel with a minimal module set plus `immucore` (and the
//! test-only `immucore-test` module, which prints what systemd recorded about the units as
//! `DRACUT-TEST:` lines), and QEMU boots it under TCG against the
//! Kairos-layout disk of `qemu/mkdisk`, or against a disk whose active image is a debootstrapped
//! Debian with systemd as init (`qemu/dracut/mkdisk-debian`).
//!
//! Every assertion is made on serial-console lines (QEMU's exit status says nothing about the
//! guest): `REPORT:` from the booted root, `DRACUT-TEST:` from the initrd, `immucore: ...` and
//! systemd's own status lines.  The scenarios run one after another (one lock) with a hard
//! timeout per boot.
//!
//! Needs `qemu/setup x86_64` and the x86_64 musl release binary (`scripts/test` does both); the
//! scripts install dracut and debootstrap themselves and cache their results under qemu/cache/.

mod serial;

use serial::Console;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

const ACTIVE: &str =
    "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM";
/// Never an interactive shell, and power off on failure: a failed boot ends the VM.
const NO_SHELL: &str = "rd.shell=0 rd.emergency=poweroff";
/// Guest RAM: the uncompressed dracut image (~140 MB, mostly kernel modules) is held twice
/// while the kernel unpacks it; 256 MB runs out of memory.
const MEM_MB: &str = "1024";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = repo().join("target/dracut");
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// One scenario at a time: the VMs are heavy under TCG and share the caches.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn script(path: &str, args: &[&str]) -> String {
    let t = Instant::now();
    let out = Command::new(repo().join(path))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    assert!(
        out.status.success(),
        "{path} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{path}: {:.1} s", t.elapsed().as_secs_f64());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn preconditions() {
    let bin = repo().join("target/x86_64-unknown-linux-musl/release/immucore");
    assert!(
        bin.exists(),
        "{} missing: run scripts/test (or cargo build --release --target x86_64-unknown-linux-musl)",
        bin.display()
    );
    assert!(
        repo().join("qemu/cache/x86_64/kernel").exists(),
        "no x86_64 kernel: run qemu/setup x86_64"
    );
}

/// The dracut initramfs (built once per test run; the script itself caches by content).
fn initramfs() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            preconditions();
            let out = scratch().join("initramfs-dracut.img");
            script("qemu/dracut/mkinitramfs", &[out.to_str().unwrap()]);
            let size = std::fs::metadata(&out).unwrap().len();
            eprintln!("dracut initramfs: {size} bytes uncompressed");
            assert_installed_from_package(&out);
            out
        })
        .clone()
}

/// immucore came from the Debian package: dpkg has it installed in the Debian root the image
/// was built from, and the image's unit and binary are that root's (dracut strips binaries, so
/// the binary is compared by what `--version` prints: version, commit and features).
fn assert_installed_from_package(image: &Path) {
    let root = repo().join("qemu/cache/dracut/debian-root");
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: immucore\nStatus: install ok installed\n"),
        "immucore is not installed by dpkg in {}",
        root.display()
    );
    let from_image = |path: &str| {
        let out = Command::new("cpio")
            .args(["-i", "--quiet", "--to-stdout", path])
            .stdin(std::fs::File::open(image).unwrap())
            .output()
            .unwrap();
        assert!(!out.stdout.is_empty(), "no {path} in {}", image.display());
        out.stdout
    };
    assert_eq!(
        from_image("usr/lib/systemd/system/immucore.service"),
        std::fs::read(root.join("usr/lib/dracut/modules.d/28immucore/immucore.service")).unwrap()
    );
    let image_bin = scratch().join("immucore-from-image");
    std::fs::write(&image_bin, from_image("usr/bin/immucore")).unwrap();
    std::fs::set_permissions(
        &image_bin,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let version = |bin: &Path| Command::new(bin).arg("--version").output().unwrap().stdout;
    let installed = version(&root.join("usr/bin/immucore"));
    assert!(String::from_utf8_lossy(&installed).starts_with("immucore "));
    assert_eq!(version(&image_bin), installed);
}

fn kairos_disk(name: &str) -> PathBuf {
    let out = scratch().join(format!("disk-{name}.img"));
    script("qemu/mkdisk", &["x86_64", out.to_str().unwrap()]);
    out
}

/// What the guest printed: `REPORT:` lines by key, `DRACUT-TEST:` lines, the whole console.
struct Boot {
    out: Console,
    /// "unit Property" → value, from the initrd's test unit
    units: HashMap<String, String>,
    wall_s: f64,
}

impl std::ops::Deref for Boot {
    type Target = Console;
    fn deref(&self) -> &Console {
        &self.out
    }
}

impl Boot {
    fn mount(&self, mountpoint: &str) -> &str {
        self.all("mount")
            .iter()
            .find(|l| l.split(' ').next() == Some(mountpoint))
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{mountpoint} not mounted; console:\n{}", self.console))
    }

    fn unit(&self, unit: &str, prop: &str) -> &str {
        self.units
            .get(&format!("{unit} {prop}"))
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no DRACUT-TEST {unit} {prop}; console:\n{}", self.console))
    }

    fn unit_us(&self, unit: &str, prop: &str) -> u64 {
        self.unit(unit, prop).parse().unwrap()
    }

    fn completed(&self) {
        assert!(
            self.reports.contains_key("end"),
            "the booted system did not finish its report; console:\n{}",
            self.console
        );
    }

    fn has(&self, needle: &str) -> bool {
        self.console.contains(needle)
    }
}

fn boot(disk: &Path, cmdline: &str, timeout_s: u32) -> Boot {
    let serial = scratch().join(format!(
        "serial-{}.log",
        disk.file_stem().unwrap().to_string_lossy()
    ));
    let initrd = initramfs();
    let start = Instant::now();
    let status = Command::new(repo().join("qemu/boot"))
        .args([
            "x86_64",
            disk.to_str().unwrap(),
            initrd.to_str().unwrap(),
            serial.to_str().unwrap(),
            "--append",
            cmdline,
            "--timeout",
            &timeout_s.to_string(),
            "--mem",
            MEM_MB,
        ])
        .status()
        .expect("run qemu/boot");
    let wall_s = start.elapsed().as_secs_f64();
    let out = Console::parse(&std::fs::read(&serial).unwrap_or_default());
    // 124 is timeout's status: the guest neither powered off nor rebooted in time.
    assert_ne!(
        status.code(),
        Some(124),
        "the VM hung ({timeout_s} s); console:\n{}",
        out.console
    );
    let mut units = HashMap::new();
    for line in out.console.lines() {
        // Markers may follow a kernel timestamp and "unit[pid]: ".
        if let Some(i) = line.find("DRACUT-TEST: ") {
            let rest = &line[i + 13..];
            if let Some((unit, kv)) = rest.split_once(' ') {
                if let Some((k, v)) = kv.split_once('=') {
                    units.insert(format!("{unit} {k}"), v.to_string());
                } else {
                    units.insert(unit.to_string(), kv.to_string());
                }
            }
        }
    }
    Boot { out, units, wall_s }
}

/// The systemd side of a successful initrd: immucore.service succeeded, and finished before
/// initrd-root-fs.target and initrd-fs.target were reached; /sysroot was mounted once (by
/// immucore: sysroot.mount is ordered after it and found it mounted).
fn assert_initrd_order(b: &Boot) {
    assert_eq!(
        b.unit("immucore.service", "Result"),
        "success",
        "{}",
        b.console
    );
    assert_eq!(b.unit("immucore.service", "ExecMainStatus"), "0");
    let exit = b.unit_us("immucore.service", "ExecMainExitTimestampMonotonic");
    let active = b.unit_us("immucore.service", "ActiveEnterTimestampMonotonic");
    let root_fs = b.unit_us("initrd-root-fs.target", "ActiveEnterTimestampMonotonic");
    let fs = b.unit_us("initrd-fs.target", "ActiveEnterTimestampMonotonic");
    assert!(
        exit > 0 && active >= exit,
        "immucore never finished: {}",
        b.console
    );
    assert!(
        active <= root_fs && root_fs <= fs,
        "immucore active at {active} µs, initrd-root-fs.target at {root_fs}, initrd-fs.target at {fs}"
    );
    assert_eq!(b.unit("sysroot.mount", "ActiveState"), "active");
    assert_eq!(
        b.units.get("sysroot-stack").map(String::as_str),
        Some("1"),
        "{}",
        b.console
    );
    assert!(
        b.has("immucore: root assembled on /sysroot"),
        "{}",
        b.console
    );
}

/// Kernel uptime (s) when the final root's first program printed its first line.
fn init_start(b: &Boot, key: &str) -> f64 {
    b.one(key).split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn dracut_boot_layout_and_persistence() {
    let _one = serial();
    let disk = kairos_disk("persist");
    let cmdline = format!("{ACTIVE} {NO_SHELL}");

    let b = boot(&disk, &cmdline, 240);
    b.completed();
    assert_initrd_order(&b);
    assert_eq!(b.one("image"), "active");
    let root = b.mount("/");
    assert!(
        root.contains("/dev/loop") && root.contains(" ro"),
        "root: {root}"
    );
    for p in ["/etc", "/var", "/srv"] {
        let m = b.mount(p);
        assert!(
            m.contains(" overlay ")
                && m.contains(&format!("upperdir=/run/overlay/{}/.overlay/upper", &p[1..])),
            "{p}: {m}"
        );
    }
    assert!(b.mount("/usr/local").contains("/dev/vda4 ext4 rw"));
    assert!(b.mount("/oem").contains("/dev/vda1 ext4"));
    assert!(b
        .mount("/run/initramfs/cos-state")
        .contains("/dev/vda3 ext4 ro"));
    for p in [
        "/home",
        "/root",
        "/opt",
        "/var/log",
        "/etc/ssh",
        "/usr/libexec",
    ] {
        assert!(
            b.mount(p).contains("/dev/vda4 ext4 rw"),
            "{p}: persistent bind missing"
        );
    }
    assert!(
        b.all("sentinel")
            .iter()
            .any(|l| l.starts_with("active_mode 1")),
        "{:?}",
        b.all("sentinel")
    );
    let fstab = b.all("fstab");
    for want in [
        "/dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0",
        "/dev/disk/by-label/COS_PERSISTENT /usr/local ext4 rw 0 0",
        "/dev/disk/by-label/COS_OEM /oem ext4 rw 0 0",
        "/usr/local/.state/etc-ssh.bind /etc/ssh none bind 0 0",
    ] {
        assert!(
            fstab.iter().any(|l| l == want),
            "fstab lacks '{want}': {fstab:#?}"
        );
    }
    assert_eq!(b.one("log-exists"), "/run/immucore/immucore.log yes");
    assert_eq!(b.one("bootcount"), "1");
    assert!(b.all("writable").iter().any(|l| l == "/ no"));
    eprintln!(
        "dracut boot 1: wall {:.1} s, final init at {:.2} s kernel time, immucore ran {:.2} s .. {:.2} s",
        b.wall_s,
        init_start(&b, "init-start"),
        b.unit_us("immucore.service", "ExecMainStartTimestampMonotonic") as f64 / 1e6,
        b.unit_us("immucore.service", "ExecMainExitTimestampMonotonic") as f64 / 1e6,
    );

    // Second boot of the same disk: what the first wrote on the persistent paths is there.
    let b = boot(&disk, &cmdline, 240);
    b.completed();
    assert_initrd_order(&b);
    assert_eq!(b.one("bootcount"), "2");
    for m in [
        "/usr/local/marker",
        "/var/log/marker",
        "/home/marker",
        "/root/marker",
        "/etc/ssh/marker",
    ] {
        assert!(
            b.all("persist")
                .iter()
                .any(|l| l == &format!("{m} present")),
            "{m} lost: {:?}",
            b.all("persist")
        );
    }
    // ... and what went to the ephemeral overlays is gone.
    for m in ["/etc/marker", "/var/marker", "/srv/marker"] {
        assert!(
            b.all("persist").iter().any(|l| l == &format!("{m} absent")),
            "{m} kept: {:?}",
            b.all("persist")
        );
    }
    eprintln!(
        "dracut boot 2: wall {:.1} s, final init at {:.2} s",
        b.wall_s,
        init_start(&b, "init-start")
    );
}

#[test]
fn dracut_failure_is_visible_and_ends_the_vm() {
    let _one = serial();
    let disk = kairos_disk("fail");
    // No cos-img/filename=: immucore cannot know the image, exits 1.
    let b = boot(
        &disk,
        &format!("root=LABEL=COS_ACTIVE rd.cos.oemlabel=COS_OEM {NO_SHELL}"),
        180,
    );
    assert!(
        !b.reports.contains_key("end"),
        "the test root ran after a failed immucore:\n{}",
        b.console
    );
    assert!(
        b.has("IMMUCORE BOOT FAILED"),
        "no failure summary:\n{}",
        b.console
    );
    assert!(b.has("could not get the image name"), "{}", b.console);
    // systemd says so on the console, and initrd.target fails with it
    assert!(
        b.console
            .lines()
            .any(|l| l.contains("FAILED") && l.contains("immucore")),
        "no [FAILED] line for immucore.service:\n{}",
        b.console
    );
    assert!(b.has("Dependency failed for"), "{}", b.console);
    if !b.units.is_empty() {
        assert_eq!(b.unit("immucore.service", "Result"), "exit-code");
        assert_eq!(b.unit("immucore.service", "ExecMainStatus"), "1");
    }
    // rd.emergency=poweroff: dracut's emergency handler ends the VM (no hang, no shell)
    assert!(b.has("Boot has failed"), "{}", b.console);
    assert!(
        b.has("reboot: Power down"),
        "the VM did not power off:\n{}",
        b.console
    );
    eprintln!("dracut failure boot: wall {:.1} s", b.wall_s);
}

#[test]
fn dracut_debian_root_with_systemd() {
    let _one = serial();
    preconditions();
    let disk = scratch().join("disk-debian.img");
    script("qemu/dracut/mkdisk-debian", &[disk.to_str().unwrap()]);
    let b = boot(&disk, &format!("{ACTIVE} {NO_SHELL}"), 300);
    b.completed();
    assert_initrd_order(&b);
    assert_eq!(b.one("pid1"), "systemd");
    assert!(
        b.one("image").starts_with("debian Debian GNU/Linux"),
        "{}",
        b.one("image")
    );
    // systemd accepted immucore's fstab and mounts: no failed unit at all
    assert_eq!(
        b.one("failed-count"),
        "0",
        "failed units: {:#?}",
        b.all("failed")
    );
    for u in [
        "-.mount",
        "etc.mount",
        "var.mount",
        "usr-local.mount",
        "oem.mount",
        "home.mount",
    ] {
        assert!(
            b.all("mount-unit")
                .iter()
                .any(|l| l.starts_with(&format!("{u} "))
                    && l.contains("active")
                    && l.contains("mounted")),
            "{u} not active: {:#?}",
            b.all("mount-unit")
        );
    }
    let root = b.mount("/");
    assert!(
        root.contains("/dev/loop") && root.contains(" ro"),
        "root: {root}"
    );
    assert!(
        b.all("sentinel")
            .iter()
            .any(|l| l.starts_with("active_mode 1")),
        "{:?}",
        b.all("sentinel")
    );
    assert_eq!(b.one("log-exists"), "/run/immucore/immucore.log yes");
    assert!(b
        .all("fstab")
        .iter()
        .any(|l| l == "/dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0"));
    let ts: Vec<u64> = b
        .one("userspace")
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    eprintln!(
        "dracut Debian boot: wall {:.1} s, systemd in the initrd at {:.2} s, switch-root to the Debian systemd at {:.2} s, report at {:.2} s",
        b.wall_s,
        ts[0] as f64 / 1e6,
        ts[1] as f64 / 1e6,
        init_start(&b, "report-start")
    );
}
