//! Identity benchmark (not a test; `cargo bench -p keygate-gateway --bench identity`).
//!
//! Each figure is printed beside a baseline measured in the same run on the same machine:
//! - password sign-ins over HTTP from 64 concurrent clients (argon2id at OWASP's parameters,
//!   Postgres, Redis, token signing) against raw argon2id verifications (the argon2 crate's
//!   own `verify_password`, one OS thread per core) at the same parameters, with the peak
//!   RSS of the process during the sign-ins (target ≤ 96 MiB on 2 cores);
//! - refresh-token rotations over HTTP (Postgres + Redis, EdDSA, ES256 and RS256 tenants)
//!   against a bare single-row durable `UPDATE … RETURNING` on the same database;
//! - p50/p99 latency of each, and the peak RSS of the process (gateway and load generator).
//!
//! Needs `DATABASE_URL` (a server where it may create a scratch database) and Redis on
//! `KEYGATE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). `BENCH_SECS` sets the
//! length of each phase (default 5).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{Duration as ChronoDuration, Utc};
use keygate_core::clock::{Clock, SystemClock};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, PasswordHasher};
use keygate_core::crypto::signing::{self, SigningAlgorithm};
use keygate_core::ephemeral::RedisEphemeral;
use keygate_core::store::{NewUser, PgStore, SigningKeyRecord, Store, TenantUpsert, UserStatus};
use keygate_gateway::AppState;
use keygate_gateway::identity::{
    BreachedList, IdentityDeps, IdentityService, NoMailer, RateLimits,
};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "violet-anchor-tundra-42";
const CONCURRENCY: usize = 32;
/// Concurrent clients signing in (issue 19: peak RSS under 64 concurrent sign-ins).
const SIGN_IN_CONCURRENCY: usize = 64;

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
            "{what:<44} {:>9.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.rate(),
            self.p50_ms,
            self.p99_ms
        )
    }
}

fn phase() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

/// Runs `tasks` loops of `op` for one phase; collects per-call latencies.
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

/// A `/proc/self/status` figure (`VmHWM`: peak RSS, `VmRSS`: RSS now) in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Starts a new peak-RSS window (Linux: writing 5 to `clear_refs` resets `VmHWM`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Raw argon2id: the argon2 crate's own `verify_password` (it allocates its memory on each
/// call), looped on `threads` OS threads for one phase; no queue, no HTTP, no database.
fn raw_argon2id(threads: usize, hash: &str) -> Stats {
    use argon2::PasswordVerifier as _;
    let start = Instant::now();
    let deadline = start + phase();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let hash = hash.to_owned();
            std::thread::spawn(move || {
                let parsed = argon2::PasswordHash::new(&hash).unwrap();
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    argon2::Argon2::default()
                        .verify_password(PASSWORD.as_bytes(), &parsed)
                        .unwrap();
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().unwrap());
    }
    Stats::from(all, start.elapsed().as_secs_f64())
}

