//! A tenant that shares its session cookie with a parent domain (`sessions.cookieDomain`):
//! the gateway at `auth.example.test` sets `__Secure-keygate_session_{tenant}` with
//! `Domain=example.test`, forward-auth accepts it for any host under the domain without a
//! handoff, signing out clears it on the domain, and a tenant without the option keeps the
//! host-only `__Host-` cookie. Hosts outside the domain still go through the handoff.

use crate::support::env::{Env, PASSWORD, env_at};
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::json;

const GATEWAY: &str = "https://auth.example.test";
const SHARED: &str = "__Secure-keygate_session_acme";

/// The full `Set-Cookie` line for cookie `name`, if the response sets one.
fn set_cookie_line<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines
        .iter()
        .map(String::as_str)
        .find(|l| l.starts_with(&format!("{name}=")))
}

fn value_of(line: &str) -> String {
    line.split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap()
}

fn attributes(line: &str) -> Vec<String> {
    line.split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

/// A gateway served as `auth.example.test`, tenant `acme` sharing its cookie with
/// `example.test` and tenant `plain` without the option, `ada` in both.
async fn setup(pool: sqlx::PgPool) -> Env {
    let env = env_at(pool, GATEWAY).await;
    let origins = ["https://app-a.example.test", "https://other.example"];
    let acme = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({
                "sessions": { "cookieDomain": "example.test" },
                "redirects": { "allowedOrigins": origins },
            }),
        )
        .await;
    env.user(&acme.row, "ada@example.com").await;
    let plain = env
        .tenant(
            "plain",
            SigningAlgorithm::EdDSA,
            json!({ "redirects": { "allowedOrigins": origins } }),
        )
        .await;
    env.user(&plain.row, "ada@example.com").await;
    env
}

/// Signs in on `tenant`'s sign-in page; the `Set-Cookie` lines of the answer.
async fn sign_in(env: &Env, tenant: &str) -> Vec<String> {
    let (status, set, _) = env
        .page_post(
            &format!("/t/{tenant}/signin"),
            &[("email", "ada@example.com"), ("password", PASSWORD)],
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    set
}

/// The sign-in page of `acme` with return URL `rd`.
fn signin_for(env: &Env, rd: &str) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    format!("{}/t/acme/signin?{q}", env.url)
}

