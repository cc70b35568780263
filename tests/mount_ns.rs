//! Real-mount integration tests: immucore boots GPT disks on loop devices into a scratch sysroot,
//! each run in its own mount namespace with a fresh tmpfs on /run. Needs root; runs serially.
//! See tests/common/mod.rs for the machinery.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const ACTIVE: &str =
    "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM";

fn dash(p: &str) -> String {
    p.trim_start_matches('/').replace('/', "-")
}

/// `/etc` → an overlay with lower `<sysroot>/etc` and upper in `/run/overlay/etc/.overlay`.
#[track_caller]
fn assert_overlays(o: &Outcome, paths: &[&str]) {
    for p in paths {
        let m = o.root_mount(p);
        let opts = format!(
            "lowerdir={},upperdir=/run/overlay/{d}/.overlay/upper,workdir=/run/overlay/{d}/.overlay/work",
            o.in_root(p),
            d = dash(p)
        );
        assert!(
            m.fstype == "overlay" && m.super_opts.contains(&opts) && m.has_opt("rw"),
            "{p}: not the expected overlay ({opts}): {m:?}\n{}",
            o.dump()
        );
    }
}

/// `/etc/ssh` → bind of `/.state/etc-ssh.bind` of the persistent partition.
#[track_caller]
fn assert_binds(o: &Outcome, disk: &Disk, paths: &[&str]) {
    for p in paths {
        let m = o.root_mount(p);
        assert!(
            m.source == disk.part("persistent") && m.root == format!("/.state/{}.bind", dash(p)),
            "{p}: not a bind of the persistent store: {m:?}\n{}",
            o.dump()
        );
    }
}

#[track_caller]
fn assert_no_binds(o: &Outcome) {
    let binds: Vec<_> = o
        .mounts
        .iter()
        .filter(|m| m.root.contains(".bind"))
        .collect();
    assert!(
        binds.is_empty(),
        "unexpected bind mounts {binds:?}\n{}",
        o.dump()
    );
}

/// `/dev/loopN` (a whole loop device, as the root image gets; partitions are `/dev/loopNpK`).
fn is_image_loop(dev: &str) -> bool {
    dev.strip_prefix("/dev/loop")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

/// The root: a read-only loop device (not a partition), holding the image named `name`.
#[track_caller]
fn assert_root(o: &Outcome, name: &str, image_name_check: &str) {
    let m = o.root_mount("/");
    assert!(
        is_image_loop(&m.source) && m.has_opt("ro"),
        "root is not a read-only loop device: {m:?}\n{}",
        o.dump()
    );
    assert_eq!(
        image_name_check,
        format!("{name}\n"),
        "wrong image on the root\n{}",
        o.dump()
    );
}

/// `duration_ms` of a boot-timeline.json line.
fn duration_ms(line: &str) -> Option<u64> {
    line.split("\"duration_ms\": ")
        .nth(1)?
        .split([',', '}'])
        .next()?
        .parse()
        .ok()
}

/// Loop devices still attached to an image file of the state partition (leaked by a failed
/// boot: the partition's label/image would then exist twice for the next boot).
fn leaked_image_loops() -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let leaked: Vec<String> = std::fs::read_dir("/sys/block")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let b = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
                b.contains("/cOS/")
                    .then(|| format!("{} -> {}", e.file_name().to_string_lossy(), b.trim()))
            })
            .collect();
        if leaked.is_empty() || Instant::now() > end {
            return leaked;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Active boot

#[test]
fn active_boot_mounts_the_whole_layout() {
    let t = Bench::new("active");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &[
            "touch $S/x",
            "for d in etc var srv; do echo w > $S/$d/written && cat $S/$d/written \
             && test -f /run/overlay/$d/.overlay/upper/written; done",
            "cat /run/cos/active_mode",
            "cat $S/etc/fstab",
            "cat $S/etc/image-name",
            "echo w > $S/usr/local/written && cat $S/usr/local/written",
            "cat $S/oem/oem-marker",
            "stat -c %a $S/srv /run/overlay/srv/.overlay/upper",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    assert_root(&o, "active", o.ok(4));
    assert!(o.fails(0).contains("Read-only file system"), "{}", o.dump());
    assert_eq!(o.ok(1), "w\nw\nw\n");
    assert_overlays(&o, &["/etc", "/var", "/srv"]);
    let local = o.root_mount("/usr/local");
    assert!(
        local.source == disk.part("persistent") && local.has_opt("rw") && local.root == "/",
        "{local:?}"
    );
    assert_eq!(o.ok(5), "w\n");
    assert_eq!(o.root_mount("/oem").source, disk.part("oem"));
    assert_eq!(o.ok(6), "oem\n");
    assert_eq!(
        o.ok(7),
        "750\n750\n",
        "the overlay upper did not take the mode of the lower /srv"
    );
    let state = o
        .mount_at("/run/initramfs/cos-state")
        .expect("images partition not mounted");
    assert!(
        state.source == disk.part("state") && state.has_opt("ro"),
        "{state:?}"
    );
    assert_binds(
        &o,
        &disk,
        &[
            "/etc/ssh",
            "/var/log",
            "/home",
            "/usr/libexec",
            "/var/lib/kairos",
        ],
    );
    assert_eq!(o.ok(2), "1", "sentinel content");
    for s in ["passive_mode", "recovery_mode", "autoreset_mode"] {
        assert!(
            !o.run_files.contains(&format!("/run/cos/{s}")),
            "stray sentinel {s}"
        );
    }

    // fstab: every entry in step order, exactly (volumes after the overlays), then the binds.
    let fstab = o.ok(3);
    let lines: Vec<&str> = fstab.lines().collect();
    let s = &o.sysroot;
    let overlay = |p: &str| {
        format!(
            "overlay /{p} overlay lowerdir={s}/{p},upperdir=/run/overlay/{p}/.overlay/upper,\
             workdir=/run/overlay/{p}/.overlay/work 0 0"
        )
    };
    let (var, etc, srv) = (overlay("var"), overlay("etc"), overlay("srv"));
    assert_eq!(
        lines[..9],
        [
            "tmpfs /tmp tmpfs rw 0 0",
            "/dev/disk/by-label/COS_STATE /run/initramfs/cos-state ext4 ro 0 0",
            "/dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0",
            "/dev/disk/by-label/COS_OEM /oem ext4 rw 0 0",
            "tmpfs /run/overlay tmpfs size=25% 0 0",
            var.as_str(),
            etc.as_str(),
            srv.as_str(),
            "/dev/disk/by-label/COS_PERSISTENT /usr/local ext4 rw 0 0",
        ],
        "fstab:\n{fstab}"
    );
    assert!(
        lines.contains(&"/usr/local/.state/etc-ssh.bind /etc/ssh none bind 0 0"),
        "{fstab}"
    );
    let binds: Vec<_> = o
        .mounts
        .iter()
        .filter(|m| m.root.starts_with("/.state/"))
        .collect();
    for m in &binds {
        let l = format!(
            "/usr/local{} {} none bind 0 0",
            m.root,
            &m.target[s.len()..]
        );
        assert!(lines.contains(&l.as_str()), "fstab lacks {l}:\n{fstab}");
    }
    assert_eq!(
        lines.len(),
        9 + binds.len(),
        "fstab has extra lines:\n{fstab}"
    );

    assert!(o.log.contains("mount-root"), "immucore.log: {}", o.log);
    assert!(
        o.timeline.trim_start().starts_with('[') && o.timeline.contains("\"name\": \"mount-root\"")
    );
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
    let ms: Vec<u64> = o.timeline.lines().filter_map(duration_ms).collect();
    assert!(
        ms.len() >= 10 && ms.windows(2).all(|w| w[0] >= w[1]),
        "timeline not slowest first:\n{}",
        o.timeline
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Persistent binds

#[test]
fn persistent_binds_keep_data_across_boots() {
    let t = Bench::new("persist");
    let disk = t.attach(&standard_disk());
    let first = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &[
            "cat $S/etc/ssh/sshd_config",
            "cat $S/usr/local/.state/etc-ssh.bind/sshd_config $S/usr/local/.state/var-log.bind/boot.log",
            "echo changed > $S/etc/ssh/sshd_config && echo new > $S/var/log/new.log \
             && echo eph > $S/etc/ephemeral && sync",
            "cd $S/usr/local/.state/etc-ssh.bind && stat -c '%n %a %F' ssh_host_key ssh_link sub \
             && readlink ssh_link && cat sub/f",
        ],
        ..Default::default()
    });
    first.expect_code(0);
    assert_eq!(first.ok(0), "hi\n");
    assert_eq!(first.ok(1), "hi\nlog1\n");
    assert_binds(&first, &disk, &["/etc/ssh", "/var/log"]);
    first.ok(2);
    assert_eq!(
        first.ok(3),
        "ssh_host_key 600 regular file\nssh_link 777 symbolic link\nsub 755 directory\nsshd_config\nsub\n",
        "copy-up lost modes, a symlink or a subdirectory"
    );
    // On the partition itself, read without mounting it.
    assert_eq!(
        disk.read("persistent", "/.state/etc-ssh.bind/sshd_config"),
        "changed\n"
    );
    assert_eq!(
        disk.read("persistent", "/.state/var-log.bind/new.log"),
        "new\n"
    );
    assert_eq!(
        disk.read("persistent", "/.state/var-log.bind/boot.log"),
        "log1\n"
    );

    let second = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &[
            "cat $S/etc/ssh/sshd_config",
            "cat $S/var/log/new.log $S/var/log/boot.log",
            "test -e $S/etc/ephemeral",
        ],
        ..Default::default()
    });
    second.expect_code(0);
    assert_eq!(
        second.ok(0),
        "changed\n",
        "the image's older file overwrote the store's newer one"
    );
    assert_eq!(second.ok(1), "new\nlog1\n");
    second.fails(2);
}

