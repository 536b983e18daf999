//! `/metrics` after a real flow: sign-ins (ok, wrong password, locked, rate-limited), a
//! refresh, a refresh-token reuse, forward-auth allow/deny, a revocation the channel missed
//! and a wait for a database connection, over HTTP on PostgreSQL and Redis, move every
//! series `docs/operations.md` tells operators to alert on; an outage of a throwaway Redis
//! and a closed database pool move the error series; and every gateway metric that page
//! names is in the scrape, and every family in the scrape is on that page (the docs check
//! themselves).

use crate::support::env::{PASSWORD, env_mailing_through, serve_with};
use crate::support::free_port;
use chrono::{Duration, Utc};
use keygate_core::clock::{Clock, ManualClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::ephemeral::{Ephemeral, RedisEphemeral};
use keygate_core::ids::SessionId;
use keygate_core::store::{PgStore, Store};
use keygate_gateway::identity::RateLimits;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Sign-in attempts one address may make per window in this test: the ninth is refused.
const BUDGET: u64 = 8;

/// The sum of the samples of `name` whose labels include every pair of `labels`, parsed
/// from Prometheus' text exposition.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

/// Metric families the scrape declares (`# TYPE name kind`), with their kind.
fn families(scrape: &str) -> Vec<(String, String)> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_owned(), k.to_owned()))
        .collect()
}

