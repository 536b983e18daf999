//! JSON sign-in and sign-out: `POST /t/{tenant}/login` (form posts of the HTML page are
//! sent on to `/t/{tenant}/signin`), `POST /t/{tenant}/logout`.

use super::extract::{ApiJson, Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::{
    BackupCodes, DEVICE_TOKEN_TTL, PasswordSignIn, SecondFactorChallenge, SignInOutcome, SignedIn,
};
use crate::tenant_path::TenantName;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Json, Router};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};

/// `/t/{tenant}/login`, `/t/{tenant}/logout`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/login", post(login))
        .route("/t/{tenant}/login/mfa", post(login_mfa))
        .route("/t/{tenant}/login/mfa/totp", post(login_mfa_enrol))
        .route("/t/{tenant}/logout", post(logout))
}

/// JSON sign-in request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email of the account.
    pub email: String,
    /// Its password.
    pub password: String,
    /// A new password, required when the account must change its password.
    #[serde(default)]
    pub new_password: Option<String>,
    /// OAuth client the tokens are for: the tenant's own, `keygate` (the default); another
    /// is `invalid_request`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated scopes (`openid` by default): OpenID Connect standard scopes
    /// (`openid`, `profile`, `email`, `offline_access`) and permissions the person holds
    /// through a Role; anything else is `invalid_scope`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Also set the browser session cookie (and the device cookie).
    #[serde(default)]
    pub browser_session: bool,
    /// The `device_token` an earlier sign-in (or unlock) of this account answered: the
    /// attempt is then judged by that device's own failure budget, not the account's
    /// lockout. Browsers send the `__Host-keygate_device` cookie instead.
    #[serde(default)]
    pub device_token: Option<String>,
}

/// Tokens and the session opened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// RFC 9068 JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
    /// Opaque refresh token; rotated on every use.
    pub refresh_token: String,
    /// Granted scopes.
    pub scope: String,
    /// Session id (`sid` claim).
    pub session_id: String,
    /// A new device token for this account, to keep and send back as `device_token` with
    /// later sign-ins (absent with `browser_session`: the device cookie carries it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// The first backup codes, when this sign-in enrolled the account's first second
    /// factor: shown this once, keep them safe.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub backup_codes: Option<BackupCodes>,
}

/// The 403 of a right password when a second factor is needed: problem+json (RFC 9457)
/// with the pending sign-in's token as an extension member.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecondFactorProblem {
    /// `https://keygate.dev/problems/mfa_required` (or `…/mfa_enrolment_required`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary.
    pub title: &'static str,
    /// 403.
    pub status: u16,
    /// `mfa_required`: send a code to `/t/{tenant}/login/mfa`; `mfa_enrolment_required`:
    /// the tenant requires a second factor and the account has none, enrol one with
    /// `/t/{tenant}/login/mfa/totp` first.
    pub code: &'static str,
    /// The pending sign-in; send it with the code. Single use, expires after `expires_in`.
    pub mfa_token: String,
    /// Seconds until `mfa_token` expires.
    pub expires_in: u64,
    /// How to answer: `totp` (six digits to `/login/mfa`), `webauthn` (a security key or
    /// passkey through `/login/mfa/webauthn/options` and `/login/mfa/webauthn`),
    /// `backup_code` (to `/login/mfa`).
    pub methods: Vec<&'static str>,
}

