//! What the OpenID Provider asks of a registered client (an OAuthClient of the tenant):
//! whether a redirect URI is registered, which grants and scopes it may use, whether it must
//! prove PKCE and ask for consent, and how it authenticates at the token endpoint.

use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService};
use keygate_core::crypto::{constant_time_eq, sha256};
use keygate_core::store::{ClientAuthMethod, ClientType, ConsentMode, OAuthClient};
use std::time::Duration;

pub use keygate_core::store::GrantType;

/// Where a request carried its client credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresentedAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// Only `client_id`: a public client.
    None,
}

/// The client credentials an endpoint was given.
#[derive(Clone)]
pub struct ClientCredentials {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`, for confidential clients.
    pub secret: Option<String>,
    /// Where they came from.
    pub method: PresentedAuth,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// A registered client as the OpenID Provider uses it (read from its OAuthClient row).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RelyingParty {
    /// The stored client.
    pub record: OAuthClient,
    /// `client_id`.
    pub client_id: String,
    /// Confidential (has a secret) or public (must use PKCE).
    pub confidential: bool,
    /// Whether a person must approve the client's scopes once.
    pub consent_required: bool,
}

impl RelyingParty {
    fn of(record: OAuthClient) -> Self {
        Self {
            client_id: record.client_id.clone(),
            confidential: record.client_type == ClientType::Confidential,
            consent_required: record.consent == ConsentMode::Required,
            record,
        }
    }

    /// Whether the client may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.record.allows_grant(grant)
    }

    /// Whether `uri` is one of the registered redirect URIs (exact; loopback any port).
    pub fn redirect_uri_registered(&self, uri: &str) -> bool {
        self.record.redirect_uri_allowed(uri)
    }

    /// Whether `uri` is a registered post-logout redirect URI.
    pub fn post_logout_uri_registered(&self, uri: &str) -> bool {
        self.record.post_logout_uri_allowed(uri)
    }

    /// The scopes it may ask for.
    pub fn allowed_scopes(&self) -> &[String] {
        &self.record.allowed_scopes
    }

    /// The scope granted to a request for `asked` (space-separated; `openid` when absent):
    /// the asked scopes in order without repeats, each one the client is allowed, else
    /// `InvalidScope`.
    pub fn scope_for(&self, asked: Option<&str>) -> Result<String, IdentityError> {
        let asked = asked.map(str::trim).filter(|s| !s.is_empty());
        let asked = asked.unwrap_or(super::scopes::DEFAULT_SCOPE);
        let mut granted: Vec<&str> = Vec::new();
        for s in asked.split(' ').filter(|s| !s.is_empty()) {
            if !self.record.allows_scopes([s]) {
                return Err(IdentityError::InvalidScope);
            }
            if !granted.contains(&s) {
                granted.push(s);
            }
        }
        Ok(granted.join(" "))
    }

    /// Access-token lifetime for this client's tokens.
    pub fn access_token_ttl(&self, t: &LiveTenant) -> Duration {
        self.record
            .lifetimes
            .access_token
            .unwrap_or_else(|| t.settings.access_token_ttl())
    }

    /// The `aud` of this client's access tokens: the tenant's, plus the client's own.
    pub fn audience(&self, t: &LiveTenant) -> Vec<String> {
        let mut aud = t.audience.clone();
        for a in &self.record.audience {
            if !aud.contains(a) {
                aud.push(a.clone());
            }
        }
        aud
    }
}

impl IdentityService {
    /// The registered client `client_id` of tenant `t`, if there is one.
    pub(crate) async fn relying_party(
        &self,
        t: &LiveTenant,
        client_id: &str,
    ) -> Result<Option<RelyingParty>, IdentityError> {
        if client_id.is_empty() || client_id.len() > 256 {
            return Ok(None);
        }
        let record = self.deps().store.oauth_client(t.row.id, client_id).await?;
        Ok(record.map(RelyingParty::of))
    }

    /// The client that `credentials` prove: a confidential client by its secret (by the
    /// method it registered), a public one by its id alone. Every failure is
    /// `InvalidClient`, the same answer whether the client exists or not.
    pub(crate) async fn authenticate_relying_party(
        &self,
        t: &LiveTenant,
        credentials: &ClientCredentials,
    ) -> Result<RelyingParty, IdentityError> {
        let client = self.relying_party(t, &credentials.client_id).await?;
        let Some(client) = client else {
            return Err(IdentityError::InvalidClient);
        };
        let method = client.record.token_endpoint_auth_method;
        let secret = match (method, credentials.method, credentials.secret.as_deref()) {
            (ClientAuthMethod::None, PresentedAuth::None, None) => return Ok(client),
            (ClientAuthMethod::ClientSecretBasic, PresentedAuth::Basic, Some(s))
            | (ClientAuthMethod::ClientSecretPost, PresentedAuth::Post, Some(s)) => s,
            _ => return Err(IdentityError::InvalidClient),
        };
        let presented = sha256(secret.as_bytes());
        let now = self.now();
        let secrets = self
            .deps()
            .store
            .client_secrets(t.row.id, client.record.id)
            .await?;
        // Every usable secret is compared, so the time taken does not say which matched.
        let matched = secrets
            .iter()
            .filter(|s| s.is_usable(now))
            .fold(false, |m, s| constant_time_eq(&s.hash, &presented) | m);
        if matched && client.confidential {
            Ok(client)
        } else {
            Err(IdentityError::InvalidClient)
        }
    }
}

impl IdentityService {
    /// `grant_type=refresh_token` from the client `credentials` name: keygate's built-in
    /// client by its id alone (as before), a registered client authenticated as at every
    /// grant and allowed the refresh grant. Without credentials the grant is refused
    /// (`InvalidGrant`: the refresh token is bound to its client).
    pub async fn refresh_for_client(
        &self,
        tenant: &str,
        refresh_token: &str,
        scope: Option<&str>,
        credentials: Option<&ClientCredentials>,
        meta: &super::RequestMeta,
    ) -> Result<super::TokenSet, IdentityError> {
        let Some(credentials) = credentials else {
            return self.refresh(tenant, refresh_token, scope, None, meta).await;
        };
        // A registered client proves itself; any other `client_id` simply does not match
        // the session's client, so the grant is refused and the token left unspent.
        let t = self.tenant(tenant).await?;
        if self
            .relying_party(&t, &credentials.client_id)
            .await?
            .is_some()
        {
            let client = self.authenticate_relying_party(&t, credentials).await?;
            if !client.allows(GrantType::RefreshToken) {
                return Err(IdentityError::UnauthorizedClient);
            }
        }
        self.refresh(
            tenant,
            refresh_token,
            scope,
            Some(&credentials.client_id),
            meta,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::ids::{OAuthClientId, TenantId};
    use keygate_core::store::ClientLifetimes;

    fn client() -> RelyingParty {
        RelyingParty::of(OAuthClient {
            id: OAuthClientId::new(),
            tenant_id: TenantId::new(),
            owner_uid: "uid".into(),
            client_id: "grafana".into(),
            display_name: "Grafana".into(),
            client_type: ClientType::Confidential,
            token_endpoint_auth_method: ClientAuthMethod::ClientSecretBasic,
            redirect_uris: vec!["https://grafana.example.com/login/generic_oauth".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            allowed_scopes: vec!["openid".into(), "email".into(), "groups".into()],
            audience: vec![],
            consent: ConsentMode::Implicit,
            lifetimes: ClientLifetimes::default(),
            generation: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        })
    }

    #[test]
    fn scopes_come_from_the_allow_list_only() {
        let c = client();
        assert_eq!(c.scope_for(None).ok().as_deref(), Some("openid"));
        assert_eq!(
            c.scope_for(Some("openid email openid groups"))
                .ok()
                .as_deref(),
            Some("openid email groups")
        );
        assert!(matches!(
            c.scope_for(Some("openid profile")),
            Err(IdentityError::InvalidScope)
        ));
    }
}
