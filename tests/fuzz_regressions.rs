//! Fuzz regressions (stable, plain `cargo test`): every file under
//! `tests/fuzz-regressions/<target>/` goes through exactly the checks of the fuzz target of that
//! name (`fuzz/src/lib.rs`, included below), and the hand-made and fuzzer-found inputs have
//! their expected results spelled out. A new crash from `fuzz/run` becomes a regression by
//! copying its input into the target's directory (and, ideally, a test here naming the result).

#[path = "../fuzz/src/lib.rs"]
#[allow(clippy::all)]
mod checks;

use immucore::config::cmdline::{self, overlay_backing, volume_spec, Device, MAX_CMDLINE};
use immucore::config::layout::{parse_env, EnvVars, Layout};
use immucore::config::path::{check_path, normalize};
use immucore::steps::fstab::Fstab;
use immucore::util::fixed::Text;
use std::path::{Path, PathBuf};

fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target)
}

fn input(target: &str, name: &str) -> Vec<u8> {
    let p = dir(target).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `check` on every file of `tests/fuzz-regressions/<target>/`; names each failing file.
fn replay(target: &str, check: fn(&[u8])) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no regression inputs for {target}");
    let failed: Vec<String> = files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).unwrap();
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: checks failed for {failed:?}");
}

#[test]
fn replay_cmdline() {
    replay("cmdline", checks::check_cmdline);
}

#[test]
fn replay_layout() {
    replay("layout", |d| {
        checks::check_layout(d);
    });
}

#[test]
fn replay_probe() {
    replay("probe", checks::check_probe);
}

#[test]
fn replay_fstab() {
    replay("fstab", |d| {
        checks::check_fstab(d);
    });
}

#[test]
fn replay_path() {
    replay("path", checks::check_paths);
}

#[test]
fn replay_inroot() {
    replay("inroot", |d| {
        checks::inroot::check_inroot(d);
    });
}

