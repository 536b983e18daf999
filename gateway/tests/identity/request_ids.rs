//! Request ids: a trusted proxy's `X-Request-ID` (or the trace id of its `traceparent`) is
//! the id of the request, returned in the answer, written in the log lines of the request
//! and in its audit rows; a client that is not a trusted proxy gets a fresh id whatever it
//! sends, so it cannot choose what its audit rows are filed under.

use crate::support::env::{Env, PASSWORD, env_behind_proxies, env_with_limits};
use crate::support::logs::Captured;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::{AuditFilter, Tenant};
use keygate_gateway::identity::RateLimits;
use reqwest::StatusCode;
use serde_json::json;

/// The only proxy the gateway trusts in these tests: the test process itself.
const PROXY: &str = "127.0.0.1/32";

fn limits() -> RateLimits {
    RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    }
}

/// A failed JSON sign-in with `headers`; returns the answer's `X-Request-ID`.
async fn failed_sign_in(env: &Env, tenant: &str, headers: &[(&str, &str)]) -> String {
    let mut request = env
        .http
        .post(format!("{}/t/{tenant}/login", env.url))
        .json(&json!({"email": "ivy@example.com", "password": "wrong-password-x"}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    r.headers()
        .get("x-request-id")
        .expect("every answer carries its request id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The request ids of the tenant's `login.failed` rows, sorted (the tests' clock stands
/// still, so the rows' times do not order them).
async fn failed_sign_in_ids(env: &Env, tenant: &Tenant) -> Vec<Option<String>> {
    let filter = AuditFilter {
        kind: Some("login.failed".into()),
        ..AuditFilter::default()
    };
    let events = env
        .store
        .query_audit(tenant.id, &filter, 100)
        .await
        .unwrap();
    let mut ids: Vec<_> = events.into_iter().map(|e| e.request_id).collect();
    ids.sort();
    ids
}

#[sqlx::test(migrations = false)]
async fn a_trusted_proxys_request_id_is_returned_logged_and_audited(pool: sqlx::PgPool) {
    let env = env_behind_proxies(pool, limits(), &[PROXY]).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "ivy@example.com").await;
    let logs = Captured::start();

    let id = "ingress-7f3a9c01-req";
    let answered = failed_sign_in(&env, "acme", &[("x-request-id", id)]).await;
    assert_eq!(answered, id);

    // Without an X-Request-ID, the trace id of the proxy's traceparent.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced = failed_sign_in(
        &env,
        "acme",
        &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
    )
    .await;
    assert_eq!(traced, trace);

    let mut expected = [Some(id.to_owned()), Some(trace.to_owned())];
    expected.sort();
    assert_eq!(failed_sign_in_ids(&env, &t.row).await, expected);
    let logs = logs.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(&format!("request_id={id}")))
        .collect();
    // The store's queries of that sign-in are logged inside the request's span.
    assert!(
        lines.iter().any(|l| l.contains("sqlx")),
        "no log line of the request names its id:\n{logs}"
    );
    // Each store call runs in a span of its own, named by its operation.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("store{op=") && l.contains("sqlx")),
        "no store span around the request's queries:\n{logs}"
    );
    // A good sign-in still works, and its id is a fresh one.
    let r = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .json(&json!({"email": "ivy@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let fresh = r.headers()["x-request-id"].to_str().unwrap();
    assert!(
        fresh != id && fresh != trace && fresh.len() == 32,
        "{fresh}"
    );
}

#[sqlx::test(migrations = false)]
async fn an_untrusted_client_gets_a_fresh_request_id_whatever_it_sends(pool: sqlx::PgPool) {
    let env = env_with_limits(pool, limits()).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "ivy@example.com").await;

    let chosen = "attacker-chosen-id";
    let first = failed_sign_in(&env, "acme", &[("x-request-id", chosen)]).await;
    let second = failed_sign_in(
        &env,
        "acme",
        &[
            ("x-request-id", chosen),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
    )
    .await;
    for id in [&first, &second] {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert!(!id.contains("4bf92f35"), "{id}");
    }
    assert_ne!(first, second);
    let mut expected = [Some(first), Some(second)];
    expected.sort();
    assert_eq!(failed_sign_in_ids(&env, &t.row).await, expected);
}
