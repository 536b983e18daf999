//! Account links: verification and reset tokens are single use and expire; password change.

use crate::support::env::{PASSWORD, env};
use chrono::Duration;
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[sqlx::test(migrations = false)]
async fn reset_and_verification_tokens_are_single_use_and_expire(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;

    // Verification: single use.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "lee@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let token = env.mailed_token("lee@example.com", "confirm").await;
    let (s, _) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_link"))
    );
    // Verification: expires after 24 h.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "max@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let late = env.mailed_token("max@example.com", "confirm").await;
    env.clock.advance(Duration::hours(25));
    let (s, _) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": late}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Signing up again with a taken address answers the same.
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "LEE@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("accepted"))
    );

    // Reset: the same answer for unknown accounts; the link is single use.
    let (s1, b1) = env
        .post_json(
            "/t/acme/accounts/password-reset",
            json!({"email": "ghost@example.com"}),
        )
        .await;
    let (s2, b2) = env
        .post_json(
            "/t/acme/accounts/password-reset",
            json!({"email": "lee@example.com"}),
        )
        .await;
    assert_eq!((s1, &b1), (s2, &b2));
    let reset = env.mailed_token("lee@example.com", "reset").await;
    let (_, login) = env.login("acme", "lee@example.com", PASSWORD).await;
    let new_password = "saffron-glacier-orbit-77";
    let (s, body) = env
        .post_json(
            "/t/acme/accounts/password-reset/confirm",
            json!({"token": reset, "new_password": new_password}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/password-reset/confirm",
            json!({"token": reset, "new_password": "another-fine-pass-88"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "single use");
    let (s, _) = env
        .refresh("acme", login["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a reset ends every session");
    let (s, _) = env.login("acme", "lee@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, login) = env.login("acme", "lee@example.com", new_password).await;
    assert_eq!(s, StatusCode::OK);
    // Reset: expires after an hour.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/password-reset",
            json!({"email": "lee@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let stale = loop {
        let tok = env.mailed_token("lee@example.com", "reset").await;
        if tok != reset {
            break tok;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    env.clock.advance(Duration::minutes(61));
    let (s, _) = env
        .post_json(
            "/t/acme/accounts/password-reset/confirm",
            json!({"token": stale, "new_password": "another-fine-pass-88"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Change: current password required, no reuse of recent passwords.
    let (_, login2) = env.login("acme", "lee@example.com", new_password).await;
    let access = login2["access_token"].as_str().unwrap();
    let change = |current: &str, new: &str| {
        env.http
            .post(format!("{}/t/acme/me/password", env.url))
            .bearer_auth(access)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    let r = change("not-my-password", "cobalt-meadow-river-31")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = change(new_password, PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "password_reused");
    let r = change(new_password, "cobalt-meadow-river-31")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let _ = login;
    let kinds = env.audit_kinds(&t.row).await;
    for kind in [
        "password.reset_requested",
        "password.reset",
        "password.changed",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind}: {kinds:?}");
    }
}
