//! A `{tenant}` path segment that cannot be a tenant's name (issue 14.11): every API route,
//! OIDC endpoint and page answers 404 problem+json `tenant_not_found` (the OAuth endpoints
//! their own 404 format, forward-auth a 403 denial), never a 500. Requests are written on a
//! plain socket, because an HTTP client would normalize `%2e%2e` away.

use crate::support::env::env;
use keygate_core::crypto::signing::SigningAlgorithm;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A body and its content type.
type Body = Option<(&'static str, &'static str)>;

/// Names no tenant can have, as they appear in the URL.
const BAD_NAMES: [&str; 5] = [
    "%0a",
    "%2e%2e",
    "Acme",
    "ac%20me",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// One request written as is: (status, content type, body as JSON if it is JSON).
async fn raw(
    url: &str,
    method: &str,
    target: &str,
    body: Option<(&str, &str)>,
) -> (u16, String, Value) {
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let content = body.map_or("", |(_, b)| b);
    if let Some((content_type, b)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    conn.write_all(format!("{head}{content}").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (
        status,
        content_type,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[sqlx::test(migrations = false)]
async fn a_path_that_names_no_tenant_is_a_clean_404(pool: sqlx::PgPool) {
    let env = env(pool).await;
    env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    let form = Some((
        "application/x-www-form-urlencoded",
        "email=a%40b.c&password=x",
    ));
    let json_body = Some(("application/json", r#"{"email":"a@b.c","password":"x"}"#));
    let problem_routes: [(&str, &str, Body); 16] = [
        ("POST", "login", form),
        ("POST", "login", json_body),
        ("POST", "accounts", json_body),
        ("GET", "me/sessions", None),
        ("DELETE", "me/sessions/0193", None),
        ("GET", "userinfo", None),
        ("POST", "users/0193/suspend", None),
        ("GET", ".well-known/oauth-authorization-server", None),
        ("GET", "jwks.json", None),
        ("GET", "signin", None),
        ("POST", "signin", form),
        ("GET", "signup", None),
        ("GET", "forgot-password", None),
        ("GET", "reset-password", None),
        ("GET", "theme.css", None),
        ("GET", "mfa", None),
    ];
    for name in BAD_NAMES {
        for (method, rest, body) in problem_routes {
            let target = format!("/t/{name}/{rest}");
            let (status, content_type, problem) = raw(&env.url, method, &target, body).await;
            assert_eq!(
                (status, content_type.as_str(), problem["code"].as_str()),
                (404, "application/problem+json", Some("tenant_not_found")),
                "{method} {target}: {problem}"
            );
        }
        let target = format!("/t/{name}/oauth2/token");
        let (status, _, error) = raw(&env.url, "POST", &target, form).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (404, Some("invalid_request")),
            "{target}"
        );
        let target = format!("/forward-auth?tenant={name}");
        let (status, _, _) = raw(&env.url, "GET", &target, None).await;
        assert_eq!(status, 403, "{target}");
    }
    // The real tenant's name still works.
    let (status, _, _) = raw(&env.url, "GET", "/t/acme/jwks.json", None).await;
    assert_eq!(status, 200);
}
