//! The boundary between the sign-in pages and the identity service's workflows. The pages
//! own forms, CSRF, cookies and messages; the workflows own passwords, lockout, sessions
//! and emails. Every workflow gets the request's facts ([`RequestMeta`]: client address,
//! request id, user agent) for its rate limits, audit rows and session records.

use crate::identity::RequestMeta;
use async_trait::async_trait;
use keygate_core::store::Tenant;

/// A sign-in form as submitted.
#[derive(Clone)]
pub struct SignInAttempt {
    /// Email as typed.
    pub email: String,
    /// Password as typed (never logged).
    pub password: String,
}

impl std::fmt::Debug for SignInAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInAttempt").finish_non_exhaustive()
    }
}

/// A successful sign-in: the session the cookie will name.
#[derive(Clone)]
pub struct SignedIn {
    /// Opaque value of the session cookie.
    pub cookie_value: String,
    /// Cookie lifetime (the session's absolute lifetime).
    pub max_age: std::time::Duration,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
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
    /// A second factor is needed (the MFA issue fills this in).
    #[error("second factor required")]
    MfaRequired,
    /// The tenant does not take registrations.
    #[error("registration closed")]
    RegistrationClosed,
    /// The password breaks the tenant's policy; the text says which rule.
    #[error("password rejected: {0}")]
    PasswordRejected(String),
    /// The link is unknown, used or expired.
    #[error("invalid or expired link")]
    InvalidLink,
    /// A dependency is down.
    #[error("unavailable")]
    Unavailable,
}

/// The workflows behind the pages.
#[async_trait]
pub trait AccountFlows: Send + Sync + std::fmt::Debug {
    /// Checks a password sign-in and opens a session.
    async fn sign_in(
        &self,
        tenant: &Tenant,
        attempt: &SignInAttempt,
        meta: &RequestMeta,
    ) -> Result<SignedIn, FlowError>;
    /// Registers an account (and sends the verification email). Succeeds silently when the
    /// email is taken, so registration does not reveal accounts.
    async fn sign_up(
        &self,
        tenant: &Tenant,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Consumes an email-verification link.
    async fn verify_email(
        &self,
        tenant: &Tenant,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Sends a reset link if the account exists; succeeds either way.
    async fn request_password_reset(
        &self,
        tenant: &Tenant,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Consumes a reset link and sets the password (ending the account's other sessions).
    async fn reset_password(
        &self,
        tenant: &Tenant,
        token: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
    /// Ends the session the cookie names, on every replica.
    async fn sign_out(
        &self,
        tenant: &Tenant,
        cookie_value: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError>;
}

/// Stands in until the identity service is wired: every workflow answers "unavailable".
#[derive(Debug, Default)]
pub struct UnwiredFlows;

#[async_trait]
impl AccountFlows for UnwiredFlows {
    async fn sign_in(
        &self,
        _: &Tenant,
        _: &SignInAttempt,
        _: &RequestMeta,
    ) -> Result<SignedIn, FlowError> {
        Err(FlowError::Unavailable)
    }
    async fn sign_up(
        &self,
        _: &Tenant,
        _: &str,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Err(FlowError::Unavailable)
    }
    async fn verify_email(&self, _: &Tenant, _: &str, _: &RequestMeta) -> Result<(), FlowError> {
        Err(FlowError::Unavailable)
    }
    async fn request_password_reset(
        &self,
        _: &Tenant,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Err(FlowError::Unavailable)
    }
    async fn reset_password(
        &self,
        _: &Tenant,
        _: &str,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Err(FlowError::Unavailable)
    }
    async fn sign_out(&self, _: &Tenant, _: &str, _: &RequestMeta) -> Result<(), FlowError> {
        Err(FlowError::Unavailable)
    }
}
