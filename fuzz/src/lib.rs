//! The checks behind every fuzz target, shared with `tests/fuzz_regressions.rs` (which includes
//! this file with `#[path]`), so a regression input runs exactly the code the fuzzer ran.
//!
//! Each `check_*` function feeds one input to the library and panics when an invariant breaks.
//! They use std freely: only the library itself is `no_std`.
#![allow(dead_code)]

use immucore::config::cmdline::{self, overlay_backing, volume_spec, Backing, Device, DeviceKind};
use immucore::config::layout::{parse_env, EnvVars, Layout};
use immucore::config::path::{check_path, dash_name, is_within, normalize, normalize_device};
use immucore::dev::gpt::gpt_partitions;
use immucore::dev::probe::{probe_fs, BlockRead, FsType};
use immucore::steps::fstab::Fstab;
use immucore::util::fixed::Text;

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

// ---------------------------------------------------------------------------------------------
// path

/// `check_path`, `normalize` and `dash_name` on one path.
pub fn check_paths(data: &[u8]) {
    let checked = check_path(data);
    let mut out = Text::<256>::new();
    let normalized = normalize(data, &mut out);
    assert_eq!(
        checked, normalized,
        "normalize must refuse exactly what check_path refuses"
    );
    if checked.is_ok() {
        assert_normalized(out.as_bytes());
        assert!(
            out.len() <= data.len(),
            "normalize made {} longer",
            show(data)
        );
        let mut dash = Text::<256>::new();
        assert!(
            dash_name(out.as_bytes(), &mut dash).is_ok(),
            "dash_name of a checked path fits"
        );
        assert!(!dash.as_bytes().contains(&b'/'), "dash_name kept a /");
        assert_eq!(
            dash.len() + 1,
            out.len().max(1),
            "dash_name maps byte for byte"
        );
        assert!(is_within(out.as_bytes(), b"/"));
        assert!(is_within(out.as_bytes(), out.as_bytes()));
    }
    // dash_name on anything: never a `/`, fails only when it does not fit.
    let mut dash = Text::<256>::new();
    let rel = data.strip_prefix(b"/").unwrap_or(data);
    match dash_name(data, &mut dash) {
        Ok(()) => {
            assert!(!dash.as_bytes().contains(&b'/'), "dash_name kept a /");
            assert_eq!(dash.len(), rel.len());
        }
        Err(_) => assert!(rel.len() > 256),
    }
}

