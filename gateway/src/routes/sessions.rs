//! The caller's sessions: `GET /t/{tenant}/me/sessions`, `DELETE /t/{tenant}/me/sessions/{id}`,
//! `POST /t/{tenant}/me/sessions/end-others` (every one but the caller's) and
//! `POST /t/{tenant}/me/sessions/logout-all` (every one).

use super::extract::{Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::{IdentityError, SessionInfo};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use keygate_core::ids::SessionId;
use serde::Serialize;

/// Session routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/me/sessions", get(list))
        .route("/t/{tenant}/me/sessions/logout-all", post(logout_all))
        .route("/t/{tenant}/me/sessions/end-others", post(end_others))
        .route("/t/{tenant}/me/sessions/{session}", delete(revoke))
}

/// The caller's sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionInfo>,
}

/// How many sessions ended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ended {
    /// Sessions ended.
    pub ended: u64,
}

/// How many sessions logout-all ended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogoutAll {
    /// Sessions revoked.
    pub revoked: u64,
}

/// The caller's active sessions, newest first.
#[utoipa::path(get, path = "/t/{tenant}/me/sessions", tag = "sessions", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "Sessions", body = SessionList), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.identity.list_sessions(&principal).await?;
    Ok(Json(SessionList { sessions }))
}

/// Revokes one of the caller's sessions on every replica (its refresh family too).
#[utoipa::path(delete, path = "/t/{tenant}/me/sessions/{session}", tag = "sessions", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("session" = String, Path, description = "Session id")), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found (also another person's session)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn revoke(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, session)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let session: SessionId = session.parse().map_err(|_| IdentityError::NotFound)?;
    state
        .identity
        .revoke_session(&principal, session, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Logout-all: revokes every session of the caller.
#[utoipa::path(post, path = "/t/{tenant}/me/sessions/logout-all", tag = "sessions", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "How many were revoked", body = LogoutAll), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn logout_all(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<Json<LogoutAll>, ApiError> {
    let revoked = state.identity.logout_all(&principal, &meta).await?;
    Ok(Json(LogoutAll { revoked }))
}

/// Ends every session of the caller except the one this request comes with (on every
/// replica, refresh families included).
#[utoipa::path(post, path = "/t/{tenant}/me/sessions/end-others", tag = "sessions", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "How many ended", body = Ended), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden (a credential without a session, such as an API key), network_denied", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn end_others(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<Json<Ended>, ApiError> {
    let ended = state.identity.end_other_sessions(&principal, &meta).await?;
    Ok(Json(Ended { ended }))
}
