//! The seam between forward-auth and the identity service: turning a presented credential
//! into an [`Identity`] and minting upstream JWTs (`upstream.rs`). The identity service implements
//! [`Authenticator`]; tests put a stand-in behind the same trait. Forward-auth owns caching,
//! revocation checks and the decision; the service owns verification (JWT signatures and
//! claims, API-key hashes, session rows) and signing.

use super::upstream::UpstreamGrant;
use super::{Credential, IdentityError, IdentityService, LiveTenant, Principal};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::ids::{ApiKeyId, SessionId, TenantId};

/// Which kind of credential an identity was proven with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// A bearer access token (JWT).
    AccessToken,
    /// An API key (`kg_…`).
    ApiKey,
    /// The browser session cookie.
    Session,
}

/// What forward-auth needs to know about whoever presented a credential. An
/// [`Authenticator`] produces it; forward-auth caches it and decides on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// Tenant the credential belongs to.
    pub tenant_id: TenantId,
    /// Tenant name (URL segment).
    pub tenant: String,
    /// Stable subject: the user id, or `apikey:<name>` for API keys.
    pub subject: String,
    /// Human-facing user name for `X-Auth-Request-User`: the verified email, the key
    /// name, or else the subject.
    pub username: String,
    /// The person's email, only once verified (`X-Auth-Request-Email`).
    pub email: Option<String>,
    /// Whether the person's address is verified (`X-Auth-Request-Email-Verified`);
    /// `None` when the subject has no address (API keys).
    pub email_verified: Option<bool>,
    /// Role names.
    pub roles: Vec<String>,
    /// Permissions (from roles and direct grants).
    pub permissions: Vec<String>,
    /// OAuth scopes.
    pub scopes: Vec<String>,
    /// Authentication methods used at sign-in (RFC 8176).
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// When the person last actively authenticated.
    pub auth_time: Option<DateTime<Utc>>,
    /// How the credential was presented.
    pub kind: CredentialKind,
    /// Ids whose revocation ends this identity at once (session id, API-key id, token id),
    /// as written to `Ephemeral::revoke`.
    pub revocation_ids: Vec<String>,
    /// The sign-in session behind the credential (none for API keys): the `sid` of upstream
    /// tokens, so an app can tell which session a token speaks for.
    pub session_id: Option<SessionId>,
    /// The credential is worth nothing after this (token `exp`, key or session expiry).
    pub expires_at: DateTime<Utc>,
    /// The API key row, so its last use can be recorded.
    pub api_key: Option<ApiKeyId>,
}

/// Why a credential did not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Not a valid credential of this tenant (bad signature, unknown, another tenant's):
    /// a 401.
    #[error("invalid credential")]
    Invalid,
    /// A credential of this tenant past its lifetime: a 401 (`token_expired`,
    /// `session_expired`, `api_key_expired`).
    #[error("expired credential")]
    Expired,
    /// A credential of this tenant that was ended (sign-out, revoke, rotation): a 401
    /// (`session_revoked`, `token_revoked`, `api_key_revoked`).
    #[error("revoked credential")]
    Revoked,
    /// A dependency is down; the caller cannot tell valid from invalid: a 503.
    #[error("credential check unavailable")]
    Unavailable,
}

/// Checks credentials of one tenant and signs tokens describing the identities found.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// A bearer access token (JWT) issued by `tenant`.
    async fn access_token(&self, tenant: &LiveTenant, token: &str) -> Result<Identity, AuthError>;
    /// A raw API key `kg_<prefix>_<secret>` of `tenant`.
    async fn api_key(&self, tenant: &LiveTenant, key: &str) -> Result<Identity, AuthError>;
    /// The session cookie's value.
    async fn session(&self, tenant: &LiveTenant, cookie_value: &str)
    -> Result<Identity, AuthError>;
    /// An app host's cookie from the handoff (a child of a session; see `handoff`).
    async fn host_session(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
    ) -> Result<Identity, AuthError>;
    /// A short-lived JWT describing `identity`, signed by `tenant`, for the upstream a route
    /// protects (`jwt=1`): typed and addressed so that only that upstream accepts it.
    async fn upstream_token(
        &self,
        tenant: &LiveTenant,
        identity: &Identity,
        grant: &UpstreamGrant,
    ) -> Result<String, AuthError>;
}

