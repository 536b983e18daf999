//! `cargo +nightly fuzz run token --features libfuzzer`: see `keygate_fuzz::token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keygate_fuzz::token(data));
