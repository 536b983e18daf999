//! Cryptography on well-kept crates only (aws-lc-rs, argon2, jsonwebtoken, subtle):
//! password hashing, envelope encryption of secrets at rest, signing keys, random tokens.

pub mod envelope;
pub mod mac;
pub mod oidc;
pub mod password;
pub mod random;
pub mod signing;

use subtle::ConstantTimeEq;

/// Why a cryptographic operation failed; never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The random number generator or a primitive refused to work.
    #[error("cryptographic primitive failed: {0}")]
    Primitive(&'static str),
    /// A ciphertext was truncated, tampered with, or sealed for another context.
    #[error("ciphertext could not be opened (tampered, truncated or bound to another record)")]
    Open,
    /// A ciphertext names a master key id this process was not given.
    #[error("ciphertext was sealed with master key `{0}`, which is not configured")]
    UnknownMasterKey(String),
    /// A master-key specification could not be parsed.
    #[error("{0}")]
    MasterKeySpec(String),
    /// Password hashing parameters or a stored hash were unusable.
    #[error("password hashing failed: {0}")]
    Password(String),
    /// Every password-hashing thread is busy and the queue in front of them is full: the
    /// request is refused rather than queued without bound (each waiting hash would need
    /// its own argon2id memory sooner or later).
    #[error("password hashing is at capacity; retry in {} s", retry_after.as_secs())]
    Busy {
        /// About how long the queue takes to drain.
        retry_after: std::time::Duration,
    },
    /// JWT encoding or key parsing failed.
    #[error("token signing failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// An algorithm name that keygate does not sign with.
    #[error("unsupported signing algorithm `{0}` (use RS256, ES256 or EdDSA)")]
    UnsupportedAlgorithm(String),
}

/// Compares two secrets without leaking, through timing, where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// SHA-256, for hashing high-entropy tokens (API keys, refresh tokens) before storage.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-256 of the concatenation of `parts`, without building the concatenation (cache keys
/// on the forward-auth hot path).
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn sha256_of_parts_is_sha256_of_their_concatenation() {
        assert_eq!(sha256_parts(&[b"a", b"", b"bc"]), sha256(b"abc"));
        assert_ne!(sha256_parts(&[b"ab", b"d"]), sha256(b"abc"));
    }

    #[test]
    fn sha256_matches_known_vector() {
        let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