// ---------------------------------------------------------------------------------------------
// 3. Boot states

fn boot_state(
    name: &str,
    cmdline: &str,
    sentinel: &str,
    image: &str,
    images_part: &str,
    persistent: bool,
) {
    let t = Bench::new(name);
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline,
        checks: &[&format!("cat /run/cos/{sentinel}"), "cat $S/etc/image-name"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "1", "sentinel content");
    assert_root(&o, image, o.ok(1));
    assert_eq!(
        o.mount_at("/run/initramfs/cos-state")
            .map(|m| m.source.clone()),
        Some(disk.part(images_part))
    );
    let on_persistent: Vec<_> = o
        .mounts
        .iter()
        .filter(|m| m.source == disk.part("persistent"))
        .collect();
    if persistent {
        assert_overlays(&o, &["/etc", "/var", "/srv"]);
        assert_eq!(o.root_mount("/usr/local").source, disk.part("persistent"));
        assert_binds(&o, &disk, &["/etc/ssh", "/var/log"]);
    } else {
        // Recovery layout: only OVERLAY is set, so RW_PATHS takes upstream's default.
        assert!(
            on_persistent.is_empty(),
            "COS_PERSISTENT mounted in {name}: {on_persistent:?}"
        );
        assert_overlays(
            &o,
            &[
                "/etc",
                "/root",
                "/home",
                "/opt",
                "/srv",
                "/usr/local",
                "/var",
            ],
        );
        assert_no_binds(&o);
    }
    let others = [
        "active_mode",
        "passive_mode",
        "recovery_mode",
        "autoreset_mode",
    ];
    for s in others.iter().filter(|s| **s != sentinel) {
        assert!(
            !o.run_files.contains(&format!("/run/cos/{s}")),
            "stray sentinel {s}"
        );
    }
}

#[test]
fn passive_boot() {
    boot_state(
        "passive",
        "root=LABEL=COS_PASSIVE cos-img/filename=/cOS/passive.img",
        "passive_mode",
        "passive",
        "state",
        true,
    );
}

#[test]
fn recovery_boot() {
    let c = "root=LABEL=COS_SYSTEM cos-img/filename=/cOS/recovery.img";
    boot_state(
        "recovery",
        c,
        "recovery_mode",
        "recovery",
        "recovery",
        false,
    );
}

