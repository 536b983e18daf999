//! End-to-end walks: sign up to logout-all on PostgreSQL and Redis, and the embedded
//! mode of `keygate dev` on SQLite.

use crate::support::env::{PASSWORD, env, env_sqlite, verify_independently};
use chrono::Duration;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::AuditFilter;
use reqwest::StatusCode;
use serde_json::json;

#[sqlx::test(migrations = false)]
async fn full_walk_sign_up_to_logout_all(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("walk", SigningAlgorithm::RS256, json!({})).await;
    let email = "ada@example.com";

    // Sign up; unverified accounts cannot sign in.
    let (s, body) = env
        .post_json(
            "/t/walk/accounts",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let (s, body) = env.login("walk", email, PASSWORD).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_not_verified"))
    );

    // Verify, sign in, call userinfo.
    let token = env.mailed_token(email, "confirm").await;
    let (s, _) = env
        .post_json("/t/walk/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, login) = env.login("walk", email, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let access = login["access_token"].as_str().unwrap();
    let claims = verify_independently(&env.url, "walk", access).await;
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "sid",
        "tenant",
        "roles",
        "scope",
        "amr",
        "acr",
        "auth_time",
    ] {
        assert!(
            claims.get(claim).is_some(),
            "claim {claim} missing: {claims}"
        );
    }
    let (s, info) = env.get("/t/walk/userinfo", access).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["email"], email);
    assert_eq!(info["email_verified"], true);

    // Refresh, then present the old refresh token again: the family is revoked.
    let old = login["refresh_token"].as_str().unwrap().to_owned();
    let (s, first) = env.refresh("walk", &old).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let newer = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(newer, old);
    env.clock.advance(Duration::seconds(11)); // past the 10 s grace window
    let (s, body) = env.refresh("walk", &old).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, _) = env.refresh("walk", &newer).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "the successor dies with its family"
    );
    let (s, _) = env
        .get("/t/walk/userinfo", first["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "access tokens of a revoked session are refused at once"
    );
    assert!(
        env.audit_kinds(&t.row)
            .await
            .contains(&"refresh.reuse_detected".to_owned())
    );
    let alerts = env
        .mailer
        .sent()
        .into_iter()
        .filter(|m| m.subject.contains("ended for your safety"))
        .count();
    assert!(alerts <= 1);

    // Sign in again, revoke that session, refresh is refused.
    let (_, login) = env.login("walk", email, PASSWORD).await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let sid = login["session_id"].as_str().unwrap().to_owned();
    let (s, list) = env.get("/t/walk/me/sessions", &access).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == sid.as_str() && x["current"] == true)
    );
    let r = env
        .http
        .delete(format!("{}/t/walk/me/sessions/{sid}", env.url))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = env
        .refresh("walk", login["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Two sessions, logout-all ends both.
    let (_, a) = env.login("walk", email, PASSWORD).await;
    let (_, b) = env.login("walk", email, PASSWORD).await;
    let (s, out) = env
        .form(
            "/t/walk/me/sessions/logout-all",
            &[],
            a["access_token"].as_str(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["revoked"], 2);
    for tokens in [&a, &b] {
        let (s, _) = env
            .refresh("walk", tokens["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = env
            .get("/t/walk/userinfo", tokens["access_token"].as_str().unwrap())
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let kinds = env.audit_kinds(&t.row).await;
    for kind in [
        "account.signed_up",
        "account.email_verified",
        "login.succeeded",
        "login.failed",
        "session.revoked",
        "session.logout_all",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "audit {kind} missing: {kinds:?}"
        );
    }
    let events = env
        .store
        .query_audit(t.row.id, &AuditFilter::default(), 1000)
        .await
        .unwrap();
    assert!(
        events.iter().all(|e| e.ip.is_some()),
        "every event carries the client IP"
    );
}

#[tokio::test]
async fn the_embedded_mode_walks_sign_up_to_reuse_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_sqlite(&dir).await;
    let t = env.tenant("dev", SigningAlgorithm::EdDSA, json!({})).await;
    let (s, _) = env
        .post_json(
            "/t/dev/accounts",
            json!({"email": "dev@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let token = env.mailed_token("dev@example.com", "confirm").await;
    let (s, _) = env
        .post_json("/t/dev/accounts/verify-email", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, login) = env.login("dev", "dev@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    verify_independently(&env.url, "dev", login["access_token"].as_str().unwrap()).await;
    let old = login["refresh_token"].as_str().unwrap().to_owned();
    let (s, next) = env.refresh("dev", &old).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    env.clock.advance(Duration::seconds(11));
    let (s, _) = env.refresh("dev", &old).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env
        .refresh("dev", next["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the family is revoked");
    assert!(
        env.audit_kinds(&t.row)
            .await
            .contains(&"refresh.reuse_detected".to_owned())
    );
}
