//! Password hashing at capacity: once the pool's threads are busy and its queue is full,
//! every hashing caller (JSON sign-in, sign-up, the sign-in page) is answered 503 with
//! `Retry-After` at once, instead of queueing (and allocating) without bound.

use crate::support::RequestExt;
use crate::support::env::{Env, env_hashing_on};
use keygate_core::crypto::password::{HashParams, HashPool, PasswordHasher};
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One hashing thread, one queue slot, and hashes slow enough (~0.1 s) that a burst of
/// requests finds both taken.
fn narrow_pool() -> PasswordHasher {
    PasswordHasher::with_pool(
        HashParams {
            memory_kib: 32 * 1024,
            iterations: 8,
            parallelism: 1,
        },
        HashPool {
            threads: 1,
            queue: 1,
        },
    )
    .unwrap()
}

/// Sends `requests` at once; returns each answer's status, `Retry-After` and body.
async fn burst(requests: Vec<reqwest::RequestBuilder>) -> Vec<(StatusCode, Option<u64>, String)> {
    let sent = requests.into_iter().map(|r| async move {
        let r = r.send().await.unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        (r.status(), retry, r.text().await.unwrap())
    });
    futures::future::join_all(sent).await
}

/// Some answers went through (`ok`), the others were refused 503 with a `Retry-After` of at
/// least a second.
fn some_refused(answers: &[(StatusCode, Option<u64>, String)], ok: StatusCode) {
    let refused: Vec<_> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!refused.is_empty(), "nothing refused: {answers:?}");
    assert!(
        answers.iter().any(|(s, _, _)| *s == ok),
        "nothing served: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(s, _, _)| *s == ok || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{answers:?}"
    );
    for (_, retry, _) in &refused {
        assert!(retry.is_some_and(|s| s >= 1), "{answers:?}");
    }
}

fn json_post(env: &Env, path: &str, n: usize, body: Value) -> reqwest::RequestBuilder {
    env.http
        .post(format!("{}{path}", env.url))
        .header("x-forwarded-for", format!("198.51.100.{}", n + 1))
        .json(&body)
}

#[sqlx::test(migrations = false)]
async fn past_the_hashing_queue_every_hashing_caller_answers_503_with_retry_after(
    pool: sqlx::PgPool,
) {
    let env = env_hashing_on(pool, narrow_pool()).await;
    env.tenant(
        "acme",
        SigningAlgorithm::EdDSA,
        json!({"signIn": {"registration": "open", "emailVerification": "off"}}),
    )
    .await;

    // JSON sign-in (unknown accounts: the same hash as a known one).
    let sign_ins = (0..8)
        .map(|n| {
            json_post(
                &env,
                "/t/acme/login",
                n,
                json!({"email": format!("nobody{n}@example.com"), "password": "not-the-password-7"}),
            )
        })
        .collect();
    let answers = burst(sign_ins).await;
    some_refused(&answers, StatusCode::UNAUTHORIZED);
    let refused = answers
        .iter()
        .find(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    let problem: Value = serde_json::from_str(&refused.2).unwrap();
    assert_eq!(problem["code"], "overloaded", "{problem}");

    // Sign-up.
    let sign_ups = (0..8)
        .map(|n| {
            json_post(
                &env,
                "/t/acme/accounts",
                n + 20,
                json!({"email": format!("new{n}@example.com"), "password": "violet-anchor-tundra-9"}),
            )
        })
        .collect();
    let answers = burst(sign_ups).await;
    let created = answers
        .iter()
        .find(|(s, _, _)| s.is_success())
        .map_or(StatusCode::CREATED, |(s, _, _)| *s);
    some_refused(&answers, created);

    // The sign-in page: one CSRF token and binding cookie serve every post of the burst.
    let page = env
        .http
        .get(format!("{}/t/acme/signin", env.url))
        .send()
        .await
        .unwrap();
    let binding = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let posts = (0..8)
        .map(|n| {
            let email = format!("nobody{n}@example.com");
            env.http
                .post(format!("{}/t/acme/signin", env.url))
                .header("cookie", &binding)
                .header("x-forwarded-for", format!("198.51.100.{}", n + 40))
                .form_pairs(&[
                    ("csrf", token.as_str()),
                    ("email", email.as_str()),
                    ("password", "not-the-password-7"),
                ])
        })
        .collect();
    let answers = burst(posts).await;
    some_refused(&answers, StatusCode::UNAUTHORIZED);
    let refused = answers
        .iter()
        .find(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    assert!(
        refused.2.contains("Too many people are signing in"),
        "{}",
        refused.2
    );
}
