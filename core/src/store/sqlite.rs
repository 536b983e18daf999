//! The SQLite backend: `keygate dev`, tests, single-node installs.

use super::sql::{impl_store, store_basics};
use super::{Backend, PoolSettings, PoolStats, Store, StoreError, Swept};
use crate::clock::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Migrations embedded at build time from `migrations/sqlite`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a writer waits for another writer before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The store on SQLite (WAL, foreign keys on, busy timeout).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by a `sqlite:` URL (does not migrate).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &PoolSettings::default()).await
    }

    /// [`SqliteStore::connect`] with the given pool settings.
    pub async fn connect_with(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?;
        owner_only(options.get_filename())?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // Switch a new file to WAL on one connection first: the pool opens its first
        // connections concurrently, and two of them changing the journal mode of the same
        // fresh file at once can fail with "database is locked" (seen in CI under load).
        {
            use sqlx::Connection;
            sqlx::SqliteConnection::connect_with(&options)
                .await?
                .close()
                .await?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // An in-memory database lives only as long as a connection to it.
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Deletes audit rows past their tenant's retention, a chunk per statement; the
    /// trigger of migration 0005 refuses any row still within it. "Now" is the earlier of
    /// the caller's clock and the database's, as on PostgreSQL.
    async fn expire_audit(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = super::sql::ts(now);
        super::expire_audit_in_chunks(|| async move {
            let done = sqlx::query(
                "DELETE FROM audit_events WHERE id IN (\
                   SELECT a.id FROM audit_events a LEFT JOIN tenants t ON t.id = a.tenant_id \
                   WHERE julianday(a.at) <= min(julianday($1), julianday('now')) \
                     - coalesce(t.audit_retention_days, 400) \
                   LIMIT $2)",
            )
            .bind(now)
            .bind(super::AUDIT_CHUNK)
            .execute(&self.pool)
            .await?;
            Ok(i64::try_from(done.rows_affected()).unwrap_or(i64::MAX))
        })
        .await
    }

    /// Takes the write lock up front, so a transaction never fails half-way when it
    /// upgrades from reading to writing.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    const SQL_ROLES_FOR_KEYS: &'static str = "SELECT r.id, r.name, r.permissions FROM roles r \
         WHERE r.tenant_id = $1 AND EXISTS (SELECT 1 FROM role_bindings b \
           WHERE b.tenant_id = $1 AND b.role_id = r.id \
             AND b.match_key IN (SELECT value FROM json_each($2))) \
         ORDER BY r.name";

    const SQL_ROLES_BY_NAMES: &'static str = "SELECT r.id, r.name, r.permissions FROM roles r \
         WHERE r.tenant_id = $1 AND r.name IN (SELECT value FROM json_each($2)) \
         ORDER BY r.name";

    // SQLite has no data-modifying CTEs: rotation takes the write lock and runs two statements.
    const SQL_ROTATE_REFRESH: Option<&'static str> = None;
}

/// Creates the database file readable and writable by its owner only (0600), or narrows an
/// existing one to that: it holds password hashes, session and token hashes and sealed keys,
/// like the master key beside it in `keygate dev`. SQLite gives its `-wal` and `-shm` files
/// the database file's mode.
#[cfg(unix)]
fn owner_only(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path.as_os_str();
    if name.is_empty() || name == ":memory:" {
        return Ok(());
    }
    let failed = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)
                .map_err(failed)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
                    .map_err(failed)?;
            }
            Ok(())
        }
        Err(e) => Err(failed(e)),
    }
}

#[cfg(not(unix))]
fn owner_only(_path: &std::path::Path) -> Result<(), StoreError> {
    Ok(())
}

store_basics!(
    SqliteStore,
    SqlitePool,
    "Wraps an existing pool; it must have been opened with foreign keys on."
);
impl_store!(SqliteStore, sqlx::Sqlite);

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(MIGRATOR.run(&self.pool).await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn pool_stats(&self) -> PoolStats {
        super::sql::pool_stats(&self.pool)
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Option<Swept>, StoreError> {
        // One process owns a SQLite file (`keygate dev` locks its data folder), and SQLite
        // serializes writers itself: no lock to take.
        let swept = super::sweep(self, now).await?;
        Ok(Some(Swept {
            audit_events: self.expire_audit(now).await?,
            ..swept
        }))
    }
}
