//! Turning presented credentials into [`Principal`]s: access tokens (no database round trip:
//! cached tenant and keys, replica-local revocation set), API keys and session cookies.

use super::tenants::LiveTenant;
use super::tokens;
use super::{Credential, IdentityError, IdentityService, Introspection, Principal, UserInfo};
use chrono::{DateTime, Utc};
use keygate_core::crypto::{constant_time_eq, sha256};
use keygate_core::ids::{SessionId, UserId};
use keygate_core::store::UserStatus;

/// Longest API key looked at.
const MAX_API_KEY_BYTES: usize = 256;

fn ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

impl IdentityService {
    /// Verifies a bearer access token of tenant `tenant` (signature against the published
    /// keys, `typ`, issuer, audience, expiry) and checks its session was not revoked.
    #[tracing::instrument(name = "identity.resolve_from_access_token", level = "debug", skip_all)]
    pub async fn resolve_from_access_token(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<Principal, IdentityError> {
        let t = self.tenant(tenant).await?;
        self.access_token_principal(&t, token).await
    }

    /// Checks an API key `kg_<prefix>_<secret>` of tenant `tenant` (SHA-256, constant time).
    #[tracing::instrument(name = "identity.resolve_from_api_key", level = "debug", skip_all)]
    pub async fn resolve_from_api_key(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Principal, IdentityError> {
        let t = self.tenant(tenant).await?;
        self.api_key_principal(&t, key).await
    }

    /// Resolves the session cookie's value (an opaque 256-bit token) of tenant `tenant`.
    #[tracing::instrument(
        name = "identity.resolve_from_session_cookie",
        level = "debug",
        skip_all
    )]
    pub async fn resolve_from_session_cookie(
        &self,
        tenant: &str,
        cookie: &str,
    ) -> Result<Principal, IdentityError> {
        let t = self.tenant(tenant).await?;
        self.session_principal(&t, cookie).await
    }

    pub(super) async fn access_token_principal(
        &self,
        t: &LiveTenant,
        token: &str,
    ) -> Result<Principal, IdentityError> {
        let claims = tokens::verify(&self.inner.signer, t, token, self.now()).await?;
        let revocations = self.deps().ephemeral.revocations();
        if revocations.contains(&claims.jti)
            || claims
                .sid
                .as_deref()
                .is_some_and(|s| revocations.contains(s))
        {
            return Err(IdentityError::RevokedToken);
        }
        let user_id: UserId = claims
            .sub
            .parse()
            .map_err(|_| IdentityError::InvalidToken)?;
        let session_id = match claims.sid.as_deref() {
            Some(s) => Some(
                s.parse::<SessionId>()
                    .map_err(|_| IdentityError::InvalidToken)?,
            ),
            None => None,
        };
        Ok(Principal {
            tenant_id: t.row.id,
            tenant: t.row.name.clone(),
            user_id: Some(user_id),
            email: claims.email,
            // A token minted before the claim existed counts as unverified.
            email_verified: claims.email_verified.unwrap_or(false),
            active: true,
            roles: claims.roles,
            permissions: claims.permissions,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
            credential: Credential::AccessToken {
                jti: claims.jti,
                session_id,
                client_id: claims.client_id,
                amr: claims.amr,
                acr: claims.acr,
                auth_time: ts(claims.auth_time),
                expires_at: ts(claims.exp),
            },
        })
    }

    pub(super) async fn api_key_principal(
        &self,
        t: &LiveTenant,
        key: &str,
    ) -> Result<Principal, IdentityError> {
        if key.len() > MAX_API_KEY_BYTES {
            return Err(IdentityError::InvalidToken);
        }
        let (prefix, _secret) = key
            .strip_prefix("kg_")
            .and_then(|rest| rest.split_once('_'))
            .ok_or(IdentityError::InvalidToken)?;
        let d = self.deps();
        let record = d
            .store
            .api_key_by_prefix(t.row.id, prefix)
            .await?
            .ok_or(IdentityError::InvalidToken)?;
        if !constant_time_eq(&sha256(key.as_bytes()), &record.hash) {
            return Err(IdentityError::InvalidToken);
        }
        // Past here the caller holds this tenant's real key: naming why it stopped working
        // tells them nothing they could not see in the ApiKey's status.
        if record.revoked_at.is_some() {
            return Err(IdentityError::RevokedToken);
        }
        if !record.is_usable(self.now()) {
            return Err(IdentityError::ExpiredToken);
        }
        if d.ephemeral.revocations().contains(&record.id.to_string()) {
            return Err(IdentityError::RevokedToken);
        }
        let grants = d.store.roles_by_names(t.row.id, &record.roles).await?;
        let mut permissions: Vec<String> = grants
            .iter()
            .flat_map(|g| g.permissions.iter().cloned())
            .chain(record.permissions.iter().cloned())
            .collect();
        permissions.sort();
        permissions.dedup();
        Ok(Principal {
            tenant_id: t.row.id,
            tenant: t.row.name.clone(),
            user_id: None,
            email: None,
            email_verified: false,
            active: true,
            roles: grants.iter().map(|g| g.name.clone()).collect(),
            permissions,
            scopes: record.scopes.clone(),
            credential: Credential::ApiKey {
                key_id: record.id,
                name: record.name.clone(),
                // A rotated-out key ends with its grace period: forward-auth caches the
                // proven key no longer than this.
                expires_at: record.usable_until(),
            },
        })
    }

