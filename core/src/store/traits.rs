//! The storage capabilities, one trait each, so a component states exactly what it needs
//! and a backend that lacks a capability does not compile (rather than returning empty lies).
//!
//! Every method that reads or changes tenant data takes the [`TenantId`] and filters by it
//! in SQL: another tenant's id answers `None` / `false` / [`StoreError::NotFound`], never
//! the row. The few deliberate cross-tenant operations (janitors, the tenant registry
//! itself, revocation resync) say so in their names and docs.
//!
//! Methods that decide something by time (expiry, lockout, rotation, single use) take an
//! explicit `now`; bookkeeping `created_at`/`updated_at` come from the store's clock.

use super::StoreError;
use super::model::*;
use crate::ids::{FactorId, IdpId, RoleId, SessionId, TenantId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The most audit events one query returns, whatever limit the caller asks for.
pub const AUDIT_QUERY_MAX: u32 = 1000;
/// The most rows one listing call returns.
pub const LIST_MAX: u32 = 1000;

/// The tenant registry (the operator writes it, the gateway resolves `/t/{name}` with it).
#[async_trait]
pub trait TenantStore {
    /// Inserts or updates by `name`; another `owner_uid` under that name is
    /// `Conflict { constraint: "tenants_name" }` and changes nothing (TenantNameTaken).
    /// `disabled` is left as it is.
    async fn upsert_tenant(&self, t: &TenantUpsert) -> Result<Tenant, StoreError>;
    /// Resolves a tenant by id.
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    /// Resolves a tenant by its URL segment.
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    /// Every tenant, by name (resync, admin).
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Disables or re-enables a tenant (deletionPolicy Retain); `NotFound` if absent.
    async fn set_tenant_disabled(&self, id: TenantId, disabled: bool) -> Result<(), StoreError>;
    /// Hands a tenant to another resource uid on purpose (re-adopting a retained tenant).
    async fn set_tenant_owner(&self, id: TenantId, owner_uid: &str) -> Result<(), StoreError>;
    /// Erases a tenant and every row it owns except its audit trail; `false` if absent.
    async fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError>;
}

/// Accounts.
#[async_trait]
pub trait UserStore {
    /// Creates an account; `Conflict { constraint: "users_email" }` when the email is taken
    /// in this tenant, whatever its case.
    async fn insert_user(&self, u: &NewUser) -> Result<User, StoreError>;
    /// Finds an account by id.
    async fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError>;
    /// Finds an account by email, case-insensitively.
    async fn user_by_email(
        &self,
        tenant: TenantId,
        email: &str,
    ) -> Result<Option<User>, StoreError>;
    /// A page of accounts ordered by id, after `after` (keyset pagination), at most [`LIST_MAX`].
    async fn list_users(
        &self,
        tenant: TenantId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// Applies a partial update; `NotFound` if absent.
    async fn update_user(
        &self,
        tenant: TenantId,
        id: UserId,
        patch: &UserPatch,
    ) -> Result<User, StoreError>;
    /// GDPR erasure: removes the account with its factors, sessions, refresh families,
    /// password history, identities, codes and tokens; audit rows keep the bare user id.
    async fn erase_user(&self, tenant: TenantId, id: UserId) -> Result<bool, StoreError>;
}

/// Local passwords and their history.
#[async_trait]
pub trait CredentialStore {
    /// Sets the account's password hash (or clears it with `None`), records it in the
    /// history, keeps only the newest `keep_history` entries, and sets
    /// `must_change_password`. `NotFound` if the account is absent.
    async fn set_password(
        &self,
        tenant: TenantId,
        user: UserId,
        hash: Option<&str>,
        keep_history: u32,
        must_change_password: bool,
    ) -> Result<(), StoreError>;
    /// The newest `limit` password hashes (current one included), newest first, for the
    /// no-reuse rule.
    async fn password_history(
        &self,
        tenant: TenantId,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
}

/// Links between local accounts and upstream identities.
#[async_trait]
pub trait IdentityLinkStore {
    /// Links an upstream identity; `Conflict` on `external_identities_subject` (that
    /// subject is linked already) or `external_identities_user_idp` (the account already
    /// has an identity at that IdP).
    async fn link_identity(
        &self,
        link: &NewExternalIdentity,
    ) -> Result<ExternalIdentity, StoreError>;
    /// Finds the link for an upstream subject (SSO sign-in).
    async fn identity_by_subject(
        &self,
        tenant: TenantId,
        idp: IdpId,
        subject: &str,
    ) -> Result<Option<ExternalIdentity>, StoreError>;
    /// The account's links.
    async fn identities_of_user(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<ExternalIdentity>, StoreError>;
    /// Records an SSO sign-in through a link with the groups the provider asserted this
    /// time; `false` if absent.
    async fn touch_identity(
        &self,
        tenant: TenantId,
        id: uuid::Uuid,
        now: DateTime<Utc>,
        groups: &[String],
    ) -> Result<bool, StoreError>;
    /// (provider name, group) for every group the account's links hold, for `idpGroups`
    /// role subjects.
    async fn idp_groups_of_user(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Removes the account's link to an IdP; `false` if there was none.
    async fn unlink_identity(
        &self,
        tenant: TenantId,
        user: UserId,
        idp: IdpId,
    ) -> Result<bool, StoreError>;
}

/// Upstream identity providers.
#[async_trait]
pub trait IdpStore {
    /// Inserts or updates by (tenant, name); the row id survives updates.
    async fn upsert_idp(&self, idp: &IdpUpsert) -> Result<IdentityProvider, StoreError>;
    /// Finds a provider by id.
    async fn idp(
        &self,
        tenant: TenantId,
        id: IdpId,
    ) -> Result<Option<IdentityProvider>, StoreError>;
    /// Finds a provider by resource name (`/t/{tenant}/sso/{name}`).
    async fn idp_by_name(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<IdentityProvider>, StoreError>;
    /// The tenant's providers, by name.
    async fn list_idps(&self, tenant: TenantId) -> Result<Vec<IdentityProvider>, StoreError>;
    /// Removes a provider and its links; `false` if absent.
    async fn delete_idp(&self, tenant: TenantId, id: IdpId) -> Result<bool, StoreError>;
}

/// Roles, permissions and role bindings.
#[async_trait]
pub trait RoleStore {
    /// Inserts or updates by (tenant, name) and replaces the subjects, atomically.
    async fn upsert_role(&self, role: &RoleUpsert) -> Result<Role, StoreError>;
    /// Finds a role by id, with subjects.
    async fn role(&self, tenant: TenantId, id: RoleId) -> Result<Option<Role>, StoreError>;
    /// Finds a role by name, with subjects.
    async fn role_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Role>, StoreError>;
    /// The tenant's roles with subjects, by name.
    async fn list_roles(&self, tenant: TenantId) -> Result<Vec<Role>, StoreError>;
    /// Removes a role; `false` if absent.
    async fn delete_role(&self, tenant: TenantId, id: RoleId) -> Result<bool, StoreError>;
    /// Roles whose subjects match an identity (token issuance), by name.
    async fn roles_for_subject(
        &self,
        tenant: TenantId,
        facts: &SubjectFacts,
    ) -> Result<Vec<RoleGrant>, StoreError>;
    /// Roles by name (an API key's roles), by name; unknown names are skipped.
    async fn roles_by_names(
        &self,
        tenant: TenantId,
        names: &[String],
    ) -> Result<Vec<RoleGrant>, StoreError>;
}

/// Token-signing keys (private part sealed).
#[async_trait]
pub trait SigningKeyStore {
    /// Stores a key; `Conflict { constraint: "signing_keys_kid" }` if the kid exists.
    async fn insert_signing_key(&self, k: &SigningKeyRecord) -> Result<(), StoreError>;
    /// The tenant's keys ordered by `activates_at` (then kid).
    async fn signing_keys(&self, tenant: TenantId) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Schedules a key's removal from JWKS; `NotFound` if absent in this tenant.
    async fn set_signing_key_retires_at(
        &self,
        tenant: TenantId,
        kid: &str,
        retires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Janitor across all tenants: removes keys whose `retires_at` is at or before `now`.
    async fn delete_retired_signing_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Replaces a key's sealed private part (master-key rotation) if it still is `previous`;
    /// `false` if the key is gone or was re-sealed by someone else meanwhile.
    async fn reseal_signing_key(
        &self,
        tenant: TenantId,
        kid: &str,
        previous: &[u8],
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
}

/// The session ledger.
#[async_trait]
pub trait SessionStore {
    /// Opens a session; `NotFound` if the account is not in this tenant,
    /// `Conflict { constraint: "sessions_token_hash" }` if the token hash exists.
    async fn insert_session(&self, s: &NewSession) -> Result<Session, StoreError>;
    /// Opens session `id` with the first token of its refresh family (`refresh_hash`, issued
    /// at `s.created_at`, good until `refresh_expires_at`) and, if given, the audit event of
    /// the sign-in, in one transaction: a failure (the database gone mid-way) leaves none of
    /// them, so no session exists that nobody was handed. Errors as [`Self::insert_session`].
    async fn open_session(
        &self,
        id: SessionId,
        s: &NewSession,
        refresh_hash: &[u8],
        refresh_expires_at: DateTime<Utc>,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Session, StoreError>;
    /// Finds a session by id (whatever its state; check [`Session::is_active`]).
    async fn session(&self, tenant: TenantId, id: SessionId)
    -> Result<Option<Session>, StoreError>;
    /// Finds a session by the SHA-256 of its cookie token (whatever its state; check
    /// [`Session::is_active`]); another tenant's session answers `None`.
    async fn session_by_token_hash(
        &self,
        tenant: TenantId,
        token_hash: &[u8],
    ) -> Result<Option<Session>, StoreError>;
    /// The account's sessions active at `now`, newest first.
    async fn active_sessions_of_user(
        &self,
        tenant: TenantId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError>;
    /// Records activity and slides the idle expiry, if the session is still active.
    async fn touch_session(
        &self,
        tenant: TenantId,
        id: SessionId,
        now: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Step-up: records a fresh authentication on an active session (its methods, class and
    /// time); `false` if absent, revoked or expired at `auth_time`.
    async fn raise_session_authentication(
        &self,
        tenant: TenantId,
        id: SessionId,
        amr: &[String],
        acr: Option<&str>,
        auth_time: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Revokes a session and with it its refresh family; `false` if absent or already revoked.
    async fn revoke_session(
        &self,
        tenant: TenantId,
        id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Logout-all: revokes every open session of the account; returns how many.
    async fn revoke_user_sessions(
        &self,
        tenant: TenantId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Across tenants, for re-syncing the revocation set: sessions revoked at or after
    /// `since` that have not reached their absolute expiry by `now`, with when each was
    /// revoked (so a replica can tell how late it learnt of it).
    async fn revoked_sessions_since(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(TenantId, SessionId, DateTime<Utc>)>, StoreError>;
    /// Janitor across tenants: removes sessions (and families) past absolute expiry.
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Refresh-token families (family = session).
#[async_trait]
pub trait RefreshTokenStore {
    /// Stores the first token of a family; `NotFound` if the session is not in this tenant.
    async fn insert_refresh_token(
        &self,
        t: &NewRefreshToken,
    ) -> Result<RefreshTokenRecord, StoreError>;
    /// Finds a token by hash, rotated or not: a rotated one names the family to revoke.
    async fn refresh_token(
        &self,
        tenant: TenantId,
        hash: &[u8],
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Atomically exchanges `presented` for a successor: of concurrent calls with the same
    /// token exactly one gets [`RotateOutcome::Rotated`]; the rest learn why not. With
    /// `client`, only a token whose session belongs to that client rotates (another client
    /// gets [`RotateOutcome::WrongClient`] and the token stays unspent), in the same statement.
    async fn rotate_refresh_token(
        &self,
        tenant: TenantId,
        presented: &[u8],
        client: Option<&str>,
        next_hash: &[u8],
        next_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, StoreError>;
}

/// Second factors and backup codes.
#[async_trait]
pub trait MfaStore {
    /// Enrols an unconfirmed factor.
    async fn insert_factor(&self, f: &NewFactor) -> Result<Factor, StoreError>;
    /// Finds a factor by id.
    async fn factor(&self, tenant: TenantId, id: FactorId) -> Result<Option<Factor>, StoreError>;
    /// The account's factors, oldest first.
    async fn factors_of_user(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<Factor>, StoreError>;
    /// A page of the tenant's factors ordered by id, after `after` (keyset pagination), at
    /// most [`LIST_MAX`]: the operator re-seals their secrets under the active master key.
    async fn factors_page(
        &self,
        tenant: TenantId,
        after: Option<FactorId>,
        limit: u32,
    ) -> Result<Vec<Factor>, StoreError>;
    /// Replaces a factor's sealed secret only if it is still `previous` (compare-and-set, so
    /// a re-seal never overwrites a concurrent change); `false` if it changed or is absent.
    async fn reseal_factor_secret(
        &self,
        tenant: TenantId,
        id: FactorId,
        previous: &[u8],
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
    /// Marks enrolment finished; `false` if absent.
    async fn confirm_factor(&self, tenant: TenantId, id: FactorId) -> Result<bool, StoreError>;
    /// Replaces the sealed secret (WebAuthn credential counters); `false` if absent.
    async fn update_factor_secret(
        &self,
        tenant: TenantId,
        id: FactorId,
        secret: &[u8],
    ) -> Result<bool, StoreError>;
    /// Records an accepted WebAuthn assertion: the sealed credential with its new signature
    /// counter replaces `previous` only if it is still that (compare-and-set, so of two
    /// assertions racing on one credential only one advances it), and `last_used_at` is set;
    /// `false` if it changed or is absent.
    async fn record_factor_use(
        &self,
        tenant: TenantId,
        id: FactorId,
        previous: &[u8],
        secret: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Renames a factor; `false` if absent.
    async fn rename_factor(
        &self,
        tenant: TenantId,
        id: FactorId,
        label: &str,
    ) -> Result<bool, StoreError>;
    /// Removes a factor; `false` if absent.
    async fn delete_factor(&self, tenant: TenantId, id: FactorId) -> Result<bool, StoreError>;
    /// TOTP replay guard: records `step` only if it is newer than the last accepted one, in
    /// one statement; `false` means replay (or an older code), refuse it.
    async fn advance_totp_step(
        &self,
        tenant: TenantId,
        id: FactorId,
        step: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Replaces the account's backup codes with these hashes (SHA-256 of high-entropy codes).
    async fn replace_backup_codes(
        &self,
        tenant: TenantId,
        user: UserId,
        hashes: &[Vec<u8>],
    ) -> Result<(), StoreError>;
    /// Spends a backup code in one statement; `false` if unknown or already used.
    async fn use_backup_code(
        &self,
        tenant: TenantId,
        user: UserId,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// How many unused backup codes the account has left.
    async fn remaining_backup_codes(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<i64, StoreError>;
}

/// Hashed, expiring, single-use tokens (verification, reset, link, invite).
#[async_trait]
pub trait OneTimeTokenStore {
    /// Stores a token; `Conflict { constraint: "one_time_tokens_hash" }` on a duplicate hash.
    async fn insert_one_time_token(&self, t: &NewOneTimeToken) -> Result<OneTimeToken, StoreError>;
    /// Consumes a token in one statement: returns it only if it exists in this tenant with
    /// this purpose, is unused and unexpired at `now`; a second call gets `None`.
    async fn consume_one_time_token(
        &self,
        tenant: TenantId,
        purpose: TokenPurpose,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<OneTimeToken>, StoreError>;
    /// Spends every outstanding token of a purpose for an account (a new reset link voids
    /// older ones); returns how many.
    async fn invalidate_one_time_tokens(
        &self,
        tenant: TenantId,
        user: UserId,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Janitor across tenants: removes tokens expired before `now`.
    async fn delete_expired_one_time_tokens(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Per-account failed sign-in counters.
#[async_trait]
pub trait LockoutStore {
    /// The account's counter, if any failure is recorded.
    async fn lockout(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<LockoutState>, StoreError>;
    /// Atomically adds one failure and returns the new state (the caller applies the
    /// tenant's schedule with [`LockoutStore::lock_until`]).
    async fn record_failure(
        &self,
        tenant: TenantId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<LockoutState, StoreError>;
    /// Refuses sign-in until `until`; `false` if no counter exists.
    async fn lock_until(
        &self,
        tenant: TenantId,
        user: UserId,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Clears the counter after a successful sign-in.
    async fn reset_lockout(&self, tenant: TenantId, user: UserId) -> Result<(), StoreError>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditLog {
    /// Appends an event (never carry emails, passwords or tokens in `data`).
    async fn append_audit(&self, e: &NewAuditEvent) -> Result<AuditEvent, StoreError>;
    /// The tenant's events matching `filter`, newest first, at most
    /// `min(limit, AUDIT_QUERY_MAX)`.
    async fn query_audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;
}
