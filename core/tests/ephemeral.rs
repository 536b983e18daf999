//! The ephemeral store's contract, run against the in-process stand-in and the real Redis
//! on 127.0.0.1 (`KEYGATE_TEST_REDIS_URL`, default redis://127.0.0.1:6379).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use keygate_core::ephemeral::{Ephemeral, MemoryEphemeral, RedisEphemeral};
use std::time::{Duration, Instant};

fn redis_url() -> String {
    std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or run) uses, so tests run in parallel on one Redis.
fn unique_prefix() -> String {
    format!("kgtest:{}:", uuid::Uuid::new_v4())
}

async fn redis(prefix: &str) -> RedisEphemeral {
    RedisEphemeral::connect(&redis_url(), prefix)
        .await
        .expect("Redis on 127.0.0.1:6379 (set KEYGATE_TEST_REDIS_URL)")
}

async fn contract(store: &dyn Ephemeral) {
    // Rate-limit windows count and reset.
    assert_eq!(store.hit("ip:1", Duration::from_secs(1)).await.unwrap(), 1);
    assert_eq!(store.hit("ip:1", Duration::from_secs(1)).await.unwrap(), 2);
    assert_eq!(store.hit("ip:2", Duration::from_secs(1)).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        store.hit("ip:1", Duration::from_secs(1)).await.unwrap(),
        1,
        "window reset"
    );

    // Single-use values.
    store
        .put("state:a", b"v", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        store.get("state:a").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        store.take("state:a").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        store.take("state:a").await.unwrap(),
        None,
        "second take finds nothing"
    );

    // Values expire.
    store
        .put("short", b"x", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.get("short").await.unwrap(), None);

    // Revocation is visible locally at once.
    assert!(!store.revocations().contains("sess-1"));
    store
        .revoke("sess-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(store.revocations().contains("sess-1"));
    assert!(!store.revocations().contains("sess-2"));
    store.ping().await.unwrap();
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(&MemoryEphemeral::new()).await;
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    contract(&redis(&unique_prefix()).await).await;
}

#[tokio::test]
async fn a_revocation_reaches_every_replica() {
    let prefix = unique_prefix();
    let a = redis(&prefix).await;
    let b = redis(&prefix).await;
    a.revoke("session-42", Duration::from_secs(60))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.revocations().contains("session-42") {
        assert!(
            Instant::now() < deadline,
            "replica b never heard of the revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // b heard it on the channel (the count `/metrics` exports); what b learnt at start-up
    // by resync was not pushed.
    assert_eq!(b.revocations().pushed(), 1);
    // Other tenants' runs (other prefixes) are not affected.
    let other = redis(&unique_prefix()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!other.revocations().contains("session-42"));
}

#[tokio::test]
async fn a_replica_started_later_resyncs_earlier_revocations() {
    let prefix = unique_prefix();
    let a = redis(&prefix).await;
    a.revoke("key-7", Duration::from_secs(60)).await.unwrap();
    // c was not subscribed when the message went out: it must learn from the resync.
    let c = redis(&prefix).await;
    assert!(c.revocations().contains("key-7"));
    assert_eq!(
        c.revocations().pushed(),
        0,
        "a resync is not a pushed message"
    );
}
