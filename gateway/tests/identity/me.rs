//! Self-service over HTTP (issue 17.7, 17.9): the `/t/{tenant}/me` API — sessions (listed
//! with the current one, ending one, ending the others, another person's answering 404),
//! the password change, second factors and backup codes, linked identities — each sensitive
//! change refused without a recent authentication (403 with an RFC 9470 challenge naming
//! the step-up endpoint) and allowed after a step-up; the account page with the same
//! actions behind CSRF and through the step-up page; audit events; and the security alert
//! mails, one through a real SMTP relay (aiosmtpd).

use crate::federation::{oidc, provider};
use crate::mfa::{code_at, enrol, password_token, post, tenant};
use crate::support::RequestExt;
use crate::support::env::{Env, PASSWORD, env_mailing_through};
use crate::support::smtp::SmtpSink;
use chrono::Duration;
use keygate_core::clock::Clock;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::NewExternalIdentity;
use keygate_gateway::identity::{RateLimits, SmtpMailer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

const ACR_MFA: &str = "urn:keygate:acr:mfa";
const ACR_PASSWORD: &str = "urn:keygate:acr:pwd";

/// Access tokens that outlive the step-up window, so a test can let it pass.
fn long_tokens() -> Value {
    json!({ "tokens": { "accessTokenTtl": "1h" } })
}

async fn delete(env: &Env, path: &str, bearer: &str) -> (StatusCode, Value) {
    let r = env
        .http
        .delete(format!("{}{path}", env.url))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The step-up refusal: 403, the RFC 9470 challenge in the header and the body, naming the
/// step-up endpoint, at level `acr`.
fn assert_step_up_refusal(s: StatusCode, body: &Value, acr: &str) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "step_up_required", "{body}");
    assert_eq!(body["error"], "insufficient_user_authentication", "{body}");
    assert_eq!(body["step_up_uri"], "/t/acme/me/step-up", "{body}");
    assert_eq!(body["acr_values"], acr, "{body}");
    assert_eq!(body["max_age"], 300, "{body}");
}

