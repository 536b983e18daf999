//! What keeps forward-auth off the database on the hot path: identities already proven
//! (keyed by the SHA-256 of the credential, good until the credential expires or a short
//! re-check interval passes, always checked against the replica-local revocation set by the
//! caller), tenants by name, and API-key last-use times written in batches.

use super::decision::Identity;
use chrono::{DateTime, Utc};
use keygate_core::ids::{ApiKeyId, TenantId};
use keygate_core::store::{Store, StoreError, Tenant};
use keygate_crds::TenantSpec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Most identities kept per shard; past it expired entries are swept, then the shard is cleared.
const SHARD_CAP: usize = 16_384;

/// A proven identity and until when it may be reused without asking the resolver again.
#[derive(Clone, Debug)]
pub struct CachedIdentity {
    /// The identity.
    pub identity: Arc<Identity>,
    /// Reuse it only before then (never after the credential's own expiry).
    pub valid_until: DateTime<Utc>,
}

/// Identities by credential hash, sharded so concurrent requests rarely contend.
#[derive(Debug)]
pub struct VerifiedCache {
    shards: Vec<RwLock<HashMap<[u8; 32], CachedIdentity>>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl VerifiedCache {
    fn shard(&self, key: &[u8; 32]) -> &RwLock<HashMap<[u8; 32], CachedIdentity>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The identity proven for `key`, if still valid at `now`.
    pub fn get(&self, key: &[u8; 32], now: DateTime<Utc>) -> Option<Arc<Identity>> {
        let shard = self.shard(key).read().ok()?;
        shard
            .get(key)
            .filter(|c| c.valid_until > now)
            .map(|c| c.identity.clone())
    }

    /// Remembers `identity` for `key` until `valid_until`.
    pub fn insert(
        &self,
        key: [u8; 32],
        identity: Arc<Identity>,
        valid_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let Ok(mut shard) = self.shard(&key).write() else {
            return;
        };
        if shard.len() >= SHARD_CAP {
            shard.retain(|_, c| c.valid_until > now);
            if shard.len() >= SHARD_CAP {
                shard.clear();
            }
        }
        shard.insert(
            key,
            CachedIdentity {
                identity,
                valid_until,
            },
        );
    }

    /// Drops one entry (its credential turned out revoked).
    pub fn remove(&self, key: &[u8; 32]) {
        if let Ok(mut shard) = self.shard(key).write() {
            shard.remove(key);
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok().map(|s| s.len()))
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tenant with its parsed spec, as forward-auth and the pages use it.
#[derive(Clone, Debug)]
pub struct TenantView {
    /// The stored row.
    pub tenant: Tenant,
    /// The Tenant spec (redirect allow-list, branding, sign-in methods).
    pub spec: TenantSpec,
}

impl TenantView {
    /// Name shown to people.
    pub fn display_name(&self) -> &str {
        if self.tenant.display_name.is_empty() {
            self.spec
                .display_name
                .as_deref()
                .unwrap_or(&self.tenant.name)
        } else {
            &self.tenant.display_name
        }
    }
}

/// How long a tenant lookup (found or not) is reused.
const TENANT_TTL: Duration = Duration::from_secs(5);
/// Most tenant names remembered (unknown names included).
const TENANT_CAP: usize = 4096;

type TenantEntries = HashMap<String, (Instant, Option<Arc<TenantView>>)>;

/// Live tenants by name, cached briefly so forward-auth does not query per request.
#[derive(Debug, Default)]
pub struct TenantCache {
    entries: RwLock<TenantEntries>,
}

impl TenantCache {
    /// The live (not disabled) tenant called `name`, if any.
    pub async fn get(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<Option<Arc<TenantView>>, StoreError> {
        if let Ok(entries) = self.entries.read()
            && let Some((at, view)) = entries.get(name)
            && at.elapsed() < TENANT_TTL
        {
            return Ok(view.clone());
        }
        let view = store
            .tenant_by_name(name)
            .await?
            .filter(|t| !t.disabled)
            .and_then(|tenant| {
                let spec = serde_json::from_value::<TenantSpec>(tenant.settings.clone())
                    .or_else(|e| {
                        tracing::warn!(tenant = %tenant.name, error = %e, "tenant settings do not parse as a Tenant spec; using defaults");
                        serde_json::from_value::<TenantSpec>(serde_json::json!({}))
                    })
                    .ok()?;
                Some(Arc::new(TenantView { tenant, spec }))
            });
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= TENANT_CAP {
                entries.clear();
            }
            entries.insert(name.to_owned(), (Instant::now(), view.clone()));
        }
        Ok(view)
    }
}

/// How often recorded API-key uses are written.
pub const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(30);

/// API-key last-use times, collected in memory and written in one batch per interval.
#[derive(Debug, Default)]
pub struct ApiKeyUsage {
    pending: Mutex<HashMap<(TenantId, ApiKeyId), DateTime<Utc>>>,
    flusher_started: AtomicBool,
}

impl ApiKeyUsage {
    /// Notes that `key` was used at `at`; starts the background writer on first use.
    pub fn record(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        tenant: TenantId,
        key: ApiKeyId,
        at: DateTime<Utc>,
    ) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert((tenant, key), at);
        }
        if !self.flusher_started.swap(true, Ordering::Relaxed) {
            let me = Arc::downgrade(self);
            let store = store.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(USAGE_FLUSH_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(me) = me.upgrade() else { break };
                    me.flush(store.as_ref()).await;
                }
            });
        }
    }

    /// Writes every pending use now; returns how many keys were touched.
    pub async fn flush(&self, store: &dyn Store) -> usize {
        let batch: Vec<_> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return 0,
        };
        let mut written = 0;
        for ((tenant, key), at) in batch {
            match store.touch_api_key(tenant, key, at).await {
                Ok(_) => written += 1,
                Err(e) => {
                    tracing::warn!(error = %e, api_key = %key, "could not record API-key use")
                }
            }
        }
        written
    }

    /// How many uses wait to be written.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::forward_auth::decision::tests::person;

    #[test]
    fn entries_expire_and_can_be_removed() {
        let cache = VerifiedCache::default();
        let now = Utc::now();
        let key = [7u8; 32];
        cache.insert(
            key,
            Arc::new(person()),
            now + chrono::Duration::seconds(5),
            now,
        );
        assert!(cache.get(&key, now).is_some());
        assert!(
            cache
                .get(&key, now + chrono::Duration::seconds(6))
                .is_none()
        );
        cache.remove(&key);
        assert!(cache.get(&key, now).is_none());
    }

    #[test]
    fn a_full_shard_is_swept_not_grown() {
        let cache = VerifiedCache::default();
        let now = Utc::now();
        let id = Arc::new(person());
        for i in 0..(SHARD_CAP as u32 + 10) {
            let mut key = [0u8; 32];
            key[1..5].copy_from_slice(&i.to_be_bytes());
            cache.insert(key, id.clone(), now + chrono::Duration::seconds(5), now);
        }
        assert!(cache.len() <= SHARD_CAP);
    }
}
