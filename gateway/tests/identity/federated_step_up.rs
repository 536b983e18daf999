//! Step-up of an account without a local password (signed in through an upstream provider
//! only), against the real `oidc-provider`: a forward-auth `max_age` sends the person to the
//! step-up page, which sends them to their provider with `prompt=login` and `max_age=0`; a
//! fresh sign-in there raises the session, while a provider that answers without authenticating the person again is refused.

use super::federation::{callback, oidc, provider, start};
use crate::support::env::{Env, env_federated};
use crate::support::upstream::{Browser, ProviderOptions, oidc_provider, through_provider};
use chrono::Utc;
use keygate_core::clock::Clock;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::Tenant;
use keygate_gateway::identity::Federation;
use reqwest::StatusCode;
use serde_json::json;

const SESSION: &str = "__Host-keygate_session";
const APP: &str = "https://app.test";

/// Forward-auth as Envoy asks it for a browser's request to `{APP}/admin` with `max_age=1`.
async fn admin_check(env: &Env, cookie: &str) -> reqwest::Response {
    env.http
        .get(format!("{}/forward-auth/admin", env.url))
        .header("host", "app.test")
        .header("x-forwarded-proto", "https")
        .header("x-keygate-requirements", "tenant=acme&max_age=1")
        .header("accept", "text/html")
        .header("cookie", format!("{SESSION}={cookie}"))
        .send()
        .await
        .unwrap()
}

/// A tenant whose people sign in through `corp` (an `oidc-provider`), and a browser signed
/// in as Ada through it: (tenant, browser, its session cookie, the provider).
async fn signed_in_through_corp(
    env: &Env,
    options: ProviderOptions,
) -> (
    Tenant,
    Browser,
    String,
    crate::support::upstream::OidcProvider,
) {
    let acme = env
        .tenant(
            "acme",
            SigningAlgorithm::ES256,
            json!({ "redirects": { "allowedOrigins": [APP] } }),
        )
        .await
        .row;
    let op = oidc_provider(ProviderOptions {
        redirect_uris: vec![callback(env, "corp")],
        ..options
    });
    provider(env, &acme, "corp", oidc(&op.issuer, Some(&op.ca_pem))).await;
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(env, "corp"), "ada@example.com").await;
    assert_eq!(browser.get(&answer.url).await.status, 200);
    let cookie = browser.cookie(&env.url, SESSION).expect("a session cookie");
    (acme, browser, cookie, op)
}

/// Moves keygate's clock to the machine's (the provider runs on the machine's clock) once
/// `seconds` have passed since the sign-in.
async fn time_passes(env: &Env, seconds: u64) {
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    env.clock.advance(Utc::now() - env.clock.now());
}

/// The step-up start link the step-up page offers for `corp`.
fn step_up_link(env: &Env, html: &str) -> String {
    let marker = "href=\"/t/acme/sso/corp/start?";
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no step-up link to corp in {html}"))
        + "href=\"".len();
    let href = &html[at..at + html[at..].find('"').unwrap()];
    format!("{}{}", env.url, href.replace("&amp;", "&"))
}

