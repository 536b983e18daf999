//! The SQL both backends share. Each capability is one `macro_rules!` whose body is written
//! once and expanded for [`super::PgStore`] and [`super::SqliteStore`] by [`impl_store!`];
//! the query text is identical on both (`$n` placeholders, `RETURNING`, `ON CONFLICT`).
//!
//! A backend provides, as inherent items of its store type:
//! - `fn now(&self) -> DateTime<Utc>`: bookkeeping time from its clock, in microseconds;
//! - `async fn begin_write(&self) -> Result<Transaction<'static, DB>, StoreError>`: a
//!   transaction that will write (SQLite takes the write lock up front);
//! - `SQL_ROLES_FOR_KEYS`, `SQL_ROLES_BY_NAMES`: the only queries whose text differs
//!   (expanding a JSON array parameter: `jsonb_array_elements_text` vs `json_each`);
//! - `SQL_ROTATE_REFRESH`: refresh rotation as one statement where the database can do it
//!   (PostgreSQL's data-modifying CTE), `None` to rotate in a write transaction (SQLite).
//!
//! Timestamps are bound through [`ts`] so both backends store the same microsecond value
//! (PostgreSQL keeps microseconds; SQLite would keep nanoseconds as text).

pub(super) mod api_keys;
pub(super) mod audit;
pub(super) mod consents;
pub(super) mod idps;
pub(super) mod mfa;
pub(super) mod oauth_clients;
pub(super) mod roles;
pub(super) mod sessions;
pub(super) mod signing_keys;
pub(super) mod tenants;
pub(super) mod tokens;
pub(super) mod users;

use super::model::RoleSubject;
use chrono::{DateTime, SubsecRound, Utc};

/// A timestamp as both backends store it (microsecond precision).
pub(crate) fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// [`ts`] for optional timestamps.
pub(crate) fn ots(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(ts)
}

/// The case-insensitive key of an email, computed here so both backends agree.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A caller's limit, bounded by `max`, as SQL wants it.
pub(crate) fn capped(limit: u32, max: u32) -> i64 {
    i64::from(limit.min(max))
}

/// The key a role binding is matched by. IdP names are DNS labels (no `:`), so the
/// `idp:` form is unambiguous.
pub(crate) fn match_key(subject: &RoleSubject) -> String {
    match subject {
        RoleSubject::UserEmail(e) => format!("email:{}", email_key(e)),
        RoleSubject::Group(g) => format!("group:{g}"),
        RoleSubject::IdpGroup { idp, group } => format!("idp:{idp}:{group}"),
    }
}

/// One row of `role_bindings`, as read back.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BindingRow {
    /// Role the binding belongs to.
    pub role_id: crate::ids::RoleId,
    /// `user_email`, `group` or `idp_group`.
    pub subject_kind: String,
    /// Email (lowercased) or group name.
    pub value: String,
    /// IdP name for `idp_group`.
    pub idp_name: Option<String>,
}

impl BindingRow {
    /// The subject this row stores; `None` for a kind this build does not know.
    pub(crate) fn subject(self) -> Option<RoleSubject> {
        match (self.subject_kind.as_str(), self.idp_name) {
            ("user_email", _) => Some(RoleSubject::UserEmail(self.value)),
            ("group", _) => Some(RoleSubject::Group(self.value)),
            ("idp_group", Some(idp)) => Some(RoleSubject::IdpGroup {
                idp,
                group: self.value,
            }),
            _ => None,
        }
    }
}

/// The columns a subject is stored as: (kind, value, idp name).
pub(crate) fn subject_columns(subject: &RoleSubject) -> (&'static str, String, Option<String>) {
    match subject {
        RoleSubject::UserEmail(e) => ("user_email", email_key(e), None),
        RoleSubject::Group(g) => ("group", g.clone(), None),
        RoleSubject::IdpGroup { idp, group } => ("idp_group", group.clone(), Some(idp.clone())),
    }
}

