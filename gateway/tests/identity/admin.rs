//! The bootstrap administrator: suspend, reactivate and erase accounts.

use crate::support::env::{PASSWORD, env};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::AuditFilter;
use keygate_gateway::identity::{BreachedList, IdentityDeps, IdentityService, RateLimits};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

#[sqlx::test(migrations = false)]
async fn bootstrap_admin_suspends_and_erases(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({"signIn": {"registration": "closed"}}),
        )
        .await;
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "x@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("registration_closed"))
    );

    let identity = IdentityService::new(IdentityDeps {
        store: env.store.clone(),
        master_keys: env.master.clone(),
        clock: env.clock.clone(),
        ephemeral: Arc::new(keygate_core::ephemeral::MemoryEphemeral::new()),
        hasher: env.hasher.clone(),
        mailer: env.mailer.clone(),
        public_url: env.url.clone(),
        breached: BreachedList::default(),
        limits: RateLimits::default(),
        registry: prometheus::Registry::new(),
    });
    let admin = keygate_core::config::BootstrapAdmin {
        tenant: "acme".into(),
        email: "root@example.com".into(),
        password: keygate_core::config::Secret::new("first-boot-secret-91"),
    };
    let first = identity.bootstrap(&admin).await.unwrap();
    assert!(matches!(
        first,
        keygate_gateway::identity::Bootstrap::Created(_)
    ));
    assert!(matches!(
        identity.bootstrap(&admin).await.unwrap(),
        keygate_gateway::identity::Bootstrap::AlreadyExists(_)
    ));

    let (s, body) = env
        .login("acme", "root@example.com", "first-boot-secret-91")
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("password_change_required"))
    );
    let (s, admin) = env
        .post_json("/t/acme/login", json!({"email": "root@example.com", "password": "first-boot-secret-91", "new_password": "admin-chosen-secret-92"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{admin}");
    let admin_token = admin["access_token"].as_str().unwrap().to_owned();
    // The change is done for good: the next sign-in needs only the new password.
    let (s, again) = env
        .login("acme", "root@example.com", "admin-chosen-secret-92")
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");

    let user = env.user(&t.row, "dan@example.com").await;
    let (_, dan) = env.login("acme", "dan@example.com", PASSWORD).await;
    let (s, _) = env
        .form(
            &format!("/t/acme/users/{user}/suspend"),
            &[],
            dan["access_token"].as_str(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only admins suspend");
    let (s, _) = env
        .form(
            &format!("/t/acme/users/{user}/suspend"),
            &[],
            Some(&admin_token),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env
        .refresh("acme", dan["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, body) = env.login("acme", "dan@example.com", PASSWORD).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_suspended"))
    );
    let (s, _) = env
        .form(
            &format!("/t/acme/users/{user}/reactivate"),
            &[],
            Some(&admin_token),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env.login("acme", "dan@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);

    let r = env
        .http
        .delete(format!("{}/t/acme/users/{user}", env.url))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(env.store.user(t.row.id, user).await.unwrap().is_none());
    let (s, _) = env.login("acme", "dan@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let trail = env
        .store
        .query_audit(
            t.row.id,
            &AuditFilter {
                actor_user_id: Some(user),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert!(
        !trail.is_empty(),
        "audit rows of the erased user stay, under the bare id"
    );
    assert!(
        trail
            .iter()
            .all(|e| !e.data.to_string().contains("dan@example.com"))
    );
    let r = env
        .http
        .delete(format!("{}/t/acme/users/{user}", env.url))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
