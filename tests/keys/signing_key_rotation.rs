//! Signing-key rotation on a controllable clock, on PostgreSQL with the operator's Tenant
//! reconcile and the gateway over HTTP: when `signing.rotateEvery` elapses or the algorithm
//! changes, the next key is in `/jwks.json` at least `signing.publishLead` before any token
//! carries its kid; tokens of the old key verify (against the published JWKS, as an
//! application would) until they expire; the old key leaves the JWKS after the last token it
//! signed has expired. A tenant whose algorithm is not RS256 keeps an RS256 key for ID tokens
//! beside its own, rotated, published and retired by the same rules.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use chrono::{DateTime, Duration, Utc};
use keygate_core::clock::{Clock, ManualClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, PasswordHasher};
use keygate_core::store::{PgStore, Store};
use keygate_gateway::identity::{IdentityDeps, IdentityService, RateLimits};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;

const PUBLIC_URL: &str = "https://auth.example.com";
const EMAIL: &str = "root@example.com";
const FIRST_PASSWORD: &str = "first-boot-secret-91";
const PASSWORD: &str = "admin-chosen-secret-92";

/// The operator and one gateway over one database and one manual clock.
struct World {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    operator: keygate_operator::Context,
    base: String,
    http: reqwest::Client,
}

/// A Tenant manifest named `demo` with `signing` (YAML lines under `spec.signing`).
fn tenant(generation: i64, signing: &str) -> keygate_crds::Tenant {
    let yaml = format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: demo\n  namespace: default\nspec:\n  signing:\n{signing}"
    );
    let keygate_crds::Resource::Tenant(mut tenant) =
        keygate_crds::load_manifests(&yaml).unwrap().remove(0)
    else {
        panic!("not a Tenant");
    };
    tenant.metadata.generation = Some(generation);
    tenant
}

