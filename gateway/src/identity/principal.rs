//! Who is calling: the [`Principal`] every resolver returns and every route authorizes on.

use chrono::{DateTime, Utc};
use keygate_core::ids::{ApiKeyId, SessionId, TenantId, UserId};

/// The permission that lets a caller administer accounts (suspend, reactivate, erase)
/// and introspect tokens of its tenant.
pub const ADMIN_PERMISSION: &str = "keygate:admin";

/// The local group whose members hold [`ADMIN_PERMISSION`] through the built-in
/// [`ADMIN_ROLE`] (the bootstrap admin is put in it).
pub const ADMIN_GROUP: &str = keygate_core::store::ADMIN_GROUP;

/// The built-in role members of [`ADMIN_GROUP`] get.
pub const ADMIN_ROLE: &str = "keygate-admin";

/// Finer than [`ADMIN_PERMISSION`]: find and view the tenant's people (list, search, one
/// person's factors, identities, sessions and groups), for help desks that must not act.
#[allow(dead_code)] // read by the admin routes, landing on their branches now
pub const USERS_READ_PERMISSION: &str = "keygate:users:read";

/// Finer than [`ADMIN_PERMISSION`]: act on the tenant's people (end their sessions, reset
/// their MFA, suspend and reactivate, assign local groups, invitations).
#[allow(dead_code)] // read by the admin routes, landing on their branches now
pub const USERS_WRITE_PERMISSION: &str = "keygate:users:write";

/// Finer than [`ADMIN_PERMISSION`]: read the tenant's audit log.
#[allow(dead_code)] // read by the admin routes, landing on their branches now
pub const AUDIT_READ_PERMISSION: &str = "keygate:audit:read";

/// How the caller proved who they are, with what that proof carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Credential {
    /// Email and password just now (sign-in); the session it opened.
    Password {
        /// The session opened by this sign-in.
        session_id: SessionId,
        /// When the person authenticated.
        auth_time: DateTime<Utc>,
    },
    /// A bearer access token (RFC 9068 JWT) issued by this tenant.
    AccessToken {
        /// The token's `jti`.
        jti: String,
        /// The session (`sid`) it was issued under, if any.
        session_id: Option<SessionId>,
        /// The OAuth client it was issued to.
        client_id: String,
        /// Authentication methods (RFC 8176).
        amr: Vec<String>,
        /// Authentication context class.
        acr: Option<String>,
        /// When the person last actively authenticated.
        auth_time: DateTime<Utc>,
        /// The token's `exp`.
        expires_at: DateTime<Utc>,
    },
    /// An API key `kg_<prefix>_<secret>`.
    ApiKey {
        /// Row id of the key (its revocation id).
        key_id: ApiKeyId,
        /// ApiKey resource name.
        name: String,
        /// When the key stops working, if ever.
        expires_at: Option<DateTime<Utc>>,
    },
    /// The browser session cookie.
    SessionCookie {
        /// The session the cookie names.
        session_id: SessionId,
        /// Authentication methods used at sign-in.
        amr: Vec<String>,
        /// Authentication context class.
        acr: Option<String>,
        /// When the person last actively authenticated.
        auth_time: DateTime<Utc>,
        /// When the session ends at the latest.
        expires_at: DateTime<Utc>,
    },
    /// A sign-in through an upstream OAuth / OIDC / SAML provider.
    UpstreamOAuth {
        /// IdentityProvider name.
        idp: String,
        /// The session opened by the sign-in.
        session_id: SessionId,
        /// When the person authenticated upstream.
        auth_time: DateTime<Utc>,
    },
}

/// An authenticated caller of one tenant: a person (user id, email) or an API key.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// Tenant the credential belongs to.
    pub tenant_id: TenantId,
    /// Tenant name (URL segment).
    pub tenant: String,
    /// The account, for people; `None` for API keys.
    pub user_id: Option<UserId>,
    /// The account's email, for people.
    pub email: Option<String>,
    /// Whether the person proved they read that mailbox (false for API keys): only a
    /// verified address binds roles or is sent to upstreams as the person's identity.
    pub email_verified: bool,
    /// Whether the account (or key) may act now.
    pub active: bool,
    /// Role names.
    pub roles: Vec<String>,
    /// Permissions from roles and direct grants.
    pub permissions: Vec<String>,
    /// OAuth scopes.
    pub scopes: Vec<String>,
    /// How the caller authenticated.
    pub credential: Credential,
}

