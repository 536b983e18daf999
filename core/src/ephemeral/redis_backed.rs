//! The Redis-backed [`Ephemeral`] every gateway replica shares: rate-limit windows and
//! single-use values as Redis keys, revocations as keys plus a pub/sub channel, and the
//! fallbacks for while Redis is unreachable (the module comment of [`super`]).

use super::{Ephemeral, EphemeralError, MemoryEphemeral, RevocationSet};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
