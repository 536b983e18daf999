//! Which of a tenant's signing keys are published and which one signs: one rule shared by
//! the operator (rotation, status) and every gateway replica (JWKS, issuance), so replicas
//! never disagree (keys come from the shared store, not from each process).
//!
//! A key is published in JWKS from `created_at` until `retires_at`; it signs from
//! `activates_at`. The operator creates the next key with `activates_at` in the future, so
//! every verifier has seen it in JWKS before the first token it signs exists.

use crate::store::SigningKeyRecord;
use chrono::{DateTime, Utc};

/// Keys to list in the JWKS document at `now`, oldest first.
pub fn published(keys: &[SigningKeyRecord], now: DateTime<Utc>) -> Vec<&SigningKeyRecord> {
    let mut out: Vec<_> = keys
        .iter()
        .filter(|k| k.created_at <= now && k.retires_at.is_none_or(|r| r > now))
        .collect();
    out.sort_by_key(|k| k.activates_at);
    out
}

/// The key that signs new tokens at `now`: the most recently activated published key.
pub fn active(keys: &[SigningKeyRecord], now: DateTime<Utc>) -> Option<&SigningKeyRecord> {
    published(keys, now)
        .into_iter()
        .filter(|k| k.activates_at <= now)
        .max_by_key(|k| k.activates_at)
}

/// A published key that will start signing later (the "next" key), if any.
pub fn next(keys: &[SigningKeyRecord], now: DateTime<Utc>) -> Option<&SigningKeyRecord> {
    published(keys, now)
        .into_iter()
        .filter(|k| k.activates_at > now)
        .max_by_key(|k| k.activates_at)
}
