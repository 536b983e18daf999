//! The seam between the sign-in pages and the identity service's workflows. The pages own
//! forms, CSRF, cookies and messages; the workflows own passwords, lockout, sessions and
//! emails. The identity service implements [`AccountFlows`]; tests put a stand-in behind it.
//! Every workflow gets the request's facts ([`RequestMeta`]: client address, request id,
//! user agent) for its rate limits, audit rows and session records.

use super::{IdentityError, IdentityService, LiveTenant, PasswordSignIn, RequestMeta, SignUp};
use async_trait::async_trait;

/// A sign-in form as submitted.
#[derive(Clone)]
pub struct SignInAttempt {
    /// Email as typed.
    pub email: String,
    /// Password as typed (never logged).
    pub password: String,
    /// The browser's device cookie, if it sent one (never logged).
    pub device: Option<String>,
}

impl std::fmt::Debug for SignInAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInAttempt").finish_non_exhaustive()
    }
}

/// A successful browser sign-in: the session the cookie will name.
#[derive(Clone)]
pub struct BrowserSession {
    /// Opaque value of the session cookie.
    pub cookie_value: String,
    /// Cookie lifetime (the session's absolute lifetime).
    pub max_age: std::time::Duration,
    /// The device cookie's new value (a token for this account first), if one is to be set.
    pub device_cookie: Option<String>,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSession")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// Why a workflow refused; each maps to a message that never reveals whether an account exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Wrong email or password (or no such account: same answer).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failures for the account or the address; try later.
    #[error("temporarily locked")]
    Locked,
    /// The address must be verified first.
    #[error("email not verified")]
    EmailNotVerified,
    /// The tenant does not take registrations.
    #[error("registration closed")]
    RegistrationClosed,
    /// The tenant does not offer password sign-in.
    #[error("password sign-in disabled")]
    PasswordSignInDisabled,
    /// The password breaks the tenant's policy; the text says which rule.
    #[error("password rejected: {0}")]
    PasswordRejected(String),
    /// A field is unusable (too long, not an email address); the text says which.
    #[error("unusable input: {0}")]
    Unusable(String),
    /// The link is unknown, used or expired.
    #[error("invalid or expired link")]
    InvalidLink,
    /// The client's network may not sign in to this tenant (`network.allow`/`deny`).
    #[error("network denied")]
    NetworkDenied,
    /// A dependency is down.
    #[error("unavailable")]
    Unavailable,
    /// Too many password hashes are waiting; try again after the given time.
    #[error("busy")]
    Busy(std::time::Duration),
    /// The flow needs email and this installation cannot send any.
    #[error("mail unavailable")]
    MailUnavailable,
}

