//! The expiry janitor on a controllable clock: sessions (with their refresh families) and
//! one-time tokens past their lifetime disappear from PostgreSQL on the gateway's schedule,
//! and a replica that finds another sweeping skips its round.

use crate::support::env::{PASSWORD, env};
use chrono::Duration;
use keygate_core::clock::Clock;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::{JANITOR_LOCK_KEY, NewOneTimeToken, TokenPurpose};
use keygate_gateway::identity::{IdentityDeps, IdentityService};
use reqwest::StatusCode;
use serde_json::json;

/// Another gateway replica over the test's store and clock.
fn replica(env: &crate::support::env::Env) -> IdentityService {
    let mut deps = IdentityDeps::new(
        env.store.clone(),
        env.master.clone(),
        &env.url,
        env.clock.clone(),
    )
    .unwrap();
    deps.hasher = env.hasher.clone();
    IdentityService::new(deps)
}

#[sqlx::test(migrations = false)]
async fn expired_sessions_families_and_one_time_tokens_are_swept_on_schedule(pool: sqlx::PgPool) {
    let env = env(pool.clone()).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    let user = env.user(&t.row, "old@example.com").await;
    let (status, tokens) = env.login("acme", "old@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let now = env.clock.now();
    let sessions = env
        .store
        .active_sessions_of_user(t.row.id, user, now)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    let session = sessions[0].clone();
    env.store
        .insert_one_time_token(&NewOneTimeToken {
            token_hash: vec![7; 32],
            tenant_id: t.row.id,
            user_id: Some(user),
            purpose: TokenPurpose::ResetPassword,
            data: json!({}),
            expires_at: now + Duration::hours(1),
        })
        .await
        .unwrap();

    let gateway = replica(&env);
    let _janitor = gateway
        .spawn_janitor(std::time::Duration::from_millis(50))
        .unwrap();
    // Nothing has expired yet: rounds pass and everything stays.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        env.store
            .session(t.row.id, session.id)
            .await
            .unwrap()
            .is_some()
    );

    // Past the session's absolute expiry (and the token's), the next round removes them.
    env.clock
        .advance(session.absolute_expires_at - now + Duration::seconds(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while env
        .store
        .session(t.row.id, session.id)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired session was never swept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The family went with it; the token too (a second sweep finds nothing left).
    let (status, _) = env.refresh("acme", &refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The scheduled round may hold the one-replica lock at this moment (`None`): try again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let left = loop {
        if let Some(swept) = gateway.sweep_expired_once().await.unwrap() {
            break swept;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep lock was never free"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(left, keygate_core::store::Swept::default());
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM one_time_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tokens, 0, "the expired one-time token row is gone");
}

#[sqlx::test(migrations = false)]
async fn one_replica_sweeps_at_a_time(pool: sqlx::PgPool) {
    let env = env(pool.clone()).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    let user = env.user(&t.row, "old@example.com").await;
    let (status, _) = env.login("acme", "old@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let session = env
        .store
        .active_sessions_of_user(t.row.id, user, env.clock.now())
        .await
        .unwrap()
        .remove(0);
    env.clock.advance(Duration::days(800));

    // Another replica is mid-sweep (holds the janitor lock): this one skips its round.
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(JANITOR_LOCK_KEY)
        .execute(&mut *other)
        .await
        .unwrap();
    let gateway = replica(&env);
    assert_eq!(gateway.sweep_expired_once().await.unwrap(), None);
    assert!(
        env.store
            .session(t.row.id, session.id)
            .await
            .unwrap()
            .is_some()
    );

    // Once it is done, this replica sweeps.
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(JANITOR_LOCK_KEY)
        .execute(&mut *other)
        .await
        .unwrap();
    let swept = gateway.sweep_expired_once().await.unwrap().unwrap();
    assert_eq!(swept.sessions, 1);
    assert!(
        env.store
            .session(t.row.id, session.id)
            .await
            .unwrap()
            .is_none()
    );
}

/// Audit retention per tenant through the gateway: sign-ins write audit rows at the times a
/// manual clock says (starting 500 days back), then the janitor, at today's date, removes
/// each tenant's rows older than its `audit.retentionDays` and keeps the newer ones.
async fn audit_retention_walk(env: &crate::support::env::Env, gateway: &IdentityService) {
    let short = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({ "audit": { "retentionDays": 30 } }),
        )
        .await;
    let default = env
        .tenant("globex", SigningAlgorithm::EdDSA, json!({}))
        .await;
    env.user(&short.row, "a@example.com").await;
    env.user(&default.row, "g@example.com").await;
    for step in [Duration::days(450), Duration::days(40), Duration::days(10)] {
        for (tenant, email) in [("acme", "a@example.com"), ("globex", "g@example.com")] {
            let (status, _) = env.login(tenant, email, PASSWORD).await;
            assert_eq!(status, StatusCode::OK);
        }
        env.clock.advance(step);
    }
    // Now about today: rows from 500, 50 and 10 days ago.
    let ages = |t: keygate_core::ids::TenantId| async move {
        let now = env.clock.now();
        let mut ages: Vec<i64> = env
            .store
            .query_audit(t, &keygate_core::store::AuditFilter::default(), 100)
            .await
            .unwrap()
            .iter()
            .map(|e| (now - e.at).num_days())
            .collect();
        ages.dedup();
        ages
    };
    assert_eq!(ages(short.row.id).await, [10, 50, 500]);
    let swept = gateway.sweep_expired_once().await.unwrap().unwrap();
    assert_eq!(
        swept.audit_events, 3,
        "two sign-ins 500 days ago, one 50 days ago (acme)"
    );
    assert_eq!(ages(short.row.id).await, [10], "acme keeps 30 days");
    assert_eq!(
        ages(default.row.id).await,
        [10, 50],
        "globex keeps 400 days"
    );
}

#[sqlx::test(migrations = false)]
async fn audit_rows_past_each_tenants_retention_are_swept_on_postgres(pool: sqlx::PgPool) {
    let env = env(pool).await;
    env.clock.advance(-Duration::days(500));
    audit_retention_walk(&env, &replica(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_past_each_tenants_retention_are_swept_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let env = crate::support::env::env_sqlite(&dir).await;
    env.clock.advance(-Duration::days(500));
    audit_retention_walk(&env, &replica(&env)).await;
}
