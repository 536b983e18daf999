//! Token-endpoint benchmark (not a test; `cargo bench -p keygate-gateway --bench
//! token_endpoint`): `client_credentials` grants and authorization-code rounds (`/authorize`
//! with a browser session, then the code redeemed at `/oauth2/token`) on an ES256 tenant,
//! printed beside a bare durable single-row `UPDATE … RETURNING` on the same database in the
//! same run, with p50/p99 latencies.
//!
//! Needs `DATABASE_URL` (a server where it may create a scratch database) and Redis on
//! `KEYGATE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). `KG_BENCH_SECONDS` sets the
//! length of each phase (default 5).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{Duration as ChronoDuration, Utc};
use keygate_core::clock::{Clock, SystemClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, PasswordHasher};
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::{self, SigningAlgorithm};
use keygate_core::ephemeral::RedisEphemeral;
use keygate_core::store::{
    ClientAuthMethod, ClientLifetimes, ClientType, ConsentMode, GrantType, NewClientSecret,
    NewUser, OAuthClientUpsert, PgStore, SigningKeyRecord, Store, TenantUpsert, UserStatus,
};
use keygate_gateway::AppState;
use keygate_gateway::identity::{
    BreachedList, IdentityDeps, IdentityService, NoMailer, RateLimits,
};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "violet-anchor-tundra-42";
const SECRET: &str = "kgcs_bench_5f1c9a7e3d2b4c6a8e0f1a3b5c7d9e2f";
const REDIRECT: &str = "https://app.example.com/callback";
const CONCURRENCY: usize = 32;

struct Stats {
    count: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Stats {
    fn from(mut latencies: Vec<Duration>, secs: f64) -> Self {
        latencies.sort();
        let pick = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Self {
            count: latencies.len(),
            secs,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
        }
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.secs
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<52} {:>9.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.rate(),
            self.p50_ms,
            self.p99_ms
        )
    }
}

