//! OAuth 2.0 endpoints with their RFC error format (`{"error", "error_description"}`, not
//! problem+json): token (RFC 6749: `authorization_code` with PKCE, `refresh_token`,
//! `client_credentials`), revocation (RFC 7009) and introspection (RFC 7662).

use super::extract::{Authenticated, Meta};
use crate::AppState;
use crate::error::identity_parts;
use crate::identity::{ClientCredentials, DevicePoll, IdentityError, IssuedTokens};
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// `/t/{tenant}/oauth2/token`, `/revoke`, `/introspect`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/oauth2/token", post(token))
        .route("/t/{tenant}/oauth2/revoke", post(revoke))
        .route("/t/{tenant}/oauth2/introspect", post(introspect))
        .route(
            "/t/{tenant}/oauth2/device_authorization",
            post(device_authorization),
        )
}

/// An RFC 6749 §5.2 error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_token`, …
    pub error: &'static str,
    /// Human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    status: StatusCode,
    #[serde(skip)]
    #[schema(ignore)]
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            error_description: Some(description.into()),
            status,
            retry_after: None,
        }
    }
}

impl From<IdentityError> for OAuthError {
    fn from(e: IdentityError) -> Self {
        let (status, _, title) = identity_parts(&e);
        if status.is_server_error() && !matches!(e, IdentityError::Busy { .. }) {
            tracing::error!(error = %e, "oauth request failed");
        }
        let (status, error) = match &e {
            IdentityError::InvalidGrant => (StatusCode::BAD_REQUEST, "invalid_grant"),
            IdentityError::InvalidScope => (StatusCode::BAD_REQUEST, "invalid_scope"),
            IdentityError::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
            IdentityError::UnauthorizedClient => (StatusCode::BAD_REQUEST, "unauthorized_client"),
            IdentityError::TenantNotFound => (StatusCode::NOT_FOUND, "invalid_request"),
            IdentityError::InvalidToken
            | IdentityError::ExpiredToken
            | IdentityError::RevokedToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            IdentityError::NetworkDenied => (StatusCode::FORBIDDEN, "access_denied"),
            IdentityError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow_down"),
            IdentityError::Busy { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            e if e.is_unavailable() => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            _ if status.is_server_error() => (status, "server_error"),
            _ => (StatusCode::BAD_REQUEST, "invalid_request"),
        };
        let retry_after = match e {
            IdentityError::RateLimited { .. } | IdentityError::Busy { .. } => e.retry_after(),
            ref e if e.is_unavailable() => e.retry_after(),
            _ => None,
        }
        .map(|d| d.as_secs().max(1));
        Self {
            error,
            error_description: Some(title.into()),
            status,
            retry_after,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response =
            (status, [(header::CACHE_CONTROL, "no-store")], Json(&self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a failed client authentication names the scheme it takes.
            let challenge = if self.error == "invalid_client" {
                "Basic realm=\"keygate\""
            } else {
                "Bearer error=\"invalid_token\""
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

fn form_error(rejection: &FormRejection) -> OAuthError {
    let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    OAuthError::new(
        status,
        "invalid_request",
        "the body must be application/x-www-form-urlencoded with the documented parameters",
    )
}

/// `POST /oauth2/token` parameters.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// The authorization code (`authorization_code`).
    #[serde(default)]
    pub code: Option<String>,
    /// The redirect URI the code was issued for (`authorization_code`).
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The PKCE verifier (`authorization_code` with a challenge).
    #[serde(default)]
    pub code_verifier: Option<String>,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Narrows the new access token's scope to these of the session's scopes (RFC 6749
    /// §6; a scope the session was not granted is `invalid_scope`), or the scopes a client
    /// asks for itself (`client_credentials`, within its `allowedScopes`).
    #[serde(default)]
    pub scope: Option<String>,
    /// The client: required of public clients and of `refresh_token` (keygate's own sign-in
    /// is `keygate`); a confidential client may send it with `client_secret` here
    /// (`client_secret_post`) or in HTTP Basic instead (`client_secret_basic`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// A confidential client's secret (`client_secret_post`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The device code (`urn:ietf:params:oauth:grant-type:device_code`).
    #[serde(default)]
    pub device_code: Option<String>,
}

/// RFC 6749 §5.1 success answer (with OpenID Connect's `id_token`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// RFC 9068 JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
    /// The refresh token (a successor when one was presented; absent for
    /// `client_credentials` and clients without the refresh grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
    /// The ID token, when `openid` was granted to a registered client (authorization code,
    /// device code, refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
            scope: t.scope,
            id_token: t.id_token,
        }
    }
}

/// The client credentials of a request: HTTP Basic (RFC 6749 §2.3.1: id and secret
/// form-urlencoded, then base64) or the form's `client_id` and `client_secret`. Both at once
/// is `invalid_request` (§2.3); neither is `None`.
pub(crate) fn client_credentials(
    headers: &HeaderMap,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<Option<ClientCredentials>, OAuthError> {
    let client_id = client_id.filter(|c| !c.is_empty());
    let client_secret = client_secret.filter(|c| !c.is_empty());
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        })
        .map(|(_, b64)| b64.trim().to_owned());
    if let Some(b64) = basic {
        if client_secret.is_some() {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method, not HTTP Basic and client_secret",
            ));
        }
        let invalid = || OAuthError::from(IdentityError::InvalidClient);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| invalid())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let id = decode(id);
        if client_id.is_some_and(|c| c != id) {
            return Err(invalid());
        }
        return Ok(Some(ClientCredentials {
            basic: Some((id, decode(secret))),
            client_id: client_id.map(str::to_owned),
            client_secret: None,
        }));
    }
    Ok(client_id.map(|id| ClientCredentials {
        basic: None,
        client_id: Some(id.to_owned()),
        client_secret: client_secret.map(str::to_owned),
    }))
}