/// The checked-in seeds of the fuzz targets pass the same checks.
#[test]
fn fuzz_seeds_pass_their_checks() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    // Each target's check, with whatever it returns thrown away.
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 5] = [
        ("cmdline", checks::check_cmdline),
        ("layout", |d| {
            let _ = checks::check_layout(d);
        }),
        ("fstab", |d| {
            let _ = checks::check_fstab(d);
        }),
        ("path", checks::check_paths),
        ("inroot", |d| {
            let _ = checks::inroot::check_inroot(d);
        }),
    ];
    for (target, check) in targets {
        for f in std::fs::read_dir(seeds.join(target)).unwrap() {
            check(&std::fs::read(f.unwrap().path()).unwrap());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cmdline

fn parse_err(text: &[u8]) -> (&'static str, String) {
    match cmdline::parse(text) {
        Ok(c) => panic!("parsed: {}", checks::cmdline_summary(&c)),
        Err(e) => (e.reason, e.token.as_str().to_string()),
    }
}

fn parse_ok(text: &[u8]) -> cmdline::Cmdline {
    cmdline::parse(text).unwrap_or_else(|e| panic!("{} at {}", e.reason, e.token.as_str()))
}

#[test]
fn cmdline_unterminated_quote_at_eof() {
    let data = input("cmdline", "unterminated-quote-at-eof");
    assert_eq!(
        parse_err(&data),
        ("unterminated quote", r#"rd.cos.oemlabel="abc"#.to_string())
    );
    assert_eq!(parse_err(b"\"").0, "unterminated quote");
    assert_eq!(parse_err(b"a=\"\"\"\n").0, "unterminated quote");
}

#[test]
fn cmdline_nul_bytes_are_token_bytes() {
    // NUL is no separator: `root=LABEL=COS_ACTIVE\0` names no known label, and the image path
    // with a NUL is refused.
    let data = input("cmdline", "nul-bytes");
    assert_eq!(
        parse_err(&data),
        ("contains a control character", "/cOS/a\0.img".to_string())
    );
    let c = parse_ok(b"root=LABEL=COS_ACTIVE\0");
    assert_eq!(c.state.name(), cmdline::BootState::Unknown.name());
}

#[test]
fn cmdline_one_megabyte_value() {
    let mut line = b"root=LABEL=COS_ACTIVE cos-img/filename=/".to_vec();
    line.resize(1 << 20, b'a');
    assert_eq!(parse_err(&line).0, "command line too long");
    checks::check_cmdline(&line);
    // The limit itself: 4096 bytes (plus the newline /proc/cmdline ends with) are accepted.
    let mut line = b"x=".to_vec();
    line.resize(MAX_CMDLINE, b'a');
    line.push(b'\n');
    assert!(cmdline::parse(&line).is_ok());
    line.insert(0, b' ');
    assert_eq!(parse_err(&line).0, "command line too long");
}

/// Found by the `cmdline` fuzzer: `/dev/` (and `/dev/.`, `/dev//`) normalized to `/dev`, the
/// directory, and was accepted as a device path.
#[test]
fn cmdline_dev_directory_is_no_device() {
    for spec in [&b"/dev/"[..], b"/dev/.", b"/dev//", b"/dev/./"] {
        assert_eq!(
            Device::parse(spec).err(),
            Some("no device name after /dev/")
        );
        assert!(overlay_backing(spec).is_err());
        assert!(volume_spec(&[spec, b":/mnt"].concat()).is_err());
    }
    assert!(Device::parse(b"/dev/vda4").is_ok());
    assert!(Device::parse(b"/dev//mapper/./x").is_ok());

    let c = parse_ok(&input("cmdline", "dev-dir-mount"));
    assert!(c.mounts.is_empty());
    assert_eq!(c.overlay.as_str(), "tmpfs:20%");
    let warnings: Vec<&str> = c.warnings.iter_str().collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings
        .iter()
        .all(|w| w.contains("no device name after /dev/")));
    // The fuzzer's own input parses, without the /dev device.
    assert_eq!(
        parse_err(&input("cmdline", "dev-dir-as-device")).0,
        "unterminated quote"
    );
}

// ---------------------------------------------------------------------------------------------
// layout

fn env_err(text: &[u8]) -> (u32, &'static str) {
    let mut vars = Box::new(EnvVars::new());
    let e = parse_env(text, &mut vars).expect_err("refused");
    (e.line, e.reason)
}

#[test]
fn layout_unterminated_quote_at_eof() {
    let data = input("layout", "unterminated-quote-at-eof");
    assert_eq!(env_err(&data), (2, "unterminated quoted value"));
    assert_eq!(env_err(b"A='"), (1, "unterminated quoted value"));
    assert_eq!(env_err(b"A=\"x\\\""), (1, "unterminated quoted value"));
}

#[test]
fn layout_nul_bytes_are_binary_data() {
    assert_eq!(env_err(&input("layout", "nul-bytes")), (2, "binary data"));
    assert_eq!(env_err(b"\0"), (1, "binary data"));
}

#[test]
fn layout_one_megabyte_value() {
    for quote in ["", "\"", "'"] {
        let mut text = format!("A=1\nRW_PATHS={quote}/").into_bytes();
        text.resize(1 << 20, b'a');
        text.extend_from_slice(quote.as_bytes());
        assert_eq!(env_err(&text), (2, "value too long"), "quote {quote:?}");
        checks::check_layout(&text);
    }
}

/// `$`, `!`, backquote and `#` survive render_env and the way back.
#[test]
fn layout_escapes_round_trip() {
    let layout = checks::check_layout(&input("layout", "escapes-round-trip")).expect("a layout");
    assert_eq!(
        checks::layout_summary(&layout),
        "rw=[/a$b /c!d /e`f /g#h] binds=[/p$$ /q] overlay=LABEL=my $disk! target=/usr/local/.state \
         volumes=[LABEL=a`b:/mnt/$x]"
    );
    let mut out = Box::new(Text::<16384>::new());
    layout
        .render_env(&mut out)
        .unwrap_or_else(|_| panic!("renders"));
    assert_eq!(
        out.as_str(),
        "OVERLAY=\"LABEL=my \\$disk\\!\"\nPERSISTENT_STATE_PATHS=\"/p\\$\\$ /q\"\n\
         PERSISTENT_STATE_TARGET=\"/usr/local/.state\"\nRW_PATHS=\"/a\\$b /c\\!d /e\\`f /g#h\"\n\
         VOLUMES=\"LABEL=a\\`b:/mnt/\\$x\"\n"
    );
}

/// The checked-in cos-layout.env seed is the layout upstream writes.
#[test]
fn layout_seed_is_upstreams_file() {
    let text = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/layout/cos-layout.env"),
    )
    .unwrap();
    let mut vars = Box::new(EnvVars::new());
    assert!(parse_env(&text, &mut vars).is_ok());
    let layout = Layout::from_env(&vars, None, b"").unwrap_or_else(|_| panic!("a layout"));
    assert_eq!(layout.binds.len(), 37);
    assert_eq!(layout.volumes.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// path

#[test]
fn path_edge_cases() {
    let norm = |p: &[u8]| {
        let mut t = Text::<256>::new();
        normalize(p, &mut t).map(|()| t.as_str().to_string())
    };
    assert_eq!(norm(&input("path", "dotdot-root")), Err("contains .."));
    assert_eq!(
        norm(&input("path", "nul")),
        Err("contains a control character")
    );
    assert_eq!(norm(&input("path", "too-long")), Err("too long"));
    assert_eq!(
        norm(&input("path", "only-slashes-and-dots")),
        Ok("/".to_string())
    );
    assert_eq!(check_path(&[b'/'; 240]), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// fstab

/// Found by the `fstab` fuzzer: control bytes other than tab and newline went into the file raw
/// (musl's getmntent splits fields at \r \v \f too), and a spec starting with `#` made the line
/// a comment.
#[test]
fn fstab_escapes_every_control_byte_and_a_leading_hash() {
    let added = checks::check_fstab(&input("fstab", "raw-control-byte"));
    assert!(!added.is_empty());
    let added = checks::check_fstab(&input("fstab", "blanks-and-controls"));
    assert_eq!(added.len(), 2);

    let mut f = Box::new(Fstab::new());
    f.add(
        b"#spec",
        b"/my dir",
        b"ext4",
        b"rw,x=a\tb\r\x0b\x0c\\\x7f\x01#",
    );
    f.add(b"/dev/disk/by-label/a\\x20b", b"/mnt\nx", b"none", b"");
    assert_eq!(
        std::str::from_utf8(f.as_bytes()).unwrap(),
        "\\043spec /my\\040dir ext4 rw,x=a\\011b\\015\\013\\014\\134\\177\\001# 0 0\n\
         /dev/disk/by-label/a\\134x20b /mnt\\012x none defaults 0 0\n"
    );
}

// ---------------------------------------------------------------------------------------------
// probe

#[test]
fn gpt_entry_count_ffffffff_is_refused_at_once() {
    let data = input("probe", "gpt-entry-count-ffffffff");
    let mut dev = checks::Virt {
        data: &data,
        shift: 0,
        len: data.len() as u64,
        reads: 0,
    };
    assert!(!immucore::dev::gpt::gpt_partitions(
        &mut dev,
        data.len() as u64,
        512,
        &mut |_| panic!("an entry")
    ));
    // The MBR, the primary header, and the backup header at the last LBA (the primary was
    // refused, so the backup is tried; its AlternateLBA lies past the end, never read).
    assert!(dev.reads <= 3, "{} reads", dev.reads);
    assert_eq!(checks::gpt_summary(&data, 4096), None);
    // The same header with no entries is a valid, empty table.
    assert_eq!(
        checks::gpt_summary(&input("probe", "gpt-entry-count-0"), 512),
        Some(vec![])
    );
    assert_eq!(
        checks::gpt_summary(&input("probe", "gpt-entry-count-0"), 4096),
        None
    );
}

#[test]
fn gpt_name_with_lone_surrogate() {
    let data = input("probe", "gpt-one-entry-surrogate-name");
    assert_eq!(
        checks::gpt_summary(&data, 512),
        Some(vec![
            "1 a?€b 04030201-0605-0807-090a-0b0c0d0e0f10 34 99".to_string()
        ])
    );
    assert_eq!(
        checks::gpt_summary(&data, 0),
        checks::gpt_summary(&data, 512)
    );
}

#[test]
fn ext4_label_field_without_nul() {
    let data = input("probe", "ext4-label-255-non-nul");
    assert_eq!(
        checks::probe_summary(&data).as_deref(),
        Some("ext4 label=ABCDEFGHIJKLMNOP uuid=10111213-1415-1617-1819-1a1b1c1d1e1f")
    );
}

#[cfg(feature = "btrfs")]
#[test]
fn btrfs_label_of_256_non_nul_bytes_is_no_label() {
    let mut data = vec![0u8; 0x10000 + 1024];
    let sb = &mut data[0x10000..];
    sb[0x40..0x48].copy_from_slice(b"_BHRfS_M");
    sb[0x20..0x30].copy_from_slice(&[0xAB; 16]);
    sb[0x12B..0x12B + 256].fill(b'L');
    assert_eq!(
        checks::probe_summary(&data).as_deref(),
        Some("btrfs label= uuid=abababab-abab-abab-abab-abababababab")
    );
    sb_label_fits(&mut data);
    checks::check_probe(&data);
}

#[cfg(feature = "btrfs")]
fn sb_label_fits(data: &mut [u8]) {
    data[0x10000 + 0x12B + 64..0x10000 + 0x12B + 256].fill(0);
    assert_eq!(
        checks::probe_summary(data).as_deref(),
        Some(&*format!(
            "btrfs label={} uuid=abababab-abab-abab-abab-abababababab",
            "L".repeat(64)
        ))
    );
}

#[cfg(feature = "vfat")]
#[test]
fn vfat_root_cluster_out_of_range_falls_back_to_the_boot_label() {
    for name in ["vfat-root-cluster-past-fat", "vfat-root-cluster-past-image"] {
        let data = input("probe", name);
        assert_eq!(
            checks::probe_summary(&data).as_deref(),
            Some("vfat label=BOOTLABEL uuid=1234-ABCD"),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// inroot

fn inroot(name: &str) -> checks::inroot::Outcome {
    checks::inroot::check_inroot(&input("inroot", name))
}

const ELOOP: i32 = 40;
const ENOENT: i32 = 2;
const ENOTDIR: i32 = 20;

#[test]
fn inroot_symlinks_stay_inside() {
    use checks::inroot::Outcome;
    let ok = |s: &str| Ok(s.to_string());
    assert_eq!(
        inroot("symlink-loop"),
        Outcome {
            dir: Err(ELOOP),
            mkdir_p: Err(ELOOP)
        }
    );
    // `../../../outside` from the root's top is `/outside` inside the root, which does not
    // exist: a dangling link, refused rather than followed.
    assert_eq!(
        inroot("escape-relative"),
        Outcome {
            dir: Err(ENOENT),
            mkdir_p: Err(ELOOP)
        }
    );
    // An absolute target (here `<scratch>/outside/etc`) resolves inside the root: dangling too.
    assert_eq!(
        inroot("escape-absolute"),
        Outcome {
            dir: Err(ENOENT),
            mkdir_p: Err(ELOOP)
        }
    );
    // `..` at the root stays at the root.
    assert_eq!(
        inroot("dotdot-query"),
        Outcome {
            dir: Err(ENOENT),
            mkdir_p: ok("/outside/z")
        }
    );
    assert_eq!(
        inroot("dangling"),
        Outcome {
            dir: Err(ENOENT),
            mkdir_p: Err(ELOOP)
        }
    );
    assert_eq!(
        inroot("file-in-path"),
        Outcome {
            dir: Err(ENOTDIR),
            mkdir_p: Err(ENOTDIR)
        }
    );
    // A link to a real directory inside the root is followed.
    let o = checks::inroot::check_inroot(b"usr/local/\nl\tusr/local\nup\t../../..\n/up/l/.state");
    assert_eq!(
        o,
        Outcome {
            dir: Err(ENOENT),
            mkdir_p: ok("/usr/local/.state")
        }
    );
}