#[test]
fn autoreset_boot() {
    let c = "root=LABEL=COS_SYSTEM cos-img/filename=/cOS/recovery.img kairos.reset";
    boot_state(
        "autoreset",
        c,
        "autoreset_mode",
        "recovery",
        "recovery",
        false,
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Custom layout and extra volumes

fn data_disk() -> Vec<Part> {
    let mut d = standard_disk();
    d.push(part(
        "data",
        Fs {
            label: "DATA",
            mb: 8,
            nodes: vec![Node::File("/data-marker", "data")],
        },
    ));
    d
}

#[test]
fn custom_layout_from_config_dir() {
    let t = Bench::new("layout");
    let disk = t.attach(&data_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "# custom\nRW_PATHS=\"/var /etc /srv /home\"\nexport PERSISTENT_STATE_PATHS='/opt /var/lib/data'\n\
             VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local LABEL=DATA:/data\"\n",
        ),
        checks: &["cat /run/cos/cos-layout.env", "cat $S/data/data-marker", "cat $S/etc/fstab"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_overlays(&o, &["/var", "/etc", "/srv", "/home"]);
    assert_binds(&o, &disk, &["/opt", "/var/lib/data"]);
    assert!(
        o.mount_at(&o.in_root("/etc/ssh")).is_none(),
        "default binds applied despite the layout"
    );
    assert_eq!(o.root_mount("/data").source, disk.part("data"));
    assert_eq!(o.root_mount("/usr/local").source, disk.part("persistent"));
    assert_eq!(o.ok(1), "data\n");
    let env = o.ok(0);
    for l in [
        "RW_PATHS=\"/var /etc /srv /home\"",
        "PERSISTENT_STATE_PATHS=\"/opt /var/lib/data\"",
        "VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local LABEL=DATA:/data\"",
    ] {
        assert!(
            env.lines().any(|x| x == l),
            "cos-layout.env lacks {l}:\n{env}"
        );
    }
    assert!(
        o.ok(2)
            .lines()
            .any(|l| l == "/dev/disk/by-label/DATA /data ext4 rw 0 0"),
        "{}",
        o.ok(2)
    );
}

#[test]
fn extra_volume_from_cmdline() {
    let t = Bench::new("cmdline-mount");
    let disk = t.attach(&data_disk());
    let o = t.boot(&Boot {
        cmdline: &format!("{ACTIVE} rd.immucore.mount=LABEL=DATA:/data"),
        checks: &["cat $S/data/data-marker", "cat $S/etc/fstab"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.root_mount("/data").source, disk.part("data"));
    assert_eq!(o.ok(0), "data\n");
    assert_binds(&o, &disk, &["/etc/ssh"]);
    assert!(
        o.ok(1)
            .lines()
            .any(|l| l == "/dev/disk/by-label/DATA /data ext4 rw 0 0"),
        "{}",
        o.ok(1)
    );
}

/// PARTLABEL= (the GPT partition name) finds the partition without any filesystem label.
#[test]
fn extra_volume_by_gpt_partition_name() {
    let t = Bench::new("partlabel-mount");
    let disk = t.attach(&data_disk());
    let o = t.boot(&Boot {
        cmdline: &format!("{ACTIVE} rd.immucore.mount=PARTLABEL=data:/data"),
        checks: &["cat $S/data/data-marker", "cat $S/etc/fstab"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.root_mount("/data").source, disk.part("data"));
    assert_eq!(o.ok(0), "data\n");
    assert!(
        o.ok(1)
            .lines()
            .any(|l| l == "/dev/disk/by-partlabel/data /data ext4 rw 0 0"),
        "{}",
        o.ok(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Many block devices: every one is looked at (issue 12, item 1)

/// Labels on late partitions (85 to 98) of the 100-partition disk, each found.
const MANY: [&str; 14] = [
    "MANY01", "MANY02", "MANY03", "MANY04", "MANY05", "MANY06", "MANY07", "MANY08", "MANY09",
    "MANY10", "MANY11", "MANY12", "MANY13", "MANY14",
];
/// Labels carried twice: TWIN<k> by partitions k + 1 and 70 + k.
const TWINS: [&str; 8] = [
    "TWIN1", "TWIN2", "TWIN3", "TWIN4", "TWIN5", "TWIN6", "TWIN7", "TWIN8",
];

fn marked(label: &'static str) -> Fs {
    Fs {
        label,
        mb: 1,
        nodes: vec![Node::File("/marker", label)],
    }
}

/// With the standard disk and the host's devices, well over 64 block devices. The scan lists
/// them in kernfs (hash) order, so a table that kept the first 64 would miss some of 14 labels
/// or a copy of some of 8 twins on almost every run.
fn attach_many(t: &Bench) -> Disk {
    let mut filled: Vec<(usize, Fs)> = (85..).zip(MANY.map(marked)).collect();
    for (k, &twin) in (1..).zip(&TWINS) {
        filled.push((k + 1, marked(twin)));
        filled.push((70 + k, marked(twin)));
    }
    filled.push((100, marked("LAST")));
    let disk = t.attach_many(100, &filled);
    let devices = std::fs::read_dir("/sys/class/block").unwrap().count();
    assert!(devices > 100, "only {devices} block devices");
    disk
}

#[test]
fn labels_are_found_among_more_than_64_block_devices() {
    let t = Bench::new("many-devices");
    let _disk = t.attach(&standard_disk());
    let many = attach_many(&t);
    let volumes: String = MANY
        .iter()
        .enumerate()
        .map(|(i, label)| format!(" LABEL={label}:/var/many/{i}"))
        .collect();
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(&format!(
            "VOLUMES=\"PARTLABEL=p100:/var/many/last{volumes}\"\n"
        )),
        checks: &["cat $S/var/many/last/marker"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.step_error("custom-mount"), None, "{}", o.dump());
    for (i, n) in (85..).take(MANY.len()).enumerate() {
        let m = o.root_mount(&format!("/var/many/{i}"));
        assert_eq!(m.source, many.nth(n), "{}", o.dump());
    }
    assert_eq!(o.root_mount("/var/many/last").source, many.nth(100));
    assert_eq!(o.ok(0), "LAST\n");
}

#[test]
fn a_label_twice_among_more_than_64_block_devices_is_refused() {
    let t = Bench::new("many-twins");
    let _disk = t.attach(&standard_disk());
    let many = attach_many(&t);
    let volumes: String = TWINS
        .iter()
        .map(|twin| format!(" LABEL={twin}:/var/{twin}"))
        .collect();
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(&format!("VOLUMES=\"{}\"\n", volumes.trim_start())),
        ..Default::default()
    });
    for (k, twin) in (1..).zip(TWINS) {
        let (a, b) = (many.nth(k + 1), many.nth(70 + k));
        let line = |x: &str, y: &str| {
            format!(
                "LABEL={twin} is carried by two devices, {x} and {y}: refusing to guess which \
                 one to mount"
            )
        };
        assert!(
            o.stderr.contains(&line(&a, &b)) || o.stderr.contains(&line(&b, &a)),
            "{twin} not refused naming {a} and {b}\n{}",
            o.dump()
        );
        assert!(
            o.mount_at(&o.in_root(&format!("/var/{twin}"))).is_none(),
            "{twin} mounted\n{}",
            o.dump()
        );
    }
}

/// PARTLABEL= on a disk whose primary GPT header is destroyed: found through the backup header
/// at the end of the disk, as blkid (which added the partitions, `partx`) finds them (issue 12,
/// item 10).
#[test]
fn partition_name_from_the_backup_gpt_header() {
    let t = Bench::new("gpt-backup");
    let _disk = t.attach(&standard_disk());
    let second = t.attach_edited(
        "damaged.img",
        &[part("bkdata", marked_fs("BKDATA"))],
        |img| {
            // LBA 1, the primary header.
            sh(&format!(
                "dd if=/dev/zero of='{}' bs=512 seek=1 count=1 conv=notrunc status=none",
                img.display()
            ));
        },
    );
    let o = t.boot(&Boot {
        cmdline: &format!("{ACTIVE} rd.immucore.mount=PARTLABEL=bkdata:/data"),
        checks: &["cat $S/data/marker"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.root_mount("/data").source, second.part("bkdata"));
    assert_eq!(o.ok(0), "BKDATA\n");
}

fn marked_fs(label: &'static str) -> Fs {
    Fs {
        mb: 8,
        ..marked(label)
    }
}

/// A service manager's stop (SIGTERM) while immucore waits for a device: it stops between
/// steps, never inside a mount, says so, and exits 1 with the summary, well before the deadline.
#[test]
fn sigterm_stops_between_steps_and_reports() {
    let t = Bench::new("sigterm");
    let _disk = t.attach(&standard_disk());
    let start = std::time::Instant::now();
    let o = t.boot(&Boot {
        cmdline: &format!("{ACTIVE} rd.immucore.oemlabel=NO_SUCH_OEM rd.immucore.oemtimeout=30"),
        sigterm_after: Some("1"),
        ..Default::default()
    });
    assert!(start.elapsed().as_secs() < 20, "did not stop promptly");
    o.expect_code(1);
    assert!(
        o.stderr
            .contains("LABEL=NO_SUCH_OEM: stopped waiting, a stop signal (SIGTERM) arrived"),
        "{}",
        o.dump()
    );
    assert!(
        o.stderr
            .contains("not run: a stop signal (SIGTERM) arrived before this step"),
        "{}",
        o.dump()
    );
    assert!(o.stderr.contains("IMMUCORE BOOT FAILED"), "{}", o.dump());
    assert!(
        o.stderr
            .contains("Reason: stopped by a signal before all steps ran"),
        "{}",
        o.dump()
    );
    // What ran before the stop is complete: the root is mounted, read-only.
    assert!(o.root_mount("/").has_opt("ro"), "{}", o.dump());
}

// ---------------------------------------------------------------------------------------------
// 5. OEM

#[test]
fn no_oem_partition_and_no_label_is_fine() {
    let t = Bench::new("no-oem");
    let disk = t.attach(&without(standard_disk(), &["oem"]));
    let o = t.boot(&Boot {
        cmdline: "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img",
        ..Default::default()
    });
    o.expect_code(0);
    assert!(o.mount_at(&o.in_root("/oem")).is_none());
    assert_overlays(&o, &["/etc", "/var", "/srv"]);
    assert_binds(&o, &disk, &["/etc/ssh", "/var/log", "/home"]);
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
}

#[test]
fn missing_explicit_oem_fails_only_mount_oem() {
    let t = Bench::new("oem-timeout");
    let disk = t.attach(&without(standard_disk(), &["oem"]));
    let o = t.boot(&Boot {
        cmdline: &format!("{ACTIVE} rd.cos.oemtimeout=1"),
        checks: &["cat $S/etc/fstab"],
        ..Default::default()
    });
    o.expect_code(0);
    assert!(
        o.step_error("mount-oem").is_some(),
        "mount-oem not reported failed\n{}",
        o.dump()
    );
    assert!(
        o.log
            .lines()
            .any(|l| l.contains("mount-oem") && l.contains("failed")),
        "log: {}",
        o.log
    );
    let ms = o
        .timeline
        .lines()
        .find(|l| l.contains("\"mount-oem\""))
        .and_then(duration_ms)
        .unwrap();
    assert!(
        (900..4000).contains(&ms),
        "mount-oem waited {ms} ms with rd.cos.oemtimeout=1"
    );
    assert_overlays(&o, &["/etc", "/var", "/srv"]);
    assert_binds(&o, &disk, &["/etc/ssh", "/var/log"]);
    assert!(
        o.ok(0)
            .contains("/dev/disk/by-label/COS_PERSISTENT /usr/local"),
        "fstab not written"
    );
    for s in ["load-config", "overlay-mount", "mount-bind", "write-fstab"] {
        assert_eq!(o.step_error(s), None, "{s} failed or skipped\n{}", o.dump());
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Failures

/// Boots `parts` with `cmdline`, expects exit 1 with the failure summary and `needles` on stderr.
fn fatal(name: &str, parts: &[Part], cmdline: &str, needles: &[&str]) -> Outcome {
    let t = Bench::new(name);
    let disk = t.attach(parts);
    let o = t.boot(&Boot {
        cmdline,
        ..Default::default()
    });
    o.expect_code(1);
    o.expect_stderr("IMMUCORE BOOT FAILED");
    for n in needles {
        o.expect_stderr(&n.replace("{disk}", &disk.dev));
    }
    assert!(
        o.mount_at(&o.sysroot).is_none(),
        "a root got mounted\n{}",
        o.dump()
    );
    drop(disk);
    let leaked = leaked_image_loops();
    assert!(
        leaked.is_empty(),
        "loop devices left attached to images: {leaked:?}\n{}",
        o.dump()
    );
    o
}

fn failed_steps(o: &Outcome) -> String {
    o.stderr
        .lines()
        .find(|l| l.contains("Failed:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn missing_image_name_is_fatal() {
    let o = fatal(
        "no-image",
        &standard_disk(),
        "root=LABEL=COS_ACTIVE rd.cos.oemlabel=COS_OEM",
        &["cos-img/filename"],
    );
    assert!(failed_steps(&o).contains("mount-state"), "{}", o.dump());
}

#[test]
fn unknown_state_is_fatal() {
    fatal(
        "unknown",
        &standard_disk(),
        "root=LABEL=FOO cos-img/filename=/cOS/active.img",
        &["unknown", "root="],
    );
}

#[test]
fn image_that_is_not_a_filesystem_is_fatal() {
    let state = Fs {
        label: "COS_STATE",
        mb: 16,
        nodes: vec![Node::Noise("/cOS/active.img", 2 << 20)],
    };
    let o = fatal(
        "noise",
        &replace(standard_disk(), "state", state),
        ACTIVE,
        &["not a filesystem"],
    );
    assert!(failed_steps(&o).contains("discover-state"), "{}", o.dump());
}

#[test]
fn image_with_the_wrong_label_is_fatal() {
    let state = images_fs(
        "COS_STATE",
        vec![("/cOS/active.img", os_image("COS_PASSIVE", "active"))],
    );
    fatal(
        "wrong-label",
        &replace(standard_disk(), "state", state),
        ACTIVE,
        &["expected 'COS_ACTIVE'"],
    );
}

#[test]
fn duplicate_state_label_is_fatal_and_names_both() {
    let mut parts = standard_disk();
    parts.push(part("state2", standard_state()));
    // Partitions 3 and 5 of the disk are both COS_STATE.
    fatal(
        "dup-state",
        &parts,
        ACTIVE,
        &["{disk}p3", "{disk}p5", "COS_STATE"],
    );
}

#[test]
fn missing_persistent_skips_binds_loudly() {
    let t = Bench::new("no-persistent");
    let _disk = t.attach(&without(standard_disk(), &["persistent"]));
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &[
            "test -e $S/usr/local/.state",
            "find /run/overlay $S/usr/local -name '.state' -o -name '*.bind'",
            "cat $S/etc/fstab",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    let e = o.step_error("mount-bind").unwrap_or_default();
    assert!(
        e.contains("persistent binds skipped"),
        "mount-bind error {e:?}\n{}",
        o.dump()
    );
    assert!(o.log.contains("persistent binds skipped"), "log: {}", o.log);
    assert!(
        o.step_error("custom-mount").is_some(),
        "custom-mount not reported failed\n{}",
        o.dump()
    );
    assert_no_binds(&o);
    o.fails(0);
    assert_eq!(o.ok(1), "", "state dirs created in the image or overlay");
    let fstab = o.ok(2);
    assert!(
        fstab.contains("/dev/disk/by-label/COS_ACTIVE / "),
        "fstab not written: {fstab}"
    );
    assert!(
        !fstab.contains("COS_PERSISTENT") && !fstab.contains(" bind "),
        "fstab lists mounts not made: {fstab}"
    );
    assert_overlays(&o, &["/etc", "/var", "/srv"]);
}

/// System and configuration extensions of the boot state and `common/` are linked into
/// `/run/extensions` and `/run/confexts`, with targets valid after switch_root.
#[test]
fn sysext_and_confext_images_are_linked_for_the_boot_state() {
    let mut img = os_image("COS_ACTIVE", "active");
    img.nodes.extend([
        Node::File("/var/lib/kairos/extensions/active/tools.raw", "x"),
        Node::File("/var/lib/kairos/extensions/passive/old.raw", "x"),
        Node::File("/var/lib/kairos/extensions/common/base.raw", "x"),
        Node::File("/var/lib/kairos/extensions/common/notes.txt", "x"),
        Node::File("/var/lib/kairos/confexts/common/conf.raw", "x"),
    ]);
    let state = images_fs("COS_STATE", vec![("/cOS/active.img", img)]);
    let t = Bench::new("sysext");
    let _disk = t.attach(&replace(standard_disk(), "state", state));
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &[
            "for l in /run/extensions/* /run/confexts/*; do echo \"$l -> $(readlink $l)\"; done",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(
        o.ok(0),
        "/run/extensions/base.raw -> /var/lib/kairos/extensions/common/base.raw\n\
         /run/extensions/tools.raw -> /var/lib/kairos/extensions/active/tools.raw\n\
         /run/confexts/conf.raw -> /var/lib/kairos/confexts/common/conf.raw\n",
        "{}",
        o.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Symlinks in the image never send anything outside the sysroot

#[test]
fn image_symlinks_never_escape_the_sysroot() {
    let mut img = os_image("COS_ACTIVE", "active");
    img.nodes.retain(|n| {
        !["/home", "/etc/ssh", "/opt"]
            .iter()
            .any(|p| Path::new(n.path()).starts_with(p))
    });
    img.nodes.extend([
        // Followed inside the image, the absolute links lead to these (existing) directories.
        Node::Dir("/tmp/x"),
        Node::File("/outside/marker", "in"),
        Node::Link("/home", "/../../tmp/x"),
        Node::Link("/etc/ssh", "/../../../outside"),
        Node::Link("/opt", "../../../../outside"),
        Node::Link("/var/lib/data", "../../../../outside"),
    ]);
    let state = images_fs("COS_STATE", vec![("/cOS/active.img", img)]);
    let t = Bench::new("symlinks");
    // Followed from the host, the links lead here: these must never appear...
    let absent = ["/tmp/x", "/outside"];
    for p in absent {
        assert!(
            !Path::new(p).exists(),
            "{p} exists on the host before the test: remove it"
        );
    }
    // ...and these decoys (where the relative links lead from the host) must stay empty.
    let decoys: Vec<String> = [4, 2]
        .iter()
        .map(|n| {
            t.sysroot
                .ancestors()
                .nth(*n)
                .unwrap()
                .join("outside")
                .display()
                .to_string()
        })
        .collect();
    for d in &decoys {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    let disk = t.attach(&replace(standard_disk(), "state", state));
    let mut checks: Vec<String> = absent.iter().map(|p| format!("ls -la {p}")).collect();
    checks.extend(decoys.iter().map(|d| format!("ls -A {d}")));
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "RW_PATHS=\"/var /etc /srv /home\"\n\
             PERSISTENT_STATE_PATHS=\"/etc/ssh /opt /var/lib/data /home/user\"\n\
             VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n",
        ),
        checks: &checks,
        ..Default::default()
    });
    o.expect_code(0);
    for (i, p) in absent.iter().enumerate() {
        o.fails(i);
        assert!(
            !Path::new(p).exists(),
            "{p} created on the host\n{}",
            o.dump()
        );
    }
    for (i, d) in decoys.iter().enumerate() {
        assert_eq!(
            o.ok(absent.len() + i),
            "",
            "{d} written through a symlink\n{}",
            o.dump()
        );
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            0,
            "{d} written through a symlink"
        );
        std::fs::remove_dir(d).unwrap();
    }
    let allowed = |t: &str| {
        t == "/tmp"
            || t == "/run/overlay"
            || t == "/run/initramfs/cos-state"
            || Path::new(t).starts_with(&o.sysroot)
    };
    for m in &o.mounts {
        assert!(
            allowed(&m.target),
            "mount outside the sysroot: {m:?}\n{}",
            o.dump()
        );
        if m.fstype == "overlay" {
            let lower = m
                .super_opts
                .split(',')
                .find_map(|x| x.strip_prefix("lowerdir="))
                .unwrap_or("");
            assert!(
                Path::new(lower).starts_with(&o.sysroot),
                "overlay lower outside the sysroot: {m:?}"
            );
        }
        if m.source == disk.part("persistent") {
            assert!(
                m.root == "/" || m.root.starts_with("/.state/"),
                "bind of {} from the store",
                m.root
            );
        }
    }
    // The regular parts of the layout still happened.
    assert_overlays(&o, &["/etc", "/var", "/srv"]);
}

// ---------------------------------------------------------------------------------------------
// 8, 9. Dry run; already-mounted sysroot

#[test]
fn dry_run_touches_nothing() {
    let t = Bench::new("dry-run");
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        args: &["--dry-run"],
        ..Default::default()
    });
    o.expect_code(0);
    assert!(
        o.stdout.starts_with("1.\n init (background: false)"),
        "stdout: {}",
        o.stdout
    );
    assert!(o.stdout.contains("mount-root"), "stdout: {}", o.stdout);
    assert_eq!(o.run_files, Vec::<String>::new(), "--dry-run wrote to /run");
    assert!(o.mounts.is_empty(), "--dry-run mounted {:?}", o.mounts);
}

#[test]
fn already_mounted_sysroot_counts_as_done() {
    let t = Bench::new("premounted");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: "cd $W && mkdir -p prepared/etc/ssh prepared/var/log prepared/srv prepared/usr/local \
                 prepared/usr/libexec prepared/oem prepared/tmp prepared/home prepared/opt prepared/root\n\
                 echo prepared > $W/prepared/etc/image-name\n\
                 mount --bind $W/prepared $S\nmount -o remount,bind,ro $S",
        checks: &["cat $S/etc/image-name"],
        ..Default::default()
    });
    o.expect_code(0);
    o.expect_stderr("already mounted");
    assert_eq!(o.ok(0), "prepared\n", "the prepared root was replaced");
    assert!(
        o.mount_at(&o.sysroot).is_none(),
        "immucore mounted over the existing root\n{}",
        o.dump()
    );
    assert!(
        !o.mounts.iter().any(|m| is_image_loop(&m.source)),
        "an image got mounted\n{}",
        o.dump()
    );
    assert_overlays(&o, &["/etc", "/var", "/srv"]);
    assert_eq!(o.root_mount("/usr/local").source, disk.part("persistent"));
    assert_binds(&o, &disk, &["/etc/ssh", "/home"]);
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// Beyond the brief's list: layout from the rootfs stage, debugrw

#[test]
fn rootfs_hook_layout_wins_over_config_dir() {
    let t = Bench::new("rootfs-hook");
    let disk = t.attach(&standard_disk());
    let layout = "VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\nRW_PATHS=\"/var /etc /srv\"\n\
                  PERSISTENT_STATE_PATHS=\"/root\"\nCUSTOM_BIND_MOUNTS=\"/etc/ssh\"\n";
    let hooks = t.dir.join("cfg/rootfs.d");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("10-layout");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nmkdir -p /run/cos\ncat > /run/cos/cos-layout.env <<'X'\n{layout}X\n\
             env | grep ^IMMUCORE_ | sort > /run/hook-env\n"
        ),
    )
    .unwrap();
    sh(&format!("chmod 755 '{}'", hook.display()));
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some("PERSISTENT_STATE_PATHS=\"/opt\"\n"),
        checks: &["cat /run/hook-env", "cat /run/cos/cos-layout.env"],
        ..Default::default()
    });
    o.expect_code(0);
    let env = o.ok(0);
    for l in [
        "IMMUCORE_STAGE=rootfs".to_string(),
        "IMMUCORE_STATE=active".to_string(),
        format!("IMMUCORE_SYSROOT={}", o.sysroot),
    ] {
        assert!(
            env.lines().any(|x| x == l),
            "hook environment lacks {l}:\n{env}"
        );
    }
    assert_binds(&o, &disk, &["/root", "/etc/ssh"]);
    assert!(
        o.mount_at(&o.in_root("/opt")).is_none(),
        "layout.env used although the rootfs stage wrote one"
    );
    assert_overlays(&o, &["/var", "/etc", "/srv"]);
    assert_eq!(
        o.ok(1),
        layout,
        "the rootfs stage's cos-layout.env was rewritten"
    );
}

#[test]
fn debugrw_mounts_state_and_root_read_write() {
    let t = Bench::new("debugrw");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: &format!("{ACTIVE} rd.cos.debugrw"),
        checks: &[
            "touch $S/x && touch /run/initramfs/cos-state/x",
            "cat $S/etc/fstab",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    assert!(o.root_mount("/").has_opt("rw"), "root not rw\n{}", o.dump());
    let state = o
        .mount_at("/run/initramfs/cos-state")
        .expect("state not mounted");
    assert!(state.has_opt("rw"), "state not rw: {state:?}");
    o.ok(0);
    let fstab = o.ok(1);
    assert!(
        fstab.contains("/dev/disk/by-label/COS_ACTIVE / ext4 rw 0 0"),
        "{fstab}"
    );
    assert!(
        fstab.contains("/dev/disk/by-label/COS_STATE /run/initramfs/cos-state ext4 rw 0 0"),
        "{fstab}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hooks: a long name runs whole; the image's hook directory is resolved inside the image

#[test]
fn image_hooks_resolve_inside_the_image_and_long_names_run_whole() {
    // The image's rootfs.d is an absolute symlink: inside the image it leads to
    // /immucore-elsewhere; from the initramfs (the host here), nowhere.
    let elsewhere = "/immucore-elsewhere";
    assert!(
        !Path::new(elsewhere).exists(),
        "{elsewhere} exists on the host: remove it"
    );
    let mut img = os_image("COS_ACTIVE", "active");
    img.nodes.extend([
        Node::File(
            "/immucore-elsewhere/10-mark",
            "#!/bin/sh\necho \"$IMMUCORE_STAGE\" > /run/image-hook-ran",
        ),
        Node::Mode("/immucore-elsewhere/10-mark", 0o755),
        Node::Link("/usr/lib/immucore/rootfs.d", "/immucore-elsewhere"),
    ]);
    let state = images_fs("COS_STATE", vec![("/cOS/active.img", img)]);
    let t = Bench::new("image-hooks");
    let _disk = t.attach(&replace(standard_disk(), "state", state));
    // A hook name of 230 bytes: with the directory, longer than the 256 bytes the path once
    // was cut to.
    let hooks = t.dir.join("cfg/rootfs.d");
    std::fs::create_dir_all(&hooks).unwrap();
    let long = hooks.join(format!("20-{}", "l".repeat(227)));
    std::fs::write(&long, "#!/bin/sh\necho long > /run/long-hook-ran\n").unwrap();
    sh(&format!("chmod 755 '{}'", long.display()));
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &["cat /run/image-hook-ran", "cat /run/long-hook-ran"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(
        o.ok(0),
        "rootfs\n",
        "the image's hook did not run\n{}",
        o.dump()
    );
    assert_eq!(
        o.ok(1),
        "long\n",
        "the long-named hook did not run\n{}",
        o.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// What the root is: a label-less image, a sysroot mounted by someone else, a second run

/// The mount point directories of `os_image`, made in `$D` by shell (for images built by hand).
const OS_DIRS: &str =
    "etc/ssh var/log var/lib srv usr/local usr/libexec oem home opt root proc sys \
                       dev run tmp sbin data";

#[test]
fn label_less_squashfs_image_boots() {
    let t = Bench::new("squashfs-root");
    // A squashfs image (squashfs has no label at all), put on the images partition before
    // the boot.
    let img = t.dir.join("active.squashfs");
    sh(&format!(
        "D={d}/squash-tree; rm -rf $D; mkdir -p $D; cd $D && mkdir -p {OS_DIRS} && \
         echo squash > etc/image-name && mksquashfs $D {img} -noappend -quiet >/dev/null",
        d = t.dir.display(),
        img = img.display()
    ));
    let disk = t.attach(&replace(
        standard_disk(),
        "state",
        images_fs("COS_STATE", vec![]),
    ));
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: &format!(
            "mkdir -p $W/state && mount {} $W/state && mkdir -p $W/state/cOS && \
             cp {} $W/state/cOS/active.img && umount $W/state",
            disk.part("state"),
            img.display()
        ),
        checks: &["cat $S/etc/image-name", "cat $S/etc/fstab"],
        ..Default::default()
    });
    assert_eq!(o.step_error("discover-state"), None, "{}", o.dump());
    assert_eq!(o.step_error("mount-root"), None, "{}", o.dump());
    let root = o.root_mount("/");
    assert!(
        root.fstype == "squashfs" && is_image_loop(&root.source),
        "root is not the squashfs image: {root:?}\n{}",
        o.dump()
    );
    assert_eq!(o.ok(0), "squash\n");
    o.expect_stderr("(squashfs, no label)");
    // Without a label there is no by-label link: the fstab names the loop device.
    let fstab = o.ok(1);
    assert!(
        fstab.contains(&format!("{} / squashfs ro 0 0", root.source)),
        "{fstab}"
    );
}

#[test]
fn sysroot_premounted_from_another_kairos_filesystem_is_refused() {
    let t = Bench::new("premounted-oem");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: &format!("mount -o ro {} $S", disk.part("oem")),
        ..Default::default()
    });
    o.expect_code(1);
    o.expect_stderr("IMMUCORE BOOT FAILED");
    o.expect_stderr(&format!(
        "is already mounted from {} (ext4, label COS_OEM), not the image /cOS/active.img: refusing",
        disk.part("oem")
    ));
    assert!(
        o.step_error("discover-state").is_some(),
        "discover-state did not fail\n{}",
        o.dump()
    );
}

#[test]
fn second_run_in_the_same_boot_describes_what_is_mounted() {
    let t = Bench::new("second-run");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "VOLUMES=\"LABEL=COS_OEM:/oem LABEL=COS_PERSISTENT:/usr/local\"\n\
             RW_PATHS=\"/var /etc /srv\"\nPERSISTENT_STATE_PATHS=\"/home\"\n",
        ),
        // The first run, in the same namespace: the second finds everything mounted.
        before: &format!(
            "HOST_PROC_CMDLINE=$W/cmdline IMMUCORE_SYSROOT=$S IMMUCORE_CONFIG_DIR=$W/cfg {BIN} \
             > $W/first.out 2>&1"
        ),
        checks: &["cat $S/etc/fstab"],
        ..Default::default()
    });
    o.expect_code(0);
    o.expect_stderr("(ext4, label COS_ACTIVE), a loop device over the image");
    let fstab = o.ok(0);
    assert!(
        fstab.contains("/dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0"),
        "the root line does not say what is mounted:\n{fstab}"
    );
    let oem = fstab
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some("/oem"));
    assert_eq!(
        oem.count(),
        1,
        "/oem listed more or less than once:\n{fstab}"
    );
}

// 10. Persistent paths and what is configured around them

/// `VOLUMES` puts DATA on `/var/lib/rancher/storage` and `RW_PATHS` an ephemeral overlay on
/// `/var/lib/rancher/cache`, both below the persistent `/var/lib/rancher`: the more specific
/// path wins, so after the boot the volume and the overlay are still what is seen there (writes
/// land on DATA and in the overlay), and the rest of `/var/lib/rancher` is the store. Before,
/// the bind covered both: DATA's files vanished and writes went to COS_PERSISTENT.
#[test]
fn volume_and_overlay_below_a_persistent_path_stay_visible() {
    below_a_persistent_path("below-bind", "");
}

/// The same under shared mount propagation, as systemd sets up `/` in an initrd (where
/// `MS_MOVE` of a mount below a shared parent is refused).
#[test]
fn volume_and_overlay_below_a_persistent_path_stay_visible_when_shared() {
    below_a_persistent_path("below-bind-shared", "mount --make-rshared /");
}

fn below_a_persistent_path(name: &str, before: &str) {
    let t = Bench::new(name);
    let disk = t.attach(&data_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before,
        layout: Some(
            "RW_PATHS=\"/var /etc /srv /var/lib/rancher/cache\"\n\
             PERSISTENT_STATE_PATHS=\"/etc/ssh /var/lib/rancher\"\n\
             VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local LABEL=DATA:/var/lib/rancher/storage\"\n",
        ),
        checks: &[
            "cat $S/var/lib/rancher/storage/data-marker",
            "echo d > $S/var/lib/rancher/storage/written && echo p > $S/var/lib/rancher/persisted \
             && echo c > $S/var/lib/rancher/cache/ephemeral && sync",
            "cat /run/overlay/var-lib-rancher-cache/.overlay/upper/ephemeral",
            "cat $S/etc/fstab",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "data\n", "the DATA volume is hidden\n{}", o.dump());
    o.ok(1);
    assert_eq!(o.ok(2), "c\n", "the overlay below the bind is hidden");
    assert_binds(&o, &disk, &["/var/lib/rancher", "/etc/ssh"]);
    assert_eq!(
        o.root_mount("/var/lib/rancher/storage").source,
        disk.part("data")
    );
    assert_overlays(&o, &["/var/lib/rancher/cache"]);
    // One mount on each, the copies below the store: the covered originals were detached.
    for p in ["/var/lib/rancher/storage", "/var/lib/rancher/cache"] {
        let on = o.mounts.iter().filter(|m| m.target == o.in_root(p)).count();
        assert_eq!(on, 1, "{p}: {on} mounts\n{}", o.dump());
    }
    let fstab = o.ok(3);
    for l in [
        "/usr/local/.state/var-lib-rancher.bind /var/lib/rancher none bind 0 0",
        "/dev/disk/by-label/DATA /var/lib/rancher/storage ext4 rw 0 0",
    ] {
        assert!(fstab.lines().any(|x| x == l), "fstab lacks {l}:\n{fstab}");
    }
    // `mount -a` rebuilds the same tree: the bind before what is kept visible below it.
    let pos = |start: &str| fstab.lines().position(|l| l.starts_with(start)).unwrap();
    let bind = pos("/usr/local/.state/var-lib-rancher.bind ");
    assert!(bind < pos("/dev/disk/by-label/DATA "), "{fstab}");
    assert!(bind < pos("overlay /var/lib/rancher/cache "), "{fstab}");
    // The copy-up stayed on the image's filesystem: nothing of DATA went into the store (read
    // on the disk itself: under shared propagation the store's copy of the mount shows DATA).
    assert_eq!(
        disk.read(
            "persistent",
            "/.state/var-lib-rancher.bind/storage/data-marker"
        ),
        "",
        "the copy-up copied the DATA volume into the store"
    );
    assert_eq!(o.step_error("mount-bind"), None, "{}", o.dump());
    assert_eq!(disk.read("data", "/written"), "d\n", "a write missed DATA");
    assert_eq!(
        disk.read("persistent", "/.state/var-lib-rancher.bind/persisted"),
        "p\n"
    );
}

/// A persistent path that is also an overlay (`RW_PATHS`) cannot be both: it stays an overlay,
/// and the log says loudly that it is NOT persistent and does not count it as bound.
#[test]
fn persistent_path_that_is_also_an_overlay_is_reported_not_persistent() {
    let t = Bench::new("bind-and-overlay");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "RW_PATHS=\"/var /etc /srv /home\"\nPERSISTENT_STATE_PATHS=\"/home /etc/ssh\"\n\
             VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n",
        ),
        ..Default::default()
    });
    o.expect_code(0);
    assert_overlays(&o, &["/home"]);
    assert_binds(&o, &disk, &["/etc/ssh"]);
    o.expect_stderr(
        "immucore: mount-bind: warning: /home is in RW_PATHS too: it stays an ephemeral overlay \
         and is NOT persistent\n",
    );
    o.expect_stderr("immucore: mount-bind: 1 persistent paths bound from /usr/local/.state ");
}

/// `/var/lib/foo-bar` and `/var/lib/foo/bar` both map to the store `var-lib-foo-bar.bind`
/// (upstream's naming, kept for existing installs): the second is refused, naming both, rather
/// than mixing their contents.
#[test]
fn persistent_paths_with_the_same_store_name_bind_only_the_first() {
    let t = Bench::new("bind-collision");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "RW_PATHS=\"/var /etc /srv\"\nPERSISTENT_STATE_PATHS=\"/var/lib/foo/bar /var/lib/foo-bar\"\n\
             VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n",
        ),
        ..Default::default()
    });
    o.expect_code(0);
    assert_binds(&o, &disk, &["/var/lib/foo-bar"]);
    assert!(
        o.mount_at(&o.in_root("/var/lib/foo/bar")).is_none(),
        "both bound from one store\n{}",
        o.dump()
    );
    o.expect_stderr(
        "immucore: mount-bind: error: /var/lib/foo/bar not bound: its store name is the one of \
         /var/lib/foo-bar (both map to the same .bind directory)",
    );
    assert_eq!(
        o.step_error("mount-bind").as_deref(),
        Some("bind failed for /var/lib/foo/bar")
    );
}

/// immucore run a second time in the same boot (everything is mounted already): the fstab it
/// writes still lists the binds, since it describes what is mounted, whoever mounted it.
#[test]
fn second_run_in_the_same_boot_keeps_the_binds_in_fstab() {
    let t = Bench::new("second-run");
    let disk = t.attach(&standard_disk());
    let again = format!(
        "HOST_PROC_CMDLINE=$W/cmdline IMMUCORE_SYSROOT=$S IMMUCORE_CONFIG_DIR=$W/cfg {BIN} \
         >/dev/null 2>$W/second.err; cat $S/etc/fstab"
    );
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &[&again, "cat $W/second.err"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_binds(&o, &disk, &["/etc/ssh", "/var/log"]);
    let fstab = o.ok(0);
    for l in [
        "/usr/local/.state/etc-ssh.bind /etc/ssh none bind 0 0",
        "/usr/local/.state/var-log.bind /var/log none bind 0 0",
    ] {
        assert!(
            fstab.lines().any(|x| x == l),
            "second fstab lacks {l}:\n{fstab}\n{}",
            o.ok(1)
        );
    }
    let binds = o
        .mounts
        .iter()
        .filter(|m| m.root.starts_with("/.state/"))
        .count();
    let lines = fstab.lines().filter(|l| l.contains(" none bind ")).count();
    assert_eq!(lines, binds, "fstab:\n{fstab}");
}
