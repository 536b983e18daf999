//! Lockout abuse (issue 14.5): a stranger's wrong passwords lock an account for browsers and
//! clients that never signed in to it, but not for the owner's: a device cookie (or an API
//! client's device token) from an earlier sign-in is judged by its own budget. A stolen
//! device token buys a thief only that budget; tokens of other accounts, forged or expired
//! ones bypass nothing; an emailed single-use link unlocks the account.

use crate::support::env::{Env, PASSWORD, env};
use chrono::Duration;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_gateway::identity::{DEVICE_FAILURE_BUDGET, DEVICE_TOKEN_TTL, UNLOCK_TTL};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEVICE_COOKIE: &str = "__Host-keygate_device";

/// A JSON sign-in with `extra` fields merged in: (status, `Retry-After`, body, `Set-Cookie`s).
async fn login(
    env: &Env,
    email: &str,
    password: &str,
    extra: Value,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, Value, Vec<String>) {
    let mut body = json!({"email": email, "password": password});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let mut req = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let cookies = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (
        status,
        retry,
        r.json().await.unwrap_or(Value::Null),
        cookies,
    )
}

/// The `name=value` of the device cookie among `set_cookies`.
fn device_cookie(set_cookies: &[String]) -> String {
    set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{DEVICE_COOKIE}=")))
        .unwrap_or_else(|| panic!("no device cookie in {set_cookies:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// An API client's sign-in: its device token.
async fn device_token(env: &Env, email: &str) -> String {
    let (s, _, body, _) = login(env, email, PASSWORD, json!({}), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["device_token"].as_str().unwrap().to_owned()
}

/// `n` wrong passwords from a client without a device token; the account ends up locked.
async fn lock(env: &Env, email: &str, n: usize) {
    for _ in 0..n {
        login(env, email, "wrong-password-x", json!({}), None).await;
    }
    let (s, _, body, _) = login(env, email, PASSWORD, json!({}), None).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("account_locked")),
        "the right password is refused to a client without a device token"
    );
}

#[sqlx::test(migrations = false)]
async fn a_strangers_wrong_passwords_do_not_lock_out_the_owners_browser_or_client(
    pool: sqlx::PgPool,
) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "kim@example.com").await;
    // The owner signed in before: on the page, with the JSON browser sign-in, as an API client.
    let (s, set, _) = env
        .page_post(
            "/t/acme/signin",
            &[("email", "kim@example.com"), ("password", PASSWORD)],
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let page_device = device_cookie(&set);
    assert!(
        set.iter()
            .any(|c| c.starts_with(DEVICE_COOKIE) && c.contains("Max-Age=15552000")),
        "{set:?}"
    );
    let (s, _, body, set) = login(
        &env,
        "kim@example.com",
        PASSWORD,
        json!({"browser_session": true}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.get("device_token").is_none(), "the cookie carries it");
    let json_device = device_cookie(&set);
    let api_token = device_token(&env, "kim@example.com").await;

    // A stranger's five wrong passwords lock the account for everyone else.
    lock(&env, "kim@example.com", 5).await;

    // The page sign-in from the owner's browser still goes through.
    let (s, set, html) = env
        .page_post(
            "/t/acme/signin",
            &[("email", "kim@example.com"), ("password", PASSWORD)],
            &[],
            Some(&page_device),
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{html}");
    assert!(set.iter().any(|c| c.starts_with("__Host-keygate_session=")));
    // So do the JSON browser sign-in (by its cookie) and the API client (by its token).
    let (s, _, _, _) = login(
        &env,
        "kim@example.com",
        PASSWORD,
        json!({"browser_session": true}),
        Some(&json_device),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body, _) = login(
        &env,
        "kim@example.com",
        PASSWORD,
        json!({"device_token": api_token}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body["device_token"]
            .as_str()
            .is_some_and(|t| t != api_token)
    );
    // The owner's sign-ins did not lift the lock for the stranger.
    let (s, _, body, _) = login(&env, "kim@example.com", PASSWORD, json!({}), None).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("account_locked"))
    );
}

#[sqlx::test(migrations = false)]
async fn another_accounts_forged_or_expired_device_token_bypasses_nothing(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "kim@example.com").await;
    env.user(&t.row, "lee@example.com").await;
    let kim = device_token(&env, "kim@example.com").await;
    let lee = device_token(&env, "lee@example.com").await;
    // One browser, two accounts: Kim signs in where Lee's token is; the cookie keeps both.
    let (s, _, _, set) = login(
        &env,
        "kim@example.com",
        PASSWORD,
        json!({"browser_session": true}),
        Some(&format!("{DEVICE_COOKIE}={lee}")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let shared = device_cookie(&set);
    assert!(shared.ends_with(&format!(".{lee}")), "{shared}");
    lock(&env, "kim@example.com", 5).await;
    let (s, _, _, _) = login(&env, "kim@example.com", PASSWORD, json!({}), Some(&shared)).await;
    assert_eq!(s, StatusCode::OK, "the shared cookie serves Kim");
    lock(&env, "kim@example.com", 5).await;

    let mut forged = kim.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (what, token) in [
        ("another account's", lee.as_str()),
        ("a forged", forged.as_str()),
        ("a junk", "x.y.z"),
    ] {
        let (s, _, body, _) = login(
            &env,
            "kim@example.com",
            PASSWORD,
            json!({"device_token": token}),
            None,
        )
        .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("account_locked")),
            "{what} device token"
        );
        // The same as a cookie.
        let cookie = format!("{DEVICE_COOKIE}={token}");
        let (s, _, _, _) = login(&env, "kim@example.com", PASSWORD, json!({}), Some(&cookie)).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{what} device cookie");
    }
    // Kim's own token does bypass the lock...
    let (s, _, _, _) = login(
        &env,
        "kim@example.com",
        PASSWORD,
        json!({"device_token": kim}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // ...until it is older than its lifetime.
    env.clock.advance(DEVICE_TOKEN_TTL + Duration::seconds(1));
    lock(&env, "kim@example.com", 5).await;
    let (s, _, body, _) = login(
        &env,
        "kim@example.com",
        PASSWORD,
        json!({"device_token": kim}),
        None,
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("account_locked")),
        "an expired device token"
    );
}

#[sqlx::test(migrations = false)]
async fn a_thief_with_the_device_token_gets_only_the_devices_budget(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "kim@example.com").await;
    let stolen = device_token(&env, "kim@example.com").await;
    let with_stolen = json!({"device_token": stolen});
    for attempt in 1..=DEVICE_FAILURE_BUDGET {
        let (s, _, body, _) = login(
            &env,
            "kim@example.com",
            "wrong-password-x",
            with_stolen.clone(),
            None,
        )
        .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
            "guess {attempt}"
        );
    }
    // The budget is spent: the device is locked for a day, even with the right password.
    let (s, retry, body, _) =
        login(&env, "kim@example.com", PASSWORD, with_stolen.clone(), None).await;
    assert_eq!(
        (s, body["code"].as_str(), retry.as_deref()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("account_locked"),
            Some("86400")
        )
    );
    assert!(
        env.audit_kinds(&t.row)
            .await
            .contains(&"device.locked".to_owned())
    );
    // The device's failures were not the account's: the owner elsewhere signs in.
    let (s, _, _, _) = login(&env, "kim@example.com", PASSWORD, json!({}), None).await;
    assert_eq!(s, StatusCode::OK);
    // A day later the device may try again.
    env.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    let (s, _, _, _) = login(&env, "kim@example.com", PASSWORD, with_stolen, None).await;
    assert_eq!(s, StatusCode::OK);
}

