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

/// Where to cut a stream of `len` bytes: everywhere in its first and last 300 bytes (headers,
/// trailers), at 500 places between.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let ends = (0..len.min(300)).chain(len.saturating_sub(300)..len);
    ends.chain((0..len).step_by(len / 500 + 1))
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
    for cut in cuts(end) {
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

#[cfg(feature = "zstd")]
mod zstd_tests {
    use super::*;

    fn encode(data: &[u8], level: i32, checksum: bool, window_log: Option<u32>) -> Vec<u8> {
        use std::io::Write;
        let mut enc = ::zstd::stream::Encoder::new(Vec::new(), level).unwrap();
        enc.include_checksum(checksum).unwrap();
        enc.include_contentsize(level % 2 == 0).unwrap();
        if let Some(log) = window_log {
            enc.long_distance_matching(true).unwrap();
            enc.window_log(log).unwrap();
        }
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// Decodes with a window buffer of exactly the size the stream asks for (plus `extra`).
    fn unzstd_with(input: &[u8], extra: usize) -> Result<Vec<u8>, DecodeError> {
        let mut window = std::vec![0u8; Zstd::window_size(input)? + extra];
        let mut dec = Zstd::new(input, &mut window)?;
        read_all(&mut dec, input.len() as u64)
    }

    fn unzstd(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        unzstd_with(input, 0)
    }

    /// A skippable frame as RFC 8878 §3.1.2 writes it: magic 0x184D2A5?, length, bytes.
    fn skippable(nibble: u8, content: &[u8]) -> Vec<u8> {
        let mut frame = (0x184d_2a50u32 | u32::from(nibble)).to_le_bytes().to_vec();
        frame.extend_from_slice(&(content.len() as u32).to_le_bytes());
        frame.extend_from_slice(content);
        frame
    }

    #[test]
    fn zstd_matches_the_zstd_crate_at_every_level() {
        for (i, len) in [0, 1, 100, 70_000, 400_000].into_iter().enumerate() {
            let data = sample(len, 10 + i as u64);
            for level in 1..=19 {
                let z = encode(&data, level, level % 3 == 0, None);
                let got =
                    unzstd(&z).unwrap_or_else(|e| panic!("length {len} level {level}: {e:?}"));
                assert!(got == data, "length {len} level {level}");
            }
        }
    }

    #[test]
    fn zstd_long_windows_and_odd_buffers() {
        // Repeats 3 MiB apart only a large window finds.
        let chunk = sample(3 << 20, 20);
        let mut data = chunk.clone();
        data.extend_from_slice(&sample(100_000, 21));
        data.extend_from_slice(&chunk);
        for (level, log) in [(3, 23), (19, 27)] {
            let z = encode(&data, level, true, Some(log));
            assert_eq!(Zstd::window_size(&z).unwrap(), 1 << log);
            assert!(unzstd(&z).unwrap() == data, "level {level} window 2^{log}");
            assert!(
                unzstd_with(&z, 12_345).unwrap() == data,
                "ring of an odd size"
            );
            let mut small = std::vec![0u8; (1 << log) - 1];
            let e = Zstd::new(&z, &mut small).err().unwrap();
            assert_eq!(e.message(), "zstd: window larger than the buffer");
        }
    }

    #[test]
    fn zstd_frames_skippable_frames_raw_and_rle_blocks() {
        let mut rng = fastrand::Rng::with_seed(30);
        let random: Vec<u8> = (0..300_000).map(|_| rng.u8(..)).collect(); // raw blocks
        let run = std::vec![0x5au8; 500_000]; // RLE blocks
        let text = sample(200_000, 31);
        let mut z = Vec::new();
        z.extend(skippable(0, b"leading"));
        z.extend(encode(&random, 3, true, None));
        z.extend(skippable(0xf, &[]));
        z.extend(encode(&run, 5, false, None));
        z.extend(skippable(7, &sample(1000, 32)));
        z.extend(encode(&text, 12, true, None));
        z.extend(encode(&[], 1, true, None));
        // zstd:chunked ends in skippable frames (manifest, tar-split, footer).
        z.extend(skippable(0xe, &[0; 72]));
        let want = [&random[..], &run[..], &text[..]].concat();
        assert!(unzstd(&z).unwrap() == want);

        // The block types really are there: raw (0) in the first frame, RLE (1) in the second.
        assert!(block_types(&encode(&random, 3, true, None)).contains(&0));
        assert!(block_types(&encode(&run, 5, false, None)).contains(&1));
    }

    /// The types of the blocks of a frame without a dictionary.
    fn block_types(frame: &[u8]) -> Vec<u8> {
        let descriptor = frame[4];
        let single = descriptor & 0x20 != 0;
        let fcs_len = [usize::from(single), 2, 4, 8][usize::from(descriptor >> 6)];
        let mut at = 5 + usize::from(!single) + fcs_len;
        let mut types = Vec::new();
        loop {
            let header = u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], 0]);
            let kind = (header >> 1 & 3) as u8;
            types.push(kind);
            at += 3 + if kind == 1 { 1 } else { header as usize >> 3 };
            if header & 1 != 0 {
                return types;
            }
        }
    }

    #[test]
    fn zstd_refuses_bad_streams_with_clear_messages() {
        let data = sample(20_000, 40);
        let z = encode(&data, 3, true, None);
        let err = |bytes: &[u8]| unzstd_with(bytes, 1000).unwrap_err();
        assert_eq!(
            Zstd::window_size(&[]).unwrap_err().message(),
            "zstd: empty input"
        );
        let mut bad = z.clone();
        bad[0] ^= 1;
        assert_eq!(
            (err(&bad).message(), err(&bad).offset()),
            ("zstd: bad frame magic", 0)
        );
        let mut bad = z.clone();
        let end = bad.len();
        bad[end - 1] ^= 1;
        assert_eq!(err(&bad).message(), "zstd: content checksum mismatch");
        let mut bad = z.clone();
        bad[4] |= 0x08;
        assert_eq!(err(&bad).message(), "zstd: reserved frame header bit set");
        let mut bad = z.clone();
        bad[4] |= 1; // a one-byte dictionary id
        bad.insert(5 + usize::from(bad[4] & 0x20 == 0), 7);
        assert_eq!(err(&bad).message(), "zstd: frame needs a dictionary");
        // A window over 128 MiB (window descriptor exponent 18: 2^28).
        let mut bad = z.clone();
        if bad[4] & 0x20 == 0 {
            bad[5] = 18 << 3;
            assert_eq!(err(&bad).message(), "zstd: window larger than 128 MiB");
        }

        // Every truncation is refused, none panics (the message names what was cut).
        for cut in cuts(z.len()) {
            let e = unzstd_with(&z[..cut], 1000).unwrap_err();
            assert!(e.message().starts_with("zstd: "), "{cut}: {e:?}");
        }
        // Flipped bits never panic; the checksum or the structure catches them.
        let mut rng = fastrand::Rng::with_seed(41);
        for _ in 0..3000 {
            let mut bad = z.clone();
            let at = rng.usize(0..bad.len());
            bad[at] ^= 1 << rng.u8(0..8);
            let _ = unzstd_with(&bad, 1000);
        }
    }
}