fn phase() -> Duration {
    Duration::from_secs(
        std::env::var("KG_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

/// Runs `tasks` loops of `op` for one phase; collects the latencies of the calls that worked.
async fn load<F, Fut>(tasks: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + phase();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                if op(t).await {
                    lat.push(t0.elapsed());
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    Stats::from(all, start.elapsed().as_secs_f64())
}

async fn scratch_database(base: &str) -> String {
    let name = format!("keygate_bench_token_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("DATABASE_URL reachable");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

/// An ES256 tenant `ec` with one person, a confidential web client (authorization code) and
/// a confidential machine client (client credentials), both with secret [`SECRET`].
async fn setup(store: &Arc<dyn Store>, master: &MasterKeys, hash: &str) {
    let row = store
        .upsert_tenant(&TenantUpsert {
            name: "ec".into(),
            namespace: "bench".into(),
            owner_uid: uuid::Uuid::now_v7().to_string(),
            display_name: "ec".into(),
            settings: serde_json::from_value(json!({"signIn": {"emailVerification": "off"}}))
                .expect("bench settings parse"),
            deletion_policy: Default::default(),
            generation: 1,
        })
        .await
        .unwrap();
    let key = signing::generate(SigningAlgorithm::ES256).unwrap();
    let now = Utc::now() - ChronoDuration::hours(1);
    store
        .insert_signing_key(&SigningKeyRecord {
            kid: key.kid.clone(),
            tenant_id: row.id,
            algorithm: "ES256".into(),
            public_jwk: serde_json::to_value(&key.public_jwk).unwrap(),
            private_key: master
                .seal(
                    key.private_pem.as_bytes(),
                    &format!("signing_key:{}", key.kid),
                )
                .unwrap(),
            created_at: now,
            activates_at: now,
            retires_at: None,
        })
        .await
        .unwrap();
    let user = store
        .insert_user(&NewUser {
            tenant_id: row.id,
            email: "bench@example.com".into(),
            display_name: "bench".into(),
            status: UserStatus::Active,
            email_verified: true,
            must_change_password: false,
            password_hash: None,
            groups: vec![],
        })
        .await
        .unwrap();
    store
        .set_password(row.id, user.id, Some(hash), 5, false)
        .await
        .unwrap();
    for (client_id, grant) in [
        ("web", GrantType::AuthorizationCode),
        ("machine", GrantType::ClientCredentials),
    ] {
        let client = store
            .upsert_oauth_client(&OAuthClientUpsert {
                tenant_id: row.id,
                owner_uid: uuid::Uuid::now_v7().to_string(),
                client_id: client_id.into(),
                display_name: client_id.into(),
                client_type: ClientType::Confidential,
                token_endpoint_auth_method: ClientAuthMethod::ClientSecretBasic,
                redirect_uris: vec![REDIRECT.into()],
                post_logout_redirect_uris: vec![],
                grant_types: vec![grant],
                allowed_scopes: vec!["openid".into(), "email".into(), "reports.read".into()],
                audience: vec![],
                consent: ConsentMode::Implicit,
                lifetimes: ClientLifetimes::default(),
                id_token_signed_response_alg: None,
                generation: 1,
            })
            .await
            .unwrap();
        store
            .insert_client_secret(&NewClientSecret {
                tenant_id: row.id,
                oauth_client_id: client.id,
                prefix: format!("kgcs_{client_id}"),
                hash: sha256(SECRET.as_bytes()).to_vec(),
            })
            .await
            .unwrap();
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis =
        std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let url = scratch_database(&base).await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    store.migrate().await.unwrap();
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let hasher = PasswordHasher::new(HashParams::default(), cores).unwrap();
    let hash = hasher.hash(PASSWORD).await.unwrap();
    setup(&store, &master, &hash).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = format!("http://{}", listener.local_addr().unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let prefix = format!("kgbench:{}:", uuid::Uuid::now_v7().simple());
    let identity = IdentityService::new(IdentityDeps {
        store: store.clone(),
        master_keys: master.clone(),
        clock,
        ephemeral: Arc::new(
            RedisEphemeral::connect(&redis, &prefix)
                .await
                .expect("Redis"),
        ),
        hasher,
        mailer: Arc::new(NoMailer),
        public_url: gw.clone(),
        breached: BreachedList::default(),
        limits: RateLimits {
            sign_in_per_ip: u64::MAX / 2,
            oauth_per_ip: u64::MAX / 2,
            oauth_per_client: u64::MAX / 2,
            ..RateLimits::default()
        },
        registry: prometheus::Registry::new(),
    });
    let app = keygate_gateway::app(AppState::builder(identity).build());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    println!(
        "keygate token-endpoint benchmark: {cores} cores, ES256, {CONCURRENCY} concurrent clients, {} s per phase\n",
        phase().as_secs()
    );

    // The baseline: a bare durable single-row UPDATE … RETURNING on the same database.
    let bare = {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .unwrap();
        pool.execute("CREATE TABLE bench_counter (id int PRIMARY KEY, n bigint NOT NULL)")
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO bench_counter SELECT g, 0 FROM generate_series(0, {}) g",
            CONCURRENCY - 1
        )))
        .execute(&pool)
        .await
        .unwrap();
        load(CONCURRENCY, move |t| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "UPDATE bench_counter SET n = n + 1 WHERE id = $1 RETURNING n",
                )
                .bind(t as i32)
                .fetch_one(&pool)
                .await
                .is_ok()
            }
        })
        .await
    };
    println!("{}", bare.line("UPDATE … RETURNING, pool 8 (baseline)"));

    // client_credentials.
    let machine = {
        let (http, gw) = (http.clone(), gw.clone());
        load(CONCURRENCY, move |_| {
            let (http, gw) = (http.clone(), gw.clone());
            async move {
                http.post(format!("{gw}/t/ec/oauth2/token"))
                    .basic_auth("machine", Some(SECRET))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("grant_type=client_credentials&scope=reports.read")
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
    };
    println!("{}", machine.line("client_credentials over HTTP (ES256)"));
    println!(
        "{:<52} {:>9.2}   (target >= 0.40)\n",
        "ratio client_credentials / UPDATE",
        machine.rate() / bare.rate()
    );

    // authorization_code: one browser session; each round asks /authorize for a code and
    // redeems it at the token endpoint (ID token included).
    let login = http
        .post(format!("{gw}/t/ec/login"))
        .json(&json!({"email": "bench@example.com", "password": PASSWORD, "browser_session": true}))
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.contains("keygate_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let authorize = format!(
        "{gw}/t/ec/authorize?response_type=code&client_id=web&scope=openid%20email&state=s&redirect_uri={}",
        form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let (http2, gw2, authorize, cookie) = (
        http.clone(),
        gw.clone(),
        Arc::new(authorize),
        Arc::new(cookie),
    );
    let web = load(CONCURRENCY, move |_| {
        let (http, gw, authorize, cookie) = (
            http2.clone(),
            gw2.clone(),
            authorize.clone(),
            cookie.clone(),
        );
        async move {
            let Ok(r) = http
                .get(authorize.as_str())
                .header("cookie", cookie.as_str())
                .send()
                .await
            else {
                return false;
            };
            let Some(code) = r
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url::Url::parse(l).ok())
                .and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned())
                })
            else {
                return false;
            };
            let Ok(r) = http
                .post(format!("{gw}/t/ec/oauth2/token"))
                .basic_auth("web", Some(SECRET))
                .form_body(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                ])
                .send()
                .await
            else {
                return false;
            };
            r.status().is_success()
                && r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["id_token"].is_string())
        }
    })
    .await;
    println!(
        "{}",
        web.line("authorize + authorization_code over HTTP (ES256)")
    );
    println!(
        "{:<52} {:>9.2}   (target >= 0.40; two requests per round)",
        "ratio authorization_code round / UPDATE",
        web.rate() / bare.rate()
    );
    println!(
        "\nreference (../shared/TOOLING.md): UPDATE … RETURNING ~9,000/s; Keycloak sizes 120 client-credential grants/s per vCPU"
    );
}

/// A form body without reqwest's `form` feature.
trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}
