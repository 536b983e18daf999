//! The seam between the sign-in pages and the identity service's workflows. The pages own
//! forms, CSRF, cookies and messages; the workflows own passwords, lockout, sessions and
//! emails. The identity service implements [`AccountFlows`]; tests put a stand-in behind it.
//! Every workflow gets the request's facts ([`RequestMeta`]: client address, request id,
//! user agent) for its rate limits, audit rows and session records.

use super::challenge::SignInOutcome;
use super::mfa::BackupCodes;
use super::totp::TotpEnrolment;
use super::{
    IdentityError, IdentityService, LiveTenant, PasswordSignIn, ProviderButton, RequestMeta,
    SignUp, SignedIn, SsoCallback, SsoFinished, SsoStart, SsoStarted,
};
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

/// How a browser's password sign-in went on.
#[derive(Clone, Debug)]
pub enum BrowserSignIn {
    /// Signed in: set the cookie. Backup codes come along when the sign-in enrolled the
    /// account's first factor (show them once).
    Session(BrowserSession, Option<BackupCodes>),
    /// The password was right; ask for a second factor (or, with `enrol`, have the person
    /// enrol one first) for the pending sign-in `token` (never logged).
    SecondFactor {
        /// The pending sign-in.
        token: String,
        /// Enrol an authenticator first.
        enrol: bool,
    },
}

/// Why a workflow refused; each maps to a message that never reveals whether an account exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Wrong email or password (or no such account: same answer).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failures for the account or the address; try again after this long (the
    /// page says so in `Retry-After`).
    #[error("temporarily locked")]
    Locked(std::time::Duration),
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
    /// A second-factor code is wrong, used already or a replay.
    #[error("invalid code")]
    InvalidCode,
    /// The pending sign-in expired or was used: sign in again.
    #[error("sign-in expired")]
    SignInExpired,
    /// The tenant offers no second factor.
    #[error("MFA off")]
    MfaDisabled,
    /// An upstream sign-in was refused; its text is shown to the person as it is.
    #[error("{0}")]
    Upstream(super::FederationRefusal),
    /// The upstream identity is linked to another account, or this account is linked to
    /// another identity at that provider.
    #[error("already linked")]
    AlreadyLinked,
    /// No such identity provider in this tenant.
    #[error("unknown provider")]
    UnknownProvider,
}

