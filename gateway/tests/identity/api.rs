//! The HTTP contract: bad input gets documented 4xx answers (never 5xx) and `/openapi.json`
//! describes every route.

use crate::support::env::env;
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[sqlx::test(migrations = false)]
async fn bad_input_gets_documented_4xx_never_5xx(pool: sqlx::PgPool) {
    let env = env(pool).await;
    env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    let post_raw = |path: &str, ct: &str, body: Vec<u8>| {
        env.http
            .post(format!("{}{path}", env.url))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let code = |r: reqwest::Response| async move {
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (
            status,
            body["code"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\": \"a@b.c\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\": 5, \"password\": []}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/t/acme/login",
            "application/json",
            format!(
                "{{\"email\":\"a@b.c\",\"password\":\"{}\"}}",
                "x".repeat(1 << 20)
            )
            .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/t/acme/login",
            "application/json",
            b"{\"email\":\"nobody@b.c\",\"password\":\"whatever-it-is\"}".to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        ),
        (
            "/t/nope/login",
            "application/json",
            b"{\"email\":\"a@b.c\",\"password\":\"whatever-it-is\"}".to_vec(),
            StatusCode::NOT_FOUND,
            "tenant_not_found",
        ),
        (
            // Neither JSON nor a form: refused, not redirected to the HTML form.
            "/t/acme/login",
            "text/plain",
            b"email=a@b.c".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"[1,2]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/t/acme/accounts",
            "text/plain",
            b"hi".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"{\"email\":\"new@b.c\",\"password\":\"password123\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_breached",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"{\"email\":\"new@b.c\",\"password\":\"short\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_policy",
        ),
        (
            "/t/acme/accounts",
            "application/json",
            b"{\"email\":\"not-an-email\",\"password\":\"violet-anchor-tundra-42\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=password&username=a".to_vec(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=client_credentials".to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"refresh_token=x".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=refresh_token".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/t/acme/oauth2/token",
            "application/x-www-form-urlencoded",
            b"grant_type=refresh_token&refresh_token=nope".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "/t/acme/oauth2/token",
            "application/json",
            b"{\"grant_type\":\"refresh_token\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/t/acme/oauth2/introspect",
            "application/x-www-form-urlencoded",
            b"token=abc".to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "/t/acme/oauth2/revoke",
            "application/x-www-form-urlencoded",
            b"token=unknown".to_vec(),
            StatusCode::OK,
            "",
        ),
        (
            "/t/acme/accounts/verify-email",
            "application/json",
            b"{\"token\":\"nope\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_link",
        ),
        (
            "/t/acme/accounts/password-reset/confirm",
            "application/json",
            b"{\"token\":\"nope\",\"new_password\":\"violet-anchor-tundra-43\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_link",
        ),
    ];
    for (path, ct, body, status, expected) in cases {
        let (got, c) = code(post_raw(path, ct, body).await.unwrap()).await;
        assert_eq!((got, c.as_str()), (status, expected), "{path} {ct}");
    }
    for path in ["/t/acme/userinfo", "/t/acme/me/sessions"] {
        let r = env
            .http
            .get(format!("{}{path}", env.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

/// Every `.route(…)` of the identity routers, discovery and the explain route, read from the source, as (method, path).
fn routes_in_source() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("routes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(dir.join("oidc.rs"));
    // The OpenID Provider's browser endpoints live with the pages.
    files.push(dir.join("pages/authorize.rs"));
    files.push(dir.join("pages/end_session.rs"));
    // Forward-auth's admin route (what `keygate explain` asks).
    files.push(dir.join("forward_auth/explain.rs"));
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for chunk in text.split(".route(").skip(1) {
            let chunk = chunk.trim_start();
            let Some(rest) = chunk.strip_prefix('"') else {
                continue;
            };
            let (path, rest) = rest.split_once('"').unwrap();
            let end = rest
                .find(".route(")
                .or_else(|| rest.find("\n}"))
                .unwrap_or(rest.len());
            for method in ["get", "post", "delete", "put", "patch"] {
                let call = format!("{method}(");
                if rest[..end].match_indices(&call).any(|(i, _)| {
                    i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                }) {
                    out.push((method.to_owned(), path.to_owned()));
                }
            }
        }
    }
    out
}

#[sqlx::test(migrations = false)]
async fn openapi_describes_every_route(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", env.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let routes = routes_in_source();
    assert!(routes.len() >= 20, "{routes:?}");
    for (method, path) in &routes {
        let op = &doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is routed but missing from /openapi.json"
        );
        assert!(
            op["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|k| k.starts_with('4'))
                    || path.contains("jwks")
                    || path.contains("logout-all")
                    || path.ends_with("/sessions")),
            "{method} {path} documents no error response"
        );
        // What the shared extractors answer is documented wherever they run.
        if path.contains("{tenant}") && !path.contains("/oauth2/introspect") {
            assert!(op["responses"]["404"].is_object(), "{method} {path}: 404");
        }
        if op["requestBody"]["content"]["application/json"].is_object() {
            for status in ["400", "413", "415", "422"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path}: {status}"
                );
            }
        }
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "the document lists an operation that is not routed"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}
