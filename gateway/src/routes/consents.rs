//! The caller's consents to OpenID Provider clients: `GET /t/{tenant}/me/consents` and
//! `DELETE /t/{tenant}/me/consents/{client_id}` (withdraw, and revoke the caller's sessions
//! issued to that client).

use super::extract::{Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::ConsentInfo;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;

/// Consent routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/me/consents", get(list))
        .route("/t/{tenant}/me/consents/{client_id}", delete(revoke))
}

/// The caller's consents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentList {
    /// Most recently granted first.
    pub consents: Vec<ConsentInfo>,
}

/// The clients the caller approved on the consent page, with the scopes approved.
#[utoipa::path(get, path = "/t/{tenant}/me/consents", tag = "sessions", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "Consents", body = ConsentList), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden: the credential is not a person's", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<ConsentList>, ApiError> {
    let consents = state.identity.list_consents(&principal).await?;
    Ok(Json(ConsentList { consents }))
}

/// Withdraws the caller's consent to a client and revokes, on every replica, the caller's
/// sessions issued to it (their refresh tokens stop working); the client's next
/// authorization request shows the consent page again.
#[utoipa::path(delete, path = "/t/{tenant}/me/consents/{client_id}", tag = "sessions", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("client_id" = String, Path, description = "The client's `client_id`")), security(("bearer" = [])),
    responses((status = 204, description = "Withdrawn and revoked"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden: the credential is not a person's", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found: no consent to and no session of that client", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn revoke(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, client_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .revoke_consent(&principal, &client_id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
