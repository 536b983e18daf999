//! Registered clients only (issue 15.2): every `client_id` at `/login` and `/oauth2/token`
//! names the tenant's built-in client or one of its OAuthClients, scopes stay within the
//! client's `allowedScopes`, and a confidential client authenticates with its secret the way
//! it registered. Clients are written to the store as the operator writes them.

use crate::support::env::{Env, PASSWORD, env_mailing_through, verify_independently};
use keygate_core::clock::Clock;
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::ids::TenantId;
use keygate_core::store::{
    ClientAuthMethod, ClientLifetimes, ClientType, ConsentMode, GrantType, NewClientSecret,
    OAuthClient, OAuthClientUpsert,
};
use keygate_gateway::identity::{ClientCredentials, IdentityError, IdentityService, RateLimits};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "kgcs_AbCdEfGhIjKl_the-current-secret";
const PREVIOUS: &str = "kgcs_MnOpQrStUvWx_the-previous-secret";

async fn setup(pool: sqlx::PgPool) -> (Env, IdentityService) {
    env_mailing_through(
        pool,
        RateLimits {
            sign_in_per_ip: 1000,
            ..RateLimits::default()
        },
        &[],
        None,
    )
    .await
}

/// Registers `client_id` in `tenant` as an OAuthClient resource would.
async fn register(
    env: &Env,
    tenant: TenantId,
    client_id: &str,
    client_type: ClientType,
    method: ClientAuthMethod,
    allowed_scopes: &[&str],
) -> OAuthClient {
    env.store
        .upsert_oauth_client(&OAuthClientUpsert {
            tenant_id: tenant,
            owner_uid: format!("uid-{client_id}"),
            client_id: client_id.into(),
            display_name: client_id.into(),
            client_type,
            token_endpoint_auth_method: method,
            redirect_uris: vec!["https://app.example.com/callback".into()],
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            allowed_scopes: allowed_scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: Vec::new(),
            consent: ConsentMode::Implicit,
            // Shorter than the tenant's 5 minutes: the client's own lifetime applies.
            lifetimes: ClientLifetimes {
                access_token: Some(std::time::Duration::from_secs(120)),
                ..ClientLifetimes::default()
            },
            id_token_signed_response_alg: None,
            generation: 1,
        })
        .await
        .unwrap()
}

async fn login(env: &Env, email: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let (Some(b), Some(more)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(more.clone());
    }
    env.post_json("/t/acme/login", body).await
}