/// Every `keygate_…` name `docs/operations.md` mentions (tables and PromQL alike).
fn documented_names() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let text = std::fs::read_to_string(path).unwrap();
    // Only the section about metrics: other sections name roles and functions `keygate_…`.
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("What to watch"))
        .expect("docs/operations.md has a \"What to watch\" section");
    let mut names = BTreeSet::new();
    let mut rest = section;
    while let Some(at) = rest.find("keygate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

async fn scrape(env: &crate::support::env::Env) -> String {
    let r = env
        .http
        .get(format!("{}/metrics", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

async fn forward_auth(env: &crate::support::env::Env, bearer: Option<&str>) -> StatusCode {
    let mut r = env
        .http
        .get(format!("{}/forward-auth?tenant=acme", env.url));
    if let Some(token) = bearer {
        r = r.bearer_auth(token);
    }
    r.send().await.unwrap().status()
}

#[sqlx::test(migrations = false)]
async fn a_flow_moves_every_documented_series(pool: sqlx::PgPool) {
    let limits = RateLimits {
        sign_in_per_ip: BUDGET,
        ..RateLimits::default()
    };
    let (env, identity) = env_mailing_through(pool.clone(), limits, &[], None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "ada@example.com").await;
    env.user(&t.row, "bob@example.com").await;
    let before = scrape(&env).await;

    // Sign in (1), refresh, then present the spent refresh token after the grace window.
    let (s, first) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let spent = first["refresh_token"].as_str().unwrap().to_owned();
    let (s, _) = env.refresh("acme", &spent).await;
    assert_eq!(s, StatusCode::OK);
    env.clock.advance(Duration::seconds(11));
    let (s, body) = env.refresh("acme", &spent).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Five wrong passwords (2–6) lock bob; his right password (7) is then refused as locked.
    for _ in 0..5 {
        let (s, _) = env
            .login("acme", "bob@example.com", "wrong-password-x")
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, body) = env.login("acme", "bob@example.com", PASSWORD).await;
    assert_eq!(body["code"], "account_locked", "{s}");
    // Ada again (8), the last attempt of the budget; the ninth is rate-limited.
    let (s, second) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    // Forward-auth: allowed twice (a lookup, then the cache), refused without a credential.
    let token = second["access_token"].as_str().unwrap();
    assert_eq!(forward_auth(&env, Some(token)).await, StatusCode::OK);
    assert_eq!(forward_auth(&env, Some(token)).await, StatusCode::OK);
    assert_eq!(forward_auth(&env, None).await, StatusCode::UNAUTHORIZED);

    // A session revoked in the store behind Redis' back (a lost message) reaches this
    // replica through the store re-check, 3 s after it was revoked.
    let sid: SessionId = second["session_id"].as_str().unwrap().parse().unwrap();
    let revoked_at = env.clock.now();
    assert!(
        env.store
            .revoke_session(t.row.id, sid, revoked_at)
            .await
            .unwrap()
    );
    env.clock.advance(Duration::seconds(3));
    let since = revoked_at - Duration::seconds(10);
    assert_eq!(identity.sync_revocations_once(since).await.unwrap(), 2);
    // Already applied: a second pass does not count it again.
    identity.sync_revocations_once(since).await.unwrap();
    // Every connection of the pool held: the next store call waits for one.
    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        held.push(pool.acquire().await.unwrap());
    }
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        drop(held);
    };
    let (waited, ()) = tokio::join!(identity.sync_revocations_once(since), release);
    assert_eq!(waited.unwrap(), 2);

    // The reuse revoked ada's first session through Redis, whose channel echoes it back.
    let mut after = scrape(&env).await;
    for _ in 0..100 {
        if value(
            &after,
            "keygate_revocation_lag_seconds_count",
            &[("path", "channel")],
        ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = scrape(&env).await;
    }
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let login = [("route", "/t/{tenant}/login"), ("method", "POST")];
    for (code, n) in [("200", 2.0), ("401", 5.0), ("429", 2.0)] {
        let labels = [login[0], login[1], ("code", code)];
        assert_eq!(
            moved("keygate_http_requests_total", &labels),
            n,
            "{code}\n{after}"
        );
    }
    let fa = [("route", "/forward-auth"), ("method", "GET")];
    assert_eq!(
        moved(
            "keygate_http_requests_total",
            &[fa[0], fa[1], ("code", "200")]
        ),
        2.0
    );
    assert_eq!(
        moved(
            "keygate_http_requests_total",
            &[fa[0], fa[1], ("code", "401")]
        ),
        1.0
    );
    let token_route = [("route", "/t/{tenant}/oauth2/token"), ("code", "400")];
    assert_eq!(moved("keygate_http_requests_total", &token_route), 1.0);
    let latency = "keygate_http_request_duration_seconds_count";
    assert_eq!(moved(latency, &[fa[0]]), 3.0, "{after}");
    assert_eq!(moved(latency, &[login[0]]), 9.0);
    for (outcome, n) in [
        ("ok", 2.0),
        ("failed", 5.0),
        ("locked", 1.0),
        ("rate_limited", 1.0),
    ] {
        assert_eq!(
            moved("keygate_sign_ins_total", &[("outcome", outcome)]),
            n,
            "{outcome}"
        );
    }
    assert_eq!(moved("keygate_account_lockouts_total", &[]), 1.0);
    // Every sign-in that reached a password check waited for a hashing thread once; none
    // was refused, and none is waiting now.
    assert!(
        moved("keygate_password_hash_wait_seconds_count", &[]) >= 7.0,
        "{after}"
    );
    assert_eq!(moved("keygate_password_hash_rejected_total", &[]), 0.0);
    assert_eq!(value(&after, "keygate_password_hash_queue_depth", &[]), 0.0);
    assert_eq!(value(&after, "keygate_password_hash_threads", &[]), 2.0);
    assert_eq!(
        moved("keygate_tokens_issued_total", &[("grant", "password")]),
        2.0
    );
    assert_eq!(
        moved("keygate_tokens_issued_total", &[("grant", "refresh_token")]),
        1.0
    );
    assert_eq!(moved("keygate_refresh_token_reuse_total", &[]), 1.0);
    let decisions = "keygate_forward_auth_decisions_total";
    assert_eq!(moved(decisions, &[("outcome", "allow")]), 2.0);
    assert_eq!(moved(decisions, &[("outcome", "unauthenticated")]), 1.0);
    let reasons = "keygate_forward_auth_decision_reasons_total";
    let allowed = [("reason", "allowed"), ("credential", "access_token")];
    assert_eq!(moved(reasons, &allowed), 2.0);
    let bare = [("reason", "no_credentials"), ("credential", "none")];
    assert_eq!(moved(reasons, &bare), 1.0);
    let lookups = "keygate_forward_auth_identity_lookups_total";
    assert_eq!(moved(lookups, &[("source", "resolver")]), 1.0);
    assert_eq!(moved(lookups, &[("source", "cache")]), 1.0);
    assert!(
        moved("keygate_revocations_received_total", &[]) >= 1.0,
        "{after}"
    );
    assert_eq!(value(&after, "keygate_redis_up", &[]), 1.0);
    let lag = "keygate_revocation_lag_seconds";
    let store_path = [("path", "store")];
    assert_eq!(moved(&format!("{lag}_count"), &store_path), 1.0);
    let late = moved(&format!("{lag}_sum"), &store_path);
    assert!((late - 3.0).abs() < 0.001, "{late}\n{after}");
    // The echo of its own publication comes back over loopback within a second.
    let channel = [("path", "channel")];
    let channel_seconds = moved(&format!("{lag}_sum"), &channel);
    assert!((0.0..1.0).contains(&channel_seconds), "{after}");
    // Redis: every sign-in counted a rate window there; the reuse published a revocation.
    let redis = "keygate_redis_command_duration_seconds_count";
    assert!(moved(redis, &[("operation", "hit")]) >= 9.0, "{after}");
    assert!(moved(redis, &[("operation", "revoke")]) >= 1.0);
    assert_eq!(moved("keygate_redis_errors_total", &[]), 0.0);
    // The store: each sign-in looked the account up, each token set opened or rotated in it.
    let store = "keygate_store_call_duration_seconds_count";
    assert!(
        moved(store, &[("operation", "user_by_email")]) >= 2.0,
        "{after}"
    );
    // A password sign-in opens its session, first refresh token and audit event in one call.
    assert_eq!(moved(store, &[("operation", "open_session")]), 2.0);
    assert_eq!(moved(store, &[("operation", "rotate_refresh_token")]), 2.0);
    assert_eq!(moved("keygate_store_errors_total", &[]), 0.0);
    assert!(moved("keygate_db_pool_waits_total", &[]) >= 1.0, "{after}");
    let open = value(&after, "keygate_db_pool_connections", &[]);
    let max = value(&after, "keygate_db_pool_max_connections", &[]);
    assert!(open >= 1.0 && open <= max, "{after}");
    assert!(value(&after, "keygate_db_pool_idle_connections", &[]) <= open);

    // The database goes away: a tenant not yet cached cannot be read.
    pool.close().await;
    let r = env
        .http
        .get(format!(
            "{}/t/other/.well-known/openid-configuration",
            env.url
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let last = scrape(&env).await;
    let failed = [("operation", "tenant_by_name")];
    let errors = "keygate_store_errors_total";
    assert_eq!(value(&last, errors, &failed), 1.0, "{last}");
    assert_eq!(value(&last, errors, &[]), 1.0);

    // The page and the scrape name the same gateway metrics.
    let exported = families(&last);
    let is_exported = |name: &str| {
        exported.iter().any(|(n, kind)| {
            n == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(n.as_str())))
        })
    };
    let documented = documented_names();
    let missing: Vec<_> = documented
        .iter()
        .filter(|n| !n.starts_with("keygate_operator_") && !is_exported(n))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not exported: {missing:?}\n{last}"
    );
    let undocumented: Vec<_> = exported
        .iter()
        .filter(|(n, _)| !documented.contains(n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not documented: {undocumented:?}"
    );
}

/// A `redis-server` of the test's own on a free port, and an ephemeral store on it.
async fn throwaway_redis(dir: &std::path::Path) -> (std::process::Child, Arc<dyn Ephemeral>) {
    let port = free_port();
    let redis = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match RedisEphemeral::connect(&url, "kgtest:").await {
            Ok(e) => return (redis, Arc::new(e)),
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "redis-server: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[sqlx::test(migrations = false)]
async fn redis_failures_are_counted_as_they_happen(pool: sqlx::PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut redis, ephemeral) = throwaway_redis(dir.path()).await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let limits = RateLimits::default();
    let (env, _) = serve_with(store, ephemeral, clock, limits, master, None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "ada@example.com").await;
    let (s, _) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let before = scrape(&env).await;
    assert_eq!(value(&before, "keygate_redis_errors_total", &[]), 0.0);
    assert_eq!(value(&before, "keygate_redis_up", &[]), 1.0);

    // Redis goes away: the sign-in's rate window is counted in this replica instead (a
    // warning in the log), but an upstream sign-in's single-use state lives only there.
    redis.kill().unwrap();
    redis.wait().unwrap();
    let (s, _) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let callback = env
        .http
        .get(format!(
            "{}/t/acme/sso/corp/callback?state=s1&code=c1",
            env.url
        ))
        .send()
        .await
        .unwrap();
    assert!(callback.status().is_server_error(), "{}", callback.status());

    let after = scrape(&env).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(
        moved("keygate_redis_errors_total", &[("operation", "take")]) >= 1.0,
        "{after}"
    );
    // This scrape's PING failed too, and says so.
    assert!(moved("keygate_redis_errors_total", &[("operation", "ping")]) >= 1.0);
    assert_eq!(value(&after, "keygate_redis_up", &[]), 0.0);
}
