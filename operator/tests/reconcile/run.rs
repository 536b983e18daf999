//! `keygate_operator::run` with the manifest-folder source: it reconciles, counts in the
//! registry it was given (not a process-wide one), serves that registry on `/metrics` (the
//! reconcile and store series move),
//! writes `status.yaml` under the data folder, and returns when shutdown resolves.

use super::*;
use keygate_core::config::OperatorConfig;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::store::{SqliteStore, Store};
use keygate_operator::{RunConfig, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nobody listens on right now.
async fn free_port() -> u16 {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    probe.local_addr().unwrap().port()
}

fn tenant_reconciles(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "keygate_operator_reconciles_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "kind" && l.value() == "tenant")
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// What `keygate operator --manifests <dir>/manifests` runs with, on a SQLite store in `dir`.
async fn folder_config(
    dir: &std::path::Path,
    registry: &prometheus::Registry,
    redis_url: Option<keygate_core::config::Secret>,
) -> (RunConfig, Arc<dyn Store>) {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("keygate.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port().await).parse().unwrap();
    let config = RunConfig {
        operator: OperatorConfig {
            listen,
            lease_name: "keygate-operator".into(),
            pod_name: None,
            pod_namespace: None,
            watch_namespaces: Vec::new(),
            public_url: "https://auth.example.com".into(),
            data_dir: dir.join("data"),
        },
        master_keys: MasterKeys::parse(&MasterKeys::generate_spec("test").unwrap()).unwrap(),
        store: store.clone(),
        redis_url,
        source: Source::Directory(manifests),
        registry: registry.clone(),
    };
    (config, store)
}

/// The operator's `/metrics` page.
async fn scrape(listen: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// The value of the one sample of the scrape named exactly `series` (name and labels).
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn run_reconciles_a_folder_counts_in_its_own_registry_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let (config, _) = folder_config(dir.path(), &registry, None).await;
    let listen = config.operator.listen;
    std::fs::write(
        dir.path().join("manifests/tenant.yaml"),
        tenant("demo", "default", ""),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(keygate_operator::run(config, async {
        let _ = stopped.await;
    }));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        let status =
            std::fs::read_to_string(dir.path().join("data/status.yaml")).unwrap_or_default();
        if status.contains("Tenant default/demo") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no status.yaml with the tenant"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        tenant_reconciles(&registry),
        1,
        "counted in the given registry"
    );
    assert!(
        status.contains("issuerUrl: https://auth.example.com/t/demo"),
        "{status}"
    );

    let response = scrape(listen).await;
    let reconciled = r#"keygate_operator_reconcile_duration_seconds_count{kind="tenant"}"#;
    assert_eq!(sample(&response, reconciled), 1.0, "{response}");
    let stored = r#"keygate_store_call_duration_seconds_count{operation="upsert_tenant"}"#;
    assert!(sample(&response, stored) >= 1.0, "{response}");
    // The folder source reconciles without a Lease: never the leader.
    assert_eq!(sample(&response, "keygate_operator_leader"), 0.0);
    assert_eq!(sample(&response, "keygate_db_pool_waits_total"), 0.0);

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
}

/// `keygate operator --manifests` with `KEYGATE_REDIS_URL`: deleting an ApiKey manifest
/// pushes the revocation to the gateways' Redis, so a gateway replica refuses the key at
/// once instead of when its cache of the proven key expires.
#[tokio::test]
async fn run_on_a_folder_pushes_api_key_revocations_to_the_gateways_redis() {
    use keygate_core::ephemeral::RedisEphemeral;
    let redis =
        std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // A gateway replica listening where gateways listen (the prefix `keygate gateway` uses).
    let gateway = RedisEphemeral::connect(&redis, "kg:").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let (config, store) = folder_config(
        dir.path(),
        &registry,
        Some(keygate_core::config::Secret::new(redis)),
    )
    .await;
    let manifests = dir.path().join("manifests");
    std::fs::write(manifests.join("tenant.yaml"), tenant("demo", "default", "")).unwrap();
    std::fs::write(manifests.join("key.yaml"), api_key("ci", "")).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(keygate_operator::run(config, async {
        let _ = stopped.await;
    }));

    let wait = |what: &'static str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        move || assert!(std::time::Instant::now() < deadline, "{what}")
    };
    let not_yet = wait("the key was never issued");
    let key_id = loop {
        let tenant = store.tenant_by_name("demo").await.unwrap();
        if let Some(tenant) = tenant {
            let keys = store.list_api_keys(tenant.id).await.unwrap();
            if let Some(key) = keys.first() {
                break key.id.to_string();
            }
        }
        not_yet();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!gateway.revocations().contains(&key_id));

    std::fs::remove_file(manifests.join("key.yaml")).unwrap();
    // The folder is polled every 2 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while !gateway.revocations().contains(&key_id) {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway replica never heard of the revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
}