impl World {
    async fn new(pool: PgPool) -> Self {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool).with_clock(clock.clone()));
        store.migrate().await.unwrap();
        let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
        let operator = keygate_operator::Context::new(
            store.clone(),
            master.clone(),
            PUBLIC_URL,
            clock.clone(),
        );
        let mut deps = IdentityDeps::new(store.clone(), master, PUBLIC_URL, clock.clone()).unwrap();
        deps.hasher = PasswordHasher::new(HashParams::insecure_for_tests(), 2).unwrap();
        deps.limits = RateLimits {
            sign_in_per_ip: 1000,
            ..RateLimits::default()
        };
        let identity = IdentityService::new(deps);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app =
            keygate_gateway::app(keygate_gateway::AppState::builder(identity.clone()).build());
        tokio::spawn(keygate_gateway::server::serve(
            listener,
            app,
            keygate_gateway::server::ClientTimeouts::default(),
            std::future::pending(),
        ));
        let world = Self {
            store,
            clock,
            operator,
            base,
            http: reqwest::Client::new(),
        };
        // The tenant and its first key, then an account that has chosen its password.
        world.reconcile(&tenant(1, "    algorithm: ES256\n")).await;
        identity
            .bootstrap_admin("demo", EMAIL, FIRST_PASSWORD)
            .await
            .unwrap();
        let chosen = serde_json::json!({
            "email": EMAIL, "password": FIRST_PASSWORD, "new_password": PASSWORD,
        });
        let response = world
            .http
            .post(format!("{}/t/demo/login", world.base))
            .json(&chosen)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        world
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// One operator pass over `tenant`; the kid its status names as active.
    async fn reconcile(&self, tenant: &keygate_crds::Tenant) -> String {
        let status = keygate_operator::tenant::reconcile(&self.operator, tenant, "uid-demo")
            .await
            .unwrap();
        let ready = &status.conditions[0];
        assert_eq!(ready.status, "True", "{}", ready.message);
        status.active_key_id.unwrap()
    }

    /// The kids (and their `alg`) the gateway publishes now.
    async fn jwks(&self) -> Vec<(String, String)> {
        let jwks: Value = self
            .http
            .get(format!("{}/t/demo/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["kid"].as_str().unwrap().to_owned(),
                    k["alg"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The kid of the one stored key of `alg`.
    async fn kid_of(&self, alg: &str) -> String {
        let tenant = self.store.tenant_by_name("demo").await.unwrap().unwrap().id;
        let keys = self.store.signing_keys(tenant).await.unwrap();
        let of: Vec<_> = keys.iter().filter(|k| k.algorithm == alg).collect();
        assert_eq!(of.len(), 1, "one {alg} key: {keys:?}");
        of[0].kid.clone()
    }

    async fn publishes(&self, kid: &str) -> bool {
        self.jwks().await.iter().any(|(k, _)| k == kid)
    }

    /// Waits (real time: the gateway reloads keys within 5 s) until `kid` is published.
    async fn until_published(&self, kid: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !self.publishes(kid).await {
            assert!(
                std::time::Instant::now() < deadline,
                "{kid} never reached the JWKS"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits (real time, as [`Self::until_published`]) until `kid` is no longer published.
    async fn until_withdrawn(&self, kid: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.publishes(kid).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the retired key {kid} stays published"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Signs in over HTTP; the access token.
    async fn token(&self) -> String {
        let response = self
            .http
            .post(format!("{}/t/demo/login", self.base))
            .json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Verifies `token` as an application would: its kid in the JWKS fetched over HTTP, the
    /// signature with that key under the header's algorithm, type, issuer, and expiry
    /// against the test's clock. `Err` says why not.
    async fn verify(&self, token: &str) -> Result<Value, String> {
        let jwks: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(format!("{}/t/demo/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let kid = header.kid.expect("kid always set");
        let jwk = jwks.find(&kid).ok_or("kid not published")?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&[format!("{PUBLIC_URL}/t/demo")]);
        validation.validate_aud = false;
        // Expiry is judged on the test's clock, not the machine's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| format!("signature: {e}"))?
            .claims;
        if claims["exp"].as_i64().unwrap() <= self.now().timestamp() {
            return Err("expired".into());
        }
        Ok(claims)
    }
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn alg(token: &str) -> jsonwebtoken::Algorithm {
    jsonwebtoken::decode_header(token).unwrap().alg
}

/// From the reconcile that creates the next key (of `alg`, the tenant's algorithm): it is
/// published at once, tokens keep the old kid for `lead`, the first token with the new kid is issued no earlier than `lead`
/// after publication; the old key's last token verifies until it expires, and the old key
/// leaves the JWKS when it retires (after that expiry). Returns the new key's first token.
async fn walk_rotation(
    w: &World,
    next: &keygate_crds::Tenant,
    alg: &str,
    old: &str,
    lead: Duration,
) -> String {
    assert_eq!(w.reconcile(next).await, old, "the old key still signs");
    let keys = w
        .store
        .signing_keys(w.store.tenant_by_name("demo").await.unwrap().unwrap().id)
        .await
        .unwrap();
    let new = keys
        .iter()
        .find(|k| k.kid != old && k.algorithm == alg)
        .expect("the next key")
        .kid
        .clone();
    w.until_published(&new).await;
    let published_at = w.now();

    // Until the lead has passed, every token carries the old kid.
    let first = w.token().await;
    assert_eq!(kid(&first), old);
    w.clock.advance(lead - Duration::seconds(1));
    let last_old = w.token().await;
    assert_eq!(
        kid(&last_old),
        old,
        "signed with the next key before the lead passed"
    );
    assert!(w.publishes(old).await && w.publishes(&new).await);

    // At the lead, the next key signs; it had been published `lead` earlier.
    w.clock.advance(Duration::seconds(1));
    let first_new = w.token().await;
    assert_eq!(kid(&first_new), new);
    let iat = first_new_iat(&w.verify(&first_new).await.unwrap());
    assert!(
        iat >= (published_at + lead).timestamp(),
        "the first token of {new} came {}s after it was published; the lead is {}s",
        iat - published_at.timestamp(),
        lead.num_seconds()
    );
    assert_eq!(w.reconcile(next).await, new, "the status names the new key");

    // The old key's last token verifies until it expires; the key stays published past that.
    let claims = w.verify(&last_old).await.unwrap();
    let expires = DateTime::from_timestamp(claims["exp"].as_i64().unwrap(), 0).unwrap();
    w.clock.advance(expires - w.now() - Duration::seconds(1));
    assert!(
        w.verify(&last_old).await.is_ok(),
        "an old token refused before it expired"
    );
    w.clock.advance(Duration::seconds(2));
    assert_eq!(w.verify(&last_old).await, Err("expired".into()));
    assert!(
        w.publishes(old).await,
        "the old key left before its last token expired"
    );

    // After the retirement margin (the lead again), the old key is gone; the new one stays.
    // It retires once every token it signed has expired, plus the lead again (verifier caches
    // and clock skew), and is withdrawn from the JWKS at that instant.
    let tenant_id = w.store.tenant_by_name("demo").await.unwrap().unwrap().id;
    let rows = w.store.signing_keys(tenant_id).await.unwrap();
    let retires_at = rows
        .iter()
        .find(|k| k.kid == old)
        .unwrap()
        .retires_at
        .unwrap();
    assert!(
        retires_at >= expires + lead,
        "retires at {retires_at}, its last token expired at {expires}"
    );
    w.clock.advance(retires_at - w.now() - Duration::seconds(1));
    assert!(w.publishes(old).await, "withdrawn before it retired");
    w.clock.advance(Duration::seconds(1));
    w.until_withdrawn(old).await;
    assert!(w.publishes(&new).await);
    w.reconcile(next).await;
    let rows = w
        .store
        .signing_keys(w.store.tenant_by_name("demo").await.unwrap().unwrap().id)
        .await
        .unwrap();
    // The RS256 chain kept for ID tokens is not this walk's concern.
    assert_eq!(
        rows.iter()
            .filter(|k| k.algorithm != "RS256" || alg == "RS256")
            .map(|k| k.kid.as_str())
            .collect::<Vec<_>>(),
        [new.as_str()]
    );
    assert!(w.verify(&w.token().await).await.is_ok());
    first_new
}

fn first_new_iat(claims: &Value) -> i64 {
    claims["iat"].as_i64().unwrap()
}

#[sqlx::test(migrations = false)]
async fn rotate_every_publishes_the_next_key_a_lead_ahead_and_retires_the_old_one(pool: PgPool) {
    let w = World::new(pool).await;
    let spec = tenant(1, "    algorithm: ES256\n    rotateEvery: 24h\n");
    let old = w.reconcile(&spec).await;
    let token = w.token().await;
    assert_eq!(kid(&token), old);
    assert!(w.verify(&token).await.is_ok());

    // Just before `rotateEvery` nothing new appears; at it, the next key does.
    w.clock.advance(Duration::hours(24) - Duration::seconds(1));
    assert_eq!(w.reconcile(&spec).await, old);
    let tenant_id = w.store.tenant_by_name("demo").await.unwrap().unwrap().id;
    // The ES256 key and the RS256 key kept for ID tokens; no next key yet.
    assert_eq!(w.store.signing_keys(tenant_id).await.unwrap().len(), 2);
    w.clock.advance(Duration::seconds(1));
    // The default lead: one hour (docs/decisions.md).
    walk_rotation(&w, &spec, "ES256", &old, Duration::hours(1)).await;
}

#[sqlx::test(migrations = false)]
async fn an_algorithm_change_publishes_the_new_key_a_lead_ahead(pool: PgPool) {
    let w = World::new(pool).await;
    let old = w.reconcile(&tenant(1, "    algorithm: ES256\n")).await;
    let token = w.token().await;
    assert_eq!(alg(&token), jsonwebtoken::Algorithm::ES256);

    let eddsa = tenant(2, "    algorithm: EdDSA\n");
    let rs256 = w.kid_of("RS256").await;
    let first_new = walk_rotation(&w, &eddsa, "EdDSA", &old, Duration::hours(1)).await;
    assert_eq!(alg(&first_new), jsonwebtoken::Algorithm::EdDSA);
    // The ES256 key is gone; the RS256 key kept for ID tokens stays, unchanged.
    let mut published = w.jwks().await;
    published.sort();
    let mut expected = vec![
        (kid(&first_new), "EdDSA".to_owned()),
        (rs256, "RS256".to_owned()),
    ];
    expected.sort();
    assert_eq!(published, expected);
}

#[sqlx::test(migrations = false)]
async fn the_publish_lead_is_the_tenants_setting(pool: PgPool) {
    let w = World::new(pool).await;
    let spec = tenant(
        1,
        "    algorithm: ES256\n    rotateEvery: 1h\n    publishLead: 10m\n",
    );
    let old = w.reconcile(&spec).await;
    w.clock.advance(Duration::hours(1));
    walk_rotation(&w, &spec, "ES256", &old, Duration::minutes(10)).await;

    // A lead longer than the rotation is refused, and nothing changes.
    let status = keygate_operator::tenant::reconcile(
        &w.operator,
        &tenant(
            2,
            "    algorithm: ES256\n    rotateEvery: 1h\n    publishLead: 2h\n",
        ),
        "uid-demo",
    )
    .await
    .unwrap();
    let ready = &status.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready
            .message
            .contains("publishLead must not be longer than signing.rotateEvery"),
        "{}",
        ready.message
    );
}

#[sqlx::test(migrations = false)]
async fn an_es256_tenant_keeps_an_rs256_key_for_id_tokens_on_the_same_schedule(pool: PgPool) {
    let w = World::new(pool).await;
    let spec = tenant(1, "    algorithm: ES256\n    rotateEvery: 24h\n");
    let es = w.reconcile(&spec).await;
    let rs = w.kid_of("RS256").await;
    // Both sign from the start (a new tenant), both are published, discovery lists both;
    // access tokens keep the tenant's algorithm.
    let mut published = w.jwks().await;
    published.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        published,
        [
            (es.clone(), "ES256".to_owned()),
            (rs.clone(), "RS256".to_owned())
        ]
    );
    let discovery: Value = w
        .http
        .get(format!(
            "{}/t/demo/.well-known/openid-configuration",
            w.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256", "RS256"])
    );
    assert_eq!(discovery["keygate_signing_kid"], es.as_str());
    assert_eq!(kid(&w.token().await), es);

    // At rotateEvery the RS256 chain rotates too: its next key is published a lead ahead,
    // and the old one retires once the ES256 rule would retire it.
    w.clock.advance(Duration::hours(24));
    assert_eq!(w.reconcile(&spec).await, es);
    let tenant_id = w.store.tenant_by_name("demo").await.unwrap().unwrap().id;
    let keys = w.store.signing_keys(tenant_id).await.unwrap();
    let next_rs = keys
        .iter()
        .find(|k| k.algorithm == "RS256" && k.kid != rs)
        .expect("the next RS256 key");
    // The store keeps microseconds.
    assert_eq!(
        next_rs.activates_at.timestamp_micros(),
        (w.now() + Duration::hours(1)).timestamp_micros()
    );
    w.until_published(&next_rs.kid).await;
    let next_rs = next_rs.kid.clone();
    w.clock.advance(Duration::hours(1));
    w.reconcile(&spec).await;
    let keys = w.store.signing_keys(tenant_id).await.unwrap();
    let old_rs = keys.iter().find(|k| k.kid == rs).unwrap();
    let retires = old_rs.retires_at.expect("the replaced RS256 key retires");
    // Access-token lifetime (5 minutes by default) plus the lead.
    assert_eq!(
        retires.timestamp_micros(),
        (w.now() + Duration::minutes(5) + Duration::hours(1)).timestamp_micros()
    );
    assert!(w.publishes(&rs).await && w.publishes(&next_rs).await);
    w.clock.advance(retires - w.now());
    w.until_withdrawn(&rs).await;
    assert!(w.publishes(&next_rs).await);
}

#[sqlx::test(migrations = false)]
async fn switching_between_rs256_and_another_algorithm_keeps_one_rs256_key(pool: PgPool) {
    let w = World::new(pool).await;
    let es = w.reconcile(&tenant(1, "    algorithm: ES256\n")).await;
    let rs = w.kid_of("RS256").await;

    // To RS256: the RS256 key, published all along, signs at once; the ES256 key retires
    // after its last token expired.
    let to_rs = tenant(2, "    algorithm: RS256\n");
    assert_eq!(w.reconcile(&to_rs).await, rs);
    let tenant_id = w.store.tenant_by_name("demo").await.unwrap().unwrap().id;
    let keys = w.store.signing_keys(tenant_id).await.unwrap();
    assert_eq!(keys.len(), 2, "no new key: {keys:?}");
    let retires = keys.iter().find(|k| k.kid == es).unwrap().retires_at;
    assert_eq!(
        retires.map(|r| r.timestamp_micros()),
        Some((w.now() + Duration::minutes(5) + Duration::hours(1)).timestamp_micros())
    );
    // The gateway follows once its tenant cache (5 s, real time) reloads the algorithm.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let token = w.token().await;
        if alg(&token) == jsonwebtoken::Algorithm::RS256 {
            assert_eq!(kid(&token), rs);
            break;
        }
        assert_eq!(
            kid(&token),
            es,
            "only the ES256 key signs before the switch"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "still ES256 after 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Back to ES256: a new ES256 key a lead ahead; the RS256 key stays for ID tokens.
    let to_es = tenant(3, "    algorithm: ES256\n");
    assert_eq!(
        w.reconcile(&to_es).await,
        rs,
        "RS256 signs until the new key activates"
    );
    w.clock.advance(Duration::hours(1));
    let new_es = w.reconcile(&to_es).await;
    assert_ne!(new_es, es);
    let keys = w.store.signing_keys(tenant_id).await.unwrap();
    let kept = keys.iter().find(|k| k.kid == rs).unwrap();
    assert_eq!(kept.retires_at, None, "the RS256 key is kept for ID tokens");
}
