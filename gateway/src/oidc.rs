//! Per-tenant authorization-server metadata and JWKS: what any standard OAuth or JWT library
//! needs to find keygate's endpoints and verify its tokens. Both come from the identity
//! service's tenant and signing-key caches; JWKS is served as the bytes rendered when the keys
//! were loaded.
//!
//! The metadata is an OAuth 2.0 Authorization Server Metadata document (RFC 8414), not an
//! OpenID Connect discovery document: keygate issues no ID tokens and has no authorization
//! endpoint, so it lists only the endpoints, grants and methods that exist
//! (docs/decisions.md, "Authorization-server metadata").

use crate::AppState;
use crate::error::ApiError;
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

/// The metadata at both places clients look for it, and `/t/{tenant}/jwks.json`.
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
        .route("/t/{tenant}/jwks.json", get(jwks))
}

/// OAuth 2.0 Authorization Server Metadata (RFC 8414) of the tenant.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server/t/{tenant}", tag = "discovery", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    responses((status = 200, description = "Authorization server metadata", body = Object), (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn metadata(
    State(state): State<AppState>,
    TenantName(name): TenantName,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = state.identity.tenant(&name).await?;
    let keys = state.identity.published_keys(&tenant).await?;
    let issuer = &tenant.issuer;
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        // Only refresh tokens are redeemed at the token endpoint; people sign in at the
        // login endpoint or the pages, so there is no authorization endpoint and no
        // response type.
        "grant_types_supported": ["refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "revocation_endpoint_auth_methods_supported": ["none"],
        // Callers authenticate with a bearer access token or API key (RFC 7662 §2.1), which
        // has no registered client-authentication method name, so none is listed.
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        // The levels a session (and so its tokens' `acr`) can reach (identity::levels).
        "acr_values_supported": crate::identity::ACR_VALUES_SUPPORTED,
        // keygate extensions: where to sign in with a password, and the kid new tokens are
        // signed with (so operators can check that JWKS and issuance agree).
        "keygate_login_endpoint": format!("{issuer}/login"),
        "keygate_signing_kid": &keys.active_kid,
    });
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(doc)))
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