/// The newest mail to Ada whose subject contains `subject` (the memory outbox).
async fn mailed(env: &Env, subject: &str) -> keygate_gateway::identity::Email {
    for _ in 0..250 {
        if let Some(m) = env
            .mailer
            .sent()
            .into_iter()
            .rev()
            .find(|m| m.to == "ada@example.com" && m.subject.contains(subject))
        {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no mail `{subject}` to Ada");
}

#[sqlx::test(migrations = false)]
async fn sessions_are_listed_and_ended_one_or_all_others(pool: sqlx::PgPool) {
    let env = tenant(pool, long_tokens()).await;
    let t = env.store.tenant_by_name("acme").await.unwrap().unwrap();
    env.user(&t, "bob@example.com").await;
    let laptop = password_token(&env).await;
    let r = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .header("user-agent", "Phone/1.0")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let phone = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, bob) = env.login("acme", "bob@example.com", PASSWORD).await;
    let bob = bob["access_token"].as_str().unwrap();

    let (s, list) = env.get("/t/acme/me/sessions", &laptop).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "Bob's session is not Ada's: {list}");
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{list}");
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["user_agent"], "Phone/1.0", "{list}");
    for field in ["ip", "created_at", "last_seen_at"] {
        assert!(other[field].is_string(), "{field}: {list}");
    }

    // Another person's session is no session of Ada's.
    let (_, bobs) = env.get("/t/acme/me/sessions", bob).await;
    let bob_sid = bobs["sessions"][0]["id"].as_str().unwrap();
    let (s, body) = delete(&env, &format!("/t/acme/me/sessions/{bob_sid}"), &laptop).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _) = env.get("/t/acme/me/sessions", bob).await;
    assert_eq!(s, StatusCode::OK, "Bob's session lives on");

    // End the others: the phone is signed out, the laptop is not.
    let (s, ended) = post(&env, "/t/acme/me/sessions/end-others", &laptop, json!({})).await;
    assert_eq!((s, ended["ended"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, _) = env.get("/t/acme/me/sessions", &phone).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the phone's session ended");
    let (s, list) = env.get("/t/acme/me/sessions", &laptop).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    assert!(
        env.audit_kinds(&t)
            .await
            .contains(&"session.others_ended".to_owned())
    );
}

#[sqlx::test(migrations = false)]
async fn disabling_mfa_needs_a_fresh_step_up_and_each_change_mails_an_alert(pool: sqlx::PgPool) {
    let env = tenant(pool, long_tokens()).await;
    let token = password_token(&env).await;
    let (secret, _) = enrol(&env, &token).await;
    let added = mailed(&env, "an authenticator app was added").await;
    assert!(added.body.contains("/t/acme/account"), "{}", added.body);

    let (_, status) = env.get("/t/acme/me/mfa", &token).await;
    let factor = status["factors"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/t/acme/me/mfa/factors/{factor}");
    // A password-level session may not take the factor away, nor make new codes.
    let (s, body) = delete(&env, &path, &token).await;
    assert_step_up_refusal(s, &body, ACR_MFA);
    let (s, body) = post(&env, "/t/acme/me/mfa/backup-codes", &token, json!({})).await;
    assert_step_up_refusal(s, &body, ACR_MFA);
    let (_, still) = env.get("/t/acme/me/mfa", &token).await;
    assert_eq!(still["enabled"], true, "{still}");

    env.clock.advance(Duration::seconds(30));
    let (s, stepped) = post(
        &env,
        "/t/acme/me/step-up",
        &token,
        json!({"code": code_at(&secret, env.clock.now())}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stepped}");
    let raised = stepped["access_token"].as_str().unwrap().to_owned();
    let (s, codes) = post(&env, "/t/acme/me/mfa/backup-codes", &raised, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{codes}");
    mailed(&env, "new backup codes were created").await;

    // The step-up is recent for five minutes only.
    env.clock.advance(Duration::minutes(6));
    let (s, body) = delete(&env, &path, &raised).await;
    assert_step_up_refusal(s, &body, ACR_MFA);
    let (s, stepped) = post(
        &env,
        "/t/acme/me/step-up",
        &raised,
        json!({"code": code_at(&secret, env.clock.now())}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stepped}");
    let raised = stepped["access_token"].as_str().unwrap();
    let (s, _) = delete(&env, &path, raised).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, off) = env.get("/t/acme/me/mfa", raised).await;
    assert_eq!(
        (&off["enabled"], &off["backup_codes_remaining"]),
        (&json!(false), &json!(0)),
        "{off}"
    );
    mailed(&env, "a second factor was removed").await;
    let t = env.store.tenant_by_name("acme").await.unwrap().unwrap();
    let kinds = env.audit_kinds(&t).await;
    for kind in ["mfa.enrolled", "mfa.backup_codes_generated", "mfa.removed"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind}: {kinds:?}");
    }
}

#[sqlx::test(migrations = false)]
async fn a_password_change_needs_a_recent_sign_in_and_the_alert_reaches_a_real_relay(
    pool: sqlx::PgPool,
) {
    let relay = SmtpSink::start();
    let mailer = SmtpMailer::with_root_certificate(
        &relay.url(),
        "Acme <no-reply@acme.example>",
        Some(&relay.ca_pem),
    )
    .unwrap();
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let (env, _) = env_mailing_through(pool, limits, &[], Some(Arc::new(mailer))).await;
    let t = env
        .tenant("acme", SigningAlgorithm::EdDSA, long_tokens())
        .await;
    env.user(&t.row, "ada@example.com").await;
    let token = password_token(&env).await;
    let change = json!({"current_password": PASSWORD, "new_password": "quartz-lantern-meadow-77"});

    env.clock.advance(Duration::minutes(6));
    let (s, body) = post(&env, "/t/acme/me/password", &token, change.clone()).await;
    assert_step_up_refusal(s, &body, ACR_PASSWORD);
    let (s, _) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "the password did not change");

    let (s, stepped) = post(
        &env,
        "/t/acme/me/step-up",
        &token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stepped}");
    let raised = stepped["access_token"].as_str().unwrap();
    let (s, body) = post(&env, "/t/acme/me/password", raised, change).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, _) = env
        .login("acme", "ada@example.com", "quartz-lantern-meadow-77")
        .await;
    assert_eq!(s, StatusCode::OK);
    let alert = relay
        .wait_for("ada@example.com", "your password was changed")
        .await;
    assert!(alert.tls, "STARTTLS");
    assert!(
        alert.text.unwrap_or_default().contains("/t/acme/account"),
        "the alert says where to act"
    );
}

#[sqlx::test(migrations = false)]
async fn linked_identities_are_listed_and_unlinked_after_a_recent_sign_in(pool: sqlx::PgPool) {
    let env = tenant(pool, long_tokens()).await;
    let t = env.store.tenant_by_name("acme").await.unwrap().unwrap();
    provider(&env, &t, "corp", oidc("https://corp.example", None)).await;
    let idp = env.store.idp_by_name(t.id, "corp").await.unwrap().unwrap();
    let ada = env
        .store
        .user_by_email(t.id, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    env.store
        .link_identity(&NewExternalIdentity {
            tenant_id: t.id,
            user_id: ada.id,
            idp_id: idp.id,
            subject: "ada-at-corp".into(),
            groups: vec![],
        })
        .await
        .unwrap();
    let token = password_token(&env).await;
    let (s, list) = env.get("/t/acme/me/identities", &token).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["identities"][0]["provider"], "corp", "{list}");
    assert_eq!(list["identities"][0]["display_name"], "Sign in with Corp");

    let (s, body) = delete(&env, "/t/acme/me/identities/nowhere", &token).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    env.clock.advance(Duration::minutes(6));
    let (s, body) = delete(&env, "/t/acme/me/identities/corp", &token).await;
    assert_step_up_refusal(s, &body, ACR_PASSWORD);
    let (s, stepped) = post(
        &env,
        "/t/acme/me/step-up",
        &token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stepped}");
    let raised = stepped["access_token"].as_str().unwrap();
    let (s, _) = delete(&env, "/t/acme/me/identities/corp", raised).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = env.get("/t/acme/me/identities", raised).await;
    assert_eq!(list["identities"], json!([]));
    mailed(&env, "a linked sign-in was removed").await;
    assert!(
        env.audit_kinds(&t)
            .await
            .contains(&"account.identity_unlinked".to_owned())
    );
}

/// The account page as Ada's browser sees it: (status, the CSRF binding cookie, the
/// form token, the HTML).
async fn account_page(env: &Env, session: &str) -> (StatusCode, String, String, String) {
    let r = env
        .http
        .get(format!("{}/t/acme/account", env.url))
        .header("cookie", format!("__Host-keygate_session={session}"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let binding = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    let html = r.text().await.unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .map(|t| t.split('"').next().unwrap().to_owned())
        .unwrap_or_default();
    (status, binding, token, html)
}

/// Posts an account form as Ada's browser: (status, Location, HTML).
async fn account_post(
    env: &Env,
    path: &str,
    cookies: &str,
    pairs: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let r = env
        .http
        .post(format!("{}{path}", env.url))
        .header("cookie", cookies)
        .form_pairs(pairs)
        .send()
        .await
        .unwrap();
    let s = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (s, location, r.text().await.unwrap())
}

#[sqlx::test(migrations = false)]
async fn the_account_page_shows_the_account_and_its_forms_need_csrf_and_step_up(
    pool: sqlx::PgPool,
) {
    let env = tenant(pool, long_tokens()).await;
    let r = env
        .http
        .get(format!("{}/t/acme/account", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "a stranger is sent to sign in"
    );
    let token = password_token(&env).await;
    let (secret, _) = enrol(&env, &token).await;
    // Ada on this browser signs in with her password and a code (a session of its own).
    env.clock.advance(Duration::seconds(30));
    let (_, phone) = env.login("acme", "ada@example.com", PASSWORD).await;
    let mfa_token = phone["mfa_token"].as_str().unwrap();
    let (s, _) = env
        .post_json(
            "/t/acme/login/mfa",
            json!({"mfa_token": mfa_token, "code": code_at(&secret, env.clock.now())}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, session) = browser_session(&env, &secret).await;

    let (s, binding, csrf, html) = account_page(&env, &session).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("ada@example.com"), "{html}");
    assert!(html.contains("this browser"), "{html}");
    assert!(html.contains("Authenticator app"), "{html}");
    assert!(
        html.contains("Backup codes left: <strong>10</strong>"),
        "{html}"
    );
    assert!(html.contains("Sign out everywhere else"), "{html}");
    let cookies = format!("{binding}; __Host-keygate_session={session}");
    let sessions_of_ada = || async {
        let (_, list) = env.get("/t/acme/me/sessions", &token).await;
        list["sessions"].as_array().map(Vec::len).unwrap_or(0)
    };
    let before = sessions_of_ada().await;
    assert!(before >= 3, "password, phone and browser sessions");

    // Without the form's CSRF token nothing happens.
    let (s, _, _) = account_post(&env, "/t/acme/account/end-other-sessions", &cookies, &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = account_post(
        &env,
        "/t/acme/account/end-other-sessions",
        &format!("__Host-keygate_session={session}"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a token without its binding cookie"
    );
    let (s, _) = env.get("/t/acme/me/sessions", &token).await;
    assert_eq!(s, StatusCode::OK, "the other sessions live on");

    // Removing the factor after the step-up window goes through the step-up page and back.
    env.clock.advance(Duration::minutes(6));
    let (_, mfa) = env.get("/t/acme/me/mfa", &token).await;
    let factor = mfa["factors"][0]["id"].as_str().unwrap().to_owned();
    let form = [("csrf", csrf.as_str()), ("factor", factor.as_str())];
    let (s, location, _) =
        account_post(&env, "/t/acme/account/remove-factor", &cookies, &form).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(location.starts_with("/t/acme/step-up?"), "{location}");
    assert!(location.contains("rd=http"), "comes back: {location}");
    step_up_in_browser(&env, &session, &secret, &location).await;
    let (s, location, _) =
        account_post(&env, "/t/acme/account/remove-factor", &cookies, &form).await;
    assert_eq!(
        (s, location.as_str()),
        (
            StatusCode::SEE_OTHER,
            format!("{}/t/acme/account", env.url).as_str()
        )
    );
    let (_, mfa) = env.get("/t/acme/me/mfa", &token).await;
    assert_eq!(mfa["factors"], json!([]), "{mfa}");

    // Ending the other sessions keeps this browser's.
    let (s, _, _) = account_post(
        &env,
        "/t/acme/account/end-other-sessions",
        &cookies,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _) = env.get("/t/acme/me/sessions", &token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the API token's session ended");
    let (s, _, _, html) = account_page(&env, &session).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains("Sign out everywhere else"), "{html}");
}

/// A browser sign-in of Ada with password and code: (body, session cookie).
async fn browser_session(env: &Env, secret: &str) -> (Value, String) {
    env.clock.advance(Duration::seconds(30));
    let r = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "browser_session": true}))
        .send()
        .await
        .unwrap();
    let challenge: Value = r.json().await.unwrap();
    let r = env
        .http
        .post(format!("{}/t/acme/login/mfa", env.url))
        .json(&json!({
            "mfa_token": challenge["mfa_token"],
            "code": code_at(secret, env.clock.now()),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let value = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("__Host-keygate_session=")
        .unwrap()
        .to_owned();
    (r.json().await.unwrap(), value)
}

/// Follows `location` (the step-up page) as the browser and proves a fresh code; the page
/// sends the browser back to the account page.
async fn step_up_in_browser(env: &Env, session: &str, secret: &str, location: &str) {
    let r = env
        .http
        .get(format!("{}{location}", env.url))
        .header("cookie", format!("__Host-keygate_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let binding = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    let field = |name: &str| {
        html.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .map(|v| {
                v.split('"')
                    .next()
                    .unwrap()
                    .replace("&#x2f;", "/")
                    .replace("&amp;", "&")
            })
            .unwrap_or_default()
    };
    let (csrf, rd) = (field("csrf"), field("rd"));
    env.clock.advance(Duration::seconds(30));
    let code = code_at(secret, env.clock.now());
    let r = env
        .http
        .post(format!("{}/t/acme/step-up", env.url))
        .header(
            "cookie",
            format!("{binding}; __Host-keygate_session={session}"),
        )
        .form_pairs(&[("csrf", &csrf), ("rd", &rd), ("code", &code)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let back = r.headers()["location"].to_str().unwrap();
    assert!(back.ends_with("/t/acme/account"), "{back}");
}
