#![no_main]
//! cargo +nightly fuzz run sdk_signature (see fuzz/README.md); the logic is portico_fuzz_harness::sdk_signature.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz_harness::sdk_signature(data));
