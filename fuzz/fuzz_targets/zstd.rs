//! The zstd decoder against the zstd crate (libzstd): a first byte below 128 makes the rest a
//! plain text that libzstd compresses (level and checksum from that byte) and ours must give
//! back exactly; otherwise the rest is a stream that both decode, and they must agree on the
//! bytes or both refuse.
#![no_main]
use immucore::decode::{DecodeError, Source, Zstd};

/// Larger windows are not worth a fuzz iteration (ours takes up to 128 MiB, like libzstd).
const FUZZ_WINDOW: usize = 8 << 20;

fn ours(input: &[u8], piece: usize) -> Result<Vec<u8>, DecodeError> {
    let mut window = vec![0u8; Zstd::window_size(input)?];
    let mut dec = Zstd::new(input, &mut window)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        match dec.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let piece = 1 + usize::from(mode % 64) * 997;
    if mode < 128 {
        let mut enc = zstd::bulk::Compressor::new(i32::from(mode % 22) - 2).unwrap();
        enc.include_checksum(mode & 64 != 0).unwrap();
        let z = enc.compress(rest).unwrap();
        assert_eq!(ours(&z, piece).unwrap(), rest);
        return;
    }
    if Zstd::window_size(rest).is_ok_and(|w| w > FUZZ_WINDOW) {
        return;
    }
    let reference = zstd::stream::decode_all(rest);
    match (ours(rest, piece), reference) {
        (Ok(out), Ok(theirs)) => assert!(out == theirs, "decoded bytes differ from libzstd's"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("libzstd refuses what we accept: {e}"),
        (Err(e), Ok(_)) => panic!("we refuse what libzstd accepts: {e:?}"),
    }
});
