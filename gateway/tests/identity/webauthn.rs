//! Security keys and passkeys over HTTP, driven by `webauthn-authenticator-rs`' software
//! authenticator (an implementation apart from keygate's `webauthn-rs` relying party):
//! registration, a key as the second factor of a sign-in (phishing-resistant level),
//! replayed and cloned assertions and another origin refused, passkey-only sign-in where
//! the tenant allows it and refused where it does not, a forward-auth `mfa=1` route
//! admitting the person after a passkey step-up, and renaming and removing a key; and
//! headless Chromium's virtual authenticator through the same API.

use crate::support::env::{Env, PASSWORD, env_at, verify_issued_at};
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

/// The gateway's public URL: the relying party is `auth.test`.
const PUBLIC: &str = "https://auth.test";
const APP: &str = "https://app.test";
const ACR_PHR: &str = "urn:keygate:acr:phr";

/// A software authenticator that verifies its user.
fn new_key() -> SoftToken {
    SoftToken::new(true).unwrap().0
}

fn origin(url: &str) -> Url {
    Url::parse(url).unwrap()
}

async fn post(env: &Env, path: &str, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut r = env.http.post(format!("{}{path}", env.url)).json(&body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A gateway at [`PUBLIC`] with tenant `acme` (`mfa` as its MFA settings) and Ada in it.
async fn tenant(pool: sqlx::PgPool, mfa: Value) -> Env {
    let env = env_at(pool, PUBLIC).await;
    let spec = json!({ "redirects": { "allowedOrigins": [APP] }, "mfa": mfa });
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, spec).await;
    env.user(&t.row, "ada@example.com").await;
    env
}

async fn password_token(env: &Env) -> String {
    let (s, body) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A registered key: its credential id and the user handle it was made for (base64url).
struct Registered {
    factor_id: String,
    credential_id: String,
    user_handle: String,
}

/// Registers `key` for Ada with `token`.
async fn register(env: &Env, token: &str, key: &mut SoftToken) -> (Registered, Value) {
    let (s, begun) = post(
        env,
        "/t/acme/me/mfa/webauthn",
        Some(token),
        json!({"label": "Blue key"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{begun}");
    let options = begun["options"].clone();
    assert_eq!(options["publicKey"]["rp"]["id"], "auth.test");
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let user_handle = options["publicKey"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ccr: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let credential = key.do_registration(origin(PUBLIC), ccr).unwrap();
    let credential_id = credential.id.clone();
    let (s, done) = post(
        env,
        "/t/acme/me/mfa/webauthn/finish",
        Some(token),
        json!({"ceremony_id": begun["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["factor"]["kind"], "webauthn");
    (
        Registered {
            factor_id: done["factor"]["id"].as_str().unwrap().to_owned(),
            credential_id,
            user_handle,
        },
        done,
    )
}

/// The authenticator's answer to `options` as the browser would send it.
fn assert_with(key: &mut SoftToken, at: &str, options: &Value) -> Value {
    let rcr: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
    serde_json::to_value(key.do_authentication(origin(at), rcr).unwrap()).unwrap()
}

/// A sign-in held at its second factor: its `mfa_token`.
async fn challenge(env: &Env) -> String {
    let (s, body) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("mfa_required")),
        "{body}"
    );
    assert_eq!(body["methods"], json!(["webauthn", "backup_code"]));
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn key_options(env: &Env, mfa_token: &str) -> Value {
    let (s, o) = post(
        env,
        "/t/acme/login/mfa/webauthn/options",
        None,
        json!({ "mfa_token": mfa_token }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    o["options"].clone()
}

async fn answer(env: &Env, mfa_token: &str, credential: &Value) -> (StatusCode, Value) {
    post(
        env,
        "/t/acme/login/mfa/webauthn",
        None,
        json!({ "mfa_token": mfa_token, "credential": credential }),
    )
    .await
}

fn amr(claims: &Value) -> Vec<String> {
    serde_json::from_value(claims["amr"].clone()).unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_security_key_signs_in_as_a_phishing_resistant_second_factor(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({})).await;
    let token = password_token(&env).await;
    let mut key = new_key();
    let (reg, done) = register(&env, &token, &mut key).await;
    // The account's first factor comes with its backup codes.
    assert_eq!(done["backup_codes"].as_array().map(Vec::len), Some(10));
    // A copy of the key as it is now: a clone made before the key is used.
    let clone_bytes = key.to_cbor().unwrap();

    let (_, status) = env.get("/t/acme/me/mfa", &token).await;
    assert_eq!(status["enabled"], true);
    assert_eq!(status["factors"][0]["kind"], "webauthn");
    assert_eq!(status["factors"][0]["label"], "Blue key");

    // The password alone no longer signs in; the key completes the sign-in.
    let mfa_token = challenge(&env).await;
    let options = key_options(&env, &mfa_token).await;
    assert_eq!(
        options["publicKey"]["allowCredentials"][0]["id"],
        reg.credential_id
    );
    let assertion = assert_with(&mut key, PUBLIC, &options);
    let (s, signed_in) = answer(&env, &mfa_token, &assertion).await;
    assert_eq!(s, StatusCode::OK, "{signed_in}");
    let claims = verify_issued_at(
        &env.url,
        PUBLIC,
        "acme",
        signed_in["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(claims["acr"], ACR_PHR);
    let methods = amr(&claims);
    for m in ["pwd", "hwk", "user", "mfa"] {
        assert!(methods.contains(&m.to_owned()), "{methods:?}");
    }

    // The same assertion again: the sign-in is spent, and a new one has another challenge.
    let (s, again) = answer(&env, &mfa_token, &assertion).await;
    assert_eq!(
        (s, again["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token"))
    );
    let fresh = challenge(&env).await;
    let _ = key_options(&env, &fresh).await;
    let (s, replay) = answer(&env, &fresh, &assertion).await;
    assert_eq!(
        (s, replay["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_webauthn_response")),
        "a replayed assertion"
    );
    // Each options call is good for one answer: the refused one spent it.
    let (s, spent) = answer(&env, &fresh, &assertion).await;
    assert_eq!(
        (s, spent["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_ceremony"))
    );

    // Another origin under the relying party's domain (a look-alike subdomain) is refused.
    let options = key_options(&env, &fresh).await;
    let elsewhere = assert_with(&mut key, "https://login.auth.test", &options);
    let (s, refused) = answer(&env, &fresh, &elsewhere).await;
    assert_eq!(
        (s, refused["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_webauthn_response")),
        "another origin"
    );

    // A clone of the key answers with a signature counter that did not advance: refused.
    let mut clone = SoftToken::from_cbor(&clone_bytes).unwrap();
    let options = key_options(&env, &fresh).await;
    let cloned = assert_with(&mut clone, PUBLIC, &options);
    let (s, refused) = answer(&env, &fresh, &cloned).await;
    assert_eq!(
        (s, refused["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_webauthn_response")),
        "a cloned key"
    );
    // The key itself still signs in (the challenge stayed open through the refusals).
    let options = key_options(&env, &fresh).await;
    let (s, body) = answer(&env, &fresh, &assert_with(&mut key, PUBLIC, &options)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let fresh_token = body["access_token"].as_str().unwrap();

    // Rename, then remove: a fresh step-up is needed, and the sign-in just now is one.
    let path = format!("/t/acme/me/mfa/factors/{}", reg.factor_id);
    let r = env
        .http
        .patch(format!("{}{path}", env.url))
        .bearer_auth(&token)
        .json(&json!({"label": "Office key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, status) = env.get("/t/acme/me/mfa", &token).await;
    assert_eq!(status["factors"][0]["label"], "Office key");
    assert!(status["factors"][0]["last_used_at"].is_string(), "{status}");
    let delete = |bearer: String| {
        env.http
            .delete(format!("{}{path}", env.url))
            .bearer_auth(bearer)
            .send()
    };
    let r = delete(token.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "password-only session");
    let r = delete(fresh_token.to_owned()).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "no factor left: the password alone signs in"
    );
    let kinds = env
        .audit_kinds(&env.store.tenant_by_name("acme").await.unwrap().unwrap())
        .await;
    for k in ["mfa.enrolled", "mfa.failed", "mfa.removed"] {
        assert!(kinds.contains(&k.to_owned()), "{kinds:?}");
    }
}

/// The browser's answer to a passkey-only sign-in. The software authenticator keeps no
/// discoverable credentials, so the test plays the part of the platform that does: it
/// names the credential it holds for the site and returns the user handle stored with it.
fn discoverable_answer(key: &mut SoftToken, reg: &Registered, options: &Value) -> Value {
    let mut options = options.clone();
    assert_eq!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .map_or(0, Vec::len),
        0,
        "passkey sign-in names no credential"
    );
    options["publicKey"]["allowCredentials"] =
        json!([{ "type": "public-key", "id": reg.credential_id }]);
    let mut credential = assert_with(key, PUBLIC, &options);
    credential["response"]["userHandle"] = json!(reg.user_handle);
    credential
}

#[sqlx::test(migrations = false)]
async fn a_passkey_signs_in_alone_only_where_the_tenant_allows_it(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({ "passkeySignIn": true })).await;
    let plain = env
        .tenant(
            "plain",
            SigningAlgorithm::EdDSA,
            json!({ "redirects": { "allowedOrigins": [APP] } }),
        )
        .await;
    env.user(&plain.row, "bob@example.com").await;
    let token = password_token(&env).await;
    let mut key = new_key();
    let (reg, _) = register(&env, &token, &mut key).await;

    let (s, begun) = post(&env, "/t/acme/login/passkey/options", None, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{begun}");
    let credential = discoverable_answer(&mut key, &reg, &begun["options"]);
    let (s, done) = post(
        &env,
        "/t/acme/login/passkey",
        None,
        json!({"ceremony_id": begun["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let claims = verify_issued_at(
        &env.url,
        PUBLIC,
        "acme",
        done["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(claims["acr"], ACR_PHR);
    let methods = amr(&claims);
    assert!(!methods.contains(&"pwd".to_owned()), "{methods:?}");
    for m in ["user", "hwk", "mfa"] {
        assert!(methods.contains(&m.to_owned()), "{methods:?}");
    }
    // The ceremony is single use.
    let (s, again) = post(
        &env,
        "/t/acme/login/passkey",
        None,
        json!({"ceremony_id": begun["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_eq!(
        (s, again["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_ceremony"))
    );
    // A user handle naming someone else does not match the credential.
    let (_, begun) = post(&env, "/t/acme/login/passkey/options", None, json!({})).await;
    let mut forged = discoverable_answer(&mut key, &reg, &begun["options"]);
    forged["response"]["userHandle"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
    let (s, refused) = post(
        &env,
        "/t/acme/login/passkey",
        None,
        json!({"ceremony_id": begun["ceremony_id"], "credential": forged}),
    )
    .await;
    assert_eq!(
        (s, refused["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_webauthn_response"))
    );

    // A tenant that does not allow it refuses both halves.
    let (s, body) = post(&env, "/t/plain/login/passkey/options", None, json!({})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("passkey_sign_in_disabled"))
    );
    let (s, body) = post(
        &env,
        "/t/plain/login/passkey",
        None,
        json!({"ceremony_id": "x", "credential": credential}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("passkey_sign_in_disabled"))
    );
}

#[sqlx::test(migrations = false)]
async fn without_passkey_sign_in_a_passkey_is_only_a_second_factor(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({ "policy": "optional" })).await;
    let token = password_token(&env).await;
    let mut key = new_key();
    register(&env, &token, &mut key).await;
    let (s, body) = post(&env, "/t/acme/login/passkey/options", None, json!({})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("passkey_sign_in_disabled"))
    );
}

/// Forward-auth as Envoy asks it for a browser's request to `{APP}/admin` with `mfa=1`.
async fn admin_check(env: &Env, cookie: &str) -> StatusCode {
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
        .status()
}

#[sqlx::test(migrations = false)]
async fn a_route_with_mfa_admits_the_person_after_a_passkey_step_up(pool: sqlx::PgPool) {
    let env = tenant(pool, json!({})).await;
    let (login, cookie) = env.browser_login("acme", "ada@example.com").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let mut key = new_key();
    register(&env, &token, &mut key).await;
    assert_eq!(admin_check(&env, &cookie).await, StatusCode::FOUND);

    let (s, begun) = post(
        &env,
        "/t/acme/me/step-up/webauthn/options",
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{begun}");
    // Another origin first: refused, and the session stays where it was.
    let elsewhere = assert_with(&mut key, "https://login.auth.test", &begun["options"]);
    let (s, _) = post(
        &env,
        "/t/acme/me/step-up/webauthn",
        Some(&token),
        json!({ "credential": elsewhere }),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(admin_check(&env, &cookie).await, StatusCode::FOUND);

    let (_, begun) = post(
        &env,
        "/t/acme/me/step-up/webauthn/options",
        Some(&token),
        json!({}),
    )
    .await;
    let credential = assert_with(&mut key, PUBLIC, &begun["options"]);
    let (s, stepped) = post(
        &env,
        "/t/acme/me/step-up/webauthn",
        Some(&token),
        json!({ "credential": credential }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stepped}");
    assert_eq!(stepped["acr"], ACR_PHR);
    assert_eq!(admin_check(&env, &cookie).await, StatusCode::OK);
}

/// Chromium's virtual authenticator registers a discoverable passkey through the API and
/// signs in with it alone (`gateway/tests/browser/passkey-flow.mjs`; needs Debian
/// `chromium` and `npm ci` in `gateway/tests/browser`).
#[sqlx::test(migrations = false)]
async fn chromium_registers_a_passkey_and_signs_in_with_it_alone(pool: sqlx::PgPool) {
    let env = env_at(pool, "http://localhost:{port}").await;
    let spec = json!({ "mfa": { "passkeySignIn": true } });
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, spec).await;
    env.user(&t.row, "ada@example.com").await;
    let port = env.url.rsplit(':').next().unwrap().to_owned();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(dir.join("passkey-flow.mjs"))
            .env("KG_GATEWAY_URL", format!("http://localhost:{port}"))
            .env("KG_TENANT", "acme")
            .env("KG_EMAIL", "ada@example.com")
            .env("KG_PASSWORD", PASSWORD)
            .current_dir(&dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser run finished within 90 s")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("PASSKEY FLOW OK"),
        "browser flow failed:\n{stdout}\n{stderr}"
    );
}
