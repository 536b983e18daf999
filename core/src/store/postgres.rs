//! The PostgreSQL backend: the system of record in a cluster.

use super::sql::{impl_store, store_basics};
use super::{Backend, JANITOR_LOCK_KEY, PoolSettings, PoolStats, Store, StoreError, Swept};
use crate::clock::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;

/// Migrations embedded at build time from `migrations/postgres`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

impl PgStore {
    /// Connects with default pool settings (does not migrate).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &PoolSettings::default()).await
    }

    /// Connects with the given pool settings (does not migrate).
    pub async fn connect_with(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect(url)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Deletes audit rows past their tenant's retention through `keygate_expire_audit`
    /// (migration 0005): the gateway's role may run it but has no DELETE on the table.
    async fn expire_audit(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = super::sql::ts(now);
        super::expire_audit_in_chunks(|| async move {
            Ok(
                sqlx::query_scalar::<_, i64>("SELECT keygate_expire_audit($1, $2)")
                    .bind(now)
                    .bind(i32::try_from(super::AUDIT_CHUNK).unwrap_or(i32::MAX))
                    .fetch_one(&self.pool)
                    .await?,
            )
        })
        .await
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    const SQL_ROLES_FOR_KEYS: &'static str = "SELECT r.id, r.name, r.permissions FROM roles r \
         WHERE r.tenant_id = $1 AND EXISTS (SELECT 1 FROM role_bindings b \
           WHERE b.tenant_id = $1 AND b.role_id = r.id \
             AND b.match_key IN (SELECT jsonb_array_elements_text($2))) \
         ORDER BY r.name";

    const SQL_ROLES_BY_NAMES: &'static str = "SELECT r.id, r.name, r.permissions FROM roles r \
         WHERE r.tenant_id = $1 AND r.name IN (SELECT jsonb_array_elements_text($2)) \
         ORDER BY r.name";

    // One autocommit statement (one round trip) instead of BEGIN, UPDATE, INSERT, COMMIT:
    // refresh rotation is a hot path. Concurrent rotations of one token serialize on its row
    // lock; the loser re-checks `rotated_at IS NULL`, updates nothing and inserts nothing.
    const SQL_ROTATE_REFRESH: Option<&'static str> = Some(
        "WITH won AS (\
           UPDATE refresh_tokens SET rotated_at = $3, replaced_by = $4 \
           WHERE tenant_id = $1 AND hash = $2 AND rotated_at IS NULL AND expires_at > $3 \
             AND session_id IN (SELECT id FROM sessions WHERE tenant_id = $1 \
               AND revoked_at IS NULL AND idle_expires_at > $3 AND absolute_expires_at > $3 \
               AND ($6::text IS NULL OR client_id = $6)) \
           RETURNING session_id) \
         INSERT INTO refresh_tokens (hash, tenant_id, session_id, issued_at, expires_at) \
         SELECT $4, $1, session_id, $3, $5 FROM won RETURNING *",
    );
}

store_basics!(
    PgStore,
    PgPool,
    "Wraps an existing pool (tests hand in a fresh database per test)."
);
impl_store!(PgStore, sqlx::Postgres);

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(MIGRATOR.run(&self.pool).await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn pool_stats(&self) -> PoolStats {
        super::sql::pool_stats(&self.pool)
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Option<Swept>, StoreError> {
        // A session-level lock on one pooled connection: a replica that dies mid-sweep
        // drops its connection, and with it the lock.
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(JANITOR_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        let swept = match super::sweep(self, now).await {
            Ok(swept) => self.expire_audit(now).await.map(|audit_events| Swept {
                audit_events,
                ..swept
            }),
            Err(e) => Err(e),
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(JANITOR_LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // Never hand a connection that may still hold the lock back to the pool.
            let _ = conn.close().await;
        }
        swept.map(Some)
    }
}
