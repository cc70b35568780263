//! SHA-256 against sha2, the input fed in pieces whose sizes the first bytes choose.
#![no_main]
use sha2::Digest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut ours = immucore::decode::Sha256::new();
    for piece in rest.chunks(1 + usize::from(split)) {
        ours.update(piece);
    }
    assert_eq!(ours.finish()[..], sha2::Sha256::digest(rest)[..]);
});
