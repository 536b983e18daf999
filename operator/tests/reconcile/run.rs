//! `keygate_operator::run` with the manifest-folder source: it reconciles, counts in the
//! registry it was given (not a process-wide one), serves that registry on `/metrics`,
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

#[tokio::test]
async fn run_reconciles_a_folder_counts_in_its_own_registry_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("tenant.yaml"), tenant("demo", "default", "")).unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("keygate.db").display()
    );
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port().await).parse().unwrap();
    let registry = prometheus::Registry::new();
    let config = RunConfig {
        operator: OperatorConfig {
            listen,
            lease_name: "keygate-operator".into(),
            pod_name: None,
            pod_namespace: None,
            watch_namespaces: Vec::new(),
            public_url: "https://auth.example.com".into(),
            data_dir: dir.path().join("data"),
        },
        master_keys: MasterKeys::parse(&MasterKeys::generate_spec("test").unwrap()).unwrap(),
        store: Arc::new(store),
        redis_url: None,
        source: Source::Directory(manifests),
        registry: registry.clone(),
    };
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

    let mut stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.contains("keygate_operator_reconciles_total{kind=\"tenant\"}"),
        "{response}"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
}
