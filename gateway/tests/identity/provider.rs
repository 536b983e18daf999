//! keygate as an OpenID Provider, driven by an independent, OpenID-certified relying party:
//! `openid-client` (npm) with Debian's chromium (playwright-core) for the person's part, run
//! from `gateway/tests/oauth-client/provider-flow.mjs`: discovery, code with PKCE through the
//! sign-in page, ID-token checks, userinfo, refresh, the device grant, RP-initiated logout,
//! client credentials with introspection and revocation, and the refusals. The script pauses once for this test to
//! move keygate's clock past a code's 60 s.

use crate::support::RequestExt;
use crate::support::env::*;
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::{
    ClientAuthMethod, ClientLifetimes, ClientType, ConsentMode, GrantType, NewClientSecret,
    OAuthClientUpsert, Store,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth-client")
}

/// The loopback callback the public client registers (any port matches, RFC 8252).
const REDIRECT: &str = "http://127.0.0.1/callback";
const SECRET: &str = "kgcs_reports_8c1f3d0f5e6b4a2d9c7e1b3a5f7d9e2c";

/// Registers a public SPA client and a confidential machine client in `tenant`.
/// `post_logout` is the one post-logout redirect URI of the public client.
pub async fn register_clients(
    store: &dyn Store,
    tenant: keygate_core::ids::TenantId,
    post_logout: &str,
) {
    let base = |client_id: &str| OAuthClientUpsert {
        tenant_id: tenant,
        owner_uid: uuid::Uuid::now_v7().to_string(),
        client_id: client_id.into(),
        display_name: client_id.into(),
        client_type: ClientType::Public,
        token_endpoint_auth_method: ClientAuthMethod::None,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![post_logout.into()],
        grant_types: vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::DeviceCode,
        ],
        allowed_scopes: ["openid", "email", "profile", "groups", "offline_access"]
            .map(String::from)
            .to_vec(),
        audience: vec![],
        consent: ConsentMode::Implicit,
        lifetimes: ClientLifetimes::default(),
        id_token_signed_response_alg: None,
        generation: 1,
    };
    store.upsert_oauth_client(&base("spa")).await.unwrap();
    let machine = store
        .upsert_oauth_client(&OAuthClientUpsert {
            client_type: ClientType::Confidential,
            token_endpoint_auth_method: ClientAuthMethod::ClientSecretBasic,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            allowed_scopes: vec!["orders.read".into()],
            ..base("reports")
        })
        .await
        .unwrap();
    store
        .insert_client_secret(&NewClientSecret {
            tenant_id: tenant,
            oauth_client_id: machine.id,
            prefix: "kgcs_reports".into(),
            hash: sha256(SECRET.as_bytes()).to_vec(),
        })
        .await
        .unwrap();
}

