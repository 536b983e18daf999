//! The client address, by the gateway's one rule, in the JSON routes and the sign-in pages:
//! a client that is not a trusted proxy cannot choose it (so it cannot leave its rate-limit
//! bucket by rotating `X-Forwarded-For` or `X-Real-IP`), and behind a trusted proxy every
//! person gets their own bucket and their own address in the audit rows of every page flow.
//! (Forward-auth computes the address by the same function, `client_addr`; it uses it for
//! nothing a response shows, so its unit tests cover it.)

use crate::support::env::{Env, PASSWORD, env_behind_proxies, env_with_limits};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::{AuditEvent, AuditFilter, Tenant};
use keygate_gateway::identity::RateLimits;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The only proxy the gateway trusts in these tests: the test process itself.
const PROXY: &str = "127.0.0.1/32";

async fn audit(env: &Env, tenant: &Tenant) -> Vec<AuditEvent> {
    env.store
        .query_audit(tenant.id, &AuditFilter::default(), 1000)
        .await
        .unwrap()
}

/// A sign-in through the page, as a browser behind `headers`; the status tells how it went
/// (303 signed in, 401 wrong password, 429 rate-limited).
async fn page_sign_in(
    env: &Env,
    tenant: &str,
    email: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Vec<String>) {
    let (status, cookies, _) = env
        .page_post(
            &format!("/t/{tenant}/signin"),
            &[("email", email), ("password", password)],
            headers,
            None,
        )
        .await;
    (status, cookies)
}

#[sqlx::test(migrations = false)]
async fn an_untrusted_client_cannot_choose_its_address(pool: sqlx::PgPool) {
    // No trusted proxies: the socket peer (127.0.0.1) is the address, whatever is sent.
    let env = env_with_limits(
        pool,
        RateLimits {
            sign_in_per_ip: 3,
            ..RateLimits::default()
        },
    )
    .await;
    let spoofed = |i: u8| (format!("198.51.100.{i}"), format!("192.0.2.{i}"));

    // The JSON sign-in: three failures under three made-up addresses exhaust the one bucket.
    let api = env.tenant("api", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&api.row, "ivy@example.com").await;
    for i in 0..4u8 {
        let (xff, real) = spoofed(i);
        let password = if i < 3 { "wrong-password-x" } else { PASSWORD };
        let r = env
            .http
            .post(format!("{}/t/api/login", env.url))
            .header("x-forwarded-for", &xff)
            .header("x-real-ip", &real)
            .json(&json!({"email": "ivy@example.com", "password": password}))
            .send()
            .await
            .unwrap();
        let expected = if i < 3 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(r.status(), expected, "JSON attempt {i} as {xff}");
    }

    // The pages: the same, through the sign-in form.
    let pages = env
        .tenant("pages", SigningAlgorithm::EdDSA, json!({}))
        .await;
    env.user(&pages.row, "ivy@example.com").await;
    for i in 0..4u8 {
        let (xff, real) = spoofed(i + 10);
        let password = if i < 3 { "wrong-password-x" } else { PASSWORD };
        let headers = [("x-forwarded-for", xff.as_str()), ("x-real-ip", &real)];
        let (status, _) = page_sign_in(&env, "pages", "ivy@example.com", password, &headers).await;
        let expected = if i < 3 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, expected, "page attempt {i} as {xff}");
    }

    // The audit rows name the socket peer, never an address a header chose.
    for tenant in [&api.row, &pages.row] {
        let events = audit(&env, tenant).await;
        assert_eq!(
            events.iter().filter(|e| e.kind == "login.failed").count(),
            3,
            "{}",
            tenant.name
        );
        assert!(
            events.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1")),
            "{}: {:?}",
            tenant.name,
            events.iter().map(|e| &e.ip).collect::<Vec<_>>()
        );
    }
}

