//! Filesystem superblock probes: type, label and UUID the way `blkid -p` reports them.
//!
//! A few small reads per device, no heap. Every byte comes from an untrusted disk, so each field
//! access goes through `field`/`arr` (out of range reads as empty/zero) and offsets built from
//! disk values stay inside proven bounds. Types are tried in a fixed order and the first match
//! wins, so a device never matches two types.
//!
//! ext2/3/4 is always probed; every other type has a cargo feature of its name. A type whose
//! feature is off is not recognised (`NOT_PROBED` lists them), but keeps its `FsType` variant:
//! a root image's type still has a name, and the fuzz checks match on every type in any build.

use crate::util::fixed::{hex_pair, Text};
use crate::util::words::split;

/// Random-access reads from a block device or an image.
pub trait BlockRead {
    /// Fills `buf` from byte offset `off`; false if the device is shorter or the read failed.
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> bool;
}

/// An in-memory image (tests, fuzzing).
impl BlockRead for &[u8] {
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> bool {
        let src = usize::try_from(off)
            .ok()
            .and_then(|o| self.get(o..)?.get(..buf.len()));
        if let Some(s) = src {
            buf.copy_from_slice(s);
        }
        src.is_some()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Vfat,
    Erofs,
    Iso9660,
    Squashfs,
}

impl FsType {
    /// The type name `mount(2)`, fstab and `blkid` use.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Vfat => "vfat",
            FsType::Erofs => "erofs",
            FsType::Iso9660 => "iso9660",
            FsType::Squashfs => "squashfs",
        }
    }
}

/// The filesystems this build does not probe (their feature is off): a label or UUID on one of
/// them is never found.
pub const NOT_PROBED: &[&str] = &[
    #[cfg(not(feature = "xfs"))]
    "xfs",
    #[cfg(not(feature = "btrfs"))]
    "btrfs",
    #[cfg(not(feature = "vfat"))]
    "vfat",
    #[cfg(not(feature = "erofs"))]
    "erofs",
    #[cfg(not(feature = "iso9660"))]
    "iso9660",
    #[cfg(not(feature = "squashfs"))]
    "squashfs",
];

/// What a probe found. An empty `label`/`uuid` means the filesystem has none (or, for a label
/// longer than 64 bytes, that it cannot be matched).
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub struct FsInfo {
    pub fs: FsType,
    pub label: Text<64>,
    pub uuid: Text<40>,
}

/// `N` bytes at `off`, zeros when out of range.
pub(crate) fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    field(b, off, N).try_into().unwrap_or([0; N])
}

/// `len` bytes at `off`, empty when out of range.
pub(crate) fn field(b: &[u8], off: usize, len: usize) -> &[u8] {
    b.get(off..).and_then(|s| s.get(..len)).unwrap_or(&[])
}

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(arr(b, off))
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

#[cfg(feature = "xfs")]
fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(arr(b, off))
}

/// `N` bytes at `off`; all zeros (which matches no magic) when the read fails.
pub(crate) fn read<const N: usize>(dev: &mut impl BlockRead, off: u64) -> [u8; N] {
    let mut b = [0; N];
    if !dev.read_at(off, &mut b) {
        b = [0; N];
    }
    b
}

/// Appends `bytes` as hex digits (upper-case when `upper`), with a `-` before byte `i` when bit
/// `i` of `dashes` is set.
fn push_hex(t: &mut Text<40>, bytes: &[u8], dashes: u32, upper: bool) {
    for (i, &b) in bytes.iter().enumerate() {
        if dashes >> i & 1 != 0 {
            let _ = t.push_byte(b'-');
        }
        let mut pair = hex_pair(b);
        if upper {
            pair.make_ascii_uppercase();
        }
        let _ = t.push(&pair);
    }
}

/// Appends 16 bytes in stored order as `8-4-4-4-12` lower-case hex; nothing when all zero
/// (blkid omits those) or not 16 bytes.
pub(crate) fn push_uuid(t: &mut Text<40>, u: &[u8]) {
    if u.len() == 16 && u.iter().any(|&b| b != 0) {
        push_hex(t, u, 1 << 4 | 1 << 6 | 1 << 8 | 1 << 10, false);
    }
}

