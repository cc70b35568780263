//! The board builder's initramfs tool, `scripts/immucore-mkinitramfs` (installed as
//! `/usr/bin/immucore-mkinitramfs` by the package), on every kernel of the QEMU kit: from the
//! kernel's modules directory after `depmod`, with the presets, it must list every module after
//! what it needs (modules.dep, modules.softdep), ship exactly the files it lists, skip built-in
//! modules, keep the distribution's compression (Debian 13's `.ko.xz`), and refuse clearly what
//! cannot work. One of these images boots (x86_64 on Debian 13's 6.12 kernel).
//!
//! The expectations are computed here from the kernel's own depmod output, not taken from the
//! tool. Needs `qemu/setup` for every arch and the default release binaries (`scripts/test`).

mod kit;
mod serial;

use kit::{default_binary, repo, scratch_dir};
use serial::Console;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every kernel of the kit: Debian 12's 6.1 (.ko) and Debian 13's 6.12 (.ko.xz).
const KERNELS: &[&str] = &[
    "x86_64",
    "aarch64",
    "armv7",
    "x86_64-6.12",
    "aarch64-6.12",
    "armv7-6.12",
    "riscv64",
];
/// What a board with a disk, an SD card or a USB stick needs, and every filesystem and
/// device-mapper target immucore mounts.
const PRESETS: &str = "virtio,pc-storage,usb-storage,immucore,verity,live";

fn builder() -> PathBuf {
    repo().join("scripts/immucore-mkinitramfs")
}

fn kmoddir(arch: &str) -> PathBuf {
    let cache = repo().join("qemu/cache").join(arch);
    let kver = std::fs::read_to_string(cache.join("kver"))
        .unwrap_or_else(|_| panic!("no kernel for {arch}: run qemu/setup {arch}"));
    cache.join("root/lib/modules").join(kver.trim())
}

fn build(args: &[&str]) -> Output {
    Command::new(builder())
        .args(args)
        .output()
        .expect("run immucore-mkinitramfs")
}

fn build_ok(args: &[&str]) -> String {
    let out = build(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} failed:\n{stderr}");
    stderr
}

fn build_refused(args: &[&str], message: &str) {
    let out = build(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded:\n{stderr}");
    assert!(
        stderr.contains(message),
        "{args:?}: the error does not say '{message}':\n{stderr}"
    );
}

/// `cpio -t` and one member's content of an uncompressed cpio archive.
fn cpio_list(archive: &[u8]) -> Vec<String> {
    cpio(&["-t", "--quiet"], archive)
        .lines()
        .map(str::to_string)
        .collect()
}

fn cpio_member(archive: &[u8], member: &str) -> String {
    cpio(&["-i", "--quiet", "--to-stdout", member], archive)
}

fn cpio(args: &[&str], archive: &[u8]) -> String {
    let mut child = Command::new("cpio")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run cpio");
    let mut stdin = child.stdin.take().unwrap();
    let data = archive.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "cpio {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The archive unpacked into `dir` (emptied first).
fn unpack(archive: &[u8], dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut child = Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run cpio");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), archive).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "cpio -i in {}",
        dir.display()
    );
    dir.to_path_buf()
}

fn decompress(tool: &str, file: &Path) -> Vec<u8> {
    let out = Command::new(tool).arg("-dc").arg(file).output().unwrap();
    assert!(out.status.success(), "{tool} -dc {}", file.display());
    out.stdout
}

/// A module's name as modprobe spells it: file name without `.ko[.xz]`, `-` as `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The kernel's depmod output: module name -> (path, the names it needs), and the built-ins.
struct Depmod {
    modules: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
}

fn depmod_output(dir: &Path) -> Depmod {
    let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap();
    let modules = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(path, deps)| {
            let needs = deps.split_whitespace().map(module_name).collect();
            (module_name(path), (path.to_string(), needs))
        })
        .collect();
    let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap()
        .lines()
        .map(module_name)
        .collect();
    Depmod { modules, builtin }
}

/// depmod on the kit's unpacked kernel package, as a board builder runs it on theirs.
fn run_depmod(arch: &str) {
    let dir = kmoddir(arch);
    let kver = dir.file_name().unwrap().to_str().unwrap();
    let root = repo().join("qemu/cache").join(arch).join("root");
    let status = Command::new("depmod")
        .arg("-b")
        .arg(&root)
        .arg("-F")
        .arg(root.join(format!("boot/System.map-{kver}")))
        .arg(kver)
        .status()
        .expect("run depmod");
    assert!(status.success(), "depmod for {arch}");
}

