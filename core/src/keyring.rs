//! Which of a tenant's signing keys are published and which one signs: one rule shared by
//! the operator (rotation, status) and every gateway replica (JWKS, issuance), so replicas
//! never disagree (keys come from the shared store, not from each process).
//!
//! A key is published in JWKS from `created_at` until `retires_at`; it signs from
//! `activates_at`. The operator creates the next key with `activates_at` in the future, so
//! every verifier has seen it in JWKS before the first token it signs exists.
//!
//! A tenant keeps one chain of keys per algorithm it signs with ([`algorithms`]): its own
//! `signing.algorithm`, which signs access tokens and every other token, and RS256, which
//! OpenID Connect requires to be available for ID tokens (Core §15.1), for the clients that
//! ask for it. Each chain rotates on its own by the same rules.

use crate::crypto::signing::SigningAlgorithm;
use crate::store::SigningKeyRecord;
use chrono::{DateTime, Utc};

/// The ID-token algorithm every OpenID Provider must offer (OpenID Connect Core §15.1).
pub const ID_TOKEN_BASELINE: SigningAlgorithm = SigningAlgorithm::RS256;

/// The algorithms a tenant signing with `primary` keeps keys of: `primary` first, then
/// RS256 for ID tokens when `primary` is another one.
pub fn algorithms(primary: SigningAlgorithm) -> Vec<SigningAlgorithm> {
    if primary == ID_TOKEN_BASELINE {
        vec![primary]
    } else {
        vec![primary, ID_TOKEN_BASELINE]
    }
}

/// Keys to list in the JWKS document at `now`, oldest first.
pub fn published(keys: &[SigningKeyRecord], now: DateTime<Utc>) -> Vec<&SigningKeyRecord> {
    let mut out: Vec<_> = keys
        .iter()
        .filter(|k| k.created_at <= now && k.retires_at.is_none_or(|r| r > now))
        .collect();
    out.sort_by_key(|k| k.activates_at);
    out
}

/// The newest published key of `algorithm` that signs at `now`. A key whose retirement is
/// scheduled signs nothing more: a token it signed could outlive its place in JWKS.
pub fn active_of(
    keys: &[SigningKeyRecord],
    algorithm: SigningAlgorithm,
    now: DateTime<Utc>,
) -> Option<&SigningKeyRecord> {
    signing(keys, now)
        .filter(|k| k.algorithm == algorithm.as_str())
        .max_by_key(|k| k.activates_at)
}

/// Published, activated keys not scheduled to retire: the ones that may sign at `now`.
fn signing(
    keys: &[SigningKeyRecord],
    now: DateTime<Utc>,
) -> impl Iterator<Item = &SigningKeyRecord> {
    published(keys, now)
        .into_iter()
        .filter(move |k| k.activates_at <= now && k.retires_at.is_none())
}

/// A published key of `algorithm` that will start signing later (that chain's "next" key).
pub fn next_of(
    keys: &[SigningKeyRecord],
    algorithm: SigningAlgorithm,
    now: DateTime<Utc>,
) -> Option<&SigningKeyRecord> {
    published(keys, now)
        .into_iter()
        .filter(|k| k.algorithm == algorithm.as_str() && k.activates_at > now)
        .max_by_key(|k| k.activates_at)
}

/// The key that signs access tokens (and every token but an ID token a client asked another
/// algorithm for) at `now`, for a tenant whose algorithm is `primary`: the newest active key
/// of `primary`. While a change of algorithm waits for the new algorithm's first key to
/// activate (it is published `signing.publishLead` earlier), the key that signed before
/// keeps signing: the newest active key of another algorithm, the RS256 key kept only for
/// ID tokens last.
pub fn active(
    keys: &[SigningKeyRecord],
    primary: SigningAlgorithm,
    now: DateTime<Utc>,
) -> Option<&SigningKeyRecord> {
    active_of(keys, primary, now).or_else(|| {
        signing(keys, now)
            .max_by_key(|k| (k.algorithm != ID_TOKEN_BASELINE.as_str(), k.activates_at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use chrono::Duration;

    fn key(kid: &str, alg: SigningAlgorithm, activates: i64) -> SigningKeyRecord {
        let at = DateTime::from_timestamp(1_800_000_000 + activates, 0).unwrap_or_default();
        SigningKeyRecord {
            kid: kid.into(),
            tenant_id: TenantId::new(),
            algorithm: alg.as_str().into(),
            public_jwk: serde_json::Value::Null,
            private_key: vec![],
            created_at: at - Duration::hours(1),
            activates_at: at,
            retires_at: None,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn kid(k: Option<&SigningKeyRecord>) -> Option<&str> {
        k.map(|k| k.kid.as_str())
    }

    #[test]
    fn rs256_is_kept_beside_any_other_algorithm() {
        use SigningAlgorithm::*;
        assert_eq!(algorithms(RS256), [RS256]);
        assert_eq!(algorithms(ES256), [ES256, RS256]);
        assert_eq!(algorithms(EdDSA), [EdDSA, RS256]);
    }

    #[test]
    fn access_tokens_keep_the_tenant_algorithm_even_when_the_rs256_key_is_newer() {
        use SigningAlgorithm::*;
        let keys = [key("es", ES256, 0), key("rs", RS256, 100)];
        assert_eq!(kid(active(&keys, ES256, at(200))), Some("es"));
        assert_eq!(kid(active_of(&keys, RS256, at(200))), Some("rs"));
        // An RS256 tenant signs everything with its RS256 key.
        assert_eq!(kid(active(&keys, RS256, at(200))), Some("rs"));
    }

    #[test]
    fn a_change_of_algorithm_keeps_the_old_key_signing_until_the_new_one_activates() {
        use SigningAlgorithm::*;
        // ES256 -> EdDSA: the EdDSA key is published an hour ahead.
        let keys = [
            key("rs", RS256, 50),
            key("es", ES256, 0),
            key("ed", EdDSA, 3600),
        ];
        assert_eq!(kid(active(&keys, EdDSA, at(100))), Some("es"));
        assert_eq!(kid(next_of(&keys, EdDSA, at(100))), Some("ed"));
        assert_eq!(kid(active(&keys, EdDSA, at(3600))), Some("ed"));
        // RS256 -> ES256: the RS256 key is the only one that signed before.
        let keys = [key("rs", RS256, 0), key("es", ES256, 3600)];
        assert_eq!(kid(active(&keys, ES256, at(100))), Some("rs"));
        assert_eq!(active_of(&keys, ES256, at(100)), None);
    }
}