#[sqlx::test(migrations = false)]
async fn an_independent_relying_party_signs_a_person_in_through_keygate(pool: sqlx::PgPool) {
    for dep in ["openid-client", "playwright-core"] {
        assert!(
            client_dir().join("node_modules").join(dep).exists(),
            "{dep} is missing: run `npm ci` in gateway/tests/oauth-client (scripts/test does)"
        );
    }
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::RS256, json!({})).await;
    let user = env.user(&t.row, "ada@example.com").await;
    env.store
        .update_user(
            t.row.id,
            user,
            &keygate_core::store::UserPatch {
                groups: Some(vec!["ops".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The relying party's port: free now, and the script listens on it at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let post_logout = format!("http://127.0.0.1:{port}/signed-out");
    register_clients(env.store.as_ref(), t.row.id, &post_logout).await;

    let mut child = tokio::process::Command::new("node")
        .arg(client_dir().join("provider-flow.mjs"))
        .env("KG_ISSUER", format!("{}/t/acme", env.url))
        .env("KG_PUBLIC_CLIENT", "spa")
        .env(
            "KG_REDIRECT_URI",
            format!("http://127.0.0.1:{port}/callback"),
        )
        .env("KG_POST_LOGOUT_URI", &post_logout)
        .env("KG_CONFIDENTIAL_CLIENT", "reports")
        .env("KG_CONFIDENTIAL_SECRET", SECRET)
        .env("KG_MACHINE_SCOPE", "orders.read")
        .env("KG_EMAIL", "ada@example.com")
        .env("KG_PASSWORD", PASSWORD)
        .current_dir(client_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let results = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["waiting"] == "clock" {
                env.clock.advance(chrono::Duration::seconds(61));
                stdin.write_all(b"go\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else if v.get("results").is_some() {
                return Some(v["results"].clone());
            }
        }
        None
    })
    .await
    .expect("the relying party finished within 120 s");
    let Some(r) = results else {
        let mut err = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
            .await
            .unwrap();
        panic!("the relying party failed:\n{err}");
    };

    assert_eq!(r["discovered"]["issuer"], format!("{}/t/acme", env.url));
    let id = &r["id_token"];
    assert_eq!(id["sub"], user.to_string());
    assert_eq!(id["aud"], "spa");
    assert_eq!(id["nonce_ok"], true);
    assert_eq!(id["has_at_hash"], true);
    assert_eq!(id["has_auth_time"], true);
    assert_eq!(id["has_sid"], true);
    assert_eq!(id["amr"], json!(["pwd"]));
    assert_eq!(id["acr"], "urn:keygate:acr:pwd");
    assert_eq!(id["groups"], json!(["ops"]));
    assert_eq!(r["userinfo"]["email"], "ada@example.com");
    assert_eq!(r["userinfo"]["groups"], json!(["ops"]));
    assert!(r["userinfo"].get("roles").is_none(), "{}", r["userinfo"]);
    assert_eq!(
        r["refreshed"],
        json!({"has_access_token": true, "rotated": true})
    );
    assert_eq!(r["replay"], "invalid_grant");
    assert_eq!(r["after_replay_refresh"], "invalid_grant");
    assert_eq!(
        r["after_replay_userinfo"],
        StatusCode::UNAUTHORIZED.as_u16()
    );
    assert_eq!(r["pkce_mismatch"], "invalid_grant");
    assert_eq!(r["expired"], "invalid_grant");
    assert_eq!(r["public_without_pkce"], "invalid_request");
    assert_eq!(r["scope_outside_allowed"], "invalid_scope");
    assert_eq!(r["unregistered_redirect_uri"]["status"], 400);
    assert_eq!(r["unregistered_redirect_uri"]["location"], Value::Null);
    assert_eq!(r["device_before_approval"], "authorization_pending");
    assert_eq!(
        r["device"],
        json!({"sub": user.to_string(), "scope": "openid email", "has_refresh_token": true})
    );
    assert_eq!(r["logout"], json!({"landed": true, "state": "bye"}));
    assert_eq!(r["after_logout_prompt_none"], "login_required");
    let cc = &r["client_credentials"];
    assert_eq!(cc["scope"], "orders.read");
    assert_eq!(cc["has_refresh_token"], false);
    assert_eq!(
        cc["introspected"],
        json!({"active": true, "sub": "reports", "client_id": "reports"})
    );
    assert_eq!(cc["after_revoke"], false);
    assert_eq!(r["wrong_secret"], "invalid_client");
}

/// `Location` of a redirect answer, parsed, with its query as pairs.
fn location(r: &reqwest::Response) -> Option<(url::Url, Vec<(String, String)>)> {
    let loc = r.headers().get("location")?.to_str().ok()?;
    let u = url::Url::parse(loc).ok()?;
    let q = u.query_pairs().into_owned().collect();
    Some((u, q))
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

#[sqlx::test(migrations = false)]
async fn clients_are_held_to_consent_rate_limits_and_grants(pool: sqlx::PgPool) {
    let env = env_with_limits(
        pool,
        keygate_gateway::identity::RateLimits {
            sign_in_per_ip: 1000,
            oauth_per_client: 3,
            ..Default::default()
        },
    )
    .await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    register_clients(env.store.as_ref(), t.row.id, "http://127.0.0.1/out").await;
    env.store
        .upsert_oauth_client(&OAuthClientUpsert {
            tenant_id: t.row.id,
            owner_uid: "portal-uid".into(),
            client_id: "portal".into(),
            display_name: "Portal".into(),
            client_type: ClientType::Public,
            token_endpoint_auth_method: ClientAuthMethod::None,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            allowed_scopes: vec!["openid".into()],
            audience: vec![],
            consent: ConsentMode::Required,
            lifetimes: ClientLifetimes::default(),
            id_token_signed_response_alg: None,
            generation: 1,
        })
        .await
        .unwrap();
    let authorize = |client: &str, extra: &str| {
        format!(
            "{}/t/acme/authorize?response_type=code&client_id={client}&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcallback&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256{extra}",
            env.url
        )
    };

    // A client that requires consent: a signed-in person who has not approved it gets the
    // consent page, naming the client and the scopes; prompt=none cannot ask.
    env.user(&t.row, "ada@example.com").await;
    let (_, cookie) = env.browser_login("acme", "ada@example.com").await;
    let cookie = format!("__Host-keygate_session={cookie}");
    let r = env
        .http
        .get(authorize("portal", "&prompt=none"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let (_, q) = location(&r).expect("a redirect to the client");
    assert_eq!(param(&q, "error"), Some("consent_required"));
    assert_eq!(param(&q, "state"), Some("s1"));
    assert_eq!(
        param(&q, "iss"),
        Some(format!("{}/t/acme", env.url).as_str())
    );
    let r = env
        .http
        .get(authorize("portal", ""))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Portal") && html.contains("<code>openid</code>"),
        "{html}"
    );
    assert!(
        html.contains("action=\"/t/acme/authorize/consent\""),
        "{html}"
    );

    // An unknown client gets a page, never a redirect.
    let r = env.http.get(authorize("nobody", "")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());

    // A browser without a session goes to the sign-in page, which returns to /authorize;
    // prompt=none answers login_required instead.
    let r = env.http.get(authorize("spa", "")).send().await.unwrap();
    let (u, q) = location(&r).unwrap();
    assert_eq!(u.path(), "/t/acme/signin");
    assert!(param(&q, "rd").unwrap().contains("/t/acme/authorize?"));
    let r = env
        .http
        .get(authorize("spa", "&prompt=none"))
        .send()
        .await
        .unwrap();
    let (_, q) = location(&r).unwrap();
    assert_eq!(param(&q, "error"), Some("login_required"));

    // The spa may not use client credentials; the machine client may, three times a minute
    // here, and each grant is audited.
    let spa = env
        .form(
            "/t/acme/oauth2/token",
            &[("grant_type", "client_credentials"), ("client_id", "spa")],
            None,
        )
        .await;
    assert_eq!(spa.0, StatusCode::BAD_REQUEST, "{}", spa.1);
    assert_eq!(spa.1["error"], "unauthorized_client");
    let grant = || async {
        let r = env
            .http
            .post(format!("{}/t/acme/oauth2/token", env.url))
            .basic_auth("reports", Some(SECRET))
            .form_pairs(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    for _ in 0..3 {
        let (s, body) = grant().await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], "orders.read");
        assert!(body.get("refresh_token").is_none());
    }
    let (s, body) = grant().await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "slow_down");
    let audited = env
        .store
        .query_audit(
            t.row.id,
            &keygate_core::store::AuditFilter {
                kind: Some("oauth.token_issued".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(audited.len(), 3);
    assert!(
        audited
            .iter()
            .all(|e| e.data["grant"] == "client_credentials" && e.data["client_id"] == "reports")
    );

    // The secret must come the way the client registered: client_secret_post is refused for
    // a client_secret_basic client.
    let posted = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "reports"),
                ("client_secret", SECRET),
            ],
            None,
        )
        .await;
    assert_eq!(posted.0, StatusCode::UNAUTHORIZED, "{}", posted.1);
    assert_eq!(posted.1["error"], "invalid_client");
}

/// A PKCE verifier and its S256 challenge.
const VERIFIER: &str = "keygate-test-verifier-0123456789-abcdefghijkl";
const CHALLENGE: &str = "MypwXCytIPa74jVpagKlHMm2xd6mj4cDkFevzTF96G0";
const CALLBACK: &str = "http://127.0.0.1:4000/callback";

/// A public client of `tenant` with the code and refresh grants, redirecting to [`REDIRECT`].
fn public_client(tenant: keygate_core::ids::TenantId, client_id: &str) -> OAuthClientUpsert {
    OAuthClientUpsert {
        tenant_id: tenant,
        owner_uid: format!("{client_id}-uid"),
        client_id: client_id.into(),
        display_name: client_id.into(),
        client_type: ClientType::Public,
        token_endpoint_auth_method: ClientAuthMethod::None,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        allowed_scopes: vec!["openid".into(), "email".into(), "profile".into()],
        audience: vec![],
        consent: ConsentMode::Implicit,
        lifetimes: ClientLifetimes::default(),
        id_token_signed_response_alg: None,
        generation: 1,
    }
}

/// `/t/acme/authorize` for `client` with PKCE ([`CHALLENGE`]) and `extra` parameters.
fn authorize_url(env: &Env, client: &str, extra: &str) -> String {
    format!(
        "{}/t/acme/authorize?response_type=code&client_id={client}&redirect_uri={}&state=s1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        env.url,
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    )
}

#[sqlx::test(migrations = false)]
async fn a_relying_party_gets_a_code_only_after_the_person_consents(pool: sqlx::PgPool) {
    for dep in ["openid-client", "playwright-core"] {
        assert!(
            client_dir().join("node_modules").join(dep).exists(),
            "{dep} is missing: run `npm ci` in gateway/tests/oauth-client (scripts/test does)"
        );
    }
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    let user = env.user(&t.row, "ada@example.com").await;
    env.store
        .upsert_oauth_client(&OAuthClientUpsert {
            display_name: "Portal of Acme".into(),
            consent: ConsentMode::Required,
            ..public_client(t.row.id, "portal")
        })
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new("node")
        .arg(client_dir().join("consent-flow.mjs"))
        .env("KG_ISSUER", format!("{}/t/acme", env.url))
        .env("KG_CLIENT", "portal")
        .env("KG_CLIENT_NAME", "Portal of Acme")
        .env(
            "KG_REDIRECT_URI",
            format!("http://127.0.0.1:{port}/callback"),
        )
        .env("KG_EMAIL", "ada@example.com")
        .env("KG_PASSWORD", PASSWORD)
        .current_dir(client_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let mut listed = Value::Null;
    let results = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["waiting"] == "revoke" {
                listed = withdraw_consent(&env, "portal").await;
                stdin.write_all(b"go\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else if v.get("results").is_some() {
                return Some(v["results"].clone());
            }
        }
        None
    })
    .await
    .expect("the relying party finished within 120 s");
    let Some(r) = results else {
        let mut err = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
            .await
            .unwrap();
        panic!("the relying party failed:\n{err}");
    };

    let page = |scopes: &[&str]| json!({"names_client": true, "scopes": scopes});
    assert_eq!(
        r["deny"],
        json!({"page": page(&["openid", "email"]), "error": "access_denied", "state_ok": true})
    );
    assert_eq!(
        r["approve"],
        json!({"page": page(&["openid", "email"]), "sub": user.to_string(),
            "email": "ada@example.com", "scope": "openid email"})
    );
    assert_eq!(r["remembered"], json!({"page": null, "has_code": true}));
    assert_eq!(
        r["new_scope"],
        json!({"page": page(&["openid", "email", "profile"]), "has_code": true})
    );
    assert_eq!(
        r["prompt_consent"],
        json!({"page": page(&["openid"]), "has_code": true})
    );
    assert_eq!(listed["client_id"], "portal");
    assert_eq!(listed["display_name"], "Portal of Acme");
    assert_eq!(listed["scopes"], json!(["openid", "email", "profile"]));
    assert_eq!(r["refresh_after_revoke"], "invalid_grant");
    assert_eq!(r["prompt_none_after_revoke"], "consent_required");
    assert_eq!(
        r["page_after_revoke"],
        json!({"page": page(&["openid"]), "has_code": true})
    );
    let kinds = env.audit_kinds(&t.row).await;
    for kind in [
        "oauth.consent_denied",
        "oauth.consent_granted",
        "oauth.consent_revoked",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

/// As the person (a token of keygate's own sign-in): lists the consents, withdraws the one
/// to `client`, and checks that it is gone and cannot be withdrawn twice. Returns what the
/// list said of `client` before.
async fn withdraw_consent(env: &Env, client: &str) -> Value {
    let (status, login) = env.login("acme", "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (status, list) = env.get("/t/acme/me/consents", &token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let entry = list["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == client)
        .cloned()
        .unwrap_or(Value::Null);
    assert!(entry["granted_at"].is_string(), "{list}");
    let delete = || async {
        env.http
            .delete(format!("{}/t/acme/me/consents/{client}", env.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(delete().await, StatusCode::NO_CONTENT);
    assert_eq!(delete().await, StatusCode::NOT_FOUND);
    let (_, list) = env.get("/t/acme/me/consents", &token).await;
    assert_eq!(list["consents"], json!([]));
    let anonymous = env
        .http
        .get(format!("{}/t/acme/me/consents", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    entry
}

#[sqlx::test(migrations = false)]
async fn refreshed_tokens_keep_the_clients_audience_and_lifetimes(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "ada@example.com").await;
    env.store
        .upsert_oauth_client(&OAuthClientUpsert {
            audience: vec!["https://ledger.example".into()],
            lifetimes: ClientLifetimes {
                access_token: Some(Duration::from_secs(120)),
                id_token: None,
                refresh_token: Some(Duration::from_secs(600)),
            },
            ..public_client(t.row.id, "ledger")
        })
        .await
        .unwrap();
    let (_, cookie) = env.browser_login("acme", "ada@example.com").await;
    let r = env
        .http
        .get(authorize_url(&env, "ledger", "&scope=openid"))
        .header("cookie", format!("__Host-keygate_session={cookie}"))
        .send()
        .await
        .unwrap();
    let (_, q) = location(&r).expect("a redirect with the code");
    let code = param(&q, "code").expect("a code").to_owned();
    let (status, first) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", "ledger"),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let rules = |claims: &Value| {
        (
            claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a == "https://ledger.example")),
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        )
    };
    let token = first["access_token"].as_str().unwrap();
    let claims = verify_independently(&env.url, "acme", token).await;
    assert_eq!(rules(&claims), (true, 120), "{claims}");

    // A refresh mints by the same rules as the code grant did.
    let refresh = first["refresh_token"].as_str().unwrap();
    let (status, second) = env
        .refresh_as("acme", refresh, &[("client_id", "ledger")])
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["expires_in"], 120);
    let token = second["access_token"].as_str().unwrap();
    let claims = verify_independently(&env.url, "acme", token).await;
    assert_eq!(rules(&claims), (true, 120), "{claims}");

    // The client's 10-minute refresh lifetime ends the family, long before the tenant's.
    env.clock.advance(chrono::Duration::seconds(300));
    let refresh = second["refresh_token"].as_str().unwrap();
    let (status, third) = env
        .refresh_as("acme", refresh, &[("client_id", "ledger")])
        .await;
    assert_eq!(status, StatusCode::OK, "{third}");
    env.clock.advance(chrono::Duration::seconds(301));
    let refresh = third["refresh_token"].as_str().unwrap();
    let (status, refused) = env
        .refresh_as("acme", refresh, &[("client_id", "ledger")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_grant");
}

#[sqlx::test(migrations = false)]
async fn authorize_and_refresh_answer_429_past_the_per_client_and_per_address_budgets(
    pool: sqlx::PgPool,
) {
    let env = env_with_limits(
        pool,
        keygate_gateway::identity::RateLimits {
            sign_in_per_ip: 1000,
            oauth_per_ip: 5,
            oauth_per_client: 3,
            ..Default::default()
        },
    )
    .await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    for client in ["spa", "portal"] {
        env.store
            .upsert_oauth_client(&public_client(t.row.id, client))
            .await
            .unwrap();
    }
    let shared = &env;
    let get = |client: &'static str| {
        let url = authorize_url(shared, client, "");
        async move { shared.http.get(url).send().await.unwrap() }
    };
    // Three requests naming the spa pass (to the sign-in page); the fourth is over the
    // client's budget: a page with Retry-After, never a redirect to the client.
    for _ in 0..3 {
        assert_eq!(get("spa").await.status(), StatusCode::SEE_OTHER);
    }
    let over = get("spa").await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().get("location").is_none());
    let retry: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(over.text().await.unwrap().contains("Too many requests"));
    // Another client still has budget; this address has five requests a window in all.
    assert_eq!(get("portal").await.status(), StatusCode::SEE_OTHER);
    let over = get("portal").await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().get("location").is_none());
    // The token endpoint counts refreshes too: OAuth error JSON, 429, Retry-After.
    let r = env
        .http
        .post(format!("{}/t/acme/oauth2/token", env.url))
        .form_pairs(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-token"),
            ("client_id", "portal"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "slow_down", "{body}");
}

/// Runs `script` (in gateway/tests/oauth-client) with `vars`; its `results` line.
async fn relying_party(script: &str, vars: &[(&str, String)]) -> Value {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(client_dir().join(script))
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .current_dir(client_dir())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the relying party finished within 120 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v.get("results").cloned())
        .unwrap_or_else(|| {
            panic!(
                "the relying party failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[sqlx::test(migrations = false)]
async fn a_client_that_registered_rs256_gets_rs256_id_tokens_from_an_es256_tenant(
    pool: sqlx::PgPool,
) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    // The RS256 key the operator keeps beside the tenant's ES256 key (tests/keys proves it).
    let rs256 = env.signing_key(&t.row, SigningAlgorithm::RS256).await;
    env.user(&t.row, "ada@example.com").await;
    let client = |client_id: &str, alg| OAuthClientUpsert {
        tenant_id: t.row.id,
        owner_uid: uuid::Uuid::now_v7().to_string(),
        client_id: client_id.into(),
        display_name: client_id.into(),
        client_type: ClientType::Public,
        token_endpoint_auth_method: ClientAuthMethod::None,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::AuthorizationCode],
        allowed_scopes: vec!["openid".into(), "email".into()],
        audience: vec![],
        consent: ConsentMode::Implicit,
        lifetimes: ClientLifetimes::default(),
        id_token_signed_response_alg: alg,
        generation: 1,
    };
    for c in [
        client("legacy", Some(SigningAlgorithm::RS256)),
        client("modern", None),
    ] {
        env.store.upsert_oauth_client(&c).await.unwrap();
    }
    let port = crate::support::free_port();
    let r = relying_party(
        "id-token-alg.mjs",
        &[
            ("KG_ISSUER", format!("{}/t/acme", env.url)),
            ("KG_RS256_CLIENT", "legacy".into()),
            ("KG_DEFAULT_CLIENT", "modern".into()),
            (
                "KG_REDIRECT_URI",
                format!("http://127.0.0.1:{port}/callback"),
            ),
            ("KG_EMAIL", "ada@example.com".into()),
            ("KG_PASSWORD", PASSWORD.into()),
        ],
    )
    .await;

    assert_eq!(
        r["id_token_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
    let mut published: Vec<(String, String)> = r["jwks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["alg"].as_str().unwrap().into(),
                k["kid"].as_str().unwrap().into(),
            )
        })
        .collect();
    published.sort();
    assert_eq!(
        published,
        [
            ("ES256".to_owned(), t.key.kid.clone()),
            ("RS256".to_owned(), rs256.kid.clone())
        ]
    );
    // openid-client validated the RS256 ID token (it accepts no other algorithm for this
    // client); the access token keeps the tenant's algorithm.
    let legacy = &r["rs256_client"];
    assert_eq!(legacy["id_token"]["alg"], "RS256");
    assert_eq!(legacy["id_token"]["kid"], rs256.kid.as_str());
    assert_eq!(legacy["id_token"]["aud"], "legacy");
    assert_eq!(legacy["id_token"]["has_at_hash"], true);
    assert_eq!(legacy["access_token"]["alg"], "ES256");
    // A client without a choice gets the tenant's algorithm for both.
    let modern = &r["default_client"];
    assert_eq!(modern["id_token"]["alg"], "ES256");
    assert_eq!(modern["id_token"]["kid"], t.key.kid.as_str());
    assert_eq!(modern["access_token"]["alg"], "ES256");
}