#[test]
fn builds_for_every_test_kernel() {
    let dir = scratch_dir("mkinitramfs");
    let mut sizes = Vec::new();
    for &arch in KERNELS {
        run_depmod(arch);
        let kdir = kmoddir(arch);
        let kver = kdir.file_name().unwrap().to_str().unwrap();
        let depmod = depmod_output(&kdir);
        let bin = default_binary(arch);
        kit::assert_built(&bin);
        let presets = if arch.starts_with("x86_64") {
            PRESETS.to_string()
        } else {
            format!("{PRESETS},arm-sdmmc")
        };
        let out = dir.join(format!("{arch}.cpio.gz"));
        let notes = build_ok(&[
            "-b",
            bin.to_str().unwrap(),
            "-k",
            kdir.to_str().unwrap(),
            "-m",
            &presets,
            "-o",
            out.to_str().unwrap(),
        ]);
        let archive = decompress("gzip", &out);
        let members = cpio_list(&archive);
        let unpacked = unpack(&archive, &dir.join(arch));
        for m in [
            "init",
            "dev/console",
            "etc/immucore/modules",
            "proc",
            "sys",
            "run",
            "sysroot",
            "tmp",
        ] {
            assert!(members.iter().any(|x| x == m), "{arch}: no {m}");
        }
        let list: Vec<String> = cpio_member(&archive, "etc/immucore/modules")
            .lines()
            .map(str::to_string)
            .collect();
        let position: HashMap<String, usize> = list
            .iter()
            .enumerate()
            .map(|(i, p)| (module_name(p), i))
            .collect();
        assert_eq!(position.len(), list.len(), "{arch}: a module listed twice");

        // Every listed module is the kernel's file, shipped as the kernel has it, after every
        // module it needs.
        for (i, path) in list.iter().enumerate() {
            let name = module_name(path);
            let (dep_path, needs) = depmod
                .modules
                .get(&name)
                .unwrap_or_else(|| panic!("{arch}: {path} is not in modules.dep"));
            assert_eq!(dep_path, path, "{arch}");
            for need in needs {
                assert!(
                    position.get(need).is_some_and(|&j| j < i),
                    "{arch}: {name} is listed before {need}, which it needs: {list:#?}"
                );
            }
            let member = format!("lib/modules/{kver}/{path}");
            assert!(members.contains(&member), "{arch}: {member} not shipped");
            assert!(
                std::fs::read(unpacked.join(&member)).unwrap()
                    == std::fs::read(kdir.join(path)).unwrap(),
                "{arch}: {member} is not the kernel's {path}"
            );
        }
        // ... and nothing else is shipped.
        let shipped_modules = members
            .iter()
            .filter(|m| m.contains(".ko"))
            .collect::<Vec<_>>();
        assert_eq!(
            shipped_modules.len(),
            list.len(),
            "{arch}: {shipped_modules:#?}"
        );

        // What the presets ask for is there, or built into the kernel (and said so).
        for want in [
            "virtio_blk",
            "virtio_pci",
            "ahci",
            "nvme",
            "sd_mod",
            "usb_storage",
            "uas",
            "loop",
            "ext4",
            "overlay",
            "dm_mod",
            "dm_verity",
            "squashfs",
            "erofs",
            "isofs",
        ] {
            if depmod.builtin.contains(want) {
                assert!(
                    notes.contains(&format!("{want}: built into the kernel")),
                    "{arch}: no note for the built-in {want}:\n{notes}"
                );
            } else {
                assert!(position.contains_key(want), "{arch}: no {want}: {list:#?}");
            }
        }
        // The soft dependency (ext4 and jbd2: pre: crypto-crc32c) comes first, as the generic
        // implementation, which loads on every CPU.
        let crc = position["crc32c_generic"];
        assert!(
            crc < position["jbd2"] && crc < position["ext4"],
            "{arch}: {list:#?}"
        );
        if arch.ends_with("6.12") || arch == "riscv64" {
            assert!(
                list.iter().all(|p| p.ends_with(".ko.xz")),
                "{arch}: Debian 13 ships .ko.xz: {list:#?}"
            );
        }
        let size = std::fs::metadata(&out).unwrap().len();
        sizes.push(format!("{arch}: {} modules, {size} bytes", list.len()));
    }
    eprintln!("initramfs with {PRESETS} (+arm-sdmmc on arm, riscv64): {sizes:#?}");
}

#[test]
fn refuses_what_cannot_work() {
    let dir = scratch_dir("mkinitramfs");
    let kdir = kmoddir("x86_64");
    let k = kdir.to_str().unwrap();
    let bin = default_binary("x86_64");
    let b = bin.to_str().unwrap();
    let out = dir.join("refused.cpio.gz");
    let o = out.to_str().unwrap();
    build_refused(
        &["-b", b, "-k", k, "-m", "virtio,no_such_module", "-o", o],
        &format!("module no_such_module: not in {k}/modules.dep"),
    );
    // A preset member the kernel lacks is an error unless the preset marks it optional.
    build_refused(
        &["-b", b, "-k", k, "-m", "sdhci_pltfm", "-o", o],
        "module sdhci_pltfm: not in",
    );
    let arm = default_binary("aarch64");
    kit::assert_built(&arm);
    build_refused(
        &[
            "-b",
            arm.to_str().unwrap(),
            "-k",
            k,
            "-m",
            "immucore",
            "-o",
            o,
        ],
        &format!("is built for aarch64, but the kernel modules in {k} are x86_64"),
    );
    build_refused(
        &["-b", b, "-k", dir.to_str().unwrap(), "-m", "ext4", "-o", o],
        "no modules.dep in",
    );
    build_refused(&["-b", b, "-m", "ext4", "-o", o], "no --kmoddir");
    let text = dir.join("not-a-payload");
    std::fs::write(&text, "hello\n").unwrap();
    build_refused(
        &[
            "-b",
            b,
            "-p",
            &format!("{}:/root.img", text.display()),
            "-o",
            o,
        ],
        "neither a squashfs image nor an OCI image archive",
    );
    build_refused(
        &["-b", b, "-p", &format!("{}:/../x", text.display()), "-o", o],
        "is not a path inside the initramfs",
    );
    build_refused(&["-b", b, "-c", "lz4", "-o", o], "--compress lz4");
    build_refused(
        &["-b", "/nonexistent", "-o", o],
        "no immucore binary at /nonexistent",
    );
    assert!(!out.exists(), "a refused build left {}", out.display());
}

