//! Second factors over HTTP: TOTP enrolment and the sign-in challenge (codes computed by
//! pyotp, an implementation independent of keygate's totp-rs, at the gateway's manual
//! clock), replay and concurrent use of one code, backup codes, a tenant that requires a
//! second factor, the step-up lockout schedule, a forward-auth route with `mfa=1` admitting
//! a person after a TOTP step-up, and factor removal without a fresh step-up.

use crate::support::RequestExt;
use crate::support::env::{Env, PASSWORD, env, verify_independently};
use crate::support::smtp::python;
use chrono::{DateTime, Duration, Utc};
use keygate_core::clock::Clock;
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ACR_MFA: &str = "urn:keygate:acr:mfa";
const APP: &str = "https://app.test";

/// The TOTP code of base32 `secret` at `at`, from pyotp.
pub(crate) fn code_at(secret: &str, at: DateTime<Utc>) -> String {
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import pyotp, sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &at.timestamp().to_string(),
        ])
        .output()
        .expect("the peers' Python (run scripts/test once, or set KEYGATE_TEST_PYTHON)");
    assert!(
        out.status.success(),
        "pyotp (gateway/tests/peers/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub(crate) async fn post(env: &Env, path: &str, bearer: &str, body: Value) -> (StatusCode, Value) {
    let r = env
        .http
        .post(format!("{}{path}", env.url))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A tenant `acme` with `extra` in its spec and Ada in it.
pub(crate) async fn tenant(pool: sqlx::PgPool, extra: Value) -> Env {
    let env = env(pool).await;
    let mut spec = json!({ "redirects": { "allowedOrigins": [APP] } });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, spec).await;
    env.user(&t.row, "ada@example.com").await;
    env
}

