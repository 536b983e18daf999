//! What a sign-in is granted (issue 14.1): scopes only when standard or held through a Role,
//! only registered clients, and refresh tokens bound to their client on every refresh,
//! grace-window retries included. Forward-auth is asked as a proxy would ask it.

use crate::support::env::{Env, PASSWORD, env, verify_independently};
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Forward-auth's answer for `token` with requirements `query`.
async fn forward_auth(env: &Env, query: &str, token: &str) -> StatusCode {
    env.http
        .get(format!("{}/forward-auth?tenant=acme{query}", env.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn login_with(env: &Env, email: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let (Some(b), Some(more)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(more.clone());
    }
    env.post_json("/t/acme/login", body).await
}

#[sqlx::test(migrations = false)]
async fn nobody_grants_themselves_a_scope_they_do_not_hold(pool: sqlx::PgPool) {
    let env = env(pool).await;
    env.tenant(
        "acme",
        SigningAlgorithm::ES256,
        json!({"signIn": {"registration": "open", "emailVerification": "optional"}}),
    )
    .await;
    // Anyone may sign up here.
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "mallory@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");

    let (s, body) = login_with(
        &env,
        "mallory@example.com",
        json!({"scope": "openid orders.write billing.admin"}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    // One scope not held is enough to refuse.
    let (s, body) = login_with(
        &env,
        "mallory@example.com",
        json!({"scope": "openid billing.admin"}),
    )
    .await;
    assert_eq!(body["code"], "invalid_scope", "{s} {body}");
    // Only registered clients sign in: a made-up client_id is refused.
    let (s, body) = login_with(
        &env,
        "mallory@example.com",
        json!({"client_id": "billing-console"}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );

    // Standard scopes are everyone's; forward-auth refuses the scopes the token lacks.
    let (s, body) = login_with(
        &env,
        "mallory@example.com",
        json!({"scope": "openid email profile"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "openid email profile");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        forward_auth(&env, "&scope=openid", token).await,
        StatusCode::OK
    );
    assert_eq!(
        forward_auth(&env, "&scope=orders.write,billing.admin", token).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        forward_auth(&env, "&scope=billing.admin", token).await,
        StatusCode::FORBIDDEN
    );
}

#[sqlx::test(migrations = false)]
async fn a_scope_held_through_a_role_is_granted_and_nothing_more(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "olga@example.com").await;
    env.role(&t.row, "order-clerk", &["orders.write"], "olga@example.com")
        .await;

    let (s, body) = login_with(
        &env,
        "olga@example.com",
        json!({"scope": "openid orders.write billing.admin"}),
    )
    .await;
    assert_eq!(body["code"], "invalid_scope", "{s} {body}");

    let (s, body) = login_with(
        &env,
        "olga@example.com",
        json!({"scope": "openid orders.write"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = verify_independently(&env.url, "acme", token).await;
    assert_eq!(claims["scope"], "openid orders.write");
    assert_eq!(
        forward_auth(&env, "&scope=orders.write", token).await,
        StatusCode::OK
    );
    assert_eq!(
        forward_auth(&env, "&scope=orders.write,billing.admin", token).await,
        StatusCode::FORBIDDEN
    );
    // The refreshed token keeps the held scope.
    let (s, next) = env
        .refresh("acme", body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (s, next["scope"].as_str()),
        (StatusCode::OK, Some("openid orders.write"))
    );
}

#[sqlx::test(migrations = false)]
async fn a_refresh_token_serves_only_its_own_client(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "rita@example.com").await;
    // Another registered client, so that naming it is a wrong client, not an unknown one.
    env.store
        .upsert_oauth_client(&keygate_core::store::OAuthClientUpsert {
            tenant_id: t.row.id,
            owner_uid: "uid-billing-console".into(),
            client_id: "billing-console".into(),
            display_name: "Billing".into(),
            client_type: keygate_core::store::ClientType::Public,
            token_endpoint_auth_method: keygate_core::store::ClientAuthMethod::None,
            redirect_uris: vec!["https://billing.example.com/cb".into()],
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec![
                keygate_core::store::GrantType::AuthorizationCode,
                keygate_core::store::GrantType::RefreshToken,
            ],
            allowed_scopes: vec!["openid".into()],
            audience: Vec::new(),
            consent: keygate_core::store::ConsentMode::Implicit,
            lifetimes: keygate_core::store::ClientLifetimes::default(),
            id_token_signed_response_alg: None,
            generation: 1,
        })
        .await
        .unwrap();
    let (s, login) = login_with(&env, "rita@example.com", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let first = login["refresh_token"].as_str().unwrap().to_owned();
    let invalid_grant = |(s, body): (StatusCode, Value)| {
        assert_eq!(
            (s, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{body}"
        );
    };

    // Without a client_id, or with another client's, nothing is issued and the token is
    // not spent.
    invalid_grant(env.refresh_as("acme", &first, &[]).await);
    invalid_grant(
        env.refresh_as("acme", &first, &[("client_id", "billing-console")])
            .await,
    );
    let (s, next) = env.refresh("acme", &first).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    let successor = next["refresh_token"].as_str().unwrap().to_owned();

    // Inside the grace window the spent token is forgiven for its own client only.
    let (s, again) = env.refresh("acme", &first).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(
        again["refresh_token"], next["refresh_token"],
        "the same pair"
    );
    invalid_grant(env.refresh_as("acme", &first, &[]).await);
    // Another client replaying a spent token is reuse: no pair, and the family is revoked.
    invalid_grant(
        env.refresh_as("acme", &first, &[("client_id", "billing-console")])
            .await,
    );
    invalid_grant(env.refresh("acme", &successor).await);
    assert!(
        env.audit_kinds(&t.row)
            .await
            .contains(&"refresh.reuse_detected".to_owned())
    );
}
