//! dm-verity over the root image (issue 15): every block read from the root is checked against
//! a hash tree whose root hash comes from a trusted place, so a changed block reads as an I/O
//! error instead of running.
//!
//! - The tree: the sidecar `<image>.verity` (`veritysetup format <image> <image>.verity`), or a
//!   tree appended to the image itself (`--hash-offset`: at `hash-offset=` of
//!   `systemd.verity_root_options=`, else right after the ext2/3/4 filesystem). Either starts
//!   with veritysetup's superblock, which gives every table field but the root hash.
//! - The root hash: `roothash=` (trusted as far as the command line is), else the sidecar
//!   `<image>.roothash` (catches corruption, not someone who can write the partition).
//! - `rd.immucore.verity=auto` verifies when a root hash is available, `required` refuses an
//!   image without one, `off` never verifies.
//!
//! The device is `/dev/mapper/root`, as systemd-veritysetup names it, over the image's loop
//! device (and a second one for the sidecar tree). The kernel checks blocks only when they are
//! read, so the first and last data blocks are read here: a wrong root hash fails both, a
//! damaged tree only some.

use super::root::STATE_DIR;
use super::{err, err_errno, Ctx, Error};
use crate::config::cmdline::Verity;
use crate::log;
use crate::sys::{self, dm, inroot::Root, loopdev, loopdev::Loop};
use crate::util::fixed::{copy_bytes, hex_pair, parse_u64, Text};
use crate::util::words::{is_word_of, split};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::OFlags;

/// The mapped root's name, as systemd-veritysetup names it (`/dev/mapper/root`).
const NAME: &[u8] = b"root";
/// veritysetup's superblock (cryptsetup's `struct verity_sb`), at the start of the hash area.
pub const SUPERBLOCK_SIZE: usize = 512;
const MAGIC: &[u8] = b"verity\0\0";

/// What the superblock says about the data and its hash tree.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Superblock<'a> {
    /// 1: the standard format; 0: ChromeOS's.
    pub hash_type: u32,
    /// The hash algorithm's kernel name (`sha256`), in the superblock read.
    pub algorithm: &'a [u8],
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    /// The salt (empty: none), in the superblock read.
    pub salt: &'a [u8],
}

impl Superblock<'_> {
    /// Bytes of the image the tree covers.
    pub fn data_bytes(&self) -> u64 {
        // Cannot overflow: `parse_superblock` checks it.
        self.data_blocks * u64::from(self.data_block_size)
    }
}

fn le_u32(sb: &[u8], at: usize) -> u32 {
    let mut v = [0; 4];
    copy_bytes(&mut v, sb.get(at..).unwrap_or(&[]));
    u32::from_le_bytes(v)
}

fn le_u64(sb: &[u8], at: usize) -> u64 {
    u64::from(le_u32(sb, at)) | u64::from(le_u32(sb, at + 4)) << 32
}

fn block_size_ok(size: u32) -> bool {
    size.is_power_of_two() && (512..=65536).contains(&size)
}

/// Reads veritysetup's superblock. `Err(None)`: there is none (no magic); `Err(Some(reason))`:
/// one that is damaged or that we cannot use.
pub fn parse_superblock(
    sb: &[u8; SUPERBLOCK_SIZE],
) -> Result<Superblock<'_>, Option<&'static str>> {
    if sb.get(..8) != Some(MAGIC) {
        return Err(None);
    }
    if le_u32(sb, 8) != 1 {
        return Err(Some("unknown superblock version"));
    }
    let hash_type = le_u32(sb, 12);
    if hash_type > 1 {
        return Err(Some("unknown hash type"));
    }
    let name = sb.get(32..64).unwrap_or(&[]);
    let name = split(name, 0).next().unwrap_or(&[]);
    let name_ok = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
    if name.is_empty() || !name.iter().all(name_ok) {
        return Err(Some("bad hash algorithm name"));
    }
    let (data_block_size, hash_block_size) = (le_u32(sb, 64), le_u32(sb, 68));
    if !block_size_ok(data_block_size) || !block_size_ok(hash_block_size) {
        return Err(Some("bad block size"));
    }
    let data_blocks = le_u64(sb, 72);
    // The table counts 512-byte sectors in a u64.
    if data_blocks == 0 || data_blocks > u64::MAX / 65536 {
        return Err(Some("bad data block count"));
    }
    let salt_size = usize::from(sb.get(80).copied().unwrap_or(0))
        | usize::from(sb.get(81).copied().unwrap_or(0)) << 8;
    let Some(salt) = sb.get(88..88 + salt_size).filter(|_| salt_size <= 256) else {
        return Err(Some("bad salt size"));
    };
    Ok(Superblock {
        hash_type,
        algorithm: name,
        data_block_size,
        hash_block_size,
        data_blocks,
        salt,
    })
}

