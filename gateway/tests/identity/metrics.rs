//! `/metrics` after a real flow: sign-ins (ok, wrong password, locked, rate-limited), a
//! refresh, a refresh-token reuse and forward-auth allow/deny over HTTP on PostgreSQL and
//! Redis move every series `docs/operations.md` tells operators to alert on; and every
//! gateway metric that page names is in the scrape, and every family in the scrape is on
//! that page (the docs check themselves).

use crate::support::env::{PASSWORD, env_with_limits};
use chrono::Duration;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_gateway::identity::RateLimits;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;

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
    let env = env_with_limits(
        pool,
        RateLimits {
            sign_in_per_ip: BUDGET,
            ..RateLimits::default()
        },
    )
    .await;
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

    // The reuse revoked ada's first session through Redis, whose channel echoes it back.
    let mut after = scrape(&env).await;
    for _ in 0..100 {
        if value(&after, "keygate_revocations_received_total", &[]) >= 1.0 {
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
    let lookups = "keygate_forward_auth_identity_lookups_total";
    assert_eq!(moved(lookups, &[("source", "resolver")]), 1.0);
    assert_eq!(moved(lookups, &[("source", "cache")]), 1.0);
    assert!(
        moved("keygate_revocations_received_total", &[]) >= 1.0,
        "{after}"
    );
    assert_eq!(value(&after, "keygate_redis_up", &[]), 1.0);
    let open = value(&after, "keygate_db_pool_connections", &[]);
    let max = value(&after, "keygate_db_pool_max_connections", &[]);
    assert!(open >= 1.0 && open <= max, "{after}");
    assert!(value(&after, "keygate_db_pool_idle_connections", &[]) <= open);

    // The page and the scrape name the same gateway metrics.
    let exported = families(&after);
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
        "documented but not exported: {missing:?}\n{after}"
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
