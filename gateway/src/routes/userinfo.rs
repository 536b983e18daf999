//! `GET /t/{tenant}/userinfo` (OpenID Connect Core §5.3) for a bearer access token.

use super::extract::Authenticated;
use crate::AppState;
use crate::error::ApiError;
use crate::identity::UserInfo;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

/// `/t/{tenant}/userinfo` (GET and POST, as OIDC allows both).
pub fn router() -> Router<AppState> {
    Router::new().route("/t/{tenant}/userinfo", get(userinfo).post(userinfo_post))
}

/// Claims about the person behind a bearer access token (or session cookie).
#[utoipa::path(get, path = "/t/{tenant}/userinfo", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "The person", body = UserInfo), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden (API keys)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn userinfo(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<UserInfo>, ApiError> {
    Ok(Json(state.identity.userinfo(&principal).await?))
}

/// The same as `GET`, as OpenID Connect allows.
#[utoipa::path(post, path = "/t/{tenant}/userinfo", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "The person", body = UserInfo), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn userinfo_post(
    state: State<AppState>,
    caller: Authenticated,
) -> Result<Json<UserInfo>, ApiError> {
    userinfo(state, caller).await
}
