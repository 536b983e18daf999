//! The tenant's signing keys in usable form: the active private key (unsealed with the
//! master keys) and every published public key, by kid. Loaded from the shared store with
//! the same rule as JWKS ([`keygate_core::keyring`]) and cached briefly; parsed keys are
//! kept by kid, since a kid's material never changes.

use super::IdentityError;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use keygate_core::clock::Clock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::signing::{self, SigningAlgorithm};
use keygate_core::ids::TenantId;
use keygate_core::keyring;
use keygate_core::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a tenant's key set is reused (keys are published ten minutes before they sign).
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

#[derive(Default)]
struct Entry {
    loaded: Option<Instant>,
    active: Option<Arc<SigningKey>>,
    published: HashMap<String, Arc<VerifyingKey>>,
}

/// Per-tenant key sets.
pub(crate) struct Signer {
    store: Arc<dyn Store>,
    master_keys: MasterKeys,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<TenantId, Arc<Mutex<Entry>>>>,
    parsed_signing: Mutex<HashMap<String, Arc<SigningKey>>>,
    parsed_verifying: Mutex<HashMap<String, Arc<VerifyingKey>>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Signer {
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

    /// The tenant's active signing key; `Internal` if it has none yet.
    pub async fn active(&self, tenant: TenantId) -> Result<Arc<SigningKey>, IdentityError> {
        self.refresh(tenant).await?;
        self.entry(tenant)
            .and_then(|e| lock(&e).active.clone())
            .ok_or_else(|| IdentityError::Internal("tenant has no active signing key yet".into()))
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

    fn entry(&self, tenant: TenantId) -> Option<Arc<Mutex<Entry>>> {
        lock(&self.entries).get(&tenant).cloned()
    }

    async fn refresh(&self, tenant: TenantId) -> Result<(), IdentityError> {
        if let Some(e) = self.entry(tenant)
            && lock(&e).loaded.is_some_and(|at| at.elapsed() < TTL)
        {
            return Ok(());
        }
        let records = self.store.signing_keys(tenant).await?;
        let now = self.clock.now();
        let mut published = HashMap::new();
        for record in keyring::published(&records, now) {
            match self.verifying_key(&record.kid, &record.algorithm, &record.public_jwk) {
                Ok(k) => {
                    published.insert(record.kid.clone(), k);
                }
                Err(e) => {
                    tracing::error!(kid = %record.kid, error = %e, "published signing key is unusable")
                }
            }
        }
        let active = match keyring::active(&records, now) {
            Some(record) => {
                Some(self.signing_key(&record.kid, &record.algorithm, &record.private_key)?)
            }
            None => None,
        };
        let entry = Entry {
            loaded: Some(Instant::now()),
            active,
            published,
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