#[sqlx::test(migrations = false)]
async fn an_account_without_a_password_steps_up_through_a_fresh_sign_in_at_its_provider(
    pool: sqlx::PgPool,
) {
    let (env, _) = env_federated(pool, Federation::default()).await;
    let (acme, browser, cookie, _op) =
        signed_in_through_corp(&env, ProviderOptions::default()).await;
    let ada = env
        .store
        .user_by_email(acme.id, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(ada.password_hash.is_none(), "an SSO-only account");

    // Later, a route that wants a sign-in at most a second old sends the browser to step up.
    time_passes(&env, 2).await;
    let r = admin_check(&env, &cookie).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let step_up = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        step_up.starts_with(&format!("{}/t/acme/step-up?", env.url)),
        "{step_up}"
    );

    // The step-up page offers the provider Ada is linked to (no password form).
    let page = browser.get(&step_up).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("name=\"password\""), "{}", page.body);
    let link = step_up_link(&env, &page.body);
    assert!(link.contains("step_up=1"), "{link}");

    // The store keeps microseconds.
    let began = env.clock.now() - chrono::Duration::microseconds(1);
    // A fresh sign-in as Ada: the provider asks for the login again, and keygate raises the
    // session the browser holds and sends it back to the route.
    let answer = through_provider(&browser, &link, "ada@example.com").await;
    let asked_again = browser
        .visited
        .lock()
        .unwrap()
        .iter()
        .any(|u| u.contains("prompt=login") && u.contains("max_age=0"));
    assert!(asked_again, "the provider was asked to authenticate again");
    let back = browser.get_until(&answer.url, |u| u.starts_with(APP)).await;
    assert!(
        back.url.starts_with(&format!("{APP}/.keygate/callback?")),
        "{} {}",
        back.url,
        back.body
    );
    assert_eq!(
        browser.cookie(&env.url, SESSION).as_deref(),
        Some(cookie.as_str())
    );
    assert_eq!(admin_check(&env, &cookie).await.status(), StatusCode::OK);
    let sessions = env
        .store
        .active_sessions_of_user(acme.id, ada.id, env.clock.now())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "the session was raised, not replaced");
    let session = &sessions[0];
    assert!(
        session.auth_time >= began,
        "{} < {began}",
        session.auth_time
    );
    assert_eq!(session.amr, ["fed"]);
    assert_eq!(session.acr.as_deref(), Some("urn:keygate:acr:fed"));
    let kinds = env.audit_kinds(&acme).await;
    assert!(
        kinds.contains(&"session.stepped_up".to_owned()),
        "{kinds:?}"
    );

    // Asked to sign in again (the authorization endpoint's prompt=login), the sign-in page's
    // provider buttons ask the provider for a fresh sign-in too.
    let signin = browser
        .get(&format!("{}/t/acme/signin?prompt=login", env.url))
        .await;
    assert!(
        signin.body.contains("/t/acme/sso/corp/start?fresh=1"),
        "{}",
        signin.body
    );
}

#[sqlx::test(migrations = false)]
async fn a_provider_that_answers_without_authenticating_again_is_refused(pool: sqlx::PgPool) {
    let (env, _) = env_federated(pool, Federation::default()).await;
    let (acme, browser, cookie, _op) = signed_in_through_corp(
        &env,
        ProviderOptions {
            ignore_reauthentication: true,
            ..ProviderOptions::default()
        },
    )
    .await;
    let ada = env
        .store
        .user_by_email(acme.id, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    let before = env
        .store
        .active_sessions_of_user(acme.id, ada.id, env.clock.now())
        .await
        .unwrap();

    // Longer ago than the clock skew keygate allows (5 s), the provider's sign-in is stale.
    time_passes(&env, 7).await;
    let r = admin_check(&env, &cookie).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let page = browser.get(r.headers()["location"].to_str().unwrap()).await;
    let link = step_up_link(&env, &page.body);

    // The provider answers at once from its session, with the old auth_time: refused.
    let is_callback = |u: &str| u.contains("/sso/") && u.contains("/callback");
    let answer = browser.get_until(&link, is_callback).await;
    assert!(
        is_callback(&answer.url),
        "the provider answered at once: {}",
        answer.url
    );
    let refused = browser.get(&answer.url).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains("auth_time is older or missing"),
        "{}",
        refused.body
    );

    // Nothing was raised: the route still sends the browser to step up.
    assert_eq!(admin_check(&env, &cookie).await.status(), StatusCode::FOUND);
    let after = env
        .store
        .active_sessions_of_user(acme.id, ada.id, env.clock.now())
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].auth_time, before[0].auth_time);
    let kinds = env.audit_kinds(&acme).await;
    assert!(
        !kinds.contains(&"session.stepped_up".to_owned()),
        "{kinds:?}"
    );
}
