//! Per-tenant authorization-server metadata and JWKS: what any standard OAuth or JWT library
//! needs to find keygate's endpoints and verify its tokens. Both come from the identity
//! service's tenant and signing-key caches; JWKS is served as the bytes rendered when the keys
//! were loaded.
//!
//! One document serves as OAuth 2.0 Authorization Server Metadata (RFC 8414) and as OpenID
//! Connect Discovery metadata: it lists only the endpoints, grants and methods that exist
//! (docs/decisions.md, "Authorization-server metadata").

use crate::AppState;
use crate::error::ApiError;
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

/// The metadata at both places clients look for it, the OpenID Connect discovery document,
/// and `/t/{tenant}/jwks.json`.
pub fn router() -> Router<AppState> {
    Router::new()
        // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
        .route(
            "/.well-known/oauth-authorization-server/t/{tenant}",
            get(metadata),
        )
        // The issuer-relative form many libraries try first.
        .route(
            "/t/{tenant}/.well-known/oauth-authorization-server",
            get(metadata_relative),
        )
        // OpenID Connect Discovery §4: the issuer's path with the well-known segment appended.
        .route(
            "/t/{tenant}/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/t/{tenant}/jwks.json", get(jwks))
}

/// The tenant's provider metadata: every field OpenID Connect Discovery §3 requires, and
/// only endpoints, grants and methods that exist.
async fn document(state: &AppState, name: &str) -> Result<serde_json::Value, ApiError> {
    let tenant = state.identity.tenant(name).await?;
    let keys = state.identity.published_keys(&tenant).await?;
    let issuer = &tenant.issuer;
    Ok(serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "end_session_endpoint": format!("{issuer}/end-session"),
        "device_authorization_endpoint": format!("{issuer}/oauth2/device_authorization"),
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "subject_types_supported": ["public"],
        // ID tokens are signed with the tenant's algorithm (`signing.algorithm`, RS256 by
        // default), or with RS256, which every tenant keeps a key of, for a client that
        // registered it (`idTokenSignedResponseAlg`).
        "id_token_signing_alg_values_supported": keygate_core::keyring::algorithms(
            tenant.settings.signing.algorithm
        )
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>(),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login"],
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
            "at_hash", "email", "email_verified", "name", "preferred_username", "groups",
        ],
        // The levels a session (and so its tokens' `acr`) can reach (identity::levels).
        "acr_values_supported": crate::identity::ACR_VALUES_SUPPORTED,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        // keygate extensions: where to sign in with a password, and the kid new access
        // tokens are signed with (so operators can check that JWKS and issuance agree).
        "keygate_login_endpoint": format!("{issuer}/login"),
        "keygate_signing_kid": &keys.active_kid,
    }))
}

/// OAuth 2.0 Authorization Server Metadata (RFC 8414) of the tenant.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server/t/{tenant}", tag = "discovery", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    responses((status = 200, description = "Authorization server metadata", body = Object), (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn metadata(
    State(state): State<AppState>,
    TenantName(name): TenantName,
) -> Result<impl IntoResponse, ApiError> {
    let doc = document(&state, &name).await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(doc)))
}

/// OpenID Connect Discovery 1.0 provider metadata of the tenant (the same document).
#[utoipa::path(get, path = "/t/{tenant}/.well-known/openid-configuration", tag = "discovery", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    responses((status = 200, description = "OpenID Provider metadata", body = Object), (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn openid_configuration(
    state: State<AppState>,
    name: TenantName,
) -> Result<impl IntoResponse, ApiError> {
    metadata(state, name).await
}

/// The same document at the issuer-relative path.
#[utoipa::path(get, path = "/t/{tenant}/.well-known/oauth-authorization-server", tag = "discovery", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    responses((status = 200, description = "Authorization server metadata", body = Object), (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn metadata_relative(
    state: State<AppState>,
    name: TenantName,
) -> Result<impl IntoResponse, ApiError> {
    metadata(state, name).await
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
