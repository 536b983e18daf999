//! Faults: what the gateway does while Redis or PostgreSQL is down, and after it returns.
//! Each test starts its own `redis-server` or PostgreSQL cluster on ports of its own
//! (`support::servers`), kills it mid-test as a crash would, and starts it again; the
//! behaviours are the ones `docs/operations.md` ("When a dependency fails") promises.

use crate::support::env::{Env, PASSWORD, serve_graced, serve_with};
use crate::support::real;
use crate::support::servers::{Postgres, Redis};
use chrono::{Duration, Utc};
use keygate_core::clock::ManualClock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::ephemeral::{Ephemeral, RedisEphemeral};
use keygate_core::store::{AuditFilter, PgStore, PoolSettings, Store};
use keygate_gateway::identity::{IdentityService, RateLimits};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

/// Polls `check` until it is true or `within` has passed (then fails with `what`).
async fn eventually<F, Fut>(within: StdDuration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// `GET /t/acme/userinfo` with `token`: what any API call with an access token sees.
async fn userinfo(env: &Env, token: &str) -> StatusCode {
    env.http
        .get(format!("{}/t/acme/userinfo", env.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// A replica on `store` whose ephemeral state is the Redis at `url` under `prefix`, with the
/// store's revocation resync running as the binary runs it (faster, for the test).
async fn replica(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    master: MasterKeys,
    url: &str,
    prefix: &str,
    limits: RateLimits,
    public_url: Option<&str>,
) -> (Env, IdentityService, Arc<dyn Ephemeral>) {
    let ephemeral: Arc<dyn Ephemeral> =
        Arc::new(RedisEphemeral::connect(url, prefix).await.expect("Redis"));
    let (env, identity) =
        serve_with(store, ephemeral.clone(), clock, limits, master, public_url).await;
    (env, identity, ephemeral)
}

/// Redis down: two replicas keep signing people in and refreshing, a sign-out is enforced
/// on both (the store's resync carries it), the sign-in limit is counted per replica instead
/// of refusing everyone, and when Redis returns a revocation made meanwhile reaches the other
/// replica through it.
#[sqlx::test(migrations = false)]
async fn redis_down_sign_in_refresh_and_revocations_keep_working(pool: sqlx::PgPool) {
    let mut redis = Redis::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let prefix = format!("kgfault:{}:", uuid::Uuid::now_v7().simple());
    let limits = RateLimits {
        sign_in_per_ip: 3,
        ..RateLimits::default()
    };
    let (a, a_id, a_eph) = replica(
        store.clone(),
        clock.clone(),
        master.clone(),
        &redis.url(),
        &prefix,
        limits,
        None,
    )
    .await;
    let (b, b_id, b_eph) = replica(
        store,
        clock,
        master,
        &redis.url(),
        &prefix,
        limits,
        Some(&a.url),
    )
    .await;
    let _syncs = (
        a_id.spawn_revocation_sync(StdDuration::from_millis(200)),
        b_id.spawn_revocation_sync(StdDuration::from_millis(200)),
    );
    let t = a.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    a.user(&t.row, "amy@example.com").await;
    let (s, before) = a.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{before}");

    redis.stop();
    // Sign-in and refresh keep working; the sign-in limit (3 a window) is counted by each
    // replica on its own: A's fourth attempt is refused, B still has its own budget.
    let mut signed_in = Vec::new();
    for n in 1..=3 {
        let (s, body) = a.login("acme", "amy@example.com", PASSWORD).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "sign-in {n} on A while Redis is down: {body}"
        );
        signed_in.push(body);
    }
    let (s, body) = a.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "A's own limit holds while Redis is down: {body}"
    );
    let (s, body) = b.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "B counts its own window: {body}");
    let (s, refreshed) = b
        .refresh("acme", before["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "refresh while Redis is down: {refreshed}"
    );

    // A sign-out while Redis is down: answered, refused on A at once and on B through the
    // store's resync.
    let token = signed_in[0]["access_token"].as_str().unwrap();
    let sid = signed_in[0]["session_id"].as_str().unwrap();
    assert_eq!(userinfo(&b, token).await, StatusCode::OK);
    let r = a
        .http
        .delete(format!("{}/t/acme/me/sessions/{sid}", a.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "revoke while Redis is down: {}",
        r.status()
    );
    assert_eq!(
        userinfo(&a, token).await,
        StatusCode::UNAUTHORIZED,
        "A at once"
    );
    eventually(
        StdDuration::from_secs(5),
        "B accepts a session revoked while Redis was down",
        || async { userinfo(&b, token).await == StatusCode::UNAUTHORIZED },
    )
    .await;
    // A revocation only Redis carries (an access token's id, an API key's) waits in A.
    let probe = format!("probe-{}", uuid::Uuid::now_v7());
    a_eph
        .revoke(&probe, StdDuration::from_secs(600))
        .await
        .unwrap();
    assert!(a_eph.revocations().contains(&probe));
    assert!(!b_eph.revocations().contains(&probe));

    redis.resume().await;
    eventually(
        StdDuration::from_secs(10),
        "a revocation made while Redis was down never reached B",
        || async { b_eph.revocations().contains(&probe) },
    )
    .await;
    // Back to normal: pub/sub carries a new revocation at once, sign-ins work.
    let fresh = format!("probe-{}", uuid::Uuid::now_v7());
    a_eph
        .revoke(&fresh, StdDuration::from_secs(600))
        .await
        .unwrap();
    eventually(
        StdDuration::from_secs(3),
        "pub/sub did not recover",
        || async { b_eph.revocations().contains(&fresh) },
    )
    .await;
    let (s, body) = b.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "after Redis returned: {body}");
}

/// A store on the throwaway cluster at `url`: a short wait for a connection, so a request
/// during the outage fails within a second (production waits 5 s).
async fn store_at(url: &str, clock: Arc<ManualClock>) -> Arc<dyn Store> {
    let store = PgStore::connect_with(
        url,
        &PoolSettings {
            max_connections: 8,
            acquire_timeout: StdDuration::from_secs(1),
        },
    )
    .await
    .unwrap()
    .with_clock(clock);
    store.migrate().await.unwrap();
    Arc::new(store)
}

/// A Redis ephemeral store on `KEYGATE_TEST_REDIS_URL` under a prefix of its own.
async fn shared_redis() -> Arc<dyn Ephemeral> {
    let prefix = format!("kgfault:{}:", uuid::Uuid::now_v7().simple());
    Arc::new(
        RedisEphemeral::connect(&crate::support::redis_url(), &prefix)
            .await
            .expect("Redis"),
    )
}

/// One forward-auth check of tenant `acme` with `header`.
async fn forward_auth(env: &Env, header: (&str, &str)) -> StatusCode {
    env.http
        .get(format!("{}/forward-auth?tenant=acme", env.url))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
        .status()
}

async fn ready(env: &Env) -> StatusCode {
    env.http
        .get(format!("{}/readyz", env.url))
        .send()
        .await
        .unwrap()
        .status()
}

/// PostgreSQL down: forward-auth keeps deciding the JWTs it can verify offline and the API
/// keys and cookies it proved before; sign-in and refresh answer 503 with `Retry-After` and
/// write nothing; `/readyz` stays ready through the grace, then says not ready; everything
/// recovers when the database returns, without a restart.
#[tokio::test]
async fn postgres_down_forward_auth_keeps_deciding_and_writes_wait() {
    let mut pg = Postgres::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = store_at(&pg.url(), clock.clone()).await;
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let grace = StdDuration::from_secs(3);
    let (env, _) = serve_graced(
        store.clone(),
        shared_redis().await,
        clock.clone(),
        RateLimits::default(),
        master,
        None,
        grace,
    )
    .await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "amy@example.com").await;
    let (s, amy) = env.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{amy}");
    let (_, unseen) = env.login("acme", "amy@example.com", PASSWORD).await;
    let (_, cookie) = env.browser_login("acme", "amy@example.com").await;
    let (_, key) = real::api_key(&store, &t.row, "ci", &[]).await;
    let jwt = format!("Bearer {}", amy["access_token"].as_str().unwrap());
    let cookie = format!("__Host-keygate_session={cookie}");
    for h in [
        ("authorization", jwt.as_str()),
        ("x-api-key", &key),
        ("cookie", &cookie),
    ] {
        assert_eq!(forward_auth(&env, h).await, StatusCode::OK, "{}", h.0);
    }

    pg.stop();
    assert_eq!(
        ready(&env).await,
        StatusCode::OK,
        "a blip keeps the replica in"
    );
    // Past every cache's re-check: tenants and keys (5 s, real time), API keys (30 s) and
    // cookies (5 s, the gateway's clock).
    tokio::time::sleep(StdDuration::from_millis(5_500)).await;
    clock.advance(Duration::seconds(40));
    assert_eq!(
        ready(&env).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unreachable past the grace: out of the Service"
    );
    let unseen_jwt = format!("Bearer {}", unseen["access_token"].as_str().unwrap());
    for h in [
        ("authorization", jwt.as_str()),
        ("authorization", unseen_jwt.as_str()),
        ("x-api-key", &key),
        ("cookie", &cookie),
    ] {
        assert_eq!(
            forward_auth(&env, h).await,
            StatusCode::OK,
            "{} while the store is down",
            h.0
        );
    }
    assert_eq!(
        forward_auth(&env, ("authorization", "Bearer not.a.jwt")).await,
        StatusCode::UNAUTHORIZED,
        "a bad token is still refused, not a 503"
    );

    let signin = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .json(&json!({"email": "amy@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        signin.headers().contains_key("retry-after"),
        "sign-in 503 says when to retry"
    );
    let refresh = env
        .http
        .post(format!("{}/t/acme/oauth2/token", env.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&client_id=keygate&refresh_token={}",
            amy["refresh_token"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refresh.headers().contains_key("retry-after"),
        "refresh 503 says when to retry"
    );
    let body: Value = refresh.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");

    pg.resume().await;
    eventually(StdDuration::from_secs(10), "ready again", || async {
        ready(&env).await == StatusCode::OK
    })
    .await;
    let (s, body) = env
        .refresh("acme", amy["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the refresh token refused during the outage works: {body}"
    );
    let (s, body) = env.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Four sign-ins succeeded, one was refused: four sessions, each with its refresh family
    // and its audit event, nothing of the refused one.
    assert_no_half_sign_ins(&pg.url(), &store, &t.row, 4).await;
}

/// Every session has its refresh family and a `login.succeeded` event, and there are `n`.
async fn assert_no_half_sign_ins(
    url: &str,
    store: &Arc<dyn Store>,
    tenant: &keygate_core::store::Tenant,
    n: i64,
) {
    let db = sqlx::PgPool::connect(url).await.unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db)
        .await
        .unwrap();
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions s \
         WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let audited = store
        .query_audit(
            tenant.id,
            &AuditFilter {
                kind: Some("login.succeeded".into()),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap()
        .len();
    assert_eq!((sessions, orphans, audited as i64), (n, 0, n));
}

/// The database gone in the middle of a sign-in's writes (the audit table locked, so the
/// sign-in waits inside its transaction, then PostgreSQL killed): the sign-in answers 503
/// and, after recovery, no session, refresh token or audit event of it exists.
#[tokio::test]
async fn a_sign_in_cut_off_mid_write_leaves_nothing_behind() {
    let mut pg = Postgres::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = store_at(&pg.url(), clock.clone()).await;
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let (env, _) = serve_with(
        store.clone(),
        shared_redis().await,
        clock,
        RateLimits::default(),
        master,
        None,
    )
    .await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "amy@example.com").await;

    let db = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let mut blocker = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let signin = {
        let (http, url) = (env.http.clone(), env.url.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/t/acme/login"))
                .json(&json!({"email": "amy@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    eventually(
        StdDuration::from_secs(10),
        "the sign-in never reached the audit table",
        || {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO audit_events%'",
                )
                .fetch_one(&db)
                .await
                .unwrap()
                    > 0
            }
        },
    )
    .await;
    pg.stop();
    drop(blocker);
    db.close().await;
    assert_eq!(signin.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);

    pg.resume().await;
    assert_no_half_sign_ins(&pg.url(), &store, &t.row, 0).await;
    let (s, body) = env.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "after recovery, without a restart: {body}"
    );
    assert_no_half_sign_ins(&pg.url(), &store, &t.row, 1).await;
}
