//! What every case needs: a migrated store on a fresh database, raw SQL access to the same
//! database (to prove what the database itself refuses), fixed times and small builders.

use chrono::{DateTime, Duration, TimeZone, Utc};
use keygate_core::clock::ManualClock;
use keygate_core::ids::{TenantId, UserId};
use keygate_core::store::*;
use keygate_core::tenant_settings::TenantSettings;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// A store under test plus raw access to its database.
pub struct Db {
    pub store: Arc<dyn Store>,
    pub raw: Raw,
}

impl std::ops::Deref for Db {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

/// A pool on the same database, bypassing the store.
pub enum Raw {
    Pg(sqlx::PgPool),
    Sqlite(SqlitePool),
}

impl Raw {
    /// Runs a statement as-is.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Pg(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
        }
    }

    /// The single integer `sql` selects.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    /// `SELECT COUNT(*) FROM {table} WHERE {column} = $1`.
    pub async fn count(&self, table: &str, column: &str, id: Uuid) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1"));
        match self {
            Raw::Pg(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
            Raw::Sqlite(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
        }
    }
}

/// The instant every case starts from.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

/// `t0` plus `secs` seconds.
pub fn t(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(t0()))
}

/// A migrated PostgreSQL store on the fresh database `#[sqlx::test]` created.
pub async fn postgres(pool: sqlx::PgPool) -> Db {
    let store = PgStore::from_pool(pool.clone()).with_clock(clock());
    store.migrate().await.expect("postgres migrations apply");
    Db {
        store: Arc::new(store),
        raw: Raw::Pg(pool),
    }
}

/// A migrated SQLite store on a fresh temporary file (kept alive by the returned dir).
pub async fn sqlite() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_in(&dir).await;
    (db, dir)
}

/// The URL of the SQLite database file in `dir`.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("keygate.db").display())
}

/// A store on the SQLite file in `dir` (created when missing), migrated to the newest version.
pub async fn sqlite_in(dir: &tempfile::TempDir) -> Db {
    let url = sqlite_url(dir);
    let store = SqliteStore::connect(&url)
        .await
        .unwrap()
        .with_clock(clock());
    store.migrate().await.expect("sqlite migrations apply");
    let raw = SqlitePool::connect_with(
        SqliteConnectOptions::from_str(&url)
            .unwrap()
            .foreign_keys(true),
    )
    .await
    .unwrap();
    Db {
        store: Arc::new(store),
        raw: Raw::Sqlite(raw),
    }
}

/// A tenant named `name`, owned by resource uid `uid-{name}`.
pub async fn tenant(s: &dyn Store, name: &str) -> Tenant {
    s.upsert_tenant(&TenantUpsert {
        name: name.into(),
        namespace: format!("ns-{name}"),
        owner_uid: format!("uid-{name}"),
        display_name: name.to_uppercase(),
        settings: TenantSettings::default(),
        deletion_policy: DeletionPolicy::Retain,
        generation: 1,
    })
    .await
    .unwrap()
}

/// A new active account with a password.
pub fn new_user(tenant: TenantId, email: &str) -> NewUser {
    NewUser {
        tenant_id: tenant,
        email: email.into(),
        display_name: "Someone".into(),
        status: UserStatus::Active,
        email_verified: false,
        must_change_password: false,
        password_hash: Some(format!("$argon2id$v=19$fake${email}")),
        groups: vec!["staff".into()],
    }
}

/// An account in `tenant`.
pub async fn user(s: &dyn Store, tenant: TenantId, email: &str) -> User {
    s.insert_user(&new_user(tenant, email)).await.unwrap()
}

/// A session for `user` signed in at `t0`: idle 30 min, absolute 12 h.
pub fn new_session(tenant: TenantId, user: UserId) -> NewSession {
    NewSession {
        tenant_id: tenant,
        user_id: user,
        user_agent: Some("curl/8".into()),
        ip: Some("192.0.2.1".into()),
        amr: vec!["pwd".into()],
        acr: Some("urn:keygate:acr:pwd".into()),
        auth_time: t0(),
        created_at: t0(),
        idle_expires_at: t(30 * 60),
        absolute_expires_at: t(12 * 3600),
        token_hash: None,
        client_id: "keygate".into(),
        scope: "openid".into(),
    }
}

