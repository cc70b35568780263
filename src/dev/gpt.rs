//! GPT partition tables: names (PARTLABEL) and unique GUIDs (PARTUUID) of the partitions.
//!
//! Trusts a table only as the kernel and blkid do: a protective MBR, an "EFI PART" header whose
//! CRC32 matches and that names its own LBA, and a matching CRC32 over the entry array. When the
//! primary header (LBA 1) or its entry array fails, the backup is used, as blkid (and the kernel
//! booted with `gpt`) do: at the primary header's AlternateLBA while that header is intact (only
//! its entry array is damaged, or the disk grew since the table was written), else at the
//! disk's last LBA.
//!
//! The parser is pure (no I/O of its own) and always compiled, so the fuzz target checks it in
//! every build; the `gpt` feature decides whether the device scan uses it (`scan.rs`).

use super::probe::{arr, field, le16, le32, le64, push_uuid, read, BlockRead};
use crate::util::fixed::Text;

/// Header of the first partition table.
const PRIMARY_LBA: u64 = 1;
/// Largest sector size we read (4Kn disks); also the size of the buffer headers and entries are
/// read into.
const MAX_SECTOR: usize = 4096;
/// Size of an entry: the kernel and blkid accept no other.
const ENTRY_SIZE: usize = 128;
/// Entries reported: the kernel makes no partition past the 256th (`DISK_MAX_PARTS`).
const MAX_PARTITIONS: u32 = 256;
/// Largest entry array we check (512 KiB, 128 reads): far beyond any real table (128 entries is
/// the norm), small enough that a corrupt count costs little.
const MAX_ENTRIES: u32 = 4096;

pub struct GptPart {
    /// 1-based index in the entry array (the kernel's partition number).
    pub number: u32,
    /// UTF-8 from the UTF-16LE name, up to the first NUL; surrogates read as '?'.
    pub name: Text<144>,
    /// Unique partition GUID, lower-case text form.
    pub uuid: Text<40>,
    pub first_lba: u64,
    pub last_lba: u64,
}

/// Calls `f` for each used entry of the GPT on `dev`, a device of `size` bytes (where the backup
/// header is); false if there is no valid GPT. `sector_size` 0 tries 512, then 4096.
pub fn gpt_partitions(
    dev: &mut impl BlockRead,
    size: u64,
    sector_size: u32,
    f: &mut impl FnMut(&GptPart),
) -> bool {
    match sector_size {
        0 => table(dev, size, 512, f).is_some() || table(dev, size, 4096, f).is_some(),
        ss => table(dev, size, ss, f).is_some(),
    }
}

/// What a header says about its entry array, and where its other copy is.
struct Header {
    entries_lba: u64,
    count: u32,
    entries_crc: u32,
    alternate_lba: u64,
}

fn table(dev: &mut impl BlockRead, size: u64, ss: u32, f: &mut impl FnMut(&GptPart)) -> Option<()> {
    let mbr = read::<512>(dev, 0);
    let protective = (0..4).any(|i| mbr.get(446 + 4 + i * 16) == Some(&0xEE));
    if field(&mbr, 510, 2) != [0x55, 0xAA] || !protective {
        return None;
    }
    let last_lba = (size / u64::from(ss)).checked_sub(1)?;
    let mut buf = [0u8; MAX_SECTOR];
    let primary = header(dev, ss, PRIMARY_LBA, &mut buf);
    let backups = [primary.as_ref().map(|h| h.alternate_lba), Some(last_lba)];
    let mut tried = PRIMARY_LBA;
    let good = match primary {
        Some(h) if entries_intact(dev, ss, &h, &mut buf) => h,
        _ => backups.into_iter().flatten().find_map(|lba| {
            // The last LBA is usually the AlternateLBA too: one look is enough.
            if lba == tried {
                return None;
            }
            tried = lba;
            let h = header(dev, ss, lba, &mut buf)?;
            entries_intact(dev, ss, &h, &mut buf).then_some(h)
        })?,
    };
    let mut part = GptPart {
        number: 0,
        name: Text::EMPTY,
        uuid: Text::EMPTY,
        first_lba: 0,
        last_lba: 0,
    };
    let reported = Header {
        count: good.count.min(MAX_PARTITIONS),
        ..good
    };
    each_chunk(dev, ss, &reported, &mut buf, &mut |first, chunk| {
        for (number, e) in (first..).zip(chunk.as_chunks::<ENTRY_SIZE>().0) {
            // An all-zero type GUID marks an unused entry.
            if field(e, 0, 16).iter().any(|&b| b != 0) {
                entry(&mut part, number, e);
                f(&part);
            }
        }
    })
}