/// Decode speed on about 100 MB against sha2, flate2 and libzstd, in release mode:
/// `IMMUCORE_BENCH_INPUT=some.tar cargo test --release --lib --features full decode_speed --
/// --ignored --nocapture` (without the variable, 100 MB of `sample`). Checks the outputs too;
/// times are CPU times of the test's thread.
#[test]
#[ignore]
fn decode_speed() {
    use sha2::Digest;
    use std::io::Read;
    // Time on this thread's CPU clock: the host is shared, wall time says little.
    #[derive(Clone, Copy)]
    struct Instant(std::time::Duration);
    impl Instant {
        fn now() -> Self {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
            Instant(std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
        }
        fn elapsed(self) -> std::time::Duration {
            Instant::now().0 - self.0
        }
    }
    let data = match std::env::var("IMMUCORE_BENCH_INPUT") {
        Ok(path) => std::fs::read(path).unwrap(),
        Err(_) => sample(100 << 20, 99),
    };
    let mb = data.len() as f64 / 1e6;
    let rate = |start: Instant| mb / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut ours = Sha256::new();
    ours.update(&data);
    let digest = ours.finish();
    let ours_rate = rate(start);
    let start = Instant::now();
    let theirs = sha2::Sha256::digest(&data);
    let theirs_rate = rate(start);
    assert_eq!(digest[..], theirs[..]);
    std::println!("sha256 ({mb:.0} MB): ours {ours_rate:.0} MB/s, sha2 {theirs_rate:.0} MB/s");

    // Both sides write into a Vec that is compared afterwards.
    let drain = |src: &mut dyn Source, out: &mut Vec<u8>| {
        let mut buf = std::vec![0u8; 1 << 16];
        while let n @ 1.. = src.read(&mut buf).unwrap() {
            out.extend_from_slice(&buf[..n]);
        }
    };
    let gz = gzip_encode(&data, 6);
    let mut window = [0u8; gzip::WINDOW];
    let (mut ours, mut theirs) = (
        Vec::with_capacity(data.len()),
        Vec::with_capacity(data.len()),
    );
    let start = Instant::now();
    drain(&mut Gzip::new(&gz, &mut window), &mut ours);
    let ours_rate = rate(start);
    let start = Instant::now();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut theirs)
        .unwrap();
    let theirs_rate = rate(start);
    assert!(ours == data && theirs == data);
    std::println!(
        "gzip -6 ({} MB): ours {ours_rate:.0} MB/s, flate2 {theirs_rate:.0} MB/s",
        gz.len() / 1_000_000
    );

    #[cfg(feature = "zstd")]
    for level in [3, 19] {
        let z = ::zstd::bulk::compress(&data, level).unwrap();
        let mut window = std::vec![0u8; Zstd::window_size(&z).unwrap()];
        let (mut ours, mut theirs) = (
            Vec::with_capacity(data.len()),
            Vec::with_capacity(data.len()),
        );
        let start = Instant::now();
        drain(&mut Zstd::new(&z, &mut window).unwrap(), &mut ours);
        let ours_rate = rate(start);
        let start = Instant::now();
        ::zstd::stream::Decoder::new(&z[..])
            .unwrap()
            .read_to_end(&mut theirs)
            .unwrap();
        let theirs_rate = rate(start);
        assert!(ours == data && theirs == data);
        std::println!(
            "zstd -{level} ({} MB): ours {ours_rate:.0} MB/s, libzstd {theirs_rate:.0} MB/s",
            z.len() / 1_000_000
        );
    }
}
