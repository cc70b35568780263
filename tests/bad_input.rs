//! Bad input in service mode: a hostile or broken kernel command line, layout file, disk or image
//! content. Each case asserts the exact error immucore reports and that nothing was mounted or
//! written that should not be. Runs in private mount namespaces (tests/common/mod.rs); needs root.
//!
//! The disk cases already in tests/mount_ns.rs (duplicate label, image that is not a filesystem,
//! image with the wrong label, missing persistent partition) are not repeated here.

mod common;

use common::*;
use std::path::Path;
use std::time::Instant;

const ACTIVE: &str =
    "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM";

/// The mounts a healthy boot without layout makes outside the sysroot.
const OUTSIDE_OK: &[&str] = &["/tmp", "/run/overlay", "/run/initramfs/cos-state"];

fn dash(p: &str) -> String {
    p.trim_start_matches('/').replace('/', "-")
}

/// Every new mount is on the sysroot, below it, or one of `OUTSIDE_OK`.
#[track_caller]
fn assert_nothing_outside(o: &Outcome) {
    for m in &o.mounts {
        assert!(
            OUTSIDE_OK.contains(&m.target.as_str()) || Path::new(&m.target).starts_with(&o.sysroot),
            "mount outside the sysroot: {m:?}\n{}",
            o.dump()
        );
    }
}

/// The set of sysroot-relative mount points (`/` for the root), in mountinfo order.
fn root_targets(o: &Outcome) -> Vec<String> {
    o.mounts
        .iter()
        .filter_map(|m| {
            let rel = m.target.strip_prefix(&o.sysroot)?;
            Some(if rel.is_empty() {
                "/".to_string()
            } else {
                rel.to_string()
            })
        })
        .collect()
}

/// Exactly these sysroot-relative mount points (order free), plus only `OUTSIDE_OK` outside.
#[track_caller]
fn assert_root_mounts(o: &Outcome, want: &[&str]) {
    assert_nothing_outside(o);
    let mut got = root_targets(o);
    got.sort();
    got.dedup();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "unexpected set of mounts\n{}", o.dump());
}