/// Records a match: `raw_label` as blkid shows it (up to the first NUL, trailing whitespace
/// removed; none when longer than the label room) and the UUID from 16 bytes (see
/// `push_uuid`). Returns `Some(fs)` for the probe to pass on.
fn found(out: &mut FsInfo, fs: FsType, raw_label: &[u8], uuid: &[u8]) -> Option<FsType> {
    let s = split(raw_label, 0).next().unwrap_or(&[]);
    let _ = out.label.push(s.trim_ascii_end());
    push_uuid(&mut out.uuid, uuid);
    Some(fs)
}

/// Identifies the filesystem on `dev`, or `None` when no type this build probes matches.
pub fn probe_fs(dev: &mut impl BlockRead) -> Option<FsInfo> {
    // Each probe fills in label and UUID only when it matches.
    let mut out = FsInfo {
        fs: FsType::Ext2,
        label: Text::EMPTY,
        uuid: Text::EMPTY,
    };
    out.fs = identify(dev, &mut out)?;
    Some(out)
}

/// The probes in their fixed order, the first match winning; the blocks several of them look
/// at are read once.
fn identify(dev: &mut impl BlockRead, out: &mut FsInfo) -> Option<FsType> {
    #[cfg(any(feature = "xfs", feature = "squashfs", feature = "vfat"))]
    let sb0 = read::<512>(dev, 0);
    let sb1 = read::<1024>(dev, 1024);
    #[cfg(feature = "xfs")]
    if let Some(fs) = xfs(&sb0, out) {
        return Some(fs);
    }
    if let Some(fs) = ext(&sb1, out) {
        return Some(fs);
    }
    #[cfg(feature = "btrfs")]
    if let Some(fs) = btrfs(&read::<1024>(dev, 0x10000), out) {
        return Some(fs);
    }
    #[cfg(feature = "erofs")]
    if let Some(fs) = erofs(&sb1, out) {
        return Some(fs);
    }
    #[cfg(feature = "squashfs")]
    if let Some(fs) = squashfs(&sb0) {
        return Some(fs);
    }
    #[cfg(feature = "vfat")]
    if let Some(fs) = vfat(dev, &sb0, out) {
        return Some(fs);
    }
    #[cfg(feature = "iso9660")]
    if let Some(fs) = iso9660(dev, out) {
        return Some(fs);
    }
    None
}

#[cfg(feature = "xfs")]
fn xfs(s: &[u8], out: &mut FsInfo) -> Option<FsType> {
    let bs = be32(s, 4);
    if field(s, 0, 4) != b"XFSB" || !bs.is_power_of_two() || !matches!(bs, 512..=65536) {
        return None;
    }
    found(out, FsType::Xfs, field(s, 108, 12), field(s, 32, 16))
}

/// ext2/3/4 the way blkid decides: ext4 once a feature outside ext3's set is on (extents,
/// 64bit, flex_bg, huge_file, dir_nlink, extra_isize, metadata_csum, ...), else ext3 with a
/// journal, else ext2. An external journal device (jbd) is no filesystem.
// Not inlined: inside `probe_fs` it costs more code (measured, x86_64).
#[inline(never)]
fn ext(s: &[u8], out: &mut FsInfo) -> Option<FsType> {
    let (compat, incompat, ro) = (le32(s, 0x5C), le32(s, 0x60), le32(s, 0x64));
    if le16(s, 0x38) != 0xEF53 || incompat & 0x8 != 0 {
        return None;
    }
    let journal = compat & 0x4 != 0;
    // ro_compat ext3 knows: sparse_super, large_file, btree_dir; incompat: filetype, meta_bg
    // and, with a journal, recover.
    let known = if journal { 0x16 } else { 0x12 };
    let fs = if ro & !0x7 != 0 || incompat & !known != 0 {
        FsType::Ext4
    } else if journal {
        FsType::Ext3
    } else {
        FsType::Ext2
    };
    found(out, fs, field(s, 0x78, 16), field(s, 0x68, 16))
}

/// Size in bytes an ext2/3/4 filesystem claims (blocks × block size), to tell a truncated image
/// from a whole one before mounting it; `None` for other filesystems.
pub fn ext_size(dev: &mut impl BlockRead) -> Option<u64> {
    let mut sb = [0u8; 0x160];
    if !dev.read_at(1024, &mut sb) || le16(&sb, 0x38) != 0xEF53 {
        return None;
    }
    let hi = if le32(&sb, 0x60) & 0x80 != 0 {
        le32(&sb, 0x150) as u64
    } else {
        0
    };
    let blocks = (hi << 32) | le32(&sb, 0x04) as u64;
    let block_size = 1024u64.checked_shl(le32(&sb, 0x18))?;
    blocks.checked_mul(block_size)
}