/// The header at `lba`, read into `buf`, if its signature, size and CRC check out, it names
/// `lba` as its own and its entries are of the one size and at most `MAX_ENTRIES`.
fn header(
    dev: &mut impl BlockRead,
    ss: u32,
    lba: u64,
    buf: &mut [u8; MAX_SECTOR],
) -> Option<Header> {
    // Callers pass 512 or 4096; a larger size would not fit `buf` (`get_mut` fails) and one
    // smaller than a header fails the header-size check below.
    let ss = ss as usize;
    if !dev.read_at(lba.checked_mul(ss as u64)?, buf.get_mut(..ss)?) {
        return None;
    }
    // Fields are read from the whole buffer (fixed size, so their bounds are known at compile
    // time): they lie in the first 92 bytes, which were read.
    let hs = le32(buf, 12) as usize;
    let want_crc = le32(buf, 16);
    let h = Header {
        entries_lba: le64(buf, 72),
        count: le32(buf, 80),
        entries_crc: le32(buf, 88),
        alternate_lba: le64(buf, 32),
    };
    let entries_ok = h.count <= MAX_ENTRIES && le32(buf, 84) as usize == ENTRY_SIZE;
    if field(buf, 0, 8) != b"EFI PART" || hs < 92 || hs > ss || le64(buf, 24) != lba {
        return None;
    }
    // The CRC covers the header with its own CRC field zeroed.
    buf.get_mut(16..20)?.fill(0);
    (!crc32(!0, field(buf, 0, hs)) == want_crc && entries_ok).then_some(h)
}

/// Whether the CRC32 of `h`'s entry array is the one `h` records.
fn entries_intact(
    dev: &mut impl BlockRead,
    ss: u32,
    h: &Header,
    buf: &mut [u8; MAX_SECTOR],
) -> bool {
    let mut crc = !0;
    let read = each_chunk(dev, ss, h, buf, &mut |_, chunk| crc = crc32(crc, chunk));
    read.is_some() && !crc == h.entries_crc
}

/// Reads `h`'s entries a buffer at a time and calls `f` with the number of the first entry
/// read and the entries; `None` if a read fails.
fn each_chunk(
    dev: &mut impl BlockRead,
    ss: u32,
    h: &Header,
    buf: &mut [u8; MAX_SECTOR],
    f: &mut impl FnMut(u32, &[u8]),
) -> Option<()> {
    const PER_READ: u32 = (MAX_SECTOR / ENTRY_SIZE) as u32;
    let start = h.entries_lba.checked_mul(u64::from(ss))?;
    let mut done = 0;
    while done < h.count {
        let n = (h.count - done).min(PER_READ);
        let chunk = buf.get_mut(..n as usize * ENTRY_SIZE)?;
        // No overflow: done < MAX_ENTRIES.
        if !dev.read_at(
            start.checked_add(u64::from(done) * ENTRY_SIZE as u64)?,
            chunk,
        ) {
            return None;
        }
        f(done + 1, chunk);
        done += n;
    }
    Some(())
}

/// Fills `p` from the entry `e`.
// Not inlined: inside `table` it costs more code (measured, x86_64).
#[inline(never)]
fn entry(p: &mut GptPart, number: u32, e: &[u8; ENTRY_SIZE]) {
    let name = &mut p.name;
    name.clear();
    for i in 0..36 {
        let u = le16(e, 56 + 2 * i);
        if u == 0 {
            break;
        }
        // A lone UTF-16 surrogate is no character: '?'.
        let c = char::from_u32(u32::from(u)).unwrap_or('?');
        let _ = name.push_str(c.encode_utf8(&mut [0; 4])); // at most 36 * 3 bytes: always fits
    }
    // The first three GUID fields are stored little-endian; the text form shows them
    // big-endian.
    let head = u64::from(le32(e, 16)) << 32 | u64::from(le16(e, 20)) << 16 | u64::from(le16(e, 22));
    let tail = u64::from_be_bytes(arr(e, 24));
    let g = (u128::from(head) << 64 | u128::from(tail)).to_be_bytes();
    p.number = number;
    p.uuid.clear();
    push_uuid(&mut p.uuid, &g);
    p.first_lba = le64(e, 32);
    p.last_lba = le64(e, 40);
}

