#![no_main]
//! cargo +nightly fuzz run google_ads (see fuzz/README.md); the logic is portico_fuzz_harness::google_ads.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz_harness::google_ads(data));