/// What `normalize` promises about its output (and what every caller relies on).
pub fn assert_normalized(p: &[u8]) {
    let s = show(p);
    assert_eq!(
        check_path(p),
        Ok(()),
        "normalized path {s} fails check_path"
    );
    assert!(p.starts_with(b"/"), "normalized path {s} is not absolute");
    assert!(!contains(p, b"//"), "normalized path {s} has //");
    assert!(!contains(p, b"/./"), "normalized path {s} has /./");
    assert!(
        p == b"/" || !p.ends_with(b"/"),
        "normalized path {s} ends with /"
    );
    assert!(!p.ends_with(b"/."), "normalized path {s} ends with /.");
    assert!(
        !p.split(|&c| c == b'/').any(|c| c == b".."),
        "normalized path {s} has a .. component"
    );
    let mut again = Text::<256>::new();
    normalize(p, &mut again).expect("a normalized path normalizes");
    assert_eq!(again.as_bytes(), p, "normalize is not idempotent on {s}");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// cmdline

/// Everything `parse` returns, as text (the library derives `Debug` only for its unit tests).
pub fn cmdline_summary(c: &cmdline::Cmdline) -> String {
    let list = |it: &mut dyn Iterator<Item = &[u8]>| it.map(show).collect::<Vec<_>>().join("|");
    format!(
        "mode={} state={} image={} oem={} oem_timeout={} overlay={} mounts=[{}] debugrw={} \
         debug={} reboot={} wait={} fsck={} repair={} init={} shell={} ignored=[{}] warnings=[{}]",
        if c.mode == cmdline::Mode::Live {
            "live"
        } else {
            "normal"
        },
        c.state.name(),
        show(c.image.as_bytes()),
        show(c.oem_label.as_bytes()),
        c.oem_timeout_s,
        show(c.overlay.as_bytes()),
        list(&mut c.mounts.iter()),
        c.debugrw,
        c.debug,
        c.reboot_on_failure,
        c.sysroot_wait_s,
        match c.fsck_mode {
            cmdline::FsckMode::Auto => "auto",
            cmdline::FsckMode::Skip => "skip",
            cmdline::FsckMode::Force => "force",
        },
        match c.fsck_repair {
            cmdline::FsckRepair::Preen => "preen",
            cmdline::FsckRepair::Yes => "yes",
            cmdline::FsckRepair::No => "no",
            cmdline::FsckRepair::None => "none",
        },
        show(c.init.as_bytes()),
        c.shell_allowed,
        list(&mut c.ignored.iter()),
        list(&mut c.warnings.iter()),
    )
}

/// `parse` on the input (with and without a trailing newline), and the spec parsers on it.
pub fn check_cmdline(data: &[u8]) {
    let parsed = cmdline::parse(data);
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    match &parsed {
        Ok(c) => {
            assert!(body.len() <= cmdline::MAX_CMDLINE);
            if !c.image.is_empty() {
                assert_normalized(c.image.as_bytes());
            }
            if !c.init.is_empty() {
                assert_eq!(check_path(c.init.as_bytes()), Ok(()));
            }
            if !c.oem_label.is_empty() {
                let spec = [b"LABEL=", c.oem_label.as_bytes()].concat();
                check_device(
                    &spec,
                    Device::parse(&spec).expect("the OEM label is a valid tag"),
                );
            }
            assert!(
                overlay_backing(c.overlay.as_bytes()).is_ok(),
                "overlay {}",
                show(c.overlay.as_bytes())
            );
            assert!(c.mounts.len() <= 16);
            for m in c.mounts.iter() {
                assert!(volume_spec(m).is_ok(), "mount {}", show(m));
            }
            assert!(c.sysroot_wait_s >= 1);
            assert!(c.warnings.len() <= 8 && c.ignored.len() <= 16);
        }
        Err(e) => {
            assert!(!e.reason.is_empty());
            assert!(e.token.len() <= 64);
            if body.len() > cmdline::MAX_CMDLINE {
                assert_eq!(e.reason, "command line too long");
            }
        }
    }
    // A trailing newline (as /proc/cmdline has) changes nothing.
    if !data.ends_with(b"\n") {
        let with_nl = [data, b"\n"].concat();
        let again = cmdline::parse(&with_nl);
        match (&parsed, &again) {
            (Ok(a), Ok(b)) => assert_eq!(cmdline_summary(a), cmdline_summary(b)),
            (Err(a), Err(b)) => assert!(a == b, "different errors with a trailing newline"),
            _ => panic!("a trailing newline changed the outcome"),
        }
    }
    check_specs(body);
    // Every token on its own, too (the spec parsers see single tokens in real use).
    for token in body
        .split(|c| c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .take(64)
    {
        check_specs(token);
        if let Some(eq) = token.iter().position(|&c| c == b'=') {
            check_specs(&token[eq + 1..]);
        }
    }
}

/// `Device::parse`, `volume_spec` and `overlay_backing` on one spec.
pub fn check_specs(spec: &[u8]) {
    if let Ok(d) = Device::parse(spec) {
        check_device(spec, d);
    }
    if let Ok((d, mount_point)) = volume_spec(spec) {
        assert_normalized(mount_point.as_bytes());
        let colon = spec
            .windows(2)
            .rposition(|p| p == b":/")
            .expect("a volume has :/");
        check_device(&spec[..colon], d);
    }
    match overlay_backing(spec) {
        Ok(Backing::Tmpfs(size)) => {
            assert!(spec.ends_with(size) && size.first().is_some_and(u8::is_ascii_digit));
        }
        Ok(Backing::Device(d)) => check_device(spec, d),
        Err(_) => {}
    }
}

/// A parsed device names a node under /dev whose path is safe in fstab and mount data, and the
/// udev encoding of a tag decodes back to the tag.
pub fn check_device(spec: &[u8], d: Device) {
    let mut path = Text::<192>::new();
    d.by_path(&mut path);
    let p = path.as_bytes();
    let s = show(spec);
    assert!(p.starts_with(b"/dev/"), "device path of {s} is {}", show(p));
    assert!(
        p.iter().all(|&c| c > b' ' && c != 0x7f && c != b'"'),
        "device path of {s} has a blank, control character or quote: {}",
        show(p)
    );
    if d.kind == DeviceKind::Path {
        // A device path keeps every rule of a normalized path except that it may contain `:`
        // (every /dev/disk/by-path name has one).
        let mut again = Text::<256>::new();
        normalize_device(p, &mut again).expect("a device path normalizes");
        assert_eq!(
            again.as_bytes(),
            p,
            "normalize_device is not idempotent on {s}"
        );
        let colons_hidden: Vec<u8> = p
            .iter()
            .map(|&c| if c == b':' { b'_' } else { c })
            .collect();
        assert_normalized(&colons_hidden);
        assert!(p.len() <= 128);
        return;
    }
    let name = &p[p.iter().rposition(|&c| c == b'/').unwrap() + 1..];
    assert_eq!(
        decode_udev(name),
        d.value.as_bytes(),
        "by-path of {s} does not decode to the tag"
    );
    assert!(!d.value.is_empty() && d.value.as_bytes() != b"." && d.value.as_bytes() != b"..");
}

fn decode_udev(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'\\' && name.get(i + 1) == Some(&b'x') && i + 4 <= name.len() {
            let hex = std::str::from_utf8(&name[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// layout

/// The lists of a layout, for comparisons.
pub fn layout_summary(l: &Layout) -> String {
    let list = |it: &mut dyn Iterator<Item = &[u8]>| it.map(show).collect::<Vec<_>>().join(" ");
    format!(
        "rw=[{}] binds=[{}] overlay={} target={} volumes=[{}]",
        list(&mut l.rw_paths.iter()),
        list(&mut l.binds.iter()),
        show(l.overlay.as_bytes()),
        show(l.state_target.as_bytes()),
        list(&mut l.volumes.iter()),
    )
}

/// Input: `main [\0 extra [\0 cmdline-overlay]]`. Parses, builds the layout, checks it, renders
/// it and reads the rendering back: the same layout must come out.
pub fn check_layout(data: &[u8]) -> Option<Layout> {
    let mut parts = data.splitn(3, |&c| c == 0);
    let main_text = parts.next().unwrap_or(&[]);
    let extra_text = parts.next();
    let cmdline_overlay = parts.next().unwrap_or(&[]);

    let mut main = Box::new(EnvVars::new());
    if let Err(e) = parse_env(main_text, &mut main) {
        let lines = main_text.iter().filter(|&&c| c == b'\n').count() as u32 + 1;
        assert!(
            e.line >= 1 && e.line <= lines,
            "error line {} of {lines}",
            e.line
        );
        return None;
    }
    // A NUL anywhere is refused as binary data, on the line it is on.
    if !data.is_empty() {
        let mut probe = Box::new(EnvVars::new());
        let e = parse_env(data, &mut probe);
        if extra_text.is_some() {
            assert_eq!(e.map_err(|e| e.reason), Err("binary data"));
        }
    }
    let mut extra = Box::new(EnvVars::new());
    let extra = match extra_text {
        Some(t) if parse_env(t, &mut extra).is_ok() => Some(&*extra),
        Some(_) => return None,
        None => None,
    };
    let layout = Layout::from_env(&main, extra, cmdline_overlay).ok()?;
    check_layout_invariants(&layout);

    let mut rendered = Box::new(Text::<16384>::new());
    if layout.render_env(&mut rendered).is_err() {
        return Some(layout); // too big to render is reported by the caller, not a wrong file
    }
    let text = rendered.as_bytes();
    let mut back = Box::new(EnvVars::new());
    if let Err(e) = parse_env(text, &mut back) {
        panic!(
            "render_env output does not parse (line {}: {}) for {}",
            e.line,
            e.reason,
            layout_summary(&layout)
        );
    }
    let again = Layout::from_env(&back, None, b"").unwrap_or_else(|e| {
        panic!(
            "render_env output is refused ({}: {} at '{}') for {}",
            e.key,
            e.reason,
            show(e.item.as_bytes()),
            layout_summary(&layout)
        )
    });
    assert_eq!(
        layout_summary(&layout),
        layout_summary(&again),
        "render_env round trip"
    );
    let mut twice = Box::new(Text::<16384>::new());
    assert!(
        again.render_env(&mut twice).is_ok(),
        "the same layout renders again"
    );
    assert_eq!(
        show(text),
        show(twice.as_bytes()),
        "render_env is not a fixed point"
    );
    Some(layout)
}

pub fn check_layout_invariants(l: &Layout) {
    for list in [&l.rw_paths, &l.binds] {
        let items: Vec<&[u8]> = list.iter().collect();
        for (i, p) in items.iter().enumerate() {
            assert_normalized(p);
            assert!(!items[..i].contains(p), "duplicate {}", show(p));
        }
    }
    assert!(
        !l.rw_paths.is_empty(),
        "RW_PATHS falls back to the defaults"
    );
    assert!(overlay_backing(l.overlay.as_bytes()).is_ok());
    for v in l.volumes.iter() {
        assert!(volume_spec(v).is_ok(), "volume {}", show(v));
    }
    assert_normalized(l.state_target.as_bytes());
    assert_ne!(l.state_target.as_bytes(), b"/");

    // bind_order: a stable sort of the binds by (number of parts, last part).
    let mut order = [0u8; 96];
    let n = l.bind_order(&mut order);
    assert_eq!(n, l.binds.len());
    let mut seen = [false; 96];
    for &i in &order[..n] {
        assert!(
            !std::mem::replace(&mut seen[i as usize], true),
            "bind_order repeats {i}"
        );
    }
    let key = |i: u8| {
        let p = l.binds.get(i as usize).unwrap();
        (
            p.split(|&c| c == b'/').count(),
            p.rsplit(|&c| c == b'/').next().unwrap().to_vec(),
        )
    };
    for w in order[..n].windows(2) {
        let (a, b) = (key(w[0]), key(w[1]));
        assert!(
            a < b || (a == b && w[0] < w[1]),
            "bind_order is not a stable sort"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// probe

/// A device view of fuzz bytes: `data` placed at `shift`, zeros around it, `len` bytes long.
/// Counts reads, so a probe that loops on a corrupt structure shows up.
pub struct Virt<'a> {
    pub data: &'a [u8],
    pub shift: u64,
    pub len: u64,
    pub reads: u32,
}

impl BlockRead for Virt<'_> {
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> bool {
        self.reads += 1;
        let Some(end) = off.checked_add(buf.len() as u64) else {
            return false;
        };
        if end > self.len {
            return false;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let at = off + i as u64;
            *b = at
                .checked_sub(self.shift)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| self.data.get(o))
                .copied()
                .unwrap_or(0);
        }
        true
    }
}

/// What a probe reported, as text.
pub fn probe_summary(data: &[u8]) -> Option<String> {
    let mut dev = data;
    probe_fs(&mut dev).map(|i| {
        format!(
            "{} label={} uuid={}",
            i.fs.name(),
            show(i.label.as_bytes()),
            i.uuid.as_str()
        )
    })
}

/// The GPT entries found with `sector_size`, as text, or `None` without a valid table.
pub fn gpt_summary(data: &[u8], sector_size: u32) -> Option<Vec<String>> {
    let mut rows = Vec::new();
    let mut dev = data;
    gpt_partitions(&mut dev, data.len() as u64, sector_size, &mut |p| {
        rows.push(format!(
            "{} {} {} {} {}",
            p.number,
            show(p.name.as_bytes()),
            p.uuid.as_str(),
            p.first_lba,
            p.last_lba
        ))
    })
    .then_some(rows)
}

/// `probe_fs` and `gpt_partitions` on the bytes as they are, zero-padded to 1 MiB, and moved to
/// 32 KiB and 64 KiB (where the ISO 9660 and btrfs superblocks live).
pub fn check_probe(data: &[u8]) {
    const MIB: u64 = 1 << 20;
    let n = data.len() as u64;
    for (shift, len) in [
        (0, n),
        (0, MIB.max(n)),
        (0x8000, 0x8000 + n),
        (0x10000, 0x10000 + MIB),
    ] {
        let mut dev = Virt {
            data,
            shift,
            len,
            reads: 0,
        };
        if let Some(info) = probe_fs(&mut dev) {
            let label = info.label.as_bytes();
            assert!(!label.contains(&0), "label with NUL");
            assert!(
                label.trim_ascii_end().len() == label.len(),
                "label with trailing blanks"
            );
            let uuid = info.uuid.as_str();
            let ok = match info.fs {
                FsType::Vfat => uuid.is_empty() || is_hex_groups(uuid, &[4, 4]),
                FsType::Iso9660 => {
                    uuid.is_empty() || (uuid.len() == 22 && uuid.split('-').count() == 7)
                }
                _ => uuid.is_empty() || is_hex_groups(uuid, &[8, 4, 4, 4, 12]),
            };
            assert!(ok, "{} uuid {uuid:?}", info.fs.name());
        }
        assert!(dev.reads <= 1200, "probe_fs made {} reads", dev.reads);
        for ss in [512, 4096, 0] {
            let mut dev = Virt {
                data,
                shift,
                len,
                reads: 0,
            };
            let mut last = 0;
            let mut count = 0;
            let found = gpt_partitions(&mut dev, len, ss, &mut |p| {
                assert!(p.number > last && p.number <= 256, "entry numbers");
                last = p.number;
                count += 1;
                assert!(
                    std::str::from_utf8(p.name.as_bytes()).is_ok(),
                    "GPT name is not UTF-8"
                );
                assert!(p.name.len() <= 36 * 3);
                assert!(is_hex_groups(p.uuid.as_str(), &[8, 4, 4, 4, 12]) || p.uuid.is_empty());
            });
            assert!(found || count == 0, "entries reported for an invalid table");
            assert!(
                dev.reads <= 2 * 256 + 4 + 2 * 256 + 4,
                "gpt made {} reads",
                dev.reads
            );
        }
    }
}

fn is_hex_groups(s: &str, groups: &[usize]) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == groups.len()
        && parts
            .iter()
            .zip(groups)
            .all(|(p, &n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------------------------
// fstab

/// Input: `\0`-separated fields, four per `add` call. Every line must be 6 whitespace-separated
/// fields ending in `0 0`; the lines decode back to what was added (in any order: a mount goes
/// before the mounts below it), and no mount point other than `/` comes after one below it.
pub fn check_fstab(data: &[u8]) -> Vec<[Vec<u8>; 4]> {
    let fields: Vec<&[u8]> = data.split(|&c| c == 0).collect();
    let mut f = Box::new(Fstab::new());
    let mut added = Vec::new();
    for rec in fields.chunks(4) {
        let [spec, file, fstype, opts] = [0, 1, 2, 3].map(|i| rec.get(i).copied().unwrap_or(b"x"));
        // Callers never add an empty spec, file or type (there is no fstab form for one).
        if spec.is_empty() || file.is_empty() || fstype.is_empty() {
            continue;
        }
        let before = f.as_bytes().len();
        f.add(spec, file, fstype, opts);
        let after = f.as_bytes();
        assert!(after.len() >= before);
        if after.len() > before {
            let opts = if opts.is_empty() {
                &b"defaults"[..]
            } else {
                opts
            };
            added.push([spec.to_vec(), file.to_vec(), fstype.to_vec(), opts.to_vec()]);
        }
    }
    let text = f.as_bytes();
    assert!(text.is_empty() || text.ends_with(b" 0 0\n"));
    let lines: Vec<&[u8]> = text
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), added.len(), "one line per added entry");
    let mut decoded: Vec<[Vec<u8>; 4]> = Vec::new();
    for line in &lines {
        let cols: Vec<&[u8]> = line
            .split(|&c| c.is_ascii_whitespace() || c == 0x0b)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cols.len(),
            6,
            "fstab line {} does not have 6 fields",
            show(line)
        );
        assert_eq!(&cols[4..], [b"0", b"0"]);
        assert!(
            !line.starts_with(b"#"),
            "fstab line {} reads as a comment",
            show(line)
        );
        for col in &cols {
            assert!(
                col.iter().all(|&c| c >= b' ' && c != 0x7f),
                "raw control character in {}",
                show(line)
            );
        }
        decoded.push([0, 1, 2, 3].map(|i| unescape_fstab(cols[i])));
    }
    // Parents first: a later line's mount point never holds an earlier one's.
    for (i, earlier) in decoded.iter().enumerate() {
        for later in &decoded[i + 1..] {
            let parent = &later[1];
            let below = parent.as_slice() != b"/"
                && earlier[1].len() > parent.len()
                && earlier[1].starts_with(parent)
                && earlier[1][parent.len()] == b'/';
            assert!(
                !below,
                "{} is listed after {}, which lies below it",
                show(parent),
                show(&earlier[1])
            );
        }
    }
    let (mut got, mut want) = (decoded, added.clone());
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "the fstab lines do not decode back to what was added"
    );
    added
}

/// fstab(5)'s octal escapes, as libmount decodes them.
pub fn unescape_fstab(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < field.len() {
        let oct = field.get(i + 1..i + 4);
        if field[i] == b'\\' && oct.is_some_and(|o| o.iter().all(|c| (b'0'..=b'7').contains(c))) {
            let o = oct.unwrap();
            let v = (u32::from(o[0] - b'0') << 6)
                | (u32::from(o[1] - b'0') << 3)
                | u32::from(o[2] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// inroot

pub mod inroot {
    use super::show;
    use immucore::sys::inroot::{real_path, Root};
    use immucore::util::fixed::Text;
    use rustix::fd::{AsFd, AsRawFd, OwnedFd};
    use std::collections::BTreeMap;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MAX_ENTRIES: usize = 24;

    static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // One fixed scratch directory per thread: the same input always sees the same paths.
        static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
    }

    /// Scratch tree of one check: `<top>/outside` (must stay untouched), `<top>/a/b/root` (the
    /// root). Removed before and after each check; a crashing input can leave one behind under
    /// /dev/shm (or the temp dir)/immucore-fuzz-inroot-*.
    pub struct Scratch {
        pub top: PathBuf,
        pub root: PathBuf,
    }

    impl Scratch {
        fn new() -> Scratch {
            let slot = SLOT.with(|s| *s);
            // tmpfs when there is one: on a disk, creating and removing the tree dominates.
            let base = match Path::new("/dev/shm").metadata() {
                Ok(m) if m.is_dir() => PathBuf::from("/dev/shm"),
                _ => std::env::temp_dir(),
            };
            let top = base.join(format!(
                "immucore-fuzz-inroot-{}-{slot}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&top);
            let root = top.join("a/b/root");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::create_dir_all(top.join("outside/etc")).unwrap();
            std::fs::write(top.join("outside/file"), b"x").unwrap();
            Scratch { top, root }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.top);
        }
    }

    /// Everything under `top` except the root's subtree: (kind, symlink target) by path.
    fn snapshot(top: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut todo = vec![top.to_path_buf()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p == skip {
                    continue;
                }
                let m = std::fs::symlink_metadata(&p).unwrap();
                let what = if m.file_type().is_symlink() {
                    format!("link {:?}", std::fs::read_link(&p).unwrap())
                } else if m.is_dir() {
                    todo.push(p.clone());
                    "dir".to_string()
                } else {
                    format!("file {}", m.len())
                };
                out.insert(p, what);
            }
        }
        out
    }

    /// One entry of the tree to build.
    #[derive(Debug)]
    pub enum Node<'a> {
        Dir(&'a [u8]),
        File(&'a [u8]),
        Link(&'a [u8], Vec<u8>),
    }

    /// Input: lines; the last is the path to resolve, the others build the tree under the
    /// root: `path<TAB>target` a symlink, `path/` a directory, `path` an empty file. An absolute
    /// link target is prefixed with `<top>/outside`, so a link that escaped would land there.
    pub fn parse_input<'a>(data: &'a [u8], outside: &[u8]) -> (Vec<Node<'a>>, &'a [u8]) {
        let mut lines: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
        let query = lines.pop().unwrap_or(&[]);
        let nodes = lines
            .into_iter()
            .take(MAX_ENTRIES)
            .map(|l| match l.iter().position(|&c| c == b'\t') {
                Some(tab) => {
                    let target = &l[tab + 1..];
                    let target = if target.starts_with(b"/") {
                        [outside, target].concat()
                    } else {
                        target.to_vec()
                    };
                    Node::Link(&l[..tab], target)
                }
                None if l.ends_with(b"/") => Node::Dir(l),
                None => Node::File(l),
            })
            .collect();
        (nodes, query)
    }

    /// Creates `node` under `root` without ever following a symlink: parents must be real
    /// directories (made as needed); entries that would need anything else are skipped.
    fn create(root: &Path, node: &Node) {
        let (path, last_is_dir) = match node {
            Node::Dir(p) => (*p, true),
            Node::File(p) | Node::Link(p, _) => (*p, false),
        };
        if path.contains(&0) || path.len() > 200 {
            return;
        }
        let comps: Vec<&[u8]> = path
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        if comps.is_empty() || comps.iter().any(|c| *c == b"..") {
            return;
        }
        let mut cur = root.to_path_buf();
        for (i, comp) in comps.iter().enumerate() {
            cur.push(OsStr::from_bytes(comp));
            let last = i + 1 == comps.len();
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() && !m.file_type().is_symlink() => continue,
                Ok(_) => return, // exists as something else: leave it
                Err(_) => {}
            }
            if !last || last_is_dir {
                if std::fs::create_dir(&cur).is_err() {
                    return;
                }
                continue;
            }
            match node {
                Node::Link(_, target) => {
                    if target.contains(&0) {
                        return;
                    }
                    let _ = std::os::unix::fs::symlink(OsStr::from_bytes(target), &cur);
                }
                _ => {
                    let _ = std::fs::write(&cur, b"");
                }
            }
        }
    }

    fn kernel_path(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    /// Asserts `fd` is the root or below it, and that `real_path` agrees with the kernel.
    fn assert_inside(fd: &OwnedFd, root: &Path, what: &str, query: &[u8]) -> PathBuf {
        let p = kernel_path(fd);
        assert!(
            p.starts_with(root),
            "{what}({}) resolved to {p:?}, outside {root:?}",
            show(query)
        );
        let mut t = Text::<512>::new();
        if real_path(fd.as_fd(), &mut t).is_ok() {
            assert_eq!(
                t.as_bytes(),
                p.as_os_str().as_bytes(),
                "real_path disagrees with the kernel"
            );
        }
        p
    }

    /// What happened, for regression tests: the resolved paths relative to the root, or errors.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Outcome {
        pub dir: Result<String, i32>,
        pub mkdir_p: Result<String, i32>,
    }

    pub fn check_inroot(data: &[u8]) -> Outcome {
        let s = Scratch::new();
        let outside = s.top.join("outside");
        let (nodes, query) = parse_input(data, outside.as_os_str().as_bytes());
        for n in &nodes {
            create(&s.root, n);
        }
        let before = snapshot(&s.top, &s.root);
        let root = Root::open(s.root.as_os_str().as_bytes()).expect("open the scratch root");
        let rel = |p: PathBuf| {
            let r = p.strip_prefix(&s.root).unwrap();
            format!("/{}", r.display())
        };
        let dir = root
            .dir(query)
            .map(|fd| rel(assert_inside(&fd, &s.root, "dir", query)));
        let made = root.mkdir_p(query, 0o755);
        let mkdir_p = match &made {
            Ok(fd) => {
                let p = assert_inside(fd, &s.root, "mkdir_p", query);
                assert!(
                    std::fs::metadata(&p).unwrap().is_dir(),
                    "mkdir_p returned a non-directory"
                );
                // The directory is there now: resolving the same path finds the same one.
                let again = root
                    .dir(query)
                    .unwrap_or_else(|e| panic!("dir after mkdir_p: {e:?}"));
                assert_eq!(kernel_path(&again), p, "dir() after mkdir_p differs");
                if let Ok(d) = &dir {
                    assert_eq!(
                        *d,
                        rel(p.clone()),
                        "mkdir_p and dir differ on an existing path"
                    );
                }
                let twice = root.mkdir_p(query, 0o755).expect("mkdir_p twice");
                assert_eq!(kernel_path(&twice), p, "mkdir_p is not idempotent");
                Ok(rel(p))
            }
            Err(e) => Err(e.raw_os_error()),
        };
        drop(made);
        drop(root);
        let after = snapshot(&s.top, &s.root);
        assert_eq!(
            before,
            after,
            "something outside the root changed for {}",
            show(query)
        );
        Outcome {
            dir: dir.map_err(|e| e.raw_os_error()),
            mkdir_p,
        }
    }
}
