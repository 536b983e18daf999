//! The edge with the real things: forward-auth over HTTP as ingress-nginx (a real nginx with
//! `auth_request`, configured as ingress-nginx renders `auth-url` / `auth-signin` /
//! `auth-response-headers`), Traefik, Envoy and the Gateway API `ExternalAuth` filter call
//! it (with a real nginx as NGINX Gateway Fabric renders the filter: `edge/gateway_api.rs`); revocation seen by a second gateway
//! through Redis; the sign-in pages in headless Chromium; bad input that must stay 4xx.
//!
//! Needs on the machine: `nginx` and `chromium` (Debian), Redis on 127.0.0.1:6379 (or
//! `KEYGATE_TEST_REDIS_URL`), and `npm ci` done in `gateway/tests/browser`. The credential
//! resolver is a test stand-in (`support/identities.rs`) until the identity service is wired.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

#[path = "edge/gateway_api.rs"]
mod gateway_api;

use keygate_gateway::cookies::CookieMode;
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::nginx::Nginx;
use support::{Options, RequestExt, ada, client, free_port, grace, real, start};

fn fa(gw: &support::Gateway, query: &str) -> String {
    format!("{}/forward-auth?tenant={}{query}", gw.url, gw.tenant.name)
}

// ---------------------------------------------------------------------------------------
// Envoy and Traefik conventions, exactly the headers and paths they send.