#[sqlx::test(migrations = false)]
async fn behind_a_trusted_proxy_two_people_get_two_buckets(pool: sqlx::PgPool) {
    let env = env_behind_proxies(
        pool,
        RateLimits {
            sign_in_per_ip: 3,
            resend_per_ip: 2,
            ..RateLimits::default()
        },
        &[PROXY],
    )
    .await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "amy@example.com").await;
    env.user(&t.row, "ben@example.com").await;
    let amy = [("x-forwarded-for", "203.0.113.1")];
    let ben = [("x-forwarded-for", "203.0.113.2")];

    // Amy exhausts her budget; her own correct password is then refused for a while.
    for attempt in 0..3 {
        let (status, _) = page_sign_in(&env, "acme", "amy@example.com", "wrong-x-1", &amy).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let (status, _) = page_sign_in(&env, "acme", "amy@example.com", PASSWORD, &amy).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Writing Ben's address in front of the proxy's entry does not move her into his bucket.
    let posing = [("x-forwarded-for", "203.0.113.2, 203.0.113.1")];
    let (status, _) = page_sign_in(&env, "acme", "amy@example.com", PASSWORD, &posing).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Ben, behind the same proxy, signs in at once.
    let (status, cookies) = page_sign_in(&env, "acme", "ben@example.com", PASSWORD, &ben).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-keygate_session=")),
        "{cookies:?}"
    );
    let events = audit(&env, &t.row).await;
    let ips = |kind: &str| -> Vec<Option<String>> {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.ip.clone())
            .collect()
    };
    assert_eq!(ips("login.failed"), vec![Some("203.0.113.1".to_owned()); 3]);
    assert_eq!(ips("login.succeeded"), vec![Some("203.0.113.2".to_owned())]);

    // Sign-up through the page has a per-address budget too, one per person.
    let sign_up = |email: &'static str, xff: &'static str| {
        let env = &env;
        async move {
            let (status, _, html) = env
                .page_post(
                    "/t/acme/signup",
                    &[("email", email), ("password", PASSWORD)],
                    &[("x-forwarded-for", xff)],
                    None,
                )
                .await;
            (status, html)
        }
    };
    for email in ["new1@example.com", "new2@example.com"] {
        let (status, html) = sign_up(email, "203.0.113.3").await;
        assert_eq!(status, StatusCode::OK, "{email}: {html}");
    }
    let (status, html) = sign_up("new3@example.com", "203.0.113.3").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{html}");
    let (status, html) = sign_up("new4@example.com", "203.0.113.4").await;
    assert_eq!(status, StatusCode::OK, "another person: {html}");
}

#[sqlx::test(migrations = false)]
async fn page_flows_record_the_client_address_and_request_id(pool: sqlx::PgPool) {
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
    let email = "new@example.com";
    // The client wrote the left entry; the proxy appended what it saw.
    let headers = [
        ("x-forwarded-for", "198.51.100.23, 203.0.113.7"),
        ("x-request-id", "page-walk"),
        ("user-agent", "PageWalker/1.0"),
    ];
    let ok = |what: &str, status: StatusCode, expected: StatusCode, html: &str| {
        assert_eq!(status, expected, "{what}: {html}");
    };

    let (s, _, html) = env
        .page_post(
            "/t/acme/signup",
            &[("email", email), ("password", PASSWORD)],
            &headers,
            None,
        )
        .await;
    ok("sign-up", s, StatusCode::OK, &html);
    let token = env.mailed_token(email, "confirm").await;
    let (s, _, html) = env
        .page_post("/t/acme/verify-email", &[("token", &token)], &headers, None)
        .await;
    ok("verify", s, StatusCode::OK, &html);

    let (s, cookies) = page_sign_in(&env, "acme", email, PASSWORD, &headers).await;
    ok("sign-in", s, StatusCode::SEE_OTHER, "");
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-keygate_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // The session records the address and the browser.
    let list: Value = env
        .http
        .get(format!("{}/t/acme/me/sessions", env.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let current = &list["sessions"][0];
    assert_eq!(
        (current["ip"].as_str(), current["user_agent"].as_str()),
        (Some("203.0.113.7"), Some("PageWalker/1.0")),
        "{list}"
    );
    let (s, _, html) = env
        .page_post("/t/acme/signout", &[], &headers, Some(&session))
        .await;
    ok("sign-out", s, StatusCode::SEE_OTHER, &html);

    let (s, _, html) = env
        .page_post(
            "/t/acme/forgot-password",
            &[("email", email)],
            &headers,
            None,
        )
        .await;
    ok("forgot", s, StatusCode::OK, &html);
    let token = env.mailed_token(email, "reset").await;
    let (s, _, html) = env
        .page_post(
            "/t/acme/reset-password",
            &[("token", &token), ("password", "saffron-glacier-orbit-77")],
            &headers,
            None,
        )
        .await;
    ok("reset", s, StatusCode::OK, &html);

    let events = audit(&env, &t.row).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "account.signed_up",
        "account.email_verified",
        "login.succeeded",
        "session.revoked",
        "password.reset_requested",
        "password.reset",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    for e in &events {
        assert_eq!(
            (e.ip.as_deref(), e.request_id.as_deref()),
            (Some("203.0.113.7"), Some("page-walk")),
            "{}",
            e.kind
        );
    }
}
