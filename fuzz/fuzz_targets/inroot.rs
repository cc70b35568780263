#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    immucore_fuzz::inroot::check_inroot(data);
});
