//! Issue 14.3: the JWT forward-auth hands an app behind `jwt=1` is for that app alone. It is
//! typed `keygate-upstream+jwt` and addressed to the protected host, so replayed against
//! keygate's API, userinfo, introspection or forward-auth for another host it is refused;
//! it names the real session in `sid`, and a sign-out stops every token of the session at once.

use crate::support::env::{Env, PASSWORD, env, verify_independently};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const APP_A: &str = "https://app-a.example.com/orders?id=7";
const APP_B: &str = "https://app-b.example.com/";

/// `/forward-auth` of tenant acme as ingress-nginx calls it for the original URL `original`
/// (none: a direct call), with `query` appended and a bearer token or session cookie.
async fn check(
    env: &Env,
    query: &str,
    original: Option<&str>,
    bearer: Option<&str>,
    cookie: Option<&str>,
) -> (StatusCode, HeaderMap) {
    let mut req = env
        .http
        .get(format!("{}/forward-auth?tenant=acme{query}", env.url));
    if let Some(url) = original {
        req = req.header("x-original-url", url);
    }
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(value) = cookie {
        req = req.header("cookie", format!("__Host-keygate_session={value}"));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.headers().clone())
}

fn upstream_jwt(h: &HeaderMap) -> Option<String> {
    h.get("x-keygate-jwt")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Verifies an upstream token as an app would with any JWT library: the tenant's JWKS over
/// HTTP, `typ`, issuer, the app's own host as audience, expiry.
async fn verify_as_app(env: &Env, token: &str, audience: &str) -> Result<Value, String> {
    let issuer = format!("{}/t/acme", env.url);
    let jwks: JwkSet = reqwest::get(format!("{issuer}/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("keygate-upstream+jwt") {
        return Err(format!("typ {:?}", header.typ));
    }
    let jwk = jwks
        .find(header.kid.as_deref().ok_or("no kid")?)
        .ok_or("kid not published")?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

#[sqlx::test(migrations = false)]
async fn a_replayed_upstream_token_is_refused_by_keygate_and_by_other_hosts(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "root@acme.example").await;
    env.role(
        &t.row,
        "ops",
        &["keygate:admin", "orders.read", "billing.admin"],
        "root@acme.example",
    )
    .await;
    let dan = env.user(&t.row, "dan@acme.example").await;
    let (s, login) = env.login("acme", "root@acme.example", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let admin = login["access_token"].as_str().unwrap().to_owned();
    let access = verify_independently(&env.url, "acme", &admin).await;

    // App A, behind `jwt=1&perm=orders.read`, receives a token.
    let (s, h) = check(
        &env,
        "&jwt=1&perm=orders.read",
        Some(APP_A),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let token = upstream_jwt(&h).unwrap();

    // The app verifies it independently: its own host is the audience, the type is not an
    // access token's, the session is the real one, and only what the route asked is listed.
    let claims = verify_as_app(&env, &token, "app-a.example.com")
        .await
        .unwrap();
    assert_eq!(claims["aud"], "app-a.example.com");
    assert_eq!(claims["sub"], access["sub"]);
    assert_eq!(claims["sid"], access["sid"], "the session, not a token id");
    assert_ne!(claims["sid"], access["jti"]);
    assert_eq!(claims["email"], "root@acme.example");
    assert_eq!(claims["roles"], json!(["ops"]));
    assert_eq!(claims["permissions"], json!(["orders.read"]));
    assert!(claims.get("scope").is_none() && claims.get("client_id").is_none());
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(life > 0 && life <= 60, "lives at most 60 s: {life}");
    // Another app, or anyone treating it as an access token of the tenant, rejects it.
    assert!(
        verify_as_app(&env, &token, "app-b.example.com")
            .await
            .is_err()
    );
    assert!(
        verify_as_app(&env, &token, &format!("{}/t/acme", env.url))
            .await
            .is_err()
    );

    // Replayed against keygate's own API: every bearer check refuses it.
    let (s, _) = env.get("/t/acme/userinfo", &token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "userinfo");
    let (s, _) = env
        .form(&format!("/t/acme/users/{dan}/suspend"), &[], Some(&token))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "an admin route");
    let (s, _) = env.login("acme", "dan@acme.example", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "dan was not suspended");
    let (s, _) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", &token)],
            Some(&token),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "introspection as the caller");
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", &token)],
            Some(&admin),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "not an active access token: {i}"
    );
    let (s, _) = env.form("/t/acme/logout", &[], Some(&token)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "sign-out");
    // … and forward-auth, for another host or its own, takes it for no credential at all.
    for original in [APP_B, APP_A] {
        let (s, h) = check(&env, "", Some(original), Some(&token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{original}");
        let challenge = h["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }

    // App B's route hands out a token of its own audience, never app A's.
    let (s, h) = check(&env, "&jwt=1", Some(APP_B), Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let theirs = upstream_jwt(&h).unwrap();
    assert_ne!(theirs, token);
    let claims = verify_as_app(&env, &theirs, "app-b.example.com")
        .await
        .unwrap();
    assert!(
        claims.get("permissions").is_none(),
        "none were asked: {claims}"
    );
    // Without a host to address it to, no token is minted: a misconfigured route.
    let (s, h) = check(&env, "&jwt=1", None, Some(&admin), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(upstream_jwt(&h), None);
}

#[sqlx::test(migrations = false)]
async fn signing_out_ends_every_upstream_token_of_the_session(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "ada@acme.example").await;
    let (login, cookie) = env.browser_login("acme", "ada@acme.example").await;
    let access_token = login["access_token"].as_str().unwrap().to_owned();
    let sid = verify_independently(&env.url, "acme", &access_token).await["sid"].clone();
    assert!(sid.is_string());

    // One session, two credentials (the bearer token and the browser cookie): each upstream
    // token names the session.
    let (s, h) = check(&env, "&jwt=1", Some(APP_A), Some(&access_token), None).await;
    assert_eq!(s, StatusCode::OK);
    let by_token = upstream_jwt(&h).unwrap();
    let (s, h) = check(&env, "&jwt=1", Some(APP_A), None, Some(&cookie)).await;
    assert_eq!(s, StatusCode::OK);
    let by_cookie = upstream_jwt(&h).unwrap();
    for token in [&by_token, &by_cookie] {
        let claims = verify_as_app(&env, token, "app-a.example.com")
            .await
            .unwrap();
        assert_eq!(claims["sid"], sid);
    }
    // Handed out again while the session lives (signed once per half-minute, not per request).
    let (_, h) = check(&env, "&jwt=1", Some(APP_A), Some(&access_token), None).await;
    assert_eq!(upstream_jwt(&h).as_deref(), Some(by_token.as_str()));

    let (s, _) = env.form("/t/acme/logout", &[], Some(&access_token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // The next check refuses both credentials and hands out no token minted before.
    for (what, bearer, cookie) in [
        ("token", Some(access_token.as_str()), None),
        ("cookie", None, Some(cookie.as_str())),
    ] {
        let (s, h) = check(&env, "&jwt=1", Some(APP_A), bearer, cookie).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(upstream_jwt(&h), None, "{what}");
    }
    // A token an app kept is no credential after the sign-out either.
    for token in [&by_token, &by_cookie] {
        let (s, h) = check(&env, "&jwt=1", Some(APP_A), Some(token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(upstream_jwt(&h), None);
        let (s, _) = env.get("/t/acme/userinfo", token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
}
