//! Account endpoints: sign-up, email verification, password reset and change, the emailed
//! unlock of a locked account, and the admin actions (suspend, reactivate, erase). Answers to strangers never reveal whether an
//! account exists (sign-up, resend, reset and unlock requests always answer 202).

use super::extract::{ApiJson, Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::{IdentityError, SignUp};
use crate::tenant_path::TenantName;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
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
        .route("/t/{tenant}/accounts/unlock", post(request_unlock))
        .route("/t/{tenant}/accounts/unlock/confirm", post(confirm_unlock))
        .route("/t/{tenant}/me/password", post(change_password))
        .route("/t/{tenant}/users/{user}/suspend", post(suspend))
        .route("/t/{tenant}/users/{user}/reactivate", post(reactivate))
        .route("/t/{tenant}/users/{user}", delete(erase))
        .route("/t/{tenant}/invites", post(invite))
}

/// A registration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
}

const ACCEPTED: Accepted = Accepted { status: "accepted" };

/// A one-time token from an email.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token.
    pub token: String,
}

/// An email address.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// The address.
    pub email: String,
}

/// A reset confirmation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the reset email.
    pub token: String,
    /// The new password.
    pub new_password: String,
}

/// A password change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The current password.
    pub current_password: String,
    /// The new password.
    pub new_password: String,
}

/// Self-service registration per the tenant's mode; the same 202 whether or not the email is taken.
#[utoipa::path(post, path = "/t/{tenant}/accounts", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = SignUpRequest,
    responses((status = 202, description = "Accepted (a verification email follows)", body = Accepted),
        (status = 400, description = "malformed_json", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "registration_closed, invite_required", body = crate::error::Problem, content_type = "application/problem+json"), (status = 415, description = "unsupported_media_type", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body, invalid_email, password_policy, password_breached", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "rate_limited", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "mail_unavailable: this installation cannot send email (no SMTP configured); overloaded: every password-hashing thread is busy and the queue is full (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn sign_up(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
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

/// Consumes an email-verification token (single use, 24 h).
#[utoipa::path(post, path = "/t/{tenant}/accounts/verify-email", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = TokenRequest,
    responses((status = 204, description = "Verified"), (status = 400, description = "invalid_link, malformed_json", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_body", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn verify_email(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .verify_email(&tenant, &body.token, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new verification email if the account exists and is unverified (same answer either way).
#[utoipa::path(post, path = "/t/{tenant}/accounts/verify-email/resend", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = EmailRequest,
    responses((status = 202, description = "Accepted", body = Accepted), (status = 422, description = "invalid_body", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "rate_limited", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "mail_unavailable: this installation cannot send email (no SMTP configured)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn resend(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .identity
        .resend_verification(&tenant, &body.email, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ACCEPTED)))
}

/// Sends a reset link if the account exists (same answer either way).
#[utoipa::path(post, path = "/t/{tenant}/accounts/password-reset", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = EmailRequest,
    responses((status = 202, description = "Accepted", body = Accepted), (status = 422, description = "invalid_body", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "rate_limited", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "mail_unavailable: this installation cannot send email (no SMTP configured)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn request_reset(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .identity
        .request_password_reset(&tenant, &body.email, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ACCEPTED)))
}

/// Consumes a reset token (single use, 1 h), sets the password, ends every session.
#[utoipa::path(post, path = "/t/{tenant}/accounts/password-reset/confirm", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = ResetConfirm,
    responses((status = 204, description = "Password set"), (status = 400, description = "invalid_link", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "password_policy, password_breached, password_reused", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "overloaded: every password-hashing thread is busy and the queue is full (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn confirm_reset(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .reset_password(&tenant, &body.token, &body.new_password, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A redeemed unlock link.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnlockResponse {
    /// A new device token for the account, to send as `device_token` with sign-ins.
    pub device_token: String,
}

/// Sends an unlock link if the account exists (same answer either way).
#[utoipa::path(post, path = "/t/{tenant}/accounts/unlock", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = EmailRequest,
    responses((status = 202, description = "Accepted", body = Accepted), (status = 422, description = "invalid_body", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "rate_limited", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "mail_unavailable: this installation cannot send email (no SMTP configured)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn request_unlock(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .identity
        .request_unlock(&tenant, &body.email, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ACCEPTED)))
}

/// Consumes an unlock token (single use, 30 min): clears the account's lockout and answers a
/// new device token.
#[utoipa::path(post, path = "/t/{tenant}/accounts/unlock/confirm", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = TokenRequest,
    responses((status = 200, description = "Unlocked", body = UnlockResponse), (status = 400, description = "invalid_link, malformed_json", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_body", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn confirm_unlock(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, &'static str); 1],
        Json<UnlockResponse>,
    ),
    ApiError,
> {
    let done = state
        .identity
        .unlock(&tenant, &body.token, None, &meta)
        .await?;
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(UnlockResponse {
            device_token: done.device_token,
        }),
    ))
}

/// Changes the caller's password (current password and a recent authentication required);
/// other sessions end and the person is told by mail.
#[utoipa::path(post, path = "/t/{tenant}/me/password", tag = "accounts", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = ChangePassword, security(("bearer" = [])),
    responses((status = 204, description = "Changed"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "wrong_current_password; step_up_required (body StepUpProblem: no authentication within the last 5 minutes, with a second factor when the account has one)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "password_policy, password_breached, password_reused", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "overloaded: every password-hashing thread is busy and the queue is full (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json")))]
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

/// Suspends an account (admins only); its sessions end at once.
#[utoipa::path(post, path = "/t/{tenant}/users/{user}/suspend", tag = "admin", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("user" = String, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 204, description = "Suspended"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
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

/// Reactivates a suspended account (admins only).
#[utoipa::path(post, path = "/t/{tenant}/users/{user}/reactivate", tag = "admin", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("user" = String, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 204, description = "Active again"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
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

/// GDPR erasure (admins, or the person themself); audit rows stay under the bare id.
#[utoipa::path(delete, path = "/t/{tenant}/users/{user}", tag = "admin", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("user" = String, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 204, description = "Erased"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
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

/// Invites an email address to an invite-only tenant (admins only); the invitee gets a
/// single-use token valid seven days, to send as `invite` when signing up.
#[utoipa::path(post, path = "/t/{tenant}/invites", tag = "admin", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = EmailRequest, security(("bearer" = [])),
    responses((status = 202, description = "Invite sent", body = Accepted), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body, invalid_email", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "mail_unavailable: this installation cannot send email (no SMTP configured)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn invite(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .identity
        .invite(&principal, &body.email, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ACCEPTED)))
}
