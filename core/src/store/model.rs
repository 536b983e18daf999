//! Records the store reads and writes: plain structs, one per row kind, plus the `New…` /
//! `…Upsert` shapes callers hand in. Timestamps are UTC; ids are the typed ids of
//! [`crate::ids`]. Secrets arrive here already hashed or sealed (ciphertext bytes).

use crate::ids::{ApiKeyId, AuditId, FactorId, IdpId, RoleId, SessionId, TenantId, UserId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// A stored label that names no known variant (a row written by a newer keygate, or edited by hand).
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{label}` in the database")]
pub struct UnknownLabel {
    /// Which enum the label was meant for.
    pub kind: &'static str,
    /// The label found.
    pub label: String,
}

/// Declares a text-stored enum with stable labels, so rows never depend on Rust names.
macro_rules! labelled_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The stable label stored in the database and used in logs and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownLabel;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($label => Ok(Self::$variant),)+
                    _ => Err(UnknownLabel { kind: stringify!($name), label: s.to_owned() }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownLabel;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Tenants

/// A tenant as declared by a Tenant resource; its `name` is the cluster-wide URL segment.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Tenant {
    /// Row id every other row refers to.
    pub id: TenantId,
    /// Cluster-wide unique name (`/t/{name}`).
    pub name: String,
    /// Namespace of the Tenant resource that owns the name.
    pub namespace: String,
    /// `metadata.uid` of the owning Tenant resource.
    pub owner_uid: String,
    /// Human-readable name.
    pub display_name: String,
    /// The Tenant spec as JSON (policies, lifetimes, signing).
    #[sqlx(json)]
    pub settings: Value,
    /// `metadata.generation` last written.
    pub generation: i64,
    /// A disabled tenant serves nothing (deletionPolicy Retain keeps it this way).
    pub disabled: bool,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// What the operator writes for a Tenant resource; inserted or updated by `name`.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantUpsert {
    /// Cluster-wide unique name.
    pub name: String,
    /// Namespace of the resource.
    pub namespace: String,
    /// `metadata.uid` of the resource; another uid under the same name is a conflict.
    pub owner_uid: String,
    /// Human-readable name.
    pub display_name: String,
    /// The spec as JSON.
    pub settings: Value,
    /// `metadata.generation`.
    pub generation: i64,
}

// ---------------------------------------------------------------------------------------
// Users and credentials

labelled_enum!(
    /// Whether an account may sign in.
    UserStatus {
        /// May sign in.
        Active = "active",
        /// Refused at sign-in and by every resolver until reactivated.
        Suspended = "suspended",
    }
);

/// A person's account in one tenant.
#[derive(Clone, PartialEq, sqlx::FromRow)]
pub struct User {
    /// Row id; after erasure, the pseudonym left in audit rows.
    pub id: UserId,
    /// Tenant the account lives in.
    pub tenant_id: TenantId,
    /// Email as the person typed it (unique per tenant, case-insensitively).
    pub email: String,
    /// Name shown in UIs.
    pub display_name: String,
    /// Active or suspended.
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    /// The person proved they read this mailbox.
    pub email_verified: bool,
    /// The next sign-in must set a new password.
    pub must_change_password: bool,
    /// argon2id PHC string; `None` for accounts that only sign in upstream.
    pub password_hash: Option<String>,
    /// Local group names (role bindings of kind `group` match them).
    #[sqlx(json)]
    pub groups: Vec<String>,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for User {
    /// Leaves the password hash out, so a logged `User` never feeds an offline cracker.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("status", &self.status)
            .field("email_verified", &self.email_verified)
            .field("must_change_password", &self.must_change_password)
            .field("has_password", &self.password_hash.is_some())
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// A new account.
#[derive(Clone, PartialEq)]
pub struct NewUser {
    /// Tenant to create it in.
    pub tenant_id: TenantId,
    /// Email (kept as typed; compared case-insensitively).
    pub email: String,
    /// Name shown in UIs.
    pub display_name: String,
    /// Usually [`UserStatus::Active`].
    pub status: UserStatus,
    /// Already verified (e.g. bootstrap admin, upstream-verified email).
    pub email_verified: bool,
    /// Force a password change at next sign-in.
    pub must_change_password: bool,
    /// argon2id PHC string, or `None`.
    pub password_hash: Option<String>,
    /// Local groups.
    pub groups: Vec<String>,
}

impl std::fmt::Debug for NewUser {
    /// Leaves the email and password hash out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("tenant_id", &self.tenant_id)
            .field("status", &self.status)
            .field("has_password", &self.password_hash.is_some())
            .finish_non_exhaustive()
    }
}

/// A partial update of an account: `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserPatch {
    /// New email (uniqueness re-checked).
    pub email: Option<String>,
    /// New display name.
    pub display_name: Option<String>,
    /// Suspend or reactivate.
    pub status: Option<UserStatus>,
    /// Mark the email verified or not.
    pub email_verified: Option<bool>,
    /// Set or clear the forced password change.
    pub must_change_password: Option<bool>,
    /// Replace the local groups.
    pub groups: Option<Vec<String>>,
}

/// A link from a local account to an upstream identity (OIDC `sub`, SAML NameID).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ExternalIdentity {
    /// Row id.
    pub id: Uuid,
    /// Tenant of both the user and the IdP.
    pub tenant_id: TenantId,
    /// Local account.
    pub user_id: UserId,
    /// Upstream provider.
    pub idp_id: IdpId,
    /// The provider's stable subject identifier.
    pub subject: String,
    /// Linked at.
    pub created_at: DateTime<Utc>,
    /// Last sign-in through this link.
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A new upstream link; unique per (IdP, subject) and per (user, IdP).
#[derive(Clone, Debug, PartialEq)]
pub struct NewExternalIdentity {
    /// Tenant of both sides.
    pub tenant_id: TenantId,
    /// Local account.
    pub user_id: UserId,
    /// Upstream provider.
    pub idp_id: IdpId,
    /// The provider's subject.
    pub subject: String,
}

// ---------------------------------------------------------------------------------------
// Identity providers and roles

labelled_enum!(
    /// Which protocol an upstream identity provider speaks.
    IdpKind {
        /// Generic OpenID Connect.
        Oidc = "oidc",
        /// GitHub OAuth preset.
        Github = "github",
        /// Google preset.
        Google = "google",
        /// SAML 2.0.
        Saml = "saml",
    }
);

/// An upstream identity provider declared by an IdentityProvider resource.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct IdentityProvider {
    /// Row id (kept across updates, so links survive a resource re-create).
    pub id: IdpId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Resource name, unique per tenant.
    pub name: String,
    /// `metadata.uid` of the resource.
    pub owner_uid: String,
    /// Protocol.
    #[sqlx(try_from = "String")]
    pub kind: IdpKind,
    /// The spec as JSON, without secrets.
    #[sqlx(json)]
    pub config: Value,
    /// Client secret or SAML key, sealed by the envelope cipher.
    pub client_secret: Option<Vec<u8>>,
    /// `metadata.generation` last written.
    pub generation: i64,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// What the operator writes for an IdentityProvider resource; upserted by (tenant, name).
#[derive(Clone, Debug, PartialEq)]
pub struct IdpUpsert {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Resource name.
    pub name: String,
    /// `metadata.uid`.
    pub owner_uid: String,
    /// Protocol.
    pub kind: IdpKind,
    /// Spec as JSON, without secrets.
    pub config: Value,
    /// Sealed secret, if the provider has one.
    pub client_secret: Option<Vec<u8>>,
    /// `metadata.generation`.
    pub generation: i64,
}

/// Who a role is granted to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleSubject {
    /// A local account by email (case-insensitive).
    UserEmail(String),
    /// A local group.
    Group(String),
    /// A group asserted by the named upstream IdP.
    IdpGroup {
        /// IdentityProvider name.
        idp: String,
        /// Group as the IdP names it.
        group: String,
    },
}

