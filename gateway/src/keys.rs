//! Per-tenant signing keys as the gateway sees them: the published JWKS and the active
//! key, loaded from the shared store (so every replica serves the same set) and cached for
//! a few seconds so JWKS and token issuance do not query the database each time.

use keygate_core::clock::Clock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::ids::TenantId;
use keygate_core::keyring;
use keygate_core::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a loaded key set is reused; rotation publishes keys well before this matters.
const TTL: Duration = Duration::from_secs(5);

/// A tenant's keys at one instant.
#[derive(Debug)]
pub struct TenantKeys {
    /// The JWKS document (`{"keys": [...]}`), public parts only.
    pub jwks: serde_json::Value,
    /// Kid of the key that signs now, if any.
    pub active_kid: Option<String>,
    /// Algorithm of the active key.
    pub active_algorithm: Option<String>,
}

/// A loaded key set and when it was loaded.
type Cached = (Instant, Arc<TenantKeys>);

/// Cache of [`TenantKeys`] by tenant.
#[derive(Clone)]
pub struct KeyCache {
    store: Arc<dyn Store>,
    master_keys: MasterKeys,
    clock: Arc<dyn Clock>,
    entries: Arc<RwLock<HashMap<TenantId, Cached>>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    /// An empty cache over `store`.
    pub fn new(store: Arc<dyn Store>, master_keys: MasterKeys, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            master_keys,
            clock,
            entries: Arc::default(),
        }
    }

    /// The master keys private key material is unsealed with.
    pub fn master_keys(&self) -> &MasterKeys {
        &self.master_keys
    }

    /// The tenant's keys, from the cache when fresh.
    pub async fn get(&self, tenant: TenantId) -> Result<Arc<TenantKeys>, StoreError> {
        if let Ok(entries) = self.entries.read()
            && let Some((loaded, keys)) = entries.get(&tenant)
            && loaded.elapsed() < TTL
        {
            return Ok(keys.clone());
        }
        let records = self.store.signing_keys(tenant).await?;
        let now = self.clock.now();
        let published = keyring::published(&records, now);
        let active = keyring::active(&records, now);
        let keys = Arc::new(TenantKeys {
            jwks: serde_json::json!({
                "keys": published.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()
            }),
            active_kid: active.map(|k| k.kid.clone()),
            active_algorithm: active.map(|k| k.algorithm.clone()),
        });
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(tenant, (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// Forgets a tenant's keys so the next request reloads them.
    pub fn invalidate(&self, tenant: TenantId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(&tenant);
        }
    }
}
