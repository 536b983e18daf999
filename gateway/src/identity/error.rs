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
    /// A bearer credential of this tenant past its lifetime. Answered exactly as
    /// [`IdentityError::InvalidToken`] everywhere; only forward-auth names the difference
    /// (its `token_expired`, `session_expired`, `api_key_expired` reasons).
    #[error("expired token")]
    ExpiredToken,
    /// A bearer credential of this tenant that was ended (sign-out, revoke, rotation).
    /// Answered exactly as [`IdentityError::InvalidToken`] everywhere but forward-auth's
    /// reasons (`session_revoked`, `token_revoked`, `api_key_revoked`).
    #[error("revoked token")]
    RevokedToken,
    /// A refresh token (or other grant) is unknown, expired, revoked or reused.
    #[error("invalid grant")]
    InvalidGrant,
    /// A sign-in asked for a scope the person may not have (neither an OpenID Connect
    /// standard scope nor a permission they hold), or a refresh for one the session was not
    /// granted (RFC 6749 §3.3, §6).
    #[error("invalid scope")]
    InvalidScope,
    /// The `client_id` names no registered client of the tenant, or the client failed to
    /// authenticate (wrong, missing or extra secret; RFC 6749 §5.2 `invalid_client`, 401).
    #[error("invalid client")]
    InvalidClient,
    /// The client is registered but not for this grant (RFC 6749 §5.2 `unauthorized_client`).
    #[error("unauthorized client")]
    UnauthorizedClient,
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
    /// A second-factor code (TOTP or backup code) is wrong, used already, or a replay.
    #[error("invalid code")]
    InvalidCode,
    /// Too many wrong second-factor codes for this account; try again after `retry_after`.
    #[error("second factor temporarily locked")]
    SecondFactorLocked {
        /// How long until codes are checked again.
        retry_after: Duration,
    },
    /// The pending sign-in (`mfa_token`) is unknown, used or expired: sign in again.
    #[error("invalid or expired sign-in challenge")]
    InvalidChallenge,
    /// A WebAuthn ceremony is unknown, used or expired: start it again.
    #[error("invalid or expired WebAuthn ceremony")]
    InvalidCeremony,
    /// The authenticator's answer was refused: another origin or challenge, a bad
    /// signature, no user verification, an unknown credential, or a signature counter that
    /// did not advance (a cloned authenticator).
    #[error("WebAuthn response refused")]
    InvalidWebauthnResponse,
    /// The tenant does not let a passkey sign in alone (`mfa.passkeySignIn`).
    #[error("passkey sign-in is off for this tenant")]
    PasskeySignInDisabled,
    /// The tenant's MFA policy is `off`: no factor can be enrolled.
    #[error("MFA is off for this tenant")]
    MfaDisabled,
    /// The account has a confirmed authenticator of that kind already.
    #[error("factor already enrolled")]
    FactorExists,
    /// The action needs a second factor the account does not have.
    #[error("no second factor enrolled")]
    NoSecondFactor,
    /// The action needs a recent authentication (a sign-in or step-up within the last
    /// `max_age` seconds, with a second factor when the account has one).
    #[error("step-up required")]
    StepUpRequired {
        /// How recent the step-up must be, in seconds.
        max_age: u64,
        /// The level the step-up must reach (`urn:keygate:acr:mfa` or `…:pwd`).
        acr: &'static str,
        /// The tenant whose step-up endpoint proves it.
        tenant: String,
    },
    /// Removing this would leave the account without any way to sign in (no password and
    /// no other linked provider).
    #[error("the last way to sign in cannot be removed")]
    LastSignInMethod,
    /// The account has neither a local password nor a second factor: it can step up only
    /// by signing in again through its upstream identity provider.
    #[error("step-up through the upstream provider required")]
    UpstreamStepUpRequired,
    /// An upstream identity provider's sign-in was refused (the text says why, plainly).
    #[error("upstream sign-in refused: {0}")]
    Federation(#[from] super::FederationRefusal),
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

/// What a dependency outage (the store or Redis unreachable) asks clients to wait before
/// trying again: about how long a database failover or a Redis restart takes.
pub const OUTAGE_RETRY_AFTER: Duration = Duration::from_secs(5);

impl IdentityError {
    /// A dependency is down (the store unreachable, Redis where there is no fallback): the
    /// request may succeed later unchanged, so adapters answer 503 with `Retry-After`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Store(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// How long the client should wait before trying again, for the refusals that say so
    /// (rate limits, lockouts, a full hashing queue, a dependency outage).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::AccountLocked { retry_after }
            | Self::RateLimited { retry_after }
            | Self::SecondFactorLocked { retry_after }
            | Self::Busy { retry_after } => Some(*retry_after),
            e if e.is_unavailable() => Some(OUTAGE_RETRY_AFTER),
            _ => None,
        }
    }

    /// A unique constraint refused the write: the record exists already (an upstream
    /// identity linked to another account, a second link to one provider). The caller can
    /// resolve it, so adapters answer 409 rather than 500.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Store(StoreError::Conflict { .. }))
    }
}

impl From<CryptoError> for IdentityError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Busy { retry_after } => Self::Busy { retry_after },
            other => Self::Crypto(other),
        }
    }
}
