#![no_main]
//! cargo +nightly fuzz run standard_webhooks (see fuzz/README.md); the logic is portico_fuzz_harness::standard_webhooks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz_harness::standard_webhooks(data));