#[track_caller]
fn assert_log(o: &Outcome, line: &str) {
    assert!(
        o.stderr.lines().any(|l| l == line),
        "stderr lacks the line {line:?}\n{}",
        o.dump()
    );
    assert!(
        o.log.lines().any(|l| l.ends_with(line)),
        "immucore.log lacks {line:?}:\n{}",
        o.log
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Kernel command line

/// A command line immucore refuses: exit 1 before any step, the exact reason on stderr (and in
/// the log) and in the summary, no mount at all, nothing in /run but the log.
#[track_caller]
fn refused_cmdline(t: &Bench, cmdline: &str, error_line: &str, summary_reason: &str) {
    let o = t.boot(&Boot {
        cmdline,
        ..Default::default()
    });
    o.expect_code(1);
    assert_log(&o, error_line);
    assert_log(&o, "immucore: error:         IMMUCORE BOOT FAILED");
    assert_log(&o, &format!("immucore: error: Reason: {summary_reason}"));
    assert_log(&o, "immucore: error: Failed: ");
    assert!(
        o.mounts.is_empty(),
        "mounted despite a refused command line\n{}",
        o.dump()
    );
    assert_eq!(
        o.run_files,
        ["/run/immucore", "/run/immucore/immucore.log"],
        "files written despite a refused command line\n{}",
        o.dump()
    );
    assert_eq!(o.timeline, "", "a step ran");
}

#[test]
fn refused_command_lines_are_fatal_before_any_mount() {
    let t = Bench::new("bad-cmdline");
    // A disk that would boot: whatever gets refused is refused on its own account.
    let _disk = t.attach(&standard_disk());
    let mut tried = 0;
    let mut case = |cmdline: &str, error_line: &str, reason: &str| {
        tried += 1;
        refused_cmdline(&t, cmdline, error_line, reason);
    };

    // Longer than any kernel's COMMAND_LINE_SIZE (4096): refused as a whole.
    let long = format!("{ACTIVE} x={}", "a".repeat(4096 - ACTIVE.len()));
    assert_eq!(long.len(), 4099);
    case(
        &long,
        &format!(
            "immucore: error: kernel command line: command line too long (at '{}')",
            &long[..64]
        ),
        "invalid kernel command line: command line too long",
    );
    // Far longer than the read buffer: still refused, never cut and parsed.
    let huge = format!("{ACTIVE} x={}", "b".repeat(20000));
    case(
        &huge,
        &format!(
            "immucore: error: cannot read the command line from {}/cmdline: file too large",
            t.dir.display()
        ),
        "cannot read the kernel command line",
    );
    // One value longer than its buffer.
    let img = format!("/cOS/{}.img", "i".repeat(300));
    case(
        &format!("root=LABEL=COS_ACTIVE cos-img/filename={img}"),
        &format!(
            "immucore: error: kernel command line: value too long (at 'cos-img/filename={}')",
            &img[..47]
        ),
        "invalid kernel command line: value too long",
    );
    // Unterminated quotes, in the middle and at the end of the line.
    case(
        &format!("{ACTIVE} rd.cos.oemlabel=\"my oem console=ttyS0"),
        "immucore: error: kernel command line: unterminated quote (at 'rd.cos.oemlabel=\"my oem console=ttyS0')",
        "invalid kernel command line: unterminated quote",
    );
    case(
        &format!("{ACTIVE} \""),
        "immucore: error: kernel command line: unterminated quote (at '\"')",
        "invalid kernel command line: unterminated quote",
    );
    // The image path: `..`, relative, with odd bytes.
    case(
        "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/../cOS/active.img",
        "immucore: error: kernel command line: contains .. (at '/cOS/../cOS/active.img')",
        "invalid kernel command line: contains ..",
    );
    case(
        "root=LABEL=COS_ACTIVE cos-img/filename=/..",
        "immucore: error: kernel command line: contains .. (at '/..')",
        "invalid kernel command line: contains ..",
    );
    // A relative name is joined to the images partition (issue 12 #15), and may not leave it.
    case(
        "root=LABEL=COS_ACTIVE cos-img/filename=../active.img",
        "immucore: error: kernel command line: contains .. (at '../active.img')",
        "invalid kernel command line: contains ..",
    );
    case(
        "root=LABEL=COS_ACTIVE \"cos-img/filename=/cOS/my image.img\"",
        "immucore: error: kernel command line: contains a space, quote or backslash (at '/cOS/my image.img')",
        "invalid kernel command line: contains a space, quote or backslash",
    );
    eprintln!("bad command lines tried: {tried}");
}

/// Tolerated command-line oddities: empty values, unknown keys, duplicates, conflicting
/// spellings, a volume without a mount point. The boot goes on with the documented winner and a
/// warning for what was dropped; nothing else gets mounted.
#[test]
fn tolerated_command_line_oddities_boot_with_the_documented_winner() {
    let t = Bench::new("odd-cmdline");
    let mut parts = standard_disk();
    parts.push(part(
        "data",
        Fs {
            label: "DATA",
            mb: 8,
            nodes: vec![Node::File("/data-marker", "data")],
        },
    ));
    let disk = t.attach(&parts);
    let full = ["/", "/oem", "/etc", "/var", "/srv", "/usr/local"];

    // Empty values are absent values: defaults apply (COS_OEM scan, 5 s, tmpfs:20%, no volume).
    let o = t.boot(&Boot {
        cmdline: "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel= \
                  rd.immucore.oemlabel= rd.cos.oemtimeout= rd.cos.overlay= rd.immucore.overlay= \
                  rd.cos.mount= rd.immucore.mount= init= rd.immucore.sysrootwait= fsck.mode= =x = ==",
        checks: &["cat /run/cos/cos-layout.env"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.root_mount("/oem").source, disk.part("oem"));
    assert!(
        !o.stderr.contains("warning"),
        "empty values warned\n{}",
        o.dump()
    );
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
    assert!(o.mounts.iter().all(|m| m.source != disk.part("data")));
    assert!(o.ok(0).contains("OVERLAY=\"tmpfs:25%\""), "{}", o.ok(0));

    // Unknown keys and near-misses of real keys are ignored (keys match exactly).
    let o = t.boot(&Boot {
        cmdline: &format!(
            "{ACTIVE} foo=bar rd.immucore.bogus=1 rd.cos.oemlabelx=DATA rd.cos.mountx=LABEL=DATA:/data \
             rd.immucore.debugrw2 rd.cos.disablex xnetboot kairos.resetx recovery-modes \
             cos-img/filename2=/cOS/passive.img ROOT=LABEL=COS_PASSIVE"
        ),
        checks: &["cat $S/etc/image-name", "cat /run/cos/active_mode"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "active\n");
    assert_eq!(o.ok(1), "1");
    assert!(
        o.root_mount("/").has_opt("ro"),
        "debugrw2 turned on debugrw"
    );
    assert_eq!(o.root_mount("/oem").source, disk.part("oem"));
    assert!(
        o.mount_at(&o.in_root("/data")).is_none(),
        "rd.cos.mountx mounted\n{}",
        o.dump()
    );
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );

    // Duplicates: within a spelling the first non-empty value wins, rd.immucore.* beats rd.cos.*,
    // except root= and cos-img/filename=, whose last non-empty value wins (issue 12 #17);
    // repeated flags are harmless.
    let o = t.boot(&Boot {
        cmdline: "root=LABEL=COS_PASSIVE root=LABEL=COS_ACTIVE cos-img/filename= \
                  cos-img/filename=/cOS/passive.img cos-img/filename=/cOS/active.img \
                  rd.immucore.oemlabel=DATA rd.cos.oemlabel=COS_OEM rd.immucore.oemlabel=NOPE \
                  rd.cos.debugrw rd.cos.debugrw rd.immucore.mount=LABEL=DATA:/data \
                  rd.cos.mount=LABEL=COS_OEM:/mnt/oem2",
        checks: &["cat $S/etc/image-name", "ls /run/cos", "cat $S/etc/fstab"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "active\n");
    assert_eq!(o.ok(1), "active_mode\ncos-layout.env\n");
    assert!(
        o.root_mount("/").has_opt("rw"),
        "rd.cos.debugrw twice: not rw"
    );
    assert_eq!(
        o.root_mount("/oem").source,
        disk.part("data"),
        "rd.immucore.oemlabel lost"
    );
    assert_eq!(o.root_mount("/data").source, disk.part("data"));
    assert_eq!(o.root_mount("/mnt/oem2").source, disk.part("oem"));
    // rd.cos.mount= volumes come before rd.immucore.mount= ones (upstream's merge order).
    let fstab = o.ok(2);
    let oem2 = fstab.find(" /mnt/oem2 ").expect(fstab);
    let data = fstab.find(" /data ").expect(fstab);
    assert!(oem2 < data, "volume order:\n{fstab}");

    // Conflicting: the image named is not on the images partition of the state root= selects.
    let o = t.boot(&Boot {
        cmdline: "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/recovery.img",
        ..Default::default()
    });
    o.expect_code(1);
    o.expect_stderr("IMMUCORE BOOT FAILED");
    o.expect_stderr("/cOS/recovery.img");
    assert_root_mounts(&o, &[]);
    assert!(
        o.mounts
            .iter()
            .all(|m| m.target == "/tmp" || m.target == "/run/initramfs/cos-state"),
        "{}",
        o.dump()
    );

    // Volume specs without a mount point (or with a relative one, or `..`) are dropped with a
    // warning; the good one next to them mounts.
    let o = t.boot(&Boot {
        cmdline: &format!(
            "{ACTIVE} rd.cos.mount=LABEL=DATA rd.cos.mount=LABEL=DATA: rd.cos.mount=LABEL=DATA:data \
             rd.immucore.mount=LABEL=DATA:/srv/../data rd.immucore.mount=:/data \
             rd.immucore.mount=FOO=x:/data rd.immucore.mount=LABEL=DATA:/data"
        ),
        ..Default::default()
    });
    o.expect_code(0);
    for w in [
        "rd.cos.mount=LABEL=DATA: no mount point, ignored",
        "rd.cos.mount=LABEL=DATA:: no mount point, ignored",
        "rd.cos.mount=LABEL=DATA:data: no mount point, ignored",
        "rd.immucore.mount=LABEL=DATA:/srv/../data: contains .., ignored",
        "rd.immucore.mount=:/data: unknown device (use LABEL=, UUID=, PARTLABEL=, PARTUUID= or /dev/...), ignored",
        "rd.immucore.mount=FOO=x:/data: unknown device (use LABEL=, UUID=, PARTLABEL=, PARTUUID= or /dev/...), ignored",
    ] {
        assert_log(&o, &format!("immucore: warning: {w}"));
    }
    let mut want = full.to_vec();
    want.extend(["/data"]);
    let binds = root_targets(&o);
    let binds: Vec<&str> = binds
        .iter()
        .map(String::as_str)
        .filter(|t| !want.contains(t))
        .collect();
    assert!(
        o.mounts
            .iter()
            .filter(|m| m.source == disk.part("data"))
            .count()
            == 1,
        "DATA mounted more than once\n{}",
        o.dump()
    );
    assert!(
        binds.iter().all(|b| o
            .mount_at(&o.in_root(b))
            .is_some_and(|m| m.root.starts_with("/.state/"))),
        "mounts besides the layout and /data: {binds:?}\n{}",
        o.dump()
    );
    assert_nothing_outside(&o);
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Layout file

/// A layout refused by load-config: the root, its images partition, OEM and /tmp are mounted,
/// but no overlay, volume or bind, no `/run/overlay`, no store directory, no layout written.
#[track_caller]
fn refused_layout(t: &Bench, layout: &[u8], in_run: bool, error: &str) -> Outcome {
    let file = if in_run {
        "/run/cos/cos-layout.env".to_string()
    } else {
        format!("{}/cfg/layout.env", t.dir.display())
    };
    let staged = t.dir.join("staged-layout.env");
    std::fs::write(&staged, layout).unwrap();
    let before = if in_run {
        format!(
            "mkdir -p /run/cos && cp {} /run/cos/cos-layout.env",
            staged.display()
        )
    } else {
        format!("cp {} {}", staged.display(), file)
    };
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: &before,
        checks: &[
            "cmp /run/cos/cos-layout.env $W/staged-layout.env",
            "ls -A $S/usr/local /run/overlay",
        ],
        ..Default::default()
    });
    let _ = std::fs::remove_file(t.dir.join("cfg/layout.env"));
    o.expect_code(0);
    // `error` follows the file name: " line N: why" (syntax) or ": KEY 'item': why" (meaning).
    let full = format!("{file}{error}");
    // The timeline shows control characters as `?`.
    let json: String = full
        .chars()
        .map(|c| if c < ' ' { '?' } else { c })
        .collect();
    assert_eq!(
        o.step_error("load-config").as_deref(),
        Some(json.as_str()),
        "load-config error\n{}",
        o.dump()
    );
    // The console and the log show them as `\xNN`, so they cannot start a line of their own.
    let shown: String = full
        .chars()
        .map(|c| {
            if c < ' ' {
                format!("\\x{:02x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    let line = format!("immucore: load-config: error: failed: {shown}\n");
    assert!(
        o.stderr.contains(&line),
        "stderr lacks {line:?}\n{}",
        o.dump()
    );
    assert!(o.log.contains(&line), "log lacks {line:?}\n{}", o.log);
    for s in [
        "mount-base-overlay",
        "overlay-mount",
        "custom-mount",
        "mount-bind",
    ] {
        assert!(
            o.step_error(s).is_some_and(|e| e.contains("load-config")),
            "{s} not skipped\n{}",
            o.dump()
        );
    }
    assert_root_mounts(&o, &["/", "/oem"]);
    assert!(
        !o.mounts.iter().any(|m| m.target == "/run/overlay"),
        "overlay backing mounted\n{}",
        o.dump()
    );
    if in_run {
        o.ok(0);
    } else {
        assert!(
            !o.run_files.contains(&"/run/cos/cos-layout.env".to_string()),
            "a refused layout was written for the booted system\n{}",
            o.dump()
        );
    }
    o
}

#[test]
fn refused_layout_files_skip_only_the_layout() {
    let t = Bench::new("bad-layout");
    let _disk = t.attach(&standard_disk());
    let mut tried = 0;
    let mut case = |layout: &[u8], in_run: bool, error: &str| {
        tried += 1;
        refused_layout(&t, layout, in_run, error);
    };
    let good = "RW_PATHS=\"/var /etc /srv\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n";

    // Binary garbage: a NUL, invalid UTF-8 (both in either place).
    let mut garbage = good.as_bytes().to_vec();
    garbage.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0]);
    case(&garbage, false, " line 3: binary data");
    case(&garbage, true, " line 3: binary data");
    case(
        b"RW_PATHS=\"/var\xff\xfe\"\n",
        false,
        " line 1: binary data",
    );
    case(
        &(0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 | 1)
            .collect::<Vec<u8>>(),
        false,
        " line 1: binary data",
    );
    // Unterminated quotes name the line where the value starts.
    case(
        format!("{good}PERSISTENT_STATE_PATHS=\"/etc/ssh /home\n# the end\n").as_bytes(),
        false,
        " line 3: unterminated quoted value",
    );
    case(
        format!("{good}\n\nexport CUSTOM_BIND_MOUNTS='/root\n").as_bytes(),
        true,
        " line 5: unterminated quoted value",
    );
    // Huge values: a 1 MB one (the file is capped), one over the 8 KiB value limit.
    let huge = format!(
        "{good}PERSISTENT_STATE_PATHS=\"{}\"\n",
        "/a".repeat(512 * 1024)
    );
    case(huge.as_bytes(), false, ": larger than 64 KiB");
    case(huge.as_bytes(), true, ": larger than 64 KiB");
    let big = format!("{good}PERSISTENT_STATE_PATHS=\"{}\"\n", "/b".repeat(4200));
    case(big.as_bytes(), false, " line 3: value too long");
    let unquoted = format!("{good}PERSISTENT_STATE_PATHS={}\n", "/c".repeat(4200));
    case(unquoted.as_bytes(), false, " line 3: value too long");
    // A bad entry of a list (a path with `..`, a relative path, a volume without mount point)
    // is refused on its own: see `refused_layout_entries_skip_only_the_entry`.
    // Single paths are not split: a newline in them is refused.
    case(
        format!("{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=\"/usr/local/.st\\nate\"\n")
            .as_bytes(),
        false,
        ": PERSISTENT_STATE_TARGET '/usr/local/.st\nate': contains a control character",
    );
    case(
        format!(
            "{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=\"/usr/local/.state\t\"\n"
        )
        .as_bytes(),
        false,
        ": PERSISTENT_STATE_TARGET '/usr/local/.state\t': contains a control character",
    );
    // PERSISTENT_STATE_TARGET inside an overlay (data lost at reboot), or the root itself.
    case(
        format!("{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=/var/state\n").as_bytes(),
        false,
        ": PERSISTENT_STATE_TARGET '/var/state': lies inside an RW_PATHS overlay: persistent data would be lost",
    );
    case(
        format!("{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=/etc\n").as_bytes(),
        true,
        ": PERSISTENT_STATE_TARGET '/etc': lies inside an RW_PATHS overlay: persistent data would be lost",
    );
    case(
        format!("{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=/\n").as_bytes(),
        false,
        ": PERSISTENT_STATE_TARGET '/': is / (the read-only root image)",
    );
    case(
        format!("{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=//./\n").as_bytes(),
        false,
        ": PERSISTENT_STATE_TARGET '//./': is / (the read-only root image)",
    );
    case(
        format!(
            "{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=/usr/local/../var/x\n"
        )
        .as_bytes(),
        false,
        ": PERSISTENT_STATE_TARGET '/usr/local/../var/x': contains ..",
    );
    case(
        format!("{good}PERSISTENT_STATE_PATHS=/home\nPERSISTENT_STATE_TARGET=state\n").as_bytes(),
        false,
        ": PERSISTENT_STATE_TARGET 'state': not absolute",
    );
    // Syntax errors that are not quotes.
    case(b"RW_PATHS\n", false, " line 1: missing = after key");
    case(
        b"RW PATHS=/var\n",
        false,
        " line 1: invalid character in key",
    );
    eprintln!("bad layout files tried: {tried}");
}

/// A layout with a bad entry in every list (issue 12 #4), next to good ones: a path with `..`,
/// relative paths, a path with a space (two items, one not a path), volumes without a mount
/// point or with `..`.
const LAYOUT_WITH_BAD_ENTRIES: &str = "RW_PATHS=\"/var etc /etc /srv\"\n\
    VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local LABEL=COS_PERSISTENT:usr/local \
    LABEL=COS_PERSISTENT:/usr/../x LABEL=COS_OEM\"\n\
    PERSISTENT_STATE_PATHS=\"/etc/../root /etc/ssh ./home /home\"\n\
    CUSTOM_BIND_MOUNTS=\"/home/.. /etc/ss\nh /srv/my data\"\n";

/// Issue 12 #4: each refused entry is skipped on its own; load-config succeeds and every other
/// entry applies. (Before: load-config failed, and the boot went on with read-only /etc and
/// /var and nothing persistent.)
#[test]
fn refused_layout_entries_skip_only_the_entry() {
    let t = Bench::new("bad-layout-entry");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(LAYOUT_WITH_BAD_ENTRIES),
        checks: &["cat /run/cos/cos-layout.env"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.step_error("load-config"), None, "{}", o.dump());
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
    assert_root_mounts(
        &o,
        &[
            "/",
            "/oem",
            "/var",
            "/etc",
            "/srv",
            "/usr/local",
            "/etc/ssh",
            "/home",
            "/etc/ss",
            "/srv/my",
        ],
    );
    for p in ["/var", "/etc", "/srv"] {
        assert_eq!(o.root_mount(p).fstype, "overlay", "{p}\n{}", o.dump());
    }
    assert_eq!(o.root_mount("/usr/local").source, disk.part("persistent"));
    for p in ["/etc/ssh", "/home", "/etc/ss", "/srv/my"] {
        let m = o.root_mount(p);
        assert!(
            m.source == disk.part("persistent") && m.root == format!("/.state/{}.bind", dash(p)),
            "{p}: not a bind of the persistent store: {m:?}\n{}",
            o.dump()
        );
    }
    // The layout the booted system reads is the one applied, without the refused entries.
    let env = o.ok(0);
    for l in [
        "RW_PATHS=\"/var /etc /srv\"",
        "PERSISTENT_STATE_PATHS=\"/etc/ssh /home /etc/ss /srv/my\"",
        "VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"",
    ] {
        assert!(
            env.lines().any(|x| x == l),
            "cos-layout.env lacks {l}:\n{env}"
        );
    }
}

/// Issue 12 #4: each refused layout entry is named in a warning in the log.
#[test]
fn refused_layout_entries_are_named_in_the_log() {
    let t = Bench::new("bad-layout-entry-log");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(LAYOUT_WITH_BAD_ENTRIES),
        ..Default::default()
    });
    o.expect_code(0);
    for w in [
        "RW_PATHS 'etc': not absolute, ignored",
        "VOLUMES 'LABEL=COS_PERSISTENT:usr/local': no mount point, ignored",
        "VOLUMES 'LABEL=COS_PERSISTENT:/usr/../x': contains .., ignored",
        "VOLUMES 'LABEL=COS_OEM': no mount point, ignored",
        "PERSISTENT_STATE_PATHS '/etc/../root': contains .., ignored",
        "PERSISTENT_STATE_PATHS './home': not absolute, ignored",
        "CUSTOM_BIND_MOUNTS '/home/..': contains .., ignored",
        "CUSTOM_BIND_MOUNTS 'h': not absolute, ignored",
        "CUSTOM_BIND_MOUNTS 'data': not absolute, ignored",
    ] {
        assert!(
            o.stderr
                .lines()
                .any(|l| l.contains("warning") && l.ends_with(w)),
            "stderr lacks the warning {w:?}\n{}",
            o.dump()
        );
        assert!(
            o.log
                .lines()
                .any(|l| l.contains("warning") && l.ends_with(w)),
            "immucore.log lacks the warning {w:?}:\n{}",
            o.log
        );
    }
}

/// Issue 12 #15: `cos-img/filename=` without the leading `/` names the same file at the top of
/// the images partition, as upstream joins it (before: refused as "not absolute", no boot).
#[test]
fn relative_image_name_boots_from_the_images_partition() {
    let t = Bench::new("relative-image");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: "root=LABEL=COS_ACTIVE cos-img/filename=cOS/active.img rd.cos.oemlabel=COS_OEM",
        checks: &["cat $S/etc/image-name"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "active\n");
    o.expect_stderr("image /cOS/active.img");
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
}

/// Issue 12 #16: more than 16 `rd.cos.mount=` volumes boot with the first 16; each surplus one
/// is named in a warning (before: the whole command line was refused, no boot).
#[test]
fn surplus_cmdline_mounts_are_skipped_with_a_warning() {
    let t = Bench::new("surplus-mounts");
    let mut parts = standard_disk();
    parts.push(part(
        "data",
        Fs {
            label: "DATA",
            mb: 8,
            nodes: vec![Node::File("/data-marker", "data")],
        },
    ));
    let disk = t.attach(&parts);
    let mounts: String = (0..18)
        .map(|i| format!(" rd.cos.mount=LABEL=DATA:/srv/d{i}"))
        .collect();
    let o = t.boot(&Boot {
        cmdline: &format!("{ACTIVE}{mounts}"),
        checks: &["cat $S/srv/d15/data-marker"],
        ..Default::default()
    });
    o.expect_code(0);
    // custom-mount mounts a device once, at the last mount point given for it: the 16th.
    assert_eq!(o.ok(0), "data\n");
    assert_eq!(o.root_mount("/srv/d15").source, disk.part("data"));
    for i in [16, 17] {
        assert!(
            o.mount_at(&o.in_root(&format!("/srv/d{i}"))).is_none(),
            "{}",
            o.dump()
        );
        assert_log(
            &o,
            &format!(
                "immucore: warning: rd.cos.mount=LABEL=DATA:/srv/d{i}: more than 16 mounts, ignored"
            ),
        );
    }
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
}

/// Issue 12 #17: `root=` given twice boots the last one, with the last `cos-img/filename=`, as
/// the kernel, dracut and systemd read it (before: the first).
#[test]
fn repeated_root_boots_the_last_one() {
    let t = Bench::new("repeated-root");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: "root=LABEL=COS_ACTIVE cos-img/filename=/cOS/active.img rd.cos.oemlabel=COS_OEM \
                  root=LABEL=COS_PASSIVE cos-img/filename=/cOS/passive.img",
        checks: &["cat $S/etc/image-name", "ls /run/cos"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "passive\n");
    assert_eq!(o.ok(1), "cos-layout.env\npassive_mode\n");
}

/// Repeated keys: the last assignment wins (godotenv), and repeating one thousands of times does
/// not exhaust the value store.
#[test]
fn repeated_layout_keys_last_one_wins() {
    let t = Bench::new("layout-repeat");
    let disk = t.attach(&standard_disk());
    let mut layout = String::new();
    for i in 0..1400 {
        layout += &format!("RW_PATHS=\"/var /etc /srv /root /opt{i}\"\n");
    }
    layout += "RW_PATHS=\"/srv /etc\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n\
               PERSISTENT_STATE_PATHS=\"/root\"\nPERSISTENT_STATE_PATHS=\"/home\"\n";
    assert!(layout.len() > 40_000 && layout.len() < 64 * 1024);
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(&layout),
        checks: &["cat /run/cos/cos-layout.env"],
        ..Default::default()
    });
    o.expect_code(0);
    assert!(
        !o.timeline.contains("\"error\""),
        "a step failed\n{}",
        o.dump()
    );
    assert_root_mounts(&o, &["/", "/oem", "/srv", "/etc", "/usr/local", "/home"]);
    assert_eq!(o.root_mount("/home").source, disk.part("persistent"));
    let env = o.ok(0);
    assert!(env.contains("RW_PATHS=\"/srv /etc\"\n"), "{env}");
    assert!(env.contains("PERSISTENT_STATE_PATHS=\"/home\"\n"), "{env}");
}

// ---------------------------------------------------------------------------------------------
// 3. Disk

/// Mounts partition `part` of the attached disk in the namespace, runs `cmd` in it, unmounts.
fn on_partition(disk: &Disk, name: &str, cmd: &str) -> String {
    format!(
        "mkdir -p $W/edit && mount {} $W/edit && ( cd $W/edit && {cmd} ) && umount $W/edit",
        disk.part(name)
    )
}

/// A broken root image: fatal in discover-state or mount-root, with the reason; nothing mounted
/// but the images partition (and /tmp), no loop device left behind.
#[track_caller]
fn broken_image(name: &str, edit: &str, step: &str, reason: &str) {
    let t = Bench::new(name);
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: &on_partition(&disk, "state", edit),
        ..Default::default()
    });
    o.expect_code(1);
    o.expect_stderr("IMMUCORE BOOT FAILED");
    let e = o.step_error(step).unwrap_or_default();
    assert!(
        e.contains(reason),
        "{step} error {e:?} lacks {reason:?}\n{}",
        o.dump()
    );
    assert!(
        o.stderr.contains(&format!("Reason: {step}: ")),
        "summary does not name {step}\n{}",
        o.dump()
    );
    assert_root_mounts(&o, &[]);
    let images: Vec<_> = o
        .mounts
        .iter()
        .filter(|m| m.target != "/tmp" && m.target != "/run/initramfs/cos-state")
        .collect();
    assert!(images.is_empty(), "extra mounts {images:?}\n{}", o.dump());
    drop(disk);
    let leaked = loop_devices_on_images();
    assert!(leaked.is_empty(), "loop devices left: {leaked:?}");
}

/// 8 MiB image cut to 4 MiB: the superblock is intact, the filesystem does not fit. Fatal
/// before anything is mounted, with an error that says what is wrong (mount(2) would only
/// say "invalid argument"), and no loop device left.
#[test]
fn truncated_image_file_is_reported_as_truncated() {
    broken_image(
        "truncated-clear",
        "truncate -s 4M cOS/active.img",
        "discover-state",
        "/cOS/active.img is truncated",
    );
}

#[test]
fn corrupted_image_file_is_fatal() {
    // Group descriptors (1 KiB blocks: block 2) overwritten: the superblock still says ext4.
    broken_image(
        "corrupt-image",
        "dd if=/dev/urandom of=cOS/active.img bs=1024 seek=2 count=2 conv=notrunc status=none",
        "mount-root",
        "failed: structure needs cleaning (filesystem corrupted)",
    );
}

#[test]
fn empty_image_file_is_fatal() {
    broken_image(
        "empty-image",
        ": > cOS/active.img",
        "discover-state",
        "not a filesystem",
    );
}

#[test]
fn image_path_that_is_a_directory_is_fatal() {
    broken_image(
        "image-dir",
        "rm cOS/active.img && mkdir cOS/active.img",
        "discover-state",
        "/cOS/active.img",
    );
}

/// The image file is a symlink to a valid COS_ACTIVE image on the host: resolved inside the
/// images partition it leads nowhere, so nothing is attached. (A link that stays inside the
/// partition, `/../../cOS/real.img`, is fine and boots.)
#[test]
fn image_symlink_leaving_the_state_partition_is_refused() {
    let host_img = scratch().join("escape-target/active.img");
    std::fs::create_dir_all(host_img.parent().unwrap()).unwrap();
    std::fs::copy(build_fs(&os_image("COS_ACTIVE", "host")), &host_img).unwrap();
    broken_image(
        "image-link",
        &format!(
            "mv cOS/active.img cOS/real.img && ln -s {} cOS/active.img",
            host_img.display()
        ),
        "discover-state",
        "cannot open image /cOS/active.img on the images partition: no such file or directory",
    );
    let t = Bench::new("image-link-inside");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: &on_partition(
            &disk,
            "state",
            "mv cOS/active.img cOS/real.img && ln -s /../../../cOS/./real.img cOS/active.img",
        ),
        checks: &["cat $S/etc/image-name"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "active\n");
}

/// COS_STATE's partition holds random bytes (its GPT name is still "state"): no COS_STATE label
/// exists, so mount-state waits its full 60 s and fails; nothing else is attempted.
#[test]
fn state_partition_that_is_not_a_filesystem_fails_after_its_deadline() {
    let t = Bench::new("state-noise");
    let state = Fs {
        label: "COS_STATE",
        mb: 40,
        nodes: vec![],
    };
    let disk = t.attach(&replace(standard_disk(), "state", state));
    let start = Instant::now();
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        before: &format!(
            "dd if=/dev/urandom of={} bs=1M count=40 status=none",
            disk.part("state")
        ),
        ..Default::default()
    });
    let wall = start.elapsed().as_secs_f64();
    o.expect_code(1);
    assert_eq!(
        o.step_error("mount-state").as_deref(),
        Some("LABEL=COS_STATE did not appear within 60 s"),
        "{}",
        o.dump()
    );
    o.expect_stderr("Reason: mount-state: LABEL=COS_STATE did not appear within 60 s");
    assert!(
        (60.0..75.0).contains(&wall),
        "deadline not honoured: {wall:.1} s"
    );
    let non_tmp: Vec<_> = o.mounts.iter().filter(|m| m.target != "/tmp").collect();
    assert!(non_tmp.is_empty(), "mounted {non_tmp:?}\n{}", o.dump());
}