impl Principal {
    /// A person of `tenant` signed in with `credential` (a password sign-in, a session
    /// cookie), holding `roles`, `permissions` and `scopes`.
    pub(super) fn person(
        tenant: &super::tenants::LiveTenant,
        user: &keygate_core::store::User,
        grants: (Vec<String>, Vec<String>),
        scopes: Vec<String>,
        credential: Credential,
    ) -> Self {
        let (roles, permissions) = grants;
        Self {
            tenant_id: tenant.row.id,
            tenant: tenant.row.name.clone(),
            user_id: Some(user.id),
            email: Some(user.email.clone()),
            email_verified: user.email_verified,
            active: true,
            roles,
            permissions,
            scopes,
            credential,
        }
    }

    /// Stable subject: the user id, or `apikey:<name>` for API keys.
    pub fn subject(&self) -> String {
        match (&self.user_id, &self.credential) {
            (Some(user), _) => user.to_string(),
            (None, Credential::ApiKey { name, .. }) => format!("apikey:{name}"),
            (None, _) => String::new(),
        }
    }

    /// Whether the caller used an API key.
    pub fn is_api_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey { .. })
    }

    /// Whether the caller used a bearer access token.
    pub fn is_access_token(&self) -> bool {
        matches!(self.credential, Credential::AccessToken { .. })
    }

    /// Whether the caller used the browser session cookie.
    pub fn is_session_cookie(&self) -> bool {
        matches!(self.credential, Credential::SessionCookie { .. })
    }

    /// Whether the caller is a person (not an API key).
    pub fn is_person(&self) -> bool {
        self.user_id.is_some()
    }

    /// The session behind the credential, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        match &self.credential {
            Credential::Password { session_id, .. }
            | Credential::SessionCookie { session_id, .. }
            | Credential::UpstreamOAuth { session_id, .. } => Some(*session_id),
            Credential::AccessToken { session_id, .. } => *session_id,
            Credential::ApiKey { .. } => None,
        }
    }

    /// Authentication methods (RFC 8176) of the sign-in behind the credential.
    pub fn amr(&self) -> &[String] {
        match &self.credential {
            Credential::AccessToken { amr, .. } | Credential::SessionCookie { amr, .. } => amr,
            _ => &[],
        }
    }

    /// Authentication context class of the sign-in behind the credential.
    pub fn acr(&self) -> Option<&str> {
        match &self.credential {
            Credential::AccessToken { acr, .. } | Credential::SessionCookie { acr, .. } => {
                acr.as_deref()
            }
            _ => None,
        }
    }

    /// When the person last actively authenticated (for `max_age`).
    pub fn auth_time(&self) -> Option<DateTime<Utc>> {
        match &self.credential {
            Credential::Password { auth_time, .. }
            | Credential::AccessToken { auth_time, .. }
            | Credential::SessionCookie { auth_time, .. }
            | Credential::UpstreamOAuth { auth_time, .. } => Some(*auth_time),
            Credential::ApiKey { .. } => None,
        }
    }

    /// Whether the caller holds role `name`.
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r == name)
    }

    /// Whether the caller holds permission `name`.
    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions.iter().any(|p| p == name)
    }

    /// Whether the caller was granted scope `name`.
    pub fn has_scope(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s == name)
    }

    /// Whether the caller may administer accounts of its tenant.
    pub fn is_admin(&self) -> bool {
        self.has_permission(ADMIN_PERMISSION)
    }

    /// Whether the caller holds `permission` or is an admin ([`ADMIN_PERMISSION`] implies
    /// every finer admin permission).
    #[allow(dead_code)] // as above
    pub fn may(&self, permission: &str) -> bool {
        self.is_admin() || self.has_permission(permission)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn principal(credential: Credential) -> Principal {
        Principal {
            tenant_id: TenantId::new(),
            tenant: "acme".into(),
            user_id: None,
            email: None,
            email_verified: false,
            active: true,
            roles: vec!["ops".into()],
            permissions: vec![ADMIN_PERMISSION.into()],
            scopes: vec![],
            credential,
        }
    }

    #[test]
    fn helpers_read_the_credential() {
        let key = principal(Credential::ApiKey {
            key_id: ApiKeyId::new(),
            name: "ci".into(),
            expires_at: None,
        });
        assert!(key.is_api_key() && !key.is_access_token() && !key.is_person());
        assert_eq!(key.subject(), "apikey:ci");
        assert_eq!(key.session_id(), None);
        assert!(key.is_admin() && key.has_role("ops") && !key.has_role("dev"));
        let sid = SessionId::new();
        let now = Utc::now();
        let cookie = principal(Credential::SessionCookie {
            session_id: sid,
            amr: vec!["pwd".into()],
            acr: None,
            auth_time: now,
            expires_at: now,
        });
        assert!(cookie.is_session_cookie());
        assert_eq!(cookie.session_id(), Some(sid));
        assert_eq!(cookie.amr(), ["pwd".to_owned()]);
        assert_eq!(cookie.auth_time(), Some(now));
    }
}
