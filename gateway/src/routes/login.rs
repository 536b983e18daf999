//! JSON sign-in and sign-out: `POST /t/{tenant}/login` (form posts of the HTML page are
//! sent on to `/t/{tenant}/signin`), `POST /t/{tenant}/logout`.

use super::extract::{ApiJson, Authenticated, Meta};
use crate::AppState;
use crate::error::ApiError;
use crate::identity::{DEVICE_TOKEN_TTL, PasswordSignIn};
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
}

/// JSON sign-in: tokens (and a device token) for API clients, and the session and device
/// cookies when `browser_session` is set.
#[utoipa::path(post, path = "/t/{tenant}/login", tag = "sign-in", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 307, description = "Not JSON: sent on to the HTML sign-in form at /t/{tenant}/signin"),
        (status = 400, description = "malformed_json, invalid_scope", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "invalid_credentials", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "email_not_verified, account_suspended, password_change_required, password_sign_in_disabled, network_denied (the client's address is outside the tenant's network lists)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json"), (status = 413, description = "payload_too_large", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid_body, invalid_request, password_policy, password_breached, password_reused", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "account_locked, rate_limited (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "unavailable; overloaded: every password-hashing thread is busy and the queue is full (Retry-After)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn login(
    State(state): State<AppState>,
    TenantName(tenant): TenantName,
    Meta(meta): Meta,
    request: Request,
) -> Result<Response, ApiError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
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
    let done = state.identity.sign_in(&tenant, req, &meta).await?;
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
            device_token: (!body.browser_session).then_some(done.device_token),
        }),
    )
        .into_response();
    if body.browser_session
        && let Some(token) = &done.session_cookie
    {
        let live = state.identity.tenant(&tenant).await?;
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
