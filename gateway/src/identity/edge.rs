//! The identity service behind forward-auth ([`CredentialResolver`]) and the sign-in pages
//! ([`AccountFlows`]): adapters from their small interfaces to the service's methods.

use super::tokens::{self, AccessClaims};
use super::{
    Credential, IdentityError, IdentityService, PasswordSignIn, Principal, RequestMeta, SignUp,
};
use crate::forward_auth::decision::{CredentialKind, Identity};
use crate::forward_auth::resolver::{CredentialResolver, ResolveError};
use crate::pages::{AccountFlows, FlowError, SignInAttempt, SignedIn};
use async_trait::async_trait;
use keygate_core::store::Tenant;

/// Lifetime of the JWT handed to upstreams (`jwt=1`).
const UPSTREAM_TOKEN_TTL: chrono::Duration = chrono::Duration::seconds(60);

impl From<IdentityError> for ResolveError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Unavailable(_)
            | IdentityError::Store(_)
            | IdentityError::Crypto(_)
            | IdentityError::Internal(_) => {
                tracing::warn!(error = %e, "credential resolution failed");
                ResolveError::Unavailable
            }
            _ => ResolveError::Invalid,
        }
    }
}

impl From<IdentityError> for FlowError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidCredentials
            | IdentityError::TenantNotFound
            | IdentityError::InvalidRequest(_) => FlowError::InvalidCredentials,
            IdentityError::AccountLocked { .. } | IdentityError::RateLimited { .. } => {
                FlowError::Locked
            }
            IdentityError::EmailNotVerified => FlowError::EmailNotVerified,
            IdentityError::RegistrationClosed
            | IdentityError::InviteRequired
            | IdentityError::PasswordSignInDisabled => FlowError::RegistrationClosed,
            IdentityError::PasswordPolicy(reason) => FlowError::PasswordRejected(reason),
            IdentityError::PasswordBreached => FlowError::PasswordRejected(
                "this password appears in lists of breached passwords".into(),
            ),
            IdentityError::PasswordReused => {
                FlowError::PasswordRejected("this password was used recently".into())
            }
            IdentityError::PasswordChangeRequired => FlowError::PasswordRejected(
                "this account must set a new password: use the reset link".into(),
            ),
            IdentityError::InvalidLink
            | IdentityError::InvalidToken
            | IdentityError::InvalidGrant
            | IdentityError::InvalidScope => FlowError::InvalidLink,
            IdentityError::AccountSuspended
            | IdentityError::Forbidden
            | IdentityError::NotFound
            | IdentityError::WrongCurrentPassword => FlowError::InvalidCredentials,
            IdentityError::Unavailable(_)
            | IdentityError::Store(_)
            | IdentityError::Crypto(_)
            | IdentityError::Internal(_) => {
                tracing::error!(error = %e, "account workflow failed");
                FlowError::Unavailable
            }
        }
    }
}

fn identity(p: Principal, now: chrono::DateTime<chrono::Utc>) -> Identity {
    let subject = p.subject();
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
    let username = match (&p.email, &p.credential) {
        (Some(email), _) => email.clone(),
        (None, Credential::ApiKey { name, .. }) => name.clone(),
        (None, _) => subject.clone(),
    };
    Identity {
        tenant_id: p.tenant_id,
        tenant: p.tenant.clone(),
        subject,
        username,
        email: p.email.clone(),
        amr: p.amr().to_vec(),
        acr: p.acr().map(str::to_owned),
        auth_time: p.auth_time(),
        roles: p.roles,
        permissions: p.permissions,
        scopes: p.scopes,
        kind,
        revocation_ids,
        expires_at,
        api_key,
    }
}

#[async_trait]
impl CredentialResolver for IdentityService {
    async fn access_token(&self, tenant: &Tenant, token: &str) -> Result<Identity, ResolveError> {
        let t = self.tenant_of_row(tenant).await?;
        Ok(identity(
            self.access_token_principal(&t, token).await?,
            self.now(),
        ))
    }