/// A role declared by a Role resource, with its subjects.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Role {
    /// Row id.
    pub id: RoleId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Resource name, unique per tenant (the name tokens carry).
    pub name: String,
    /// `metadata.uid`.
    pub owner_uid: String,
    /// Free text.
    pub description: String,
    /// Permission strings (e.g. `orders.read`).
    #[sqlx(json)]
    pub permissions: Vec<String>,
    /// `metadata.generation` last written.
    pub generation: i64,
    /// Who holds the role, sorted.
    #[sqlx(skip)]
    pub subjects: Vec<RoleSubject>,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// What the operator writes for a Role resource; upserted by (tenant, name), subjects replaced.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleUpsert {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Resource name.
    pub name: String,
    /// `metadata.uid`.
    pub owner_uid: String,
    /// Free text.
    pub description: String,
    /// Permission strings.
    pub permissions: Vec<String>,
    /// Who holds the role.
    pub subjects: Vec<RoleSubject>,
    /// `metadata.generation`.
    pub generation: i64,
}

/// What token issuance needs of a role: its name and permissions.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleGrant {
    /// Row id.
    pub id: RoleId,
    /// Role name.
    pub name: String,
    /// Permission strings.
    #[sqlx(json)]
    pub permissions: Vec<String>,
}

/// The identity facts role bindings are matched against.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubjectFacts {
    /// The account's email.
    pub email: Option<String>,
    /// Local groups.
    pub groups: Vec<String>,
    /// (IdP name, group) pairs asserted upstream at sign-in.
    pub idp_groups: Vec<(String, String)>,
}

// ---------------------------------------------------------------------------------------
// API keys and signing keys

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
        self.revoked_at.is_none()
            && self.expires_at.is_none_or(|e| now < e)
            && (self.superseded_at.is_none() || self.grace_until.is_some_and(|g| now < g))
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
    /// Session id (the opaque cookie value and the `sid` claim).
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

/// Failed sign-in counter of one account.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct LockoutState {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Account.
    pub user_id: UserId,
    /// Consecutive failures since the last success.
    pub failures: i64,
    /// Sign-in refused until then.
    pub locked_until: Option<DateTime<Utc>>,
    /// Last failure.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// First failure recorded.
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

// ---------------------------------------------------------------------------------------
// Audit

/// One audit event; carries no email or other PII (the user id is the pseudonym).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AuditEvent {
    /// Row id (time-ordered).
    pub id: AuditId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Stable event label, e.g. `login.failed`.
    pub kind: String,
    /// Acting account, if any.
    pub actor_user_id: Option<UserId>,
    /// Client IP.
    pub ip: Option<String>,
    /// Request id for correlation with logs.
    pub request_id: Option<String>,
    /// Event details (ids, reasons; never emails, passwords or tokens).
    #[sqlx(json)]
    pub data: Value,
}

/// An audit event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    /// Tenant.
    pub tenant_id: TenantId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Stable event label.
    pub kind: String,
    /// Acting account.
    pub actor_user_id: Option<UserId>,
    /// Client IP.
    pub ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Details without PII.
    pub data: Value,
}

/// Which audit events to return; every field narrows, `None` does not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this actor.
    pub actor_user_id: Option<UserId>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Strictly before (page backwards by passing the oldest `at` seen).
    pub until: Option<DateTime<Utc>>,
}