async fn scratch_database(base: &str) -> String {
    let name = format!("keygate_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("DATABASE_URL reachable");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

async fn tenant(
    store: &Arc<dyn Store>,
    master: &MasterKeys,
    name: &str,
    alg: SigningAlgorithm,
    hash: &str,
) {
    let row = store
        .upsert_tenant(&TenantUpsert {
            name: name.into(),
            namespace: "bench".into(),
            owner_uid: uuid::Uuid::now_v7().to_string(),
            display_name: name.into(),
            settings: serde_json::from_value(json!({"signIn": {"emailVerification": "off"}}))
                .expect("bench settings parse"),
            deletion_policy: Default::default(),
            generation: 1,
        })
        .await
        .unwrap();
    let key = signing::generate(alg).unwrap();
    let now = Utc::now() - ChronoDuration::hours(1);
    store
        .insert_signing_key(&SigningKeyRecord {
            kid: key.kid.clone(),
            tenant_id: row.id,
            algorithm: alg.as_str().into(),
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
    for i in 0..SIGN_IN_CONCURRENCY {
        let user = store
            .insert_user(&NewUser {
                tenant_id: row.id,
                email: format!("user{i}@example.com"),
                display_name: format!("user {i}"),
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
    let params = HashParams::default();
    let url = scratch_database(&base).await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    store.migrate().await.unwrap();
    let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
    let hasher = PasswordHasher::new(params, cores).unwrap();
    let hash = hasher.hash(PASSWORD).await.unwrap();
    for (name, alg) in [
        ("ed", SigningAlgorithm::EdDSA),
        ("ec", SigningAlgorithm::ES256),
        ("rsa", SigningAlgorithm::RS256),
    ] {
        tenant(&store, &master, name, alg, &hash).await;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = format!("http://{}", listener.local_addr().unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let prefix = format!("kgbench:{}:", uuid::Uuid::now_v7().simple());
    let identity = IdentityService::new(IdentityDeps {
        store: store.clone(),
        master_keys: master.clone(),
        clock: clock.clone(),
        ephemeral: Arc::new(
            RedisEphemeral::connect(&redis, &prefix)
                .await
                .expect("Redis"),
        ),
        hasher: hasher.clone(),
        mailer: Arc::new(NoMailer),
        public_url: gw.clone(),
        breached: BreachedList::default(),
        limits: RateLimits {
            sign_in_per_ip: u64::MAX / 2,
            ..RateLimits::default()
        },
        registry: prometheus::Registry::new(),
    });
    let app = keygate_gateway::app(AppState::builder(identity).build());
    tokio::spawn(keygate_gateway::server::serve(
        listener,
        app,
        keygate_gateway::server::ClientTimeouts::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(SIGN_IN_CONCURRENCY)
        .build()
        .unwrap();

    println!(
        "keygate identity benchmark: {cores} cores, argon2id m={} KiB t={} p={}, {SIGN_IN_CONCURRENCY} concurrent sign-in clients, {CONCURRENCY} refresh clients, {} s per phase\n",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        phase().as_secs()
    );

    // 1. Sign-ins (peak RSS measured over this phase alone), then raw argon2id on as many
    //    OS threads as cores, the physical limit, in the same run.
    let before = status_mib("VmRSS:");
    reset_peak_rss();
    let signin = {
        let (http, gw) = (http.clone(), gw.clone());
        load(SIGN_IN_CONCURRENCY, move |t| {
            let (http, gw) = (http.clone(), gw.clone());
            async move {
                let r = http
                    .post(format!("{gw}/t/ed/login"))
                    .json(&json!({"email": format!("user{t}@example.com"), "password": PASSWORD}))
                    .send()
                    .await;
                r.is_ok_and(|r| r.status().is_success())
            }
        })
        .await
    };
    let signin_peak = peak_rss_mib();
    let after = status_mib("VmRSS:");
    let raw = {
        let hash = hash.clone();
        tokio::task::spawn_blocking(move || raw_argon2id(cores, &hash))
            .await
            .unwrap()
    };
    println!("{}", raw.line("argon2id verify, raw (baseline)"));
    println!("{}", signin.line("sign-in over HTTP (EdDSA)"));
    println!(
        "{:<44} {:>9.2}   (target >= 0.90)",
        "ratio sign-in / argon2id",
        signin.rate() / raw.rate()
    );
    println!(
        "{:<44} {:>9.1} MiB   (target <= 96 on 2 cores; RSS {before:.1} MiB before, {after:.1} MiB after)\n",
        format!("peak RSS during {SIGN_IN_CONCURRENCY} concurrent sign-ins"),
        signin_peak
    );

    // 2. Refresh rotation against a bare durable single-row UPDATE … RETURNING.
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
    for (name, label) in [("ed", "EdDSA"), ("ec", "ES256"), ("rsa", "RS256")] {
        let mut chains = Vec::new();
        for t in 0..CONCURRENCY {
            let v: Value = http
                .post(format!("{gw}/t/{name}/login"))
                .json(&json!({"email": format!("user{t}@example.com"), "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            chains.push(tokio::sync::Mutex::new(
                v["refresh_token"].as_str().unwrap().to_owned(),
            ));
        }
        let chains = Arc::new(chains);
        let (http2, gw2) = (http.clone(), gw.clone());
        let stats = load(CONCURRENCY, move |t| {
            let (http, gw, chains) = (http2.clone(), gw2.clone(), chains.clone());
            async move {
                let mut token = chains[t].lock().await;
                let body = format!(
                    "grant_type=refresh_token&client_id=keygate&refresh_token={}",
                    *token
                );
                let Ok(r) = http
                    .post(format!("{gw}/t/{name}/oauth2/token"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                else {
                    return false;
                };
                if !r.status().is_success() {
                    return false;
                }
                let v: Value = r.json().await.unwrap_or(Value::Null);
                match v["refresh_token"].as_str() {
                    Some(next) => {
                        *token = next.to_owned();
                        true
                    }
                    None => false,
                }
            }
        })
        .await;
        println!(
            "{}",
            stats.line(&format!("refresh rotation over HTTP ({label})"))
        );
        println!(
            "{:<44} {:>9.2}   (target >= 0.40 for EdDSA/ES256)",
            format!("ratio rotation / UPDATE ({label})"),
            stats.rate() / bare.rate()
        );
    }
    println!(
        "\npeak RSS of this process (gateway + load generator): {:.1} MiB",
        peak_rss_mib()
    );
    println!(
        "reference (../shared/TOOLING.md): argon2id verify ~119/s on 2 cores; UPDATE … RETURNING ~9,000/s"
    );
}
