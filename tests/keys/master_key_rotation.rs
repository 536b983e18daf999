//! Master-key rotation as docs/operations.md tells an operator to do it, on PostgreSQL with
//! the operator's Tenant reconcile and the gateway's identity service over HTTP: prepend a
//! new master key, restart both, wait for the Tenants to say their keys are sealed under
//! it, remove the old key, restart again, and tokens are still issued and verify — the RS256
//! key an ES256 tenant keeps for ID tokens included.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use keygate_core::clock::{Clock, SystemClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, PasswordHasher};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::{PgStore, Store};
use keygate_gateway::identity::{IdentityDeps, IdentityService};
use sqlx::PgPool;
use std::sync::Arc;

const PUBLIC_URL: &str = "https://auth.example.com";
const TENANT: &str = "apiVersion: keygate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: demo\n  namespace: default\nspec:\n  displayName: Demo\n";
const EMAIL: &str = "root@example.com";

/// A store on the test's fresh database.
async fn store(pool: PgPool) -> Arc<dyn Store> {
    let store = PgStore::from_pool(pool);
    store.migrate().await.unwrap();
    Arc::new(store)
}

/// One operator pass over the demo Tenant with `master` (an operator (re)started with that
/// `KEYGATE_MASTER_KEYS`); returns its Ready condition's status, reason and message.
async fn operator_pass(store: &Arc<dyn Store>, master: &str) -> (String, String, String) {
    operator_pass_on(store, master, TENANT).await
}

/// [`operator_pass`] over the Tenant `manifest` declares.
async fn operator_pass_on(
    store: &Arc<dyn Store>,
    master: &str,
    manifest: &str,
) -> (String, String, String) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ctx = keygate_operator::Context::new(
        store.clone(),
        MasterKeys::parse(master).unwrap(),
        PUBLIC_URL,
        clock,
    );
    let keygate_crds::Resource::Tenant(tenant) =
        keygate_crds::load_manifests(manifest).unwrap().remove(0)
    else {
        panic!("not a Tenant");
    };
    let status = keygate_operator::tenant::reconcile(&ctx, &tenant, "uid-demo")
        .await
        .unwrap();
    let ready = status
        .conditions
        .first()
        .expect("a Ready condition")
        .clone();
    (ready.status, ready.reason, ready.message)
}

/// A gateway (re)started with `master`, serving on a free port until the test ends;
/// returns its base URL.
async fn gateway(store: &Arc<dyn Store>, master: &str) -> String {
    let mut deps = IdentityDeps::new(
        store.clone(),
        MasterKeys::parse(master).unwrap(),
        PUBLIC_URL,
        Arc::new(SystemClock),
    )
    .unwrap();
    deps.hasher = PasswordHasher::new(HashParams::insecure_for_tests(), 2).unwrap();
    let identity = IdentityService::new(deps);
    let state = keygate_gateway::AppState::builder(identity).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(keygate_gateway::server::serve(
        listener,
        keygate_gateway::app(state),
        keygate_gateway::server::ClientTimeouts::default(),
        std::future::pending(),
    ));
    base
}

/// Signs in over HTTP; returns the status and the access token, if one was issued.
async fn sign_in(base: &str, body: serde_json::Value) -> (u16, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("{base}/t/demo/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["access_token"].as_str().map(str::to_owned))
}

/// Verifies `token` against the tenant's published JWKS, as an application would.
async fn verifies(base: &str, token: &str) -> bool {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{base}/t/demo/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let Some(jwk) = header.kid.as_deref().and_then(|kid| jwks.find(kid)) else {
        return false;
    };
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[format!("{PUBLIC_URL}/t/demo")]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).is_ok()
}