/// The workflows behind the pages.
#[async_trait]
pub trait AccountFlows: Send + Sync + std::fmt::Debug {
    /// Checks a password sign-in and opens a session.
    async fn sign_in(
        &self,
        tenant: &LiveTenant,
        attempt: &SignInAttempt,
        meta: &RequestMeta,
    ) -> Result<BrowserSession, FlowError>;
    /// Registers an account (and sends the verification email). Succeeds silently when the
    /// email is taken, so registration does not reveal accounts.
    async fn sign_up(
        &self,
        tenant: &LiveTenant,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Consumes an email-verification link.
    async fn verify_email(
        &self,
        tenant: &LiveTenant,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Sends a reset link if the account exists; succeeds either way.
    async fn request_password_reset(
        &self,
        tenant: &LiveTenant,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Consumes a reset link and sets the password (ending the account's other sessions).
    async fn reset_password(
        &self,
        tenant: &LiveTenant,
        token: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Sends an unlock link if the account exists; succeeds either way.
    async fn request_unlock(
        &self,
        tenant: &LiveTenant,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Consumes an unlock link, clearing the account's lockout; answers the device cookie's
    /// new value for the browser that redeemed it (`device` is the one it sent).
    async fn unlock(
        &self,
        tenant: &LiveTenant,
        token: &str,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<String, FlowError>;
    /// Ends the session the cookie names, on every replica.
    async fn sign_out(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
}

impl From<IdentityError> for FlowError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidCredentials | IdentityError::TenantNotFound => {
                FlowError::InvalidCredentials
            }
            IdentityError::InvalidRequest(why) => FlowError::Unusable(why),
            IdentityError::InvalidEmail(why) => FlowError::Unusable(why.to_string()),
            IdentityError::AccountLocked { .. } | IdentityError::RateLimited { .. } => {
                FlowError::Locked
            }
            IdentityError::EmailNotVerified => FlowError::EmailNotVerified,
            IdentityError::RegistrationClosed | IdentityError::InviteRequired => {
                FlowError::RegistrationClosed
            }
            IdentityError::PasswordSignInDisabled => FlowError::PasswordSignInDisabled,
            IdentityError::NetworkDenied => FlowError::NetworkDenied,
            IdentityError::PasswordPolicy(reason) => FlowError::PasswordRejected(reason),
            IdentityError::PasswordBreached => FlowError::PasswordRejected(
                "this password appears in lists of breached passwords".into(),
            ),
            IdentityError::PasswordReused => {
                FlowError::PasswordRejected("this password was used recently".into())
            }
            IdentityError::PasswordChangeRequired => FlowError::PasswordRejected(
                "this account must set a new password: use the reset link".into(),
            ),
            IdentityError::InvalidLink
            | IdentityError::InvalidToken
            | IdentityError::InvalidGrant
            | IdentityError::InvalidScope => FlowError::InvalidLink,
            IdentityError::AccountSuspended
            | IdentityError::Forbidden
            | IdentityError::NotFound
            | IdentityError::WrongCurrentPassword => FlowError::InvalidCredentials,
            IdentityError::MailUnavailable => FlowError::MailUnavailable,
            IdentityError::Busy { retry_after } => FlowError::Busy(retry_after),
            IdentityError::Unavailable(_)
            | IdentityError::Store(_)
            | IdentityError::Crypto(_)
            | IdentityError::Internal(_) => {
                tracing::error!(error = %e, "account workflow failed");
                FlowError::Unavailable
            }
        }
    }
}

#[async_trait]
impl AccountFlows for IdentityService {
    async fn sign_in(
        &self,
        tenant: &LiveTenant,
        attempt: &SignInAttempt,
        meta: &RequestMeta,
    ) -> Result<BrowserSession, FlowError> {
        let req = PasswordSignIn {
            email: attempt.email.clone(),
            password: attempt.password.clone(),
            browser: true,
            device: attempt.device.clone(),
            ..PasswordSignIn::default()
        };
        let done = IdentityService::sign_in(self, tenant.name(), req, meta).await?;
        let max_age = (done.session_expires_at - self.now())
            .to_std()
            .unwrap_or_default();
        let cookie_value = done.session_cookie.ok_or_else(|| {
            FlowError::from(IdentityError::Internal(
                "a browser sign-in opened a session without a cookie".into(),
            ))
        })?;
        Ok(BrowserSession {
            cookie_value,
            max_age,
            device_cookie: Some(done.device_cookie),
        })
    }

    async fn sign_up(
        &self,
        tenant: &LiveTenant,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        let req = SignUp {
            email: email.to_owned(),
            password: password.to_owned(),
            ..SignUp::default()
        };
        Ok(IdentityService::sign_up(self, tenant.name(), req, meta).await?)
    }

    async fn verify_email(
        &self,
        tenant: &LiveTenant,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(IdentityService::verify_email(self, tenant.name(), token, meta).await?)
    }

    async fn request_password_reset(
        &self,
        tenant: &LiveTenant,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(IdentityService::request_password_reset(self, tenant.name(), email, meta).await?)
    }

    async fn reset_password(
        &self,
        tenant: &LiveTenant,
        token: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(IdentityService::reset_password(self, tenant.name(), token, password, meta).await?)
    }

    async fn request_unlock(
        &self,
        tenant: &LiveTenant,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(IdentityService::request_unlock(self, tenant.name(), email, meta).await?)
    }

    async fn unlock(
        &self,
        tenant: &LiveTenant,
        token: &str,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<String, FlowError> {
        let done = IdentityService::unlock(self, tenant.name(), token, device, meta).await?;
        Ok(done.device_cookie)
    }

    async fn sign_out(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        let Ok(principal) = self.session_principal(tenant, cookie_value).await else {
            return Ok(());
        };
        Ok(IdentityService::sign_out(self, &principal, meta).await?)
    }
}
