//! The decoders against well-kept implementations (sha2, flate2, the zstd crate) and the
//! standard vectors.

use super::*;
use std::vec::Vec;

fn hex(bytes: &[u8]) -> std::string::String {
    bytes.iter().map(|b| std::format!("{b:02x}")).collect()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

/// FIPS 180-2 appendix B (and the NIST CAVP byte-oriented examples).
#[test]
fn sha256_standard_vectors() {
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        hex(&sha256(b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")),
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
    );
    // One million 'a', fed in uneven pieces.
    let mut h = Sha256::new();
    let a = [b'a'; 1000];
    for i in 0..1000 {
        h.update(&a[..i % 7 + 993]);
        h.update(&a[..1000 - (i % 7 + 993)]);
    }
    assert_eq!(
        hex(&h.finish()),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

/// Random lengths (around every block and padding boundary) in random pieces, against sha2.
#[test]
fn sha256_matches_sha2() {
    use sha2::Digest;
    let mut rng = fastrand::Rng::with_seed(256);
    let lengths: Vec<usize> = (0..300)
        .chain((0..40).map(|_| rng.usize(0..100_000)))
        .collect();
    for len in lengths {
        let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let mut ours = Sha256::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.usize(0..=rest.len().min(200)));
            ours.update(piece);
            rest = tail;
        }
        assert_eq!(
            ours.finish()[..],
            sha2::Sha256::digest(&data)[..],
            "length {len}"
        );
    }
}

#[test]
fn plain_reads_the_bytes_in_pieces() {
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut src = Plain::new(&data);
    let mut got = Vec::new();
    let mut buf = [0u8; 77];
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, data);
}

/// Everything a source gives, read in pieces of varied sizes (a match or a stored block cut by
/// a full buffer must resume right).
fn read_all(src: &mut dyn Source, seed: u64) -> Result<Vec<u8>, DecodeError> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut buf = std::vec![0u8; 1 << 17];
    loop {
        let size = match rng.u8(0..4) {
            0 => rng.usize(1..16),
            1 => rng.usize(1..1000),
            _ => rng.usize(1..buf.len()),
        };
        let n = src.read(&mut buf[..size])?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Test data of every kind a layer holds: text, runs, random bytes, repeats far apart.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = Vec::with_capacity(len);
    let words: [&[u8]; 6] = [
        b"usr/lib/",
        b"systemd ",
        b"\0\0\0\0\0\0\0\0",
        b"0000644\0",
        b"ELF",
        b"\n",
    ];
    while data.len() < len {
        match rng.u8(0..5) {
            0 => data.extend((0..rng.usize(1..300)).map(|_| rng.u8(..))),
            1 => data.extend(std::iter::repeat_n(rng.u8(..), rng.usize(1..2000))),
            2 if data.len() > 10 => {
                let from = rng.usize(0..data.len());
                let len = rng.usize(1..600).min(data.len() - from);
                data.extend_from_within(from..from + len);
            }
            _ => data.extend_from_slice(words[rng.usize(0..words.len())]),
        }
    }
    data.truncate(len);
    data
}

fn gzip_encode(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn gunzip(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut window = [0u8; gzip::WINDOW];
    read_all(&mut Gzip::new(input, &mut window), input.len() as u64)
}

#[test]
fn gzip_matches_flate2_at_every_level() {
    for (i, len) in [0, 1, 100, 40_000, 300_000].into_iter().enumerate() {
        let data = sample(len, i as u64);
        for level in 0..=9 {
            let gz = gzip_encode(&data, level);
            assert!(gunzip(&gz).unwrap() == data, "length {len} level {level}");
        }
    }
}

#[test]
fn gzip_random_bytes_and_long_stored_blocks() {
    // Incompressible data makes stored blocks at every level; 1 MiB spans many of them.
    let mut rng = fastrand::Rng::with_seed(7);
    let data: Vec<u8> = (0..1 << 20).map(|_| rng.u8(..)).collect();
    for level in [0, 6, 9] {
        assert!(
            gunzip(&gzip_encode(&data, level)).unwrap() == data,
            "level {level}"
        );
    }
}

#[test]
fn gzip_concatenated_members_make_one_stream() {
    let parts = [sample(5000, 1), Vec::new(), sample(70_000, 2), sample(3, 3)];
    let mut gz = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        gz.extend(gzip_encode(part, i as u32 * 3));
    }
    assert_eq!(gunzip(&gz).unwrap(), parts.concat());
}

#[test]
fn gzip_optional_header_fields_are_skipped_and_the_header_crc_checked() {
    use std::io::Write;
    let data = sample(10_000, 4);
    let mut enc = flate2::GzBuilder::new()
        .filename("layer.tar")
        .comment("made by a test")
        .extra(std::vec![1, 2, 3, 4])
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(&data).unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(gunzip(&gz).unwrap(), data);

    // FHCRC: flate2 does not write it; insert one after the optional fields.
    let plain = gzip_encode(&data, 6);
    let mut header = plain[..10].to_vec();
    header[3] |= 2;
    let mut crc = flate2::Crc::new();
    crc.update(&header);
    let mut with_hcrc = header.clone();
    with_hcrc.extend_from_slice(&(crc.sum() as u16).to_le_bytes());
    with_hcrc.extend_from_slice(&plain[10..]);
    assert_eq!(gunzip(&with_hcrc).unwrap(), data);
    with_hcrc[10] ^= 1;
    assert_eq!(
        gunzip(&with_hcrc).unwrap_err().message(),
        "gzip: header CRC mismatch"
    );
}

#[test]
fn gzip_refuses_bad_streams_with_clear_messages() {
    let data = sample(20_000, 5);
    let gz = gzip_encode(&data, 6);
    let end = gz.len();
    let err = |bytes: &[u8]| gunzip(bytes).unwrap_err();

    assert_eq!(err(&[]).message(), "gzip: truncated header");
    let mut bad = gz.clone();
    bad[1] = 0x8c;
    assert_eq!(
        (err(&bad).message(), err(&bad).offset()),
        ("gzip: bad header magic", 0)
    );
    let mut bad = gz.clone();
    bad[end - 8] ^= 0x40;
    let e = err(&bad);
    assert_eq!(
        (e.message(), e.offset()),
        ("gzip: CRC-32 mismatch (corrupted data)", end as u64 - 8)
    );
    let mut bad = gz.clone();
    bad[end - 2] ^= 1;
    assert_eq!(err(&bad).message(), "gzip: length mismatch (ISIZE)");
    let mut bad = gz.clone();
    bad.extend_from_slice(b"garbage!");
    let e = err(&bad);
    assert_eq!(
        (e.message(), e.offset()),
        ("gzip: bad header magic", end as u64)
    );
    // A stored block whose length disagrees with its complement.
    let mut stored = gzip_encode(b"hello", 0);
    stored[12] ^= 1;
    assert_eq!(
        err(&stored).message(),
        "gzip: stored block length does not match its complement"
    );

    // Every truncation is refused, none panics.
    for cut in 0..end {
        let e = gunzip(&gz[..cut]).unwrap_err();
        assert!(
            e.message().starts_with("gzip: truncated") || e.message().starts_with("gzip: invalid"),
            "{cut}: {e:?}"
        );
    }
    // Flipped bits never panic, and are caught (by the codes, or by the CRC).
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..2000 {
        let mut bad = gz.clone();
        let at = rng.usize(10..end - 8);
        bad[at] ^= 1 << rng.u8(0..8);
        assert!(gunzip(&bad).is_err(), "flip at {at}");
    }
}