#[sqlx::test(migrations = false)]
async fn following_the_documented_master_key_rotation_keeps_tokens_issued(pool: PgPool) {
    let store = store(pool).await;
    let k1 = MasterKeys::generate_spec("k1").unwrap();
    let k2 = MasterKeys::generate_spec("k2").unwrap();

    // Before: everything sealed under k1; the first admin signs in.
    let (ready, _, _) = operator_pass(&store, &k1).await;
    assert_eq!(ready, "True");
    let base = gateway(&store, &k1).await;
    let password = "first-boot-secret-91";
    let identity = {
        let mut deps = IdentityDeps::new(
            store.clone(),
            MasterKeys::parse(&k1).unwrap(),
            PUBLIC_URL,
            Arc::new(SystemClock),
        )
        .unwrap();
        deps.hasher = PasswordHasher::new(HashParams::insecure_for_tests(), 2).unwrap();
        IdentityService::new(deps)
    };
    identity
        .bootstrap_admin("demo", EMAIL, password)
        .await
        .unwrap();
    let chosen = "admin-chosen-secret-92";
    let (status, token) = sign_in(
        &base,
        serde_json::json!({ "email": EMAIL, "password": password, "new_password": chosen }),
    )
    .await;
    assert_eq!(status, 200);
    let token = token.unwrap();
    assert!(verifies(&base, &token).await);
    // The admin starts enrolling an authenticator: its seed is sealed under k1.
    let enrolled = reqwest::Client::new()
        .post(format!("{base}/t/demo/me/mfa/totp"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), 200);

    // Steps 1-3: a new key with a new id, prepended; operator and gateway restarted.
    let both = format!("{},{}", k2, k1);
    let (ready, _, message) = operator_pass(&store, &both).await;
    // Step 4: the Tenant says its keys are sealed under the new key.
    assert_eq!(ready, "True", "{message}");
    assert!(message.contains("master key `k2`"), "{message}");
    let base = gateway(&store, &both).await;
    let signed_in = serde_json::json!({ "email": EMAIL, "password": chosen });
    let (status, token) = sign_in(&base, signed_in.clone()).await;
    assert_eq!(status, 200);
    assert!(verifies(&base, &token.unwrap()).await);

    // Step 5: the old key removed; both restarted again.
    let (ready, reason, message) = operator_pass(&store, &k2).await;
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("True", "Reconciled"),
        "{message}"
    );
    let base = gateway(&store, &k2).await;
    let (status, token) = sign_in(&base, signed_in).await;
    assert_eq!(
        status, 200,
        "tokens are issued after the old master key is gone"
    );
    assert!(verifies(&base, &token.unwrap()).await);
    // The TOTP seed was re-sealed too: the new key alone opens it.
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap();
    let factors = store.factors_page(tenant.id, None, 10).await.unwrap();
    assert_eq!(factors.len(), 1);
    let only_k2 = MasterKeys::parse(&k2).unwrap();
    assert!(!only_k2.needs_reseal(&factors[0].secret));
    let seed = only_k2
        .open(&factors[0].secret, &factors[0].seal_context())
        .unwrap();
    assert_eq!(seed.len(), 20);
}

#[sqlx::test(migrations = false)]
async fn a_tenant_whose_signing_keys_no_master_key_opens_is_not_ready(pool: PgPool) {
    let store = store(pool).await;
    let k1 = MasterKeys::generate_spec("k1").unwrap();
    let k2 = MasterKeys::generate_spec("k2").unwrap();
    let (ready, _, _) = operator_pass(&store, &k1).await;
    assert_eq!(ready, "True");

    // The old key removed without the wait: nothing the operator holds opens the key.
    let (ready, reason, message) = operator_pass(&store, &k2).await;
    assert_eq!(ready, "False", "{message}");
    assert_eq!(reason, "SigningKeyUnreadable");
    assert!(
        message.contains("`k1`") && message.contains("KEYGATE_MASTER_KEYS"),
        "the message names the missing master key and the fix: {message}"
    );

    // Putting k1 back (behind k2) heals it: the keys are re-sealed under k2.
    let (ready, _, message) = operator_pass(&store, &format!("{k2},{k1}")).await;
    assert_eq!(ready, "True", "{message}");
    let (ready, _, message) = operator_pass(&store, &k2).await;
    assert_eq!(ready, "True", "{message}");
}

/// An ES256 tenant: it keeps an RS256 key for ID tokens beside its ES256 key.
const ES256_TENANT: &str = "apiVersion: keygate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: demo\n  namespace: default\nspec:\n  displayName: Demo\n  signing:\n    algorithm: ES256\n";
/// RFC 7636 appendix B's verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:4000/callback";

/// A code flow over HTTP for the public client `app` (signed in through the JSON sign-in
/// with a browser session): the ID token the token endpoint returns.
async fn id_token(base: &str, password: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{base}/t/demo/login"))
        .json(&serde_json::json!({ "email": EMAIL, "password": password, "browser_session": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let authorize = http
        .get(format!("{base}/t/demo/authorize?{query}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(authorize.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {location}"));
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "app"),
            ("code_verifier", VERIFIER),
        ])
        .finish();
    let tokens: serde_json::Value = http
        .post(format!("{base}/t/demo/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no ID token: {tokens}"))
        .to_owned()
}

