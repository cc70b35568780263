//! OCI archives (`root=bootc-live:`, the `oci` feature of the full profile), with archives made
//! by the real tools (tests/oci/mkimages: umoci, skopeo, tar):
//! - on the host, `immucore oci-unpack` in a private mount namespace into a tmpfs, compared
//!   with `umoci unpack`'s tree (paths, types, modes, owners, link counts, contents, link
//!   targets, device numbers, xattrs, mtimes: tests/oci/dumptree), and the bad archives
//!   refused with their clear errors, nothing written outside the tree;
//! - QEMU boots of the full binary (x86_64, aarch64, armv7): an archive appended to the
//!   initramfs as a second initrd, and one on a partition; the guest's listing against the
//!   image's, `/` read-only and `/etc` `/var` writable, and the `rw` / `etc.rw=0` / `var.rw=0`
//!   variants, `bootclabel=` and a multi-arch index; on x86_64 an archive embedded by
//!   scripts/immucore-mkinitramfs, and the dracut test's Debian systemd root packed as an OCI
//!   archive (tests/oci/mkdebianoci) booting with 0 failed units.
//!
//! Needs root, umoci and skopeo (scripts/test installs them), and the full binaries that
//! scripts/test builds (target/profile-full/<triple>/release/immucore).

mod kit;
mod serial;

use kit::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn scratch() -> PathBuf {
    kit::scratch_dir("oci")
}

/// The Go name of a kit arch (OCI's `platform.architecture`).
fn go_arch(arch: &str) -> &'static str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7" => "arm",
        "riscv64" => "riscv64",
        _ => panic!("unknown arch {arch}"),
    }
}

/// The test archives of `arch` (its busybox inside), made once.
fn images(arch: &str) -> PathBuf {
    static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let out = scratch().join(format!("images-{arch}"));
    if made.iter().any(|a| a == arch) {
        return out;
    }
    let busybox = repo().join("qemu/cache").join(arch).join("busybox");
    assert!(
        busybox.exists(),
        "{} missing: run qemu/setup {arch}",
        busybox.display()
    );
    let status = Command::new(repo().join("tests/oci/mkimages"))
        .args([out.as_os_str(), busybox.as_os_str(), go_arch(arch).as_ref()])
        .status()
        .expect("run tests/oci/mkimages");
    assert!(status.success(), "tests/oci/mkimages failed");
    made.push(arch.to_string());
    out
}

fn dump(dir: &Path) -> String {
    let out = Command::new(repo().join("tests/oci/dumptree"))
        .arg(dir)
        .output()
        .expect("run dumptree");
    assert!(out.status.success(), "dumptree {}", dir.display());
    String::from_utf8(out.stdout).unwrap()
}

/// What `oci-unpack` did in a private mount namespace, into a fresh tmpfs of `size`.
struct Unpacked {
    ok: bool,
    log: String,
    tree: String,
}

fn unpack(name: &str, archive: &Path, tag: &str, size: &str) -> Unpacked {
    let bin = full_binary("x86_64");
    assert_built(&bin);
    let target = scratch().join(format!("tree-{name}"));
    std::fs::create_dir_all(&target).unwrap();
    let script = r#"mount -t tmpfs -o "size=$4" oci-test "$2" || exit 99
"$5" oci-unpack "$1" "$2" --tag "$3"; rc=$?
"$6" "$2" >"$2.dump" || exit 98
exit $rc"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(archive)
        .arg(&target)
        .args([tag, size])
        .arg(&bin)
        .arg(repo().join("tests/oci/dumptree"))
        .output()
        .expect("run unshare");
    let code = out.status.code();
    assert!(
        code != Some(99) && code != Some(98),
        "mount or dump failed: {out:?}"
    );
    let tree = std::fs::read_to_string(target.with_extension("dump")).unwrap();
    Unpacked {
        ok: out.status.success(),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
        tree,
    }
}