/// A session in `tenant` for `user`.
pub async fn session(s: &dyn Store, tenant: TenantId, user: UserId) -> Session {
    s.insert_session(&new_session(tenant, user)).await.unwrap()
}

/// A 32-byte stand-in for a SHA-256 digest.
pub fn hash(tag: &str) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    for (i, b) in tag.bytes().enumerate() {
        out[i % 32] ^= b.wrapping_add(i as u8);
    }
    out[31] = tag.len() as u8;
    out
}

/// The first refresh token of a session, expiring in 1 day.
pub async fn refresh(s: &dyn Store, session: &Session, tag: &str) -> RefreshTokenRecord {
    s.insert_refresh_token(&NewRefreshToken {
        hash: hash(tag),
        tenant_id: session.tenant_id,
        session_id: session.id,
        issued_at: t0(),
        expires_at: t(86_400),
    })
    .await
    .unwrap()
}

/// An audit event of `kind` at `at`.
pub fn event(
    tenant: TenantId,
    kind: &str,
    actor: Option<UserId>,
    at: DateTime<Utc>,
) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id: tenant,
        at,
        kind: kind.into(),
        actor_user_id: actor,
        ip: Some("198.51.100.7".into()),
        request_id: Some("req-1".into()),
        data: serde_json::json!({ "reason": "test" }),
    }
}

/// An API key row for resource `owner`.
pub fn new_api_key(tenant: TenantId, owner: &str, prefix: &str) -> NewApiKey {
    NewApiKey {
        tenant_id: tenant,
        owner_uid: owner.into(),
        name: "ci".into(),
        prefix: prefix.into(),
        hash: hash(prefix),
        roles: vec!["reader".into()],
        permissions: vec!["orders.read".into()],
        scopes: vec!["api".into()],
        expires_at: Some(t(30 * 86_400)),
    }
}

/// A signing key row.
pub fn signing_key(tenant: TenantId, kid: &str, activates_at: DateTime<Utc>) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        tenant_id: tenant,
        algorithm: "ES256".into(),
        public_jwk: serde_json::json!({ "kty": "EC", "crv": "P-256", "kid": kid, "x": "AA", "y": "BB" }),
        private_key: vec![1, 2, 3, kid.len() as u8],
        created_at: activates_at - Duration::hours(1),
        activates_at,
        retires_at: None,
    }
}

/// Asserts a unique-constraint conflict with the given stable name.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, name: &str) {
    match r {
        Err(StoreError::Conflict { constraint }) => assert_eq!(constraint, name),
        other => panic!("expected Conflict {{ constraint: {name:?} }}, got {other:?}"),
    }
}

/// A confidential client `client_id` of `tenant`, declared by resource `owner`.
pub fn oauth_client(tenant: TenantId, owner: &str, client_id: &str) -> OAuthClientUpsert {
    OAuthClientUpsert {
        tenant_id: tenant,
        owner_uid: owner.into(),
        client_id: client_id.into(),
        display_name: format!("The {client_id} app"),
        client_type: ClientType::Confidential,
        token_endpoint_auth_method: ClientAuthMethod::ClientSecretBasic,
        redirect_uris: vec![
            "https://app.example.com/callback".into(),
            "http://127.0.0.1/native".into(),
        ],
        post_logout_redirect_uris: vec!["https://app.example.com/".into()],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        allowed_scopes: vec!["openid".into(), "email".into(), "orders.read".into()],
        audience: vec!["https://api.example.com".into()],
        consent: ConsentMode::Required,
        lifetimes: ClientLifetimes {
            access_token: Some(std::time::Duration::from_secs(300)),
            ..ClientLifetimes::default()
        },
        id_token_signed_response_alg: None,
        generation: 1,
    }
}

/// A secret of `client` whose hash is [`hash`]`(tag)`.
pub fn client_secret(client: &OAuthClient, tag: &str) -> NewClientSecret {
    NewClientSecret {
        tenant_id: client.tenant_id,
        oauth_client_id: client.id,
        prefix: tag.into(),
        hash: hash(tag),
    }
}
