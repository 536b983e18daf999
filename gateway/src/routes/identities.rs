//! The caller's linked upstream identities: `GET /t/{tenant}/me/identities` and
//! `DELETE /t/{tenant}/me/identities/{provider}` (a recent authentication required).

use super::extract::{Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::LinkedIdentity;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;

/// Linked-identity routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/me/identities", get(list))
        .route("/t/{tenant}/me/identities/{provider}", delete(unlink))
}

/// The caller's linked identities.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityList {
    /// Oldest first.
    pub identities: Vec<LinkedIdentity>,
}

/// The upstream identity providers the caller can sign in through.
#[utoipa::path(get, path = "/t/{tenant}/me/identities", tag = "me", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "Linked identities", body = IdentityList), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<IdentityList>, ApiError> {
    let identities = state.identity.linked_identities(&principal).await?;
    Ok(Json(IdentityList { identities }))
}

/// Unlinks the caller's identity at `provider`; needs a recent authentication, and the last
/// way into an account without a password stays.
#[utoipa::path(delete, path = "/t/{tenant}/me/identities/{provider}", tag = "me", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("provider" = String, Path, description = "IdentityProvider name")), security(("bearer" = [])),
    responses((status = 204, description = "Unlinked"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "step_up_required: no authentication within the last 5 minutes (with a second factor when the account has one); the body and WWW-Authenticate carry an RFC 9470 challenge naming the step-up endpoint (the body is a StepUpProblem)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found (no such provider, or not linked)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "last_sign_in_method (the account has no password and no other link)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn unlink(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, provider)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .unlink_identity(&principal, &provider, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
