//! WebAuthn security keys and passkeys over JSON. Each ceremony is two calls: the first
//! answers the options for `navigator.credentials.create()` / `.get()` (and, where no
//! `mfa_token` or session names it, a `ceremony_id`), the second takes the browser's
//! `PublicKeyCredential` as JSON (binary fields base64url, as `toJSON()` gives them).
//!
//! - registration: `POST /t/{tenant}/me/mfa/webauthn`, `…/me/mfa/webauthn/finish`
//! - sign-in second factor: `POST /t/{tenant}/login/mfa/webauthn/options`, `…/login/mfa/webauthn`
//! - step-up: `POST /t/{tenant}/me/step-up/webauthn/options`, `…/me/step-up/webauthn`
//! - passkey-only sign-in (tenant `mfa.passkeySignIn`): `POST /t/{tenant}/login/passkey/options`,
//!   `…/login/passkey`

use super::extract::{ApiJson, Authenticated, Meta};
use super::login::signed_in_response;
use crate::AppState;
use crate::error::ApiError;
use crate::identity::{
    BackupCodes, FactorInfo, PasskeySignIn, SteppedUp, WebauthnOptions, parse_credential,
};
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// WebAuthn routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/me/mfa/webauthn", post(register))
        .route("/t/{tenant}/me/mfa/webauthn/finish", post(finish_register))
        .route(
            "/t/{tenant}/login/mfa/webauthn/options",
            post(sign_in_options),
        )
        .route("/t/{tenant}/login/mfa/webauthn", post(sign_in))
        .route(
            "/t/{tenant}/me/step-up/webauthn/options",
            post(step_up_options),
        )
        .route("/t/{tenant}/me/step-up/webauthn", post(step_up))
        .route("/t/{tenant}/login/passkey/options", post(passkey_options))
        .route("/t/{tenant}/login/passkey", post(passkey))
}

fn options_response(o: WebauthnOptions) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(o)).into_response()
}

/// What to call the key.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// A name for it (at most 64 characters; default "Security key").
    #[serde(default)]
    pub label: Option<String>,
}

/// Starts registering a security key or passkey (user verification required; a
/// discoverable credential where the authenticator can make one).
#[utoipa::path(post, path = "/t/{tenant}/me/mfa/webauthn", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])), request_body = RegisterRequest,
    responses((status = 200, description = "Options for navigator.credentials.create() and the ceremony_id", body = WebauthnOptions), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "mfa_disabled, forbidden", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request (label, or ten keys already), invalid_body", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "unavailable", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn register(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let o = state
        .identity
        .begin_webauthn_registration(&principal, body.label.as_deref())
        .await?;
    Ok(options_response(o))
}

/// The authenticator's answer to a registration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRegisterRequest {
    /// The `ceremony_id` of the options.
    pub ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: Value,
}

/// A registered key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegisteredResponse {
    /// The new factor.
    pub factor: FactorInfo,
    /// The first backup codes, when this is the account's first factor (shown this once).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub backup_codes: Option<BackupCodes>,
}

/// Finishes a registration: the key becomes a second factor of the account.
#[utoipa::path(post, path = "/t/{tenant}/me/mfa/webauthn/finish", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])), request_body = FinishRegisterRequest,
    responses((status = 200, description = "Registered", body = RegisteredResponse), (status = 401, description = "invalid_token, invalid_ceremony (unknown, used or expired), invalid_webauthn_response (another origin or challenge, no user verification, a bad attestation)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "factor_exists (this credential is registered already)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request (not a PublicKeyCredential), invalid_body", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn finish_register(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<FinishRegisterRequest>,
) -> Result<Response, ApiError> {
    let credential = parse_credential(body.credential)?;
    let (factor, backup_codes) = state
        .identity
        .finish_webauthn_registration(&principal, &body.ceremony_id, &credential, &meta)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(RegisteredResponse {
            factor,
            backup_codes,
        }),
    )
        .into_response())
}

/// The pending sign-in to answer with a key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaTokenRequest {
    /// The `mfa_token` of the 403 `mfa_required` answer.
    pub mfa_token: String,
}

impl std::fmt::Debug for MfaTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaTokenRequest").finish_non_exhaustive()
    }
}

/// Options to answer a sign-in's second factor with a registered key.
#[utoipa::path(post, path = "/t/{tenant}/login/mfa/webauthn/options", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = MfaTokenRequest,
    responses((status = 200, description = "Options for navigator.credentials.get()", body = WebauthnOptions), (status = 401, description = "invalid_mfa_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "network_denied", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "no_second_factor (no security key or passkey registered: answer with a code)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "unavailable", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn sign_in_options(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<MfaTokenRequest>,
) -> Result<Response, ApiError> {
    let o = state
        .identity
        .begin_sign_in_webauthn(&tenant, &body.mfa_token, &meta)
        .await?;
    Ok(options_response(o))
}

/// A sign-in's second factor answered by a key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInAssertion {
    /// The `mfa_token` of the 403 `mfa_required` answer.
    pub mfa_token: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: Value,
}

impl std::fmt::Debug for SignInAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInAssertion").finish_non_exhaustive()
    }
}

