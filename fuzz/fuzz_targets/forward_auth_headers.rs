//! `cargo +nightly fuzz run forward_auth_headers --features libfuzzer`: see `keygate_fuzz::forward_auth_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keygate_fuzz::forward_auth_headers(data));
