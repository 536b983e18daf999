//! `cargo +nightly fuzz run manifests --features libfuzzer`: see `keygate_fuzz::manifests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keygate_fuzz::manifests(data));
