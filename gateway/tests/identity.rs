//! The identity area over HTTP on a real socket: PostgreSQL (a fresh database per test via
//! `#[sqlx::test]`, `DATABASE_URL`), Redis on `KEYGATE_TEST_REDIS_URL` (a unique key prefix
//! per test), tokens checked by an independent verifier that fetches the JWKS over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{Duration, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use keygate_core::clock::{Clock, ManualClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, PasswordHasher};
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::{self, GeneratedKey, SigningAlgorithm};
use keygate_core::ephemeral::{Ephemeral, RedisEphemeral};
use keygate_core::store::{
    AuditFilter, NewUser, PgStore, SigningKeyRecord, Store, Tenant, TenantUpsert, UserStatus,
};
use keygate_gateway::AppState;
use keygate_gateway::identity::{
    BreachedList, IdentityDeps, IdentityService, MemoryMailer, RateLimits,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

const PASSWORD: &str = "violet-anchor-tundra-42";

struct Env {
    url: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    master: MasterKeys,
    clock: Arc<ManualClock>,
    mailer: Arc<MemoryMailer>,
    hasher: PasswordHasher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct TenantFixture {
    row: Tenant,
    key: GeneratedKey,
}

fn redis_url() -> String {
    std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn env(pool: sqlx::PgPool) -> Env {
    env_with_limits(
        pool,
        RateLimits {
            sign_in_per_ip: 1000,
            ..RateLimits::default()
        },
    )
    .await
}

async fn env_with_limits(pool: sqlx::PgPool, limits: RateLimits) -> Env {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(
        RedisEphemeral::connect(&redis_url(), &prefix)
            .await
            .expect("Redis"),
    );
    serve(store, ephemeral, clock, limits).await
}

/// The embedded mode of `keygate dev`: SQLite in a temporary file, in-process ephemeral state.
async fn env_sqlite(dir: &tempfile::TempDir) -> Env {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let url = format!("sqlite:{}", dir.path().join("keygate.db").display());
    let store: Arc<dyn Store> = Arc::new(
        keygate_core::store::SqliteStore::connect(&url)
            .await
            .unwrap()
            .with_clock(clock.clone()),
    );
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(keygate_core::ephemeral::MemoryEphemeral::new());
    serve(store, ephemeral, clock, RateLimits::default()).await
}

async fn serve(
    store: Arc<dyn Store>,
    ephemeral: Arc<dyn Ephemeral>,
    clock: Arc<ManualClock>,
    limits: RateLimits,
) -> Env {
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    serve_with(store, ephemeral, clock, limits, master, None)
        .await
        .0
}

/// A gateway over `store` with the given master keys, serving as `public_url` (default: its
/// own address); also returns its identity service.
async fn serve_with(
    store: Arc<dyn Store>,
    ephemeral: Arc<dyn Ephemeral>,
    clock: Arc<ManualClock>,
    limits: RateLimits,
    master: MasterKeys,
    public_url: Option<&str>,
) -> (Env, IdentityService) {
    store.migrate().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own_url = format!("http://{}", listener.local_addr().unwrap());
    // Replicas behind one load balancer share the public URL (and so the issuer).
    let url = public_url.map_or_else(|| own_url.clone(), str::to_owned);
    let mailer = Arc::new(MemoryMailer::new());
    let hasher = PasswordHasher::new(HashParams::insecure_for_tests(), 2).unwrap();
    let identity = IdentityService::new(IdentityDeps {
        store: store.clone(),
        master_keys: master.clone(),
        clock: clock.clone(),
        ephemeral,
        hasher: hasher.clone(),
        mailer: mailer.clone(),
        public_url: url.clone(),
        breached: BreachedList::default(),
        limits,
    });
    let state = AppState::builder(identity.clone()).build();
    let app = keygate_gateway::app(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (
        Env {
            url: own_url,
            http,
            store,
            master,
            clock,
            mailer,
            hasher,
            task,
        },
        identity,
    )
}

impl Env {
    /// A tenant with one active signing key of `alg`, open registration, and `extra` merged into its spec.
    async fn tenant(&self, name: &str, alg: SigningAlgorithm, extra: Value) -> TenantFixture {
        let mut settings = json!({
            "signIn": { "registration": "open", "emailVerification": "required" },
            "signing": { "algorithm": alg.as_str() },
        });
        if let (Some(base), Some(more)) = (settings.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                base.insert(k.clone(), v.clone());
            }
        }
        let row = self
            .store
            .upsert_tenant(&TenantUpsert {
                name: name.into(),
                namespace: "default".into(),
                owner_uid: uuid::Uuid::now_v7().to_string(),
                display_name: name.into(),
                settings,
                generation: 1,
            })
            .await
            .unwrap();
        let key = signing::generate(alg).unwrap();
        let now = self.clock.now();
        self.store
            .insert_signing_key(&SigningKeyRecord {
                kid: key.kid.clone(),
                tenant_id: row.id,
                algorithm: alg.as_str().into(),
                public_jwk: serde_json::to_value(&key.public_jwk).unwrap(),
                private_key: self
                    .master
                    .seal(
                        key.private_pem.as_bytes(),
                        &format!("signing_key:{}", key.kid),
                    )
                    .unwrap(),
                created_at: now - Duration::hours(1),
                activates_at: now - Duration::hours(1),
                retires_at: None,
            })
            .await
            .unwrap();
        TenantFixture { row, key }
    }

    /// A verified, active account created directly in the store.
    async fn user(&self, tenant: &Tenant, email: &str) -> keygate_core::ids::UserId {
        let hash = self.hasher.hash(PASSWORD).await.unwrap();
        let user = self
            .store
            .insert_user(&NewUser {
                tenant_id: tenant.id,
                email: email.into(),
                display_name: "Test".into(),
                status: UserStatus::Active,
                email_verified: true,
                must_change_password: false,
                password_hash: None,
                groups: vec![],
            })
            .await
            .unwrap();
        self.store
            .set_password(tenant.id, user.id, Some(&hash), 5, false)
            .await
            .unwrap();
        user.id
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, tenant: &str, email: &str, password: &str) -> (StatusCode, Value) {
        self.post_json(
            &format!("/t/{tenant}/login"),
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn refresh(&self, tenant: &str, token: &str) -> (StatusCode, Value) {
        self.form(
            &format!("/t/{tenant}/oauth2/token"),
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
            None,
        )
        .await
    }

    async fn get(&self, path: &str, bearer: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The token of the newest email to `to` whose subject contains `subject`.
    async fn mailed_token(&self, to: &str, subject: &str) -> String {
        for _ in 0..100 {
            if let Some(mail) = self
                .mailer
                .sent()
                .into_iter()
                .rev()
                .find(|m| m.to == to && m.subject.contains(subject))
            {
                let start = mail.body.find("token=").unwrap() + "token=".len();
                return mail.body[start..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no email `{subject}` to {to}");
    }

    async fn audit_kinds(&self, tenant: &Tenant) -> Vec<String> {
        self.store
            .query_audit(tenant.id, &AuditFilter::default(), 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
}

/// Verifies like any resource server would: JWKS over HTTP, `kid`, `typ`, issuer, audience, expiry.
async fn verify_independently(url: &str, tenant: &str, token: &str) -> Value {
    let issuer = format!("{url}/t/{tenant}");
    let jwks: JwkSet = reqwest::get(format!("{issuer}/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid always set"))
        .expect("kid published in JWKS");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[&issuer]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[sqlx::test(migrations = false)]
async fn full_walk_sign_up_to_logout_all(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("walk", SigningAlgorithm::RS256, json!({})).await;
    let email = "ada@example.com";

    // Sign up; unverified accounts cannot sign in.
    let (s, body) = env
        .post_json(
            "/t/walk/accounts",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let (s, body) = env.login("walk", email, PASSWORD).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_not_verified"))
    );

    // Verify, sign in, call userinfo.
    let token = env.mailed_token(email, "confirm").await;
    let (s, _) = env
        .post_json("/t/walk/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, login) = env.login("walk", email, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let access = login["access_token"].as_str().unwrap();
    let claims = verify_independently(&env.url, "walk", access).await;
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "sid",
        "tenant",
        "roles",
        "scope",
        "amr",
        "acr",
        "auth_time",
    ] {
        assert!(
            claims.get(claim).is_some(),
            "claim {claim} missing: {claims}"
        );
    }
    let (s, info) = env.get("/t/walk/userinfo", access).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["email"], email);
    assert_eq!(info["email_verified"], true);

    // Refresh, then present the old refresh token again: the family is revoked.
    let old = login["refresh_token"].as_str().unwrap().to_owned();
    let (s, first) = env.refresh("walk", &old).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let newer = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(newer, old);
    env.clock.advance(Duration::seconds(11)); // past the 10 s grace window
    let (s, body) = env.refresh("walk", &old).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, _) = env.refresh("walk", &newer).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "the successor dies with its family"
    );
    let (s, _) = env
        .get("/t/walk/userinfo", first["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "access tokens of a revoked session are refused at once"
    );
    assert!(
        env.audit_kinds(&t.row)
            .await
            .contains(&"refresh.reuse_detected".to_owned())
    );
    let alerts = env
        .mailer
        .sent()
        .into_iter()
        .filter(|m| m.subject.contains("ended for your safety"))
        .count();
    assert!(alerts <= 1);

    // Sign in again, revoke that session, refresh is refused.
    let (_, login) = env.login("walk", email, PASSWORD).await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let sid = login["session_id"].as_str().unwrap().to_owned();
    let (s, list) = env.get("/t/walk/sessions", &access).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == sid.as_str() && x["current"] == true)
    );
    let r = env
        .http
        .delete(format!("{}/t/walk/sessions/{sid}", env.url))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = env
        .refresh("walk", login["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Two sessions, logout-all ends both.
    let (_, a) = env.login("walk", email, PASSWORD).await;
    let (_, b) = env.login("walk", email, PASSWORD).await;
    let (s, out) = env
        .form(
            "/t/walk/sessions/logout-all",
            &[],
            a["access_token"].as_str(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["revoked"], 2);
    for tokens in [&a, &b] {
        let (s, _) = env
            .refresh("walk", tokens["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = env
            .get("/t/walk/userinfo", tokens["access_token"].as_str().unwrap())
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let kinds = env.audit_kinds(&t.row).await;
    for kind in [
        "account.signed_up",
        "account.email_verified",
        "login.succeeded",
        "login.failed",
        "session.revoked",
        "session.logout_all",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "audit {kind} missing: {kinds:?}"
        );
    }
    let events = env
        .store
        .query_audit(t.row.id, &AuditFilter::default(), 1000)
        .await
        .unwrap();
    assert!(
        events.iter().all(|e| e.ip.is_some()),
        "every event carries the client IP"
    );
}

#[sqlx::test(migrations = false)]
async fn tokens_verify_against_jwks_for_every_algorithm_and_only_in_their_tenant(
    pool: sqlx::PgPool,
) {
    let env = env(pool).await;
    let other = env
        .tenant("other", SigningAlgorithm::ES256, json!({}))
        .await;
    env.user(&other.row, "bob@example.com").await;
    for (name, alg) in [
        ("rsa", SigningAlgorithm::RS256),
        ("ec", SigningAlgorithm::ES256),
        ("ed", SigningAlgorithm::EdDSA),
    ] {
        let t = env.tenant(name, alg, json!({})).await;
        env.user(&t.row, "bob@example.com").await;
        let (s, login) = env.login(name, "bob@example.com", PASSWORD).await;
        assert_eq!(s, StatusCode::OK, "{login}");
        let access = login["access_token"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(access).unwrap();
        assert_eq!(header.alg, alg.jwt_algorithm());
        assert_eq!(header.kid.as_deref(), Some(t.key.kid.as_str()));
        let claims = verify_independently(&env.url, name, access).await;
        assert_eq!(claims["tenant"], name);
        // The same token is nothing to another tenant.
        let (s, body) = env.get("/t/other/userinfo", access).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token"))
        );
        let (s, _) = env.get(&format!("/t/{name}/userinfo"), access).await;
        assert_eq!(s, StatusCode::OK);
    }
    // Discovery lists the endpoints.
    let doc: Value = reqwest::get(format!(
        "{}/t/rsa/.well-known/openid-configuration",
        env.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    for k in [
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        assert!(
            doc[k].as_str().is_some_and(|u| u.starts_with(&env.url)),
            "{k} missing: {doc}"
        );
    }
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[sqlx::test(migrations = false)]
async fn forged_and_stale_tokens_are_refused(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    let user = env.user(&t.row, "eve@example.com").await;
    let (_, login) = env.login("acme", "eve@example.com", PASSWORD).await;
    let good = login["access_token"].as_str().unwrap().to_owned();
    let (s, _) = env.get("/t/acme/userinfo", &good).await;
    assert_eq!(s, StatusCode::OK);

    let issuer = format!("{}/t/acme", env.url);
    let now = env.clock.now().timestamp();
    let claims = |iss: &str, exp: i64, nbf: i64| {
        json!({"iss": iss, "sub": user.to_string(), "aud": [issuer.clone()], "exp": exp, "iat": now, "nbf": nbf,
               "jti": "j1", "client_id": "keygate", "tenant": "acme", "roles": [], "scope": "openid", "amr": ["pwd"], "auth_time": now})
    };
    let key = EncodingKey::from_ec_pem(t.key.private_pem.as_bytes()).unwrap();
    let sign = |typ: Option<&str>, kid: &str, c: &Value| {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = typ.map(str::to_owned);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, c, &key).unwrap()
    };
    // Sanity: a token forged with the right key and claims passes, so each case below fails for its one reason.
    let (s, _) = env
        .get(
            "/t/acme/userinfo",
            &sign(Some("at+jwt"), &t.key.kid, &claims(&issuer, now + 300, now)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let payload = b64(claims(&issuer, now + 300, now).to_string().as_bytes());
    let alg_none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#));
    let public_pem = {
        let jwk = serde_json::to_value(&t.key.public_jwk).unwrap();
        jwk.to_string()
    };
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(t.key.kid.clone());
        jsonwebtoken::encode(
            &h,
            &claims(&issuer, now + 300, now),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap()
    };
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut c: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
                .unwrap(),
        )
        .unwrap();
        c["roles"] = json!(["admin"]);
        parts[1] = b64(c.to_string().as_bytes());
        parts.join(".")
    };
    let other_issuer = format!("{}/t/other", env.url);
    let cases = [
        ("alg none", alg_none),
        ("HS256 keyed with the public key", hs256),
        (
            "wrong typ",
            sign(Some("JWT"), &t.key.kid, &claims(&issuer, now + 300, now)),
        ),
        (
            "no typ",
            sign(None, &t.key.kid, &claims(&issuer, now + 300, now)),
        ),
        ("tampered payload", tampered),
        (
            "unknown kid",
            sign(
                Some("at+jwt"),
                "not-a-kid",
                &claims(&issuer, now + 300, now),
            ),
        ),
        (
            "expired",
            sign(
                Some("at+jwt"),
                &t.key.kid,
                &claims(&issuer, now - 3600, now - 7200),
            ),
        ),
        (
            "not yet valid",
            sign(
                Some("at+jwt"),
                &t.key.kid,
                &claims(&issuer, now + 7200, now + 3600),
            ),
        ),
        (
            "another tenant's issuer",
            sign(
                Some("at+jwt"),
                &t.key.kid,
                &claims(&other_issuer, now + 300, now),
            ),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, token) in cases {
        let r = env
            .http
            .get(format!("{}/t/acme/userinfo", env.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(r.headers().get("www-authenticate").is_some(), "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_token", "{what}");
    }
    // The real token expires with the clock.
    env.clock.advance(Duration::minutes(6));
    let (s, _) = env.get("/t/acme/userinfo", &good).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = false)]
async fn bad_input_gets_documented_4xx_never_5xx(pool: sqlx::PgPool) {
    let env = env(pool).await;
    env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    let post_raw = |path: &str, ct: &str, body: Vec<u8>| {
        env.http
            .post(format!("{}{path}", env.url))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let code = |r: reqwest::Response| async move {
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (
            status,
            body["code"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\": \"a@b.c\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\": 5, \"password\": []}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/t/acme/login",
            "application/json",
            format!(
                "{{\"email\":\"a@b.c\",\"password\":\"{}\"}}",
                "x".repeat(1 << 20)
            )
            .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\":\"nobody@b.c\",\"password\":\"whatever-it-is\"}".to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        ),
        (
            "/t/nope/login",
            "application/json",
            b"{\"email\":\"a@b.c\",\"password\":\"whatever-it-is\"}".to_vec(),
            StatusCode::NOT_FOUND,
            "tenant_not_found",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"[1,2]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/t/acme/accounts",
            "text/plain",
            b"hi".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"{\"email\":\"new@b.c\",\"password\":\"password123\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_breached",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"{\"email\":\"new@b.c\",\"password\":\"short\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_policy",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"{\"email\":\"not-an-email\",\"password\":\"violet-anchor-tundra-42\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=password&username=a".to_vec(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=client_credentials".to_vec(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"refresh_token=x".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=refresh_token".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=refresh_token&refresh_token=nope".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "/t/acme/oauth2/token",
            "application/json",
            b"{\"grant_type\":\"refresh_token\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/t/acme/oauth2/introspect",
            "application/x-www-form-urlencoded",
            b"token=abc".to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "/t/acme/oauth2/revoke",
            "application/x-www-form-urlencoded",
            b"token=unknown".to_vec(),
            StatusCode::OK,
            "",
        ),
        (
            "/t/acme/accounts/verify-email",
            "application/json",
            b"{\"token\":\"nope\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_link",
        ),
        (
            "/t/acme/accounts/password-reset/confirm",
            "application/json",
            b"{\"token\":\"nope\",\"new_password\":\"violet-anchor-tundra-43\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_link",
        ),
    ];
    for (path, ct, body, status, expected) in cases {
        let (got, c) = code(post_raw(path, ct, body).await.unwrap()).await;
        assert_eq!((got, c.as_str()), (status, expected), "{path} {ct}");
    }
    for path in ["/t/acme/userinfo", "/t/acme/sessions"] {
        let r = env
            .http
            .get(format!("{}{path}", env.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[sqlx::test(migrations = false)]
async fn concurrent_refreshes_rotate_exactly_once(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "sam@example.com").await;
    let (_, login) = env.login("acme", "sam@example.com", PASSWORD).await;
    let old = login["refresh_token"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(env.refresh("acme", &old), env.refresh("acme", &old));
    assert_eq!(
        (a.0, b.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.1,
        b.1
    );
    assert_eq!(
        a.1["refresh_token"], b.1["refresh_token"],
        "the retry within grace gets the same pair"
    );
    let successor = a.1["refresh_token"].as_str().unwrap();
    let record = env
        .store
        .refresh_token(t.row.id, &sha256(old.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.replaced_by.as_deref(),
        Some(&sha256(successor.as_bytes())[..]),
        "one rotation, one successor"
    );
    let (s, next) = env.refresh("acme", successor).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    // Introspection: only for authenticated callers, and of their own tokens.
    let access = next["access_token"].as_str().unwrap();
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", access)],
            Some(access),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{i}"
    );
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", successor)],
            Some(access),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "a rotated refresh token is inactive"
    );
    // RFC 7009 revoke of the live refresh token ends the family.
    let live = next["refresh_token"].as_str().unwrap();
    let (s, _) = env
        .form(
            "/t/acme/oauth2/revoke",
            &[("token", live), ("token_type_hint", "refresh_token")],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env.refresh("acme", live).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrations = false)]
async fn lockout_follows_the_schedule_and_resets_on_success(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "kim@example.com").await;
    for attempt in 1..=15i64 {
        let (s, body) = env
            .login("acme", "kim@example.com", "wrong-password-x")
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
            "attempt {attempt}"
        );
        let expected = match attempt {
            1..=4 => None,
            5..=9 => Some(300),
            10..=14 => Some(1800),
            _ => Some(7200),
        };
        let r = env
            .http
            .post(format!("{}/t/acme/login", env.url))
            .json(&json!({"email": "kim@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        match expected {
            None => {
                // The right password still works before the fifth failure... but would reset
                // the counter, so only check that the account is not locked by asking with a wrong one next.
                assert_eq!(r.status(), StatusCode::OK, "attempt {attempt}");
                // Put the failures back: success reset them.
                for _ in 0..attempt {
                    let (s, _) = env
                        .login("acme", "kim@example.com", "wrong-password-x")
                        .await;
                    assert_eq!(s, StatusCode::UNAUTHORIZED);
                }
            }
            Some(secs) => {
                assert_eq!(
                    r.status(),
                    StatusCode::TOO_MANY_REQUESTS,
                    "attempt {attempt}"
                );
                let retry: i64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(retry, secs, "attempt {attempt}");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["code"], "account_locked");
                env.clock.advance(Duration::seconds(secs + 1));
            }
        }
    }
    // After the 2 h lock, the right password works and clears the counter.
    let (s, _) = env.login("acme", "kim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .login("acme", "kim@example.com", "wrong-password-x")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env.login("acme", "kim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "one failure after a reset locks nothing");
    assert!(
        env.audit_kinds(&t.row)
            .await
            .contains(&"account.locked".to_owned())
    );
}

#[sqlx::test(migrations = false)]
async fn reset_and_verification_tokens_are_single_use_and_expire(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;

    // Verification: single use.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "lee@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let token = env.mailed_token("lee@example.com", "confirm").await;
    let (s, _) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_link"))
    );
    // Verification: expires after 24 h.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "max@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let late = env.mailed_token("max@example.com", "confirm").await;
    env.clock.advance(Duration::hours(25));
    let (s, _) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": late}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Signing up again with a taken address answers the same.
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "LEE@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("accepted"))
    );

    // Reset: the same answer for unknown accounts; the link is single use.
    let (s1, b1) = env
        .post_json(
            "/t/acme/accounts/password-reset",
            json!({"email": "ghost@example.com"}),
        )
        .await;
    let (s2, b2) = env
        .post_json(
            "/t/acme/accounts/password-reset",
            json!({"email": "lee@example.com"}),
        )
        .await;
    assert_eq!((s1, &b1), (s2, &b2));
    let reset = env.mailed_token("lee@example.com", "reset").await;
    let (_, login) = env.login("acme", "lee@example.com", PASSWORD).await;
    let new_password = "saffron-glacier-orbit-77";
    let (s, body) = env
        .post_json(
            "/t/acme/accounts/password-reset/confirm",
            json!({"token": reset, "new_password": new_password}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/password-reset/confirm",
            json!({"token": reset, "new_password": "another-fine-pass-88"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "single use");
    let (s, _) = env
        .refresh("acme", login["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a reset ends every session");
    let (s, _) = env.login("acme", "lee@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, login) = env.login("acme", "lee@example.com", new_password).await;
    assert_eq!(s, StatusCode::OK);
    // Reset: expires after an hour.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/password-reset",
            json!({"email": "lee@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let stale = loop {
        let tok = env.mailed_token("lee@example.com", "reset").await;
        if tok != reset {
            break tok;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    env.clock.advance(Duration::minutes(61));
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/password-reset/confirm",
            json!({"token": stale, "new_password": "another-fine-pass-88"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Change: current password required, no reuse of recent passwords.
    let (_, login2) = env.login("acme", "lee@example.com", new_password).await;
    let access = login2["access_token"].as_str().unwrap();
    let change = |current: &str, new: &str| {
        env.http
            .post(format!("{}/t/acme/account/password", env.url))
            .bearer_auth(access)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    let r = change("not-my-password", "cobalt-meadow-river-31")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = change(new_password, PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "password_reused");
    let r = change(new_password, "cobalt-meadow-river-31")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let _ = login;
    let kinds = env.audit_kinds(&t.row).await;
    for kind in [
        "password.reset_requested",
        "password.reset",
        "password.changed",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind}: {kinds:?}");
    }
}

#[sqlx::test(migrations = false)]
async fn bootstrap_admin_suspends_and_erases(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({"signIn": {"registration": "closed"}}),
        )
        .await;
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "x@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("registration_closed"))
    );

    let identity = IdentityService::new(IdentityDeps {
        store: env.store.clone(),
        master_keys: env.master.clone(),
        clock: env.clock.clone(),
        ephemeral: Arc::new(keygate_core::ephemeral::MemoryEphemeral::new()),
        hasher: env.hasher.clone(),
        mailer: env.mailer.clone(),
        public_url: env.url.clone(),
        breached: BreachedList::default(),
        limits: RateLimits::default(),
    });
    let vars = |k: &str| match k {
        "KEYGATE_BOOTSTRAP_TENANT" => Some("acme".to_owned()),
        "KEYGATE_BOOTSTRAP_EMAIL" => Some("root@example.com".to_owned()),
        "KEYGATE_BOOTSTRAP_PASSWORD" => Some("first-boot-secret-91".to_owned()),
        _ => None,
    };
    let first = identity.bootstrap_from_env(&vars).await.unwrap();
    assert!(matches!(
        first,
        Some(keygate_gateway::identity::Bootstrap::Created(_))
    ));
    assert!(matches!(
        identity.bootstrap_from_env(&vars).await.unwrap(),
        Some(keygate_gateway::identity::Bootstrap::AlreadyExists(_))
    ));

    let (s, body) = env
        .login("acme", "root@example.com", "first-boot-secret-91")
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("password_change_required"))
    );
    let (s, admin) = env
        .post_json("/t/acme/login", json!({"email": "root@example.com", "password": "first-boot-secret-91", "new_password": "admin-chosen-secret-92"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{admin}");
    let admin_token = admin["access_token"].as_str().unwrap().to_owned();
    // The change is done for good: the next sign-in needs only the new password.
    let (s, again) = env
        .login("acme", "root@example.com", "admin-chosen-secret-92")
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");

    let user = env.user(&t.row, "dan@example.com").await;
    let (_, dan) = env.login("acme", "dan@example.com", PASSWORD).await;
    let (s, _) = env
        .form(
            &format!("/t/acme/users/{user}/suspend"),
            &[],
            dan["access_token"].as_str(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only admins suspend");
    let (s, _) = env
        .form(
            &format!("/t/acme/users/{user}/suspend"),
            &[],
            Some(&admin_token),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env
        .refresh("acme", dan["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, body) = env.login("acme", "dan@example.com", PASSWORD).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_suspended"))
    );
    let (s, _) = env
        .form(
            &format!("/t/acme/users/{user}/reactivate"),
            &[],
            Some(&admin_token),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env.login("acme", "dan@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);

    let r = env
        .http
        .delete(format!("{}/t/acme/users/{user}", env.url))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(env.store.user(t.row.id, user).await.unwrap().is_none());
    let (s, _) = env.login("acme", "dan@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let trail = env
        .store
        .query_audit(
            t.row.id,
            &AuditFilter {
                actor_user_id: Some(user),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert!(
        !trail.is_empty(),
        "audit rows of the erased user stay, under the bare id"
    );
    assert!(
        trail
            .iter()
            .all(|e| !e.data.to_string().contains("dan@example.com"))
    );
    let r = env
        .http
        .delete(format!("{}/t/acme/users/{user}", env.url))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Every `.route(…)` of the identity routers and discovery, read from the source, as (method, path).
fn routes_in_source() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("routes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(dir.join("oidc.rs"));
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for chunk in text.split(".route(").skip(1) {
            let chunk = chunk.trim_start();
            let Some(rest) = chunk.strip_prefix('"') else {
                continue;
            };
            let (path, rest) = rest.split_once('"').unwrap();
            let end = rest
                .find(".route(")
                .or_else(|| rest.find("\n}"))
                .unwrap_or(rest.len());
            for method in ["get", "post", "delete", "put", "patch"] {
                let call = format!("{method}(");
                if rest[..end].match_indices(&call).any(|(i, _)| {
                    i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                }) {
                    out.push((method.to_owned(), path.to_owned()));
                }
            }
        }
    }
    out
}

#[sqlx::test(migrations = false)]
async fn openapi_describes_every_route(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", env.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let routes = routes_in_source();
    assert!(routes.len() >= 20, "{routes:?}");
    for (method, path) in &routes {
        let op = &doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is routed but missing from /openapi.json"
        );
        assert!(
            op["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|k| k.starts_with('4'))
                    || path.contains("jwks")
                    || path.contains("logout-all")
                    || path.ends_with("/sessions")),
            "{method} {path} documents no error response"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "the document lists an operation that is not routed"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[sqlx::test(migrations = false)]
async fn sign_in_is_rate_limited_per_address_and_audited_with_request_id(pool: sqlx::PgPool) {
    let env = env_with_limits(
        pool,
        RateLimits {
            sign_in_per_ip: 3,
            ..RateLimits::default()
        },
    )
    .await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "ivy@example.com").await;
    for _ in 0..3 {
        let (s, _) = env
            .login("acme", "ivy@example.com", "wrong-password-x")
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let r = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .header("x-request-id", "req-4")
        .json(&json!({"email": "ivy@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    let events = env
        .store
        .query_audit(t.row.id, &AuditFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == "login.failed").count(),
        3
    );
    // Another tenant's budget is its own; the request id reaches the audit row.
    let other = env
        .tenant("other", SigningAlgorithm::EdDSA, json!({}))
        .await;
    env.user(&other.row, "ivy@example.com").await;
    let r = env
        .http
        .post(format!("{}/t/other/login", env.url))
        .header("x-request-id", "req-5")
        .json(&json!({"email": "ivy@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let events = env
        .store
        .query_audit(other.row.id, &AuditFilter::default(), 100)
        .await
        .unwrap();
    let ok = events.iter().find(|e| e.kind == "login.succeeded").unwrap();
    assert_eq!(ok.request_id.as_deref(), Some("req-5"));
    assert_eq!(ok.ip.as_deref(), Some("127.0.0.1"));
}

#[sqlx::test(migrations = false)]
async fn unknown_emails_lock_like_accounts_and_invites_admit_one_address(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({"signIn": {"registration": "invite"}}),
        )
        .await;
    env.user(&t.row, "real@example.com").await;
    // The same sequence of answers for an account and for an email without one.
    for email in ["real@example.com", "ghost@example.com"] {
        let mut seen = Vec::new();
        for _ in 0..6 {
            let (s, body) = env.login("acme", email, "wrong-password-x").await;
            seen.push((s, body["code"].as_str().unwrap_or_default().to_owned()));
        }
        let expected: Vec<_> = std::iter::repeat_n(
            (StatusCode::UNAUTHORIZED, "invalid_credentials".to_owned()),
            5,
        )
        .chain([(StatusCode::TOO_MANY_REQUESTS, "account_locked".to_owned())])
        .collect();
        assert_eq!(seen, expected, "{email}");
    }

    // Invite-only: no invite, no account; an invite admits its address once.
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("invite_required"))
    );
    let admin = env.user(&t.row, "boss@example.com").await;
    env.store
        .update_user(
            t.row.id,
            admin,
            &keygate_core::store::UserPatch {
                groups: Some(vec!["keygate-admins".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, login) = env.login("acme", "boss@example.com", PASSWORD).await;
    let admin_token = login["access_token"].as_str().unwrap().to_owned();
    env.user(&t.row, "plain@example.com").await;
    let (_, plain) = env.login("acme", "plain@example.com", PASSWORD).await;
    let r = env
        .http
        .post(format!("{}/t/acme/invites", env.url))
        .bearer_auth(plain["access_token"].as_str().unwrap_or_default())
        .json(&json!({"email": "new@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "only admins invite");
    let r = env
        .http
        .post(format!("{}/t/acme/invites", env.url))
        .bearer_auth(&admin_token)
        .json(&json!({"email": "new@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mail = loop {
        if let Some(m) = env
            .mailer
            .sent()
            .into_iter()
            .find(|m| m.to == "new@example.com")
        {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let invite = mail
        .body
        .split("invite=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "other@example.com", "password": PASSWORD, "invite": invite}),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("invite_required")),
        "an invite is for its address only"
    );
    // That attempt spent the invite; a fresh one admits the invited address, verified.
    let r = env
        .http
        .post(format!("{}/t/acme/invites", env.url))
        .bearer_auth(&admin_token)
        .json(&json!({"email": "new@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let invite = loop {
        let mails: Vec<_> = env
            .mailer
            .sent()
            .into_iter()
            .filter(|m| m.to == "new@example.com")
            .collect();
        if mails.len() == 2 {
            break mails[1]
                .body
                .split("invite=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (s, _) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "new@example.com", "password": PASSWORD, "invite": invite}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = env.login("acme", "new@example.com", PASSWORD).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "invited accounts are verified by the invite"
    );
    let (s, _) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "new2@example.com", "password": PASSWORD, "invite": invite}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "single use");
}

#[sqlx::test(migrations = false)]
async fn browser_sessions_use_a_host_cookie_and_refuse_cross_site_changes(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let r = env
        .http
        .post(format!("{}/t/acme/login", env.url))
        .json(&json!({"email": "web@example.com", "password": PASSWORD, "browser_session": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in [
        "__Host-keygate_session=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(set_cookie.contains(attr), "{attr} missing in {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let r = env
        .http
        .get(format!("{}/t/acme/sessions", env.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let post = |origin: Option<&str>| {
        let mut req = env
            .http
            .post(format!("{}/t/acme/sessions/logout-all", env.url))
            .header("cookie", &cookie);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post(Some("https://evil.example")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(Some(&env.url)).await.unwrap().status(), StatusCode::OK);
    let r = env
        .http
        .get(format!("{}/t/acme/sessions", env.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the cookie's session ended"
    );
}

#[tokio::test]
async fn the_embedded_mode_walks_sign_up_to_reuse_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_sqlite(&dir).await;
    let t = env.tenant("dev", SigningAlgorithm::EdDSA, json!({})).await;
    let (s, _) = env
        .post_json(
            "/t/dev/accounts",
            json!({"email": "dev@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let token = env.mailed_token("dev@example.com", "confirm").await;
    let (s, _) = env
        .post_json("/t/dev/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, login) = env.login("dev", "dev@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    verify_independently(&env.url, "dev", login["access_token"].as_str().unwrap()).await;
    let old = login["refresh_token"].as_str().unwrap().to_owned();
    let (s, next) = env.refresh("dev", &old).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    env.clock.advance(Duration::seconds(11));
    let (s, _) = env.refresh("dev", &old).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env
        .refresh("dev", next["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the family is revoked");
    assert!(
        env.audit_kinds(&t.row)
            .await
            .contains(&"refresh.reuse_detected".to_owned())
    );
}

#[sqlx::test(migrations = false)]
async fn another_persons_session_and_tokens_are_out_of_reach(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "amy@example.com").await;
    env.user(&t.row, "ben@example.com").await;
    let (_, amy) = env.login("acme", "amy@example.com", PASSWORD).await;
    let (_, ben) = env.login("acme", "ben@example.com", PASSWORD).await;
    let ben_token = ben["access_token"].as_str().unwrap();
    let amy_sid = amy["session_id"].as_str().unwrap();
    let r = env
        .http
        .delete(format!("{}/t/acme/sessions/{amy_sid}", env.url))
        .bearer_auth(ben_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "another person's session is not found"
    );
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", amy["access_token"].as_str().unwrap())],
            Some(ben_token),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{i}"
    );
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", amy["refresh_token"].as_str().unwrap())],
            Some(ben_token),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{i}"
    );
    // Amy's session is untouched.
    let (s, _) = env
        .refresh("acme", amy["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// Postgres is the fallback when Redis did not carry a revocation. Two replicas
/// share the database but no Redis (each has only its own in-process revocation set): a
/// session revoked on A is refused on A at once, and on B as soon as B's resync from the
/// store has run — without it, B would accept the access token until it expires.
#[sqlx::test(migrations = false)]
async fn a_revocation_reaches_a_replica_redis_did_not_tell(pool: sqlx::PgPool) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let memory =
        || -> Arc<dyn Ephemeral> { Arc::new(keygate_core::ephemeral::MemoryEphemeral::new()) };
    let (a, _) = serve_with(
        store.clone(),
        memory(),
        clock.clone(),
        limits,
        master.clone(),
        None,
    )
    .await;
    let (b, b_identity) = serve_with(store, memory(), clock, limits, master, Some(&a.url)).await;
    let t = a.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    a.user(&t.row, "amy@example.com").await;
    let (s, amy) = a.login("acme", "amy@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{amy}");
    let token = amy["access_token"].as_str().unwrap().to_owned();
    let sid = amy["session_id"].as_str().unwrap().to_owned();
    let userinfo = |env: &Env| {
        let request = env
            .http
            .get(format!("{}/t/acme/userinfo", env.url))
            .bearer_auth(&token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(userinfo(&b).await, StatusCode::OK);

    let r = a
        .http
        .delete(format!("{}/t/acme/sessions/{sid}", a.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "revoke: {}", r.status());
    assert_eq!(
        userinfo(&a).await,
        StatusCode::UNAUTHORIZED,
        "A refuses at once"
    );
    assert_eq!(
        userinfo(&b).await,
        StatusCode::OK,
        "B has not heard yet (no Redis between them)"
    );

    let _sync = b_identity.spawn_revocation_sync(std::time::Duration::from_millis(100));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while userinfo(&b).await != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "B still accepts a revoked session after its resync from the store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Session cookies: opaque tokens stored as hashes, hot state in Redis, refresh keeps the grant.

/// A gateway on `store` whose ephemeral state is Redis under `prefix` (replicas pass the same
/// prefix and the first one's URL); also returns its service and its ephemeral store.
async fn redis_replica(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    master: MasterKeys,
    prefix: &str,
    public_url: Option<&str>,
) -> (Env, IdentityService, Arc<dyn Ephemeral>) {
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(
        RedisEphemeral::connect(&redis_url(), prefix)
            .await
            .expect("Redis"),
    );
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let (env, identity) =
        serve_with(store, ephemeral.clone(), clock, limits, master, public_url).await;
    (env, identity, ephemeral)
}

impl Env {
    /// A JSON sign-in asking for a browser session: (body, the session cookie's value).
    async fn browser_login(&self, tenant: &str, email: &str) -> (Value, String) {
        let r = self
            .http
            .post(format!("{}/t/{tenant}/login", self.url))
            .json(&json!({"email": email, "password": PASSWORD, "browser_session": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let value = set_cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("__Host-keygate_session=")
            .unwrap()
            .to_owned();
        (r.json().await.unwrap(), value)
    }

    /// `GET /t/{tenant}/sessions` with only the session cookie `value`.
    async fn with_cookie(&self, tenant: &str, value: &str) -> StatusCode {
        self.http
            .get(format!("{}/t/{tenant}/sessions", self.url))
            .header("cookie", format!("__Host-keygate_session={value}"))
            .send()
            .await
            .unwrap()
            .status()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the gateway keeps a cookie's hot record (the format is the gateway's; tests read
/// it to prove the record is written, repopulated and deleted).
fn hot_key(tenant: &Tenant, cookie: &str) -> String {
    format!(
        "session-hot:{}:{}",
        tenant.id,
        hex(&sha256(cookie.as_bytes()))
    )
}

#[sqlx::test(migrations = false)]
async fn session_cookies_are_opaque_256_bit_tokens_stored_as_hashes(pool: sqlx::PgPool) {
    let raw = pool.clone();
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.tenant("beta", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (body, cookie) = env.browser_login("acme", "web@example.com").await;
    let sid = body["session_id"].as_str().unwrap();

    // 32 random bytes, base64url: at least 43 characters, and not the session id.
    assert!(cookie.len() >= 43, "{cookie}");
    assert!(
        cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{cookie}"
    );
    assert_ne!(cookie, sid);
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);

    // The database holds the token's SHA-256, never the token.
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM sessions WHERE id = $1::uuid")
            .bind(sid)
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some(&sha256(cookie.as_bytes())[..]));
    let rows: Vec<String> = sqlx::query_scalar("SELECT s::text FROM sessions s")
        .fetch_all(&raw)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| !r.contains(&cookie)), "{rows:?}");

    // Forged, guessed, old-format (a bare session id) and foreign cookies: 401, never 5xx.
    let forged = keygate_core::crypto::random::random_token().unwrap();
    let mut flipped = cookie.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, value) in [
        ("forged", forged.as_str()),
        ("one character changed", flipped.as_str()),
        ("the session id (old format)", sid),
        ("a random UUID", &uuid::Uuid::new_v4().to_string()),
        ("junk", "not a cookie"),
    ] {
        assert_eq!(
            env.with_cookie("acme", value).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    assert_eq!(
        env.with_cookie("beta", &cookie).await,
        StatusCode::UNAUTHORIZED,
        "another tenant's cookie"
    );
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::OK,
        "the real cookie still works"
    );
}

#[sqlx::test(migrations = false)]
async fn refresh_keeps_client_id_and_scope_and_never_widens_them(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "app@example.com").await;
    let granted = "openid orders.read orders.write";
    let (s, login) = env
        .post_json(
            "/t/acme/login",
            json!({"email": "app@example.com", "password": PASSWORD,
                   "client_id": "orders-spa", "scope": granted}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let first =
        verify_independently(&env.url, "acme", login["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (first["client_id"].as_str(), first["scope"].as_str()),
        (Some("orders-spa"), Some(granted))
    );

    // Two refreshes: both access tokens keep the client and the scope.
    let mut refresh_token = login["refresh_token"].as_str().unwrap().to_owned();
    for round in 0..2 {
        let (s, next) = env.refresh("acme", &refresh_token).await;
        assert_eq!(s, StatusCode::OK, "{next}");
        assert_eq!(next["scope"], granted);
        let claims =
            verify_independently(&env.url, "acme", next["access_token"].as_str().unwrap()).await;
        assert_eq!(claims["client_id"], "orders-spa", "refresh {round}");
        assert_eq!(claims["scope"], granted, "refresh {round}");
        refresh_token = next["refresh_token"].as_str().unwrap().to_owned();
    }

    // A scope asked for narrows this access token only.
    let (s, narrow) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("scope", "orders.read"),
            ],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{narrow}");
    assert_eq!(narrow["scope"], "orders.read");
    let claims =
        verify_independently(&env.url, "acme", narrow["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (claims["client_id"].as_str(), claims["scope"].as_str()),
        (Some("orders-spa"), Some("orders.read"))
    );
    refresh_token = narrow["refresh_token"].as_str().unwrap().to_owned();

    // Widening is refused, and does not spend the refresh token.
    let (s, err) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("scope", "openid admin"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{err}"
    );
    // Another client's id is refused (RFC 6749 §6: the token is bound to its client), and
    // that does not spend the refresh token either; its own id is accepted.
    let (s, err) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", "some-other-app"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{err}"
    );
    let (s, own) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", "orders-spa"),
            ],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{own}");
    let refresh_token = own["refresh_token"].as_str().unwrap().to_owned();
    let (s, next) = env.refresh("acme", &refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    assert_eq!(next["scope"], granted, "narrowing lasted one token only");
}

/// The cookie check reads the hot record in Redis, not the ledger: a revocation written only
/// to the ledger (one Redis never carried) is noticed at the next once-a-minute ledger write,
/// which is also the only time `last_seen_at` changes. Without the hot record every check
/// would read (and so refuse at once), without the interval every check would write.
#[sqlx::test(migrations = false)]
async fn cookie_checks_read_redis_and_write_the_ledger_once_a_minute(pool: sqlx::PgPool) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let (env, _, ephemeral) =
        redis_replica(store.clone(), clock.clone(), master, &prefix, None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (body, cookie) = env.browser_login("acme", "web@example.com").await;
    let sid: keygate_core::ids::SessionId = body["session_id"].as_str().unwrap().parse().unwrap();
    let signed_in = store.session(t.row.id, sid).await.unwrap().unwrap();
    assert!(
        ephemeral
            .get(&hot_key(&t.row, &cookie))
            .await
            .unwrap()
            .is_some(),
        "sign-in writes the hot record"
    );

    // Many checks within a minute: no ledger write.
    for _ in 0..5 {
        clock.advance(Duration::seconds(10));
        assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    }
    let row = store.session(t.row.id, sid).await.unwrap().unwrap();
    assert_eq!(
        row.last_seen_at, signed_in.last_seen_at,
        "no write within the minute"
    );
    assert_eq!(row.idle_expires_at, signed_in.idle_expires_at);

    // Past the minute: one write slides last_seen and the idle expiry.
    clock.advance(Duration::seconds(11));
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    let touched = store.session(t.row.id, sid).await.unwrap().unwrap();
    assert!(touched.last_seen_at > signed_in.last_seen_at);
    assert!(touched.idle_expires_at > signed_in.idle_expires_at);
    clock.advance(Duration::seconds(5));
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    assert_eq!(
        store
            .session(t.row.id, sid)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        touched.last_seen_at
    );

    // A revocation only the ledger knows: the hot record answers until the next write.
    assert!(
        store
            .revoke_session(t.row.id, sid, clock.now())
            .await
            .unwrap()
    );
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::OK,
        "served from Redis"
    );
    clock.advance(Duration::seconds(61));
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED,
        "the ledger write notices"
    );
    assert!(
        ephemeral
            .get(&hot_key(&t.row, &cookie))
            .await
            .unwrap()
            .is_none(),
        "and drops the hot record"
    );
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrations = false)]
async fn a_hot_record_miss_falls_back_to_the_ledger_and_a_revoke_deletes_it(pool: sqlx::PgPool) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let (env, _, ephemeral) = redis_replica(store, clock, master, &prefix, None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (body, cookie) = env.browser_login("acme", "web@example.com").await;
    let key = hot_key(&t.row, &cookie);

    // Redis lost the record (eviction, flush): the ledger answers and the record comes back.
    assert!(ephemeral.take(&key).await.unwrap().is_some());
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);
    let hot: Value = serde_json::from_slice(&ephemeral.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(hot["session_id"], body["session_id"]);
    assert!(hot.get("token").is_none() && !hot.to_string().contains(&cookie));

    // Revoking the session deletes its hot record.
    let sid = body["session_id"].as_str().unwrap();
    let r = env
        .http
        .delete(format!("{}/t/acme/sessions/{sid}", env.url))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(ephemeral.get(&key).await.unwrap().is_none());
    assert_eq!(
        env.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
}

/// Two gateways share Postgres and Redis. A revocation that reaches B only through the
/// revocation feed — the hot record in Redis still there — is refused by B: the revocation
/// set is asked before the hot record is trusted.
#[sqlx::test(migrations = false)]
async fn a_revoked_session_is_refused_on_every_replica_though_its_hot_record_lingers(
    pool: sqlx::PgPool,
) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let (a, _, a_ephemeral) =
        redis_replica(store.clone(), clock.clone(), master.clone(), &prefix, None).await;
    let (b, _, b_ephemeral) = redis_replica(store, clock, master, &prefix, Some(&a.url)).await;
    let t = a.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    a.user(&t.row, "web@example.com").await;
    let (body, cookie) = a.browser_login("acme", "web@example.com").await;
    assert_eq!(
        b.with_cookie("acme", &cookie).await,
        StatusCode::OK,
        "B reads A's hot record"
    );

    let sid = body["session_id"].as_str().unwrap();
    a_ephemeral
        .revoke(sid, std::time::Duration::from_secs(600))
        .await
        .unwrap();
    assert!(
        b_ephemeral
            .get(&hot_key(&t.row, &cookie))
            .await
            .unwrap()
            .is_some(),
        "the hot record lingers"
    );
    assert_eq!(
        a.with_cookie("acme", &cookie).await,
        StatusCode::UNAUTHORIZED,
        "A at once"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while b.with_cookie("acme", &cookie).await != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "B still accepts a revoked session from its hot record"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The hot record is a cache: while Redis is down, cookie checks ask the ledger, so browsers
/// stay signed in (as they did before the hot state existed) instead of getting 503s.
#[sqlx::test(migrations = false)]
async fn cookie_checks_fall_back_to_the_ledger_while_redis_is_down(pool: sqlx::PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ephemeral: Arc<dyn Ephemeral> = loop {
        match RedisEphemeral::connect(&url, "kgtest:").await {
            Ok(e) => break Arc::new(e),
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "redis-server: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let (env, _) = serve_with(store, ephemeral, clock.clone(), limits, master, None).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "web@example.com").await;
    let (_, cookie) = env.browser_login("acme", "web@example.com").await;
    assert_eq!(env.with_cookie("acme", &cookie).await, StatusCode::OK);

    redis.kill().unwrap();
    redis.wait().unwrap();
    // Each Redis call gives up within about a second (bounded connect and response waits),
    // so a check that takes longer means the outage stalls the hot path.
    let check = || {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            env.with_cookie("acme", &cookie),
        )
    };
    assert_eq!(
        check().await.unwrap(),
        StatusCode::OK,
        "Redis down: the ledger answers"
    );
    clock.advance(Duration::seconds(61));
    assert_eq!(
        check().await.unwrap(),
        StatusCode::OK,
        "and takes the once-a-minute write"
    );
}