/// Subjects in stored form: emails lowercased, sorted, without duplicates.
pub(crate) fn normalize_subjects(subjects: &[RoleSubject]) -> Vec<RoleSubject> {
    let mut out: Vec<RoleSubject> = subjects
        .iter()
        .map(|s| match s {
            RoleSubject::UserEmail(e) => RoleSubject::UserEmail(email_key(e)),
            other => other.clone(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The occupancy of `pool` as the pool itself counts it (no query, no lock held long).
pub(crate) fn pool_stats<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> super::PoolStats {
    super::PoolStats {
        size: pool.size(),
        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        max: pool.options().get_max_connections(),
    }
}

/// What every backend store has besides its capabilities: a pool and a clock for bookkeeping
/// timestamps, with their constructors and accessors.
macro_rules! store_basics {
    ($store:ty, $pool:ty, $from_pool_doc:literal) => {
        impl $store {
            #[doc = $from_pool_doc]
            pub fn from_pool(pool: $pool) -> Self {
                Self {
                    pool,
                    clock: std::sync::Arc::new($crate::clock::SystemClock),
                }
            }

            /// Uses `clock` for bookkeeping timestamps (`created_at`, `updated_at`).
            pub fn with_clock(mut self, clock: std::sync::Arc<dyn $crate::clock::Clock>) -> Self {
                self.clock = clock;
                self
            }

            /// The underlying pool, for operational tooling and tests.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            fn now(&self) -> chrono::DateTime<chrono::Utc> {
                $crate::store::sql::ts(self.clock.now())
            }
        }
    };
}
pub(crate) use store_basics;

/// The statement shapes most capabilities repeat, as inherent helpers of a backend's store:
/// rows of one tenant picked by one more key, and time stamps set on rows of one tenant.
macro_rules! query_helpers {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Runs `sql` with `$1 = tenant`, `$2 = key`, `$3 = at`, `$4 = bookkeeping time`
            /// (an `UPDATE … SET revoked_at = $3, updated_at = $4`) and says how many rows changed.
            async fn stamp_rows<'q, K>(
                &self,
                sql: &'static str,
                tenant: $crate::ids::TenantId,
                key: K,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::store::StoreError>
            where
                K: 'q + sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send,
            {
                let done = sqlx::query::<$db>(sql)
                    .bind(tenant)
                    .bind(key)
                    .bind($crate::store::sql::ts(at))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            /// `sql` bound with `$1 = tenant` and `$2 = key`: rows of one tenant picked by one key.
            fn by_tenant_and<'q, R, K>(
                sql: &'static str,
                tenant: $crate::ids::TenantId,
                key: K,
            ) -> sqlx::query::QueryAs<'q, $db, R, <$db as sqlx::Database>::Arguments>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row>,
                K: 'q + sqlx::Encode<'q, $db> + sqlx::Type<$db>,
            {
                sqlx::query_as::<$db, R>(sql).bind(tenant).bind(key)
            }
        }
    };
}
pub(crate) use query_helpers;

/// Implements every capability trait and nothing else for a backend's store type.
macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        $crate::store::sql::query_helpers!($store, $db);
        $crate::store::sql::tenants::tenant_store!($store, $db);
        $crate::store::sql::users::user_store!($store, $db);
        $crate::store::sql::users::credential_store!($store, $db);
        $crate::store::sql::users::identity_link_store!($store, $db);
        $crate::store::sql::idps::idp_store!($store, $db);
        $crate::store::sql::roles::role_store!($store, $db);
        $crate::store::sql::api_keys::api_key_store!($store, $db);
        $crate::store::sql::oauth_clients::oauth_client_store!($store, $db);
        $crate::store::sql::consents::consent_store!($store, $db);
        $crate::store::sql::signing_keys::signing_key_store!($store, $db);
        $crate::store::sql::sessions::session_store!($store, $db);
        $crate::store::sql::sessions::refresh_token_store!($store, $db);
        $crate::store::sql::mfa::mfa_store!($store, $db);
        $crate::store::sql::tokens::one_time_token_store!($store, $db);
        $crate::store::sql::tokens::lockout_store!($store, $db);
        $crate::store::sql::audit::audit_log!($store, $db);
    };
}
pub(crate) use impl_store;
