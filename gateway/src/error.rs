//! The one error type handlers return, mapped once to `application/problem+json`
//! (RFC 9457) with a stable `code`. Internal causes are logged, never sent.

use crate::identity::{FederationRefusal, IdentityError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: no such tenant, or it is disabled (another tenant's objects also answer 404).
    #[error("tenant not found")]
    TenantNotFound,
    /// 404 `tenant_not_found`: the path's tenant segment is not spelled as a tenant name
    /// (a DNS label), so no tenant can have it; the detail says what a name looks like.
    #[error("not a tenant name")]
    NotATenantName,
    /// 404: no such route or object.
    #[error("not found")]
    NotFound,
    /// 503: a dependency (database, cache) is down; the client may retry.
    #[error("service unavailable")]
    Unavailable,
    /// 500: anything else unexpected; logged with its cause.
    #[error("internal error: {0}")]
    Internal(String),
    /// 4xx/5xx: an identity refusal or failure; see [`identity_parts`] for each status.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// 400 `malformed_json`, 415 `unsupported_media_type`, 413 `payload_too_large`, 422
    /// `invalid_body`: the request body could not be read as the endpoint's JSON.
    #[error("bad request body: {detail}")]
    Body {
        /// Status to answer.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// What was wrong, safe to show (serde's message names the field).
        detail: String,
    },
}

/// The RFC 9457 body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code clients may match on.
    pub code: &'static str,
    /// Explanation for this occurrence; never internal details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Status, code and title of each identity refusal (the codes are documented in docs/api.md).
///
/// Over 100 lines on purpose: one flat arm per `IdentityError` variant, so the whole
/// problem+json vocabulary reads as one table.
pub fn identity_parts(e: &IdentityError) -> (StatusCode, &'static str, &'static str) {
    use IdentityError as E;
    match e {
        E::TenantNotFound => (
            StatusCode::NOT_FOUND,
            "tenant_not_found",
            "Tenant not found",
        ),
        E::InvalidCredentials => (
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid email or password",
        ),
        E::AccountLocked { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "account_locked",
            "Account temporarily locked",
        ),
        E::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
        ),
        E::AccountSuspended => (
            StatusCode::FORBIDDEN,
            "account_suspended",
            "Account suspended",
        ),
        E::EmailNotVerified => (
            StatusCode::FORBIDDEN,
            "email_not_verified",
            "Email address not verified",
        ),
        E::PasswordChangeRequired => (
            StatusCode::FORBIDDEN,
            "password_change_required",
            "Password change required",
        ),
        E::PasswordSignInDisabled => (
            StatusCode::FORBIDDEN,
            "password_sign_in_disabled",
            "Password sign-in is disabled",
        ),
        E::RegistrationClosed => (
            StatusCode::FORBIDDEN,
            "registration_closed",
            "Registration is closed",
        ),
        E::InviteRequired => (
            StatusCode::FORBIDDEN,
            "invite_required",
            "A valid invite is required",
        ),
        E::PasswordPolicy(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_policy",
            "Password rejected by policy",
        ),
        E::PasswordBreached => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_breached",
            "Password found in breached-password list",
        ),
        E::PasswordReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_reused",
            "Password used recently",
        ),
        E::WrongCurrentPassword => (
            StatusCode::FORBIDDEN,
            "wrong_current_password",
            "Current password is wrong",
        ),
        E::InvalidLink => (
            StatusCode::BAD_REQUEST,
            "invalid_link",
            "Invalid or expired link",
        ),
        E::InvalidToken | E::ExpiredToken | E::RevokedToken => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid or missing credential",
        ),
        E::InvalidGrant => (StatusCode::BAD_REQUEST, "invalid_grant", "Invalid grant"),
        E::InvalidScope => (StatusCode::BAD_REQUEST, "invalid_scope", "Invalid scope"),
        E::InvalidClient => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Unknown client or client authentication failed",
        ),
        E::UnauthorizedClient => (
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "The client is not registered for this grant",
        ),
        E::NetworkDenied => (
            StatusCode::FORBIDDEN,
            "network_denied",
            "Not allowed from this network",
        ),
        E::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
        E::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
        E::InvalidRequest(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "Invalid request",
        ),
        E::InvalidEmail(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
            "Invalid email address",
        ),
        E::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        ),
        E::Busy { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many sign-ins at once; try again shortly",
        ),
        E::MailUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "mail_unavailable",
            "This installation cannot send email; configure SMTP",
        ),
        E::InvalidCode => (
            StatusCode::UNAUTHORIZED,
            "invalid_code",
            "Invalid second-factor code",
        ),
        E::SecondFactorLocked { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "second_factor_locked",
            "Too many wrong codes; second factor temporarily locked",
        ),
        E::InvalidChallenge => (
            StatusCode::UNAUTHORIZED,
            "invalid_mfa_token",
            "Sign-in challenge unknown, used or expired",
        ),
        E::InvalidCeremony => (
            StatusCode::UNAUTHORIZED,
            "invalid_ceremony",
            "WebAuthn ceremony unknown, used or expired; start again",
        ),
        E::InvalidWebauthnResponse => (
            StatusCode::UNAUTHORIZED,
            "invalid_webauthn_response",
            "The security key or passkey answer was refused",
        ),
        E::PasskeySignInDisabled => (
            StatusCode::FORBIDDEN,
            "passkey_sign_in_disabled",
            "Signing in with a passkey alone is off for this tenant",
        ),
        E::MfaDisabled => (
            StatusCode::FORBIDDEN,
            "mfa_disabled",
            "Multi-factor authentication is off for this tenant",
        ),
        E::FactorExists => (
            StatusCode::CONFLICT,
            "factor_exists",
            "An authenticator is already enrolled",
        ),
        E::NoSecondFactor => (
            StatusCode::CONFLICT,
            "no_second_factor",
            "No second factor enrolled",
        ),
        E::StepUpRequired { .. } => (
            StatusCode::FORBIDDEN,
            "step_up_required",
            "A recent step-up is required",
        ),
        E::LastSignInMethod => (
            StatusCode::CONFLICT,
            "last_sign_in_method",
            "The last way to sign in cannot be removed",
        ),
        E::UpstreamStepUpRequired => (
            StatusCode::FORBIDDEN,
            "upstream_step_up_required",
            "Sign in again through your identity provider",
        ),
        E::Federation(r) => federation_parts(r),
        // A unique constraint: the row exists already (an upstream identity linked to
        // another account, a second link to one provider), which the caller can resolve.
        // The database is unreachable: the request may succeed unchanged once it is back.
        E::Store(_) if e.is_unavailable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        ),
        E::Store(_) if e.is_conflict() => (
            StatusCode::CONFLICT,
            "conflict",
            "Conflicts with an existing record",
        ),
        E::Store(_) | E::Crypto(_) | E::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        ),
    }
}

