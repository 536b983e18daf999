//! One error type for every store operation, with unique-constraint violations named so
//! the HTTP edge can answer 409 without parsing database messages itself.

use sqlx::error::{DatabaseError, ErrorKind};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist in this tenant (or a referenced parent row does not).
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; `constraint` is one of [`CONSTRAINTS`].
    #[error("conflicts with an existing row ({constraint})")]
    Conflict {
        /// Stable constraint name, identical on every backend.
        constraint: &'static str,
    },
    /// Something tried to change or remove an audit event.
    #[error("the audit log is append-only")]
    AppendOnly,
    /// The database URL names no supported backend.
    #[error(
        "unsupported database URL scheme `{scheme}`: use postgres://, postgresql:// or sqlite:"
    )]
    UnsupportedUrl {
        /// The scheme found (never the whole URL, which may hold a password).
        scheme: String,
    },
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A tenant row holds settings that do not parse or break a rule (edited by hand, or
    /// written by a newer keygate): the tenant cannot be served until it is reconciled again.
    #[error("tenant `{tenant}` has settings keygate cannot use: {source}")]
    InvalidTenantSettings {
        /// Name of the tenant.
        tenant: String,
        /// What is wrong with them.
        #[source]
        source: crate::tenant_settings::TenantSettingsError,
    },
    /// The SQLite database file could not be created or made private to its owner.
    #[error("cannot create or protect the database file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Unique constraints by their stable name and by the column list SQLite reports instead.
pub const CONSTRAINTS: &[(&str, &str)] = &[
    ("tenants_name", "tenants.name"),
    ("users_email", "users.tenant_id, users.email_lower"),
    (
        "external_identities_subject",
        "external_identities.idp_id, external_identities.subject",
    ),
    (
        "external_identities_user_idp",
        "external_identities.user_id, external_identities.idp_id",
    ),
    (
        "identity_providers_name",
        "identity_providers.tenant_id, identity_providers.name",
    ),
    ("roles_name", "roles.tenant_id, roles.name"),
    ("api_keys_prefix", "api_keys.prefix"),
    (
        "oauth_clients_client_id",
        "oauth_clients.tenant_id, oauth_clients.client_id",
    ),
    ("signing_keys_kid", "signing_keys.kid"),
    ("refresh_tokens_hash", "refresh_tokens.hash"),
    ("sessions_token_hash", "sessions.token_hash"),
    (
        "backup_codes_hash",
        "backup_codes.tenant_id, backup_codes.user_id, backup_codes.code_hash",
    ),
    ("one_time_tokens_hash", "one_time_tokens.token_hash"),
];

/// The message both backends' audit triggers raise.
pub(crate) const APPEND_ONLY_MESSAGE: &str = "audit_events is append-only";

/// Fallback name for a unique violation of a constraint missing from [`CONSTRAINTS`].
const UNKNOWN_CONSTRAINT: &str = "unknown";

fn constraint_name(db: &dyn DatabaseError) -> &'static str {
    if let Some(name) = db.constraint() {
        return CONSTRAINTS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(UNKNOWN_CONSTRAINT, |(n, _)| n);
    }
    // SQLite: "UNIQUE constraint failed: users.tenant_id, users.email_lower"
    // or, for a named expression index, "UNIQUE constraint failed: index 'name'".
    let detail = db
        .message()
        .split_once("constraint failed: ")
        .map_or("", |(_, d)| d.trim());
    let index = detail
        .strip_prefix("index '")
        .and_then(|s| s.strip_suffix('\''));
    CONSTRAINTS
        .iter()
        .find(|(n, cols)| *cols == detail || Some(*n) == index)
        .map_or(UNKNOWN_CONSTRAINT, |(n, _)| n)
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error() {
            if db.message().contains(APPEND_ONLY_MESSAGE) {
                return StoreError::AppendOnly;
            }
            match db.kind() {
                ErrorKind::UniqueViolation => {
                    return StoreError::Conflict {
                        constraint: constraint_name(db),
                    };
                }
                // A child row naming a parent that is not in this tenant: the parent is
                // "not found" from the caller's point of view.
                ErrorKind::ForeignKeyViolation => return StoreError::NotFound,
                _ => {}
            }
        }
        StoreError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

impl StoreError {
    /// The database could not be reached or dropped the connection (refused, reset, timed
    /// out waiting for a connection, shutting down): an outage the caller may retry after,
    /// not a fault of the request or the data.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                // SQLSTATE class 08 (connection exception), 57P01–57P03 (the server is
                // shutting down, crashed or not yet accepting connections).
                db.code().is_some_and(|c| {
                    c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")
                })
            }
            _ => false,
        }
    }
}
