//! PostgreSQL only: the gateway's and the operator's database roles (migration 0004) let
//! each do its own work and nothing more. Each case signs in to the test's database as a
//! fresh login role that is a member of `keygate_gateway` or `keygate_operator`, as the
//! chart's gateway and operator do.

use crate::fixtures::{self, event, new_api_key, new_session, signing_key, t, t0};
use keygate_core::store::*;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;

/// A login role in `group`, connected to the same database as `owner`.
struct Login {
    name: String,
    pool: PgPool,
    owner: PgPool,
}

impl Login {
    async fn new(owner: &PgPool, group: &str) -> Self {
        let name = format!("kg_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {name} LOGIN IN ROLE {group}"
        )))
        .execute(owner)
        .await
        .unwrap();
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(owner)
            .await
            .unwrap();
        let options = owner
            .connect_options()
            .as_ref()
            .clone()
            .username(&name)
            .database(&database);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .unwrap();
        Self {
            name,
            pool,
            owner: owner.clone(),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(PgStore::from_pool(self.pool.clone()))
    }

    /// Runs `sql` as this login; the SQLSTATE when the database refuses it.
    async fn try_sql(&self, sql: &str) -> Result<u64, String> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| match e {
                sqlx::Error::Database(d) => d.code().unwrap_or_default().into_owned(),
                other => panic!("not a database refusal: {other}"),
            })
    }

    async fn drop(self) {
        self.pool.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {}", self.name)))
            .execute(&self.owner)
            .await
            .unwrap();
    }
}

/// PostgreSQL's `insufficient_privilege`.
const DENIED: &str = "42501";