/// An OEM partition whose superblock says ext4 but whose filesystem is corrupt: only mount-oem
/// fails (with the kernel's reason), the layout is applied in full.
#[test]
fn oem_partition_that_fails_to_mount_fails_only_mount_oem() {
    let t = Bench::new("oem-corrupt");
    let disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        // fsck would repair it from the backup descriptors: keep the damage for the mount.
        cmdline: &format!("{ACTIVE} fsck.mode=skip"),
        before: &format!(
            "dd if=/dev/urandom of={} bs=1024 seek=2 count=2 conv=notrunc status=none",
            disk.part("oem")
        ),
        checks: &["ls -A $S/oem", "cat $S/etc/fstab"],
        ..Default::default()
    });
    o.expect_code(0);
    let e = o.step_error("mount-oem").unwrap_or_default();
    assert!(
        e.contains(&disk.part("oem")) || e.contains("COS_OEM"),
        "mount-oem error does not name the device: {e:?}\n{}",
        o.dump()
    );
    assert!(
        e.contains("structure needs cleaning") || e.contains("invalid argument"),
        "mount-oem error lacks the reason: {e:?}\n{}",
        o.dump()
    );
    assert!(o.mount_at(&o.in_root("/oem")).is_none(), "{}", o.dump());
    assert_eq!(o.ok(0), "", "something written into the image's /oem");
    assert!(
        !o.ok(1).contains(" /oem "),
        "fstab lists /oem:\n{}",
        o.ok(1)
    );
    for s in [
        "load-config",
        "overlay-mount",
        "custom-mount",
        "mount-bind",
        "write-fstab",
    ] {
        assert_eq!(o.step_error(s), None, "{s} failed or skipped\n{}", o.dump());
    }
    assert_eq!(o.root_mount("/usr/local").source, disk.part("persistent"));
    assert!(o.root_mount("/etc/ssh").root.starts_with("/.state/"));
    assert_nothing_outside(&o);
}

