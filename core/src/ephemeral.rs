//! Short-lived shared state the gateway keeps outside the system of record: rate-limit
//! windows, single-use values (OAuth state, challenges) and revocations. Production uses
//! Redis, so every replica shares it; `keygate dev` uses an in-process stand-in.
//!
//! Revocations are also kept in a local [`RevocationSet`] on every replica: the hot path
//! (forward-auth, token resolution) asks that set without a network round trip. Redis
//! pub/sub pushes each revocation to every replica, and after a (re)connect the set is
//! re-synced from Redis so nothing revoked while disconnected is missed.
//!
//! While Redis is unreachable a replica keeps working on its own: rate-limit windows are
//! counted in the replica (per-replica limits instead of refusing every request), and a
//! revocation is applied locally and queued, then written and published once Redis is back,
//! so every replica still hears of it (session revocations also reach them sooner through
//! the store, the gateway's `revocation_sync`).

mod instrumented;
mod redis_backed;
pub use instrumented::{InstrumentedEphemeral, RedisMetrics};
pub use redis_backed::RedisEphemeral;

use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, HistogramVec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Why the ephemeral store failed; callers treat it as "unavailable" and fail closed.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    /// Redis refused or dropped the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Shared short-lived state; see the module docs.
#[async_trait]
pub trait Ephemeral: Send + Sync + std::fmt::Debug {
    /// Counts one hit in `key`'s fixed window of length `window`; returns the hits so far.
    /// When the shared backend is unreachable, the hit is counted in this replica's own
    /// window instead of failing (a per-replica limit during an outage).
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, EphemeralError>;
    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError>;
    /// Reads `key` without consuming it.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;
    /// Reads and deletes `key` atomically: the value can be used once.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;
    /// Revokes `id` (a session id, an API-key id, a token hash) on every replica for `ttl`.
    /// This replica refuses it at once; when the shared backend is unreachable the
    /// revocation is queued and delivered to the others once it is back, so an outage does
    /// not fail the call.
    async fn revoke(&self, id: &str, ttl: Duration) -> Result<(), EphemeralError>;
    /// This replica's view of revocations, answered locally.
    fn revocations(&self) -> &RevocationSet;
    /// Checks the backend answers (readiness).
    async fn ping(&self) -> Result<(), EphemeralError>;
}

/// The id under which a change of credential `id` (an API key rotated out, its grants
/// edited) travels on the revocation channel: not a revocation, but word that proofs of the
/// credential cached by replicas are stale and must be made again from the store.
pub fn changed_notice(id: &str) -> String {
    format!("changed:{id}")
}

/// A replica-local set of revoked ids with expiry; cheap to query on the hot path.
///
/// It also counts insertions ([`RevocationSet::epoch`]): a caller that found an identity
/// unrevoked at epoch `e` knows it is still unrevoked while the epoch is `e`, so a cache of
/// proven identities skips the lookup (and its lock) until something is revoked.
#[derive(Clone, Debug)]
pub struct RevocationSet(Arc<Revoked>);

#[derive(Debug, Default)]
struct Revoked {
    ids: RwLock<HashMap<String, Instant>>,
    epoch: AtomicU64,
    pushed: AtomicU64,
    /// Revocations this replica published and has not yet heard back, with when.
    published: Mutex<HashMap<String, Instant>>,
    lag: Option<Lag>,
}

/// Most published revocations waiting for their echo; past it, those older than a minute
/// (their echo is lost: Redis was down) are dropped.
const PUBLISHED_MAX: usize = 1024;

/// How late revocations reached this replica, by the path that brought them.
#[derive(Clone, Debug)]
struct Lag {
    family: HistogramVec,
    channel: Histogram,
    store: Histogram,
}

impl Lag {
    fn new() -> Result<Self, prometheus::Error> {
        let family = HistogramVec::new(
            HistogramOpts::new(
                "keygate_revocation_lag_seconds",
                "How late a revocation reached this replica, by path (channel: from publishing to hearing it on the Redis channel; store: from the revocation to the store re-check applying one the channel missed)",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["path"],
        )?;
        Ok(Self {
            channel: family.with_label_values(&["channel"]),
            store: family.with_label_values(&["store"]),
            family,
        })
    }
}

/// The path a revocation took to this replica, for [`RevocationSet::observe_lag`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LagPath {
    /// The Redis channel.
    Channel,
    /// The store re-check (the fallback when the channel lost it).
    Store,
}

impl Default for RevocationSet {
    fn default() -> Self {
        let lag = Lag::new()
            .inspect_err(|e| tracing::warn!(error = %e, "revocation lag histogram not made"))
            .ok();
        Self(Arc::new(Revoked {
            lag,
            ..Revoked::default()
        }))
    }
}

impl RevocationSet {
    /// Whether `id` is revoked now.
    pub fn contains(&self, id: &str) -> bool {
        let Ok(map) = self.0.ids.read() else {
            // A poisoned lock means a panic elsewhere; fail closed.
            return true;
        };
        map.get(id).is_some_and(|until| *until > Instant::now())
    }

