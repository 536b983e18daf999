//! Per-tenant OpenID discovery and JWKS: what any standard JWT library needs to verify
//! keygate's tokens. Both come from the identity service's tenant and signing-key caches;
//! JWKS is served as the bytes rendered when the keys were loaded.

use crate::AppState;
use crate::error::ApiError;
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

/// `/t/{tenant}/.well-known/openid-configuration` and `/t/{tenant}/jwks.json`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/t/{tenant}/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/t/{tenant}/jwks.json", get(jwks))
}

/// OpenID discovery document of the tenant.
#[utoipa::path(get, path = "/t/{tenant}/.well-known/openid-configuration", tag = "discovery", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    responses((status = 200, description = "Discovery document", body = Object), (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn discovery(
    State(state): State<AppState>,
    TenantName(name): TenantName,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = state.identity.tenant(&name).await?;
    let keys = state.identity.published_keys(&tenant).await?;
    let issuer = &tenant.issuer;
    let algs: Vec<&str> = keys.active_algorithm.as_deref().into_iter().collect();
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "grant_types_supported": ["refresh_token"],
        "response_types_supported": ["token"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "keygate_login_endpoint": format!("{issuer}/login"),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "sid", "tenant", "roles", "scope", "amr", "acr", "auth_time", "email"],
        // keygate extension: the kid new tokens are signed with, so operators can check
        // that JWKS and issuance agree.
        "keygate_signing_kid": &keys.active_kid,
    });
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(doc)))
}

/// The tenant's published public keys (`application/jwk-set+json`).
#[utoipa::path(get, path = "/t/{tenant}/jwks.json", tag = "discovery", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    responses((status = 200, description = "JWK set", body = Object, content_type = "application/jwk-set+json"), (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn jwks(
    State(state): State<AppState>,
    TenantName(name): TenantName,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = state.identity.tenant(&name).await?;
    let keys = state.identity.published_keys(&tenant).await?;
    Ok((
        [
            (header::CACHE_CONTROL, "public, max-age=60"),
            (header::CONTENT_TYPE, "application/jwk-set+json"),
        ],
        keys.jwks.clone(),
    ))
}