impl SecondFactorProblem {
    fn response(c: SecondFactorChallenge) -> Response {
        let (code, title) = if c.enrol {
            ("mfa_enrolment_required", "Enrol a second factor to sign in")
        } else {
            ("mfa_required", "A second factor is required")
        };
        let methods = c.methods;
        let body = Self {
            kind: format!("https://keygate.dev/problems/{code}"),
            title,
            status: StatusCode::FORBIDDEN.as_u16(),
            code,
            mfa_token: c.token,
            expires_in: c.expires_in,
            methods,
        };
        let mut response = (
            StatusCode::FORBIDDEN,
            [(header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// JSON sign-in: tokens (and a device token) for API clients, and the session and device
/// cookies when `browser_session` is set.
#[utoipa::path(post, path = "/t/{tenant}/login", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 307, description = "An HTML form post (application/x-www-form-urlencoded): sent on to the sign-in form at /t/{tenant}/signin"),
        (status = 400, description = "malformed_json, invalid_scope", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "invalid_credentials", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "mfa_required or mfa_enrolment_required (the password was right and a second factor is needed: the body is a SecondFactorProblem whose `mfa_token` goes to /t/{tenant}/login/mfa), email_not_verified, account_suspended, password_change_required, password_sign_in_disabled, network_denied (the client's address is outside the tenant's network lists)", body = SecondFactorProblem, content_type = "application/problem+json"),
        (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json"), (status = 413, description = "payload_too_large", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_body, invalid_request, password_policy, password_breached, password_reused", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "account_locked, rate_limited (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "unavailable; overloaded: every password-hashing thread is busy and the queue is full (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn login(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    request: Request,
) -> Result<Response, ApiError> {
    // Only what an HTML form posts is sent on; anything else that is not JSON (no body, no
    // content type, text) is refused 415 by the JSON extractor instead of being redirected
    // to a form handler that cannot read it either.
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if is_form {
        // The HTML sign-in form lives at /signin; 307 keeps the method and the body.
        return Ok(Redirect::temporary(&format!("/t/{tenant}/signin")).into_response());
    }
    let cookie_device = CookieJar::from_headers(request.headers())
        .get(state.cookie_mode.device_cookie())
        .map(|c| c.value().to_owned());
    let ApiJson(body) = ApiJson::<LoginRequest>::from_request_with(request, &state).await?;
    let req = PasswordSignIn {
        email: body.email,
        password: body.password,
        new_password: body.new_password,
        client_id: body.client_id,
        scope: body.scope,
        browser: body.browser_session,
        device: body.device_token.or(cookie_device),
    };
    let done = match state.identity.sign_in(&tenant, req, &meta).await? {
        SignInOutcome::SignedIn(done) => *done,
        SignInOutcome::SecondFactor(c) => return Ok(SecondFactorProblem::response(c)),
    };
    signed_in_response(&state, &tenant, done, body.browser_session).await
}

/// The tokens of a sign-in, and with `browser_session` its session and device cookies.
pub(super) async fn signed_in_response(
    state: &AppState,
    tenant: &str,
    done: SignedIn,
    browser_session: bool,
) -> Result<Response, ApiError> {
    let mut response = (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(LoginResponse {
            access_token: done.tokens.access_token,
            token_type: done.tokens.token_type,
            expires_in: done.tokens.expires_in,
            refresh_token: done.tokens.refresh_token,
            scope: done.tokens.scope,
            session_id: done.session_id.to_string(),
            device_token: (!browser_session).then_some(done.device_token),
            backup_codes: done.backup_codes,
        }),
    )
        .into_response();
    if browser_session && let Some(token) = &done.session_cookie {
        let live = state.identity.tenant(tenant).await?;
        let max_age = (done.session_expires_at - state.clock.now())
            .to_std()
            .unwrap_or_default();
        let cookie = state.session_cookie(&live).issue(token.clone(), max_age);
        let max_age = DEVICE_TOKEN_TTL.to_std().unwrap_or_default();
        let device = state.cookie_mode.device(done.device_cookie, max_age);
        for c in [cookie, device] {
            if let Ok(v) = HeaderValue::from_str(&c.encoded().to_string()) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
    Ok(response)
}

/// The second step of a sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaRequest {
    /// The `mfa_token` of the 403 `mfa_required` (or `mfa_enrolment_required`) answer.
    pub mfa_token: String,
    /// Six digits from the authenticator app, or one backup code (`xxxx-xxxx-xxxx`). While
    /// enrolling, the app's first code: it confirms the authenticator.
    pub code: String,
}

impl std::fmt::Debug for LoginMfaRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginMfaRequest").finish_non_exhaustive()
    }
}

/// Completes a sign-in with its second factor: tokens (and cookies, when the first step
/// asked for `browser_session`).
#[utoipa::path(post, path = "/t/{tenant}/login/mfa", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = LoginMfaRequest,
    responses(
        (status = 200, description = "Signed in; `backup_codes` when this sign-in enrolled the first factor", body = LoginResponse),
        (status = 400, description = "malformed_json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "invalid_code (wrong, used, or a replayed TOTP code), invalid_mfa_token (unknown, used or expired: sign in again)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "network_denied", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "no_second_factor (an enrolment challenge without an enrolled authenticator: call /login/mfa/totp first)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body, invalid_request", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "second_factor_locked (Retry-After): 5 wrong codes lock for 5 min, 10 for 30 min, 15 for 2 h; rate_limited (too many attempts from this address)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn login_mfa(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<LoginMfaRequest>,
) -> Result<Response, ApiError> {
    let done = state
        .identity
        .complete_sign_in(&tenant, &body.mfa_token, &body.code, &meta)
        .await?;
    let browser = done.session_cookie.is_some();
    signed_in_response(&state, &tenant, done, browser).await
}

/// The pending sign-in an enrolment belongs to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginEnrolRequest {
    /// The `mfa_token` of the 403 `mfa_enrolment_required` answer.
    pub mfa_token: String,
}

impl std::fmt::Debug for LoginEnrolRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginEnrolRequest").finish_non_exhaustive()
    }
}

/// Enrols a TOTP authenticator within a sign-in the tenant's `mfa.policy: required` held
/// back: the app reads the URI (or the QR code), and its first code, sent to
/// `/t/{tenant}/login/mfa`, confirms it and completes the sign-in.
#[utoipa::path(post, path = "/t/{tenant}/login/mfa/totp", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = LoginEnrolRequest,
    responses(
        (status = 200, description = "The authenticator to add", body = super::mfa::TotpEnrolmentResponse),
        (status = 401, description = "invalid_mfa_token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "network_denied, mfa_disabled", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "factor_exists (the challenge asks for a code, not an enrolment)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn login_mfa_enrol(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<LoginEnrolRequest>,
) -> Result<Response, ApiError> {
    let e = state
        .identity
        .begin_sign_in_enrolment(&tenant, &body.mfa_token, &meta)
        .await?;
    Ok(super::mfa::enrolment_response(e))
}

impl<T> ApiJson<T>
where
    T: serde::de::DeserializeOwned,
{
    /// Reads the body of a request already taken apart by the handler.
    pub async fn from_request_with(request: Request, state: &AppState) -> Result<Self, ApiError> {
        <Self as axum::extract::FromRequest<AppState>>::from_request(request, state).await
    }
}

/// Ends the session of the presented credential.
#[utoipa::path(post, path = "/t/{tenant}/logout", tag = "sessions", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    responses((status = 204, description = "Signed out"), (status = 401, description = "invalid_token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "forbidden (API keys have no session)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn logout(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<StatusCode, ApiError> {
    state.identity.sign_out(&principal, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