    /// Records `id` as revoked for `ttl`.
    pub fn insert(&self, id: &str, ttl: Duration) {
        if let Ok(mut map) = self.0.ids.write() {
            let now = Instant::now();
            if map.len() > 10_000 {
                map.retain(|_, until| *until > now);
            }
            map.insert(id.to_owned(), now + ttl);
        }
        // After the insert: whoever read the old epoch before checking either saw this id
        // or will see a new epoch and check again.
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Records `id` as revoked for `ttl` because the revocation channel said so, and counts
    /// it ([`RevocationSet::pushed`]).
    pub fn insert_pushed(&self, id: &str, ttl: Duration) {
        self.insert(id, ttl);
        self.0.pushed.fetch_add(1, Ordering::Relaxed);
        let sent = self.0.published.lock().ok().and_then(|mut p| p.remove(id));
        if let Some(sent) = sent {
            self.observe_lag(LagPath::Channel, sent.elapsed().as_secs_f64());
        }
    }

    /// Notes that this replica is publishing a revocation of `id` now, so hearing it back on
    /// the channel measures the channel's delay ([`LagPath::Channel`]).
    pub fn publishing(&self, id: &str) {
        if let Ok(mut published) = self.0.published.lock() {
            if published.len() >= PUBLISHED_MAX {
                published.retain(|_, at| at.elapsed() < Duration::from_secs(60));
            }
            if published.len() < PUBLISHED_MAX {
                published.insert(id.to_owned(), Instant::now());
            }
        }
    }

    /// Records that a revocation reached this replica `seconds` after it was made.
    pub fn observe_lag(&self, path: LagPath, seconds: f64) {
        if let Some(lag) = &self.0.lag {
            match path {
                LagPath::Channel => lag.channel.observe(seconds),
                LagPath::Store => lag.store.observe(seconds),
            }
        }
    }

    /// Registers the lag histogram (`keygate_revocation_lag_seconds`) in `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        match &self.0.lag {
            Some(lag) => registry.register(Box::new(lag.family.clone())),
            None => Ok(()),
        }
    }

    /// How many revocation messages arrived over the channel (Redis pub/sub; a replica also
    /// hears its own), so operators can see revocations propagate.
    pub fn pushed(&self) -> u64 {
        self.0.pushed.load(Ordering::Relaxed)
    }

    /// How many insertions the set has seen; read it *before* checking ids.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Acquire)
    }

    /// How many entries are held (expired ones may linger until the next sweep).
    pub fn len(&self) -> usize {
        self.0.ids.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-process stand-in for Redis: correct for one process only (`keygate dev`, tests).
#[derive(Debug, Default)]
pub struct MemoryEphemeral {
    values: Mutex<Expiring<(Vec<u8>, Instant)>>,
    windows: Mutex<Expiring<(u64, Instant)>>,
    revoked: RevocationSet,
}

/// Fewest entries before an in-process map is swept of expired ones.
const SWEEP_FLOOR: usize = 1024;

/// A map whose expired entries are dropped whenever it has doubled since the last sweep, so it
/// holds at most about twice what is live (Redis expires keys itself).
#[derive(Debug)]
struct Expiring<V> {
    map: HashMap<String, V>,
    sweep_at: usize,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            sweep_at: SWEEP_FLOOR,
        }
    }
}

impl<V> Expiring<V> {
    /// Inserts, first sweeping entries `until` says have expired if the map has grown enough.
    fn insert(&mut self, key: String, value: V, until: impl Fn(&V) -> Instant) {
        if self.map.len() >= self.sweep_at {
            let now = Instant::now();
            self.map.retain(|_, v| until(v) > now);
            self.sweep_at = (self.map.len() * 2).max(SWEEP_FLOOR);
        }
        self.map.insert(key, value);
    }
}

impl MemoryEphemeral {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many values and rate windows are held (expired ones linger until the next sweep).
    pub fn len(&self) -> usize {
        let values = self.values.lock().map(|v| v.map.len()).unwrap_or(0);
        let windows = self.windows.lock().map(|w| w.map.len()).unwrap_or(0);
        values + windows
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Ephemeral for MemoryEphemeral {
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, EphemeralError> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let count = match windows.map.get_mut(key) {
            Some(entry) if entry.1 > now => {
                entry.0 += 1;
                entry.0
            }
            _ => {
                windows.insert(key.to_owned(), (1, now + window), |w| w.1);
                1
            }
        };
        Ok(count)
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.insert(
            key.to_owned(),
            (value.to_vec(), Instant::now() + ttl),
            |v| v.1,
        );
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values
            .map
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone()))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values
            .map
            .remove(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v))
    }

    async fn revoke(&self, id: &str, ttl: Duration) -> Result<(), EphemeralError> {
        self.revoked.insert(id, ttl);
        Ok(())
    }

    fn revocations(&self) -> &RevocationSet {
        &self.revoked
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        Ok(())
    }
}
