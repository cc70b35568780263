//! The gzip decoder against flate2: a first byte below 128 makes the rest a plain text that
//! flate2 compresses (level from that byte) and ours must give back exactly; otherwise the rest
//! is a gzip stream that both decode, and they must agree on the bytes or both refuse.
#![no_main]
use immucore::decode::{gzip::WINDOW, DecodeError, Gzip, Source};
use std::io::{Read, Write};

fn ours(input: &[u8], piece: usize) -> Result<Vec<u8>, DecodeError> {
    let mut window = [0u8; WINDOW];
    let mut dec = Gzip::new(input, &mut window);
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
    let piece = 1 + usize::from(mode % 64) * 97;
    if mode < 128 {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(u32::from(mode % 10)));
        enc.write_all(rest).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(ours(&gz, piece).unwrap(), rest);
        return;
    }
    let mut theirs = Vec::new();
    let reference = flate2::read::MultiGzDecoder::new(rest).read_to_end(&mut theirs);
    match (ours(rest, piece), reference) {
        (Ok(out), Ok(_)) => assert!(out == theirs, "decoded bytes differ from flate2's"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("flate2 refuses what we accept: {e}"),
        (Err(e), Ok(_)) => panic!("we refuse what flate2 accepts: {e:?}"),
    }
});