/// The newest unlock link's token mailed to `to`, once `count` unlock mails reached it.
async fn unlock_token(env: &Env, to: &str, count: usize) -> String {
    for _ in 0..200 {
        let mails: Vec<_> = env
            .mailer
            .sent()
            .into_iter()
            .filter(|m| m.to == to && m.subject.contains("unlock your account"))
            .collect();
        if mails.len() >= count {
            let body = &mails[count - 1].body;
            let start = body.find("token=").unwrap() + "token=".len();
            return body[start..].split_whitespace().next().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no unlock mail {count} to {to}");
}

#[sqlx::test(migrations = false)]
async fn an_emailed_unlock_link_clears_the_lock_once(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "kim@example.com").await;
    lock(&env, "kim@example.com", 5).await;
    // The sign-in page offers the link; asking answers the same for an unknown address.
    let page = env
        .http
        .get(format!("{}/t/acme/signin", env.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("href=\"/t/acme/locked\""), "{page}");
    let mut answers = Vec::new();
    for email in ["kim@example.com", "ghost@example.com"] {
        let (s, _, html) = env
            .page_post("/t/acme/locked", &[("email", email)], &[], None)
            .await;
        answers.push((s, html.replace(email, "")));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::OK);
    let token = unlock_token(&env, "kim@example.com", 1).await;

    // The link's page spends it on a button press and sets the device cookie.
    let path = format!("/t/acme/unlock?token={token}");
    let (s, set, html) = env.page_post(&path, &[("token", &token)], &[], None).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("Account unlocked"), "{html}");
    let device = device_cookie(&set);
    // The lock is gone for everyone; spent, the link does nothing more.
    let (s, _, _, _) = login(&env, "kim@example.com", PASSWORD, json!({}), None).await;
    assert_eq!(s, StatusCode::OK);
    lock(&env, "kim@example.com", 5).await;
    let (s, _, html) = env.page_post(&path, &[("token", &token)], &[], None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{html}");
    // The browser that redeemed it is a known device now.
    let (s, _, _, _) = login(&env, "kim@example.com", PASSWORD, json!({}), Some(&device)).await;
    assert_eq!(s, StatusCode::OK);

    // The API: the same 202 for both addresses, a device token, single use, 30 minutes.
    for email in ["kim@example.com", "ghost@example.com"] {
        let (s, body) = env
            .post_json("/t/acme/accounts/unlock", json!({"email": email}))
            .await;
        assert_eq!(
            (s, body),
            (StatusCode::ACCEPTED, json!({"status": "accepted"}))
        );
    }
    let token = unlock_token(&env, "kim@example.com", 2).await;
    let (s, body) = env
        .post_json("/t/acme/accounts/unlock/confirm", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let api_device = body["device_token"].as_str().unwrap().to_owned();
    let (s, body) = env
        .post_json("/t/acme/accounts/unlock/confirm", json!({"token": token}))
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_link"))
    );
    lock(&env, "kim@example.com", 5).await;
    let (s, _, _, _) = login(
        &env,
        "kim@example.com",
        PASSWORD,
        json!({"device_token": api_device}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/unlock",
            json!({"email": "kim@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let token = unlock_token(&env, "kim@example.com", 3).await;
    env.clock.advance(UNLOCK_TTL + Duration::seconds(1));
    let (s, _) = env
        .post_json("/t/acme/accounts/unlock/confirm", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an expired link");
    let kinds = env.audit_kinds(&t.row).await;
    assert!(kinds.contains(&"account.unlocked".to_owned()), "{kinds:?}");
}