#[tokio::test]
async fn envoy_ext_authz_appends_the_path_and_sends_requirements_in_a_header() {
    let gw = start(Options::default()).await;
    let http = client();
    let token = gw.ids.token(&ada(), "sid-envoy", 300, &["pwd"]);
    let requirements = format!("tenant={}&role=reader", gw.tenant.name);
    // Envoy: path_prefix /forward-auth + original path and query, original Host and method.
    let ok = http
        .put(format!("{}/forward-auth/orders/1?x=2", gw.url))
        .header("host", "app.example.com")
        .header("x-forwarded-proto", "https")
        .header("x-keygate-requirements", &requirements)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-auth-request-user"], "ada@example.com");
    assert_eq!(ok.headers()["x-auth-request-groups"], "reader");
    assert_eq!(ok.headers()["x-keygate-subject"], "user-ada");
    assert_eq!(ok.headers()["x-keygate-tenant"], gw.tenant.name.as_str());
    // Counted in this gateway's own registry, which `/metrics` serves (other gateways in
    // this test process count in theirs).
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "keygate_forward_auth_decisions_total{outcome=\"allow\",proxy=\"envoy\"} 1\n"
        ),
        "{metrics}"
    );

    // A browser without credentials: Envoy relays our 302. The app is on another host than
    // the gateway, so the browser goes through the app host's handoff path (which sets the
    // nonce cookie there) on its way to sign in.
    let browser = http
        .get(format!("{}/forward-auth/orders/1?x=2", gw.url))
        .header("host", "app.example.com")
        .header("x-forwarded-proto", "https")
        .header("x-keygate-requirements", &requirements)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::FOUND);
    assert_eq!(
        browser.headers()["location"].to_str().unwrap(),
        format!(
            "https://app.example.com/.keygate/callback?tenant={}&rd=https%3A%2F%2Fapp.example.com%2Forders%2F1%3Fx%3D2",
            gw.tenant.name
        )
    );
    // An API client gets 401 with a challenge.
    let api = http
        .get(format!("{}/forward-auth/", gw.url))
        .header("host", "app.example.com")
        .header("x-keygate-requirements", &requirements)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert!(
        api.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=")
    );
    // Envoy relays a denial's problem+json body to the client: it must not be sniffed.
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    // Envoy not told the requirements: a misconfiguration, denied with 403, never let through.
    let misconfigured = http
        .get(format!("{}/forward-auth/orders", gw.url))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(misconfigured.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        misconfigured.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn distinct_bad_requirements_cannot_flood_the_log() {
    // Any in-cluster caller can send endless distinct bad auth URLs; each used to be a new
    // ERROR line. Ten a minute are written, the rest counted.
    let gw = start(Options::default()).await;
    let http = client();
    for i in 0..200 {
        let denied = http
            .get(format!("{}/forward-auth?tenant=no-such-tenant-{i}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN, "request {i}");
    }
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keygate_forward_auth_misconfiguration_logs_suppressed_total 190\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "keygate_forward_auth_decisions_total{outcome=\"misconfigured\",proxy=\"direct\"} 200\n"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn traefik_forward_headers_count_only_from_trusted_proxies() {
    let trusted = start(Options {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Options::default()
    })
    .await;
    let http = client();
    let traefik = |gw: &support::Gateway, query: &str| {
        // Traefik's ForwardAuth sends a GET with the original request in X-Forwarded-*.
        http.get(fa(gw, query))
            .header("x-forwarded-method", "DELETE")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-uri", "/orders/7?confirm=1")
            .header("x-forwarded-for", "203.0.113.7")
    };
    let token = trusted.ids.token(&ada(), "sid-traefik", 300, &["pwd"]);
    let r = traefik(&trusted, "&method=GET,HEAD")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "DELETE is not among the allowed methods"
    );
    let r = traefik(&trusted, "&method=GET,DELETE")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = traefik(&trusted, "")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("rd=https%3A%2F%2Fapp.example.com%2Forders%2F7%3Fconfirm%3D1")
    );

    // The same headers from a peer that is not trusted are ignored: the method is unknown,
    // so a method rule fails closed, and no return URL is taken from them.
    let untrusted = start(Options::default()).await;
    let token = untrusted.ids.token(&ada(), "sid-traefik2", 300, &["pwd"]);
    let r = traefik(&untrusted, "&method=GET,DELETE")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = traefik(&untrusted, "")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(!r.headers()["location"].to_str().unwrap().contains("rd="));
}

#[tokio::test]
async fn step_up_is_an_rfc9470_challenge() {
    let gw = start(Options::default()).await;
    let token = gw.ids.token(&ada(), "sid-mfa", 300, &["pwd"]);
    let r = client()
        .get(fa(&gw, "&mfa=1&max_age=300"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("acr_values=\"urn:keygate:acr:mfa\"")
            && challenge.contains("max_age=300"),
        "{challenge}"
    );
    let with_otp = gw.ids.token(&ada(), "sid-mfa2", 300, &["pwd", "otp"]);
    let r = client()
        .get(fa(&gw, "&mfa=1&max_age=300"))
        .bearer_auth(&with_otp)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Roles missing: signing in again would not help, so no challenge.
    let r = client()
        .get(fa(&gw, "&role=admin"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("www-authenticate").is_none());
    // jwt=1: a short-lived token for the upstream, addressed to the host the proxy names.
    let upstream = |token: &str| {
        client()
            .get(fa(&gw, "&jwt=1"))
            .header("x-original-url", "https://app.example.com/orders")
            .bearer_auth(token)
    };
    let r = upstream(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let upstream_jwt = |r: &reqwest::Response| {
        r.headers()
            .get("x-keygate-jwt")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let first = upstream_jwt(&r).unwrap();
    assert_eq!(first.split('.').count(), 3);
    // Signed once per credential and reused for a while, not minted on every check.
    let again = upstream(&token).send().await.unwrap();
    assert_eq!(upstream_jwt(&again).as_deref(), Some(first.as_str()));
    // Another host's route gets a token of its own (its own audience), never this one.
    let elsewhere = client()
        .get(fa(&gw, "&jwt=1"))
        .header("x-original-url", "https://other.example.com/")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_ne!(upstream_jwt(&elsewhere).unwrap(), first);
    let other = gw.ids.token(&grace(), "sid-mfa-other", 300, &["pwd"]);
    let r = upstream(&other).send().await.unwrap();
    let theirs = upstream_jwt(&r).unwrap();
    assert_ne!(theirs, first, "each credential gets its own upstream token");
    // Revoked: refused, and the token minted for it is never handed out again.
    gw.ephemeral
        .revoke("sid-mfa", Duration::from_secs(600))
        .await
        .unwrap();
    let r = upstream(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(upstream_jwt(&r), None);
}

// ---------------------------------------------------------------------------------------
// Bad input: always 4xx, never a 5xx.

#[tokio::test]
async fn bad_input_is_refused_and_never_a_5xx() {
    let gw = start(Options::default()).await;
    let other = start(Options::default()).await;
    let http = client();
    let (_, other_key) = other.ids.api_key("ci", &["reader"]);
    let (_, own_key) = gw.ids.api_key("ci", &["reader"]);
    let token = gw.ids.token(&ada(), "sid-bad", 300, &["pwd"]);
    let huge = "a".repeat(12_000);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "garbage X-Original-URL",
            http.get(fa(&gw, ""))
                .header("x-original-url", ":: not a url at all")
                .header("accept", "text/html"),
        ),
        (
            "repeated Authorization",
            http.get(fa(&gw, ""))
                .header("authorization", format!("Bearer {token}"))
                .header("authorization", format!("Bearer {own_key}")),
        ),
        ("oversized bearer", http.get(fa(&gw, "")).bearer_auth(&huge)),
        (
            "forged cookie",
            http.get(fa(&gw, ""))
                .header("cookie", "__Host-keygate_session=forged; other=1"),
        ),
        (
            "repeated session cookie",
            http.get(fa(&gw, "")).header(
                "cookie",
                "__Host-keygate_session=a; __Host-keygate_session=b",
            ),
        ),
        (
            "another tenant's API key",
            http.get(fa(&gw, "")).header("x-api-key", &other_key),
        ),
        (
            "API key of another tenant in Bearer",
            http.get(fa(&gw, "")).bearer_auth(&other_key),
        ),
        (
            "tampered JWT",
            http.get(fa(&gw, "")).bearer_auth(format!("{token}x")),
        ),
        (
            "basic auth",
            http.get(fa(&gw, "")).basic_auth("a", Some("b")),
        ),
        (
            "unknown requirement",
            http.get(fa(&gw, "&rolez=admin")).bearer_auth(&token),
        ),
        (
            "unknown tenant",
            http.get(format!("{}/forward-auth?tenant=nope", gw.url))
                .bearer_auth(&token),
        ),
        (
            "bad max_age",
            http.get(fa(&gw, "&max_age=-1")).bearer_auth(&token),
        ),
        (
            "non-UTF-8 header",
            http.get(fa(&gw, "")).header(
                "x-original-url",
                reqwest::header::HeaderValue::from_bytes(b"http://a/\xff").unwrap(),
            ),
        ),
    ];
    for (what, request) in cases {
        let r = request.send().await.unwrap();
        assert!(r.status().is_client_error(), "{what}: got {}", r.status());
    }
    // A request header block past the server's limit: refused by the HTTP layer with a 4xx.
    let r = http
        .get(fa(&gw, ""))
        .header("x-filler", "b".repeat(200_000))
        .send()
        .await;
    if let Ok(r) = r {
        assert!(
            r.status().is_client_error(),
            "huge header block: {}",
            r.status()
        );
    }
    // The own key still works, and its use is recorded in a batch, not per request.
    let r = http
        .get(fa(&gw, ""))
        .header("x-api-key", &own_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Open-redirect attempts on the sign-in page are dropped, never rendered as a target.
    for rd in [
        "https://evil.example.com/",
        "//evil.example.com/",
        "javascript:alert(1)",
        "/\\evil.example.com",
        "https://app.example.com@evil.example.com/",
    ] {
        let page = http
            .get(format!("{}/t/{}/signin", gw.url, gw.tenant.name))
            .query_pairs(&[("rd", rd)])
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(
            !html.contains("evil") && !html.contains("javascript"),
            "{rd} leaked into the page"
        );
    }
    let page = http
        .get(format!("{}/t/{}/signin", gw.url, gw.tenant.name))
        .query_pairs(&[("rd", "https://app.example.com/orders")])
        .send()
        .await
        .unwrap();
    // minijinja's HTML escaping writes `/` as `&#x2f;`; browsers read it back.
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("name=\"rd\" value=\"https:&#x2f;&#x2f;app.example.com&#x2f;orders\"")
    );
}

#[tokio::test]
async fn pages_carry_security_headers_csrf_and_accessible_errors() {
    let gw = start(Options::default()).await;
    let http = client();
    let page = http
        .get(format!("{}/t/{}/signin", gw.url, gw.tenant.name))
        .send()
        .await
        .unwrap();
    let h = page.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline")
            && csp.contains("default-src 'none'")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csrf_cookie = h["set-cookie"].to_str().unwrap();
    assert!(
        csrf_cookie.starts_with("__Host-keygate_csrf=")
            && csrf_cookie.contains("Secure")
            && csrf_cookie.contains("HttpOnly")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"email\">") && html.contains("<label for=\"password\">"));
    assert!(html.contains("Acme Corp") && !html.contains("<script") && !html.contains("style="));
    let css = http
        .get(format!("{}/t/{}/theme.css", gw.url, gw.tenant.name))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(css.contains("--kg-primary: #8a2be2"));

    // Every page renders (with a return URL where it takes one) and is labelled.
    for path in [
        "signup?rd=https%3A%2F%2Fapp.example.com%2F",
        "login",
        "forgot-password",
        "reset-password?token=abc",
        "verify-email?token=abc",
        "signout?rd=https%3A%2F%2Fapp.example.com%2F",
    ] {
        let r = http
            .get(format!("{}/t/{}/{path}", gw.url, gw.tenant.name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("<h1 id=\"page-title\">") && html.contains("lang=\"en\""),
            "{path}"
        );
    }
    // The second step and step-up need a pending sign-in or a session: sign in first.
    for path in ["mfa", "step-up"] {
        let r = http
            .get(format!("{}/t/{}/{path}", gw.url, gw.tenant.name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(
            to.ends_with(&format!("/t/{}/signin", gw.tenant.name)),
            "{to}"
        );
    }
    let r = http
        .get(format!("{}/t/nope/signin", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(format!("{}/assets/keygate.css", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");

    // A POST without a valid CSRF token is refused and nothing happens.
    let r = http
        .post(format!("{}/t/{}/signin", gw.url, gw.tenant.name))
        .form_pairs(&[
            ("email", "ada@example.com"),
            ("password", "correct horse battery"),
            ("csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("__Host-keygate_session"))
    );

    // With the token and its binding cookie, a wrong password shows an error tied to the field.
    let csrf_value = csrf_cookie.split(';').next().unwrap().to_owned();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{}/t/{}/signin", gw.url, gw.tenant.name))
        .header("cookie", &csrf_value)
        .form_pairs(&[
            ("email", "ada@example.com"),
            ("password", "wrong"),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("aria-describedby=\"password-error\"")
            && html.contains("id=\"password-error\""),
        "{html}"
    );
    assert!(html.contains("role=\"alert\""));
    // The token serves only the browser it was rendered for: with another binding cookie
    // (an attacker's page posting a token fetched for their own browser) it is refused.
    let (cookie_name, _) = csrf_value.split_once('=').unwrap();
    let r = http
        .post(format!("{}/t/{}/signin", gw.url, gw.tenant.name))
        .header(
            "cookie",
            format!("{cookie_name}=BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"),
        )
        .form_pairs(&[
            ("email", "ada@example.com"),
            ("password", "correct horse battery"),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------------------------
// Revocation reaches every replica through Redis.

#[tokio::test]
async fn a_revoked_session_is_refused_by_a_second_gateway_sharing_redis() {
    let prefix = format!("kg-edge-{}:", uuid::Uuid::now_v7().simple());
    let a = start(Options {
        redis_prefix: Some(prefix.clone()),
        real_identity: true,
        ..Options::default()
    })
    .await;
    let b = start(Options {
        redis_prefix: Some(prefix),
        replica_of: Some(a.replica()),
        real_identity: true,
        ..Options::default()
    })
    .await;
    let http = client();
    let (token, sid) = real::sign_in(a.real(), &a.tenant, &ada(), false).await;
    for gw in [&a, &b] {
        let r = http
            .get(fa(gw, ""))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "both replicas accept (and cache) the token"
        );
    }
    // Sign-out on replica A revokes the session; B has the token cached and must still refuse.
    a.ephemeral
        .revoke(&sid.to_string(), Duration::from_secs(600))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = http
            .get(fa(&b, ""))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica B still accepts a revoked session: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = http
        .get(fa(&a, ""))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "replica A refuses at once"
    );
}

// ---------------------------------------------------------------------------------------
// A real nginx, configured as ingress-nginx renders auth-url / auth-signin / auth-response-headers.

/// The auth location ingress-nginx renders for `auth-url: {url}` (abridged to what matters).
fn auth_location(name: &str, gateway_host: &str, url: &str) -> String {
    format!(
        r#"
    location = {name} {{
      internal;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto "";
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header Host {gateway_host};
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
      proxy_buffering off;
      proxy_http_version 1.1;
      set $target {url};
      proxy_pass $target;
    }}"#
    )
}

/// A protected location: `auth_request`, `auth-response-headers` copied, 401 → sign-in.
fn protected_location(path: &str, auth: &str, upstream: u16) -> String {
    let mut copy = String::new();
    for (i, h) in [
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Email-Verified",
        "X-Auth-Request-Groups",
        "X-Keygate-Tenant",
        "X-Keygate-Subject",
    ]
    .iter()
    .enumerate()
    {
        let var = h.to_ascii_lowercase().replace('-', "_");
        copy.push_str(&format!("      auth_request_set $authHeader{i} $upstream_http_{var};\n      proxy_set_header '{h}' $authHeader{i};\n"));
    }
    format!(
        r#"
    location {path} {{
      set $proxy_upstream_name "demo-whoami-80";
      auth_request {auth};
      auth_request_set $auth_cookie $upstream_http_set_cookie;
{copy}      error_page 401 = @signin;
      proxy_pass http://127.0.0.1:{upstream};
    }}"#
    )
}

fn start_nginx(port: u16, gateway_port: u16, tenant: &str, upstream: u16) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let gw = format!("127.0.0.1:{gateway_port}");
    let conf = format!(
        r#"{user}
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
{auth}
{auth_admin}
    location @signin {{
      internal;
      add_header Set-Cookie $auth_cookie;
      return 302 http://{gw}/t/{tenant}/signin?rd=$scheme://$http_host$request_uri;
    }}
{app}
{admin}
  }}
}}
"#,
        user = support::nginx::user_directive(),
        auth = auth_location(
            "/_external-auth-app",
            &gw,
            &format!("http://{gw}/forward-auth?tenant={tenant}&role=reader")
        ),
        auth_admin = auth_location(
            "/_external-auth-admin",
            &gw,
            &format!("http://{gw}/forward-auth?tenant={tenant}&role=admin")
        ),
        app = protected_location("/", "/_external-auth-app", upstream),
        admin = protected_location("/admin", "/_external-auth-admin", upstream),
    );
    support::nginx::run(dir, &conf, port)
}

/// The app behind nginx: echoes the identity headers it received as JSON.
async fn start_upstream() -> (u16, tokio::task::JoinHandle<()>) {
    use axum::http::HeaderMap;
    async fn echo(headers: HeaderMap) -> axum::Json<serde_json::Value> {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        axum::Json(serde_json::json!({
            "user": h("x-auth-request-user"),
            "email": h("x-auth-request-email"),
            "groups": h("x-auth-request-groups"),
            "tenant": h("x-keygate-tenant"),
            "subject": h("x-keygate-subject"),
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(echo);
    (
        port,
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
    )
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn nginx_auth_request_as_ingress_nginx_renders_it() {
    let (upstream, _up) = start_upstream().await;
    let gw = start(Options {
        real_identity: true,
        ..Options::default()
    })
    .await;
    let nginx = start_nginx(free_port(), port_of(&gw.url), &gw.tenant.name, upstream);
    let app = format!("http://127.0.0.1:{}", nginx.port);
    let http = client();

    // No credentials: nginx sends the browser to the sign-in page with rd.
    let r = http
        .get(format!("{app}/orders?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!(
            "{}/t/{}/signin?rd=http://127.0.0.1:{}/orders?x=1",
            gw.url, gw.tenant.name, nginx.port
        )
    );

    // A valid JWT from the identity service: the upstream is reached with our identity
    // headers (client-sent copies replaced).
    let (token, token_sid) = real::sign_in(gw.real(), &gw.tenant, &ada(), false).await;
    let r = http
        .get(format!("{app}/orders"))
        .bearer_auth(&token)
        .header("x-auth-request-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["user"], "ada@example.com");
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["groups"], "reader");
    assert!(!body["subject"].as_str().unwrap().is_empty());
    assert_eq!(body["tenant"], gw.tenant.name.as_str());

    // An API key stored as the operator stores it, as X-API-Key and as Bearer.
    let (key_id, key) = real::api_key(&gw.store, &gw.tenant, "ci-bot", &["reader"]).await;
    for req in [
        http.get(format!("{app}/orders")).header("x-api-key", &key),
        http.get(format!("{app}/orders")).bearer_auth(&key),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["user"], "ci-bot");
        assert_eq!(body["groups"], "reader");
    }

    // The session cookie of a browser sign-in.
    let (_, _, cookie) = real::sign_in_browser(gw.real(), &gw.tenant, &ada()).await;
    let with_cookie = || {
        http.get(format!("{app}/orders"))
            .header("cookie", format!("__Host-keygate_session={cookie}"))
    };
    let r = with_cookie().send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["user"],
        "ada@example.com"
    );

    // Insufficient role: 403 straight from nginx; an admin passes.
    let r = http
        .get(format!("{app}/admin"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (admin, _) = real::sign_in(gw.real(), &gw.tenant, &grace(), false).await;
    let r = http
        .get(format!("{app}/admin"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Revoked: refused on the very next request, although each was cached.
    let live = gw.real().tenant(&gw.tenant.name).await.unwrap();
    keygate_gateway::identity::AccountFlows::sign_out(
        gw.real(),
        &live,
        &cookie,
        &Default::default(),
    )
    .await
    .unwrap();
    gw.ephemeral
        .revoke(&token_sid.to_string(), Duration::from_secs(600))
        .await
        .unwrap();
    gw.ephemeral
        .revoke(&key_id.to_string(), Duration::from_secs(600))
        .await
        .unwrap();
    for (what, req) in [
        ("jwt", http.get(format!("{app}/orders")).bearer_auth(&token)),
        (
            "api key",
            http.get(format!("{app}/orders")).header("x-api-key", &key),
        ),
        ("cookie", with_cookie()),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::FOUND,
            "revoked {what} must be sent to sign in"
        );
    }
    // API-key use was recorded for the batch writer, not written per request.
    assert!(gw.state.identity.flush_api_key_usage().await <= 1);
}

// ---------------------------------------------------------------------------------------
// A real browser: headless Chromium through nginx to the sign-in page and back.

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_nginx_and_signs_out() {
    let chromium = std::env::var("KEYGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is not installed: apt-get install -y chromium (.ci/run installs it)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in gateway/tests/browser (.ci/run does)"
    );
    let (upstream, _up) = start_upstream().await;
    let nginx_port = free_port();
    let gw = start(Options {
        allowed_origins: vec![format!("http://127.0.0.1:{nginx_port}")],
        cookie_mode: CookieMode::PlainHttpDev,
        real_identity: true,
        ..Options::default()
    })
    .await;
    // nginx listens on the port the tenant's allow-list names.
    let nginx = start_nginx(nginx_port, port_of(&gw.url), &gw.tenant.name, upstream);
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let protected = format!("http://127.0.0.1:{}/orders", nginx.port);
    let signout = format!("{}/t/{}/signout?rd={}", gw.url, gw.tenant.name, protected);
    let who = ada();
    let script = browser_dir().join("signin-flow.mjs");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(&script)
            .env("KG_PROTECTED_URL", &protected)
            .env("KG_SIGNOUT_URL", &signout)
            .env("KG_EMAIL", &who.email)
            .env("KG_PASSWORD", &who.password)
            .env("KG_SCREENSHOTS", &screenshots)
            .env("KG_CHROMIUM", &chromium)
            .current_dir(browser_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser run finished within 90 s")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser flow failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("BROWSER FLOW OK"), "{stdout}\n{stderr}");
    assert!(screenshots.join("signin.png").exists());
}

// ---------------------------------------------------------------------------------------
// Separate hosts: nginx with TLS (a CA the test makes, trusted by the browser), the gateway
// at auth.test, apps at app-a.test and other.example, Chromium resolving all to 127.0.0.1.

/// Runs `handoff-flow.mjs` against the gateway `gw` behind TLS nginx on `port`; with
/// `cookie_domain`, in cookie-domain mode (no handoff may happen).
async fn run_handoff_flow(
    pki: &support::tls::Pki,
    gw: &support::Gateway,
    port: u16,
    hosts: &[&str],
    (app_a, app_b): (&str, &str),
    cookie_domain: Option<&str>,
) {
    let chromium = std::env::var("KEYGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let rules: Vec<String> = hosts.iter().map(|h| format!("MAP {h} 127.0.0.1")).collect();
    let who = ada();
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(browser_dir().join("handoff-flow.mjs"))
            .env("KG_APP_A_URL", app_a)
            .env("KG_APP_B_URL", app_b)
            .env("KG_GATEWAY_HOST", hosts[0])
            .env(
                "KG_ACCOUNT_URL",
                format!("https://{}:{port}/t/{}/account", hosts[0], gw.tenant.name),
            )
            .env("KG_EMAIL", &who.email)
            .env("KG_PASSWORD", &who.password)
            .env("KG_RESOLVER_RULES", rules.join(", "))
            .env("KG_HOME", &pki.home)
            .env("KG_SCREENSHOTS", &screenshots)
            .env("KG_CHROMIUM", &chromium)
            .env("KG_COOKIE_DOMAIN", cookie_domain.unwrap_or_default())
            .env(
                "KG_SHOT_PREFIX",
                if cookie_domain.is_some() {
                    "cookie-domain"
                } else {
                    "handoff"
                },
            )
            .current_dir(browser_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser run finished within 90 s")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser flow failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("HANDOFF FLOW OK"), "{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sign_in_reaches_apps_on_other_hosts_and_one_sign_out_ends_them_all() {
    let hosts = ["auth.test", "app-a.test", "other.example"];
    let pki = support::tls::Pki::new(&hosts);
    let (upstream, _up) = start_upstream().await;
    let port = free_port();
    let app_a = format!("https://app-a.test:{port}/orders");
    let app_b = format!("https://other.example:{port}/reports");
    let gw = start(Options {
        allowed_origins: vec![
            format!("https://app-a.test:{port}"),
            format!("https://other.example:{port}"),
        ],
        public_url: Some(format!("https://auth.test:{port}")),
        real_identity: true,
        ..Options::default()
    })
    .await;
    let _nginx = support::tls::start_nginx(
        &pki,
        port,
        &support::tls::Sites {
            gateway_host: hosts[0],
            app_hosts: &hosts[1..],
            gateway_port: port_of(&gw.url),
            upstream_port: upstream,
            tenant: &gw.tenant.name,
            shared_cookie: false,
        },
    );
    run_handoff_flow(&pki, &gw, port, &hosts, (&app_a, &app_b), None).await;
}

/// Cookie-domain mode: the tenant shares its session cookie with `example.test`, the gateway
/// at `auth.example.test`, two apps under the domain. nginx routes no handoff path to the
/// gateway (a handoff attempt would fail) and sends `auth-signin` straight to the sign-in
/// page: one sign-in reaches both apps, one sign-out clears the shared cookie and both are
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sign_in_reaches_apps_under_a_shared_cookie_domain_without_a_handoff() {
    let hosts = [
        "auth.example.test",
        "app-a.example.test",
        "app-b.example.test",
    ];
    let pki = support::tls::Pki::new(&hosts);
    let (upstream, _up) = start_upstream().await;
    let port = free_port();
    let app_a = format!("https://app-a.example.test:{port}/orders");
    let app_b = format!("https://app-b.example.test:{port}/reports");
    let gw = start(Options {
        allowed_origins: vec![
            format!("https://app-a.example.test:{port}"),
            format!("https://app-b.example.test:{port}"),
        ],
        public_url: Some(format!("https://auth.example.test:{port}")),
        cookie_domain: Some("example.test".into()),
        real_identity: true,
        ..Options::default()
    })
    .await;
    let _nginx = support::tls::start_nginx(
        &pki,
        port,
        &support::tls::Sites {
            gateway_host: hosts[0],
            app_hosts: &hosts[1..],
            gateway_port: port_of(&gw.url),
            upstream_port: upstream,
            tenant: &gw.tenant.name,
            shared_cookie: true,
        },
    );
    run_handoff_flow(
        &pki,
        &gw,
        port,
        &hosts,
        (&app_a, &app_b),
        Some("example.test"),
    )
    .await;
}
