//! Credential state: API keys, signing keys, sessions and refresh-token families, second
//! factors, one-time tokens and lockout counters. Secrets here are hashes or ciphertext.

use super::UnknownLabel;
use crate::ids::{ApiKeyId, FactorId, SessionId, TenantId, UserId};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// An API key: prefix and SHA-256 hash only; the raw value lives in the Secret alone.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    /// Row id.
    pub id: ApiKeyId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// `metadata.uid` of the ApiKey resource (old and new key share it during rotation).
    pub owner_uid: String,
    /// ApiKey resource name.
    pub name: String,
    /// Public, globally unique lookup part of `kg_<prefix>_<secret>`.
    pub prefix: String,
    /// SHA-256 of the raw key; compare in constant time.
    pub hash: Vec<u8>,
    /// Role names granted.
    #[sqlx(json)]
    pub roles: Vec<String>,
    /// Permissions granted directly.
    #[sqlx(json)]
    pub permissions: Vec<String>,
    /// OAuth-style scopes.
    #[sqlx(json)]
    pub scopes: Vec<String>,
    /// Refused from then on.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked (resource deleted, Secret lost).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Replaced by a rotated key at.
    pub superseded_at: Option<DateTime<Utc>>,
    /// A superseded key still works until then.
    pub grace_until: Option<DateTime<Utc>>,
    /// Last accepted (written coarsely by the gateway).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Issued at.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl ApiKeyRecord {
    /// Whether the key may authenticate at `now`: not revoked, not expired, not past its grace.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| now < e)
            && super::rotation_allows(self.revoked_at, self.superseded_at, self.grace_until, now)
    }

    /// When the key stops working by time alone: its expiry or, once superseded by a
    /// rotation, the end of its grace period (whichever is first); `None` for never. Caches
    /// of a proven key must not outlive it, or a rotated-out key works past its grace.
    pub fn usable_until(&self) -> Option<DateTime<Utc>> {
        let grace_end = self
            .superseded_at
            .map(|superseded| self.grace_until.unwrap_or(superseded));
        match (self.expires_at, grace_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A new API key row.
#[derive(Clone, Debug, PartialEq)]
pub struct NewApiKey {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// `metadata.uid` of the ApiKey resource.
    pub owner_uid: String,
    /// Resource name.
    pub name: String,
    /// Lookup prefix (unique).
    pub prefix: String,
    /// SHA-256 of the raw key.
    pub hash: Vec<u8>,
    /// Role names.
    pub roles: Vec<String>,
    /// Direct permissions.
    pub permissions: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an API key grants, replaced in place when an ApiKey's spec changes only these (the
/// key's value, and so the Secret clients hold, stays the same).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiKeyGrants {
    /// Role names.
    pub roles: Vec<String>,
    /// Direct permissions.
    pub permissions: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A tenant's token-signing key; the private half is envelope-encrypted.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SigningKeyRecord {
    /// Key id (JWT `kid`), globally unique.
    pub kid: String,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// JWS algorithm (`RS256`, `ES256`, `EdDSA`).
    pub algorithm: String,
    /// Public JWK as published.
    #[sqlx(json)]
    pub public_jwk: Value,
    /// Sealed private key (ciphertext).
    pub private_key: Vec<u8>,
    /// Published in JWKS from then.
    pub created_at: DateTime<Utc>,
    /// Signs from then.
    pub activates_at: DateTime<Utc>,
    /// Removed from JWKS after then.
    pub retires_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------------------
// Sessions and refresh tokens

/// A sign-in session; its id is also the refresh-token family.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Session {
    /// Session id (the `sid` claim and the revocation id; no secret, never the cookie).
    pub id: SessionId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account.
    pub user_id: UserId,
    /// Device description as sent.
    pub user_agent: Option<String>,
    /// Client IP at sign-in.
    pub ip: Option<String>,
    /// Authentication methods (RFC 8176), e.g. `pwd`, `otp`.
    #[sqlx(json)]
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// When the person last actively authenticated (for `max_age`).
    pub auth_time: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last use.
    pub last_seen_at: DateTime<Utc>,
    /// Ends when unused until then.
    pub idle_expires_at: DateTime<Utc>,
    /// Ends then whatever happens.
    pub absolute_expires_at: DateTime<Utc>,
    /// Logged out / revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// SHA-256 of the browser cookie's token; `None` for sessions without a cookie.
    pub token_hash: Option<Vec<u8>>,
    /// OAuth client the session's tokens are issued to (refreshes keep it).
    pub client_id: String,
    /// Space-separated scopes granted at sign-in (a refresh may narrow, never widen).
    pub scope: String,
}

impl Session {
    /// Whether the session (and its refresh family) is good at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

/// A new session.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSession {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account.
    pub user_id: UserId,
    /// Device description.
    pub user_agent: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Authentication methods.
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// Time of authentication.
    pub auth_time: DateTime<Utc>,
    /// Now (created and last seen).
    pub created_at: DateTime<Utc>,
    /// Idle expiry.
    pub idle_expires_at: DateTime<Utc>,
    /// Absolute expiry.
    pub absolute_expires_at: DateTime<Utc>,
    /// SHA-256 of the cookie token handed to a browser (unique); `None` when no cookie is set.
    pub token_hash: Option<Vec<u8>>,
    /// OAuth client the tokens are for.
    pub client_id: String,
    /// Space-separated scopes granted.
    pub scope: String,
}

/// A refresh token, known only by its hash.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the opaque token.
    pub hash: Vec<u8>,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Family = session.
    pub session_id: SessionId,
    /// Issued.
    pub issued_at: DateTime<Utc>,
    /// Exchanged for its successor at (presenting it again is reuse).
    pub rotated_at: Option<DateTime<Utc>>,
    /// Hash of the successor.
    pub replaced_by: Option<Vec<u8>>,
    /// Refused from then.
    pub expires_at: DateTime<Utc>,
}

/// A new refresh token in an existing family.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRefreshToken {
    /// SHA-256 of the opaque token.
    pub hash: Vec<u8>,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Family = session.
    pub session_id: SessionId,
    /// Issued.
    pub issued_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// What happened to a presented refresh token; exactly one concurrent caller gets `Rotated`.
#[derive(Clone, Debug, PartialEq)]
pub enum RotateOutcome {
    /// This call won: the successor is stored.
    Rotated {
        /// The stored successor.
        next: RefreshTokenRecord,
    },
    /// Already rotated: reuse (revoke the family) unless within the caller's grace window.
    AlreadyRotated {
        /// Family to revoke.
        family: SessionId,
        /// When it was rotated.
        rotated_at: DateTime<Utc>,
        /// Hash of the successor.
        replaced_by: Option<Vec<u8>>,
    },
    /// The family (session) was revoked.
    FamilyRevoked {
        /// The family.
        family: SessionId,
    },
    /// The token or its session has expired.
    Expired {
        /// The family.
        family: SessionId,
    },
    /// Unrotated and live, but its session belongs to another client than the one named;
    /// nothing was changed.
    WrongClient {
        /// The family.
        family: SessionId,
    },
    /// No such token in this tenant.
    Unknown,
}

// ---------------------------------------------------------------------------------------
// MFA, one-time tokens, lockout

labelled_enum!(
    /// Kind of second factor.
    FactorKind {
        /// RFC 6238 time-based one-time password.
        Totp = "totp",
        /// WebAuthn / passkey.
        Webauthn = "webauthn",
    }
);

/// An enrolled second factor.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Factor {
    /// Row id.
    pub id: FactorId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account.
    pub user_id: UserId,
    /// TOTP or WebAuthn.
    #[sqlx(try_from = "String")]
    pub kind: FactorKind,
    /// Name the person gave it.
    pub label: String,
    /// Sealed TOTP seed or serialized WebAuthn credential (ciphertext).
    pub secret: Vec<u8>,
    /// Enrolment finished (a first code or assertion verified).
    pub confirmed: bool,
    /// Last accepted TOTP time step; a code at or below it is a replay.
    pub last_used_step: Option<i64>,
    /// Last accepted use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Enrolled.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The associated data a factor's secret is sealed with (`MasterKeys::seal`): the account it
/// belongs to, so a ciphertext copied to another account's row does not open. The gateway
/// seals with it, the operator re-seals with it.
pub fn factor_seal_context(tenant: TenantId, user: UserId) -> String {
    format!("mfa_factor:{tenant}:{user}")
}

impl Factor {
    /// [`factor_seal_context`] of this factor.
    pub fn seal_context(&self) -> String {
        factor_seal_context(self.tenant_id, self.user_id)
    }
}

/// A factor being enrolled (unconfirmed).
#[derive(Clone, Debug, PartialEq)]
pub struct NewFactor {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account.
    pub user_id: UserId,
    /// TOTP or WebAuthn.
    pub kind: FactorKind,
    /// Name the person gave it.
    pub label: String,
    /// Sealed secret.
    pub secret: Vec<u8>,
}

labelled_enum!(
    /// What a one-time token is good for; a token of one purpose is nothing to another.
    TokenPurpose {
        /// Prove an email address.
        VerifyEmail = "verify_email",
        /// Set a new password.
        ResetPassword = "reset_password",
        /// Link an upstream identity to an existing account.
        Link = "link",
        /// Join an invite-only tenant.
        Invite = "invite",
    }
);

/// A hashed, expiring, single-use token.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct OneTimeToken {
    /// SHA-256 of the token sent.
    pub token_hash: Vec<u8>,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account, if it exists yet (an invite has none).
    pub user_id: Option<UserId>,
    /// What it is for.
    #[sqlx(try_from = "String")]
    pub purpose: TokenPurpose,
    /// Purpose-specific facts (invitee email, IdP link details).
    #[sqlx(json)]
    pub data: Value,
    /// Refused from then.
    pub expires_at: DateTime<Utc>,
    /// Consumed at.
    pub used_at: Option<DateTime<Utc>>,
    /// Issued.
    pub created_at: DateTime<Utc>,
}

/// A one-time token to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOneTimeToken {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account, if any.
    pub user_id: Option<UserId>,
    /// Purpose.
    pub purpose: TokenPurpose,
    /// Purpose-specific facts.
    pub data: Value,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// How long a run of failed sign-ins is remembered, from its first failure: a failure after
/// that starts the count over. Addresses without an account are counted with the same window.
pub const FAILURE_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Failed sign-in counter of one account.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct LockoutState {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account.
    pub user_id: UserId,
    /// Consecutive failures since the last success, within [`FAILURE_WINDOW`] of the first.
    pub failures: i64,
    /// Sign-in refused until then.
    pub locked_until: Option<DateTime<Utc>>,
    /// Last failure.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// First failure of the current run (the window's start).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl LockoutState {
    /// Whether sign-in is refused at `now`.
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|u| now < u)
    }
}
