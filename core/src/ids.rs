//! Typed identifiers, so a `UserId` can never be passed where a `TenantId` is meant.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id: index-friendly and unguessable enough for row ids.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )*};
}

typed_id!(
    /// A tenant: the unit every other row is scoped to.
    TenantId,
    /// A person's account inside one tenant.
    UserId,
    /// A sign-in session; also the refresh-token family it owns.
    SessionId,
    /// An API key row (the raw key is never stored).
    ApiKeyId,
    /// A role declared by a Role resource.
    RoleId,
    /// An upstream identity provider declared by an IdentityProvider resource.
    IdpId,
    /// An MFA factor (TOTP, WebAuthn) enrolled by a user.
    FactorId,
    /// An audit event row.
    AuditId,
    /// A registered OAuth client declared by an OAuthClient resource.
    OAuthClientId,
    /// One secret of a confidential OAuth client (the raw secret is never stored).
    ClientSecretId,
);