#[cfg(feature = "btrfs")]
fn btrfs(s: &[u8], out: &mut FsInfo) -> Option<FsType> {
    if field(s, 0x40, 8) != b"_BHRfS_M" {
        return None;
    }
    found(out, FsType::Btrfs, field(s, 0x12B, 256), field(s, 0x20, 16))
}

#[cfg(feature = "erofs")]
fn erofs(s: &[u8], out: &mut FsInfo) -> Option<FsType> {
    let blkszbits = *s.get(12)?;
    if le32(s, 0) != 0xE0F5_E1E2 || !matches!(blkszbits, 9..=16) {
        return None;
    }
    found(out, FsType::Erofs, field(s, 0x40, 16), field(s, 0x30, 16))
}

/// No label or UUID read.
#[cfg(feature = "squashfs")]
fn squashfs(s: &[u8]) -> Option<FsType> {
    (field(s, 0, 4) == b"hsqs" && le16(s, 28) == 4).then_some(FsType::Squashfs)
}

#[cfg(feature = "vfat")]
const NO_NAME: &[u8; 11] = b"NO NAME    ";

/// FAT12/16/32. The label is the root-directory volume entry when there is one (as blkid and
/// /dev/disk/by-label show it), else the boot-sector copy; "NO NAME" means none. Unlike
/// current blkid (2.38), which then shows the boot-sector copy only as LABEL_FATBOOT, no LABEL.
// Not inlined: inside `probe_fs` it costs more code (measured, x86_64).
#[inline(never)]
#[cfg(feature = "vfat")]
fn vfat(dev: &mut impl BlockRead, b: &[u8], out: &mut FsInfo) -> Option<FsType> {
    let bps = u64::from(le16(b, 0x0B));
    let spc = u64::from(*b.get(0x0D)?);
    let reserved = u64::from(le16(b, 0x0E));
    let nfats = u64::from(*b.get(0x10)?);
    let media = *b.get(0x15)?;
    let fat16 = u64::from(le16(b, 0x16));
    let fat32 = u64::from(le32(b, 0x24));
    // Extended BPB (signature, serial, label, type string): 0x26 on FAT12/16, 0x42 on FAT32.
    let (ext, magic) = if fat16 != 0 {
        (0x26, &b"FAT"[..])
    } else {
        (0x42, &b"FAT32   "[..])
    };
    if field(b, 510, 2) != [0x55, 0xAA]
        || !field(b, ext + 16, 8).starts_with(magic)
        || fat16 | fat32 == 0
        || nfats == 0
        || reserved == 0
        || !(media >= 0xF8 || media == 0xF0)
        || !spc.is_power_of_two()
        || !bps.is_power_of_two()
        || !matches!(bps, 512..=4096)
    {
        return None;
    }
    // No overflow: reserved < 2^16, nfats * fat < 2^40, (root - 2) * spc < 2^40, bps <= 2^12.
    let fats = reserved + nfats * if fat16 != 0 { fat16 } else { fat32 };
    let (dir, entries) = if fat16 != 0 {
        (fats * bps, u64::from(le16(b, 0x11)))
    } else {
        // Only the root directory's first cluster: the label entry comes first in practice.
        let root = u64::from(le32(b, 0x2C));
        let ok = root >= 2 && root < fat32 * bps / 4;
        (
            (fats + root.saturating_sub(2) * spc) * bps,
            if ok { spc * bps / 32 } else { 0 },
        )
    };
    let sig = *b.get(ext)?; // 0x29: serial and label present; 0x28: serial only
    let boot = if sig == 0x29 {
        arr(b, ext + 5)
    } else {
        *NO_NAME
    };
    let raw = match dir_label(dev, dir, entries) {
        Some(l) if l != *NO_NAME => l,
        _ => boot,
    };
    if fat16 == 0 || sig == 0x28 || sig == 0x29 {
        // The serial, a little-endian number, as `XXXX-XXXX`.
        let serial = le32(b, ext + 1).to_be_bytes();
        push_hex(&mut out.uuid, &serial, 1 << 2, true);
    }
    let raw_label = if raw == *NO_NAME { &[][..] } else { &raw };
    found(out, FsType::Vfat, raw_label, &[])
}

