//! GPT partition tables: names (PARTLABEL) and unique GUIDs (PARTUUID) of the partitions.
//!
//! Trusts a table only as the kernel and blkid do: a protective MBR, an "EFI PART" header at
//! LBA 1 whose CRC32 matches, and a matching CRC32 over the entry array. The backup header is
//! not consulted.

use super::probe::{arr, field, le16, le32, le64, push_uuid, read, BlockRead};
use crate::util::fixed::Text;

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

/// Calls `f` for each used entry of the GPT on `dev`; false if there is no valid GPT.
/// `sector_size` 0 tries 512, then 4096.
pub fn gpt_partitions(
    dev: &mut impl BlockRead,
    sector_size: u32,
    f: &mut impl FnMut(&GptPart),
) -> bool {
    match sector_size {
        0 => table(dev, 512, f).is_some() || table(dev, 4096, f).is_some(),
        ss => table(dev, ss, f).is_some(),
    }
}

fn table(dev: &mut impl BlockRead, ss: u32, f: &mut impl FnMut(&GptPart)) -> Option<()> {
    let mbr = read::<512>(dev, 0);
    let protective = (0..4).any(|i| mbr.get(446 + 4 + i * 16) == Some(&0xEE));
    if field(&mbr, 510, 2) != [0x55, 0xAA] || !protective {
        return None;
    }
    // Callers pass 512 or 4096; a larger size would not fit `buf` (`get_mut` fails) and one
    // smaller than a header fails the header-size check below.
    let ss = ss as usize;
    // Fields are read from the whole buffer (fixed size, so their bounds are known at compile
    // time): they lie in the part just read, the first 92 bytes of a header or 128 of an entry.
    let mut buf = [0u8; 4096];
    if !dev.read_at(ss as u64, buf.get_mut(..ss)?) {
        return None;
    }
    let hs = le32(&buf, 12) as usize;
    let want = le32(&buf, 16);
    let (lba, count, size) = (le64(&buf, 72), le32(&buf, 80), le32(&buf, 84));
    let entries_crc = le32(&buf, 88);
    if field(&buf, 0, 8) != b"EFI PART" || hs < 92 || hs > ss || le64(&buf, 24) != 1 {
        return None;
    }
    buf.get_mut(16..20)?.fill(0);
    if !crc32(!0, field(&buf, 0, hs)) != want || count > 256 || !matches!(size, 128..=4096) {
        return None;
    }
    let start = lba.checked_mul(ss as u64)?;
    let mut part = GptPart {
        number: 0,
        name: Text::EMPTY,
        uuid: Text::EMPTY,
        first_lba: 0,
        last_lba: 0,
    };
    // Pass 0 checks the entry array's CRC, pass 1 reports the entries.
    for pass in 0..2 {
        let mut crc = !0;
        for i in 0..count {
            let e = buf.get_mut(..size as usize)?;
            if !dev.read_at(start.checked_add(u64::from(i) * u64::from(size))?, e) {
                return None;
            }
            if pass == 0 {
                crc = crc32(crc, e);
            } else if field(&buf, 0, 16).iter().any(|&b| b != 0) {
                entry(&mut part, i + 1, &buf);
                f(&part);
            }
        }
        if pass == 0 && !crc != entries_crc {
            return None;
        }
    }
    Some(())
}

/// Fills `p` from the entry at the start of `e`.
// Not inlined: inside `table` it costs more code (measured, x86_64).
#[inline(never)]
fn entry(p: &mut GptPart, number: u32, e: &[u8; 4096]) {
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

    fn parts(dev: &mut impl BlockRead, ss: u32) -> Option<Vec<Row>> {
        let mut v = Vec::new();
        let ok = gpt_partitions(dev, ss, &mut |p: &GptPart| {
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
        let got = parts(&mut FileDev(std::fs::File::open(&img).unwrap()), 512).expect("valid GPT");
        let want: Vec<Row> = [1, 3, 4].iter().map(|&n| sgdisk_info(&img, n)).collect();
        assert_eq!(got, want);
        assert_eq!(got[0].1, "COS_STATE");
        assert_eq!(got[0].2, "0b4cbb7c-a3c7-456a-a892-7e5f4f5c3478");
        assert_eq!(got[1].1, "Ünïcødé✓ 日本");
        // Sector size 0 finds it too; 4096 does not.
        assert_eq!(
            parts(&mut FileDev(std::fs::File::open(&img).unwrap()), 0),
            Some(got.clone())
        );
        assert!(parts(&mut FileDev(std::fs::File::open(&img).unwrap()), 4096).is_none());

        // The same table moved to 4096-byte sectors: header at 4096, entries at LBA 2.
        let data = head(&img, 1 << 20);
        let mut big = vec![0u8; 1 << 20];
        big[..512].copy_from_slice(&data[..512]);
        big[4096..4096 + 92].copy_from_slice(&data[512..512 + 92]);
        big[8192..8192 + 128 * 128].copy_from_slice(&data[1024..1024 + 128 * 128]);
        big[4096 + 16..4096 + 20].fill(0);
        let crc = !crc32(!0, &big[4096..4096 + 92]);
        big[4096 + 16..4096 + 20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(parts(&mut &big[..], 0), Some(got.clone()));
        assert!(parts(&mut &big[..], 512).is_none());

        // Corruptions: header CRC, entry CRC, no protective MBR, missing signature.
        for (at, what) in [
            (512 + 20, "header"),
            (1024 + 60, "entry"),
            (446 + 4, "pmbr"),
            (512, "sig"),
            (510, "mbr"),
        ] {
            let mut bad = data.clone();
            bad[at] ^= 0x21;
            assert!(parts(&mut &bad[..], 0).is_none(), "{what}");
        }
        // Truncated images: no table, no panic.
        for cut in [0, 511, 512, 1000, 1024, 1100, 16000, 17407] {
            assert!(parts(&mut &data[..cut], 0).is_none(), "cut {cut}");
        }
        // Random mutations: no panic.
        let mut rng = Rng(7);
        for _ in 0..500 {
            let mut m = data[..20 * 1024].to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % 1200) as usize; // MBR, header and the first entries
                m[at] = rng.next() as u8;
            }
            let _ = parts(&mut &m[..], 0);
        }
        let random: Vec<u8> = (0..64 * 1024).map(|_| rng.next() as u8).collect();
        assert!(parts(&mut &random[..], 0).is_none());
        std::fs::remove_dir_all(d).unwrap();
    }
}
