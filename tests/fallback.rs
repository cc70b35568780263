//! Image fallback (`rd.immucore.fallback`, README "Failure handling, watchdog and fallback"),
//! on the host: real disks, real loop devices and mounts in a private mount namespace, images
//! broken each way the fallback covers (missing, truncated, not a filesystem, the wrong label,
//! failing to mount). The QEMU boots (`tests/failsafe.rs`: `fallback_*`) check the same on
//! real kernels of three arches, as PID 1.

mod common;

use common::*;

const ACTIVE: &str =
    "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM";
const FALLBACK: &str = "rd.immucore.fallback";

/// Shell for `Boot::before`: runs `cmd` in the root of partition `name`, mounted read-write.
fn on_partition(disk: &Disk, name: &str, cmd: &str) -> String {
    format!(
        "mkdir -p $W/edit && mount {} $W/edit && ( cd $W/edit && {cmd} ) && umount $W/edit",
        disk.part(name)
    )
}

/// What the checks after a boot print: the sysroot's image name, the sentinels, the fallback
/// note, the fstab.
const CHECKS: &[&str] = &[
    "cat $S/etc/image-name",
    "ls /run/cos",
    "cat /run/cos/fallback",
    "cat $S/etc/fstab",
];

/// Boots `cmdline` on the standard disk after `edits` (partition, shell) changed it.
fn boot(name: &str, cmdline: &str, edits: &[(&str, &str)]) -> Outcome {
    let t = Bench::new(name);
    let disk = t.attach(&standard_disk());
    let before: Vec<String> = edits
        .iter()
        .map(|(part, cmd)| on_partition(&disk, part, cmd))
        .collect();
    let before = before.join(" && ");
    let o = t.boot(&Boot {
        cmdline,
        before: &before,
        checks: CHECKS,
        ..Default::default()
    });
    drop(disk);
    let leaked = loop_devices_on_images();
    assert!(
        leaked.is_empty(),
        "loop devices left: {leaked:?}\n{}",
        o.dump()
    );
    o
}

/// `booted` came up in place of `wanted` (a fallback of the `rd.immucore.fallback` line): its
/// root, its sentinel alone, the note, the warning, the fstab. Returns the note.
#[track_caller]
fn assert_fell_back(o: &Outcome, wanted: (&str, &str), booted: (&str, &str)) -> String {
    o.expect_code(0);
    assert_eq!(o.ok(0).trim(), booted.0, "{}", o.dump());
    let sentinels: Vec<&str> = o.ok(1).lines().collect();
    assert_eq!(
        sentinels,
        ["cos-layout.env", "fallback", &format!("{}_mode", booted.0)],
        "{}",
        o.dump()
    );
    let note = o.ok(2).to_string();
    let head = format!(
        "wanted={}\nwanted_image={}\nbooted={}\nbooted_image={}\nreason=",
        wanted.0, wanted.1, booted.0, booted.1
    );
    assert!(note.starts_with(&head), "{note}\n{}", o.dump());
    assert_eq!(note.lines().count(), 5, "{note}");
    o.expect_stderr(&format!(
        "warning: FALLBACK: the {} image {} cannot be used (",
        wanted.0, wanted.1
    ));
    o.expect_stderr(&format!(
        "); booting the {} image {} instead",
        booted.0, booted.1
    ));
    note
}

/// The root's fstab line and the images partition's.
#[track_caller]
fn assert_fstab(o: &Outcome, root_label: &str, images_label: &str) {
    let fstab = o.ok(3);
    assert!(
        fstab.contains(&format!("/dev/disk/by-label/{root_label} / ext4 ro 0 0")),
        "{fstab}"
    );
    assert!(
        fstab.contains(&format!(
            "/dev/disk/by-label/{images_label} /run/initramfs/cos-state ext4 ro 0 0"
        )),
        "{fstab}"
    );
    assert_eq!(
        fstab.matches("/run/initramfs/cos-state").count(),
        1,
        "{fstab}"
    );
}

#[test]
fn not_a_filesystem_boots_passive() {
    let edit = (
        "state",
        "head -c 1M /dev/zero | tr '\\0' x > cOS/active.img",
    );
    let o = boot("fallback-noise", &format!("{ACTIVE} {FALLBACK}"), &[edit]);
    let note = assert_fell_back(
        &o,
        ("active", "/cOS/active.img"),
        ("passive", "/cOS/passive.img"),
    );
    assert!(
        note.contains(
            "reason=/cOS/active.img: discover-state: /cOS/active.img is not a filesystem image"
        ),
        "{note}"
    );
    assert_fstab(&o, "COS_PASSIVE", "COS_STATE");
    // The passive state's layout: its volumes and persistent binds.
    assert_eq!(o.root_mount("/usr/local").fstype, "ext4", "{}", o.dump());
    assert!(o.mount_at(&o.in_root("/etc/ssh")).is_some(), "{}", o.dump());
}

