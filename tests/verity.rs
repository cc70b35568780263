//! dm-verity over the root image (issue 15), on the host: sidecars made with `veritysetup
//! format` on the state partition of a disk copy, then immucore boots it in a private mount
//! namespace. Each refusal has its own message. Where the host kernel has device-mapper
//! (`/dev/mapper/control`), the verified boot itself is checked too; without it, the boot
//! reaches the ioctls and says device-mapper is missing. The QEMU matrix (`tests/boot_matrix.rs`
//! `verity`, `verity_corruption`) covers the mapped root, EIO on a changed block, a wrong
//! root hash and a damaged tree on real kernels.

mod common;

use common::*;
use std::path::Path;

const ACTIVE: &str =
    "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM";
const PASSIVE: &str =
    "root=LABEL=COS_PASSIVE cos-img/filename=/cOS/passive.img rd.cos.oemlabel=COS_OEM";

/// Runs `script` in `cOS/` of the disk's state partition, mounted read-write for it.
fn on_state(disk: &Disk, script: &str) {
    let dir = tempdir();
    sh(&format!(
        "mount {p} {d} && cd {d}/cOS && {{ {script}; }}; rc=$?; cd /; umount {d}; exit $rc",
        p = disk.part("state"),
        d = dir.display()
    ));
    let _ = std::fs::remove_dir(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = scratch().join(format!("verity-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `veritysetup format` of `image` with both sidecars. 1 KiB blocks, as the test images' ext4.
fn sidecars(image: &str) -> String {
    format!(
        "veritysetup format --data-block-size=1024 --hash-block-size=1024 {image} \
         {image}.verity --root-hash-file {image}.roothash >/dev/null"
    )
}

fn boot_with(name: &str, cmdline: &str, edit: &str) -> Outcome {
    let t = Bench::new(name);
    let disk = t.attach(&standard_disk());
    on_state(&disk, edit);
    t.boot(&Boot {
        cmdline,
        ..Default::default()
    })
}

fn refused(name: &str, cmdline: &str, edit: &str, reason: &str) {
    let o = boot_with(name, cmdline, edit);
    o.expect_code(1);
    o.expect_stderr("IMMUCORE BOOT FAILED");
    o.expect_stderr(&format!("Reason: mount-root: {reason}"));
    assert!(
        o.mount_at(&o.sysroot).is_none(),
        "a root got mounted\n{}",
        o.dump()
    );
    let leaked = loop_devices_on_images();
    assert!(
        leaked.is_empty(),
        "loop devices left: {leaked:?}\n{}",
        o.dump()
    );
}

fn have_device_mapper() -> bool {
    Path::new("/dev/mapper/control").exists()
}

/// Sidecars next to the image, the root hash from `<image>.roothash`: verified (or, without
/// device-mapper on this host, the boot gets as far as creating the device).
#[test]
fn sidecars_verify_the_root() {
    let o = boot_with("verity-ok", ACTIVE, &sidecars("active.img"));
    if have_device_mapper() {
        o.expect_code(0);
        let root = o.mount_at(&o.sysroot).expect("no root");
        assert_eq!(root.source, "/dev/mapper/root", "{}", o.dump());
        assert!(root.has_opt("ro"), "{}", o.dump());
        o.expect_stderr("with the root hash from /cOS/active.img.roothash");
    } else {
        o.expect_code(1);
        o.expect_stderr("cannot create /dev/mapper/root for /cOS/active.img");
    }
}

/// The tree appended to the image (`--hash-offset`, right after the filesystem), no
/// `<image>.verity`: found and read the same way.
#[test]
fn appended_tree_is_found_after_the_filesystem() {
    let edit = "size=$(stat -c %s active.img) && veritysetup format --data-block-size=1024 \
                --hash-block-size=1024 --hash-offset=$size active.img active.img \
                --root-hash-file active.img.roothash >/dev/null";
    let o = boot_with("verity-appended", ACTIVE, edit);
    if have_device_mapper() {
        o.expect_code(0);
        assert_eq!(
            o.mount_at(&o.sysroot).expect("no root").source,
            "/dev/mapper/root"
        );
    } else {
        o.expect_code(1);
        o.expect_stderr("cannot create /dev/mapper/root for /cOS/active.img");
    }
}

#[test]
fn required_without_a_root_hash_is_fatal() {
    refused(
        "verity-required",
        &format!("{PASSIVE} rd.immucore.verity=required"),
        "true",
        "rd.immucore.verity=required, but /cOS/passive.img has no root hash (roothash= or /cOS/passive.img.roothash)",
    );
}

#[test]
fn root_hash_without_a_tree_is_fatal() {
    refused(
        "verity-no-tree",
        ACTIVE,
        &format!("{} && rm active.img.verity", sidecars("active.img")),
        "/cOS/active.img: no hash tree (/cOS/active.img.verity missing, none appended to the image)",
    );
}

/// The passive image is verified the same way, with its own sidecars.
#[test]
fn damaged_superblock_is_fatal() {
    let edit = format!(
        "{} && printf '\\002' | dd of=passive.img.verity bs=1 seek=8 conv=notrunc status=none",
        sidecars("passive.img")
    );
    refused(
        "verity-bad-sb",
        PASSIVE,
        &edit,
        "/cOS/passive.img.verity: damaged verity superblock (unknown superblock version)",
    );
}

#[test]
fn tree_without_a_superblock_is_fatal() {
    let edit = format!(
        "{} && dd if=/dev/zero of=active.img.verity bs=512 count=1 conv=notrunc status=none",
        sidecars("active.img")
    );
    refused(
        "verity-no-sb",
        ACTIVE,
        &edit,
        "/cOS/active.img.verity: no verity superblock",
    );
}

#[test]
fn malformed_root_hashes_are_fatal() {
    let edit = sidecars("active.img");
    refused(
        "verity-hash-hex",
        &format!("{ACTIVE} roothash=not-hex"),
        &edit,
        "root hash from roothash= is not a hex root hash",
    );
    refused(
        "verity-hash-len",
        ACTIVE,
        &format!("{edit} && echo abcd > active.img.roothash"),
        "root hash from /cOS/active.img.roothash has the wrong length for the image's hash algorithm",
    );
}

#[test]
fn unsupported_options_are_fatal() {
    refused(
        "verity-options",
        &format!("{ACTIVE} systemd.verity_root_options=restart-on-corruption,fec-roots=2"),
        &sidecars("active.img"),
        "systemd.verity_root_options=: fec-roots=2 is not supported",
    );
}

/// Without a root hash (`auto`), or with `off`, the image is mounted from its loop device, and
/// the log says it is not verified.
#[test]
fn unverified_roots_are_named_in_the_log() {
    let o = boot_with("verity-auto", ACTIVE, "true");
    o.expect_code(0);
    o.expect_stderr("/cOS/active.img: not verified (no roothash= or /cOS/active.img.roothash)");
    let root = o.mount_at(&o.sysroot).expect("no root");
    assert!(root.source.starts_with("/dev/loop"), "{}", o.dump());

    let o = boot_with(
        "verity-off",
        &format!("{ACTIVE} rd.immucore.verity=off"),
        &sidecars("active.img"),
    );
    o.expect_code(0);
    o.expect_stderr("/cOS/active.img: not verified (rd.immucore.verity=off)");
}

#[test]
fn debugrw_and_verity_are_refused_together() {
    refused(
        "verity-debugrw",
        &format!("{ACTIVE} rd.immucore.debugrw"),
        &sidecars("active.img"),
        "/cOS/active.img: dm-verity needs a read-only root; drop rd.immucore.debugrw",
    );
}