/// A persistent partition too small for the image's content on the first boot: the first copy
/// of the path that runs out of space fills a partial store (`.immucore-partial.<name>.bind`),
/// which is not bound; the step fails naming it, `/run/immucore/persistent-incomplete` lists it,
/// the other paths are bound, and no half-written file exists anywhere (no temporary left, every
/// present file identical to the image's).
#[test]
fn full_persistent_partition_during_copy_up() {
    let t = Bench::new("persistent-full");
    let mut img = os_image("COS_ACTIVE", "active");
    img.mb = 24;
    img.nodes.extend([
        Node::Noise("/var/lib/big/a-small.bin", 256 << 10),
        Node::Noise("/var/lib/big/b-huge.bin", 12 << 20),
        Node::Noise("/var/lib/big/c-small.bin", 256 << 10),
        Node::File("/var/lib/zzz/after", "after"),
    ]);
    let state = images_fs("COS_STATE", vec![("/cOS/active.img", img)]);
    let mut parts = replace(standard_disk(), "state", state);
    parts = replace(parts, "persistent", empty_fs("COS_PERSISTENT", 6));
    let disk = t.attach(&parts);
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\nRW_PATHS=\"/var /etc /srv\"\n\
             PERSISTENT_STATE_PATHS=\"/etc/ssh /var/lib/big /var/lib/zzz /home\"\n",
        ),
        checks: &[
            "find $S/usr/local -name '.immucore-tmp.*'",
            // Every file in the partial store is the image's file, byte for byte.
            "cd $S/usr/local/.state/.immucore-partial.var-lib-big.bind && for f in $(find . -type f); do \
             cmp $f $S/var/lib/big/$f || exit 1; echo $f; done",
            "cat $S/var/lib/zzz/after $S/etc/ssh/sshd_config",
            "test -e $S/usr/local/.state/var-lib-big.bind",
            "cat /run/immucore/persistent-incomplete",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    let e = o.step_error("mount-bind").unwrap_or_default();
    assert_eq!(e, "bind failed for /var/lib/big", "{}", o.dump());
    assert_log(
        &o,
        "immucore: mount-bind: error: /var/lib/big: copy-up into \
         /usr/local/.state/.immucore-partial.var-lib-big.bind incomplete, 1 entries of the image \
         not added (first 'b-huge.bin' (write): no space left on device); not bound, the next boot \
         resumes the copy",
    );
    assert_eq!(o.ok(0), "", "temporaries left in the store");
    // Copy order is directory order (the htree hash of each mkfs): the small files may or may
    // not be there, complete (checked by cmp above); the huge one never.
    let present: Vec<&str> = o.ok(1).lines().collect();
    assert!(
        present
            .iter()
            .all(|f| ["./a-small.bin", "./c-small.bin"].contains(f)),
        "store content after ENOSPC: {present:?}"
    );
    assert_eq!(o.ok(2), "after\nhi\n");
    o.fails(3);
    assert_eq!(
        o.ok(4),
        "/var/lib/big unbound 1 b-huge.bin write 28\n",
        "{}",
        o.dump()
    );
    assert!(
        o.mount_at(&o.in_root("/var/lib/big")).is_none(),
        "half-copied store bound\n{}",
        o.dump()
    );
    for p in ["/etc/ssh", "/var/lib/zzz", "/home"] {
        let m = o.root_mount(p);
        assert!(
            m.source == disk.part("persistent") && m.root == format!("/.state/{}.bind", dash(p)),
            "{p}: {m:?}"
        );
    }
    assert_nothing_outside(&o);
}

