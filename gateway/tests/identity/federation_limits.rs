//! What keeps upstream sign-in from being turned against the provider or the gateway: keys
//! refetched at once when the provider rotates them, but not again for every made-up `kid`;
//! and SSO start rate-limited per address like any other sign-in.

use super::federation::{callback, oidc, provider, start};
use crate::support::env::{Env, env_federated, env_federated_limited};
use crate::support::upstream::{
    Browser, OidcProvider, Page, ProviderOptions, oidc_provider, through_provider,
};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_gateway::identity::{Federation, RateLimits};
use serde_json::json;

const SESSION: &str = "__Host-keygate_session";

/// A fresh browser signs in as `login` through `op`; the callback's page.
async fn sign_in(env: &Env, op: &OidcProvider, login: &str) -> (Browser, Page) {
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(env, "corp"), login).await;
    let page = browser.get(&answer.url).await;
    (browser, page)
}

#[sqlx::test(migrations = false)]
async fn a_rotated_provider_key_is_fetched_at_once_but_unknown_kids_refetch_at_most_once_a_minute(
    pool: sqlx::PgPool,
) {
    let (env, _) = env_federated(pool, Federation::default()).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let op = oidc_provider(ProviderOptions {
        redirect_uris: vec![callback(&env, "corp")],
        ..ProviderOptions::default()
    });
    provider(&env, &acme, "corp", oidc(&op.issuer, Some(&op.ca_pem))).await;

    // A first sign-in: keygate has read the provider's keys and keeps them (for minutes).
    let (browser, page) = sign_in(&env, &op, "ada@example.com").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(browser.cookie(&env.url, SESSION).is_some());
    let fetched = op.requests("/jwks");
    assert!(
        fetched >= 1,
        "keygate fetched the keys to check the ID token"
    );

    // The provider rotates: its ID tokens now name a key keygate has not seen. The sign-in
    // still succeeds, because keygate fetched the keys again then and there.
    op.rotate_keys();
    let (browser, page) = sign_in(&env, &op, "ada@example.com").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(browser.cookie(&env.url, SESSION).is_some());
    assert_eq!(
        op.requests("/jwks"),
        fetched + 1,
        "one refetch for the new kid"
    );

    // Another unknown kid within the minute: no fetch, and the token it cannot check is
    // refused, not let through.
    op.rotate_keys();
    let (browser, page) = sign_in(&env, &op, "ada@example.com").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("failed validation"), "{}", page.body);
    assert!(browser.cookie(&env.url, SESSION).is_none());
    assert_eq!(
        op.requests("/jwks"),
        fetched + 1,
        "no second refetch within the minimum interval"
    );
}

#[sqlx::test(migrations = false)]
async fn sso_start_past_the_per_address_budget_answers_429_and_does_not_send_to_the_provider(
    pool: sqlx::PgPool,
) {
    let limits = RateLimits {
        sign_in_per_ip: 2,
        ..RateLimits::default()
    };
    let (env, _) = env_federated_limited(pool, limits, |_| Federation::default()).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let op = oidc_provider(ProviderOptions {
        redirect_uris: vec![callback(&env, "corp")],
        ..ProviderOptions::default()
    });
    provider(&env, &acme, "corp", oidc(&op.issuer, Some(&op.ca_pem))).await;

    // Within the budget: sent on to the provider's authorization endpoint.
    for _ in 0..2 {
        let r = env.http.get(start(&env, "corp")).send().await.unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
        let to = r.headers()["location"].to_str().unwrap();
        assert!(to.starts_with(&op.issuer), "{to}");
    }

    // Past it: refused plainly, no redirect, no sign-in state handed out.
    let r = env.http.get(start(&env, "corp")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("location").is_none());
    assert!(r.headers().get("set-cookie").is_none());
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&wait),
        "within the minute's window: {wait}"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("Too many attempts"), "{body}");
}
