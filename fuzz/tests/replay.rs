//! Replays every seed (`seeds/<target>/`) and every saved crash (`regressions/<target>/`)
//! through the functions the fuzz targets call, on stable: `cargo test` in this folder.
//! A crash `cargo fuzz` finds is copied to `regressions/<target>/` once fixed (and, where it
//! shows a bug of one crate, written as a unit test there too, so CI keeps it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for folder in ["seeds", "regressions"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".keep") {
                continue;
            }
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "no input for {target}");
}

#[test]
fn token() {
    replay("token", keygate_fuzz::token);
}

#[test]
fn forward_auth_headers() {
    replay("forward_auth_headers", keygate_fuzz::forward_auth_headers);
}

#[test]
fn manifests() {
    replay("manifests", keygate_fuzz::manifests);
}
