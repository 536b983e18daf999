//! Records the store reads and writes: plain structs, one per row kind, plus the `New…` /
//! `…Upsert` shapes callers hand in. Timestamps are UTC; ids are the typed ids of
//! [`crate::ids`]. Secrets arrive here already hashed or sealed (ciphertext bytes).

use crate::ids::{IdpId, RoleId, TenantId, UserId};
use crate::store::StoreError;
use crate::tenant_settings::TenantSettings;
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

/// The rule every rotated secret follows (API keys, OAuth client secrets): usable unless
/// revoked, and once superseded by a rotation only until its grace ends.
fn rotation_allows(
    revoked_at: Option<DateTime<Utc>>,
    superseded_at: Option<DateTime<Utc>>,
    grace_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    revoked_at.is_none() && (superseded_at.is_none() || grace_until.is_some_and(|g| now < g))
}

mod audit;
mod credentials;
mod oauth_client;

pub use audit::*;
pub use credentials::*;
pub use oauth_client::*;

// ---------------------------------------------------------------------------------------
// Tenants

labelled_enum!(
    /// What happens to a tenant's rows when its Tenant resource is deleted.
    #[derive(Default)]
    DeletionPolicy {
        /// The tenant is disabled and every row kept, so a resource deleted by mistake can be
        /// re-applied (the default).
        #[default]
        Retain = "retain",
        /// The tenant and its rows are erased (all but the audit trail).
        Delete = "delete",
    }
);

/// A tenant as declared by a Tenant resource; its `name` is the cluster-wide URL segment.
#[derive(Clone, Debug, PartialEq)]
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
    /// The tenant's policies, read and checked once when the row is loaded.
    pub settings: TenantSettings,
    /// What deleting the Tenant resource does to these rows.
    pub deletion_policy: DeletionPolicy,
    /// `metadata.generation` last written.
    pub generation: i64,
    /// A disabled tenant serves nothing (deletionPolicy Retain keeps it this way).
    pub disabled: bool,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A `tenants` row as the database returns it, before its settings are read.
#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: TenantId,
    name: String,
    namespace: String,
    owner_uid: String,
    display_name: String,
    #[sqlx(json)]
    settings: Value,
    #[sqlx(try_from = "String")]
    deletion_policy: DeletionPolicy,
    generation: i64,
    disabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    /// Settings that do not parse or break a rule are refused here, the one place a stored
    /// value becomes [`TenantSettings`], so every reader sees the same error.
    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        let settings = TenantSettings::from_json(row.settings).map_err(|source| {
            StoreError::InvalidTenantSettings {
                tenant: row.name.clone(),
                source,
            }
        })?;
        Ok(Self {
            id: row.id,
            name: row.name,
            namespace: row.namespace,
            owner_uid: row.owner_uid,
            display_name: row.display_name,
            settings,
            deletion_policy: row.deletion_policy,
            generation: row.generation,
            disabled: row.disabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
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
    /// The tenant's policies; refused unless they pass [`TenantSettings::validate`].
    pub settings: TenantSettings,
    /// What deleting the resource will do to the tenant's rows.
    pub deletion_policy: DeletionPolicy,
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
    /// Groups the provider asserted at the last sign-in through this link.
    #[sqlx(json)]
    pub groups: Vec<String>,
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
    /// Groups the provider asserted at this sign-in.
    pub groups: Vec<String>,
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

/// The local group the bootstrap administrator is put in, and so far the only group any
/// account can be in: the operator refuses Roles binding other groups (they would bind
/// nobody) and the gateway grants its members the built-in admin role.
pub const ADMIN_GROUP: &str = "keygate-admins";

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