    async fn api_key(&self, tenant: &Tenant, key: &str) -> Result<Identity, ResolveError> {
        let t = self.tenant_of_row(tenant).await?;
        Ok(identity(self.api_key_principal(&t, key).await?, self.now()))
    }

    async fn session(&self, tenant: &Tenant, cookie_value: &str) -> Result<Identity, ResolveError> {
        let t = self.tenant_of_row(tenant).await?;
        Ok(identity(
            self.session_principal(&t, cookie_value).await?,
            self.now(),
        ))
    }

    async fn upstream_token(
        &self,
        tenant: &Tenant,
        identity: &Identity,
    ) -> Result<String, ResolveError> {
        let t = self.tenant_of_row(tenant).await?;
        let now = self.now();
        let sid = match identity.kind {
            CredentialKind::ApiKey => None,
            _ => identity
                .revocation_ids
                .iter()
                .find(|id| id.parse::<keygate_core::ids::SessionId>().is_ok())
                .cloned(),
        };
        let claims = AccessClaims {
            iss: t.issuer.clone(),
            sub: identity.subject.clone(),
            aud: t.audience.clone(),
            exp: (now + UPSTREAM_TOKEN_TTL)
                .min(identity.expires_at)
                .timestamp(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: uuid::Uuid::now_v7().to_string(),
            client_id: "keygate-forward-auth".into(),
            sid,
            tenant: t.row.name.clone(),
            roles: identity.roles.clone(),
            permissions: identity.permissions.clone(),
            scope: identity.scopes.join(" "),
            amr: identity.amr.clone(),
            acr: identity.acr.clone(),
            auth_time: identity.auth_time.unwrap_or(now).timestamp(),
            email: identity.email.clone(),
        };
        Ok(tokens::mint(&self.inner.signer, &t, &claims).await?)
    }
}

#[async_trait]
impl AccountFlows for IdentityService {
    async fn sign_in(
        &self,
        tenant: &Tenant,
        attempt: &SignInAttempt,
        meta: &RequestMeta,
    ) -> Result<SignedIn, FlowError> {
        let req = PasswordSignIn {
            email: attempt.email.clone(),
            password: attempt.password.clone(),
            browser: true,
            ..PasswordSignIn::default()
        };
        let done = IdentityService::sign_in(self, &tenant.name, req, meta).await?;
        let max_age = (done.session_expires_at - self.now())
            .to_std()
            .unwrap_or_default();
        let cookie_value = done.session_cookie.ok_or_else(|| {
            FlowError::from(IdentityError::Internal(
                "a browser sign-in opened a session without a cookie".into(),
            ))
        })?;
        Ok(SignedIn {
            cookie_value,
            max_age,
        })
    }

    async fn sign_up(
        &self,
        tenant: &Tenant,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        let req = SignUp {
            email: email.to_owned(),
            password: password.to_owned(),
            ..SignUp::default()
        };
        Ok(IdentityService::sign_up(self, &tenant.name, req, meta).await?)
    }

    async fn verify_email(
        &self,
        tenant: &Tenant,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(IdentityService::verify_email(self, &tenant.name, token, meta).await?)
    }

    async fn request_password_reset(
        &self,
        tenant: &Tenant,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(IdentityService::request_password_reset(self, &tenant.name, email, meta).await?)
    }

    async fn reset_password(
        &self,
        tenant: &Tenant,
        token: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(IdentityService::reset_password(self, &tenant.name, token, password, meta).await?)
    }

    async fn sign_out(
        &self,
        tenant: &Tenant,
        cookie_value: &str,
        meta: &RequestMeta,
    ) -> Result<(), FlowError> {
        let t = self.tenant_of_row(tenant).await?;
        let Ok(principal) = self.session_principal(&t, cookie_value).await else {
            return Ok(());
        };
        Ok(IdentityService::sign_out(self, &principal, meta).await?)
    }
}
