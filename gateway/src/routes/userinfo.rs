//! `GET /t/{tenant}/userinfo` (OpenID Connect Core §5.3) for a bearer access token.

use super::extract::Authenticated;
use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// `/t/{tenant}/userinfo` (GET and POST, as OIDC allows both).
pub fn router() -> Router<AppState> {
    Router::new().route("/t/{tenant}/userinfo", get(userinfo).post(userinfo_post))
}

/// Claims about the signed-in person.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfoResponse {
    /// User id.
    pub sub: String,
    /// Email address.
    pub email: String,
    /// Whether it is verified.
    pub email_verified: bool,
    /// Display name.
    pub name: String,
    /// Local groups.
    pub groups: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Tenant name.
    pub tenant: String,
}

/// Claims about the person behind a bearer access token (or session cookie).
#[utoipa::path(get, path = "/t/{tenant}/userinfo", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "The person", body = UserInfoResponse), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden (API keys)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn userinfo(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<UserInfoResponse>, ApiError> {
    let info = state.identity.userinfo(&principal).await?;
    Ok(Json(UserInfoResponse {
        sub: info.sub,
        email: info.email,
        email_verified: info.email_verified,
        name: info.name,
        groups: info.groups,
        roles: info.roles,
        tenant: info.tenant,
    }))
}

/// The same as `GET`, as OpenID Connect allows.
#[utoipa::path(post, path = "/t/{tenant}/userinfo", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "The person", body = UserInfoResponse), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn userinfo_post(
    state: State<AppState>,
    caller: Authenticated,
) -> Result<Json<UserInfoResponse>, ApiError> {
    userinfo(state, caller).await
}
