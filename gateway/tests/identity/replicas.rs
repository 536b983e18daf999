//! Replicas: a revocation reaches every replica, through Redis or the store's resync.

use crate::support::env::{Env, PASSWORD, hot_key, redis_replica, serve_with};
use chrono::Utc;
use keygate_core::clock::ManualClock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::ephemeral::Ephemeral;
use keygate_core::store::{PgStore, Store};
use keygate_gateway::identity::RateLimits;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

/// Postgres is the fallback when Redis did not carry a revocation. Two replicas
/// share the database but no Redis (each has only its own in-process revocation set): a
/// session revoked on A is refused on A at once, and on B as soon as B's resync from the
/// store has run — without it, B would accept the access token until it expires.
#[sqlx::test(migrations = false)]
async fn a_revocation_reaches_a_replica_redis_did_not_tell(pool: sqlx::PgPool) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let memory =
        || -> Arc<dyn Ephemeral> { Arc::new(keygate_core::ephemeral::MemoryEphemeral::new()) };
    let (a, _) = serve_with(
        store.clone(),
        memory(),
        clock.clone(),
        limits,
        master.clone(),
        None,
    )
    .await;
    let (b, b_identity) = serve_with(store, memory(), clock, limits, master, Some(&a.url)).await;
    let t = a.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    a.user(&t.row, "amy@example.com").await;
    let (s, amy) = a.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{amy}");
    let token = amy["access_token"].as_str().unwrap().to_owned();
    let sid = amy["session_id"].as_str().unwrap().to_owned();
    let userinfo = |env: &Env| {
        let request = env
            .http
            .get(format!("{}/t/acme/userinfo", env.url))
            .bearer_auth(&token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(userinfo(&b).await, StatusCode::OK);

    let r = a
        .http
        .delete(format!("{}/t/acme/me/sessions/{sid}", a.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "revoke: {}", r.status());
    assert_eq!(
        userinfo(&a).await,
        StatusCode::UNAUTHORIZED,
        "A refuses at once"
    );
    assert_eq!(
        userinfo(&b).await,
        StatusCode::OK,
        "B has not heard yet (no Redis between them)"
    );

    let _sync = b_identity.spawn_revocation_sync(std::time::Duration::from_millis(100));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while userinfo(&b).await != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "B still accepts a revoked session after its resync from the store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Two gateways share Postgres and Redis. A revocation that reaches B only through the
/// revocation feed — the hot record in Redis still there — is refused by B: the revocation
/// set is asked before the hot record is trusted.
#[sqlx::test(migrations = false)]
async fn a_revoked_session_is_refused_on_every_replica_though_its_hot_record_lingers(
    pool: sqlx::PgPool,
) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let (a, _, a_ephemeral) =
        redis_replica(store.clone(), clock.clone(), master.clone(), &prefix, None).await;
    let (b, _, b_ephemeral) = redis_replica(store, clock, master, &prefix, Some(&a.url)).await;
    let t = a.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    a.user(&t.row, "web@example.com").await;
    let (body, cookie) = a.browser_login("acme", "web@example.com").await;
    assert_eq!(
        b.with_cookie("acme", &cookie).await,
        StatusCode::OK,
        "B reads A's hot record"
    );

    let sid = body["session_id"].as_str().unwrap();
    a_ephemeral
        .revoke(sid, std::time::Duration::from_secs(600))
        .await
        .unwrap();
    assert!(
        b_ephemeral
            .get(&hot_key(&t.row, &cookie))
            .await
            .unwrap()
            .is_some(),
        "the hot record lingers"
    );
    assert_eq!(
        a.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED,
        "A at once"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while b.with_cookie("acme", &cookie).await != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "B still accepts a revoked session from its hot record"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