/// The volume-label entry among the first `entries` (at most 65535) of the directory at `off`.
#[cfg(feature = "vfat")]
fn dir_label(dev: &mut impl BlockRead, off: u64, entries: u64) -> Option<[u8; 11]> {
    let mut chunk = [0u8; 512];
    for i in 0..entries {
        let slot = (i % 16) as usize * 32;
        if slot == 0 {
            chunk = read(dev, off.checked_add(i * 32)?);
        }
        let e = field(&chunk, slot, 32);
        let (first, attr) = (*e.first()?, *e.get(11)?);
        if first == 0 {
            return None; // end of directory (or a failed read)
        }
        let skip = first == 0xE5 || le16(e, 20) != 0 || le16(e, 26) != 0 || attr & 0x3F == 0x0F;
        if !skip && attr & 0x18 == 0x08 {
            return Some(arr(e, 0));
        }
    }
    None
}

/// ISO 9660: the primary volume descriptor among the first 16. blkid makes the UUID from the
/// modification date, else the creation date.
#[cfg(feature = "iso9660")]
fn iso9660(dev: &mut impl BlockRead, out: &mut FsInfo) -> Option<FsType> {
    for i in 0..16 {
        let d = read::<1024>(dev, 0x8000 + i * 2048);
        if field(&d, 1, 5) != b"CD001" || d.first() == Some(&0xFF) {
            return None;
        }
        if d.first() == Some(&1) {
            if !iso_date(field(&d, 830, 16), &mut out.uuid) {
                iso_date(field(&d, 813, 16), &mut out.uuid);
            }
            return found(out, FsType::Iso9660, field(&d, 40, 32), &[]);
        }
    }
    None
}

