#![no_main]
//! cargo +nightly fuzz run meta (see fuzz/README.md); the logic is portico_fuzz_harness::meta.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz_harness::meta(data));
