//! The raw secrets the operator generates: `<tag>_<prefix>_<secret>` (`kg_…` for API keys,
//! `kgcs_…` for OAuth client secrets), what the store keeps of one (the prefix and a
//! SHA-256), and a `Debug` that never prints the secret part.

use super::PREFIX_LEN;
use crate::ReconcileError;
use keygate_core::crypto::{random, sha256};

/// The tag of API keys (`kg_<prefix>_<secret>`).
pub const API_KEY_TAG: &str = "kg";

/// A raw generated secret. Its `Debug` prints only the tag and prefix, so a stray `{:?}`
/// leaks nothing.
pub struct RawKey(String);

impl RawKey {
    /// The full value, for the Secret and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Up to the second `_`: the tag and the prefix, never the secret after them.
        let public = self
            .0
            .match_indices('_')
            .nth(1)
            .and_then(|(at, _)| self.0.get(..at))
            .unwrap_or("");
        write!(f, "RawKey({public}…)")
    }
}

/// A new secret: the raw value and what the store keeps of it.
#[derive(Debug)]
pub struct Generated {
    /// `<tag>_<prefix>_<secret>`.
    pub raw: RawKey,
    /// The public lookup part.
    pub prefix: String,
    /// SHA-256 of the whole raw value.
    pub hash: [u8; 32],
}

/// Generates an API key `kg_<prefix>_<secret>`.
pub fn generate() -> Result<Generated, ReconcileError> {
    generate_tagged(API_KEY_TAG)
}

/// Generates `<tag>_<prefix>_<secret>`: a 12-symbol prefix (no `_` in its alphabet, so the
/// value splits unambiguously) and 256 random bits.
pub fn generate_tagged(tag: &str) -> Result<Generated, ReconcileError> {
    let prefix = random::random_alphanumeric(PREFIX_LEN)?;
    let raw = format!("{tag}_{prefix}_{}", random::random_token()?);
    let hash = key_hash(&raw);
    Ok(Generated {
        raw: RawKey(raw),
        prefix,
        hash,
    })
}

/// What the store keeps of a raw value: SHA-256 of the whole string.
pub fn key_hash(raw: &str) -> [u8; 32] {
    sha256(raw.as_bytes())
}