/// The client id credentials name (HTTP Basic's user, else the form's `client_id`).
fn named_client(c: &ClientCredentials) -> Option<&str> {
    c.basic
        .as_ref()
        .map(|(id, _)| id.as_str())
        .or(c.client_id.as_deref())
}

fn required<'a>(v: Option<&'a str>, name: &str) -> Result<&'a str, OAuthError> {
    v.filter(|v| !v.is_empty()).ok_or_else(|| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{name} is required"),
        )
    })
}

/// The device grant's `grant_type` (RFC 8628 §3.4).
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// RFC 6749 token endpoint: `authorization_code` (with PKCE), `refresh_token` (rotates the
/// refresh token), `client_credentials` and the device grant (RFC 8628: while the person has
/// not decided, `authorization_pending`, `slow_down`, `access_denied`, `expired_token`).
#[utoipa::path(post, path = "/t/{tenant}/oauth2/token", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Tokens", body = TokenResponse),
        (status = 400, description = "invalid_request, invalid_grant, invalid_scope, unauthorized_client, unsupported_grant_type; for the device grant authorization_pending, slow_down, access_denied, expired_token", body = OAuthError),
        (status = 401, description = "invalid_client: unknown client, wrong secret, or another authentication method than registered", body = OAuthError),
        (status = 404, description = "invalid_request: no such tenant", body = OAuthError), (status = 413, description = "invalid_request: the body is over the size limit", body = OAuthError), (status = 403, description = "access_denied: the client's address is outside the tenant's network lists; the refresh token stays unspent", body = OAuthError), (status = 429, description = "slow_down", body = OAuthError), (status = 503, description = "temporarily_unavailable", body = OAuthError)))]
async fn token(
    State(state): State<AppState>,
    tenant: Result<TenantName, crate::error::ApiError>,
    Meta(meta): Meta,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let TenantName(tenant) = tenant.map_err(|_| IdentityError::TenantNotFound)?;
    let Form(form) = form.map_err(|r| form_error(&r))?;
    let grant = form.grant_type.as_deref().ok_or_else(|| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        )
    })?;
    let creds = client_credentials(
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let missing_client = || OAuthError::from(IdentityError::InvalidClient);
    let issued: TokenResponse = match grant {
        "authorization_code" => {
            let creds = creds.ok_or_else(missing_client)?;
            let code = required(form.code.as_deref(), "code")?;
            state
                .identity
                .exchange_authorization_code(
                    &tenant,
                    &creds,
                    code,
                    form.redirect_uri.as_deref(),
                    form.code_verifier.as_deref(),
                    &meta,
                )
                .await?
                .into()
        }
        "client_credentials" => {
            let creds = creds.ok_or_else(missing_client)?;
            state
                .identity
                .client_credentials_grant(&tenant, &creds, form.scope.as_deref(), &meta)
                .await?
                .into()
        }
        "refresh_token" => {
            let refresh_token = required(form.refresh_token.as_deref(), "refresh_token")?;
            let pair = state
                .identity
                .refresh_for_client(
                    &tenant,
                    refresh_token,
                    form.scope.as_deref(),
                    creds.as_ref(),
                    &meta,
                )
                .await?;
            TokenResponse {
                access_token: pair.access_token,
                token_type: pair.token_type,
                expires_in: pair.expires_in,
                refresh_token: Some(pair.refresh_token),
                scope: pair.scope,
                id_token: pair.id_token,
            }
        }
        DEVICE_GRANT => {
            let creds = creds.ok_or_else(missing_client)?;
            let device_code = required(form.device_code.as_deref(), "device_code")?;
            device_grant(&state, &tenant, &creds, device_code, &meta).await?
        }
        _ => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code, refresh_token, client_credentials or urn:ietf:params:oauth:grant-type:device_code",
            ));
        }
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(issued)).into_response())
}