/// Without `rd.immucore.fallback`, the same disk stops the boot as it always did.
#[test]
fn without_the_flag_the_same_disk_fails() {
    let edit = (
        "state",
        "head -c 1M /dev/zero | tr '\\0' x > cOS/active.img",
    );
    let o = boot("fallback-off", ACTIVE, &[edit]);
    o.expect_code(1);
    o.expect_stderr("Reason: discover-state: /cOS/active.img is not a filesystem image");
    assert!(!o.stderr.contains("fallback"), "{}", o.dump());
    assert!(o.mount_at(&o.sysroot).is_none(), "{}", o.dump());
    assert_eq!(o.ok(1).trim(), "active_mode");
}

#[test]
fn truncated_wrongly_labelled_or_unmountable_active_boots_passive() {
    let cases = [
        (
            "truncate -s 4M cOS/active.img",
            "/cOS/active.img is truncated",
        ),
        (
            "e2label cOS/active.img COS_OTHER",
            "carries the label 'COS_OTHER', expected 'COS_ACTIVE'",
        ),
        // Group descriptors overwritten: the probe still sees ext4, mount(2) refuses it.
        (
            "dd if=/dev/zero of=cOS/active.img bs=1024 seek=2 count=2 conv=notrunc status=none",
            "mount-root: mounting /dev/loop",
        ),
        ("rm cOS/active.img", "cannot open image /cOS/active.img"),
    ];
    for (i, (edit, why)) in cases.into_iter().enumerate() {
        let o = boot(
            &format!("fallback-active-{i}"),
            &format!("{ACTIVE} {FALLBACK}"),
            &[("state", edit)],
        );
        let note = assert_fell_back(
            &o,
            ("active", "/cOS/active.img"),
            ("passive", "/cOS/passive.img"),
        );
        assert!(note.contains(why), "{edit}: {note}");
        assert_fstab(&o, "COS_PASSIVE", "COS_STATE");
    }
}

/// Active and passive both unusable: recovery, from the other partition, with recovery's
/// layout (no volumes, no persistent binds).
#[test]
fn active_and_passive_broken_boot_recovery() {
    let edit = (
        "state",
        "rm cOS/active.img && truncate -s 0 cOS/passive.img",
    );
    let o = boot(
        "fallback-recovery",
        &format!("{ACTIVE} {FALLBACK}"),
        &[edit],
    );
    let note = assert_fell_back(
        &o,
        ("active", "/cOS/active.img"),
        ("recovery", "/cOS/recovery.img"),
    );
    let reason = note.lines().last().unwrap();
    assert!(
        reason.contains("/cOS/active.img: discover-state: cannot open image /cOS/active.img")
            && reason.contains(
                "; /cOS/passive.img: discover-state: /cOS/passive.img is not a filesystem image"
            ),
        "{reason}"
    );
    assert_fstab(&o, "COS_SYSTEM", "COS_RECOVERY");
    // Recovery's layout: no persistent volume, no persistent binds.
    let fstab = o.ok(3);
    assert!(
        !fstab.contains("COS_PERSISTENT") && !fstab.contains(" none bind "),
        "{fstab}"
    );
    assert!(o.mount_at(&o.in_root("/etc/ssh")).is_none(), "{}", o.dump());
}

/// A passive boot falls back to recovery.
#[test]
fn passive_falls_back_to_recovery() {
    let passive = ACTIVE
        .replace("COS_ACTIVE", "COS_PASSIVE")
        .replace("active.img", "passive.img");
    let o = boot(
        "fallback-passive",
        &format!("{passive} {FALLBACK}"),
        &[("state", "truncate -s 1M cOS/passive.img")],
    );
    assert_fell_back(
        &o,
        ("passive", "/cOS/passive.img"),
        ("recovery", "/cOS/recovery.img"),
    );
    assert_fstab(&o, "COS_SYSTEM", "COS_RECOVERY");
}

/// Nothing usable: the boot fails naming every image and why, and leaves no loop device.
#[test]
fn no_usable_image_fails_naming_each() {
    let o = boot(
        "fallback-none",
        &format!("{ACTIVE} {FALLBACK}"),
        &[
            ("state", "rm cOS/active.img cOS/passive.img"),
            ("recovery", "truncate -s 1M cOS/recovery.img"),
        ],
    );
    o.expect_code(1);
    o.expect_stderr("Reason: discover-state: no usable image (rd.immucore.fallback tried each in turn): /cOS/active.img: ");
    for image in [
        "/cOS/passive.img cannot be used",
        "/cOS/recovery.img cannot be used",
        "/cOS/recovery.squashfs cannot be used",
    ] {
        o.expect_stderr(&format!("warning: fallback: {image}"));
    }
    assert!(o.mount_at(&o.sysroot).is_none(), "{}", o.dump());
    assert!(!o.stderr.contains("FALLBACK:"), "{}", o.dump());
}