/// An upgrade on a full persistent partition: the new image brings a file the store has no room
/// for. The user's existing store is bound all the same (their data stays visible and writes
/// stay persistent), and the incomplete copy is reported loudly: the step fails naming the
/// path, the log says which entry is missing and why, and `/run/immucore/persistent-incomplete`
/// lists it for the booted system. (Before: the store was not bound at all, exit 0.)
#[test]
fn full_persistent_partition_on_upgrade_still_binds_the_existing_store() {
    let t = Bench::new("persistent-full-upgrade");
    // The old image (passive) and the new one (active, with a file too large for the store).
    let mut old = os_image("COS_PASSIVE", "passive");
    old.nodes.push(Node::File("/var/lib/big/old", "old"));
    let mut new = os_image("COS_ACTIVE", "active");
    new.mb = 24;
    new.nodes.extend([
        Node::File("/var/lib/big/old", "old"),
        Node::Noise("/var/lib/big/new-huge.bin", 12 << 20),
    ]);
    let state = images_fs(
        "COS_STATE",
        vec![("/cOS/active.img", new), ("/cOS/passive.img", old)],
    );
    let mut parts = replace(standard_disk(), "state", state);
    parts = replace(parts, "persistent", empty_fs("COS_PERSISTENT", 6));
    let disk = t.attach(&parts);
    let layout = "VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\nRW_PATHS=\"/var /etc /srv\"\n\
                  PERSISTENT_STATE_PATHS=\"/etc/ssh /var/lib/big /home\"\n";
    let first = t.boot(&Boot {
        cmdline: "root=LABEL=COS_PASSIVE cos-img/filename=/cOS/passive.img",
        layout: Some(layout),
        checks: &["echo mine > $S/var/lib/big/user-data && sync"],
        ..Default::default()
    });
    first.expect_code(0);
    first.ok(0);
    assert_eq!(first.step_error("mount-bind"), None, "{}", first.dump());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(layout),
        checks: &[
            "cat $S/var/lib/big/user-data $S/var/lib/big/old",
            "echo more > $S/var/lib/big/more && sync",
            "cat /run/immucore/persistent-incomplete",
            "find $S/usr/local -name '.immucore-*'",
            "test -e $S/var/lib/big/new-huge.bin",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(
        o.ok(0),
        "mine\nold\n",
        "the user's store is hidden\n{}",
        o.dump()
    );
    o.ok(1);
    let m = o.root_mount("/var/lib/big");
    assert!(
        m.source == disk.part("persistent") && m.root == "/.state/var-lib-big.bind",
        "{m:?}\n{}",
        o.dump()
    );
    assert_eq!(
        o.step_error("mount-bind").as_deref(),
        Some("copy-up incomplete (bound) for /var/lib/big"),
        "{}",
        o.dump()
    );
    assert_log(
        &o,
        "immucore: mount-bind: error: /var/lib/big: copy-up into \
         /usr/local/.state/var-lib-big.bind incomplete, 1 entries of the image not added \
         (first 'new-huge.bin' (write): no space left on device); bound anyway",
    );
    assert_log(
        &o,
        "immucore: mount-bind: error: failed: copy-up incomplete (bound) for /var/lib/big",
    );
    assert_eq!(o.ok(2), "/var/lib/big bound 1 new-huge.bin write 28\n");
    assert_eq!(o.ok(3), "", "temporaries or a partial store left");
    o.fails(4);
    assert_eq!(
        disk.read("persistent", "/.state/var-lib-big.bind/more"),
        "more\n",
        "writes after the incomplete copy-up are not persistent"
    );
}

/// A store holding a symlink (to `/etc`) where a volume configured below the persistent path
/// has its mount point: the volume is never mounted through it, and the store is not bound
/// over the volume either (that would hide it): the path is refused loudly and the volume stays
/// visible where it was configured.
#[test]
fn store_without_a_directory_for_a_volume_below_it_is_not_bound() {
    let t = Bench::new("store-mount-point-link");
    let mut parts = standard_disk();
    parts = replace(
        parts,
        "persistent",
        Fs {
            label: "COS_PERSISTENT",
            mb: 16,
            nodes: vec![
                Node::File("/.state/var-lib-rancher.bind/mine", "mine"),
                Node::Link("/.state/var-lib-rancher.bind/storage", "/etc"),
            ],
        },
    );
    parts.push(part(
        "data",
        Fs {
            label: "DATA",
            mb: 8,
            nodes: vec![Node::File("/data-marker", "data")],
        },
    ));
    let disk = t.attach(&parts);
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "RW_PATHS=\"/var /etc /srv\"\nPERSISTENT_STATE_PATHS=\"/etc/ssh /var/lib/rancher\"\n\
             VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local LABEL=DATA:/var/lib/rancher/storage\"\n",
        ),
        checks: &[
            "cat $S/var/lib/rancher/storage/data-marker",
            "test -e $S/var/lib/rancher/mine",
            "test -e $S/etc/data-marker",
        ],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(o.ok(0), "data\n", "the DATA volume is hidden\n{}", o.dump());
    o.fails(1);
    o.fails(2);
    assert_eq!(
        o.step_error("mount-bind").as_deref(),
        Some("bind failed for /var/lib/rancher"),
        "{}",
        o.dump()
    );
    assert_log(
        &o,
        "immucore: mount-bind: error: /var/lib/rancher not bound: cannot keep \
         /var/lib/rancher/storage visible below it: not a directory",
    );
    let data: Vec<_> = o
        .mounts
        .iter()
        .filter(|m| m.source == disk.part("data"))
        .map(|m| m.target.as_str())
        .collect();
    assert_eq!(
        data,
        [o.in_root("/var/lib/rancher/storage")],
        "{}",
        o.dump()
    );
    assert!(
        o.mount_at(&o.in_root("/var/lib/rancher")).is_none(),
        "{}",
        o.dump()
    );
    assert_eq!(o.root_mount("/etc/ssh").root, "/.state/etc-ssh.bind");
    assert_nothing_outside(&o);
}

