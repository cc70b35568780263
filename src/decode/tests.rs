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
