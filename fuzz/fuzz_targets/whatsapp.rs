#![no_main]
//! cargo +nightly fuzz run whatsapp (see fuzz/README.md); the logic is portico_fuzz_harness::whatsapp.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz_harness::whatsapp(data));