async fn forward_auth(env: &Env, query: &str, token: &str) -> StatusCode {
    env.http
        .get(format!("{}/forward-auth?tenant=acme{query}", env.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[sqlx::test(migrations = false)]
async fn a_person_cannot_grant_themselves_a_scope_a_forward_auth_rule_requires(pool: sqlx::PgPool) {
    let (env, _) = setup(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "mallory@example.com").await;
    env.user(&t.row, "olga@example.com").await;
    env.role(
        &t.row,
        "clerk",
        &["orders.write", "billing.admin"],
        "olga@example.com",
    )
    .await;
    // The orders app may ask for orders.write; nothing registers billing.admin.
    register(
        &env,
        t.row.id,
        "orders-spa",
        ClientType::Public,
        ClientAuthMethod::None,
        &["openid", "email", "orders.write"],
    )
    .await;

    // Mallory names a registered client and a scope it allows, but does not hold it.
    let (s, body) = login(
        &env,
        "mallory@example.com",
        json!({"client_id": "orders-spa", "scope": "openid orders.write"}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{body}"
    );
    let (s, body) = login(
        &env,
        "mallory@example.com",
        json!({"client_id": "orders-spa", "scope": "openid"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        forward_auth(&env, "&scope=orders.write", token).await,
        StatusCode::FORBIDDEN
    );

    // Olga holds both, but the client was not registered for billing.admin.
    let (s, body) = login(
        &env,
        "olga@example.com",
        json!({"client_id": "orders-spa", "scope": "openid billing.admin"}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{body}"
    );
    let (s, body) = login(
        &env,
        "olga@example.com",
        json!({"client_id": "orders-spa", "scope": "openid orders.write"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = verify_independently(&env.url, "acme", token).await;
    assert_eq!(claims["client_id"], "orders-spa");
    assert_eq!(claims["scope"], "openid orders.write");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120,
        "the client's shorter access-token lifetime"
    );
    assert_eq!(body["expires_in"], 120);
    assert_eq!(
        forward_auth(&env, "&scope=orders.write", token).await,
        StatusCode::OK
    );
    assert_eq!(
        forward_auth(&env, "&scope=billing.admin", token).await,
        StatusCode::FORBIDDEN
    );

    // A refresh stays with its client and cannot widen the scope.
    let refresh = body["refresh_token"].as_str().unwrap();
    let (s, wider) = env
        .refresh_as(
            "acme",
            refresh,
            &[
                ("client_id", "orders-spa"),
                ("scope", "openid billing.admin"),
            ],
        )
        .await;
    assert_eq!(
        (s, wider["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{wider}"
    );
    let (s, next) = env
        .refresh_as("acme", refresh, &[("client_id", "orders-spa")])
        .await;
    assert_eq!(
        (s, next["scope"].as_str()),
        (StatusCode::OK, Some("openid orders.write")),
        "{next}"
    );
}

#[sqlx::test(migrations = false)]
async fn an_unknown_client_is_refused_at_login_and_token(pool: sqlx::PgPool) {
    let (env, _) = setup(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "rita@example.com").await;
    let (s, body) = login(
        &env,
        "rita@example.com",
        json!({"client_id": "billing-console"}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());

    // The built-in client still signs in, and its refresh token is refused to a made-up client.
    let (s, body) = login(&env, "rita@example.com", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap();
    let (s, refused) = env
        .refresh_as("acme", refresh, &[("client_id", "billing-console")])
        .await;
    assert_eq!(
        (s, refused["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{refused}"
    );
    // Refused before the token was looked at: it still works for its own client.
    let (s, next) = env.refresh("acme", refresh).await;
    assert_eq!(s, StatusCode::OK, "{next}");

    // Another tenant's client is no client here.
    let other = env
        .tenant("globex", SigningAlgorithm::ES256, json!({}))
        .await;
    register(
        &env,
        other.row.id,
        "globex-app",
        ClientType::Public,
        ClientAuthMethod::None,
        &["openid"],
    )
    .await;
    let (s, body) = login(&env, "rita@example.com", json!({"client_id": "globex-app"})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_confidential_client_authenticates_only_with_its_secret_the_way_it_registered(
    pool: sqlx::PgPool,
) {
    let (env, identity) = setup(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    let app = register(
        &env,
        t.row.id,
        "grafana",
        ClientType::Confidential,
        ClientAuthMethod::ClientSecretBasic,
        &["openid"],
    )
    .await;
    register(
        &env,
        t.row.id,
        "cli",
        ClientType::Public,
        ClientAuthMethod::None,
        &["openid"],
    )
    .await;
    let now = env.clock.now();
    let old = env
        .store
        .insert_client_secret(&NewClientSecret {
            tenant_id: t.row.id,
            oauth_client_id: app.id,
            prefix: "MnOpQrStUvWx".into(),
            hash: sha256(PREVIOUS.as_bytes()).to_vec(),
        })
        .await
        .unwrap();
    let basic = |id: &str, secret: &str| ClientCredentials {
        basic: Some((id.into(), secret.into())),
        ..ClientCredentials::default()
    };
    let authenticate = |c: ClientCredentials| {
        let identity = identity.clone();
        async move { identity.authenticate_client("acme", &c).await }
    };
    let refused = |r: Result<keygate_gateway::identity::AuthenticatedClient, IdentityError>| {
        assert!(matches!(r, Err(IdentityError::InvalidClient)), "{r:?}");
    };

    // The previous secret works; a secret issued since (the client is cached) too.
    assert_eq!(
        authenticate(basic("grafana", PREVIOUS))
            .await
            .unwrap()
            .client_id(),
        "grafana"
    );
    env.store
        .insert_client_secret(&NewClientSecret {
            tenant_id: t.row.id,
            oauth_client_id: app.id,
            prefix: "AbCdEfGhIjKl".into(),
            hash: sha256(SECRET.as_bytes()).to_vec(),
        })
        .await
        .unwrap();
    assert!(authenticate(basic("grafana", SECRET)).await.is_ok());
    refused(authenticate(basic("grafana", "kgcs_AbCdEfGhIjKl_guess")).await);
    // The same secret the other way, with no secret, or both ways at once.
    refused(
        authenticate(ClientCredentials {
            client_id: Some("grafana".into()),
            client_secret: Some(SECRET.into()),
            ..ClientCredentials::default()
        })
        .await,
    );
    refused(
        authenticate(ClientCredentials {
            client_id: Some("grafana".into()),
            ..ClientCredentials::default()
        })
        .await,
    );
    refused(
        authenticate(ClientCredentials {
            basic: Some(("grafana".into(), SECRET.into())),
            client_id: Some("grafana".into()),
            client_secret: Some(SECRET.into()),
        })
        .await,
    );
    // A secret of another client, a public client with a secret, an unknown client.
    refused(authenticate(basic("cli", SECRET)).await);
    refused(authenticate(basic("nobody", SECRET)).await);
    assert!(
        authenticate(ClientCredentials {
            client_id: Some("cli".into()),
            ..ClientCredentials::default()
        })
        .await
        .is_ok()
    );

    // Rotation: the superseded secret works until its grace ends, then never again.
    env.store
        .supersede_client_secret(t.row.id, old.id, now, now + chrono::Duration::minutes(10))
        .await
        .unwrap();
    assert!(authenticate(basic("grafana", PREVIOUS)).await.is_ok());
    env.clock.advance(chrono::Duration::minutes(11));
    refused(authenticate(basic("grafana", PREVIOUS)).await);
    assert!(authenticate(basic("grafana", SECRET)).await.is_ok());

    // A confidential client cannot refresh by naming itself: it must authenticate.
    let (s, body) = env
        .refresh_as("acme", "not-a-token", &[("client_id", "grafana")])
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
}