// ---------------------------------------------------------------------------------------------
// 4. Image content: symlinks and files where directories are expected

/// Host paths where a symlink followed from the host would lead; none may appear.
const ESCAPES: &[&str] = &["/outside-immucore", "/tmp/outside-immucore"];

fn escape_decoys(t: &Bench) -> Vec<String> {
    // Where relative links lead when resolved from the host path of the sysroot.
    (1..=4)
        .map(|n| {
            t.sysroot
                .ancestors()
                .nth(n)
                .unwrap()
                .join("outside-immucore")
                .display()
                .to_string()
        })
        .collect()
}

/// Boots `img` with `layout`; asserts nothing appeared at the escape places and the decoys stay
/// empty, every mount stays inside the sysroot, and returns the outcome.
fn boot_hostile(name: &str, img: Fs, persistent: Fs, layout: &str) -> (Outcome, Disk, Bench) {
    let t = Bench::new(name);
    for p in ESCAPES {
        assert!(
            !Path::new(p).exists(),
            "{p} exists on the host before the test: remove it"
        );
    }
    let decoys = escape_decoys(&t);
    for d in &decoys {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    let state = images_fs("COS_STATE", vec![("/cOS/active.img", img)]);
    let parts = replace(
        replace(standard_disk(), "state", state),
        "persistent",
        persistent,
    );
    let disk = t.attach(&parts);
    let mut checks: Vec<String> = ESCAPES.iter().map(|p| format!("! ls -la {p}")).collect();
    checks.extend(
        decoys
            .iter()
            .map(|d| format!("test -z \"$(ls -A {d})\" || ls -la {d}")),
    );
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(layout),
        checks: &checks,
        ..Default::default()
    });
    for i in 0..checks.len() {
        o.ok(i);
    }
    for p in ESCAPES {
        assert!(
            !Path::new(p).exists(),
            "{p} created on the host\n{}",
            o.dump()
        );
    }
    for d in &decoys {
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            0,
            "{d} written through a symlink"
        );
        std::fs::remove_dir(d).unwrap();
    }
    assert_nothing_outside(&o);
    for m in o.mounts.iter().filter(|m| m.fstype == "overlay") {
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
    for m in o
        .mounts
        .iter()
        .filter(|m| m.source == disk.part("persistent"))
    {
        assert!(
            m.root == "/" || m.root.starts_with("/.state/"),
            "bind of {} from the store\n{}",
            m.root,
            o.dump()
        );
    }
    (o, disk, t)
}