#[test]
fn host_unpack_matches_umoci() {
    let images = images("x86_64");
    let all = images.join("all.oci");
    for (archive, tag, expected) in [
        (&all, "derived", "derived"),
        (&all, "latest", "derived"),
        (&all, "base", "base"),
        (&all, "multi", "derived"),
        (&images.join("plain.oci"), "latest", "derived"),
        (&images.join("zstd.oci"), "latest", "derived"),
        (&images.join("chunked.oci"), "latest", "derived"),
    ] {
        let name = archive.file_stem().unwrap().to_str().unwrap();
        let u = unpack(&format!("host-{name}-{tag}"), archive, tag, "64m");
        assert!(u.ok, "{} {tag}: {}", archive.display(), u.log);
        let want = dump(&images.join("expected").join(expected));
        assert_eq!(
            u.tree,
            want,
            "{} {tag}: not umoci's tree\n{}",
            archive.display(),
            u.log
        );
        assert!(
            u.log.contains("unpacked") && u.log.contains("peak memory"),
            "{}",
            u.log
        );
    }
}

#[test]
fn bad_archives_are_refused_naming_what_is_wrong() {
    let images = images("x86_64");
    let bad = images.join("bad");
    let outside = Path::new("/tmp/immucore-oci-outside");
    let _ = std::fs::remove_dir_all(outside);
    std::fs::create_dir_all(outside).unwrap();

    let u = unpack("corrupt", &bad.join("corrupt.oci"), "latest", "64m");
    assert!(
        !u.ok && u.log.contains("does not match its digest (corrupted)"),
        "{}",
        u.log
    );
    assert!(
        u.log.contains("blob sha256:") && u.log.contains("layer.v1.tar+gzip"),
        "{}",
        u.log
    );
    assert!(
        !u.tree.contains("bin/busybox"),
        "a corrupted layer was applied:\n{}",
        u.tree
    );

    let u = unpack("no-tag", &images.join("all.oci"), "v9", "64m");
    assert!(!u.ok, "{}", u.log);
    assert!(
        u.log
            .contains("no image tagged v9 in the archive (tags: base, derived, latest, multi)"),
        "{}",
        u.log
    );

    let bad_oci = bad.join("bad.oci");
    let u = unpack("truncated", &bad_oci, "truncated", "64m");
    assert!(
        !u.ok
            && u.log
                .contains("entry second: the stream ends inside a member (truncated)"),
        "{}",
        u.log
    );

    let u = unpack("bomb", &bad_oci, "bomb", "16m");
    assert!(
        !u.ok
            && u.log
                .contains("the target is full (bootc.live.size= makes it larger)"),
        "{}",
        u.log
    );

    // `..`, absolute names and a symlink to `/` land inside the tree.
    let u = unpack("escape", &bad_oci, "escape", "64m");
    assert!(u.ok, "{}", u.log);
    for inside in ["dotdot-escape ", "abs-escape ", "through-rel ", "out-rel "] {
        assert!(
            u.tree.lines().any(|l| l.starts_with(inside)),
            "{inside}missing:\n{}",
            u.tree
        );
    }
    // A symlink to a host directory, a hardlink to a host file: refused.
    let u = unpack("escape-symlink", &bad_oci, "escape-symlink", "64m");
    assert!(
        !u.ok
            && u.log
                .contains("entry out-abs/through-abs: cannot make the directory out-abs"),
        "{}",
        u.log
    );
    let u = unpack("escape-hardlink", &bad_oci, "escape-hardlink", "64m");
    assert!(
        !u.ok
            && u.log
                .contains("entry hard-out: hardlink target missing: etc/passwd"),
        "{}",
        u.log
    );

    let written: Vec<_> = std::fs::read_dir(outside).unwrap().collect();
    assert!(written.is_empty(), "written outside the tree: {written:?}");
    for escaped in [
        "/tmp/dotdot-escape",
        "/abs-escape",
        "/through-rel",
        "/through-abs",
    ] {
        assert!(
            !Path::new(escaped).exists(),
            "{escaped} written outside the tree"
        );
    }
    let _ = std::fs::remove_dir_all(outside);
}

// ---- QEMU boots ----