/// Appends `YYYYMMDDHHMMSSCC` digits as `YYYY-MM-DD-HH-MM-SS-CC` to `t`; false (and nothing
/// appended) when unset (all '0') or not such digits.
#[cfg(feature = "iso9660")]
fn iso_date(d: &[u8], t: &mut Text<40>) -> bool {
    if d.len() != 16 || !d.iter().all(u8::is_ascii_digit) || d.iter().all(|&c| c == b'0') {
        return false;
    }
    for (i, &c) in d.iter().enumerate() {
        if i >= 4 && i % 2 == 0 {
            let _ = t.push_byte(b'-');
        }
        let _ = t.push_byte(c);
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::string::{String, ToString};
    use std::vec::Vec;
    use std::{format, vec};

    /// A file-backed device, so 300 MiB sparse images need not be loaded.
    pub struct FileDev(pub std::fs::File);

    impl BlockRead for FileDev {
        fn read_at(&mut self, off: u64, buf: &mut [u8]) -> bool {
            self.0.read_exact_at(buf, off).is_ok()
        }
    }

    /// Debian package of each external tool the tests run.
    const PACKAGES: &[(&str, &str)] = &[
        ("mkfs.ext2", "e2fsprogs"),
        ("mkfs.ext3", "e2fsprogs"),
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.xfs", "xfsprogs"),
        ("mkfs.btrfs", "btrfs-progs"),
        ("mkfs.vfat", "dosfstools"),
        ("mkfs.erofs", "erofs-utils"),
        ("mksquashfs", "squashfs-tools"),
        ("xorriso", "xorriso"),
        ("sgdisk", "gdisk"),
        ("blkid", "util-linux"),
    ];

    /// Runs a tool (with /usr/sbin and /sbin on PATH); a missing tool fails the test loudly.
    pub fn run(cmd: &str, args: &[&str]) -> String {
        let path = format!(
            "{}:/usr/sbin:/sbin",
            std::env::var("PATH").unwrap_or_default()
        );
        let pkg = PACKAGES.iter().find(|p| p.0 == cmd).map_or("?", |p| p.1);
        let out = Command::new(cmd)
            .args(args)
            .env("PATH", path)
            .output()
            .unwrap_or_else(|e| {
                panic!("test needs `{cmd}` (Debian package `{pkg}`), cannot run it: {e}")
            });
        assert!(
            out.status.success() || cmd == "blkid",
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh scratch directory for one test.
    pub fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("immucore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A sparse file of `size` bytes.
    pub fn sparse(path: &Path, size: u64) -> String {
        std::fs::File::create(path).unwrap().set_len(size).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `(TYPE, label, UUID)` from `blkid -p -o export`, the label from key `label_key`.
    fn blkid(img: &str, label_key: &str) -> (String, String, String) {
        let out = run("blkid", &["-p", "-o", "export", img]);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        };
        (get("TYPE"), get(label_key), get("UUID"))
    }

    fn probe_file(img: &str) -> Option<FsInfo> {
        probe_fs(&mut FileDev(std::fs::File::open(img).unwrap()))
    }

    /// First `n` bytes of the image (fewer if it is shorter).
    pub fn head(img: &str, n: u64) -> Vec<u8> {
        let f = std::fs::File::open(img).unwrap();
        let len = f.metadata().unwrap().len().min(n) as usize;
        let mut v = vec![0; len];
        f.read_exact_at(&mut v, 0).unwrap();
        v
    }

    /// Tiny deterministic PRNG for the random and mutation tests.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Checks one image against blkid, then truncations, a broken magic and random mutations.
    fn check(img: &str, fs: FsType, want_label: &str, magic_at: usize) {
        check_as(img, fs, want_label, magic_at, "LABEL")
    }

    fn check_as(img: &str, fs: FsType, want_label: &str, magic_at: usize, label_key: &str) {
        let (ty, lbl, uuid) = blkid(img, label_key);
        let got = probe_file(img).unwrap_or_else(|| panic!("{img}: no filesystem found"));
        assert_eq!(got.fs, fs, "{img}");
        assert_eq!(got.fs.name(), ty, "{img}: type differs from blkid");
        assert_eq!(got.label.as_str(), lbl, "{img}: label differs from blkid");
        assert_eq!(got.label.as_str(), want_label, "{img}");
        assert_eq!(got.uuid.as_str(), uuid, "{img}: uuid differs from blkid");

        // The in-memory reader over the first 4 MiB sees the same.
        let data = head(img, 4 << 20);
        let mem = probe_fs(&mut &data[..]).expect("prefix probe");
        assert_eq!(
            (mem.fs, mem.label.as_str(), mem.uuid.as_str()),
            (fs, want_label, &*uuid)
        );

        // Truncated: never a panic, never a different type; nothing below 512 bytes.
        for cut in [
            0,
            1,
            100,
            511,
            512,
            1023,
            1024,
            1100,
            1535,
            2048,
            4095,
            4096,
            8192,
            32768,
            33000,
            34816,
            36000,
            65536,
            65600,
            66000,
            66559,
            100_000,
            1 << 20,
        ] {
            let part = data.get(..cut).unwrap_or(&data);
            if let Some(i) = probe_fs(&mut &part[..]) {
                assert!(cut >= 512 && i.fs == fs, "{img} cut at {cut}: {i:?}");
            }
        }

        // A broken magic hides the filesystem.
        let mut bad = data.clone();
        bad[magic_at] ^= 0x5A;
        assert!(
            probe_fs(&mut &bad[..]).is_none(),
            "{img}: found despite a broken magic"
        );

        // Random byte mutations of the interesting region: any answer, but no panic.
        let region = data.len().min(0x12000);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ magic_at as u64);
        for _ in 0..300 {
            let mut m = data[..region].to_vec();
            for _ in 0..1 + rng.next() % 8 {
                let at = (rng.next() % region as u64) as usize;
                m[at] = rng.next() as u8;
            }
            let _ = probe_fs(&mut &m[..]);
        }
    }

    #[test]
    fn ext_family_matches_blkid() {
        let d = scratch("ext");
        for (tool, fs) in [
            ("mkfs.ext2", FsType::Ext2),
            ("mkfs.ext3", FsType::Ext3),
            ("mkfs.ext4", FsType::Ext4),
        ] {
            let img = sparse(&d.join(tool), 16 << 20);
            run(tool, &["-q", "-F", "-L", "cos_state", &img]);
            check(&img, fs, "cos_state", 1024 + 0x38);
        }
        // ext4 features on a journal-less fs still make it ext4 for blkid.
        let img = sparse(&d.join("nojournal"), 16 << 20);
        run(
            "mkfs.ext4",
            &["-q", "-F", "-O", "^has_journal", "-L", "nj", &img],
        );
        check(&img, FsType::Ext4, "nj", 1024 + 0x38);
        // The size an ext filesystem claims is what mkfs made, whatever the file holds.
        let data = std::fs::read(&img).unwrap();
        assert_eq!(ext_size(&mut &data[..]), Some(16 << 20));
        assert_eq!(ext_size(&mut &data[..4096]), Some(16 << 20));
        assert_eq!(ext_size(&mut &data[..1300]), None);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[cfg(feature = "xfs")]
    #[test]
    fn xfs_matches_blkid() {
        let d = scratch("xfs");
        let xfs = sparse(&d.join("xfs"), 300 << 20);
        run("mkfs.xfs", &["-q", "-f", "-L", "COS_OEM", &xfs]);
        check(&xfs, FsType::Xfs, "COS_OEM", 0);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[cfg(feature = "btrfs")]
    #[test]
    fn btrfs_matches_blkid() {
        let d = scratch("btrfs");
        let btrfs = sparse(&d.join("btrfs"), 128 << 20);
        run("mkfs.btrfs", &["-q", "-f", "-L", "COS_PERSISTENT", &btrfs]);
        check(&btrfs, FsType::Btrfs, "COS_PERSISTENT", 0x10040);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A directory with one file, to make read-only images from.
    #[cfg(any(feature = "erofs", feature = "squashfs", feature = "iso9660"))]
    fn source_tree(d: &Path) -> String {
        let src = d.join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("hello"), b"hi").unwrap();
        src.to_str().unwrap().to_string()
    }

    #[cfg(feature = "erofs")]
    #[test]
    fn erofs_matches_blkid() {
        let d = scratch("erofs");
        let src = source_tree(&d);
        let erofs = d.join("erofs").to_str().unwrap().to_string();
        run(
            "mkfs.erofs",
            &["-Uc0ffee00-1111-4222-8333-444455556666", &erofs, &src],
        );
        check(&erofs, FsType::Erofs, "", 1024);
        // Older mkfs.erofs has no -L: write the label, dropping the superblock-checksum flag
        // so that blkid versions which verify it still accept the image.
        let mut data = std::fs::read(&erofs).unwrap();
        data[1088..1098].copy_from_slice(b"COS_ACTIVE");
        data[1024 + 8] &= !1;
        std::fs::write(&erofs, &data).unwrap();
        check(&erofs, FsType::Erofs, "COS_ACTIVE", 1024);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[cfg(feature = "squashfs")]
    #[test]
    fn squashfs_matches_blkid() {
        let d = scratch("squashfs");
        let src = source_tree(&d);
        let sq = d.join("squash").to_str().unwrap().to_string();
        run(
            "mksquashfs",
            &[&src, &sq, "-quiet", "-noappend", "-no-progress"],
        );
        check(&sq, FsType::Squashfs, "", 0);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Without its feature a type is not recognised at all: not as another type either.
    #[test]
    fn types_without_their_feature_are_not_recognised() {
        let d = scratch("not-probed");
        let img = sparse(&d.join("vfat"), 4 << 20);
        run("mkfs.vfat", &["-n", "COS_GRUB", &img]);
        let got = probe_file(&img).map(|i| i.fs);
        if cfg!(feature = "vfat") {
            assert_eq!(got, Some(FsType::Vfat));
            assert!(!NOT_PROBED.contains(&"vfat"));
        } else {
            assert_eq!(got, None);
            assert!(NOT_PROBED.contains(&"vfat"));
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[cfg(feature = "iso9660")]
    #[test]
    fn iso9660_matches_blkid() {
        let d = scratch("iso");
        let src = source_tree(&d);
        let iso = d.join("live.iso").to_str().unwrap().to_string();
        run(
            "xorriso",
            &[
                "-as", "mkisofs", "-quiet", "-J", "-V", "COS_LIVE", "-o", &iso, &src,
            ],
        );
        check(&iso, FsType::Iso9660, "COS_LIVE", 0x8001);
        assert_eq!(probe_file(&iso).unwrap().uuid.len(), 22);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[cfg(feature = "vfat")]
    #[test]
    fn vfat_matches_blkid() {
        let d = scratch("vfat");
        for (bits, size, magic) in [
            ("12", 4u64 << 20, 0x36),
            ("16", 32 << 20, 0x36),
            ("32", 40 << 20, 0x52),
        ] {
            let img = sparse(&d.join(format!("fat{bits}")), size);
            run("mkfs.vfat", &["-F", bits, "-n", "COS_GRUB", &img]);
            check(&img, FsType::Vfat, "COS_GRUB", magic);
            // Without a label blkid shows none ("NO NAME").
            let img = sparse(&d.join(format!("fat{bits}-nolabel")), size);
            run("mkfs.vfat", &["-F", bits, &img]);
            check(&img, FsType::Vfat, "", 510);
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Offset of the volume-label entry in a fresh mkfs.vfat image's root directory.
    #[cfg(feature = "vfat")]
    fn label_entry(img: &[u8]) -> usize {
        let (bps, res, nfats) = (
            le16(img, 11) as usize,
            le16(img, 14) as usize,
            img[16] as usize,
        );
        let (fat16, fat32, spc) = (
            le16(img, 22) as usize,
            le32(img, 36) as usize,
            img[13] as usize,
        );
        let root = if fat16 != 0 {
            (res + nfats * fat16) * bps
        } else {
            (res + nfats * fat32 + (le32(img, 44) as usize - 2) * spc) * bps
        };
        assert_eq!(img[root + 11], 0x08, "first root entry is the label");
        root
    }

    #[cfg(feature = "vfat")]
    #[test]
    fn vfat_directory_label_wins_over_boot_sector() {
        let d = scratch("vfatlbl");
        for (bits, size, boot_label) in [("16", 32u64 << 20, 0x2B), ("32", 40 << 20, 0x47)] {
            let img = sparse(&d.join(format!("fat{bits}")), size);
            run("mkfs.vfat", &["-F", bits, "-n", "DIRLABEL", &img]);
            let mut data = std::fs::read(&img).unwrap();
            data[boot_label..boot_label + 11].copy_from_slice(b"BOOTLABEL  ");
            std::fs::write(&img, &data).unwrap();
            check(&img, FsType::Vfat, "DIRLABEL", 510);

            // Deleted label entry: the boot-sector copy is used (blkid shows it as LABEL_FATBOOT
            // only).
            let at = label_entry(&data);
            data[at] = 0xE5;
            std::fs::write(&img, &data).unwrap();
            assert!(!run("blkid", &["-p", "-o", "export", &img]).contains("\nLABEL="));
            check_as(&img, FsType::Vfat, "BOOTLABEL", 510, "LABEL_FATBOOT");
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn random_bytes_are_nothing() {
        let mut rng = Rng(42);
        for _ in 0..200 {
            let data: Vec<u8> = (0..72 * 1024).map(|_| rng.next() as u8).collect();
            assert!(probe_fs(&mut &data[..]).is_none());
        }
        assert!(probe_fs(&mut &[0u8; 0][..]).is_none());
        assert!(probe_fs(&mut &vec![0u8; 1 << 20][..]).is_none());
    }

    #[test]
    fn text_helpers() {
        let uuid_text = |u: &[u8]| {
            let mut t = Text::new();
            push_uuid(&mut t, u);
            t
        };
        assert_eq!(uuid_text(&[0; 16]).as_str(), "");
        assert_eq!(
            uuid_text(&[0xAB, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xFF]).as_str(),
            "ab010203-0405-0607-0809-0a0b0c0d0eff"
        );
        let label = |raw: &[u8]| {
            let mut out = FsInfo {
                fs: FsType::Ext2,
                label: Text::EMPTY,
                uuid: Text::EMPTY,
            };
            found(&mut out, FsType::Ext2, raw, &[]);
            out.label
        };
        assert_eq!(label(b"abc  \0xyz").as_str(), "abc");
        assert_eq!(label(&[b'x'; 65]).as_str(), "");
        let all = [
            FsType::Ext2,
            FsType::Ext3,
            FsType::Ext4,
            FsType::Xfs,
            FsType::Btrfs,
            FsType::Vfat,
            FsType::Erofs,
            FsType::Iso9660,
            FsType::Squashfs,
        ];
        let names: Vec<_> = all.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            ["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "erofs", "iso9660", "squashfs"]
        );
    }

    #[cfg(feature = "iso9660")]
    #[test]
    fn iso_dates() {
        let mut t = Text::new();
        assert!(iso_date(b"2024010203040506", &mut t));
        assert_eq!(t.as_str(), "2024-01-02-03-04-05-06");
        let mut t = Text::new();
        assert!(!iso_date(b"0000000000000000", &mut t));
        assert!(!iso_date(b"2024", &mut t));
        assert!(t.is_empty());
    }
}