/// zstd and xz give the same archive as gzip; the layout file and a squashfs payload land where
/// asked.
#[test]
fn compressions_layout_and_payload() {
    let dir = scratch_dir("mkinitramfs");
    let kdir = kmoddir("x86_64-6.12");
    let bin = default_binary("x86_64");
    kit::assert_built(&bin);
    let layout = dir.join("layout.env");
    std::fs::write(&layout, "VOLUMES=\"LABEL=COS_OEM:/oem\"\n").unwrap();
    let tree = dir.join("payload-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello"), "payload\n").unwrap();
    let squashfs = dir.join("payload.squashfs");
    let _ = std::fs::remove_file(&squashfs);
    let st = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&squashfs)
        .args(["-quiet", "-no-progress", "-noappend", "-all-root"])
        .status()
        .expect("run mksquashfs");
    assert!(st.success());
    let mut lists = Vec::new();
    for (kind, tool) in [("gzip", "gzip"), ("zstd", "zstd"), ("xz", "xz")] {
        let out = dir.join(format!("payload.cpio.{kind}"));
        build_ok(&[
            "-b",
            bin.to_str().unwrap(),
            "-k",
            kdir.to_str().unwrap(),
            "-m",
            "virtio,immucore",
            "-l",
            layout.to_str().unwrap(),
            "-p",
            &format!("{}:/run/rootfs.squashfs", squashfs.display()),
            "-c",
            kind,
            "-o",
            out.to_str().unwrap(),
        ]);
        let archive = decompress(tool, &out);
        assert_eq!(
            cpio_member(&archive, "etc/immucore/layout.env"),
            "VOLUMES=\"LABEL=COS_OEM:/oem\"\n"
        );
        let unpacked = unpack(&archive, &dir.join(format!("payload-{kind}")));
        assert_eq!(
            std::fs::read(unpacked.join("run/rootfs.squashfs")).unwrap(),
            std::fs::read(&squashfs).unwrap()
        );
        eprintln!(
            "x86_64-6.12 virtio,immucore + payload, {kind}: {} bytes",
            std::fs::metadata(&out).unwrap().len()
        );
        lists.push(cpio_list(&archive));
    }
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0], lists[2]);
}

/// An initramfs the tool built from Debian 13's kernel (.ko.xz, virtio built in) boots the
/// Kairos test disk.
#[test]
fn built_initramfs_boots() {
    let arch = "x86_64-6.12";
    let dir = scratch_dir("mkinitramfs");
    let bin = default_binary(arch);
    kit::assert_built(&bin);
    let initrd = dir.join("boot-x86_64-6.12.cpio.zst");
    build_ok(&[
        "-b",
        bin.to_str().unwrap(),
        "-k",
        kmoddir(arch).to_str().unwrap(),
        "-m",
        "virtio,immucore",
        "-c",
        "zstd",
        "-o",
        initrd.to_str().unwrap(),
    ]);
    let disk = dir.join("disk-x86_64-6.12.img");
    kit::kit("mkdisk", &[arch, disk.to_str().unwrap()]);
    let serial = dir.join("serial-x86_64-6.12.log");
    let status = Command::new(repo().join("qemu/boot"))
        .args([
            arch,
            disk.to_str().unwrap(),
            initrd.to_str().unwrap(),
            serial.to_str().unwrap(),
            "--append",
            "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM",
            "--timeout",
            "150",
        ])
        .status()
        .expect("run qemu/boot");
    let b = Console::parse(&std::fs::read(&serial).unwrap_or_default());
    assert_ne!(status.code(), Some(124), "the VM hung:\n{}", b.console);
    assert!(b.reports.contains_key("end"), "no report:\n{}", b.console);
    assert_eq!(b.one("image"), "active");
    assert!(
        b.all("mount")
            .iter()
            .any(|m| m.starts_with("/ /dev/loop") && m.contains(" ro")),
        "{:#?}",
        b.all("mount")
    );
    // virtio_mmio virtio_blk loop crc32c_generic jbd2 mbcache crc16 ext4 overlay (virtio_pci
    // is built in), each as .ko.xz, all loaded (the kernel log the test root reports)
    assert!(
        b.all("kmsg")
            .iter()
            .any(|l| l.contains("loaded 9 modules, 0 failed")),
        "{:#?}",
        b.all("kmsg")
    );
}
