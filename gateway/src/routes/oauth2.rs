//! OAuth 2.0 endpoints with their RFC error format (`{"error", "error_description"}`, not
//! problem+json): token (RFC 6749, `grant_type=refresh_token`), revocation (RFC 7009) and
//! introspection (RFC 7662, authenticated callers only).

use super::extract::{Authenticated, Meta};
use crate::AppState;
use crate::error::identity_parts;
use crate::identity::IdentityError;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// `/t/{tenant}/oauth2/token`, `/revoke`, `/introspect`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/oauth2/token", post(token))
        .route("/t/{tenant}/oauth2/revoke", post(revoke))
        .route("/t/{tenant}/oauth2/introspect", post(introspect))
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
            IdentityError::TenantNotFound => (StatusCode::NOT_FOUND, "invalid_request"),
            IdentityError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            IdentityError::NetworkDenied => (StatusCode::FORBIDDEN, "access_denied"),
            IdentityError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow_down"),
            IdentityError::Unavailable(_) | IdentityError::Busy { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            _ if status.is_server_error() => (status, "server_error"),
            _ => (StatusCode::BAD_REQUEST, "invalid_request"),
        };
        let retry_after = match e {
            IdentityError::RateLimited { retry_after } | IdentityError::Busy { retry_after } => {
                Some(retry_after.as_secs().max(1))
            }
            _ => None,
        };
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
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
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
    /// Only `refresh_token` is supported.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Narrows the new access token's scope to these of the session's scopes (RFC 6749
    /// §6); a scope the session was not granted is `invalid_scope`.
    #[serde(default)]
    pub scope: Option<String>,
    /// The client the session was issued to (`keygate` for keygate's own sign-in); required:
    /// missing or another client's is `invalid_grant` (the refresh token is bound to its
    /// client, RFC 6749 §6), and an unspent refresh token stays usable.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// RFC 6749 §5.1 success answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// RFC 9068 JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
    /// The successor refresh token (the presented one is spent).
    pub refresh_token: String,
    /// Granted scopes.
    pub scope: String,
}

/// RFC 6749 token endpoint: `grant_type=refresh_token` rotates the refresh token.
#[utoipa::path(post, path = "/t/{tenant}/oauth2/token", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "A new pair", body = TokenResponse),
        (status = 400, description = "invalid_request, invalid_grant, invalid_scope, unsupported_grant_type", body = OAuthError), (status = 403, description = "access_denied: the client's address is outside the tenant's network lists; the refresh token stays unspent", body = OAuthError), (status = 429, description = "slow_down", body = OAuthError), (status = 503, description = "temporarily_unavailable", body = OAuthError)))]
async fn token(
    State(state): State<AppState>,
    tenant: Result<TenantName, crate::error::ApiError>,
    Meta(meta): Meta,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let TenantName(tenant) = tenant.map_err(|_| IdentityError::TenantNotFound)?;
    let Form(form) = form.map_err(|r| form_error(&r))?;
    match form.grant_type.as_deref() {
        Some("refresh_token") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=refresh_token is supported",
            ));
        }
        None => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            ));
        }
    }
    let refresh_token = form
        .refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "refresh_token is required",
            )
        })?;
    let pair = state
        .identity
        .refresh(
            &tenant,
            &refresh_token,
            form.scope.as_deref(),
            form.client_id.as_deref(),
            &meta,
        )
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(TokenResponse {
            access_token: pair.access_token,
            token_type: pair.token_type,
            expires_in: pair.expires_in,
            refresh_token: pair.refresh_token,
            scope: pair.scope,
        }),
    )
        .into_response())
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
}

/// RFC 7009 revocation: a refresh token ends its family, an access token its session.
#[utoipa::path(post, path = "/t/{tenant}/oauth2/revoke", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or unknown (the same answer)"), (status = 400, description = "invalid_request", body = OAuthError)))]
async fn revoke(
    State(state): State<AppState>,
    tenant: Result<TenantName, crate::error::ApiError>,
    Meta(meta): Meta,
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
    state
        .identity
        .revoke_token(&tenant, &token, form.token_type_hint.as_deref(), &meta)
        .await?;
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

/// RFC 7662 introspection, for authenticated callers (admins and API keys see every token
/// of their tenant, people their own).
#[utoipa::path(post, path = "/t/{tenant}/oauth2/introspect", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])),
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Token state", body = IntrospectionResponse), (status = 400, description = "invalid_request", body = OAuthError), (status = 401, description = "invalid_token", body = OAuthError)))]
async fn introspect(
    State(state): State<AppState>,
    caller: Result<Authenticated, crate::error::ApiError>,
    form: Result<Form<TokenParam>, FormRejection>,
) -> Result<Json<IntrospectionResponse>, OAuthError> {
    let Ok(Authenticated(caller)) = caller else {
        return Err(OAuthError::from(IdentityError::InvalidToken));
    };
    let Form(form) = form.map_err(|r| form_error(&r))?;
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
    Ok(Json(IntrospectionResponse {
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
    }))
}
