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
pub use instrumented::{InstrumentedEphemeral, RedisMetrics};

use async_trait::async_trait;
use futures::StreamExt;
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

/// Longest wait for a TCP connection to Redis.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait for a Redis reply (they take well under a millisecond when Redis is well).
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// Reconnect attempts per failed call before it reports the error.
const REDIS_CONNECT_RETRIES: usize = 1;

/// Most revocations kept waiting for Redis to come back; past it the oldest are dropped
/// (session revocations still reach every replica through the store).
const PENDING_CAP: usize = 10_000;

/// Revocations made while Redis was unreachable: (id, remembered until), written to Redis
/// and published by the listener once it has reconnected.
type Pending = Arc<Mutex<Vec<(String, Instant)>>>;

/// Redis-backed ephemeral state shared by all gateway replicas.
pub struct RedisEphemeral {
    manager: redis::aio::ConnectionManager,
    prefix: String,
    revoked: RevocationSet,
    /// Rate-limit windows counted in this replica while Redis is unreachable.
    local: MemoryEphemeral,
    pending: Pending,
    listener: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RedisEphemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEphemeral")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisEphemeral {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl RedisEphemeral {
    /// Connects to `url`; every key and the revocation channel start with `prefix`
    /// (`kg:` in production, a unique one per test).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, EphemeralError> {
        let client = redis::Client::open(url)?;
        // Bounded waits: during an outage a call fails within about a second and callers
        // fall back or fail closed, instead of waiting out the client's default back-off.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
            .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
            .set_number_of_retries(REDIS_CONNECT_RETRIES)
            .set_max_delay(Duration::from_millis(200));
        let manager = client.get_connection_manager_with_config(config).await?;
        let revoked = RevocationSet::default();
        let pending = Pending::default();
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(
            client,
            prefix.to_owned(),
            revoked.clone(),
            pending.clone(),
            synced_tx,
        ));
        // Serve only once the first resync is done, so a fresh replica knows earlier revocations.
        let _ = tokio::time::timeout(Duration::from_secs(10), synced_rx).await;
        Ok(Self {
            manager,
            prefix: prefix.to_owned(),
            revoked,
            local: MemoryEphemeral::new(),
            pending,
            listener,
        })
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.prefix)
    }
}

fn revocation_channel(prefix: &str) -> String {
    format!("{prefix}revocations")
}

/// Subscribes to revocations, re-syncing the local set after every (re)connect (and
/// delivering the revocations queued while Redis was away).
async fn listen(
    client: redis::Client,
    prefix: String,
    set: RevocationSet,
    pending: Pending,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut backoff = Duration::from_millis(200);
    loop {
        match subscribe_and_sync(&client, &prefix, &set, &pending).await {
            Ok(mut pubsub) => {
                backoff = Duration::from_millis(200);
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some((id, secs)) = payload.rsplit_once('|') {
                        set.insert_pushed(id, Duration::from_secs(secs.parse().unwrap_or(3600)));
                    }
                }
                tracing::warn!("revocation feed from Redis closed; reconnecting and re-syncing");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to revocations in Redis; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe_and_sync(
    client: &redis::Client,
    prefix: &str,
    set: &RevocationSet,
    pending: &Pending,
) -> Result<redis::aio::PubSub, EphemeralError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(revocation_channel(prefix)).await?;
    // Subscribed first, then read what exists: a revocation in between is seen twice, never lost.
    let mut conn = client.get_multiplexed_async_connection().await?;
    deliver_pending(&mut conn, prefix, pending).await?;
    let pattern = format!("{prefix}rev:*");
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<String> =
            redis::AsyncCommands::scan_match(&mut conn, &pattern).await?;
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            keys.push(k?);
        }
        keys
    };
    let strip = format!("{prefix}rev:");
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await?;
        if ttl > 0 {
            set.insert(
                key.trim_start_matches(&strip),
                Duration::from_millis(ttl as u64),
            );
        }
    }
    Ok(pubsub)
}

/// Writes and publishes the revocations queued while Redis was unreachable; those it could
/// not deliver stay queued for the next reconnect.
async fn deliver_pending(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    pending: &Pending,
) -> Result<(), EphemeralError> {
    let queued = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
    let now = Instant::now();
    let mut left = queued.into_iter().filter(|(_, until)| *until > now);
    while let Some((id, until)) = left.next() {
        let ttl = until.saturating_duration_since(now);
        if let Err(e) = publish_revocation(conn, prefix, &id, ttl).await {
            let mut queue = pending.lock().unwrap_or_else(|e| e.into_inner());
            queue.push((id, until));
            queue.extend(left);
            return Err(e);
        }
    }
    Ok(())
}

/// Remembers `id` as revoked in Redis for `ttl` and tells every replica.
async fn publish_revocation<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    prefix: &str,
    id: &str,
    ttl: Duration,
) -> Result<(), EphemeralError> {
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(format!("{prefix}rev:{id}"))
        .arg(1)
        .arg("EX")
        .arg(secs(ttl))
        .ignore()
        .cmd("PUBLISH")
        .arg(revocation_channel(prefix))
        .arg(format!("{id}|{}", secs(ttl)))
        .ignore()
        .query_async(conn)
        .await?;
    Ok(())
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

#[async_trait]
impl Ephemeral for RedisEphemeral {
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, EphemeralError> {
        let shared = self.key("rl", key);
        let mut conn = self.manager.clone();
        let counted: Result<(u64,), _> = redis::pipe()
            .atomic()
            .incr(&shared, 1u64)
            .cmd("EXPIRE")
            .arg(&shared)
            .arg(secs(window))
            .arg("NX")
            .ignore()
            .query_async(&mut conn)
            .await;
        match counted {
            Ok((count,)) => Ok(count),
            Err(e) => {
                tracing::warn!(error = %e, "Redis unreachable; counting a rate limit in this replica");
                self.local.hit(key, window).await
            }
        }
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        let mut conn = self.manager.clone();
        let _: () = redis::cmd("SET")
            .arg(self.key("kv", key))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.manager.clone();
        Ok(redis::cmd("GET")
            .arg(self.key("kv", key))
            .query_async(&mut conn)
            .await?)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.manager.clone();
        Ok(redis::cmd("GETDEL")
            .arg(self.key("kv", key))
            .query_async(&mut conn)
            .await?)
    }

    async fn revoke(&self, id: &str, ttl: Duration) -> Result<(), EphemeralError> {
        // Local first: this replica refuses the id even if Redis is slow to echo it back.
        self.revoked.insert(id, ttl);
        self.revoked.publishing(id);
        let mut conn = self.manager.clone();
        if let Err(e) = publish_revocation(&mut conn, &self.prefix, id, ttl).await {
            tracing::warn!(error = %e, "Redis unreachable; revocation queued until it is back");
            let mut queue = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if queue.len() >= PENDING_CAP {
                let now = Instant::now();
                queue.retain(|(_, until)| *until > now);
                if queue.len() >= PENDING_CAP {
                    queue.remove(0);
                }
            }
            queue.push((id.to_owned(), Instant::now() + ttl));
        }
        Ok(())
    }

    fn revocations(&self) -> &RevocationSet {
        &self.revoked
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        let mut conn = self.manager.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