fn image_without(paths: &[&str]) -> Fs {
    let mut img = os_image("COS_ACTIVE", "active");
    img.nodes
        .retain(|n| !paths.iter().any(|p| Path::new(n.path()).starts_with(p)));
    img
}

/// Overlay targets that are symlinks: absolute, relative, chained, through `..`. Each overlay
/// lands inside the sysroot (where the link leads when resolved there) or is refused.
#[test]
fn overlay_targets_behind_symlinks_stay_inside() {
    let mut img = image_without(&["/srv", "/opt", "/home", "/root"]);
    img.nodes.extend([
        Node::Dir("/inside/a"),
        Node::Dir("/inside/b"),
        Node::Dir("/inside/c"),
        // Absolute, climbing above / (which is the sysroot for the image).
        Node::Link("/srv", "/../../../../outside-immucore"),
        // Relative, climbing out.
        Node::Link("/opt", "../../../../outside-immucore"),
        // Chained: /home -> /chain1 -> chain2 -> ../../tmp/outside-immucore
        Node::Link("/home", "/chain1"),
        Node::Link("/chain1", "chain2"),
        Node::Link("/chain2", "../../tmp/outside-immucore"),
        // Through `..` to a real directory inside.
        Node::Link("/root", "/inside/../inside/a"),
    ]);
    let (o, _disk, _t) = boot_hostile(
        "ovl-links",
        img,
        empty_fs("COS_PERSISTENT", 16),
        "RW_PATHS=\"/var /etc /srv /opt /home /root\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n",
    );
    o.expect_code(0);
    // Links that lead nowhere inside the root: the path is skipped with a warning (an RW path
    // missing in the image is not an error upstream either), never created elsewhere.
    for p in ["/srv", "/opt", "/home"] {
        assert_log(
            &o,
            &format!(
                "immucore: overlay-mount: warning: {p} is missing in the image and cannot be \
                 created (symbolic link loop or dangling symlink): skipped"
            ),
        );
        assert!(
            o.mount_at(&o.in_root(p)).is_none(),
            "{p} mounted\n{}",
            o.dump()
        );
    }
    assert_eq!(o.step_error("overlay-mount"), None);
    // /root leads to /inside/a in the image: the overlay is there, never on the host.
    for p in ["/var", "/etc"] {
        assert_eq!(o.root_mount(p).fstype, "overlay");
    }
    let root = o
        .mounts
        .iter()
        .find(|m| m.fstype == "overlay" && m.super_opts.contains("/run/overlay/root/"))
        .unwrap_or_else(|| panic!("no overlay for /root\n{}", o.dump()));
    assert_eq!(root.target, o.in_root("/inside/a"), "{}", o.dump());
}

