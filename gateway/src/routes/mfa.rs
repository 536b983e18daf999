//! The caller's second factors and step-up: `GET /t/{tenant}/me/mfa`, TOTP enrolment
//! (`POST …/me/mfa/totp`, `POST …/me/mfa/totp/{factor}/confirm`), renaming and
//! removal (`PATCH`/`DELETE …/me/mfa/factors/{factor}`; security keys and passkeys are
//! registered through `routes/webauthn.rs`), backup codes (`POST …/me/mfa/backup-codes`)
//! and `POST /t/{tenant}/me/step-up`. Removing a confirmed factor and regenerating
//! backup codes need a step-up with a second factor in the last five minutes (403
//! `step_up_required` with an RFC 9470 challenge otherwise). Passkeys and security keys are
//! factors of kind `webauthn`: listed, renamed and removed here like authenticator apps.

use super::extract::{ApiJson, Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::{
    BackupCodes, IdentityError, MfaStatus, StepUpProof, SteppedUp, TotpEnrolment,
};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use keygate_core::ids::FactorId;
use serde::{Deserialize, Serialize};

/// MFA and step-up routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/me/mfa", get(status))
        .route("/t/{tenant}/me/mfa/totp", post(enrol))
        .route("/t/{tenant}/me/mfa/totp/{factor}/confirm", post(confirm))
        .route(
            "/t/{tenant}/me/mfa/factors/{factor}",
            delete(remove).patch(rename),
        )
        .route("/t/{tenant}/me/mfa/backup-codes", post(regenerate))
        .route("/t/{tenant}/me/step-up", post(step_up))
}

/// An authenticator to add: scan `qr_svg` or open `otpauth_uri`, or type `secret`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpEnrolmentResponse {
    /// The factor to confirm with a first code.
    pub factor_id: String,
    /// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…` (SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The seed in base32.
    pub secret: String,
    /// The URI as a QR code (an SVG document).
    pub qr_svg: String,
}

/// The enrolment as the JSON answer (`no-store`: it carries the seed).
pub(super) fn enrolment_response(e: TotpEnrolment) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(TotpEnrolmentResponse {
            factor_id: e.factor_id.to_string(),
            otpauth_uri: e.otpauth_uri,
            secret: e.secret,
            qr_svg: e.qr_svg,
        }),
    )
        .into_response()
}

/// A factor id from the path; anything else is no factor of this tenant.
fn factor_id(raw: &str) -> Result<FactorId, ApiError> {
    Ok(raw.parse().map_err(|_| IdentityError::NotFound)?)
}

/// The caller's factors and remaining backup codes.
#[utoipa::path(get, path = "/t/{tenant}/me/mfa", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "Factors and backup codes", body = MfaStatus), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden (API keys have no factors), network_denied", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn status(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<MfaStatus>, ApiError> {
    Ok(Json(state.identity.mfa_status(&principal).await?))
}

/// What to call the authenticator.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// A name for it (at most 64 characters; default "Authenticator app").
    #[serde(default)]
    pub label: Option<String>,
}

/// Starts enrolling a TOTP authenticator (one per account; an unconfirmed one is replaced).
#[utoipa::path(post, path = "/t/{tenant}/me/mfa/totp", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])), request_body = EnrolRequest,
    responses((status = 200, description = "The authenticator to add; confirm it with a first code", body = TotpEnrolmentResponse), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "mfa_disabled (the tenant's mfa.policy is off), forbidden", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "factor_exists", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request, invalid_body", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn enrol(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<EnrolRequest>,
) -> Result<Response, ApiError> {
    let e = state
        .identity
        .begin_totp_enrolment(&principal, body.label.as_deref())
        .await?;
    Ok(enrolment_response(e))
}

/// A code from the authenticator app (or a backup code, where one is accepted).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Six digits, or a backup code.
    pub code: String,
}

impl std::fmt::Debug for CodeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeRequest").finish_non_exhaustive()
    }
}

/// Backup codes, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackupCodesResponse {
    /// Single-use codes, each a second factor in place of the app; absent when the account
    /// still has some from before.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub backup_codes: Option<BackupCodes>,
}

/// Confirms an authenticator with its first code; the first factor of an account comes
/// with its backup codes.
#[utoipa::path(post, path = "/t/{tenant}/me/mfa/totp/{factor}/confirm", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("factor" = String, Path, description = "Factor id from the enrolment")), security(("bearer" = [])), request_body = CodeRequest,
    responses((status = 200, description = "Confirmed", body = BackupCodesResponse), (status = 401, description = "invalid_token, invalid_code", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "factor_exists (already confirmed)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "second_factor_locked (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn confirm(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, factor)): Path<(String, String)>,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Response, ApiError> {
    let factor = factor_id(&factor)?;
    let backup_codes = state
        .identity
        .confirm_totp(&principal, factor, &body.code, &meta)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(BackupCodesResponse { backup_codes }),
    )
        .into_response())
}

