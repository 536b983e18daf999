//! A Tenant's `network.allow` / `network.deny` lists, over HTTP: sign-in (JSON and page),
//! refresh and forward-auth admit a client by the gateway's one address rule (`client_addr`):
//! the TCP peer, or behind a trusted proxy the right-most untrusted `X-Forwarded-For` hop.
//! Deny wins over allow; an empty allow list allows everyone not denied.
//!
//! Without a proxy, a second client connects from `127.0.0.2` (every `127/8` address is
//! loopback), so the peer itself differs between two clients of one gateway.

use crate::support::RequestExt;
use crate::support::env::{Env, PASSWORD, env, env_behind_proxies};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_gateway::identity::RateLimits;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The only proxy the gateway trusts in the proxied test: the test process itself.
const PROXY: &str = "127.0.0.1/32";

/// A client whose connections come from `ip` (a loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse().unwrap()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn answer(r: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut r = r;
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn login(
    env: &Env,
    http: &reqwest::Client,
    tenant: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let body = json!({"email": "amy@example.com", "password": PASSWORD});
    let r = http
        .post(format!("{}/t/{tenant}/login", env.url))
        .json(&body);
    answer(r, headers).await
}

async fn refresh(
    env: &Env,
    http: &reqwest::Client,
    tenant: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", "keygate"),
    ];
    let r = http
        .post(format!("{}/t/{tenant}/oauth2/token", env.url))
        .form_pairs(&form);
    answer(r, headers).await
}

async fn forward_auth(
    env: &Env,
    http: &reqwest::Client,
    tenant: &str,
    bearer: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = http
        .get(format!("{}/forward-auth?tenant={tenant}", env.url))
        .header("x-original-url", "https://app.example.com/orders")
        .bearer_auth(bearer);
    answer(r, headers).await
}

fn token<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

#[sqlx::test(migrations = false)]
async fn the_peer_is_admitted_by_the_tenants_network_lists(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let here = &env.http; // connects from 127.0.0.1
    let there = client_from("127.0.0.2");
    // `lan` allows only 127.0.0.1; `wide` allows 127/8 but denies 127.0.0.2 (deny wins);
    // `open` has no lists.
    for (name, network) in [
        ("lan", json!({ "allow": ["127.0.0.1/32"] })),
        (
            "wide",
            json!({ "allow": ["127.0.0.0/8"], "deny": ["127.0.0.2/32"] }),
        ),
        ("open", json!({})),
    ] {
        let t = env
            .tenant(name, SigningAlgorithm::EdDSA, json!({ "network": network }))
            .await;
        env.user(&t.row, "amy@example.com").await;
    }

    for tenant in ["lan", "wide"] {
        // Allowed: sign in, refresh, pass forward-auth, read the API.
        let (status, tokens) = login(&env, here, tenant, &[]).await;
        assert_eq!(status, StatusCode::OK, "{tenant}: {tokens}");
        let access = token(&tokens, "access_token").to_owned();
        let (status, _) = forward_auth(&env, here, tenant, &access, &[]).await;
        assert_eq!(status, StatusCode::OK, "{tenant}");

        // Denied: the other peer, whatever X-Forwarded-For it writes (it is no proxy).
        let lie = [("x-forwarded-for", "127.0.0.1")];
        let (status, body) = login(&env, &there, tenant, &lie).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{tenant}: {body}");
        assert_eq!(body["code"], "network_denied");
        let (status, body) = forward_auth(&env, &there, tenant, &access, &lie).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{tenant}: {body}");
        assert_eq!(body["code"], "network_denied");
        let (status, body) = answer(
            there
                .get(format!("{}/t/{tenant}/userinfo", env.url))
                .bearer_auth(&access),
            &[],
        )
        .await;
        assert_eq!(
            (status, &body["code"]),
            (StatusCode::FORBIDDEN, &json!("network_denied")),
            "{tenant}"
        );

        // A refresh from there is refused in OAuth's format and spends nothing: the same
        // token still works from here.
        let rt = token(&tokens, "refresh_token");
        let (status, body) = refresh(&env, &there, tenant, rt, &lie).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{tenant}: {body}");
        assert_eq!(body["error"], "access_denied");
        let (status, body) = refresh(&env, here, tenant, rt, &[]).await;
        assert_eq!(status, StatusCode::OK, "{tenant}: {body}");
    }

    // No lists: everyone is admitted.
    let (status, tokens) = login(&env, &there, "open", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = forward_auth(&env, &there, "open", token(&tokens, "access_token"), &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrations = false)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_what_counts(pool: sqlx::PgPool) {
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let env = env_behind_proxies(pool, limits, &[PROXY]).await;
    let network = json!({ "allow": ["203.0.113.0/24"], "deny": ["203.0.113.66/32"] });
    let t = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({ "network": network }),
        )
        .await;
    env.user(&t.row, "amy@example.com").await;
    let http = &env.http;
    let allowed = [("x-forwarded-for", "203.0.113.5")];

    // The JSON sign-in.
    let (status, tokens) = login(&env, http, "acme", &allowed).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    for (xff, why) in [
        ("203.0.113.66", "denied even though inside allow"),
        ("198.51.100.1", "outside allow"),
        // The right-most hop is the client the proxy saw; what is left of it the client wrote.
        ("203.0.113.5, 198.51.100.1", "right-most untrusted hop"),
    ] {
        let (status, body) = login(&env, http, "acme", &[("x-forwarded-for", xff)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}: {body}");
        assert_eq!(body["code"], "network_denied", "{why}");
    }
    let posing = [("x-forwarded-for", "198.51.100.1, 203.0.113.5")];
    assert_eq!(login(&env, http, "acme", &posing).await.0, StatusCode::OK);
    // Without the header the peer (the proxy itself, 127.0.0.1) is the client: outside allow.
    assert_eq!(
        login(&env, http, "acme", &[]).await.0,
        StatusCode::FORBIDDEN
    );

    // The page sign-in.
    let form = [("email", "amy@example.com"), ("password", PASSWORD)];
    let (status, _, _) = env.page_post("/t/acme/signin", &form, &allowed, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let outside = [("x-forwarded-for", "198.51.100.1")];
    let (status, cookies, html) = env.page_post("/t/acme/signin", &form, &outside, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        html.contains("does not allow sign-in from your network"),
        "{html}"
    );
    assert!(
        !cookies
            .iter()
            .any(|c| c.starts_with("__Host-keygate_session=")),
        "{cookies:?}"
    );

    // Refresh: refused from outside (token unspent), then granted from inside.
    let rt = token(&tokens, "refresh_token");
    let (status, body) = refresh(&env, http, "acme", rt, &outside).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("access_denied"))
    );
    let (status, body) = refresh(&env, http, "acme", rt, &allowed).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Forward-auth, with the address ingress-nginx forwards.
    let access = token(&body, "access_token");
    assert_eq!(
        forward_auth(&env, http, "acme", access, &allowed).await.0,
        StatusCode::OK
    );
    let denied = [("x-forwarded-for", "203.0.113.66")];
    let (status, body) = forward_auth(&env, http, "acme", access, &denied).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "network_denied");
}
