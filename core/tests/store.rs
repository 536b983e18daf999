//! Storage conformance suite: every case is written once against `&dyn Store` and runs
//! unchanged on PostgreSQL (a fresh database per test, via `#[sqlx::test]`; needs
//! `DATABASE_URL`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`) and on SQLite (a
//! fresh temporary file per test). The output lists `postgres::…` and `sqlite::…` for each.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;

#[path = "store/fixtures.rs"]
mod fixtures;

#[path = "store/audit.rs"]
mod audit;
#[path = "store/consents.rs"]
mod consents;
#[path = "store/isolation.rs"]
mod isolation;
#[path = "store/keys.rs"]
mod keys;
#[path = "store/mfa.rs"]
mod mfa;
#[path = "store/oauth_clients.rs"]
mod oauth_clients;
#[path = "store/roles.rs"]
mod roles;
#[path = "store/sessions.rs"]
mod sessions;
#[path = "store/tenants.rs"]
mod tenants;
#[path = "store/tokens.rs"]
mod tokens;
#[path = "store/users.rs"]
mod users;

/// Instantiates each case once per backend.
macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    let db = crate::fixtures::postgres(pool).await;
                    crate::$module::$name(&db).await;
                }
            )*
        }

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (db, _dir) = crate::fixtures::sqlite().await;
                    crate::$module::$name(&db).await;
                }
            )*
        }
    };
}

conformance!(
    tenants::migrate_twice_and_ping,
    tenants::tenant_upsert_and_name_taken,
    tenants::tenant_delete_cascades_but_keeps_audit,
    tenants::tenant_settings_and_deletion_policy_are_typed,
    users::email_unique_case_insensitively,
    users::user_update_and_listing,
    users::password_history_keeps_newest,
    users::user_erasure_keeps_audit,
    isolation::other_tenant_rows_invisible,
    isolation::cross_tenant_references_refused,
    audit::audit_update_and_delete_refused,
    audit::audit_query_capped_and_filtered,
    audit::audit_rows_past_their_tenants_retention_are_swept,
    sessions::concurrent_rotations_have_one_winner,
    sessions::rotated_token_reveals_family,
    sessions::session_revoke_revokes_family,
    sessions::session_expiry_and_janitor,
    sessions::session_cookie_token_and_client,
    sessions::open_session_writes_all_or_nothing,
    sessions::step_up_raises_an_active_session_only,
    mfa::totp_step_refuses_replay_and_older_steps,
    mfa::webauthn_use_is_a_compare_and_set_and_factors_rename,
    mfa::backup_codes_single_use,
    mfa::factor_lifecycle,
    mfa::factors_paged_and_resealed_by_compare_and_set,
    tokens::one_time_token_single_use_and_expiry,
    tokens::lockout_counters,
    keys::api_key_lookup_and_rotation,
    keys::api_keys_paged_past_the_list_cap,
    keys::api_key_grants_change_in_place,
    keys::signing_keys_order_and_retirement,
    roles::roles_upsert_and_subject_matching,
    roles::idps_and_identity_links,
    oauth_clients::oauth_client_upsert_lookup_and_owner,
    oauth_clients::client_secrets_rotate_with_grace,
    oauth_clients::client_sessions_revoked_by_client_id,
    oauth_clients::redirect_uris_match_exactly_or_on_any_loopback_port,
    consents::consent_is_remembered_widened_and_revoked_with_sessions,
);

#[sqlx::test(migrations = false)]
async fn postgres_tenants_stored_before_0003_still_read(pool: sqlx::PgPool) {
    sqlx::migrate!("../migrations/postgres")
        .run_to(2, &pool)
        .await
        .unwrap();
    for sql in tenants::rows_before_0003(true) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let db = fixtures::postgres(pool).await;
    tenants::tenants_stored_before_0003_still_read(&db).await;
}

#[tokio::test]
async fn sqlite_tenants_stored_before_0003_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&fixtures::sqlite_url(&dir))
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate!("../migrations/sqlite")
        .run_to(2, &pool)
        .await
        .unwrap();
    for sql in tenants::rows_before_0003(false) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let db = fixtures::sqlite_in(&dir).await;
    tenants::tenants_stored_before_0003_still_read(&db).await;
}

#[tokio::test]
async fn connect_picks_backend_by_url_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let store = keygate_core::store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), keygate_core::store::Backend::Sqlite);
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(
        dir.path().join("new.db").exists(),
        "the file is created when missing"
    );
    // It holds password and token hashes: readable by its owner only, like the master key.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode("new.db"), Some(0o600));
        for side in ["new.db-wal", "new.db-shm"] {
            assert!(
                matches!(mode(side), None | Some(0o600)),
                "{side}: {:o}",
                mode(side).unwrap_or(0)
            );
        }
        // A file an older version left world-readable is narrowed when opened again.
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let url = format!("sqlite://{}", old.display());
        keygate_core::store::connect(&url).await.unwrap();
        assert_eq!(mode("old.db"), Some(0o600));
    }

    let err = keygate_core::store::connect("mysql://root:secret@db/keygate")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, keygate_core::store::StoreError::UnsupportedUrl { scheme } if scheme == "mysql"),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("secret"),
        "the URL's password never appears in errors"
    );
}

#[path = "store/database_roles.rs"]
mod database_roles;

/// The gateway's and the operator's database roles: PostgreSQL only (SQLite has no roles).
mod postgres_roles {
    #[sqlx::test(migrations = false)]
    async fn the_gateway_role_cannot_rewrite_audit_or_declared_state(pool: sqlx::PgPool) {
        crate::database_roles::the_gateway_role_cannot_rewrite_audit_or_declared_state(pool).await;
    }

    #[sqlx::test(migrations = false)]
    async fn the_gateway_role_expires_audit_rows_only_past_retention(pool: sqlx::PgPool) {
        crate::database_roles::the_gateway_role_expires_audit_rows_only_past_retention(pool).await;
    }

    #[sqlx::test(migrations = false)]
    async fn the_operator_role_writes_declared_state_only(pool: sqlx::PgPool) {
        crate::database_roles::the_operator_role_writes_declared_state_only(pool).await;
    }

    #[sqlx::test(migrations = false)]
    async fn every_table_is_granted_to_its_role(pool: sqlx::PgPool) {
        crate::database_roles::every_table_is_granted_to_its_role(pool).await;
    }
}