/// Ada enrols an authenticator with a password-only token: (base32 secret, backup codes).
pub(crate) async fn enrol(env: &Env, token: &str) -> (String, Vec<String>) {
    let (s, e) = post(env, "/t/acme/me/mfa/totp", token, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(
        e["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    let secret = e["secret"].as_str().unwrap().to_owned();
    let factor = e["factor_id"].as_str().unwrap();
    let path = format!("/t/acme/me/mfa/totp/{factor}/confirm");
    let (s, wrong) = post(env, &path, token, json!({"code": "000000"})).await;
    assert_eq!(
        (s, wrong["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_code"))
    );
    let code = code_at(&secret, env.clock.now());
    let (s, confirmed) = post(env, &path, token, json!({ "code": code })).await;
    assert_eq!(s, StatusCode::OK, "{confirmed}");
    let codes: Vec<String> = serde_json::from_value(confirmed["backup_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// A password-only sign-in's access token (before any factor).
pub(crate) async fn password_token(env: &Env) -> String {
    let (s, body) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A sign-in that stops at the second factor: its `mfa_token`.
async fn challenge(env: &Env) -> String {
    let (s, body) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("mfa_required")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn second_step(env: &Env, mfa_token: &str, code: &str) -> (StatusCode, Value) {
    env.post_json(
        "/t/acme/login/mfa",
        json!({ "mfa_token": mfa_token, "code": code }),
    )
    .await
}

#[sqlx::test(migrations = false)]
async fn totp_sign_in_issues_mfa_tokens_and_refuses_a_replayed_code(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({})).await;
    let token = password_token(&env).await;
    let claims = verify_independently(&env.url, "acme", &token).await;
    assert_eq!(claims["acr"], "urn:keygate:acr:pwd");
    let (secret, _) = enrol(&env, &token).await;

    // The confirmation used this step's code: the next code is a step later.
    env.clock.advance(Duration::seconds(30));
    let mfa_token = challenge(&env).await;
    let code = code_at(&secret, env.clock.now());
    let (s, done) = second_step(&env, &mfa_token, &code).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let claims =
        verify_independently(&env.url, "acme", done["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["acr"], ACR_MFA);
    let amr: Vec<String> = serde_json::from_value(claims["amr"].clone()).unwrap();
    assert!(
        amr.contains(&"pwd".to_owned()) && amr.contains(&"otp".to_owned()),
        "{amr:?}"
    );

    // The challenge is single use, and the same code is a replay for a new one.
    let (s, again) = second_step(&env, &mfa_token, &code).await;
    assert_eq!(
        (s, again["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token"))
    );
    let fresh = challenge(&env).await;
    let (s, replay) = second_step(&env, &fresh, &code).await;
    assert_eq!(
        (s, replay["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_code"))
    );
    // The challenge stays open after a wrong code; the next step's code completes it.
    env.clock.advance(Duration::seconds(30));
    let (s, _) = second_step(&env, &fresh, &code_at(&secret, env.clock.now())).await;
    assert_eq!(s, StatusCode::OK);

    // Challenges expire.
    let stale = challenge(&env).await;
    env.clock.advance(Duration::minutes(6));
    let (s, body) = second_step(&env, &stale, &code_at(&secret, env.clock.now())).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token"))
    );
}

#[sqlx::test(migrations = false)]
async fn two_concurrent_requests_with_one_code_yield_one_sign_in(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({})).await;
    let token = password_token(&env).await;
    let (secret, _) = enrol(&env, &token).await;
    env.clock.advance(Duration::seconds(30));
    for round in 0..3 {
        let (a, b) = (challenge(&env).await, challenge(&env).await);
        let code = code_at(&secret, env.clock.now());
        let (ra, rb) = tokio::join!(second_step(&env, &a, &code), second_step(&env, &b, &code));
        let ok = [ra.0, rb.0]
            .iter()
            .filter(|s| **s == StatusCode::OK)
            .count();
        assert_eq!(ok, 1, "round {round}: {ra:?} {rb:?}");
        let refused = if ra.0 == StatusCode::OK { rb } else { ra };
        assert_eq!(refused.1["code"], "invalid_code", "round {round}");
        env.clock.advance(Duration::seconds(30));
    }
}

#[sqlx::test(migrations = false)]
async fn a_backup_code_works_once(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({})).await;
    let token = password_token(&env).await;
    let (_, codes) = enrol(&env, &token).await;
    let mfa_token = challenge(&env).await;
    // Typed loosely: upper case, spaces instead of dashes.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let (s, done) = second_step(&env, &mfa_token, &typed).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let claims =
        verify_independently(&env.url, "acme", done["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["acr"], ACR_MFA);
    let again = challenge(&env).await;
    let (s, body) = second_step(&env, &again, &codes[0]).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_code"))
    );
    let (s, status) = env
        .get("/t/acme/me/mfa", done["access_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["backup_codes_remaining"], 9);
    assert_eq!(status["enabled"], true);
}

#[sqlx::test(migrations = false)]
async fn a_tenant_that_requires_mfa_enrols_a_person_before_any_token_or_cookie(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({ "mfa": { "policy": "required" } })).await;
    let r = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "browser_session": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no cookie before the second factor"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "mfa_enrolment_required");
    let mfa_token = body["mfa_token"].as_str().unwrap();
    // Nothing to check a code against yet.
    let (s, early) = second_step(&env, mfa_token, "123456").await;
    assert_eq!(
        (s, early["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_second_factor"))
    );
    let (s, e) = env
        .post_json("/t/acme/login/mfa/totp", json!({ "mfa_token": mfa_token }))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let secret = e["secret"].as_str().unwrap();
    let r = env
        .http
        .post(format!("{}/t/acme/login/mfa", env.url))
        .json(&json!({ "mfa_token": mfa_token, "code": code_at(secret, env.clock.now()) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-keygate_session="), "{cookie}");
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["backup_codes"].as_array().unwrap().len(), 10);
    let claims =
        verify_independently(&env.url, "acme", done["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["acr"], ACR_MFA);

    // The pages do the same: a right password shows the enrolment, and sets no session.
    let t2 = env.store.tenant_by_name("acme").await.unwrap().unwrap();
    env.user(&t2, "bob@example.com").await;
    let (s, cookies, html) = env
        .page_post(
            "/t/acme/signin",
            &[("email", "bob@example.com"), ("password", PASSWORD)],
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    // The QR code as an image (minijinja escapes the `/` of the data URI as `&#x2f;`).
    assert!(
        html.contains("<img class=\"qr\" src=\"data:image"),
        "{html}"
    );
    assert!(html.contains("svg+xml;base64,"), "{html}");
    assert!(html.contains("name=\"mfa_token\""));
    assert!(
        !cookies
            .iter()
            .any(|c| c.starts_with("__Host-keygate_session=")),
        "{cookies:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn step_up_failures_lock_on_the_schedule(pool: sqlx::PgPool) {
    // The clock moves hours ahead: the access token must outlive the schedule.
    let env = tenant(pool, json!({ "tokens": { "accessTokenTtl": "24h" } })).await;
    let token = password_token(&env).await;
    let (secret, _) = enrol(&env, &token).await;
    for failure in 1..=15i64 {
        let (s, body) = post(
            &env,
            "/t/acme/me/step-up",
            &token,
            json!({"code": "000000"}),
        )
        .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_code")),
            "failure {failure}"
        );
        let expected = match failure {
            1..=4 => None,
            5..=9 => Some(300),
            10..=14 => Some(1800),
            _ => Some(7200),
        };
        let Some(secs) = expected else { continue };
        // Locked: even the right code is not looked at, and does not count.
        let r = env
            .http
            .post(format!("{}/t/acme/me/step-up", env.url))
            .bearer_auth(&token)
            .json(&json!({"code": code_at(&secret, env.clock.now())}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "failure {failure}"
        );
        let retry: i64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(retry, secs, "failure {failure}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["code"],
            "second_factor_locked"
        );
        env.clock.advance(Duration::seconds(secs + 1));
    }
    // Past the last lock, the right code steps up and clears the count.
    let (s, done) = post(
        &env,
        "/t/acme/me/step-up",
        &token,
        json!({"code": code_at(&secret, env.clock.now())}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let (s, body) = post(
        &env,
        "/t/acme/me/step-up",
        &token,
        json!({"code": "000000"}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_code"))
    );
    let kinds = env
        .audit_kinds(&env.store.tenant_by_name("acme").await.unwrap().unwrap())
        .await;
    assert_eq!(kinds.iter().filter(|k| *k == "mfa.locked").count(), 11);
}

#[sqlx::test(migrations = false)]
async fn removing_a_factor_needs_a_fresh_step_up(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({})).await;
    let token = password_token(&env).await;
    let (secret, _) = enrol(&env, &token).await;
    let (_, status) = env.get("/t/acme/me/mfa", &token).await;
    let factor = status["factors"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/t/acme/me/mfa/factors/{factor}");
    let r = env
        .http
        .delete(format!("{}{path}", env.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let challenge_header = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge_header.contains("insufficient_user_authentication"),
        "{challenge_header}"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "step_up_required");
    let (s, _) = post(&env, "/t/acme/me/mfa/backup-codes", &token, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "regenerating codes needs it too");

    // A step-up with a code raises the session; its new token may remove the factor.
    env.clock.advance(Duration::seconds(30));
    let (s, stepped) = post(
        &env,
        "/t/acme/me/step-up",
        &token,
        json!({"code": code_at(&secret, env.clock.now())}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stepped}");
    assert_eq!(stepped["acr"], ACR_MFA);
    let raised = stepped["access_token"].as_str().unwrap();
    let (s, fresh) = post(&env, "/t/acme/me/mfa/backup-codes", raised, json!({})).await;
    assert_eq!(
        (s, fresh["backup_codes"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(10))
    );
    let r = env
        .http
        .delete(format!("{}{path}", env.url))
        .bearer_auth(raised)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // No factor left: the password alone signs in again, and no backup code remains.
    let (s, _) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let (_, status) = env.get("/t/acme/me/mfa", raised).await;
    assert_eq!(status["backup_codes_remaining"], 0);
}

/// Forward-auth as Envoy asks it for a browser's request to `{APP}/admin` with `mfa=1`.
async fn admin_check(env: &Env, cookie: &str) -> reqwest::Response {
    env.http
        .get(format!("{}/forward-auth/admin", env.url))
        .header("host", "app.test")
        .header("x-forwarded-proto", "https")
        .header("x-keygate-requirements", "tenant=acme&mfa=1")
        .header("accept", "text/html")
        .header("cookie", format!("__Host-keygate_session={cookie}"))
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_route_with_mfa_admits_the_person_after_a_totp_step_up(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({})).await;
    // Signed in on this browser with the password only, then an authenticator enrolled.
    let (login, cookie) = env.browser_login("acme", "ada@example.com").await;
    let (secret, _) = enrol(&env, login["access_token"].as_str().unwrap()).await;

    let r = admin_check(&env, &cookie).await;
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "a password-only session is sent to step up"
    );
    let step_up = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        step_up.starts_with(&format!("{}/t/acme/step-up?", env.url)),
        "{step_up}"
    );
    let url = url::Url::parse(&step_up).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("rd").map(String::as_str),
        Some("https://app.test/admin")
    );
    assert_eq!(q.get("acr_values").map(String::as_str), Some(ACR_MFA));

    // The step-up page asks for a code; a wrong one is refused, the right one sends the
    // browser back (another host: through its handoff path).
    env.clock.advance(Duration::seconds(30));
    let session = format!("__Host-keygate_session={cookie}");
    let page = env
        .http
        .get(&step_up)
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let binding = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"code\""), "{html}");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let submit = |code: String| {
        env.http
            .post(format!("{}/t/acme/step-up", env.url))
            .header("cookie", format!("{binding}; {session}"))
            .form_pairs(&[
                ("csrf", csrf.as_str()),
                ("rd", "https://app.test/admin"),
                ("acr_values", ACR_MFA),
                ("code", code.as_str()),
            ])
            .send()
    };
    let r = submit("000000".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(admin_check(&env, &cookie).await.status(), StatusCode::FOUND);
    let r = submit(code_at(&secret, env.clock.now())).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        back.starts_with("https://app.test/.keygate/callback?"),
        "{back}"
    );
    assert!(back.contains("rd=https%3A%2F%2Fapp.test%2Fadmin"), "{back}");

    // At once, on the route: the session now carries the second factor.
    let r = admin_check(&env, &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let kinds = env
        .audit_kinds(&env.store.tenant_by_name("acme").await.unwrap().unwrap())
        .await;
    assert!(
        kinds.contains(&"session.stepped_up".to_owned()),
        "{kinds:?}"
    );
}