/// Status, code and title of an upstream sign-in's refusal.
pub fn federation_parts(r: &FederationRefusal) -> (StatusCode, &'static str, &'static str) {
    use FederationRefusal as R;
    match r {
        R::ProviderError { .. } => (
            StatusCode::FORBIDDEN,
            "upstream_refused",
            "The identity provider refused the sign-in",
        ),
        R::InvalidState => (
            StatusCode::BAD_REQUEST,
            "invalid_state",
            "Unknown, used or expired sign-in",
        ),
        R::InvalidAnswer(_) => (
            StatusCode::BAD_REQUEST,
            "upstream_answer_invalid",
            "The identity provider's answer failed validation",
        ),
        R::Unreachable(_) => (
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            "The identity provider cannot be reached",
        ),
        R::NoEmail => (
            StatusCode::FORBIDDEN,
            "upstream_no_email",
            "The identity provider shared no verified email address",
        ),
        R::EmailDomainNotAllowed => (
            StatusCode::FORBIDDEN,
            "email_domain_not_allowed",
            "Email domain not allowed",
        ),
        R::OrganizationNotAllowed => (
            StatusCode::FORBIDDEN,
            "organization_not_allowed",
            "Organization not allowed",
        ),
        R::HostedDomainNotAllowed => (
            StatusCode::FORBIDDEN,
            "hosted_domain_not_allowed",
            "Google Workspace domain not allowed",
        ),
        R::NewAccountsClosed => (
            StatusCode::FORBIDDEN,
            "registration_closed",
            "Registration is closed",
        ),
        R::ProviderUnusable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unusable",
            "The identity provider is not usable right now",
        ),
        R::FreshnessUnknown => (
            StatusCode::FORBIDDEN,
            "upstream_freshness_unknown",
            "The identity provider cannot confirm a fresh sign-in",
        ),
        R::NotTheSamePerson => (
            StatusCode::FORBIDDEN,
            "upstream_other_person",
            "Signed in as someone else at the identity provider",
        ),
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Identity(e) => identity_parts(e),
            Self::Body { status, code, .. } => (*status, code, "Bad request body"),
            Self::TenantNotFound | Self::NotATenantName => (
                StatusCode::NOT_FOUND,
                "tenant_not_found",
                "Tenant not found",
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        // A refusal at hashing capacity is counted (keygate_password_hash_rejected_total),
        // not logged: under overload one line per refusal would flood the log.
        if status.is_server_error() && !matches!(self, Self::Identity(IdentityError::Busy { .. })) {
            tracing::error!(error = %self, code, "request failed");
        }
        let detail = match &self {
            Self::Identity(IdentityError::PasswordPolicy(d) | IdentityError::InvalidRequest(d)) => {
                Some(d.clone())
            }
            Self::Identity(IdentityError::InvalidEmail(why)) => Some(format!("email: {why}")),
            Self::Identity(IdentityError::Federation(r)) => Some(r.to_string()),
            Self::Body { detail, .. } => Some(detail.clone()),
            Self::NotATenantName => Some(
                "a tenant name is a DNS label: 1 to 63 lower-case letters, digits or '-', \
                 starting and ending with a letter or digit"
                    .into(),
            ),
            _ => None,
        };
        let mut response = problem_response(status, code, title, detail);
        if let Self::Identity(e) = &self
            && let Some(retry_after) = e.retry_after()
            && let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        match &self {
            Self::Identity(IdentityError::StepUpRequired {
                max_age,
                acr,
                tenant,
            }) => {
                return step_up_response(response, *max_age, acr, tenant);
            }
            Self::Identity(
                IdentityError::InvalidToken
                | IdentityError::ExpiredToken
                | IdentityError::RevokedToken,
            ) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// The body of a 403 `step_up_required`: the problem with RFC 9470's challenge as
/// extension members, so a client that reads only the body knows where to step up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepUpProblem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary.
    pub title: &'static str,
    /// 403.
    pub status: u16,
    /// `step_up_required`.
    pub code: &'static str,
    /// RFC 9470's error code: `insufficient_user_authentication`.
    pub error: &'static str,
    /// The level to reach (`urn:keygate:acr:mfa` when the account has a second factor,
    /// `urn:keygate:acr:pwd` otherwise).
    pub acr_values: &'static str,
    /// How recent the authentication must be, in seconds.
    pub max_age: u64,
    /// The endpoint that raises the session: `POST` a password or code there (or use the
    /// `/t/{tenant}/step-up` page in a browser).
    pub step_up_uri: String,
}

/// The step-up refusal: RFC 9470's `WWW-Authenticate` challenge and the same in the body.
fn step_up_response(refusal: Response, max_age: u64, acr: &'static str, tenant: &str) -> Response {
    let status = refusal.status();
    let body = StepUpProblem {
        kind: "https://keygate.dev/problems/step_up_required".into(),
        title: "A recent step-up is required",
        status: status.as_u16(),
        code: "step_up_required",
        error: "insufficient_user_authentication",
        acr_values: acr,
        max_age,
        step_up_uri: format!("/t/{tenant}/me/step-up"),
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    let challenge = format!(
        "Bearer error=\"insufficient_user_authentication\", error_description=\"A recent step-up is required\", acr_values=\"{acr}\", max_age={max_age}"
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// Builds a problem+json response; also used by extractors' rejections.
pub fn problem_response(
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: Option<String>,
) -> Response {
    let body = Problem {
        kind: format!("https://keygate.dev/problems/{code}"),
        title,
        status: status.as_u16(),
        code,
        detail,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
