//! Mail: no link reaches a log (issue 14.4), an installation without SMTP refuses the flows
//! that hand out links, a real relay (aiosmtpd, STARTTLS and AUTH) receives templated text
//! and HTML mails, and one recipient gets at most its mail budget however often someone
//! signs up with its address (issue 14.6).

use crate::support::env::{Env, PASSWORD, env_behind_proxies, env_mailing_through};
use crate::support::logs::Captured;
use crate::support::real;
use crate::support::smtp::{SMTP_PASSWORD, SmtpSink};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::UserPatch;
use keygate_gateway::identity::{IdentityDeps, Mailer, RateLimits, SmtpMailer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// The mailer `keygate gateway` runs with when no SMTP is configured: the production
/// default of `IdentityDeps`.
fn production_default_mailer(pool: &sqlx::PgPool) -> Arc<dyn Mailer> {
    let store = Arc::new(keygate_core::store::PgStore::from_pool(pool.clone()));
    let master = keygate_core::crypto::envelope::MasterKeys::parse(
        &keygate_core::crypto::envelope::MasterKeys::generate_spec("k1").unwrap(),
    )
    .unwrap();
    let clock = Arc::new(keygate_core::clock::SystemClock);
    IdentityDeps::new(store, master, "http://127.0.0.1", clock)
        .unwrap()
        .mailer
}

/// Makes `email` an admin of `tenant` and returns an access token for it.
async fn admin_token(env: &Env, t: &keygate_core::store::Tenant, email: &str) -> String {
    let admin = env.user(t, email).await;
    env.store
        .update_user(
            t.id,
            admin,
            &UserPatch {
                groups: Some(vec!["keygate-admins".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (s, login) = env.login(&t.name, email, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    login["access_token"].as_str().unwrap().to_owned()
}

async fn post_bearer(env: &Env, path: &str, bearer: &str, body: Value) -> (StatusCode, Value) {
    let r = env
        .http
        .post(format!("{}{path}", env.url))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[sqlx::test]
async fn without_smtp_link_flows_answer_503_and_nothing_reaches_the_log(pool: sqlx::PgPool) {
    let logs = Captured::start();
    let mailer = production_default_mailer(&pool);
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let (env, _) = env_mailing_through(pool, limits, &[], Some(mailer)).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "ada@example.com").await;
    let refused = |s: StatusCode, body: &Value, what: &str| {
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("mail_unavailable")),
            "{what}: {body}"
        );
    };
    let (s, body) = env
        .post_json(
            "/t/acme/accounts/password-reset",
            json!({"email": "ada@example.com"}),
        )
        .await;
    refused(s, &body, "password reset");
    let (s, body) = env
        .post_json(
            "/t/acme/accounts/verify-email/resend",
            json!({"email": "ada@example.com"}),
        )
        .await;
    refused(s, &body, "verification resend");
    let (s, body) = env
        .post_json(
            "/t/acme/accounts/unlock",
            json!({"email": "ada@example.com"}),
        )
        .await;
    refused(s, &body, "unlock request");
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    refused(s, &body, "sign-up needing verification");
    assert!(
        env.store
            .user_by_email(t.row.id, "new@example.com")
            .await
            .unwrap()
            .is_none(),
        "no account that could never be verified"
    );
    let admin = admin_token(&env, &t.row, "boss@example.com").await;
    let (s, body) = post_bearer(
        &env,
        "/t/acme/invites",
        &admin,
        json!({"email": "guest@example.com"}),
    )
    .await;
    refused(s, &body, "invite");
    let (s, _, html) = env
        .page_post(
            "/t/acme/forgot-password",
            &[("email", "ada@example.com")],
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(html.contains("cannot send email"), "{html}");
    // A tenant that needs no mail keeps working.
    env.tenant(
        "open",
        SigningAlgorithm::EdDSA,
        json!({"signIn": {"registration": "open", "emailVerification": "off"}}),
    )
    .await;
    let (s, body) = env
        .post_json(
            "/t/open/accounts",
            json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(s.is_success(), "{s}: {body}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logged = logs.logs();
    for link in ["token=", "invite=", "reset-password?", "verify-email?"] {
        assert!(!logged.contains(link), "a link reached the log: {link}");
    }
}

/// Every secret a flow used, with what it was.
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(
            value.len() >= 8,
            "{what} is too short to search for: {value:?}"
        );
        self.0.push((what.to_owned(), value.to_owned()));
    }
}

/// The token after `marker` in a mail's text.
fn token_after(text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {text}"))
        + marker.len();
    text[start..].split_whitespace().next().unwrap().to_owned()
}

#[sqlx::test]
async fn every_flow_over_a_real_relay_leaves_no_secret_in_trace_logs(pool: sqlx::PgPool) {
    let relay = SmtpSink::start();
    let logs = Captured::start();
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
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({"branding": {"logoUrl": "https://acme.example/logo.png"}}),
        )
        .await;
    let mut secrets = Secrets(Vec::new());
    secrets.add("SMTP password", SMTP_PASSWORD);
    secrets.add("password", PASSWORD);

    // Sign-up and verification.
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(s.is_success(), "{s}: {body}");
    let mail = relay
        .wait_for("ada@example.com", "confirm your email address")
        .await;
    assert!(
        mail.tls && mail.authenticated,
        "STARTTLS and AUTH before the message"
    );
    let text = mail.text.clone().expect("a text part");
    let html = mail.html.clone().expect("an HTML part");
    assert!(text.contains("acme"), "{text}");
    assert!(
        html.contains("<img") && html.contains("logo.png"),
        "the tenant's logo: {html}"
    );
    let verify = token_after(&text, "token=");
    secrets.add("verification token", &verify);
    assert!(
        html.contains(&verify),
        "the HTML part carries the same link"
    );
    let (s, _) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": verify}))
        .await;
    assert!(s.is_success(), "{s}");

    // Sign-in, refresh, refresh reuse (a security mail), API use of the access token.
    let (s, login) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    secrets.add("access token", &access);
    secrets.add("refresh token", &refresh);
    let (s, refreshed) = env.refresh("acme", &refresh).await;
    assert_eq!(s, StatusCode::OK, "{refreshed}");
    secrets.add(
        "rotated access token",
        refreshed["access_token"].as_str().unwrap(),
    );
    secrets.add(
        "rotated refresh token",
        refreshed["refresh_token"].as_str().unwrap(),
    );
    let (s, _) = env.get("/t/acme/userinfo", &access).await;
    assert_eq!(s, StatusCode::OK);
    // The device token of that sign-in, presented again.
    let device = login["device_token"].as_str().unwrap().to_owned();
    secrets.add("device token", &device);
    let (s, _) = env
        .post_json(
            "/t/acme/login",
            json!({"email": "ada@example.com", "password": PASSWORD, "device_token": device}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Replayed outside the grace window, the old refresh token ends the session and mails.
    env.clock.advance(chrono::Duration::minutes(5));
    let (s, _) = env.refresh("acme", &refresh).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    relay.wait_for("ada@example.com", "session was ended").await;

    // A browser session: the cookie value, used.
    let (_, cookie) = env.browser_login("acme", "ada@example.com").await;
    secrets.add("session cookie", &cookie);
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);

    // An API key at forward-auth.
    let (_, api_key) = real::api_key(&env.store, &t.row, "ci", &[]).await;
    secrets.add("API key", &api_key);
    let r = env
        .http
        .get(format!("{}/forward-auth?tenant=acme", env.url))
        .header("x-api-key", &api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Forgot and reset, through the pages.
    let (s, _, _) = env
        .page_post(
            "/t/acme/forgot-password",
            &[("email", "ada@example.com")],
            &[],
            None,
        )
        .await;
    assert!(s.is_success(), "{s}");
    let mail = relay
        .wait_for("ada@example.com", "reset your password")
        .await;
    let reset = token_after(mail.text.as_deref().unwrap(), "token=");
    secrets.add("reset token", &reset);
    let new_password = "cobalt-harbour-lantern-77";
    secrets.add("new password", new_password);
    let (s, _, html) = env
        .page_post(
            "/t/acme/reset-password",
            &[("token", &reset), ("password", new_password)],
            &[],
            None,
        )
        .await;
    assert!(s.is_success(), "{s}: {html}");
    let (s, _) = env.login("acme", "ada@example.com", new_password).await;
    assert_eq!(s, StatusCode::OK);

    // An emailed unlock link, redeemed by an API client.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/unlock",
            json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let mail = relay
        .wait_for("ada@example.com", "unlock your account")
        .await;
    let unlock = token_after(mail.text.as_deref().unwrap(), "token=");
    secrets.add("unlock token", &unlock);
    let (s, body) = env
        .post_json("/t/acme/accounts/unlock/confirm", json!({"token": unlock}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    secrets.add(
        "unlock device token",
        body["device_token"].as_str().unwrap(),
    );

    // An invite, spent.
    let admin = admin_token(&env, &t.row, "boss@example.com").await;
    secrets.add("admin access token", &admin);
    let (s, body) = post_bearer(
        &env,
        "/t/acme/invites",
        &admin,
        json!({"email": "guest@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let mail = relay.wait_for("guest@example.com", "you are invited").await;
    let invite = token_after(mail.text.as_deref().unwrap(), "invite=");
    secrets.add("invite token", &invite);
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "guest@example.com", "password": PASSWORD, "invite": invite}),
        )
        .await;
    assert!(s.is_success(), "{s}: {body}");

    // What an attacker sends is as secret as what the owner sends (a guessed password is
    // often someone's real one, a forged token carries a real prefix), and failures are
    // where a value would be logged "to help debugging".
    let guess = "a-guess-that-is-someone-elses-password";
    secrets.add("guessed password", guess);
    let (s, _) = env.login("acme", "ada@example.com", guess).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env.login("acme", "nobody@example.com", guess).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (prefix, _) = api_key.rsplit_once('_').unwrap();
    let forged_key = format!("{prefix}_forgedSecretThatIsNotTheKeysOwn0123456789");
    secrets.add("forged API key", &forged_key);
    // One signature character changed (in the middle: the last one carries padding bits).
    let at = access.rfind('.').unwrap() + 10;
    let swap = if &access[at..=at] == "A" { "B" } else { "A" };
    let forged_jwt = format!("{}{swap}{}", &access[..at], &access[at + 1..]);
    secrets.add("tampered access token", &forged_jwt);
    for (header, value) in [
        ("x-api-key", forged_key.clone()),
        ("authorization", format!("Bearer {forged_jwt}")),
    ] {
        let r = env
            .http
            .get(format!("{}/forward-auth?tenant=acme", env.url))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{header}");
    }
    let swap = if refresh.starts_with('A') { "B" } else { "A" };
    let forged_refresh = format!("{swap}{}", &refresh[1..]);
    secrets.add("forged refresh token", &forged_refresh);
    let (s, _) = env.refresh("acme", &forged_refresh).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logged = logs.logs();
    assert!(
        logged.contains("TRACE") || logged.contains("DEBUG"),
        "the capture sees low levels"
    );
    for (what, value) in &secrets.0 {
        assert!(
            !logged.contains(value.as_str()),
            "the {what} reached the log"
        );
    }
}

#[sqlx::test]
async fn one_address_gets_at_most_its_mail_budget_however_often_it_is_signed_up(
    pool: sqlx::PgPool,
) {
    const PROXY: &str = "127.0.0.1/32";
    let env = env_behind_proxies(
        pool,
        RateLimits {
            sign_in_per_ip: 1000,
            ..RateLimits::default()
        },
        &[PROXY],
    )
    .await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "victim@example.com").await;
    // Fifteen page sign-ups for the victim's address from fifteen clients (so no per-client
    // limit is what stops them).
    for i in 1..=15u8 {
        let client = format!("198.51.100.{i}");
        let (s, _, html) = env
            .page_post(
                "/t/acme/signup",
                &[("email", "victim@example.com"), ("password", PASSWORD)],
                &[("x-forwarded-for", client.as_str())],
                None,
            )
            .await;
        assert!(s.is_success(), "sign-up {i}: {s}: {html}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let notices = env
        .mailer
        .sent()
        .into_iter()
        .filter(|m| m.to == "victim@example.com")
        .count();
    let budget = RateLimits::default().emails_per_address as usize;
    assert!(
        (1..=budget).contains(&notices),
        "{notices} mails to one address, budget {budget}"
    );
}

#[tokio::test]
async fn a_relay_whose_certificate_is_not_trusted_gets_no_mail_and_no_password() {
    let relay = SmtpSink::start();
    let email = keygate_gateway::identity::Email {
        to: "ada@example.com".into(),
        subject: "s".into(),
        body: "secret link".into(),
        html: "<p>secret link</p>".into(),
    };
    // Web PKI roots only: the relay's private CA is not among them, as for a man in the middle.
    let untrusting = SmtpMailer::new(&relay.url(), "no-reply@acme.example").unwrap();
    assert!(untrusting.send(email.clone()).await.is_err());
    let trusting = SmtpMailer::with_root_certificate(
        &relay.url(),
        "no-reply@acme.example",
        Some(&relay.ca_pem),
    )
    .unwrap();
    trusting.send(email).await.unwrap();
    let got = relay.wait_for("ada@example.com", "s").await;
    assert!(got.tls && got.authenticated);
    assert_eq!(
        relay.received().len(),
        1,
        "only the trusting mailer's message arrived"
    );
}
