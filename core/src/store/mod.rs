//! Storage: the capability traits every component codes against, and their PostgreSQL
//! and SQLite implementations, chosen once at start-up by [`connect`].
//!
//! ```text
//!             ┌──────────── Store (all capabilities + migrate/ping) ────────────┐
//!  operator → TenantStore  IdpStore  RoleStore  ApiKeyStore  OAuthClientStore  SigningKeyStore
//!  gateway  → UserStore  CredentialStore  IdentityLinkStore  SessionStore  ConsentStore
//!             RefreshTokenStore  MfaStore  OneTimeTokenStore  LockoutStore  AuditLog
//!             └── PgStore (postgres://) ──┬── SqliteStore (sqlite:) ──────────────┘
//!                                         └ one SQL text for both: sql/*.rs macros
//! ```
//!
//! Invariants kept here (DESIGN §4):
//! - every lookup is tenant-scoped in SQL; child rows reference parents by
//!   (tenant_id, id), so no row can even point into another tenant;
//! - refresh rotation, TOTP steps, backup codes and one-time tokens are single-use by a
//!   compare-and-set in one statement;
//! - `audit_events` is append-only in the database itself (triggers), has no foreign keys
//!   (erasure keeps the trail) and no PII columns; queries are capped at
//!   [`AUDIT_QUERY_MAX`];
//! - only hashes of refresh tokens, API keys, OAuth client secrets, one-time tokens and backup codes are
//!   stored; signing keys, TOTP seeds and IdP secrets arrive sealed.

mod client_traits;
mod error;
mod instrumented;
mod model;
mod postgres;
mod sql;
mod sqlite;
mod traits;

pub use client_traits::*;
pub use error::{CONSTRAINTS, StoreError};
pub use instrumented::{InstrumentedStore, StoreMetrics};
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use traits::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Which database a store runs on (for logs and readiness output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// Every capability in one object, as the gateway and operator hold it.
#[async_trait]
pub trait Store:
    TenantStore
    + UserStore
    + CredentialStore
    + IdentityLinkStore
    + IdpStore
    + RoleStore
    + ApiKeyStore
    + OAuthClientStore
    + ConsentStore
    + SigningKeyStore
    + SessionStore
    + RefreshTokenStore
    + MfaStore
    + OneTimeTokenStore
    + LockoutStore
    + AuditLog
    + Send
    + Sync
    + std::fmt::Debug
{
    /// Applies pending migrations (already-applied ones are checked, never changed).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Answers when the database answers a query (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Removes rows past their lifetime (sessions with their refresh families, one-time
    /// tokens, audit events past their tenant's retention) unless another process is doing so now: `None` when it is (on PostgreSQL an
    /// advisory lock, [`JANITOR_LOCK_KEY`], lets one replica sweep at a time).
    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Option<Swept>, StoreError>;
    /// The connection pool's occupancy now (read from the pool, no query), for the
    /// gateway's `/metrics`.
    fn pool_stats(&self) -> PoolStats;
}

/// How full a store's connection pool is at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (in use or idle).
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Most connections the pool opens ([`PoolSettings::max_connections`]).
    pub max: u32,
}

/// The PostgreSQL advisory-lock key the janitor holds while it sweeps, so replicas take
/// turns instead of deleting the same rows at once ("kgjanito" in ASCII).
pub const JANITOR_LOCK_KEY: i64 = 0x6b67_6a61_6e69_746f;

/// What one janitor sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Sessions past their absolute expiry, with their refresh-token families.
    pub sessions: u64,
    /// One-time tokens (reset, verification, invite) past their expiry.
    pub one_time_tokens: u64,
    /// Audit events older than their tenant's `audit.retentionDays`.
    pub audit_events: u64,
}

/// Most audit rows one delete removes, so a large backlog is removed in short transactions
/// instead of one long lock.
pub const AUDIT_CHUNK: i64 = 5_000;

/// The sweep itself, shared by both backends: the deletes the store's janitors define.
async fn sweep<S: Store + ?Sized>(store: &S, now: DateTime<Utc>) -> Result<Swept, StoreError> {
    Ok(Swept {
        sessions: store.delete_expired_sessions(now).await?,
        one_time_tokens: store.delete_expired_one_time_tokens(now).await?,
        audit_events: 0,
    })
}

/// Runs `chunk` (one bounded delete of expired audit rows, answering how many it removed)
/// until a round removes fewer than [`AUDIT_CHUNK`]; the total removed.
async fn expire_audit_in_chunks<F, Fut>(mut chunk: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64, StoreError>>,
{
    let mut total = 0;
    loop {
        let gone = chunk().await?;
        total += u64::try_from(gone).unwrap_or(0);
        if gone < AUDIT_CHUNK {
            return Ok(total);
        }
    }
}

/// Connection pool sizing, so deployments can match the database's connection budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections held open.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens the store a URL names: `postgres://` / `postgresql://` → [`PgStore`],
/// `sqlite:` / `sqlite://` → [`SqliteStore`] (file created if missing). Does not migrate.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with(url, &PoolSettings::default()).await
}

/// [`connect`] with explicit pool settings.
pub async fn connect_with(
    url: &str,
    settings: &PoolSettings,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect_with(url, settings).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect_with(url, settings).await?))
    } else {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        Err(StoreError::UnsupportedUrl {
            scheme: scheme.chars().take(32).collect(),
        })
    }
}
