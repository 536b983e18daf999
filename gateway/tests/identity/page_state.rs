//! Anonymous page views store nothing: the forms' CSRF tokens are stateless (an HMAC over the
//! browser's binding cookie and the render time), so 10,000 GETs leave the ephemeral store as
//! they found it, and a form still submits only with its own browser's cookie.

use crate::support::RequestExt;
use crate::support::env::*;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::ephemeral::{Ephemeral, MemoryEphemeral};
use keygate_core::store::Store;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn ten_thousand_anonymous_page_views_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(keygate_core::clock::ManualClock::new(chrono::Utc::now()));
    let url = format!("sqlite:{}", dir.path().join("keygate.db").display());
    let store: Arc<dyn Store> = Arc::new(
        keygate_core::store::SqliteStore::connect(&url)
            .await
            .unwrap()
            .with_clock(clock.clone()),
    );
    let memory = Arc::new(MemoryEphemeral::new());
    let ephemeral: Arc<dyn Ephemeral> = memory.clone();
    let env = serve(store, ephemeral, clock, Default::default()).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "ada@example.com").await;

    let pages = [
        "/t/acme/signin",
        "/t/acme/signup",
        "/t/acme/forgot-password",
    ];
    let mut views = Vec::new();
    for worker in 0..8 {
        let http = env.http.clone();
        let base = env.url.clone();
        views.push(tokio::spawn(async move {
            for i in 0..1250 {
                let path = pages[(worker + i) % pages.len()];
                let r = http.get(format!("{base}{path}")).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK, "GET {path}");
            }
        }));
    }
    for v in views {
        v.await.unwrap();
    }
    assert_eq!(
        memory.len(),
        0,
        "page views left entries in the ephemeral store"
    );

    // The forms still work, and only for the browser the page was rendered for.
    let (status, cookies, _) = env
        .page_post(
            "/t/acme/signin",
            &[("email", "ada@example.com"), ("password", PASSWORD)],
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cookies.iter().any(|c| c.contains("keygate_session=")));
    let page = env
        .http
        .get(format!("{}/t/acme/signin", env.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // Without the page's binding cookie (another browser), the token is refused.
    let refused = env
        .http
        .post(format!("{}/t/acme/signin", env.url))
        .header(
            "cookie",
            "__Host-keygate_csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .form_pairs(&[
            ("csrf", token.as_str()),
            ("email", "ada@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_in_process_store_sweeps_what_has_expired() {
    let memory = MemoryEphemeral::new();
    for i in 0..20_000 {
        memory
            .put(&format!("k{i}"), b"v", std::time::Duration::from_millis(1))
            .await
            .unwrap();
        memory
            .hit(&format!("w{i}"), std::time::Duration::from_millis(1))
            .await
            .unwrap();
        if i % 5_000 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    memory
        .put("last", b"v", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    // Without sweeping, 40,001 entries; with it, at most about twice what was live.
    assert!(memory.len() < 12_000, "{} entries held", memory.len());
}