/// The device grant's poll (RFC 8628 §3.5): the tokens once the person approved, else the
/// error that tells the device to keep polling, slow down or give up.
async fn device_grant(
    state: &AppState,
    tenant: &str,
    creds: &ClientCredentials,
    device_code: &str,
    meta: &crate::identity::RequestMeta,
) -> Result<TokenResponse, OAuthError> {
    let pending =
        |error, text: &str| OAuthError::new(StatusCode::BAD_REQUEST, error, text.to_owned());
    match state
        .identity
        .poll_device(tenant, creds, device_code, meta)
        .await?
    {
        DevicePoll::Issued(tokens) => Ok(tokens.into()),
        DevicePoll::Pending => Err(pending(
            "authorization_pending",
            "the person has not decided yet",
        )),
        DevicePoll::SlowDown => Err(pending("slow_down", "poll no faster than the interval")),
        DevicePoll::Denied => Err(pending("access_denied", "the person denied the request")),
        DevicePoll::Expired => Err(pending("expired_token", "the device code expired")),
    }
}

/// `POST /oauth2/revoke` and `/oauth2/introspect` parameters.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenParam {
    /// The token.
    #[serde(default)]
    pub token: Option<String>,
    /// `access_token` or `refresh_token`.
    #[serde(default)]
    pub token_type_hint: Option<String>,
    /// A registered client (with `client_secret` for `client_secret_post`, or in HTTP
    /// Basic instead).
    #[serde(default)]
    pub client_id: Option<String>,
    /// A confidential client's secret.
    #[serde(default)]
    pub client_secret: Option<String>,
}

/// RFC 7009 revocation: a refresh token ends its family, an access token its session. A
/// registered client authenticates (HTTP Basic, `client_secret_post`, or `client_id` alone
/// for a public client) and revokes only its own tokens; without client credentials the
/// token itself is the authority, as before.
#[utoipa::path(post, path = "/t/{tenant}/oauth2/revoke", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or unknown or another client's (the same answer)"), (status = 400, description = "invalid_request", body = OAuthError), (status = 401, description = "invalid_client", body = OAuthError), (status = 404, description = "invalid_request: no such tenant", body = OAuthError), (status = 413, description = "invalid_request: the body is over the size limit", body = OAuthError), (status = 503, description = "temporarily_unavailable", body = OAuthError)))]
async fn revoke(
    State(state): State<AppState>,
    tenant: Result<TenantName, crate::error::ApiError>,
    Meta(meta): Meta,
    headers: HeaderMap,
    form: Result<Form<TokenParam>, FormRejection>,
) -> Result<StatusCode, OAuthError> {
    let TenantName(tenant) = tenant.map_err(|_| IdentityError::TenantNotFound)?;
    let Form(form) = form.map_err(|r| form_error(&r))?;
    let token = form.token.filter(|t| !t.is_empty()).ok_or_else(|| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        )
    })?;
    let hint = form.token_type_hint.as_deref();
    let creds = client_credentials(
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    match creds.filter(|c| named_client(c) != Some("keygate")) {
        Some(c) => {
            state
                .identity
                .revoke_for_client(&tenant, &c, &token, hint, &meta)
                .await?
        }
        None => {
            state
                .identity
                .revoke_token(&tenant, &token, hint, &meta)
                .await?
        }
    }
    Ok(StatusCode::OK)
}

/// RFC 7662 §2.2 answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntrospectionResponse {
    /// Whether the token is usable now.
    pub active: bool,
    /// `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// RFC 7662 introspection, for a confidential client with its credentials (HTTP Basic or