/// Where the tree proper starts, in hash blocks, when its superblock is at `hash_offset`
/// bytes: the first hash block after the superblock (cryptsetup's `VERITY_hash_offset_block`).
pub fn hash_start_block(hash_offset: u64, hash_block_size: u32) -> u64 {
    let size = u64::from(hash_block_size);
    (hash_offset + SUPERBLOCK_SIZE as u64).div_ceil(size)
}

/// Hex digits of the digests we know, to say "wrong length" before the kernel refuses it.
const DIGEST_HEX: &[(&str, usize)] = &[("sha1", 40), ("sha256", 64), ("sha512", 128)];

/// A root hash as written on the command line or in `<image>.roothash`: hex digits only, an
/// even number of them, and as many as the algorithm's digest has when we know it.
pub fn check_root_hash(hash: &[u8], algorithm: &[u8]) -> Result<(), &'static str> {
    if hash.is_empty() || !hash.len().is_multiple_of(2) || !hash.iter().all(u8::is_ascii_hexdigit) {
        return Err("is not a hex root hash");
    }
    let want = DIGEST_HEX
        .iter()
        .find(|(name, _)| name.as_bytes() == algorithm);
    match want {
        Some(&(_, digits)) if digits != hash.len() => {
            Err("has the wrong length for the image's hash algorithm")
        }
        _ => Ok(()),
    }
}

/// systemd's `systemd.verity_root_options=` words we pass to dm-verity (as `_` words).
const FLAG_OPTIONS: &[u8] = b"ignore-corruption restart-on-corruption panic-on-corruption \
restart-on-error panic-on-error ignore-zero-blocks check-at-most-once";

/// `systemd.verity_root_options=` (comma-separated, systemd's spelling): the dm-verity
/// optional arguments (`<count> <args...>`, empty when none) and the `hash-offset=` of a tree
/// appended to the image. Err: the first option we do not support.
pub fn dm_options<'a>(options: &'a [u8], dm: &mut Text<192>) -> Result<Option<u64>, &'a [u8]> {
    let mut count = 0;
    let mut args = Text::<176>::new();
    let mut hash_offset = None;
    for opt in split(options, b',').filter(|o| !o.is_empty()) {
        if let Some(n) = opt.strip_prefix(b"hash-offset=".as_slice()) {
            hash_offset = Some(parse_u64(n).ok_or(opt)?);
        } else if is_word_of(FLAG_OPTIONS, opt) {
            count += 1;
            args.push_lossy(b" ");
            for &c in opt {
                args.push_lossy(&[if c == b'-' { b'_' } else { c }]);
            }
        } else {
            return Err(opt);
        }
    }
    dm.clear();
    if count > 0 {
        let _ = dm.push_num(count);
        dm.push_lossy(args.as_bytes());
    }
    Ok(hash_offset)
}

/// The verity target's parameter line (`Documentation/admin-guide/device-mapper/verity.rst`)
/// into `line`: devices by path or `major:minor`, `hash_start` in hash blocks, `options` from
/// [`dm_options`]. Always fits: every part has a limit, and together they stay under 1 KiB.
// Not inlined: 40 bytes smaller.
#[inline(never)]
pub fn table_params(
    sb: &Superblock,
    devices: [&[u8]; 2],
    hash_start: u64,
    root_hash: &[u8],
    options: &[u8],
    line: &mut Text<{ dm::MAX_PARAMS }>,
) {
    line.clear();
    let numbers = [
        u64::from(sb.hash_type),
        u64::from(sb.data_block_size),
        u64::from(sb.hash_block_size),
        sb.data_blocks,
        hash_start,
    ];
    // version data_dev hash_dev data_block_size hash_block_size data_blocks hash_start
    for (i, n) in numbers.into_iter().enumerate() {
        let _ = line.push_num(n);
        line.push_lossy(b" ");
        if i == 0 {
            for dev in devices {
                line.push_lossy(dev);
                line.push_lossy(b" ");
            }
        }
    }
    for part in [sb.algorithm, b" ", root_hash, b" "] {
        line.push_lossy(part);
    }
    for &b in sb.salt {
        line.push_lossy(&hex_pair(b));
    }
    if sb.salt.is_empty() {
        line.push_lossy(b"-");
    }
    if !options.is_empty() {
        line.push_lossy(b" ");
        line.push_lossy(options);
    }
}

