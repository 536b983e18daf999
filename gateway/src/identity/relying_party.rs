//! What the OpenID Provider asks of a registered client (an OAuthClient of the tenant):
//! whether a redirect URI is registered, which grants and scopes it may use, whether it must
//! prove PKCE and ask for consent, and how it authenticates at the token endpoint.

pub use super::clients::ClientCredentials;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService};
use keygate_core::store::{ClientType, ConsentMode, OAuthClient};
use std::time::Duration;

pub use keygate_core::store::GrantType;

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

    /// Access-token lifetime for this client's tokens ([`access_token_ttl`]).
    pub fn access_token_ttl(&self, t: &LiveTenant) -> Duration {
        access_token_ttl(t, Some(&self.record))
    }

    /// The `aud` of this client's access tokens ([`audience`]).
    pub fn audience(&self, t: &LiveTenant) -> Vec<String> {
        audience(t, Some(&self.record))
    }
}

// The rules below are the one place a registered client's overrides are read, so a token
// minted by a refresh follows the same ones as the grant that opened its family. `None` is
// keygate's built-in client, which has the tenant's.

/// Access-token lifetime for a client's tokens: its own when shorter than the tenant's,
/// never longer (revocations are remembered for the tenant's lifetime only).
pub(super) fn access_token_ttl(t: &LiveTenant, client: Option<&OAuthClient>) -> Duration {
    let tenant = t.settings.access_token_ttl();
    client
        .and_then(|c| c.lifetimes.access_token)
        .map_or(tenant, |own| own.min(tenant))
}

/// The `aud` of a client's access tokens: the tenant's, plus the client's own.
pub(super) fn audience(t: &LiveTenant, client: Option<&OAuthClient>) -> Vec<String> {
    let mut aud = t.audience.clone();
    for a in client.map(|c| c.audience.as_slice()).unwrap_or_default() {
        if !aud.contains(a) {
            aud.push(a.clone());
        }
    }
    aud
}

/// Absolute lifetime of a client's refresh tokens (its session): its own when shorter than
/// the tenant's refresh lifetime, never longer.
pub(super) fn refresh_absolute_ttl(t: &LiveTenant, client: Option<&OAuthClient>) -> Duration {
    let tenant = t.settings.refresh_absolute_ttl();
    client
        .and_then(|c| c.lifetimes.refresh_token)
        .map_or(tenant, |own| own.min(tenant))
}

impl IdentityService {
    /// The registered client `client_id` of tenant `t`, if there is one (keygate's
    /// built-in client is none: it has no redirect URIs or grants of its own).
    pub(crate) async fn relying_party(
        &self,
        t: &LiveTenant,
        client_id: &str,
    ) -> Result<Option<RelyingParty>, IdentityError> {
        if client_id.is_empty() {
            return Ok(None);
        }
        match self.registered_client(t, Some(client_id)).await {
            Ok(c) => Ok(c.registration().cloned().map(RelyingParty::of)),
            Err(IdentityError::InvalidClient) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The registered client that `credentials` prove ([`IdentityService::authenticate_client`]:
    /// by its registered method, secrets compared in constant time); the built-in client and
    /// every failure are `InvalidClient`.
    pub(crate) async fn authenticate_relying_party(
        &self,
        t: &LiveTenant,
        credentials: &ClientCredentials,
    ) -> Result<RelyingParty, IdentityError> {
        let client = self.authenticate_client_of(t, credentials).await?;
        client
            .registration()
            .cloned()
            .map(RelyingParty::of)
            .ok_or(IdentityError::InvalidClient)
    }
}

impl IdentityService {
    /// `grant_type=refresh_token` with the client credentials the request presented: a
    /// client that sent a secret authenticates and refreshes through
    /// [`IdentityService::refresh_for`]; otherwise the `client_id` alone, as
    /// [`IdentityService::refresh`] takes it (public and built-in clients). Without
    /// credentials the grant is refused (`InvalidGrant`: the token is bound to its client).
    pub async fn refresh_for_client(
        &self,
        tenant: &str,
        refresh_token: &str,
        scope: Option<&str>,
        credentials: Option<&ClientCredentials>,
        meta: &super::RequestMeta,
    ) -> Result<super::TokenSet, IdentityError> {
        // A registered client's refreshes count against the OAuth budgets like its other
        // token requests. Keygate's own client is not counted: its refreshes are people's
        // JSON sign-in sessions, which a whole organisation behind one address shares.
        let named = credentials.and_then(|c| {
            c.basic
                .as_ref()
                .map(|(id, _)| id.as_str())
                .or(c.client_id.as_deref())
        });
        if let Some(client_id) =
            named.filter(|c| !c.is_empty() && *c != super::scopes::DEFAULT_CLIENT_ID)
        {
            let t = self.tenant(tenant).await?;
            self.limit_oauth(&t, client_id, meta).await?;
        }
        match credentials {
            Some(c) if c.basic.is_some() || c.client_secret.is_some() => {
                let client = self.authenticate_client(tenant, c).await?;
                self.refresh_for(tenant, refresh_token, scope, &client, meta)
                    .await
            }
            Some(c) => {
                self.refresh(tenant, refresh_token, scope, c.client_id.as_deref(), meta)
                    .await
            }
            None => self.refresh(tenant, refresh_token, scope, None, meta).await,
        }
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
            token_endpoint_auth_method: keygate_core::store::ClientAuthMethod::ClientSecretBasic,
            redirect_uris: vec!["https://grafana.example.com/login/generic_oauth".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            allowed_scopes: vec!["openid".into(), "email".into(), "groups".into()],
            audience: vec![],
            consent: ConsentMode::Implicit,
            lifetimes: ClientLifetimes::default(),
            id_token_signed_response_alg: None,
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