/// The expected guest listing of an image tree: what the test init prints for each path
/// (`stat -c '%n %f %u %g %h'` and `readlink`), without the API filesystems' directories.
fn listing(tree: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut lines = Vec::new();
    let mut stack = vec![PathBuf::from(".")];
    while let Some(rel) = stack.pop() {
        if ["./proc", "./sys", "./dev", "./run"].contains(&rel.to_str().unwrap()) {
            continue;
        }
        let full = tree.join(&rel);
        let m = std::fs::symlink_metadata(&full).unwrap();
        let link = std::fs::read_link(&full)
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let line = format!(
            "{} {:x} {} {} {} {link}",
            rel.display(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink()
        );
        lines.push(line.trim_end().to_string());
        if m.is_dir() {
            for e in std::fs::read_dir(&full).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
    }
    lines.sort();
    lines
}

struct Guest {
    console: String,
}

impl Guest {
    fn lines(&self, prefix: &str) -> Vec<String> {
        self.console
            .lines()
            .filter_map(|l| {
                l.find(prefix)
                    .map(|at| l[at + prefix.len()..].trim_end().to_string())
            })
            .collect()
    }

    fn says(&self, what: &str) -> bool {
        self.lines("OCI-ROOT: ").iter().any(|l| l == what)
    }

    #[track_caller]
    fn assert_says(&self, whats: &[&str]) {
        for what in whats {
            assert!(
                self.says(what),
                "the guest did not say '{what}':\n{}",
                self.console
            );
        }
    }
}

/// The tiny initramfs with the full binary, and `archive` appended as a second cpio at
/// `/<name>`, as a bootloader loads a second initrd.
fn initramfs(arch: &str, archive: Option<(&Path, &str)>) -> PathBuf {
    let dir = scratch();
    let base = dir.join(format!("initrd-{arch}.cpio.gz"));
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if !built.contains(&base) {
            let bin = full_binary(arch);
            assert_built(&bin);
            kit(
                "mkinitramfs",
                &[arch, bin.to_str().unwrap(), base.to_str().unwrap()],
            );
            built.push(base.clone());
        }
    }
    let Some((archive, name)) = archive else {
        return base;
    };
    let stage = dir.join(format!("stage-{arch}-{}", name.replace('/', "-")));
    let _ = std::fs::remove_dir_all(&stage);
    let inner = stage.join(name.trim_start_matches('/'));
    std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
    std::fs::copy(archive, &inner).unwrap();
    // Compressed as bootc-live's rootfs.img: the kernel unpacks concatenated gzip cpios.
    let cpio = stage.with_extension("cpio.gz");
    let list = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0 | gzip -1 >\"$2\"")
        .args(["sh", stage.to_str().unwrap(), cpio.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(list.success(), "cpio of {}", archive.display());
    let both = stage.with_extension("initrd");
    let mut bytes = std::fs::read(&base).unwrap();
    bytes.extend(std::fs::read(&cpio).unwrap());
    std::fs::write(&both, bytes).unwrap();
    both
}

/// An ext4 disk labelled IMAGES holding `archive` at `/oci/all.oci` (or an empty one), as
/// `disk-<name>.img` (each test its own name: the tests of a file run in parallel).
fn disk(name: &str, archive: Option<&Path>) -> PathBuf {
    let dir = scratch().join(format!("disk-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("oci")).unwrap();
    if let Some(archive) = archive {
        std::fs::copy(archive, dir.join("oci/all.oci")).unwrap();
    }
    let img = scratch().join(format!("disk-{name}.img"));
    let _ = std::fs::remove_file(&img);
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-L", "IMAGES", "-d"])
        .arg(&dir)
        .arg(&img)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success(), "mkfs.ext4");
    img
}

fn boot(arch: &str, disk: &Path, initrd: &Path, cmdline: &str) -> Guest {
    // One log per boot: the tests of this file boot in parallel.
    static BOOTS: AtomicUsize = AtomicUsize::new(0);
    let n = BOOTS.fetch_add(1, Ordering::Relaxed);
    let serial = scratch().join(format!("serial-{arch}-{}-{n}.log", std::process::id()));
    let status = Command::new(repo().join("qemu/boot"))
        .args([
            arch,
            disk.to_str().unwrap(),
            initrd.to_str().unwrap(),
            serial.to_str().unwrap(),
        ])
        .args([
            "--append",
            &format!("{cmdline} rd.emergency=poweroff"),
            "--timeout",
            "240",
        ])
        .status()
        .expect("run qemu/boot");
    let console = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    assert_ne!(status.code(), Some(124), "{arch}: the VM hung:\n{console}");
    Guest { console }
}

fn boots(arch: &str) {
    let images = images(arch);
    let all = images.join("all.oci");
    let empty = disk(arch, None);

    // The archive appended as a second initrd; the default tag (latest = derived); / read-only,
    // /etc and /var writable; the guest sees exactly the image.
    let initrd = initramfs(arch, Some((&all, "/root.oci")));
    let g = boot(arch, &empty, &initrd, "root=bootc-live:/root.oci");
    g.assert_says(&[
        "booted derived",
        "/ read-only",
        "/etc writable",
        "/var writable",
        "done",
    ]);
    assert!(
        g.console.contains("deleted /root.oci from the initramfs"),
        "{arch}: the archive was not deleted:\n{}",
        g.console
    );
    let seen = g.lines("OCI-LIST: ");
    assert_eq!(
        seen,
        listing(&images.join("expected/derived")),
        "{arch}: the guest's tree:\n{}",
        g.console
    );

    // bootclabel= picks the base image; bootc.live.var.rw=0 really makes /var read-only.
    let g = boot(
        arch,
        &empty,
        &initrd,
        "root=bootc-live:/root.oci bootclabel=base bootc.live.var.rw=0",
    );
    g.assert_says(&[
        "booted base",
        "/ read-only",
        "/etc writable",
        "/var read-only",
        "done",
    ]);
    assert_eq!(
        g.lines("OCI-LIST: "),
        listing(&images.join("expected/base")),
        "{arch}:\n{}",
        g.console
    );

    // skopeo's archive with uncompressed layers, in a directory; rw, with /etc and /var
    // read-only.
    let plain = initramfs(arch, Some((&images.join("plain.oci"), "/images/plain.oci")));
    let cmdline = "root=bootc-live:/images/plain.oci rw bootc.live.etc.rw=0 bootc.live.var.rw=0";
    let g = boot(arch, &empty, &plain, cmdline);
    g.assert_says(&[
        "booted derived",
        "/ writable",
        "/etc read-only",
        "/var read-only",
        "done",
    ]);

    // The archive on a partition; the multi-arch index resolved to this arch's image.
    let on_disk = disk(arch, Some(&all));
    let cmdline = "root=bootc-live:LABEL=IMAGES:/oci/all.oci bootclabel=multi";
    let g = boot(arch, &on_disk, &initramfs(arch, None), cmdline);
    g.assert_says(&[
        "booted derived",
        "/ read-only",
        "/etc writable",
        "/var writable",
        "done",
    ]);
}

#[test]
fn boots_x86_64() {
    boots("x86_64");
}

#[test]
fn boots_aarch64() {
    boots("aarch64");
}

#[test]
fn boots_armv7() {
    boots("armv7");
}

// ---- A real systemd root ----

/// The dracut test's Debian root (qemu/dracut/mkdebianroot: debootstrap minbase with systemd
/// and its report unit) packed as an OCI archive by umoci and tar (tests/oci/mkdebianoci,
/// cached), appended as a second initrd and booted with the default tag: systemd reaches its
/// target with no failed unit on the image's tree bound read-only, `/etc` and `/var` writable.
#[test]
fn debian_systemd_x86_64() {
    let arch = "x86_64";
    let started = std::time::Instant::now();
    let out = Command::new(repo().join("tests/oci/mkdebianoci"))
        .output()
        .expect("run tests/oci/mkdebianoci");
    assert!(
        out.status.success(),
        "tests/oci/mkdebianoci failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let initrd = initramfs(arch, Some((&archive, "/debian.oci")));
    let made_s = started.elapsed().as_secs_f64();
    let empty = disk(&format!("{arch}-debian"), None);
    let serial = scratch().join(format!("serial-{arch}-debian.log"));
    let booted = std::time::Instant::now();
    let status = Command::new(repo().join("qemu/boot"))
        .args([
            arch,
            empty.to_str().unwrap(),
            initrd.to_str().unwrap(),
            serial.to_str().unwrap(),
        ])
        // The tree lives in RAM (the tmpfs' default limit is 75% of it): ~180 MiB of files,
        // the ~65 MiB archive until it is deleted.
        .args([
            "--append",
            "root=bootc-live:/debian.oci rd.emergency=poweroff",
            "--timeout",
            "360",
            "--mem",
            "1536",
        ])
        .status()
        .expect("run qemu/boot");
    let boot_s = booted.elapsed().as_secs_f64();
    let b = serial::Console::parse(&std::fs::read(&serial).unwrap_or_default());
    assert_ne!(status.code(), Some(124), "the VM hung:\n{}", b.console);
    assert!(
        b.reports.contains_key("end"),
        "the Debian root did not finish its report; console:\n{}",
        b.console
    );
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
    let mount = |mountpoint: &str| -> String {
        b.all("mount")
            .iter()
            .find(|l| l.split(' ').next() == Some(mountpoint))
            .unwrap_or_else(|| panic!("{mountpoint} not mounted: {:#?}", b.all("mount")))
            .clone()
    };
    // `/` is the tree's tmpfs bound read-only; /etc and /var its directories bound read-write.
    let root = mount("/");
    assert!(root.starts_with("/ bootc-live tmpfs ro,"), "/: {root}");
    for dir in ["/etc", "/var"] {
        let m = mount(dir);
        assert!(
            m.starts_with(&format!("{dir} bootc-live[{dir}] tmpfs rw,")),
            "{dir}: {m}\nconsole:\n{}",
            b.console
        );
    }
    assert_eq!(b.one("sentinel"), "live_mode 1");
    assert!(
        b.console.contains("deleted /debian.oci from the initramfs"),
        "the archive was not deleted:\n{}",
        b.console
    );
    let unpacked = b
        .console
        .lines()
        .find(|l| l.contains("unpacked 1 layers"))
        .unwrap_or_else(|| panic!("no unpack summary:\n{}", b.console));
    let systemd_us: u64 = b
        .one("userspace")
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("userspace: {}", b.one("userspace")));
    eprintln!(
        "{arch}: Debian systemd root as an OCI archive ({} MiB, inputs ready in {made_s:.1} s): \
         {}; /init at {} s, systemd at {:.2} s, report at {} s; VM wall time {boot_s:.1} s",
        std::fs::metadata(&archive)
            .map(|m| m.len() >> 20)
            .unwrap_or(0),
        unpacked.trim(),
        b.one("run-init"),
        systemd_us as f64 / 1e6,
        b.one("report-start"),
    );
}

/// The archive embedded in the initramfs by the user-facing builder (`scripts/immucore-mkinitramfs
/// -p ARCHIVE:PATH`, the board builder's payload), not appended: the guest sees the image, `/`
/// read-only, `/etc` and `/var` writable, and the archive is deleted from the initramfs.
#[test]
fn embedded_x86_64() {
    let arch = "x86_64";
    let images = images(arch);
    let bin = full_binary(arch);
    assert_built(&bin);
    let initrd = scratch().join(format!("initrd-{arch}-embedded.cpio.gz"));
    let payload = format!("{}:/images/root.oci", images.join("all.oci").display());
    let status = Command::new(repo().join("scripts/immucore-mkinitramfs"))
        .args(["-b", bin.to_str().unwrap(), "-p", &payload, "-o"])
        .arg(&initrd)
        .status()
        .expect("run scripts/immucore-mkinitramfs");
    assert!(status.success(), "scripts/immucore-mkinitramfs failed");
    let g = boot(
        arch,
        &disk(&format!("{arch}-embedded"), None),
        &initrd,
        "root=bootc-live:/images/root.oci",
    );
    g.assert_says(&[
        "booted derived",
        "/ read-only",
        "/etc writable",
        "/var writable",
        "done",
    ]);
    assert!(
        g.console
            .contains("deleted /images/root.oci from the initramfs"),
        "the archive was not deleted:\n{}",
        g.console
    );
    assert_eq!(
        g.lines("OCI-LIST: "),
        listing(&images.join("expected/derived")),
        "the guest's tree:\n{}",
        g.console
    );
}
