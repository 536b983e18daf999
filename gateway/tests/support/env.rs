//! The identity tests' environment: the real gateway and `IdentityService` on a real socket
//! over PostgreSQL (a fresh database per test via `#[sqlx::test]`) or SQLite, Redis under a
//! unique key prefix (or in-process ephemeral state), a manual clock and a memory mailer;
//! fixtures for tenants and accounts; an independent token verifier that fetches the JWKS
//! over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::{RequestExt, real, redis_url};
use chrono::{Duration, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use keygate_core::clock::{Clock, ManualClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::PasswordHasher;
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::{self, GeneratedKey, SigningAlgorithm};
use keygate_core::ephemeral::{Ephemeral, RedisEphemeral};
use keygate_core::store::{
    AuditFilter, NewUser, PgStore, RoleSubject, RoleUpsert, SigningKeyRecord, Store, Tenant,
    TenantUpsert, UserStatus,
};
use keygate_gateway::AppState;
use keygate_gateway::identity::{
    BreachedList, Federation, IdentityDeps, IdentityService, Mailer, MemoryMailer, RateLimits,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// The password of every account [`Env::user`] creates.
pub const PASSWORD: &str = "violet-anchor-tundra-42";

/// One gateway on a real socket, with what its tests reach into.
pub struct Env {
    pub url: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub master: MasterKeys,
    pub clock: Arc<ManualClock>,
    pub mailer: Arc<MemoryMailer>,
    pub hasher: PasswordHasher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tenant row and its active signing key.
pub struct TenantFixture {
    pub row: Tenant,
    pub key: GeneratedKey,
}

/// A gateway on PostgreSQL and Redis with a sign-in budget no test exhausts by accident.
pub async fn env(pool: sqlx::PgPool) -> Env {
    env_with_limits(
        pool,
        RateLimits {
            sign_in_per_ip: 1000,
            ..RateLimits::default()
        },
    )
    .await
}

/// A gateway on PostgreSQL and Redis with the given rate limits.
pub async fn env_with_limits(pool: sqlx::PgPool, limits: RateLimits) -> Env {
    env_behind_proxies(pool, limits, &[]).await
}

/// A gateway on PostgreSQL and Redis with the given rate limits that believes forwarded
/// headers from peers in `trusted_proxies` (CIDRs, `KEYGATE_TRUSTED_PROXIES`).
pub async fn env_behind_proxies(
    pool: sqlx::PgPool,
    limits: RateLimits,
    trusted_proxies: &[&str],
) -> Env {
    env_mailing_through(pool, limits, trusted_proxies, None)
        .await
        .0
}

/// [`env_behind_proxies`] whose mail goes to `mailer` instead of the memory outbox
/// (`Env::mailer` then stays empty); also returns its identity service.
pub async fn env_mailing_through(
    pool: sqlx::PgPool,
    limits: RateLimits,
    trusted_proxies: &[&str],
    mailer: Option<Arc<dyn Mailer>>,
) -> (Env, IdentityService) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(
        RedisEphemeral::connect(&redis_url(), &prefix)
            .await
            .expect("Redis"),
    );
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let proxies = trusted_proxies.iter().map(|n| n.parse().unwrap()).collect();
    serve_on(
        store,
        ephemeral,
        clock,
        limits,
        master,
        None,
        proxies,
        mailer,
        |_| Federation::default(),
        None,
    )
    .await
}

/// A gateway on PostgreSQL and Redis reaching upstream identity providers as `federation`
/// says (Google and GitHub at local peers, loopback `http://` issuers accepted); also returns
/// its identity service.
pub async fn env_federated(pool: sqlx::PgPool, federation: Federation) -> (Env, IdentityService) {
    env_federated_with(pool, |_| federation).await
}

/// [`env_federated`] whose federation settings are made once the gateway's URL is known
/// (an upstream provider must register the gateway's callback before the gateway can point
/// at it).
pub async fn env_federated_with(
    pool: sqlx::PgPool,
    federation: impl FnOnce(&str) -> Federation,
) -> (Env, IdentityService) {
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    env_federated_limited(pool, limits, federation).await
}

/// [`env_federated_with`] with the given rate limits (tests of SSO's own budget).
pub async fn env_federated_limited(
    pool: sqlx::PgPool,
    limits: RateLimits,
    federation: impl FnOnce(&str) -> Federation,
) -> (Env, IdentityService) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(
        RedisEphemeral::connect(&redis_url(), &prefix)
            .await
            .expect("Redis"),
    );
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    serve_on(
        store,
        ephemeral,
        clock,
        limits,
        master,
        None,
        Vec::new(),
        None,
        federation,
        None,
    )
    .await
}

/// A gateway on PostgreSQL and Redis whose passwords are hashed by `hasher` (tests of the
/// hashing pool's limits), behind the test process as a trusted proxy.
pub async fn env_hashing_on(pool: sqlx::PgPool, hasher: PasswordHasher) -> Env {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(
        RedisEphemeral::connect(&redis_url(), &prefix)
            .await
            .expect("Redis"),
    );
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    let proxies = vec!["127.0.0.1/32".parse().unwrap()];
    serve_on(
        store,
        ephemeral,
        clock,
        limits,
        master,
        None,
        proxies,
        None,
        |_| Federation::default(),
        Some(hasher),
    )
    .await
    .0
}

/// A gateway on PostgreSQL and Redis whose public URL is `public_url` (tests of what depends
/// on the gateway's host, such as a tenant's cookie domain); requests still go to `Env::url`.
/// `{port}` in it is replaced by the port the gateway listens on.
pub async fn env_at(pool: sqlx::PgPool, public_url: &str) -> Env {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
    let prefix = format!("kgtest:{}:", uuid::Uuid::now_v7().simple());
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(
        RedisEphemeral::connect(&redis_url(), &prefix)
            .await
            .expect("Redis"),
    );
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let limits = RateLimits {
        sign_in_per_ip: 1000,
        ..RateLimits::default()
    };
    serve_with(store, ephemeral, clock, limits, master, Some(public_url))
        .await
        .0
}

/// The embedded mode of `keygate dev`: SQLite in a temporary file, in-process ephemeral state.
pub async fn env_sqlite(dir: &tempfile::TempDir) -> Env {
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

/// A gateway over `store` and `ephemeral` with fresh master keys, serving as its own address.
pub async fn serve(
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
pub async fn serve_with(
    store: Arc<dyn Store>,
    ephemeral: Arc<dyn Ephemeral>,
    clock: Arc<ManualClock>,
    limits: RateLimits,
    master: MasterKeys,
    public_url: Option<&str>,
) -> (Env, IdentityService) {
    serve_on(
        store,
        ephemeral,
        clock,
        limits,
        master,
        public_url,
        Vec::new(),
        None,
        |_| Federation::default(),
        None,
    )
    .await
}

/// [`serve_with`] whose `/readyz` says not ready once the store has been unreachable for
/// `readiness_grace` (fault tests shorten the production grace).
pub async fn serve_graced(
    store: Arc<dyn Store>,
    ephemeral: Arc<dyn Ephemeral>,
    clock: Arc<ManualClock>,
    limits: RateLimits,
    master: MasterKeys,
    public_url: Option<&str>,
    readiness_grace: std::time::Duration,
) -> (Env, IdentityService) {
    serve_on_graced(
        store,
        ephemeral,
        clock,
        limits,
        master,
        public_url,
        Vec::new(),
        None,
        |_| Federation::default(),
        None,
        Some(readiness_grace),
    )
    .await
}

/// [`serve_with`], believing forwarded headers from peers in `trusted_proxies`, mailing
/// through `mailer_override` (default: the memory outbox), hashing on `hasher_override`
/// (default: cheap parameters on two threads).
#[allow(clippy::too_many_arguments)]
async fn serve_on(
    store: Arc<dyn Store>,
    ephemeral: Arc<dyn Ephemeral>,
    clock: Arc<ManualClock>,
    limits: RateLimits,
    master: MasterKeys,
    public_url: Option<&str>,
    trusted_proxies: Vec<ipnet::IpNet>,
    mailer_override: Option<Arc<dyn Mailer>>,
    federation: impl FnOnce(&str) -> Federation,
    hasher_override: Option<PasswordHasher>,
) -> (Env, IdentityService) {
    serve_on_graced(
        store,
        ephemeral,
        clock,
        limits,
        master,
        public_url,
        trusted_proxies,
        mailer_override,
        federation,
        hasher_override,
        None,
    )
    .await
}

/// [`serve_on`] with the readiness grace given (default: the production one).
#[allow(clippy::too_many_arguments)]
async fn serve_on_graced(
    store: Arc<dyn Store>,
    ephemeral: Arc<dyn Ephemeral>,
    clock: Arc<ManualClock>,
    limits: RateLimits,
    master: MasterKeys,
    public_url: Option<&str>,
    trusted_proxies: Vec<ipnet::IpNet>,
    mailer_override: Option<Arc<dyn Mailer>>,
    federation: impl FnOnce(&str) -> Federation,
    hasher_override: Option<PasswordHasher>,
    readiness_grace: Option<std::time::Duration>,
) -> (Env, IdentityService) {
    store.migrate().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own_url = format!("http://{}", listener.local_addr().unwrap());
    // Replicas behind one load balancer share the public URL (and so the issuer).
    // `{port}` in a public URL names the port just bound (a host name for this socket).
    let port = listener.local_addr().unwrap().port().to_string();
    let url = public_url.map_or_else(|| own_url.clone(), |u| u.replace("{port}", &port));
    let mailer = Arc::new(MemoryMailer::new());
    let hasher = hasher_override.unwrap_or_else(real::hasher);
    let identity = IdentityService::with_federation(
        IdentityDeps {
            store: store.clone(),
            master_keys: master.clone(),
            clock: clock.clone(),
            ephemeral,
            hasher: hasher.clone(),
            mailer: mailer_override.unwrap_or_else(|| mailer.clone()),
            public_url: url.clone(),
            breached: BreachedList::default(),
            limits,
            registry: prometheus::Registry::new(),
        },
        federation(&url),
    );
    let mut builder = AppState::builder(identity.clone()).trusted_proxies(trusted_proxies);
    if let Some(grace) = readiness_grace {
        builder = builder.readiness_grace(grace);
    }
    let state = builder.build();
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
    pub async fn tenant(&self, name: &str, alg: SigningAlgorithm, extra: Value) -> TenantFixture {
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
                settings: serde_json::from_value(settings).unwrap(),
                deletion_policy: Default::default(),
                generation: 1,
            })
            .await
            .unwrap();
        let key = self.signing_key(&row, alg).await;
        TenantFixture { row, key }
    }

    /// Adds a signing key of `alg` to `tenant`, active for an hour already (the operator keeps
    /// an RS256 key beside a tenant's own algorithm for ID tokens; tests add it this way).
    pub async fn signing_key(&self, tenant: &Tenant, alg: SigningAlgorithm) -> GeneratedKey {
        let key = signing::generate(alg).unwrap();
        let now = self.clock.now();
        self.store
            .insert_signing_key(&SigningKeyRecord {
                kid: key.kid.clone(),
                tenant_id: tenant.id,
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
        key
    }

    /// A verified, active account created directly in the store.
    pub async fn user(&self, tenant: &Tenant, email: &str) -> keygate_core::ids::UserId {
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

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
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

    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> (StatusCode, Value) {
        self.post_json(
            &format!("/t/{tenant}/login"),
            json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .form_pairs(pairs);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A refresh as keygate's own client (`client_id=keygate`, which every refresh names).
    pub async fn refresh(&self, tenant: &str, token: &str) -> (StatusCode, Value) {
        self.refresh_as(tenant, token, &[("client_id", "keygate")])
            .await
    }

    /// A refresh with `more` parameters (a `client_id`, a `scope`) or none.
    pub async fn refresh_as(
        &self,
        tenant: &str,
        token: &str,
        more: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
        pairs.extend_from_slice(more);
        self.form(&format!("/t/{tenant}/oauth2/token"), &pairs, None)
            .await
    }

    /// A Role of `tenant` called `name` granting `permissions` to the account `email`.
    pub async fn role(&self, tenant: &Tenant, name: &str, permissions: &[&str], email: &str) {
        self.store
            .upsert_role(&RoleUpsert {
                tenant_id: tenant.id,
                name: name.into(),
                owner_uid: uuid::Uuid::now_v7().to_string(),
                description: String::new(),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
                subjects: vec![RoleSubject::UserEmail(email.into())],
                generation: 1,
            })
            .await
            .unwrap();
    }

    pub async fn get(&self, path: &str, bearer: &str) -> (StatusCode, Value) {
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
    pub async fn mailed_token(&self, to: &str, subject: &str) -> String {
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

    pub async fn audit_kinds(&self, tenant: &Tenant) -> Vec<String> {
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
pub async fn verify_independently(url: &str, tenant: &str, token: &str) -> Value {
    verify_issued_at(url, url, tenant, token).await
}

/// [`verify_independently`] for a gateway reached at `url` whose public URL (and so its
/// issuers) is `public_url`.
pub async fn verify_issued_at(url: &str, public_url: &str, tenant: &str, token: &str) -> Value {
    let issuer = format!("{public_url}/t/{tenant}");
    let jwks: JwkSet = reqwest::get(format!("{url}/t/{tenant}/jwks.json"))
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

/// A gateway on `store` whose ephemeral state is Redis under `prefix` (replicas pass the same
/// prefix and the first one's URL); also returns its service and its ephemeral store.
pub async fn redis_replica(
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
    pub async fn browser_login(&self, tenant: &str, email: &str) -> (Value, String) {
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

    /// Submits a sign-in page form as a browser would: opens the page for a CSRF token and its
    /// binding cookie, then posts `pairs` with them, `headers` and any `cookie` (`name=value`)
    /// added. Returns the status, the `Set-Cookie` values and the page's HTML.
    pub async fn page_post(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        headers: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> (StatusCode, Vec<String>, String) {
        let page = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "GET {path}");
        let binding = page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = page.text().await.unwrap();
        let token = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let mut form = vec![("csrf", token.as_str())];
        form.extend_from_slice(pairs);
        let cookies = cookie.map_or(binding.clone(), |c| format!("{binding}; {c}"));
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", cookies)
            .form_pairs(&form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let set_cookies = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (status, set_cookies, r.text().await.unwrap())
    }

    /// `GET /t/{tenant}/me/sessions` with only the session cookie `value`.
    pub async fn with_cookie(&self, tenant: &str, value: &str) -> StatusCode {
        self.http
            .get(format!("{}/t/{tenant}/me/sessions", self.url))
            .header("cookie", format!("__Host-keygate_session={value}"))
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the gateway keeps a cookie's hot record (the format is the gateway's; tests read
/// it to prove the record is written, repopulated and deleted).
pub fn hot_key(tenant: &Tenant, cookie: &str) -> String {
    format!(
        "session-hot:{}:{}",
        tenant.id,
        hex(&sha256(cookie.as_bytes()))
    )
}
