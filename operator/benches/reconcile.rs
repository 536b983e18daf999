//! Reconciles 10,000 ApiKeys and 1,000 Roles (in 10 tenants) from a folder into a fresh
//! PostgreSQL database, from empty, then resyncs the unchanged folder. Prints the time and
//! peak memory of each, and checks the resync wrote nothing.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p keygate-operator`
//! (not run by the test script). `KEYGATE_BENCH_KEYS`, `KEYGATE_BENCH_ROLES` and
//! `KEYGATE_BENCH_TENANTS` change the sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark binary, not library code

use keygate_core::clock::SystemClock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::store::{PgStore, Store};
use keygate_operator::directory::sync_once;
use keygate_operator::{Context, DirectorySource};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn write_manifests(dir: &std::path::Path, tenants: usize, keys: usize, roles: usize) {
    for t in 0..tenants {
        let mut yaml = format!(
            "apiVersion: keygate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: bench-{t}\n  namespace: ns-{t}\nspec:\n  signing:\n    algorithm: ES256\n"
        );
        for r in (0..roles).filter(|r| r % tenants == t) {
            write!(
                yaml,
                "---\napiVersion: keygate.dev/v1alpha1\nkind: Role\nmetadata:\n  name: role-{r}\n  namespace: ns-{t}\nspec:\n  tenantRef:\n    name: bench-{t}\n  permissions: [orders.read, orders.write, p{r}.read]\n  subjects:\n    users: [user{r}@example.com]\n    groups: [group-{r}]\n"
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("tenant-{t}.yaml")), yaml).unwrap();
        let mut yaml = String::new();
        for k in (0..keys).filter(|k| k % tenants == t) {
            write!(
                yaml,
                "---\napiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: key-{k}\n  namespace: ns-{t}\nspec:\n  tenantRef:\n    name: bench-{t}\n  secretName: key-{k}\n  roles: [role-{t}]\n  scopes: [read]\n  rotation:\n    every: 720h\n    gracePeriod: 24h\n"
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("keys-{t}.yaml")), yaml).unwrap();
    }
}

/// Rows and the newest `updated_at` of each table the operator writes.
async fn writes(pool: &sqlx::PgPool) -> Vec<(String, i64, Option<chrono::DateTime<chrono::Utc>>)> {
    let mut out = Vec::new();
    for table in [
        "tenants",
        "roles",
        "role_bindings",
        "identity_providers",
        "api_keys",
        "signing_keys",
    ] {
        let column = if matches!(table, "role_bindings" | "signing_keys") {
            "created_at"
        } else {
            "updated_at"
        };
        let (count, newest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            sqlx::AssertSqlSafe(format!("SELECT count(*), max({column}) FROM {table}")),
        )
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((table.to_owned(), count, newest));
    }
    out
}

/// Mean time of one reconcile per kind so far (they run 16 at a time, so these add up to more
/// than the wall time).
fn print_latencies(ctx: &Context) {
    let Some(metrics) = &ctx.metrics else {
        return;
    };
    let line: Vec<String> = ["tenant", "role", "apikey"]
        .iter()
        .map(|kind| {
            let h = metrics.duration.with_label_values(&[kind]);
            let n = h.get_sample_count().max(1);
            format!("{kind} {:.2} ms", h.get_sample_sum() * 1000.0 / n as f64)
        })
        .collect();
    println!("    (mean reconcile latency so far: {})", line.join(", "));
}

fn main() {
    // Phase timings of each pass (folder, sweep, each kind) come from the operator's debug log.
    tracing_subscriber::fmt()
        .with_env_filter("keygate_operator::directory=debug")
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let keys = env_count("KEYGATE_BENCH_KEYS", 10_000);
    let roles = env_count("KEYGATE_BENCH_ROLES", 1_000);
    let tenants = env_count("KEYGATE_BENCH_TENANTS", 10).max(1);
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let database = format!("keygate_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("DATABASE_URL reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{database}");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .unwrap();
    let store = PgStore::from_pool(pool.clone());
    store.migrate().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests(&manifests, tenants, keys, roles);
    let source = DirectorySource::new(manifests, &dir.path().join("data"));
    let ctx = Context::new(
        Arc::new(store),
        MasterKeys::parse(&MasterKeys::generate_spec("bench").unwrap()).unwrap(),
        "https://auth.example.com",
        Arc::new(SystemClock),
    )
    .with_metrics(
        keygate_operator::metrics::Metrics::register(&prometheus::Registry::new()).unwrap(),
    );

    println!(
        "keygate operator: {keys} ApiKeys, {roles} Roles, {tenants} Tenants from a folder into PostgreSQL"
    );
    let started = Instant::now();
    let view = sync_once(&ctx, &source).await.expect("first pass");
    let first = started.elapsed();
    let ready = view.iter().filter(|(_, p)| p.status.is_ready()).count();
    println!(
        "  from empty      {:>8.2} s   peak RSS {:>7.1} MiB   {ready}/{} resources Ready",
        first.as_secs_f64(),
        peak_rss_mib(),
        view.len()
    );

    let started = Instant::now();
    let folder = keygate_operator::directory::load_folder(&source.manifests, &[]).unwrap();
    println!(
        "    (reading and parsing the folder: {:.2} s for {} resources)",
        started.elapsed().as_secs_f64(),
        folder.manifests.len()
    );
    print_latencies(&ctx);

    let before = writes(&pool).await;
    let started = Instant::now();
    sync_once(&ctx, &source).await.expect("resync");
    let resync = started.elapsed();
    let after = writes(&pool).await;
    let wrote_nothing = before == after;
    println!(
        "  steady resync   {:>8.2} s   peak RSS {:>7.1} MiB   wrote nothing: {wrote_nothing}   (target: nothing written, < 2 s)",
        resync.as_secs_f64(),
        peak_rss_mib()
    );
    print_latencies(&ctx);
    if !wrote_nothing {
        println!("  before {before:?}\n  after  {after:?}");
    }

    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(
        wrote_nothing,
        "a resync of an unchanged folder must write nothing"
    );
}
