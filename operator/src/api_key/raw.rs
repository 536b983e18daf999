//! The raw key itself: `kg_<prefix>_<secret>`, what the store keeps of it (the prefix and
//! a SHA-256), and a `Debug` that never prints the secret part.

use super::PREFIX_LEN;
use crate::ReconcileError;
use keygate_core::crypto::{random, sha256};

/// A raw API key. Its `Debug` prints only the prefix, so a stray `{:?}` leaks nothing.
pub struct RawKey(String);

impl RawKey {
    /// The full value, for the Secret and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RawKey({}…)",
            self.0.get(..3 + PREFIX_LEN).unwrap_or("kg_")
        )
    }
}

/// A new key: the raw value and what the store keeps of it.
#[derive(Debug)]
pub struct Generated {
    /// `kg_<prefix>_<secret>`.
    pub raw: RawKey,
    /// The public lookup part.
    pub prefix: String,
    /// SHA-256 of the whole raw value.
    pub hash: [u8; 32],
}

/// Generates `kg_<prefix>_<secret>`: a 12-symbol prefix (no `_` in its alphabet, so the key
/// splits unambiguously) and 256 random bits.
pub fn generate() -> Result<Generated, ReconcileError> {
    let prefix = random::random_alphanumeric(PREFIX_LEN)?;
    let raw = format!("kg_{prefix}_{}", random::random_token()?);
    let hash = key_hash(&raw);
    Ok(Generated {
        raw: RawKey(raw),
        prefix,
        hash,
    })
}

/// What the store keeps of a raw key: SHA-256 of the whole `kg_…` string.
pub fn key_hash(raw: &str) -> [u8; 32] {
    sha256(raw.as_bytes())
}
