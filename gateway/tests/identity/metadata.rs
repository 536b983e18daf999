//! The authorization-server metadata (RFC 8414, also served as OpenID Connect discovery) read
//! by an independent client library: `openid-client` (npm, OpenID-certified) finds it where
//! the RFC puts it, checks it, and uses the token endpoint it names.

use crate::support::env::*;
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth-client")
}

#[sqlx::test(migrations = false)]
async fn an_independent_oauth_client_reads_the_metadata_and_refreshes_with_it(pool: sqlx::PgPool) {
    assert!(
        client_dir().join("node_modules/openid-client").exists(),
        "openid-client is missing: run `npm ci` in gateway/tests/oauth-client (scripts/test does)"
    );
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "ada@example.com").await;
    let (status, tokens) = env
        .post_json(
            "/t/acme/login",
            json!({"email": "ada@example.com", "password": PASSWORD, "client_id": "keygate"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(client_dir().join("check-metadata.mjs"))
            .env("KG_ISSUER", format!("{}/t/acme", env.url))
            .env("KG_CLIENT_ID", "keygate")
            .env("KG_REFRESH_TOKEN", refresh)
            .current_dir(client_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("openid-client finished within 60 s")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openid-client refused the metadata or the token endpoint:\n{stdout}\n{stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    let metadata = &seen["metadata"];
    assert_eq!(metadata["issuer"], format!("{}/t/acme", env.url));
    assert_eq!(
        seen["refreshed"],
        json!({"token_type": "bearer", "has_access_token": true, "has_refresh_token": true})
    );

    // What OpenID Connect Discovery requires is there, and only what exists is listed.
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    assert_eq!(
        metadata["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"
        ])
    );
    assert_eq!(metadata["subject_types_supported"], json!(["public"]));
    // The tenant's own algorithm, and RS256, which OpenID Connect requires and every tenant
    // keeps a key of for clients that register it.
    assert_eq!(
        metadata["id_token_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    for absent in [
        "registration_endpoint",
        "pushed_authorization_request_endpoint",
    ] {
        assert!(
            metadata.get(absent).is_none(),
            "{absent} listed: {metadata}"
        );
    }
    let http = reqwest::Client::new();
    for endpoint in [
        "authorization_endpoint",
        "end_session_endpoint",
        "device_authorization_endpoint",
        "jwks_uri",
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "userinfo_endpoint",
        "keygate_login_endpoint",
    ] {
        let url = metadata[endpoint].as_str().unwrap();
        let status = http.post(url).send().await.unwrap().status();
        assert_ne!(
            status,
            StatusCode::NOT_FOUND,
            "{endpoint} {url} does not exist"
        );
    }
    // The issuer-relative form and OpenID Connect discovery answer the same document.
    let relative: Value = reqwest::get(format!(
        "{}/t/acme/.well-known/oauth-authorization-server",
        env.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(&relative, metadata);
    let oidc = reqwest::get(format!(
        "{}/t/acme/.well-known/openid-configuration",
        env.url
    ))
    .await
    .unwrap();
    assert_eq!(oidc.status(), StatusCode::OK);
    let oidc: Value = oidc.json().await.unwrap();
    assert_eq!(&oidc, metadata);
}