/// `client_secret_post`: tokens issued to it) or a caller with a bearer access token or API
/// key (admins and API keys see every token of their tenant, people their own).
#[utoipa::path(post, path = "/t/{tenant}/oauth2/introspect", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security((), ("bearer" = [])),
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Token state", body = IntrospectionResponse), (status = 400, description = "invalid_request", body = OAuthError), (status = 401, description = "invalid_client (client credentials) or invalid_token (bearer)", body = OAuthError), (status = 404, description = "invalid_request: no such tenant", body = OAuthError), (status = 413, description = "invalid_request: the body is over the size limit", body = OAuthError)))]
async fn introspect(
    State(state): State<AppState>,
    tenant: Result<TenantName, crate::error::ApiError>,
    headers: HeaderMap,
    caller: Result<Authenticated, crate::error::ApiError>,
    form: Result<Form<TokenParam>, FormRejection>,
) -> Result<Json<IntrospectionResponse>, OAuthError> {
    let Form(form) = form.map_err(|r| form_error(&r))?;
    let creds = client_credentials(
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    if let Some(creds) = creds {
        let TenantName(tenant) = tenant.map_err(|_| IdentityError::TenantNotFound)?;
        let Some(token) = form.token.filter(|t| !t.is_empty()) else {
            // RFC 7662 §2.1: the caller is authenticated before anything else is looked at,
            // so a wrong secret is 401 whatever else is missing.
            state.identity.authenticate_client(&tenant, &creds).await?;
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "token is required",
            ));
        };
        let i = state
            .identity
            .introspect_for_client(&tenant, &creds, &token, form.token_type_hint.as_deref())
            .await?;
        return Ok(Json(IntrospectionResponse::from(i)));
    }
    let Ok(Authenticated(caller)) = caller else {
        return Err(OAuthError::from(IdentityError::InvalidToken));
    };
    let token = form.token.filter(|t| !t.is_empty()).ok_or_else(|| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        )
    })?;
    let i = state
        .identity
        .introspect(&caller, &token, form.token_type_hint.as_deref())
        .await?;
    Ok(Json(IntrospectionResponse::from(i)))
}

impl From<crate::identity::Introspection> for IntrospectionResponse {
    fn from(i: crate::identity::Introspection) -> Self {
        Self {
            active: i.active,
            token_type: i.token_type,
            sub: i.sub,
            client_id: i.client_id,
            scope: i.scope,
            exp: i.exp,
            iat: i.iat,
            iss: i.iss,
            sid: i.sid,
            jti: i.jti,
        }
    }
}

/// `POST /oauth2/device_authorization` parameters (RFC 8628 §3.1).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeviceAuthorizationForm {
    /// The client (public clients by id alone; confidential ones may use HTTP Basic).
    #[serde(default)]
    pub client_id: Option<String>,
    /// A confidential client's secret (`client_secret_post`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Space-separated scopes within the client's `allowedScopes` (`openid` by default).
    #[serde(default)]
    pub scope: Option<String>,
}

/// RFC 8628 §3.2 answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorizationResponse {
    /// Polled with at the token endpoint.
    pub device_code: String,
    /// What the person enters (`XXXX-XXXX`).
    pub user_code: String,
    /// Where the person enters it (`{issuer}/device`).
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// RFC 8628 device authorization: a device code to poll with and a user code for the person.
#[utoipa::path(post, path = "/t/{tenant}/oauth2/device_authorization", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    request_body(content = DeviceAuthorizationForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The codes", body = DeviceAuthorizationResponse),
        (status = 400, description = "invalid_request, invalid_scope, unauthorized_client (the client may not use the device grant)", body = OAuthError),
        (status = 401, description = "invalid_client", body = OAuthError), (status = 404, description = "invalid_request: no such tenant", body = OAuthError), (status = 413, description = "invalid_request: the body is over the size limit", body = OAuthError), (status = 429, description = "slow_down", body = OAuthError), (status = 503, description = "temporarily_unavailable", body = OAuthError)))]
async fn device_authorization(
    State(state): State<AppState>,
    tenant: Result<TenantName, crate::error::ApiError>,
    Meta(meta): Meta,
    headers: HeaderMap,
    form: Result<Form<DeviceAuthorizationForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let TenantName(tenant) = tenant.map_err(|_| IdentityError::TenantNotFound)?;
    let Form(form) = form.map_err(|r| form_error(&r))?;
    let creds = client_credentials(
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?
    .ok_or_else(|| OAuthError::from(IdentityError::InvalidClient))?;
    let d = state
        .identity
        .authorize_device(&tenant, &creds, form.scope.as_deref(), &meta)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(DeviceAuthorizationResponse {
            device_code: d.device_code,
            user_code: d.user_code,
            verification_uri: d.verification_uri,
            verification_uri_complete: d.verification_uri_complete,
            expires_in: d.expires_in,
            interval: d.interval,
        }),
    )
        .into_response())
}