/// Bind targets and the state directory behind symlinks, chained and through `..`; a bind
/// target that is a regular file.
#[test]
fn bind_targets_and_state_dir_behind_symlinks_stay_inside() {
    let mut img = image_without(&["/home", "/opt", "/root", "/etc/ssh", "/data"]);
    img.nodes.extend([
        Node::Dir("/inside/kept"),
        Node::File("/inside/kept/f", "kept"),
        Node::Link("/home", "/../../../outside-immucore"),
        Node::Link("/opt", "l1"),
        Node::Link("/l1", "l2"),
        Node::Link("/l2", "../../../../../tmp/outside-immucore"),
        Node::Link("/root", "/usr/../inside/kept"),
        // A regular file where a directory is expected, and a link to one.
        Node::File("/etc/ssh", "not a dir"),
        Node::File("/data", "not a dir either"),
        Node::Link("/srv/file-link", "/etc/image-name"),
    ]);
    let layout = "RW_PATHS=\"/var /etc\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n\
                  PERSISTENT_STATE_PATHS=\"/home /opt /root /etc/ssh /data /srv/file-link /var/log\"\n";
    let (o, disk, _t) = boot_hostile("bind-links", img, empty_fs("COS_PERSISTENT", 16), layout);
    o.expect_code(0);
    let e = o.step_error("mount-bind").unwrap_or_default();
    for p in ["/home", "/opt", "/etc/ssh", "/data", "/srv/file-link"] {
        assert!(
            e.contains(p),
            "mount-bind does not report {p}: {e:?}\n{}",
            o.dump()
        );
        assert!(
            o.mount_at(&o.in_root(p)).is_none(),
            "something mounted on {p}\n{}",
            o.dump()
        );
    }
    assert_log(
        &o,
        "immucore: mount-bind: error: cannot create /etc/ssh in the new root: not a directory",
    );
    assert_log(
        &o,
        "immucore: mount-bind: error: cannot create /data in the new root: not a directory",
    );
    // /root -> /usr/../inside/kept resolves inside: its store is bound there.
    let m = o
        .mount_at(&o.in_root("/inside/kept"))
        .unwrap_or_else(|| panic!("/root (-> /inside/kept) not bound\n{}", o.dump()));
    assert_eq!(
        (m.source.as_str(), m.root.as_str()),
        (disk.part("persistent").as_str(), "/.state/root.bind")
    );
    assert_eq!(o.root_mount("/var/log").root, "/.state/var-log.bind");
}

/// The state directory on the persistent partition is a symlink out of the root (absolute,
/// relative, chained): binds must fail rather than write anywhere else.
#[test]
fn state_dir_symlink_on_the_persistent_partition_stays_inside() {
    for (name, nodes) in [
        (
            "state-abs",
            vec![Node::Link("/.state", "/../../../../outside-immucore")],
        ),
        (
            "state-rel",
            vec![Node::Link("/.state", "../../../../../outside-immucore")],
        ),
        (
            "state-chain",
            vec![
                Node::Link("/.state", "s1"),
                Node::Link("/s1", "/../s2"),
                Node::Link("/s2", "../../../tmp/outside-immucore"),
            ],
        ),
    ] {
        let persistent = Fs {
            label: "COS_PERSISTENT",
            mb: 16,
            nodes,
        };
        let (o, _disk, _t) = boot_hostile(
            name,
            os_image("COS_ACTIVE", "active"),
            persistent,
            "RW_PATHS=\"/var /etc /srv\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n\
             PERSISTENT_STATE_PATHS=\"/etc/ssh /home\"\n",
        );
        o.expect_code(0);
        let e = o.step_error("mount-bind").unwrap_or_default();
        assert_eq!(e, "bind failed for /home, /etc/ssh", "{name}\n{}", o.dump());
        assert_log(
            &o,
            "immucore: mount-bind: error: cannot create /usr/local/.state/home.bind \
             in the new root: symbolic link loop or dangling symlink",
        );
        assert!(
            !o.mounts.iter().any(|m| m.root.contains(".bind")),
            "{name}: bound\n{}",
            o.dump()
        );
    }
}

/// A control character in a configured value reaches the console and the log file raw: a layout
/// value can start a new, forged `immucore:` line. Every line of the log must be immucore's own.
#[test]
fn control_characters_in_values_cannot_forge_log_lines() {
    let t = Bench::new("log-forge");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "PERSISTENT_STATE_PATHS=/home\n\
             PERSISTENT_STATE_TARGET=\"/usr/local/x\\nimmucore: root assembled, all is well\"\n",
        ),
        ..Default::default()
    });
    o.expect_code(0);
    assert!(o.step_error("load-config").is_some(), "{}", o.dump());
    // Console lines start with "immucore: ", log-file lines with their "[ secs]" stamp.
    let forged: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| !l.starts_with("immucore: ") || l.starts_with("immucore: root assembled, all"))
        .chain(o.log.lines().filter(|l| !l.starts_with('[')))
        .collect();
    assert!(
        forged.is_empty(),
        "forged or broken log lines: {forged:?}\n{}",
        o.dump()
    );
}

/// Two COS_PERSISTENT partitions: mounting either could hide the user's data behind the other's,
/// so custom-mount names both and mounts neither, and the persistent binds are skipped loudly.
#[test]
fn duplicate_persistent_label_mounts_neither() {
    let t = Bench::new("dup-persistent");
    let mut parts = standard_disk();
    parts.push(part("persistent2", empty_fs("COS_PERSISTENT", 16)));
    let disk = t.attach(&parts);
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        checks: &["find $S/usr/local /run/overlay -name '*.bind'"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(
        o.step_error("custom-mount").as_deref(),
        Some("not mounted: /dev/disk/by-label/COS_PERSISTENT on /usr/local"),
        "{}",
        o.dump()
    );
    // Both named, in scan order.
    let (a, b) = (disk.part("persistent"), disk.part("persistent2"));
    let line = |x: &str, y: &str| {
        format!(
            "immucore: custom-mount: error: LABEL=COS_PERSISTENT is carried by two devices, {x} and \
             {y}: refusing to guess which one to mount"
        )
    };
    if o.stderr.contains(&line(&a, &b)) {
        assert_log(&o, &line(&a, &b));
    } else {
        assert_log(&o, &line(&b, &a));
    }
    assert!(
        o.step_error("mount-bind")
            .is_some_and(|e| e.starts_with("persistent binds skipped: ")),
        "{}",
        o.dump()
    );
    assert!(
        !o.mounts
            .iter()
            .any(|m| m.source == disk.part("persistent") || m.source == disk.part("persistent2")),
        "a COS_PERSISTENT got mounted\n{}",
        o.dump()
    );
    assert_eq!(o.ok(0), "", "store directories created");
    assert_root_mounts(&o, &["/", "/oem", "/etc", "/var", "/srv"]);
}

/// PERSISTENT_STATE_TARGET outside /usr/local, on no volume and in no overlay: it lies in the
/// read-only image, so each bind fails with EROFS and the path; nothing is written anywhere.
#[test]
fn state_target_on_the_read_only_image_fails_each_bind() {
    let t = Bench::new("target-ro");
    let _disk = t.attach(&standard_disk());
    let o = t.boot(&Boot {
        cmdline: ACTIVE,
        layout: Some(
            "RW_PATHS=\"/var /etc /srv\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\n\
             PERSISTENT_STATE_PATHS=\"/home /etc/ssh\"\nPERSISTENT_STATE_TARGET=/opt/state\n",
        ),
        checks: &["find $S/usr/local /run/overlay -name '*.bind' -o -name state"],
        ..Default::default()
    });
    o.expect_code(0);
    assert_eq!(
        o.step_error("mount-bind").as_deref(),
        Some("bind failed for /home, /etc/ssh"),
        "{}",
        o.dump()
    );
    for p in ["home", "etc-ssh"] {
        assert_log(
            &o,
            &format!(
                "immucore: mount-bind: error: cannot create /opt/state/{p}.bind in the new root: \
                 read-only file system"
            ),
        );
    }
    assert_eq!(o.ok(0), "");
    assert_root_mounts(&o, &["/", "/oem", "/etc", "/var", "/srv", "/usr/local"]);
}