impl From<IdentityError> for AuthError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Unavailable(_)
            | IdentityError::Store(_)
            | IdentityError::Crypto(_)
            | IdentityError::Internal(_) => {
                tracing::warn!(error = %e, "credential check failed");
                AuthError::Unavailable
            }
            IdentityError::ExpiredToken => AuthError::Expired,
            IdentityError::RevokedToken => AuthError::Revoked,
            _ => AuthError::Invalid,
        }
    }
}

fn identity(p: Principal, now: DateTime<Utc>) -> Identity {
    let subject = p.subject();
    let session_id = p.session_id();
    let (kind, revocation_ids, expires_at, api_key) = match &p.credential {
        Credential::AccessToken {
            jti,
            session_id,
            expires_at,
            ..
        } => {
            let mut ids = vec![jti.clone()];
            ids.extend(session_id.map(|s| s.to_string()));
            (CredentialKind::AccessToken, ids, *expires_at, None)
        }
        Credential::ApiKey {
            key_id, expires_at, ..
        } => (
            CredentialKind::ApiKey,
            vec![key_id.to_string()],
            expires_at.unwrap_or(now + chrono::Duration::days(1)),
            Some(*key_id),
        ),
        Credential::SessionCookie {
            session_id,
            expires_at,
            ..
        } => (
            CredentialKind::Session,
            vec![session_id.to_string()],
            *expires_at,
            None,
        ),
        Credential::Password { session_id, .. } | Credential::UpstreamOAuth { session_id, .. } => (
            CredentialKind::Session,
            vec![session_id.to_string()],
            now + chrono::Duration::minutes(5),
            None,
        ),
    };
    // An unverified address is anyone's claim: upstreams never see it as the identity.
    let email = p.email.clone().filter(|_| p.email_verified);
    let email_verified = p.email.as_ref().map(|_| p.email_verified);
    let username = match (&email, &p.credential) {
        (Some(email), _) => email.clone(),
        (None, Credential::ApiKey { name, .. }) => name.clone(),
        (None, _) => subject.clone(),
    };
    Identity {
        tenant_id: p.tenant_id,
        tenant: p.tenant.clone(),
        subject,
        username,
        email,
        email_verified,
        amr: p.amr().to_vec(),
        acr: p.acr().map(str::to_owned),
        auth_time: p.auth_time(),
        roles: p.roles,
        permissions: p.permissions,
        scopes: p.scopes,
        kind,
        revocation_ids,
        session_id,
        expires_at,
        api_key,
    }
}

#[async_trait]
impl Authenticator for IdentityService {
    async fn access_token(&self, tenant: &LiveTenant, token: &str) -> Result<Identity, AuthError> {
        Ok(identity(
            self.access_token_principal(tenant, token).await?,
            self.now(),
        ))
    }

    async fn api_key(&self, tenant: &LiveTenant, key: &str) -> Result<Identity, AuthError> {
        Ok(identity(
            self.api_key_principal(tenant, key).await?,
            self.now(),
        ))
    }

    async fn session(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
    ) -> Result<Identity, AuthError> {
        Ok(identity(
            self.session_principal(tenant, cookie_value).await?,
            self.now(),
        ))
    }

    async fn host_session(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
    ) -> Result<Identity, AuthError> {
        Ok(identity(
            self.host_session_principal(tenant, cookie_value).await?,
            self.now(),
        ))
    }

    async fn upstream_token(
        &self,
        tenant: &LiveTenant,
        identity: &Identity,
        grant: &UpstreamGrant,
    ) -> Result<String, AuthError> {
        Ok(self.mint_upstream_token(tenant, identity, grant).await?)
    }
}