/// Forward-auth as Envoy asks it (which relays our redirects) for a browser on `url`: the
/// original path appended, the original `Host`.
async fn check(env: &Env, tenant: &str, url: &str, cookie: Option<&str>) -> reqwest::Response {
    let url = url::Url::parse(url).unwrap();
    let mut req = env
        .http
        .get(format!("{}/forward-auth{}", env.url, url.path()))
        .header("host", url.host_str().unwrap())
        .header("x-forwarded-proto", "https")
        .header("x-keygate-requirements", format!("tenant={tenant}"))
        .header("accept", "text/html");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_shared_domain_cookie_signs_in_every_host_under_it_and_sign_out_clears_it(
    pool: sqlx::PgPool,
) {
    let env = setup(pool).await;
    let set = sign_in(&env, "acme").await;
    let line = set_cookie_line(&set, SHARED).expect("the shared cookie is set");
    let attrs = attributes(line);
    for want in [
        "domain=example.test",
        "secure",
        "httponly",
        "samesite=lax",
        "path=/",
    ] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing: {line}");
    }
    assert!(
        set_cookie_line(&set, "__Host-keygate_session").is_none(),
        "no host-only session cookie besides the shared one: {set:?}"
    );
    let session = value_of(line);
    let cookie = format!("{SHARED}={session}");

    // Any host under the domain: the browser sends the cookie there, forward-auth takes it.
    for url in [
        "https://app-a.example.test/orders",
        "https://deep.app-b.example.test/",
    ] {
        let r = check(&env, "acme", url, Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert_eq!(r.headers()["x-auth-request-email"], "ada@example.com");
    }
    // The JSON API reads it as well.
    assert_eq!(
        env.http
            .get(format!("{}/t/acme/me/sessions", env.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // A signed-in browser sent to sign in for an app under the domain goes straight back,
    // without a handoff code.
    let rd = "https://app-a.example.test/orders";
    let r = env
        .http
        .get(signin_for(&env, rd))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], rd);

    // Signing out clears the cookie on the domain and ends the session for every host.
    let (status, set, _) = env
        .page_post("/t/acme/signout", &[], &[], Some(&cookie))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let removal = set_cookie_line(&set, SHARED).expect("the shared cookie is cleared");
    let attrs = attributes(removal);
    assert_eq!(value_of(removal), "");
    assert!(
        attrs.iter().any(|a| a == "domain=example.test") && attrs.iter().any(|a| a == "max-age=0"),
        "the removal must name the domain, or the browser keeps the cookie: {removal}"
    );
    for url in [
        "https://app-a.example.test/orders",
        "https://deep.app-b.example.test/",
    ] {
        assert_eq!(
            check(&env, "acme", url, Some(&cookie)).await.status(),
            StatusCode::FOUND,
            "{url} is refused after sign-out (a browser is sent to sign in)"
        );
    }
}

#[sqlx::test(migrations = false)]
async fn hosts_under_the_domain_skip_the_handoff_and_other_hosts_keep_it(pool: sqlx::PgPool) {
    let env = setup(pool).await;
    // Not signed in, under the domain: straight to the sign-in page (the cookie it sets
    // reaches the app), no handoff path needed on the app host.
    let r = check(&env, "acme", "https://app-a.example.test/orders", None).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"],
        format!("{GATEWAY}/t/acme/signin?rd=https%3A%2F%2Fapp-a.example.test%2Forders")
    );
    // Outside the domain: through the app host's handoff path, as before.
    let r = check(&env, "acme", "https://other.example/reports", None).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://other.example/.keygate/callback?tenant=acme&rd="),
        "{:?}",
        r.headers()["location"]
    );
    // A signed-in browser sent to sign in for a host outside the domain gets the handoff.
    let set = sign_in(&env, "acme").await;
    let cookie = format!(
        "{SHARED}={}",
        value_of(set_cookie_line(&set, SHARED).unwrap())
    );
    let r = env
        .http
        .get(signin_for(&env, "https://other.example/reports"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://other.example/.keygate/callback?"),
        "{:?}",
        r.headers()["location"]
    );
}

#[sqlx::test(migrations = false)]
async fn a_tenant_without_the_option_keeps_the_host_only_cookie(pool: sqlx::PgPool) {
    let env = setup(pool).await;
    let set = sign_in(&env, "plain").await;
    let line = set_cookie_line(&set, "__Host-keygate_session").expect("the host-only cookie");
    assert!(
        !attributes(line).iter().any(|a| a.starts_with("domain=")),
        "a __Host- cookie carries no Domain: {line}"
    );
    assert!(set_cookie_line(&set, "__Secure-keygate_session_plain").is_none());
    let cookie = format!("__Host-keygate_session={}", value_of(line));
    // The gateway's own host only: an app under the same parent domain goes through the
    // handoff, and the host cookie is nothing to the tenant that shares a domain cookie.
    let r = check(&env, "plain", "https://app-a.example.test/orders", None).await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://app-a.example.test/.keygate/callback?"),
        "{:?}",
        r.headers()["location"]
    );
    assert_eq!(
        check(&env, "plain", "https://auth.example.test/x", Some(&cookie))
            .await
            .status(),
        StatusCode::OK
    );

    // The JSON sign-in sets each tenant's cookie the same way.
    for (tenant, name, domain) in [
        ("acme", SHARED, Some("domain=example.test")),
        ("plain", "__Host-keygate_session", None),
    ] {
        let r = env
            .http
            .post(format!("{}/t/{tenant}/login", env.url))
            .json(
                &json!({"email": "ada@example.com", "password": PASSWORD, "browser_session": true}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let lines: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let line = set_cookie_line(&lines, name).unwrap_or_else(|| panic!("{tenant}: {lines:?}"));
        let attrs = attributes(line);
        assert!(attrs.iter().any(|a| a == "secure") && attrs.iter().any(|a| a == "httponly"));
        assert_eq!(
            attrs
                .iter()
                .find(|a| a.starts_with("domain="))
                .map(String::as_str),
            domain,
            "{line}"
        );
    }
}