#[sqlx::test(migrations = false)]
async fn master_key_rotation_reseals_the_rs256_key_an_es256_tenant_keeps(pool: PgPool) {
    use keygate_core::store::{
        ClientAuthMethod, ClientLifetimes, ClientType, ConsentMode, GrantType, OAuthClientUpsert,
    };
    let store = store(pool).await;
    let k1 = MasterKeys::generate_spec("k1").unwrap();
    let k2 = MasterKeys::generate_spec("k2").unwrap();
    let (ready, _, message) = operator_pass_on(&store, &k1, ES256_TENANT).await;
    assert_eq!(ready, "True", "{message}");
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap();
    let algorithms = |keys: &[keygate_core::store::SigningKeyRecord]| {
        let mut a: Vec<_> = keys.iter().map(|k| k.algorithm.clone()).collect();
        a.sort();
        a
    };
    assert_eq!(
        algorithms(&store.signing_keys(tenant.id).await.unwrap()),
        ["ES256", "RS256"]
    );
    store
        .upsert_oauth_client(&OAuthClientUpsert {
            tenant_id: tenant.id,
            owner_uid: "uid-app".into(),
            client_id: "app".into(),
            display_name: "App".into(),
            client_type: ClientType::Public,
            token_endpoint_auth_method: ClientAuthMethod::None,
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            allowed_scopes: vec!["openid".into()],
            audience: vec![],
            consent: ConsentMode::Implicit,
            lifetimes: ClientLifetimes::default(),
            id_token_signed_response_alg: Some(SigningAlgorithm::RS256),
            generation: 1,
        })
        .await
        .unwrap();
    let password = "first-boot-secret-91";
    let mut deps = IdentityDeps::new(
        store.clone(),
        MasterKeys::parse(&k1).unwrap(),
        PUBLIC_URL,
        Arc::new(SystemClock),
    )
    .unwrap();
    deps.hasher = PasswordHasher::new(HashParams::insecure_for_tests(), 2).unwrap();
    IdentityService::new(deps)
        .bootstrap_admin("demo", EMAIL, password)
        .await
        .unwrap();
    let chosen = "admin-chosen-secret-92";
    let base = gateway(&store, &k1).await;
    let (status, _) = sign_in(
        &base,
        serde_json::json!({ "email": EMAIL, "password": password, "new_password": chosen }),
    )
    .await;
    assert_eq!(status, 200);
    let before = id_token(&base, chosen).await;
    assert_eq!(
        jsonwebtoken::decode_header(&before).unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );

    // The documented procedure: prepend k2, pass; remove k1, pass.
    let (ready, _, message) = operator_pass_on(&store, &format!("{k2},{k1}"), ES256_TENANT).await;
    assert_eq!(ready, "True", "{message}");
    assert!(message.contains("master key `k2`"), "{message}");
    let (ready, reason, message) = operator_pass_on(&store, &k2, ES256_TENANT).await;
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("True", "Reconciled"),
        "{message}"
    );
    let only_k2 = MasterKeys::parse(&k2).unwrap();
    let keys = store.signing_keys(tenant.id).await.unwrap();
    assert_eq!(algorithms(&keys), ["ES256", "RS256"], "no key was replaced");
    for key in &keys {
        assert!(
            !only_k2.needs_reseal(&key.private_key),
            "{} still under k1",
            key.kid
        );
        only_k2
            .open(&key.private_key, &format!("signing_key:{}", key.kid))
            .unwrap();
    }

    // A gateway holding k2 alone signs RS256 ID tokens with the re-sealed key, and they
    // verify against the published JWKS; access tokens stay ES256.
    let base = gateway(&store, &k2).await;
    let after = id_token(&base, chosen).await;
    let header = jsonwebtoken::decode_header(&after).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(
        header.kid,
        jsonwebtoken::decode_header(&before).unwrap().kid
    );
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{base}/t/demo/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key =
        jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap())
            .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[format!("{PUBLIC_URL}/t/demo")]);
    validation.set_audience(&["app"]);
    jsonwebtoken::decode::<serde_json::Value>(&after, &key, &validation).unwrap();
    let (status, token) = sign_in(
        &base,
        serde_json::json!({ "email": EMAIL, "password": chosen }),
    )
    .await;
    assert_eq!(status, 200);
    let token = token.unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        jsonwebtoken::Algorithm::ES256
    );
    assert!(verifies(&base, &token).await);
}
