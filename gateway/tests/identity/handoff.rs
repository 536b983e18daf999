//! Browser sign-in for apps on other hosts, over HTTP as the proxy hands it on: the app
//! host's `/.keygate/callback` (start and redeem, `Host` naming the app host), the sign-in
//! page handing a signed-in browser on, and forward-auth accepting the app host's cookie.
//! Codes are single use, bound to host and browser, and expire on the manual clock.

use crate::support::RequestExt;
use crate::support::env::{Env, env};
use chrono::Duration;
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::json;

const APP_A: &str = "https://app-a.test";

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// The value of the cookie `name` a response sets, if it sets one.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.strip_prefix(&format!("{name}=")))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn query(url: &str, key: &str) -> Option<String> {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A tenant whose return URLs may go to two app hosts, one person signed in on the gateway's
/// host: (env, the session cookie's value).
async fn signed_in(pool: sqlx::PgPool) -> (Env, String) {
    let env = env(pool).await;
    let t = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({ "redirects": { "allowedOrigins": [APP_A, "https://app-b.test"] } }),
        )
        .await;
    env.user(&t.row, "ada@example.com").await;
    let (_, cookie) = env.browser_login("acme", "ada@example.com").await;
    (env, cookie)
}

/// The app host's handoff path as the proxy hands it on: the browser's `Host` kept.
async fn on_app_host(
    env: &Env,
    host: &str,
    query: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut req = env
        .http
        .get(format!("{}/.keygate/callback?{query}", env.url))
        .header("host", host);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

/// Starts a handoff on app host A for `rd` and lets the signed-in browser pass the sign-in
/// page: (the nonce cookie's value, the code, where the code is to be redeemed).
async fn code_for(env: &Env, session: &str, rd: &str) -> (String, String, String) {
    let start = on_app_host(
        env,
        "app-a.test",
        &form_urlencoded::Serializer::new(String::new())
            .append_pair("tenant", "acme")
            .append_pair("rd", rd)
            .finish(),
        None,
    )
    .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let nonce = set_cookie(&start, "__Host-keygate_handoff").expect("the app host gets a nonce");
    let signin = location(&start);
    assert!(
        signin.starts_with(&format!("{}/t/acme/signin?rd=", env.url)),
        "{signin}"
    );
    assert!(
        !signin.contains(&nonce),
        "only the nonce's hash leaves the app host"
    );
    let onwards = env
        .http
        .get(&signin)
        .header("cookie", format!("__Host-keygate_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        onwards.status(),
        StatusCode::SEE_OTHER,
        "a signed-in browser is sent on"
    );
    let callback = location(&onwards);
    assert!(
        callback.starts_with(&format!("{APP_A}/.keygate/callback?")),
        "{callback}"
    );
    (nonce, query(&callback, "code").unwrap(), callback)
}

async fn redeem(env: &Env, host: &str, code: &str, nonce: Option<&str>) -> reqwest::Response {
    let cookie = nonce.map(|n| format!("__Host-keygate_handoff={n}"));
    let q = format!("tenant=acme&code={code}");
    on_app_host(env, host, &q, cookie.as_deref()).await
}

/// Forward-auth as ingress-nginx asks it for a browser on app host A.
async fn check(env: &Env, cookie: &str) -> StatusCode {
    env.http
        .get(format!("{}/forward-auth?tenant=acme", env.url))
        .header("x-original-url", format!("{APP_A}/orders"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

#[sqlx::test(migrations = false)]
async fn a_handoff_code_gives_the_app_host_a_cookie_that_ends_with_the_session(pool: sqlx::PgPool) {
    let (env, session) = signed_in(pool).await;
    let rd = format!("{APP_A}/orders?x=1");
    let (nonce, code, _) = code_for(&env, &session, &rd).await;
    let r = redeem(&env, "app-a.test", &code, Some(&nonce)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), rd, "back to the original URL");
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let child = set_cookie(&r, "__Host-keygate_app_session").expect("a host cookie for app A");
    let flags = set
        .iter()
        .find(|c| c.starts_with("__Host-keygate_app_session="))
        .unwrap();
    assert!(
        flags.contains("Secure")
            && flags.contains("HttpOnly")
            && flags.contains("Path=/")
            && !flags.contains("Domain"),
        "{flags}"
    );
    assert!(
        set.iter()
            .any(|c| c.starts_with("__Host-keygate_handoff=;")),
        "the nonce is cleared: {set:?}"
    );
    assert_ne!(
        child, session,
        "the app host never sees the gateway's cookie"
    );

    // Forward-auth accepts the app host's cookie as the person's session.
    let child_cookie = format!("__Host-keygate_app_session={child}");
    assert_eq!(check(&env, &child_cookie).await, StatusCode::OK);

    // Signing out on the gateway's host ends the app host's cookie too.
    let (status, _, _) = env
        .page_post(
            "/t/acme/signout",
            &[],
            &[],
            Some(&format!("__Host-keygate_session={session}")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(check(&env, &child_cookie).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = false)]
async fn a_replayed_foreign_expired_or_unbound_code_is_refused(pool: sqlx::PgPool) {
    let (env, session) = signed_in(pool).await;
    let rd = format!("{APP_A}/");
    let refused = |r: &reqwest::Response| {
        r.status() == StatusCode::BAD_REQUEST
            && set_cookie(r, "__Host-keygate_app_session").is_none()
    };

    // Replayed: the first redemption wins, the second is refused.
    let (nonce, code, _) = code_for(&env, &session, &rd).await;
    assert_eq!(
        redeem(&env, "app-a.test", &code, Some(&nonce))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert!(
        refused(&redeem(&env, "app-a.test", &code, Some(&nonce)).await),
        "replay"
    );

    // A code for app A presented on app B is refused, and spent by the attempt.
    let (nonce, code, _) = code_for(&env, &session, &rd).await;
    assert!(
        refused(&redeem(&env, "app-b.test", &code, Some(&nonce)).await),
        "other host"
    );
    assert!(
        refused(&redeem(&env, "app-a.test", &code, Some(&nonce)).await),
        "spent"
    );

    // Expired: 61 s after issue.
    let (nonce, code, _) = code_for(&env, &session, &rd).await;
    env.clock.advance(Duration::seconds(61));
    assert!(
        refused(&redeem(&env, "app-a.test", &code, Some(&nonce)).await),
        "expired"
    );

    // Another browser (no nonce, or another one) cannot redeem a code it intercepted.
    let (_, code, _) = code_for(&env, &session, &rd).await;
    assert!(
        refused(&redeem(&env, "app-a.test", &code, None).await),
        "no nonce"
    );
    let (other_nonce, _, _) = code_for(&env, &session, &rd).await;
    let (_, code, _) = code_for(&env, &session, &rd).await;
    assert!(
        refused(&redeem(&env, "app-a.test", &code, Some(&other_nonce)).await),
        "another browser's nonce"
    );
    // Junk is refused the same way, never a 5xx.
    assert!(
        refused(&redeem(&env, "app-a.test", "x", Some(&other_nonce)).await),
        "junk"
    );

    // A return URL off the allow-list, or on another host than the one asked, starts nothing.
    for (host, rd) in [
        ("evil.test", "https://evil.test/"),
        ("app-a.test", "https://app-b.test/"),
    ] {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("tenant", "acme")
            .append_pair("rd", rd)
            .finish();
        let r = on_app_host(&env, host, &q, None).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{rd} from {host}");
        assert!(set_cookie(&r, "__Host-keygate_handoff").is_none());
    }

    // A forged app-host cookie is refused by forward-auth.
    let forged = format!("__Host-keygate_app_session={}", "A".repeat(43));
    assert_eq!(check(&env, &forged).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = false)]
async fn forward_auth_sends_a_browser_on_another_host_through_its_handoff_path(pool: sqlx::PgPool) {
    let (env, _) = signed_in(pool).await;
    // Envoy (which relays our redirects): the original path appended, the original Host.
    let ask = |path_and_query: &str| {
        env.http
            .get(format!("{}/forward-auth{path_and_query}", env.url))
            .header("host", "app-a.test")
            .header("x-forwarded-proto", "https")
            .header("x-keygate-requirements", "tenant=acme")
            .header("accept", "text/html")
            .send()
    };
    let r = ask("/orders?x=1").await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        location(&r),
        "https://app-a.test/.keygate/callback?tenant=acme&rd=https%3A%2F%2Fapp-a.test%2Forders%3Fx%3D1"
    );
    // The handoff path itself sent through forward-auth is a proxy misconfiguration, never
    // a redirect to itself (which would loop).
    let r = ask("/.keygate/callback?tenant=acme&rd=x").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[sqlx::test(migrations = false)]
async fn the_sign_in_page_sends_a_signed_in_browser_on_and_lands_on_the_account_page(
    pool: sqlx::PgPool,
) {
    let (env, session) = signed_in(pool).await;
    let with_session = format!("__Host-keygate_session={session}");
    // Already signed in, no return URL: the account page, not the form.
    let r = env
        .http
        .get(format!("{}/t/acme/signin", env.url))
        .header("cookie", &with_session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{}/t/acme/account", env.url));
    let account = env
        .http
        .get(format!("{}/t/acme/account", env.url))
        .header("cookie", &with_session)
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), StatusCode::OK);
    let html = account.text().await.unwrap();
    assert!(
        html.contains("ada@example.com") && html.contains("Sign out"),
        "{html}"
    );
    // Not signed in: the form, and the account page sends to it.
    let r = env
        .http
        .get(format!("{}/t/acme/signin", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = env
        .http
        .get(format!("{}/t/acme/account", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{}/t/acme/signin", env.url));

    // A password sign-in without a return URL lands on the account page.
    let form = env
        .http
        .get(format!("{}/t/acme/signin", env.url))
        .send()
        .await
        .unwrap();
    let binding = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = form.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = env
        .http
        .post(format!("{}/t/acme/signin", env.url))
        .header("cookie", binding)
        .form_pairs(&[
            ("csrf", csrf.as_str()),
            ("email", "ada@example.com"),
            ("password", crate::support::env::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&r, "__Host-keygate_session").is_some());
    assert_eq!(location(&r), format!("{}/t/acme/account", env.url));
}