    /// OpenID Connect userinfo of the calling person (API keys have none).
    pub async fn userinfo(&self, caller: &Principal) -> Result<UserInfo, IdentityError> {
        let user_id = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let user = self
            .deps()
            .store
            .user(caller.tenant_id, user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(IdentityError::InvalidToken)?;
        let own = match &caller.credential {
            Credential::AccessToken { client_id, .. } => {
                client_id == super::scopes::DEFAULT_CLIENT_ID
            }
            _ => true,
        };
        if !own {
            let released = |s: &str| caller.has_scope(s);
            return Ok(UserInfo {
                sub: user.id.to_string(),
                email: released("email").then(|| user.email.clone()),
                email_verified: released("email").then_some(user.email_verified),
                name: released("profile").then(|| user.display_name.clone()),
                groups: released("groups").then(|| user.groups.clone()),
                roles: None,
                tenant: None,
            });
        }
        Ok(UserInfo {
            sub: user.id.to_string(),
            email: Some(user.email),
            email_verified: Some(user.email_verified),
            name: Some(user.display_name),
            groups: Some(user.groups),
            roles: Some(caller.roles.clone()),
            tenant: Some(caller.tenant.clone()),
        })
    }

    /// RFC 7662 introspection of an access or refresh token of the caller's tenant. Only
    /// admins and API keys may introspect others' tokens; a person may introspect their own.
    #[tracing::instrument(name = "identity.introspect", level = "debug", skip_all)]
    pub async fn introspect(
        &self,
        caller: &Principal,
        token: &str,
        hint: Option<&str>,
    ) -> Result<Introspection, IdentityError> {
        let t = self.tenant(&caller.tenant).await?;
        let privileged = caller.is_admin() || caller.is_api_key();
        let inactive = Introspection::default();
        if hint != Some("refresh_token")
            && let Ok(p) = self.access_token_principal(&t, token).await
        {
            if !privileged && p.user_id != caller.user_id {
                return Ok(inactive);
            }
            let claims = tokens::verify(&self.inner.signer, &t, token, self.now()).await?;
            return Ok(Introspection {
                active: true,
                token_type: Some("access_token".into()),
                sub: Some(claims.sub),
                client_id: Some(claims.client_id),
                scope: Some(claims.scope),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                iss: Some(claims.iss),
                sid: claims.sid,
                jti: Some(claims.jti),
            });
        }
        if token.len() > 512 {
            return Ok(inactive);
        }
        let d = self.deps();
        let now = self.now();
        let Some(record) = d
            .store
            .refresh_token(t.row.id, &sha256(token.as_bytes()))
            .await?
        else {
            return Ok(inactive);
        };
        if record.rotated_at.is_some() || record.expires_at <= now {
            return Ok(inactive);
        }
        let Some(session) = d
            .store
            .session(t.row.id, record.session_id)
            .await?
            .filter(|s| s.is_active(now))
        else {
            return Ok(inactive);
        };
        if !privileged && Some(session.user_id) != caller.user_id {
            return Ok(inactive);
        }
        Ok(Introspection {
            active: true,
            token_type: Some("refresh_token".into()),
            sub: Some(session.user_id.to_string()),
            client_id: Some(session.client_id),
            scope: Some(session.scope),
            exp: Some(record.expires_at.timestamp()),
            iat: Some(record.issued_at.timestamp()),
            iss: Some(t.issuer.clone()),
            sid: Some(session.id.to_string()),
            jti: None,
        })
    }
}
