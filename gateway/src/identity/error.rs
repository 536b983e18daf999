//! Why an identity operation refused or failed. Each adapter maps it to its response format
//! in one place (problem+json, OAuth errors, forward-auth denials, page messages); the
//! service itself knows nothing of HTTP.

use keygate_core::crypto::CryptoError;
use keygate_core::email::EmailError;
use keygate_core::ephemeral::EphemeralError;
use keygate_core::store::StoreError;
use std::time::Duration;

/// Every refusal and failure of the identity service.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No such tenant, or it is disabled.
    #[error("tenant not found")]
    TenantNotFound,
    /// Wrong email or password, or no such account (the same answer on purpose).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failed sign-ins for this account; try again after `retry_after`.
    #[error("account temporarily locked")]
    AccountLocked {
        /// How long until sign-in is possible again.
        retry_after: Duration,
    },
    /// Too many requests from this address (or for this email); try again after `retry_after`.
    #[error("rate limited")]
    RateLimited {
        /// How long until the window ends.
        retry_after: Duration,
    },
    /// The account is suspended.
    #[error("account suspended")]
    AccountSuspended,
    /// The email address must be verified before signing in.
    #[error("email not verified")]
    EmailNotVerified,
    /// The account must set a new password (sign in again with `new_password`).
    #[error("password change required")]
    PasswordChangeRequired,
    /// The tenant does not offer password sign-in.
    #[error("password sign-in disabled")]
    PasswordSignInDisabled,
    /// The tenant does not take self-service registrations.
    #[error("registration closed")]
    RegistrationClosed,
    /// The tenant is invite-only and no valid invite was given.
    #[error("invite required")]
    InviteRequired,
    /// The new password breaks the tenant's policy (the text names the rule).
    #[error("password rejected: {0}")]
    PasswordPolicy(String),
    /// The new password is in the breached-password list.
    #[error("password found in breached-password list")]
    PasswordBreached,
    /// The new password is one of the last N.
    #[error("password used recently")]
    PasswordReused,
    /// The current password given for a change is wrong.
    #[error("current password is wrong")]
    WrongCurrentPassword,
    /// A verification, reset or invite link is unknown, used or expired.
    #[error("invalid or expired link")]
    InvalidLink,
    /// A bearer credential (JWT, API key, session) is missing, malformed, expired,
    /// revoked or of another tenant.
    #[error("invalid token")]
    InvalidToken,
    /// A refresh token (or other grant) is unknown, expired, revoked or reused.
    #[error("invalid grant")]
    InvalidGrant,
    /// A sign-in asked for a scope the person may not have (neither an OpenID Connect
    /// standard scope nor a permission they hold), or a refresh for one the session was not
    /// granted (RFC 6749 §3.3, §6).
    #[error("invalid scope")]
    InvalidScope,
    /// The client's address is outside the tenant's `network.allow` list or inside its
    /// `network.deny` list (`keygate_core::tenant_settings::Network::permits`).
    #[error("network denied")]
    NetworkDenied,
    /// The caller lacks the permission for this action.
    #[error("forbidden")]
    Forbidden,
    /// The object does not exist in this tenant (another tenant's objects too).
    #[error("not found")]
    NotFound,
    /// The email address is outside the accepted syntax (`keygate_core::email`).
    #[error("invalid email address: {0}")]
    InvalidEmail(#[from] EmailError),
    /// The request is well-formed JSON but a field is unusable (the text names it).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The flow hands out a link by email and this installation has no mail transport
    /// (no SMTP configured).
    #[error("this installation cannot send email; configure SMTP")]
    MailUnavailable,
    /// A dependency (Redis) is down; the caller cannot tell valid from invalid.
    #[error("unavailable: {0}")]
    Unavailable(#[from] EphemeralError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Every password-hashing thread is busy and the queue in front of them is full; try
    /// again after `retry_after` (the hash was refused, not queued).
    #[error("password hashing at capacity")]
    Busy {
        /// About how long until the queue has drained.
        retry_after: Duration,
    },
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(#[source] CryptoError),
    /// Anything else unexpected (logged, never sent).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<CryptoError> for IdentityError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Busy { retry_after } => Self::Busy { retry_after },
            other => Self::Crypto(other),
        }
    }
}
