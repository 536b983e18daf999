//! Sessions: browser cookies (opaque, stored as hashes, `__Host-`, CSRF-checked), hot
//! records in Redis and the ledger behind them, and other people's sessions out of reach.

use crate::support::env::{PASSWORD, env, hot_key, redis_replica, serve_with};
use crate::support::free_port;
use chrono::{Duration, Utc};
use keygate_core::clock::{Clock, ManualClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::ephemeral::{Ephemeral, RedisEphemeral};
use keygate_core::store::{PgStore, Store};
use keygate_gateway::identity::RateLimits;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

#[sqlx::test(migrations = false)]
async fn browser_sessions_use_a_host_cookie_and_refuse_cross_site_changes(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let r = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .json(&json!({"email": "web@example.com", "password": PASSWORD, "browser_session": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in [
        "__Host-keygate_session=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(set_cookie.contains(attr), "{attr} missing in {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let r = env
        .http
        .get(format!("{}/t/acme/me/sessions", env.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let post = |origin: Option<&str>| {
        let mut req = env
            .http
            .post(format!("{}/t/acme/me/sessions/logout-all", env.url))
            .header("cookie", &cookie);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post(Some("https://evil.example")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(Some(&env.url)).await.unwrap().status(), StatusCode::OK);
    let r = env
        .http
        .get(format!("{}/t/acme/me/sessions", env.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the cookie's session ended"
    );
}

#[sqlx::test(migrations = false)]
async fn another_persons_session_and_tokens_are_out_of_reach(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "amy@example.com").await;
    env.user(&t.row, "ben@example.com").await;
    let (_, amy) = env.login("acme", "amy@example.com", PASSWORD).await;
    let (_, ben) = env.login("acme", "ben@example.com", PASSWORD).await;
    let ben_token = ben["access_token"].as_str().unwrap();
    let amy_sid = amy["session_id"].as_str().unwrap();
    let r = env
        .http
        .delete(format!("{}/t/acme/me/sessions/{amy_sid}", env.url))
        .bearer_auth(ben_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "another person's session is not found"
    );
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", amy["access_token"].as_str().unwrap())],
            Some(ben_token),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{i}"
    );
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", amy["refresh_token"].as_str().unwrap())],
            Some(ben_token),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{i}"
    );
    // Amy's session is untouched.
    let (s, _) = env
        .refresh("acme", amy["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[sqlx::test(migrations = false)]
async fn session_cookies_are_opaque_256_bit_tokens_stored_as_hashes(pool: sqlx::PgPool) {
    let raw = pool.clone();
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.tenant("beta", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (body, cookie) = env.browser_login("acme", "web@example.com").await;
    let sid = body["session_id"].as_str().unwrap();

    // 32 random bytes, base64url: at least 43 characters, and not the session id.
    assert!(cookie.len() >= 43, "{cookie}");
    assert!(
        cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{cookie}"
    );
    assert_ne!(cookie, sid);
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);

    // The database holds the token's SHA-256, never the token.
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM sessions WHERE id = $1::uuid")
            .bind(sid)
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some(&sha256(cookie.as_bytes())[..]));
    let rows: Vec<String> = sqlx::query_scalar("SELECT s::text FROM sessions s")
        .fetch_all(&raw)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| !r.contains(&cookie)), "{rows:?}");

    // Forged, guessed, old-format (a bare session id) and foreign cookies: 401, never 5xx.
    let forged = keygate_core::crypto::random::random_token().unwrap();
    let mut flipped = cookie.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, value) in [
        ("forged", forged.as_str()),
        ("one character changed", flipped.as_str()),
        ("the session id (old format)", sid),
        ("a random UUID", &uuid::Uuid::new_v4().to_string()),
        ("junk", "not a cookie"),
    ] {
        assert_eq!(
            env.with_cookie("acme", value).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    assert_eq!(
        env.with_cookie("beta", &cookie).await,
        StatusCode::UNAUTHORIZED,
        "another tenant's cookie"
    );
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::OK,
        "the real cookie still works"
    );
}

/// The cookie check reads the hot record in Redis, not the ledger: a revocation written only
/// to the ledger (one Redis never carried) is noticed at the next once-a-minute ledger write,
/// which is also the only time `last_seen_at` changes. Without the hot record every check
/// would read (and so refuse at once), without the interval every check would write.
#[sqlx::test(migrations = false)]
async fn cookie_checks_read_redis_and_write_the_ledger_once_a_minute(pool: sqlx::PgPool) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let (env, _, ephemeral) =
        redis_replica(store.clone(), clock.clone(), master, &prefix, None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (body, cookie) = env.browser_login("acme", "web@example.com").await;
    let sid: keygate_core::ids::SessionId = body["session_id"].as_str().unwrap().parse().unwrap();
    let signed_in = store.session(t.row.id, sid).await.unwrap().unwrap();
    assert!(
        ephemeral
            .get(&hot_key(&t.row, &cookie))
            .await
            .unwrap()
            .is_some(),
        "sign-in writes the hot record"
    );

    // Many checks within a minute: no ledger write.
    for _ in 0..5 {
        clock.advance(Duration::seconds(10));
        assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    }
    let row = store.session(t.row.id, sid).await.unwrap().unwrap();
    assert_eq!(
        row.last_seen_at, signed_in.last_seen_at,
        "no write within the minute"
    );
    assert_eq!(row.idle_expires_at, signed_in.idle_expires_at);

    // Past the minute: one write slides last_seen and the idle expiry.
    clock.advance(Duration::seconds(11));
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    let touched = store.session(t.row.id, sid).await.unwrap().unwrap();
    assert!(touched.last_seen_at > signed_in.last_seen_at);
    assert!(touched.idle_expires_at > signed_in.idle_expires_at);
    clock.advance(Duration::seconds(5));
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    assert_eq!(
        store
            .session(t.row.id, sid)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        touched.last_seen_at
    );

    // A revocation only the ledger knows: the hot record answers until the next write.
    assert!(
        store
            .revoke_session(t.row.id, sid, clock.now())
            .await
            .unwrap()
    );
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::OK,
        "served from Redis"
    );
    clock.advance(Duration::seconds(61));
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED,
        "the ledger write notices"
    );
    assert!(
        ephemeral
            .get(&hot_key(&t.row, &cookie))
            .await
            .unwrap()
            .is_none(),
        "and drops the hot record"
    );
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrations = false)]
async fn a_hot_record_miss_falls_back_to_the_ledger_and_a_revoke_deletes_it(pool: sqlx::PgPool) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let (env, _, ephemeral) = redis_replica(store, clock, master, &prefix, None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (body, cookie) = env.browser_login("acme", "web@example.com").await;
    let key = hot_key(&t.row, &cookie);

    // Redis lost the record (eviction, flush): the ledger answers and the record comes back.
    assert!(ephemeral.take(&key).await.unwrap().is_some());
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    let hot: Value = serde_json::from_slice(&ephemeral.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(hot["session_id"], body["session_id"]);
    assert!(hot.get("token").is_none() && !hot.to_string().contains(&cookie));

    // Revoking the session deletes its hot record.
    let sid = body["session_id"].as_str().unwrap();
    let r = env
        .http
        .delete(format!("{}/t/acme/me/sessions/{sid}", env.url))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(ephemeral.get(&key).await.unwrap().is_none());
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
}

/// The hot record is a cache: while Redis is down, cookie checks ask the ledger, so browsers
/// stay signed in (as they did before the hot state existed) instead of getting 503s.
#[sqlx::test(migrations = false)]
async fn cookie_checks_fall_back_to_the_ledger_while_redis_is_down(pool: sqlx::PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut redis = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ephemeral: Arc<dyn Ephemeral> = loop {
        match RedisEphemeral::connect(&url, "kgtest:").await {
            Ok(e) => break Arc::new(e),
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "redis-server: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let (env, _) = serve_with(store, ephemeral, clock.clone(), limits, master, None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (_, cookie) = env.browser_login("acme", "web@example.com").await;
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);

    redis.kill().unwrap();
    redis.wait().unwrap();
    // Each Redis call gives up within about a second (bounded connect and response waits),
    // so a check that takes longer means the outage stalls the hot path.
    let check = || {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            env.with_cookie("acme", &cookie),
        )
    };
    assert_eq!(
        check().await.unwrap(),
        StatusCode::OK,
        "Redis down: the ledger answers"
    );
    clock.advance(Duration::seconds(61));
    assert_eq!(
        check().await.unwrap(),
        StatusCode::OK,
        "and takes the once-a-minute write"
    );
}
