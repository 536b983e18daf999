//! Account endpoints: sign-up, email verification, password reset and change, and the
//! admin actions (suspend, reactivate, erase). Answers to strangers never reveal whether an
//! account exists (sign-up, resend and reset always answer 202).

use super::extract::{ApiJson, Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::{IdentityError, SignUp};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use keygate_core::ids::UserId;
use serde::{Deserialize, Serialize};

/// Account routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/accounts", post(sign_up))
        .route("/t/{tenant}/accounts/verify-email", post(verify_email))
        .route("/t/{tenant}/accounts/verify-email/resend", post(resend))
        .route("/t/{tenant}/accounts/password-reset", post(request_reset))
        .route(
            "/t/{tenant}/accounts/password-reset/confirm",
            post(confirm_reset),
        )
        .route("/t/{tenant}/account/password", post(change_password))
        .route("/t/{tenant}/users/{user}/suspend", post(suspend))
        .route("/t/{tenant}/users/{user}/reactivate", post(reactivate))
        .route("/t/{tenant}/users/{user}", delete(erase))
}

/// A registration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    /// Email address.
    pub email: String,
    /// Password (checked against the tenant's policy and the breached list).
    pub password: String,
    /// Name shown in UIs.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Invite token (invite-only tenants).
    #[serde(default)]
    pub invite: Option<String>,
}

/// The same answer whether or not the account was new.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
}

const ACCEPTED: Accepted = Accepted { status: "accepted" };

/// A one-time token from an email.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token.
    pub token: String,
}

/// An email address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// The address.
    pub email: String,
}

/// A reset confirmation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the reset email.
    pub token: String,
    /// The new password.
    pub new_password: String,
}

/// A password change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The current password.
    pub current_password: String,
    /// The new password.
    pub new_password: String,
}

async fn sign_up(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let req = SignUp {
        email: body.email,
        password: body.password,
        display_name: body.display_name,
        invite: body.invite,
    };
    state.identity.sign_up(&tenant, req, &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(ACCEPTED)))
}

async fn verify_email(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .verify_email(&tenant, &body.token, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resend(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .identity
        .resend_verification(&tenant, &body.email, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ACCEPTED)))
}

async fn request_reset(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .identity
        .request_password_reset(&tenant, &body.email, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ACCEPTED)))
}

async fn confirm_reset(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .reset_password(&tenant, &body.token, &body.new_password, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_password(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .change_password(
            &principal,
            &body.current_password,
            &body.new_password,
            &meta,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| IdentityError::NotFound.into())
}

async fn suspend(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .set_suspended(&principal, user_id(&user)?, true, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reactivate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .set_suspended(&principal, user_id(&user)?, false, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn erase(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .erase_user(&principal, user_id(&user)?, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