/// `<image><suffix>`: a sidecar's name.
fn sidecar(image: &[u8], suffix: &[u8]) -> Text<272> {
    let mut t = Text::new();
    t.push_lossy(image);
    t.push_lossy(suffix);
    t
}

/// Reads the root hash in the sidecar `name` into `hash`. `Ok(false)`: there is no sidecar.
fn read_hash_sidecar(state: &Root, name: &[u8], hash: &mut Text<128>) -> Result<bool, Error> {
    let mut buf = [0; 256];
    let read = state
        .open_at(name, OFlags::RDONLY, 0)
        .and_then(|file| sys::read_fd(file.as_fd(), &mut buf));
    match read {
        Ok(n) => {
            hash.push_lossy(buf.get(..n).unwrap_or(&[]).trim_ascii_end());
            Ok(true)
        }
        Err(sys::Errno::NOENT) => Ok(false),
        Err(e) => Err(err_errno(b"cannot read {}", &[name], e)),
    }
}

/// Whether the 512 bytes at `offset` of `fd` read (and, through dm-verity, verify).
fn reads(fd: BorrowedFd<'_>, offset: u64) -> bool {
    sys::pread_exact(fd, offset, &mut [0; 512])
}

/// `mount-root`'s device for the image on `root`: `root` itself when the image is not verified
/// (`rd.immucore.verity=off`, or `auto` without a root hash), else `/dev/mapper/root`, a
/// dm-verity device over it whose first and last blocks verified.
// Not inlined into `mount_root`: 80 bytes smaller.
#[inline(never)]
pub fn verify_root(ctx: &Ctx, root: Loop) -> Result<Loop, Error> {
    let mode = ctx.cmd.verity;
    // The image booted (image fallback may have chosen another than the command line's). A
    // `roothash=` applies to whichever it is: the command line vouches for one image only.
    let image = ctx.image();
    if mode == Verity::Off {
        log::info(b"{}: not verified (rd.immucore.verity=off)", &[image]);
        return Ok(root);
    }
    let state = Root::open(STATE_DIR).map_err(|e| err_errno(b"cannot open {}", &[STATE_DIR], e))?;
    // The root hash: `roothash=`, else `<image>.roothash`.
    let hash_name = sidecar(image, b".roothash");
    let mut from_sidecar = Text::new();
    let (hash, source) = if !ctx.cmd.roothash.is_empty() {
        (ctx.cmd.roothash.as_bytes(), &b"roothash="[..])
    } else if read_hash_sidecar(&state, hash_name.as_bytes(), &mut from_sidecar)? {
        (from_sidecar.as_bytes(), hash_name.as_bytes())
    } else if mode == Verity::Required {
        return Err(err(
            b"rd.immucore.verity=required, but {} has no root hash (roothash= or {}.roothash)",
            &[image, image],
        ));
    } else {
        log::info(
            b"{}: not verified (no roothash= or {}.roothash)",
            &[image, image],
        );
        return Ok(root);
    };
    if ctx.cmd.debugrw {
        return Err(err(
            b"{}: dm-verity needs a read-only root; drop rd.immucore.debugrw",
            &[image],
        ));
    }
    let mut options = Text::<192>::new();
    let hash_offset = dm_options(ctx.cmd.verity_options.as_bytes(), &mut options)
        .map_err(|bad| err(b"systemd.verity_root_options=: {} is not supported", &[bad]))?;

    // The tree: the sidecar on its own loop device, or appended to the image.
    let tree_name = sidecar(image, b".verity");
    let data = root.fd.as_fd();
    let data_size = rustix::fs::seek(data, rustix::fs::SeekFrom::End(0)).unwrap_or(0);
    let (tree_loop, hash_offset, data_limit) =
        match state.open_at(tree_name.as_bytes(), OFlags::RDONLY, 0) {
            Ok(file) => {
                let lp =
                    loopdev::attach(file.as_fd(), true, tree_name.as_bytes()).map_err(|e| {
                        err_errno(
                            b"cannot attach {} to a loop device",
                            &[tree_name.as_bytes()],
                            e,
                        )
                    })?;
                (Some(lp), 0, data_size)
            }
            Err(sys::Errno::NOENT) => {
                // Appended: where the options say, else after the filesystem, on a 4 KiB boundary.
                let offset = hash_offset.or_else(|| {
                    crate::dev::scan::ext_size_of(data).map(|n| n.next_multiple_of(4096))
                });
                (
                    None,
                    offset.unwrap_or(data_size),
                    offset.unwrap_or(data_size),
                )
            }
            Err(e) => return Err(err_errno(b"cannot open {}", &[tree_name.as_bytes()], e)),
        };
    let tree = tree_loop.as_ref().map_or(data, |lp| lp.fd.as_fd());
    let mut raw = [0; SUPERBLOCK_SIZE];
    // A short read leaves zeros: a cut superblock is a damaged one.
    let _ = sys::pread_exact(tree, hash_offset, &mut raw);
    let sb = match parse_superblock(&raw) {
        Ok(sb) => sb,
        Err(Some(reason)) => {
            return Err(err(
                b"{}: damaged verity superblock ({})",
                &[tree_name.as_bytes(), reason.as_bytes()],
            ));
        }
        Err(None) if tree_loop.is_none() => {
            return Err(err(
                b"{}: no hash tree ({} missing, none appended to the image)",
                &[image, tree_name.as_bytes()],
            ));
        }
        Err(None) => return Err(err(b"{}: no verity superblock", &[tree_name.as_bytes()])),
    };
    if sb.data_bytes() > data_limit {
        return Err(err(
            b"{}: its hash tree covers more than the image",
            &[image],
        ));
    }
    check_root_hash(hash, sb.algorithm)
        .map_err(|reason| err(b"root hash from {} {}", &[source, reason.as_bytes()]))?;

    let start = hash_start_block(hash_offset, sb.hash_block_size);
    let mut params = Text::new();
    // The loop devices by path (the kernel looks them up, as veritysetup's tables name them).
    let tree_dev = tree_loop.as_ref().unwrap_or(&root).path.as_bytes();
    let devices = [root.path.as_bytes(), tree_dev];
    table_params(&sb, devices, start, hash, options.as_bytes(), &mut params);
    let (fd, path) = dm::create_read_only(NAME, b"verity", sb.data_bytes() / 512, params.as_bytes())
        .map_err(|e| err_errno(b"cannot create /dev/mapper/root for {} (dm_mod, dm_verity loaded? the kernel log says more)", &[image], e))?;
    // The mapping holds both loop devices now: ours may close (autoclear works later).
    drop(tree_loop);
    let last = sb.data_bytes() - u64::from(sb.data_block_size);
    match (reads(fd.as_fd(), 0), reads(fd.as_fd(), last)) {
        (true, true) => {}
        (false, false) => {
            let _ = dm::remove(NAME);
            return Err(err(
                b"{} does not match the root hash from {} (wrong hash, or the top of {} is damaged)",
                &[image, source, tree_name.as_bytes()],
            ));
        }
        (first, _) => {
            let _ = dm::remove(NAME);
            let block = if first {
                log::num(sb.data_blocks - 1)
            } else {
                log::num(0)
            };
            return Err(err(
                b"{}: block {} fails verification: {} or the image is damaged",
                &[image, block.as_bytes(), tree_name.as_bytes()],
            ));
        }
    }
    log::info(
        b"{}: dm-verity {} with the root hash from {}, tree {}",
        &[image, path.as_bytes(), source, tree_name.as_bytes()],
    );
    Ok(Loop { fd, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    /// The superblock `veritysetup format` (cryptsetup 2.6) wrote for a 1 MiB image of zeros:
    /// `veritysetup format --salt=00112233445566778899aabbccddeeff --uuid=... data.img tree`.
    const SHA256_SB: &[u8; SUPERBLOCK_SIZE] = include_bytes!("../../tests/verity/sha256.sb");

    #[test]
    fn superblock_of_veritysetup_is_read() {
        let sb = parse_superblock(SHA256_SB).unwrap();
        assert_eq!(sb.hash_type, 1);
        assert_eq!(sb.algorithm, b"sha256");
        assert_eq!(sb.data_block_size, 4096);
        assert_eq!(sb.hash_block_size, 4096);
        assert_eq!(sb.data_blocks, 256);
        assert_eq!(
            sb.salt,
            b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff"
        );
        assert_eq!(sb.data_bytes(), 1 << 20);
    }

    #[test]
    fn damaged_superblocks_are_named() {
        let mut sb = *SHA256_SB;
        sb[0] = b'V';
        assert_eq!(parse_superblock(&sb), Err(None));
        let cases: [(usize, u8, &str); 5] = [
            (8, 2, "unknown superblock version"),
            (12, 7, "unknown hash type"),
            (32, b' ', "bad hash algorithm name"),
            (65, 0x30, "bad block size"),
            (81, 2, "bad salt size"),
        ];
        for (at, value, reason) in cases {
            let mut sb = *SHA256_SB;
            sb[at] = value;
            assert_eq!(parse_superblock(&sb), Err(Some(reason)), "byte {at}");
        }
        let mut sb = *SHA256_SB;
        sb[72..80].fill(0);
        assert_eq!(parse_superblock(&sb), Err(Some("bad data block count")));
    }

    #[test]
    fn tree_starts_after_the_superblock_block() {
        // veritysetup dump: "Hash offset: 4096" for a sidecar (superblock at 0).
        assert_eq!(hash_start_block(0, 4096), 1);
        // --hash-offset=1048576: the superblock at block 256, the tree from 257.
        assert_eq!(hash_start_block(1 << 20, 4096), 257);
        assert_eq!(hash_start_block(0, 512), 1);
        assert_eq!(hash_start_block(1000, 512), 3);
    }

    #[test]
    fn table_line_has_the_kernel_order() {
        let sb = parse_superblock(SHA256_SB).unwrap();
        let hash = "a".repeat(64);
        let salt = "00112233445566778899aabbccddeeff";
        let mut t = Text::new();
        table_params(&sb, [b"7:0", b"7:1"], 1, hash.as_bytes(), b"", &mut t);
        let want = format!("1 7:0 7:1 4096 4096 256 1 sha256 {hash} {salt}");
        assert_eq!(t.as_bytes(), want.as_bytes());
        let opts = b"1 restart_on_corruption";
        table_params(&sb, [b"7:0", b"7:0"], 257, hash.as_bytes(), opts, &mut t);
        let want =
            format!("1 7:0 7:0 4096 4096 256 257 sha256 {hash} {salt} 1 restart_on_corruption");
        assert_eq!(t.as_bytes(), want.as_bytes());
        let no_salt = Superblock { salt: b"", ..sb };
        table_params(&no_salt, [b"7:0", b"7:1"], 1, b"ab", b"", &mut t);
        assert!(t.as_bytes().ends_with(b" sha256 ab -"));
    }

    #[test]
    fn systemd_options_become_dm_arguments() {
        let mut dm = Text::new();
        assert_eq!(dm_options(b"", &mut dm), Ok(None));
        assert_eq!(dm.as_bytes(), b"");
        assert_eq!(
            dm_options(b"restart-on-corruption,ignore-zero-blocks", &mut dm),
            Ok(None)
        );
        assert_eq!(dm.as_bytes(), b"2 restart_on_corruption ignore_zero_blocks");
        assert_eq!(
            dm_options(b"hash-offset=4096,panic-on-corruption", &mut dm),
            Ok(Some(4096))
        );
        assert_eq!(dm.as_bytes(), b"1 panic_on_corruption");
        assert_eq!(
            dm_options(b"fec-device=/dev/x", &mut dm),
            Err(&b"fec-device=/dev/x"[..])
        );
        assert_eq!(
            dm_options(b"hash-offset=x", &mut dm),
            Err(&b"hash-offset=x"[..])
        );
        assert_eq!(
            dm_options(b"restart_on_corruption", &mut dm),
            Err(&b"restart_on_corruption"[..])
        );
    }

    #[test]
    fn root_hashes_are_checked_against_the_algorithm() {
        let good = [b'0'; 64];
        assert_eq!(check_root_hash(&good, b"sha256"), Ok(()));
        assert!(check_root_hash(&good[..40], b"sha256").is_err());
        assert_eq!(check_root_hash(&good[..40], b"sha1"), Ok(()));
        assert_eq!(check_root_hash(b"abcd", b"whirlpool"), Ok(()));
        assert!(check_root_hash(b"abc", b"whirlpool").is_err());
        assert!(check_root_hash(b"zz", b"whirlpool").is_err());
        assert!(check_root_hash(b"", b"sha256").is_err());
        // Nothing but hex digits reaches the table line: no extra table arguments.
        assert!(check_root_hash(b"ab 1 ignore_corruption", b"whirlpool").is_err());
    }
}