/// Completes a sign-in with a security key or passkey as its second factor (`acr`
/// `urn:keygate:acr:phr`, `amr` `pwd` + `hwk`/`swk` + `user` + `mfa`).
#[utoipa::path(post, path = "/t/{tenant}/login/mfa/webauthn", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = SignInAssertion,
    responses((status = 200, description = "Signed in", body = super::login::LoginResponse), (status = 401, description = "invalid_mfa_token, invalid_ceremony (ask for options first; each is good for one answer), invalid_webauthn_response (another origin or challenge, bad signature, no user verification, a counter that did not advance)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "network_denied", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request, invalid_body", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "second_factor_locked (Retry-After), rate_limited", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn sign_in(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<SignInAssertion>,
) -> Result<Response, ApiError> {
    let credential = parse_credential(body.credential)?;
    let done = state
        .identity
        .complete_sign_in_webauthn(&tenant, &body.mfa_token, &credential, &meta)
        .await?;
    let browser = done.session_cookie.is_some();
    signed_in_response(&state, &tenant, done, browser).await
}

/// Options for a step-up with a registered key (one pending per session).
#[utoipa::path(post, path = "/t/{tenant}/me/step-up/webauthn/options", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 200, description = "Options for navigator.credentials.get()", body = WebauthnOptions), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden (API keys), mfa_disabled", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "no_second_factor", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn step_up_options(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let o = state.identity.begin_step_up_webauthn(&principal).await?;
    Ok(options_response(o))
}

/// A step-up answered by a key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpAssertion {
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: Value,
}

impl std::fmt::Debug for StepUpAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpAssertion").finish_non_exhaustive()
    }
}

/// Raises the caller's session with a security key or passkey: `auth_time` now, `amr`
/// gains `hwk`/`swk` and `user`, `acr` becomes `urn:keygate:acr:phr`.
#[utoipa::path(post, path = "/t/{tenant}/me/step-up/webauthn", tag = "mfa", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])), request_body = StepUpAssertion,
    responses((status = 200, description = "The session is raised", body = SteppedUp), (status = 401, description = "invalid_token, invalid_ceremony, invalid_webauthn_response", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden, mfa_disabled, network_denied", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request, invalid_body", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "second_factor_locked (Retry-After), rate_limited", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn step_up(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<StepUpAssertion>,
) -> Result<Response, ApiError> {
    let credential = parse_credential(body.credential)?;
    let stepped = state
        .identity
        .step_up_webauthn(&principal, &credential, &meta)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json::<SteppedUp>(stepped),
    )
        .into_response())
}

/// What a passkey sign-in is for.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyOptionsRequest {
    /// OAuth client the tokens are for (as for `POST /t/{tenant}/login`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated scopes (as for `POST /t/{tenant}/login`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Also set the browser session cookie (and the device cookie).
    #[serde(default)]
    pub browser_session: bool,
    /// The `device_token` of an earlier sign-in.
    #[serde(default)]
    pub device_token: Option<String>,
}

/// Starts a passkey-only sign-in: options naming no credential, so the authenticator offers
/// the discoverable passkeys it holds for this site.
#[utoipa::path(post, path = "/t/{tenant}/login/passkey/options", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = PasskeyOptionsRequest,
    responses((status = 200, description = "Options for navigator.credentials.get() and the ceremony_id", body = WebauthnOptions), (status = 403, description = "passkey_sign_in_disabled (the tenant's mfa.passkeySignIn is off, or its mfa.policy is off), network_denied", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "rate_limited", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn passkey_options(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    ApiJson(body): ApiJson<PasskeyOptionsRequest>,
) -> Result<Response, ApiError> {
    let cookie_device = jar
        .get(state.cookie_mode.device_cookie())
        .map(|c| c.value().to_owned());
    let req = PasskeySignIn {
        client_id: body.client_id,
        scope: body.scope,
        browser: body.browser_session,
        device: body.device_token.or(cookie_device),
    };
    let o = state
        .identity
        .begin_passkey_sign_in(&tenant, req, &meta)
        .await?;
    Ok(options_response(o))
}

/// A passkey's answer.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAssertion {
    /// The `ceremony_id` of the options.
    pub ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON (its
    /// `response.userHandle` names the account).
    #[schema(value_type = Object)]
    pub credential: Value,
}

impl std::fmt::Debug for PasskeyAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyAssertion").finish_non_exhaustive()
    }
}

/// Signs in with a passkey alone (verified on the device): `acr` `urn:keygate:acr:phr`,
/// `amr` `user` + `hwk`/`swk` + `mfa`. No second factor is asked after it.
#[utoipa::path(post, path = "/t/{tenant}/login/passkey", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = PasskeyAssertion,
    responses((status = 200, description = "Signed in", body = super::login::LoginResponse), (status = 401, description = "invalid_ceremony (unknown, used or expired), invalid_webauthn_response (unknown passkey, another origin or challenge, bad signature, no user verification, a counter that did not advance)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "passkey_sign_in_disabled, account_suspended, email_not_verified, password_change_required, network_denied", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_request, invalid_body", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn passkey(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<PasskeyAssertion>,
) -> Result<Response, ApiError> {
    let credential = parse_credential(body.credential)?;
    let done = state
        .identity
        .passkey_sign_in(&tenant, &body.ceremony_id, &credential, &meta)
        .await?;
    let browser = done.session_cookie.is_some();
    signed_in_response(&state, &tenant, done, browser).await
}
