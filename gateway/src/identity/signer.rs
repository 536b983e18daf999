//! The tenant's signing keys in usable form: the active private keys (unsealed with the
//! master keys: the tenant's algorithm's, and the RS256 one kept for ID tokens), every
//! published public key by kid, and the JWKS document rendered once per
//! load. Loaded from the shared store with [`keygate_core::keyring`] (so every replica
//! publishes and signs with the same keys) and cached briefly; parsed keys are kept by kid,
//! since a kid's material never changes. This is the one signing-key cache of the gateway:
//! JWKS, discovery, signing and verification all read it.

use super::IdentityError;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use keygate_core::clock::Clock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::signing::{self, SigningAlgorithm};
use keygate_core::ids::TenantId;
use keygate_core::keyring;
use keygate_core::store::{SigningKeyRecord, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a tenant's key set is reused (a new key is published `signing.publishLead`, at
/// least a minute, before it signs). A set is also reloaded the moment the tenant's clock
/// reaches the next activation or retirement it holds, so every replica switches keys at
/// the instant the keyring says, not up to this long after.
const TTL: Duration = Duration::from_secs(5);

/// The key new tokens are signed with.
pub(crate) struct SigningKey {
    /// Its `kid`.
    pub kid: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The private key.
    pub key: EncodingKey,
}

/// A published public key.
pub(crate) struct VerifyingKey {
    /// The one algorithm this key verifies.
    pub algorithm: Algorithm,
    /// The public key.
    pub key: DecodingKey,
}

/// What a tenant publishes: the JWKS document and the key access tokens are signed with.
#[derive(Debug)]
pub struct PublishedKeys {
    /// The JWKS document (`{"keys": [...]}`, public parts only), rendered once per load.
    pub jwks: axum::body::Bytes,
    /// Kid of the key that signs access tokens now, if any.
    pub active_kid: Option<String>,
}

struct Entry {
    loaded: Instant,
    /// The next instant at which the keyring's answer changes (a key activates or retires).
    changes_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Every key of the tenant as loaded; the keyring picks the signing key from them.
    records: Vec<SigningKeyRecord>,
    published: HashMap<String, Arc<VerifyingKey>>,
    jwks: axum::body::Bytes,
    /// A reload failed for a store outage: the set is served as it is until then, so the
    /// outage costs one wait per [`TTL`], not one per token.
    retry_at: Option<Instant>,
}

/// Per-tenant key sets.
pub(crate) struct SigningKeys {
    store: Arc<dyn Store>,
    master_keys: MasterKeys,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<TenantId, Arc<Mutex<Entry>>>>,
    parsed_signing: Mutex<HashMap<String, Arc<SigningKey>>>,
    parsed_verifying: Mutex<HashMap<String, Arc<VerifyingKey>>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SigningKeys {
    /// A cache over `store`.
    pub fn new(store: Arc<dyn Store>, master_keys: MasterKeys, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            master_keys,
            clock,
            entries: Mutex::default(),
            parsed_signing: Mutex::default(),
            parsed_verifying: Mutex::default(),
        }
    }

    /// The master keys (also used to seal the refresh grace entries).
    pub fn master_keys(&self) -> &MasterKeys {
        &self.master_keys
    }

    /// The key that signs access tokens (and every token but an ID token of another
    /// algorithm) for a tenant whose algorithm is `primary` ([`keyring::active`]); `Internal`
    /// if it has none yet.
    pub async fn active(
        &self,
        tenant: TenantId,
        primary: SigningAlgorithm,
    ) -> Result<Arc<SigningKey>, IdentityError> {
        self.pick(tenant, |records, now| {
            keyring::active(records, primary, now)
        })
        .await?
        .ok_or_else(|| IdentityError::Internal("tenant has no active signing key yet".into()))
    }

    /// The tenant's active key of exactly `algorithm` (an ID token a client asked that
    /// algorithm for), if it has one.
    pub async fn active_of(
        &self,
        tenant: TenantId,
        algorithm: SigningAlgorithm,
    ) -> Result<Option<Arc<SigningKey>>, IdentityError> {
        self.pick(tenant, |records, now| {
            keyring::active_of(records, algorithm, now)
        })
        .await
    }

    async fn pick(
        &self,
        tenant: TenantId,
        rule: impl Fn(&[SigningKeyRecord], DateTime<Utc>) -> Option<&SigningKeyRecord>,
    ) -> Result<Option<Arc<SigningKey>>, IdentityError> {
        self.refresh(tenant).await?;
        let now = self.clock.now();
        let Some(entry) = self.entry(tenant) else {
            return Ok(None);
        };
        // A parsed key is reused by kid; only a key not parsed yet has its ciphertext copied.
        let sealed = {
            let entry = lock(&entry);
            let Some(record) = rule(&entry.records, now) else {
                return Ok(None);
            };
            if let Some(parsed) = lock(&self.parsed_signing).get(&record.kid) {
                return Ok(Some(parsed.clone()));
            }
            (
                record.kid.clone(),
                record.algorithm.clone(),
                record.private_key.clone(),
            )
        };
        let (kid, algorithm, sealed) = sealed;
        Ok(Some(self.signing_key(&kid, &algorithm, &sealed)?))
    }

    /// A published key by kid; `None` for unknown or retired kids.
    pub async fn verifying(
        &self,
        tenant: TenantId,
        kid: &str,
    ) -> Result<Option<Arc<VerifyingKey>>, IdentityError> {
        self.refresh(tenant).await?;
        Ok(self
            .entry(tenant)
            .and_then(|e| lock(&e).published.get(kid).cloned()))
    }

    /// The JWKS document of the tenant and the kid its access tokens are signed with, for a
    /// tenant whose algorithm is `primary`.
    pub async fn published(
        &self,
        tenant: TenantId,
        primary: SigningAlgorithm,
    ) -> Result<PublishedKeys, IdentityError> {
        if self.fresh_entry(tenant).is_none() {
            self.refresh(tenant).await?;
        }
        let now = self.clock.now();
        self.entry(tenant)
            .map(|e| {
                let entry = lock(&e);
                PublishedKeys {
                    jwks: entry.jwks.clone(),
                    active_kid: keyring::active(&entry.records, primary, now)
                        .map(|k| k.kid.clone()),
                }
            })
            .ok_or_else(|| IdentityError::Internal("signing keys vanished after loading".into()))
    }

    fn entry(&self, tenant: TenantId) -> Option<Arc<Mutex<Entry>>> {
        lock(&self.entries).get(&tenant).cloned()
    }

    fn fresh_entry(&self, tenant: TenantId) -> Option<Arc<Mutex<Entry>>> {
        let now = self.clock.now();
        self.entry(tenant).filter(|e| {
            let entry = lock(e);
            let current =
                entry.loaded.elapsed() < TTL && entry.changes_at.is_none_or(|at| now < at);
            current || entry.retry_at.is_some_and(|at| Instant::now() < at)
        })
    }

    /// Whether keys loaded for `tenant` are young enough to serve through a store outage;
    /// if so, they are served without a reload for another [`TTL`].
    fn last_known(&self, tenant: TenantId) -> bool {
        self.entry(tenant).is_some_and(|e| {
            let mut entry = lock(&e);
            let usable = entry.loaded.elapsed() < TTL + super::loading_cache::OUTAGE_STALE_LIMIT;
            if usable {
                entry.retry_at = Some(Instant::now() + TTL);
            }
            usable
        })
    }

    async fn refresh(&self, tenant: TenantId) -> Result<(), IdentityError> {
        if self.fresh_entry(tenant).is_some() {
            return Ok(());
        }
        let records = match self.store.signing_keys(tenant).await {
            Ok(records) => records,
            // The store is down: keep signing and verifying with the keys last loaded (no
            // rotation can be written meanwhile), up to the outage limit.
            Err(e) if e.is_unavailable() && self.last_known(tenant) => {
                tracing::warn!(error = %e, "store unreachable; using the signing keys last loaded");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let now = self.clock.now();
        let mut published = HashMap::new();
        let records_published = keyring::published(&records, now);
        let jwks = serde_json::json!({
            "keys": records_published.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()
        });
        for record in records_published {
            match self.verifying_key(&record.kid, &record.algorithm, &record.public_jwk) {
                Ok(k) => {
                    published.insert(record.kid.clone(), k);
                }
                Err(e) => {
                    tracing::error!(kid = %record.kid, error = %e, "published signing key is unusable")
                }
            }
        }
        let changes_at = records
            .iter()
            .flat_map(|k| [Some(k.activates_at), k.retires_at])
            .flatten()
            .filter(|at| *at > now)
            .min();
        let entry = Entry {
            loaded: Instant::now(),
            changes_at,
            records,
            published,
            jwks: axum::body::Bytes::from(jwks.to_string()),
            retry_at: None,
        };
        lock(&self.entries).insert(tenant, Arc::new(Mutex::new(entry)));
        Ok(())
    }
    fn verifying_key(
        &self,
        kid: &str,
        algorithm: &str,
        jwk: &serde_json::Value,
    ) -> Result<Arc<VerifyingKey>, IdentityError> {
        if let Some(k) = lock(&self.parsed_verifying).get(kid) {
            return Ok(k.clone());
        }
        let algorithm: SigningAlgorithm = algorithm.parse()?;
        let jwk: Jwk = serde_json::from_value(jwk.clone())
            .map_err(|e| IdentityError::Internal(format!("stored JWK: {e}")))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(keygate_core::crypto::CryptoError::from)?;
        let parsed = Arc::new(VerifyingKey {
            algorithm: algorithm.jwt_algorithm(),
            key,
        });
        lock(&self.parsed_verifying).insert(kid.to_owned(), parsed.clone());
        Ok(parsed)
    }

    fn signing_key(
        &self,
        kid: &str,
        algorithm: &str,
        sealed: &[u8],
    ) -> Result<Arc<SigningKey>, IdentityError> {
        if let Some(k) = lock(&self.parsed_signing).get(kid) {
            return Ok(k.clone());
        }
        let algorithm: SigningAlgorithm = algorithm.parse()?;
        let pem = self
            .master_keys
            .open(sealed, &format!("signing_key:{kid}"))?;
        let pem = std::str::from_utf8(&pem)
            .map_err(|_| IdentityError::Internal("signing key is not PEM".into()))?;
        let key = signing::encoding_key(algorithm, pem)?;
        let parsed = Arc::new(SigningKey {
            kid: kid.to_owned(),
            algorithm: algorithm.jwt_algorithm(),
            key,
        });
        lock(&self.parsed_signing).insert(kid.to_owned(), parsed.clone());
        Ok(parsed)
    }
}