/// The workflows behind the pages.
#[async_trait]
pub trait AccountFlows: Send + Sync + std::fmt::Debug {
    /// Checks a password sign-in and opens a session, or the challenge of its second factor.
    async fn sign_in(
        &self,
        tenant: &LiveTenant,
        attempt: &SignInAttempt,
        meta: &RequestMeta,
    ) -> Result<BrowserSignIn, FlowError>;
    /// A TOTP authenticator to enrol within the pending sign-in `token` (tenants that
    /// require a second factor, for a person without one).
    async fn begin_sign_in_enrolment(
        &self,
        tenant: &LiveTenant,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<TotpEnrolment, FlowError>;
    /// The second step of a sign-in: `code` for the pending sign-in `token`.
    async fn complete_sign_in(
        &self,
        tenant: &LiveTenant,
        token: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<BrowserSignIn, FlowError>;
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
    /// The tenant's upstream providers, for the sign-in page's buttons.
    async fn providers(&self, tenant: &LiveTenant) -> Result<Vec<ProviderButton>, FlowError>;
    /// Starts a sign-in at an upstream provider.
    async fn sso_start(
        &self,
        tenant: &LiveTenant,
        start: SsoStart,
        meta: &RequestMeta,
    ) -> Result<SsoStarted, FlowError>;
    /// Finishes it with the provider's answer and the browser's binding cookie.
    async fn sso_finish(
        &self,
        tenant: &LiveTenant,
        provider: &str,
        callback: SsoCallback,
        binding: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<SsoFinished, FlowError>;
    /// keygate's SAML service-provider metadata for a SAML provider (XML).
    async fn saml_metadata(&self, tenant: &LiveTenant, provider: &str)
    -> Result<String, FlowError>;
    /// Links the upstream identity a link token stands for to the account the session
    /// cookie names; answers the provider's name.
    async fn claim_link(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
        link_token: &str,
        meta: &RequestMeta,
    ) -> Result<String, FlowError>;
}

impl From<IdentityError> for FlowError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidCredentials | IdentityError::TenantNotFound => {
                FlowError::InvalidCredentials
            }
            IdentityError::InvalidRequest(why) => FlowError::Unusable(why),
            IdentityError::InvalidEmail(why) => FlowError::Unusable(why.to_string()),
            IdentityError::AccountLocked { retry_after }
            | IdentityError::RateLimited { retry_after } => FlowError::Locked(retry_after),
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
            | IdentityError::ExpiredToken
            | IdentityError::RevokedToken
            | IdentityError::InvalidGrant
            | IdentityError::InvalidScope
            | IdentityError::InvalidClient
            | IdentityError::UnauthorizedClient => FlowError::InvalidLink,
            IdentityError::NotFound => FlowError::UnknownProvider,
            IdentityError::AccountSuspended
            | IdentityError::Forbidden
            | IdentityError::WrongCurrentPassword => FlowError::InvalidCredentials,
            IdentityError::MailUnavailable => FlowError::MailUnavailable,
            IdentityError::InvalidCode
            | IdentityError::NoSecondFactor
            | IdentityError::FactorExists
            | IdentityError::InvalidWebauthnResponse => FlowError::InvalidCode,
            IdentityError::SecondFactorLocked { retry_after } => FlowError::Locked(retry_after),
            IdentityError::InvalidChallenge | IdentityError::InvalidCeremony => {
                FlowError::SignInExpired
            }
            IdentityError::PasskeySignInDisabled => FlowError::InvalidCredentials,
            IdentityError::MfaDisabled => FlowError::MfaDisabled,
            IdentityError::StepUpRequired { .. }
            | IdentityError::UpstreamStepUpRequired
            | IdentityError::LastSignInMethod => FlowError::InvalidCredentials,
            IdentityError::Federation(r) => FlowError::Upstream(r),
            IdentityError::Store(keygate_core::store::StoreError::Conflict { .. }) => {
                FlowError::AlreadyLinked
            }
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

impl IdentityService {
    /// The cookie side of a browser sign-in.
    fn browser_session(&self, done: SignedIn) -> Result<BrowserSignIn, FlowError> {
        let max_age = (done.session_expires_at - self.now())
            .to_std()
            .unwrap_or_default();
        let cookie_value = done.session_cookie.ok_or_else(|| {
            FlowError::from(IdentityError::Internal(
                "a browser sign-in opened a session without a cookie".into(),
            ))
        })?;
        Ok(BrowserSignIn::Session(
            BrowserSession {
                cookie_value,
                max_age,
                device_cookie: Some(done.device_cookie),
            },
            done.backup_codes,
        ))
    }
}

#[async_trait]
impl AccountFlows for IdentityService {
    async fn sign_in(
        &self,
        tenant: &LiveTenant,
        attempt: &SignInAttempt,
        meta: &RequestMeta,
    ) -> Result<BrowserSignIn, FlowError> {
        let req = PasswordSignIn {
            email: attempt.email.clone(),
            password: attempt.password.clone(),
            browser: true,
            device: attempt.device.clone(),
            ..PasswordSignIn::default()
        };
        match IdentityService::sign_in(self, tenant.name(), req, meta).await? {
            SignInOutcome::SignedIn(done) => self.browser_session(*done),
            SignInOutcome::SecondFactor(c) => Ok(BrowserSignIn::SecondFactor {
                token: c.token,
                enrol: c.enrol,
            }),
        }
    }

    async fn begin_sign_in_enrolment(
        &self,
        tenant: &LiveTenant,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<TotpEnrolment, FlowError> {
        Ok(IdentityService::begin_sign_in_enrolment(self, tenant.name(), token, meta).await?)
    }

    async fn complete_sign_in(
        &self,
        tenant: &LiveTenant,
        token: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<BrowserSignIn, FlowError> {
        let done =
            IdentityService::complete_sign_in(self, tenant.name(), token, code, meta).await?;
        self.browser_session(done)
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

    async fn providers(&self, tenant: &LiveTenant) -> Result<Vec<ProviderButton>, FlowError> {
        Ok(self.federated_providers(tenant.name()).await?)
    }

    async fn sso_start(
        &self,
        tenant: &LiveTenant,
        start: SsoStart,
        meta: &RequestMeta,
    ) -> Result<SsoStarted, FlowError> {
        Ok(IdentityService::sso_start(self, tenant.name(), start, meta).await?)
    }

    async fn sso_finish(
        &self,
        tenant: &LiveTenant,
        provider: &str,
        callback: SsoCallback,
        binding: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<SsoFinished, FlowError> {
        Ok(
            IdentityService::sso_finish(self, tenant.name(), provider, callback, binding, meta)
                .await?,
        )
    }

    async fn saml_metadata(
        &self,
        tenant: &LiveTenant,
        provider: &str,
    ) -> Result<String, FlowError> {
        Ok(self.saml_sp_metadata(tenant.name(), provider).await?)
    }

    async fn claim_link(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
        link_token: &str,
        meta: &RequestMeta,
    ) -> Result<String, FlowError> {
        let principal = self
            .session_principal(tenant, cookie_value)
            .await
            .map_err(|_| FlowError::InvalidLink)?;
        let user = principal.user_id.ok_or(FlowError::InvalidLink)?;
        Ok(self
            .claim_federated_link(tenant.name(), user, link_token, meta)
            .await?)
    }
}