/// Removes a factor; a confirmed one needs a recent step-up. Removing the last one removes
/// the backup codes too.
#[utoipa::path(delete, path = "/t/{tenant}/me/mfa/factors/{factor}", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("factor" = String, Path, description = "Factor id")), security(("bearer" = [])),
    responses((status = 204, description = "Removed"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "step_up_required: no authentication within the last 5 minutes (with a second factor); the body and WWW-Authenticate carry an RFC 9470 challenge naming the step-up endpoint (the body is a StepUpProblem)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn remove(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Path((_tenant, factor)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let factor = factor_id(&factor)?;
    state
        .identity
        .remove_factor(&principal, factor, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A factor's new name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// 1 to 64 characters.
    pub label: String,
}

/// Renames a factor (an authenticator app, security key or passkey).
#[utoipa::path(patch, path = "/t/{tenant}/me/mfa/factors/{factor}", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), ("factor" = String, Path, description = "Factor id")), security(("bearer" = [])), request_body = RenameRequest,
    responses((status = 204, description = "Renamed"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "not_found", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request, invalid_body", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn rename(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path((_tenant, factor)): Path<(String, String)>,
    ApiJson(body): ApiJson<RenameRequest>,
) -> Result<StatusCode, ApiError> {
    let factor = factor_id(&factor)?;
    state
        .identity
        .rename_factor(&principal, factor, &body.label)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the backup codes with a new set; needs a recent step-up.
#[utoipa::path(post, path = "/t/{tenant}/me/mfa/backup-codes", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "The new codes (the old ones no longer work)", body = BackupCodesResponse), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "step_up_required: no authentication with a second factor within the last 5 minutes; the body and WWW-Authenticate carry an RFC 9470 challenge naming the step-up endpoint (the body is a StepUpProblem)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "no_second_factor", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn regenerate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<Response, ApiError> {
    let codes = state
        .identity
        .regenerate_backup_codes(&principal, &meta)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(BackupCodesResponse {
            backup_codes: Some(codes),
        }),
    )
        .into_response())
}

/// A step-up proof: `code` (TOTP or backup code), or `password`, or an enrolment's
/// `factor_id` with its first `code`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// Six digits or a backup code.
    #[serde(default)]
    pub code: Option<String>,
    /// The account's password (raises `auth_time`, not the level).
    #[serde(default)]
    pub password: Option<String>,
    /// An unconfirmed authenticator from `POST /t/{tenant}/me/mfa/totp` that `code`
    /// confirms.
    #[serde(default)]
    pub factor_id: Option<String>,
}

impl std::fmt::Debug for StepUpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpRequest").finish_non_exhaustive()
    }
}

/// Proves the caller again within their session: raises its `auth_time`, `amr` and `acr`
/// (everywhere at once, forward-auth included) and answers an access token that carries
/// them. Wrong proofs count towards the second-factor lockout.
#[utoipa::path(post, path = "/t/{tenant}/me/step-up", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])), request_body = StepUpRequest,
    responses((status = 200, description = "The session is raised", body = SteppedUp), (status = 401, description = "invalid_token, invalid_code, invalid_credentials (wrong password)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden (API keys), mfa_disabled, upstream_step_up_required (no password and no second factor: sign in again through the identity provider), network_denied", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request (give exactly one of code or password)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "second_factor_locked (Retry-After): 5 failures lock for 5 min, 10 for 30 min, 15 for 2 h; rate_limited (too many attempts from this address)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn step_up(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<StepUpRequest>,
) -> Result<Response, ApiError> {
    let stepped = match (body.code, body.password, body.factor_id) {
        (Some(code), None, Some(factor)) => {
            let factor = factor_id(&factor)?;
            state
                .identity
                .step_up_by_enrolling(&principal, factor, &code, &meta)
                .await?
        }
        (Some(code), None, None) => {
            state
                .identity
                .step_up(&principal, StepUpProof::Code(code), &meta)
                .await?
        }
        (None, Some(password), None) => {
            state
                .identity
                .step_up(&principal, StepUpProof::Password(password), &meta)
                .await?
        }
        _ => {
            return Err(IdentityError::InvalidRequest(
                "give `code` (with `factor_id` to confirm an enrolment) or `password`".into(),
            )
            .into());
        }
    };
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json::<SteppedUp>(stepped),
    )
        .into_response())
}