/// CRC-32 (IEEE, reflected) update, bit by bit: no table. Start with `!0`, finish with `!`.
fn crc32(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::probe::tests::{head, run, scratch, sparse, FileDev, Rng};
    use std::string::{String, ToString};
    use std::vec::Vec;
    use std::{format, vec};

    type Row = (u32, String, String, u64, u64);

    fn parts(dev: &mut impl BlockRead, size: u64, ss: u32) -> Option<Vec<Row>> {
        let mut v = Vec::new();
        let ok = gpt_partitions(dev, size, ss, &mut |p: &GptPart| {
            v.push((
                p.number,
                p.name.as_str().to_string(),
                p.uuid.as_str().to_string(),
                p.first_lba,
                p.last_lba,
            ))
        });
        ok.then_some(v)
    }

    /// `parts` of an in-memory image.
    fn mem(data: &[u8], ss: u32) -> Option<Vec<Row>> {
        parts(&mut &data[..], data.len() as u64, ss)
    }

    /// `parts` of an image file.
    fn file(img: &str, ss: u32) -> Option<Vec<Row>> {
        let f = std::fs::File::open(img).unwrap();
        let size = f.metadata().unwrap().len();
        parts(&mut FileDev(f), size, ss)
    }

    /// What `sgdisk -i N` says about partition N.
    fn sgdisk_info(img: &str, n: u32) -> Row {
        let out = run("sgdisk", &[&format!("-i{n}"), img]);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .trim()
                .to_string()
        };
        let lba = |k: &str| get(k).split(' ').next().unwrap().parse().unwrap();
        let name = get("Partition name:");
        (
            n,
            name.trim_matches('\'').to_string(),
            get("Partition unique GUID:").to_lowercase(),
            lba("First sector:"),
            lba("Last sector:"),
        )
    }

    /// A damaged primary GPT: the backup is used, at the primary's AlternateLBA while the
    /// primary header is intact, else at the last LBA (blkid's order).
    #[test]
    fn backup_header_serves_when_the_primary_is_damaged() {
        let d = scratch("gpt-backup");
        let img = sparse(&d.join("disk"), 8 << 20);
        run(
            "sgdisk",
            &[
                "-n1:2048:+2M",
                "-c1:COS_STATE",
                "-n2:0:+2M",
                "-c2:COS_PERSISTENT",
                &img,
            ],
        );
        let data = std::fs::read(&img).unwrap();
        let want = mem(&data, 0).expect("valid GPT");
        assert_eq!(want.len(), 2);
        let last = data.len() - 512;
        // The primary header zeroed, its CRC broken, its entry array's CRC broken.
        for (at, what) in [
            (512..1024, "zeroed header"),
            (512 + 20..512 + 21, "header CRC"),
        ] {
            let mut bad = data.clone();
            bad[at].fill(0x5A);
            assert_eq!(mem(&bad, 0).as_ref(), Some(&want), "{what}");
            assert_eq!(mem(&bad, 512).as_ref(), Some(&want), "{what}");
        }
        let mut bad = data.clone();
        bad[1024 + 60] ^= 0x21;
        assert_eq!(mem(&bad, 0).as_ref(), Some(&want), "entry array CRC");

        // The image copied onto a larger disk: the backup is no longer at the last LBA, the
        // primary header's AlternateLBA still finds it.
        let mut grown = data.clone();
        grown.resize(data.len() + (1 << 20), 0);
        grown[1024 + 60] ^= 0x21;
        assert_eq!(mem(&grown, 0).as_ref(), Some(&want), "grown disk");
        // ... but with the primary header gone too, nothing points there: no table.
        grown[512..1024].fill(0);
        assert_eq!(mem(&grown, 0), None, "grown disk, no primary header");

        // Both copies damaged: no table; a backup that claims another LBA is not trusted.
        let mut bad = data.clone();
        bad[512..1024].fill(0);
        bad[last + 20] ^= 0x21;
        assert_eq!(mem(&bad, 0), None, "both headers");
        let mut bad = data.clone();
        bad[512..1024].fill(0);
        bad[last + 24] ^= 1; // MyLBA
        bad[last + 16..last + 20].fill(0);
        let crc = !crc32(!0, &bad[last..last + 92]);
        bad[last + 16..last + 20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(mem(&bad, 0), None, "backup at the wrong LBA");
        // A backup whose entry array is damaged: no table.
        let mut bad = data.clone();
        bad[512..1024].fill(0);
        let backup_entries = last - 32 * 512;
        bad[backup_entries + 60] ^= 0x21;
        assert_eq!(mem(&bad, 0), None, "backup entries");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(!crc32(!0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn gpt_matches_sgdisk() {
        let d = scratch("gpt");
        let img = sparse(&d.join("disk"), 64 << 20);
        run(
            "sgdisk",
            &[
                "-n1:2048:+8M",
                "-c1:COS_STATE",
                "-u1:0B4CBB7C-A3C7-456A-A892-7E5F4F5C3478",
                "-n3:0:+8M",
                "-c3:Ünïcødé✓ 日本",
                "-n4:0:0",
                "-c4:COS_PERSISTENT",
                "-u4:c0ffee00-1111-4222-8333-444455556666",
                &img,
            ],
        );
        let got = file(&img, 512).expect("valid GPT");
        let want: Vec<Row> = [1, 3, 4].iter().map(|&n| sgdisk_info(&img, n)).collect();
        assert_eq!(got, want);
        assert_eq!(got[0].1, "COS_STATE");
        assert_eq!(got[0].2, "0b4cbb7c-a3c7-456a-a892-7e5f4f5c3478");
        assert_eq!(got[1].1, "Ünïcødé✓ 日本");
        // Sector size 0 finds it too; 4096 does not.
        assert_eq!(file(&img, 0), Some(got.clone()));
        assert!(file(&img, 4096).is_none());

        // The same table moved to 4096-byte sectors: header at 4096, entries at LBA 2.
        let data = head(&img, 1 << 20);
        let mut big = vec![0u8; 1 << 20];
        big[..512].copy_from_slice(&data[..512]);
        big[4096..4096 + 92].copy_from_slice(&data[512..512 + 92]);
        big[8192..8192 + 128 * 128].copy_from_slice(&data[1024..1024 + 128 * 128]);
        big[4096 + 16..4096 + 20].fill(0);
        let crc = !crc32(!0, &big[4096..4096 + 92]);
        big[4096 + 16..4096 + 20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(mem(&big, 0), Some(got.clone()));
        assert!(mem(&big, 512).is_none());

        // Corruptions: header CRC, entry CRC, no protective MBR, missing signature (`data` is
        // the disk's first MiB: no backup header to fall back to).
        for (at, what) in [
            (512 + 20, "header"),
            (1024 + 60, "entry"),
            (446 + 4, "pmbr"),
            (512, "sig"),
            (510, "mbr"),
        ] {
            let mut bad = data.clone();
            bad[at] ^= 0x21;
            assert!(mem(&bad, 0).is_none(), "{what}");
        }
        // Truncated images: no table, no panic.
        for cut in [0, 511, 512, 1000, 1024, 1100, 16000, 17407] {
            assert!(mem(&data[..cut], 0).is_none(), "cut {cut}");
        }
        // Random mutations: no panic.
        let mut rng = Rng(7);
        for _ in 0..500 {
            let mut m = data[..20 * 1024].to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % 1200) as usize; // MBR, header and the first entries
                m[at] = rng.next() as u8;
            }
            let _ = mem(&m, 0);
        }
        let random: Vec<u8> = (0..64 * 1024).map(|_| rng.next() as u8).collect();
        assert!(mem(&random, 0).is_none());
        std::fs::remove_dir_all(d).unwrap();
    }
}