/// The attack: with the gateway's credential (the internet-facing process), rewrite the
/// audit trail, drop its guard, or change what the operator declared. Every statement is
/// refused for lack of privilege, while the gateway's own writes go through.
pub async fn the_gateway_role_cannot_rewrite_audit_or_declared_state(owner: PgPool) {
    let db = fixtures::postgres(owner.clone()).await;
    let tenant = fixtures::tenant(&*db, "acme").await;
    let key = db
        .insert_api_key(&new_api_key(tenant.id, "uid-key", "abcd1234"))
        .await
        .unwrap();
    db.insert_signing_key(&signing_key(tenant.id, "kid-1", t0()))
        .await
        .unwrap();
    db.append_audit(&event(tenant.id, "user.sign_in", None, t0()))
        .await
        .unwrap();

    let gw = Login::new(&owner, "keygate_gateway").await;
    let refused = [
        "UPDATE audit_events SET kind = 'nothing.happened'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DROP TRIGGER audit_events_no_update_delete ON audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "UPDATE tenants SET settings = '{}'",
        "DELETE FROM tenants",
        "UPDATE roles SET permissions = '[\"*\"]'",
        "INSERT INTO role_bindings (id, tenant_id, role_id, subject_kind, value, match_key, created_at) \
           SELECT gen_random_uuid(), tenant_id, id, 'group', 'everyone', 'group:everyone', now() FROM roles",
        "UPDATE api_keys SET permissions = '[\"*\"]', expires_at = NULL, revoked_at = NULL",
        "UPDATE signing_keys SET retires_at = now()",
        "DELETE FROM signing_keys",
        "UPDATE identity_providers SET config = '{}'",
        "CREATE TABLE keygate_backdoor (x int)",
    ];
    for sql in refused {
        assert_eq!(
            gw.try_sql(sql).await,
            Err(DENIED.to_owned()),
            "the gateway's role must not run: {sql}"
        );
    }

    // What the gateway does need still works under its role.
    let store = gw.store();
    assert_eq!(
        store.tenant_by_name("acme").await.unwrap().map(|t| t.id),
        Some(tenant.id)
    );
    let user = store
        .insert_user(&fixtures::new_user(tenant.id, "ada@example.com"))
        .await
        .unwrap();
    let session = store
        .insert_session(&new_session(tenant.id, user.id))
        .await
        .unwrap();
    fixtures::refresh(&*store, &session, "r1").await;
    store
        .revoke_session(tenant.id, session.id, t(60))
        .await
        .unwrap();
    store
        .append_audit(&event(tenant.id, "session.revoked", Some(user.id), t(60)))
        .await
        .unwrap();
    assert_eq!(
        store
            .query_audit(tenant.id, &AuditFilter::default(), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    store.touch_api_key(tenant.id, key.id, t(61)).await.unwrap();
    assert_eq!(store.signing_keys(tenant.id).await.unwrap().len(), 1);
    // The scheduled janitor sweeps under the gateway's role, advisory lock included.
    let swept = store.sweep_expired(t(86_400)).await.unwrap();
    assert_eq!(swept.map(|s| s.sessions), Some(1));
    store.erase_user(tenant.id, user.id).await.unwrap();
    gw.drop().await;
}

/// Audit retention without DELETE: the gateway's role still cannot UPDATE, DELETE or
/// TRUNCATE audit rows, and `keygate_expire_audit` (migration 0005), which it may run,
/// removes only rows past their tenant's retention however far ahead the clock it passes.
/// The operator's role may not run it.
pub async fn the_gateway_role_expires_audit_rows_only_past_retention(owner: PgPool) {
    let db = fixtures::postgres(owner.clone()).await;
    let tenant = fixtures::tenant(&*db, "acme").await;
    let now = chrono::Utc::now();
    for age in [401, 10] {
        db.append_audit(&event(
            tenant.id,
            "user.sign_in",
            None,
            now - chrono::Duration::days(age),
        ))
        .await
        .unwrap();
    }
    let gw = Login::new(&owner, "keygate_gateway").await;
    for sql in [
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE at < now() - interval '400 days'",
        "UPDATE audit_events SET at = now() - interval '10 years'",
        "TRUNCATE audit_events",
        "UPDATE tenants SET audit_retention_days = 1",
        "ALTER FUNCTION keygate_expire_audit(timestamptz, integer) SECURITY INVOKER",
    ] {
        assert_eq!(
            gw.try_sql(sql).await,
            Err(DENIED.to_owned()),
            "the gateway's role must not run: {sql}"
        );
    }
    // A clock a century ahead reaches no further than the database's own.
    let far_ahead = "SELECT keygate_expire_audit(now() + interval '100 years', 1000)";
    gw.try_sql(far_ahead).await.unwrap();
    let left: Vec<i64> = sqlx::query_scalar(
        "SELECT extract(day FROM now() - at)::bigint FROM audit_events ORDER BY at",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(left, [10], "only the row past 400 days is gone");

    let op = Login::new(&owner, "keygate_operator").await;
    assert_eq!(
        op.try_sql("SELECT keygate_expire_audit(now(), 1000)").await,
        Err(DENIED.to_owned())
    );
    gw.drop().await;
    op.drop().await;
}

/// The operator's role writes what the resources declare (and deleting a tenant still
/// removes its users and sessions), but not the runtime tables nor the audit trail.
pub async fn the_operator_role_writes_declared_state_only(owner: PgPool) {
    let db = fixtures::postgres(owner.clone()).await;
    let op = Login::new(&owner, "keygate_operator").await;
    let store = op.store();
    let tenant = fixtures::tenant(&*store, "acme").await;
    let key = store
        .insert_api_key(&new_api_key(tenant.id, "uid-key", "abcd1234"))
        .await
        .unwrap();
    store.revoke_api_key(tenant.id, key.id, t(1)).await.unwrap();
    store
        .insert_signing_key(&signing_key(tenant.id, "kid-1", t0()))
        .await
        .unwrap();
    let sealed = store.signing_keys(tenant.id).await.unwrap()[0]
        .private_key
        .clone();
    assert!(
        store
            .reseal_signing_key(tenant.id, "kid-1", &sealed, b"resealed")
            .await
            .unwrap()
    );
    store
        .set_signing_key_retires_at(tenant.id, "kid-1", t(2))
        .await
        .unwrap();
    assert_eq!(store.delete_retired_signing_keys(t(3)).await.unwrap(), 1);

    for sql in [
        "UPDATE audit_events SET kind = 'x'",
        "INSERT INTO audit_events (id, tenant_id, at, kind, data) VALUES (gen_random_uuid(), gen_random_uuid(), now(), 'x', '{}')",
        "SELECT * FROM users",
        "SELECT * FROM sessions",
        "DELETE FROM lockout",
    ] {
        assert_eq!(
            op.try_sql(sql).await,
            Err(DENIED.to_owned()),
            "the operator's role must not run: {sql}"
        );
    }

    // A user and a session the gateway opened go with their tenant.
    let user = fixtures::user(&*db, tenant.id, "ada@example.com").await;
    fixtures::session(&*db, tenant.id, user.id).await;

    // OAuth clients are declared state; deleting one revokes the sessions issued to it,
    // the one thing the operator may change of a session.
    let client = store
        .upsert_oauth_client(&fixtures::oauth_client(tenant.id, "uid-app", "app"))
        .await
        .unwrap();
    store
        .insert_client_secret(&fixtures::client_secret(&client, "s1"))
        .await
        .unwrap();
    let mut for_app = fixtures::new_session(tenant.id, user.id);
    for_app.client_id = "app".into();
    let issued = db.insert_session(&for_app).await.unwrap();
    assert_eq!(
        store
            .revoke_client_sessions(tenant.id, "app", t(5))
            .await
            .unwrap(),
        [issued.id]
    );
    assert_eq!(
        op.try_sql("UPDATE sessions SET idle_expires_at = now()")
            .await,
        Err(DENIED.to_owned())
    );
    assert!(
        store
            .delete_oauth_client(tenant.id, client.id)
            .await
            .unwrap()
    );
    assert!(store.delete_tenant(tenant.id).await.unwrap());
    assert_eq!(db.raw.count("users", "tenant_id", tenant.id.0).await, 0);
    assert_eq!(db.raw.count("sessions", "tenant_id", tenant.id.0).await, 0);
    op.drop().await;
}

/// A table that no role was granted is a table the gateway or the operator cannot use in
/// production, though every test running as the owner passes: name each table's role here
/// when a migration adds one.
pub async fn every_table_is_granted_to_its_role(owner: PgPool) {
    fixtures::postgres(owner.clone()).await;
    const DML: &str = "DELETE,INSERT,SELECT,UPDATE";
    let expected: &[(&str, &str, &str)] = &[
        ("api_keys", "keygate_gateway", "SELECT"),
        ("api_keys", "keygate_operator", DML),
        ("audit_events", "keygate_gateway", "INSERT,SELECT"),
        ("backup_codes", "keygate_gateway", DML),
        ("external_identities", "keygate_gateway", DML),
        ("identity_providers", "keygate_gateway", "SELECT"),
        ("identity_providers", "keygate_operator", DML),
        ("lockout", "keygate_gateway", DML),
        ("mfa_factors", "keygate_gateway", DML),
        ("mfa_factors", "keygate_operator", "SELECT"),
        ("oauth_client_secrets", "keygate_gateway", "SELECT"),
        ("oauth_client_secrets", "keygate_operator", DML),
        ("oauth_clients", "keygate_gateway", "SELECT"),
        ("oauth_clients", "keygate_operator", DML),
        ("oauth_consents", "keygate_gateway", DML),
        ("one_time_tokens", "keygate_gateway", DML),
        ("password_history", "keygate_gateway", DML),
        ("refresh_tokens", "keygate_gateway", DML),
        ("role_bindings", "keygate_gateway", "SELECT"),
        ("role_bindings", "keygate_operator", DML),
        ("roles", "keygate_gateway", "SELECT"),
        ("roles", "keygate_operator", DML),
        ("sessions", "keygate_gateway", DML),
        ("signing_keys", "keygate_gateway", "SELECT"),
        ("signing_keys", "keygate_operator", DML),
        ("tenants", "keygate_gateway", "SELECT"),
        ("tenants", "keygate_operator", DML),
        ("users", "keygate_gateway", DML),
    ];
    let granted: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, grantee::text, \
                string_agg(privilege_type::text, ',' ORDER BY privilege_type) \
         FROM information_schema.role_table_grants \
         WHERE table_schema = current_schema() \
           AND grantee IN ('keygate_gateway', 'keygate_operator') \
         GROUP BY table_name, grantee ORDER BY table_name, grantee",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let granted: Vec<(&str, &str, &str)> = granted
        .iter()
        .map(|(t, g, p)| (t.as_str(), g.as_str(), p.as_str()))
        .collect();
    assert_eq!(granted, expected, "table privileges of the two roles");

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
           AND tablename <> '_sqlx_migrations' ORDER BY tablename",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    for table in &tables {
        assert!(
            expected.iter().any(|(t, _, _)| t == table),
            "table {table} has no grant for keygate_gateway or keygate_operator: grant it in the migration that adds it"
        );
    }
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.column_privileges \
         WHERE table_schema = current_schema() AND grantee = 'keygate_gateway' \
           AND privilege_type = 'UPDATE' ORDER BY table_name, column_name",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|(t, c)| (t.as_str(), c.as_str()))
        .collect();
    assert!(
        columns.contains(&("api_keys", "last_used_at")),
        "the gateway records API-key use: {columns:?}"
    );
    assert!(
        columns
            .iter()
            .filter(|(t, _)| *t == "api_keys")
            .all(|(_, c)| *c == "last_used_at"),
        "the gateway writes no other API-key column: {columns:?}"
    );
}
