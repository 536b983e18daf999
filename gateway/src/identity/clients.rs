//! The one door to a tenant's registered clients: every `client_id` keygate accepts (at
//! `/login`, `/authorize`, `/oauth2/token`) is looked up here, and every client that
//! authenticates (a secret in HTTP Basic or the form, or none for a public client) is
//! checked here. The tenant's built-in first-party client `keygate` (its own pages and JSON
//! sign-in) is always registered; any other id must name an OAuthClient of the tenant.
//!
//! Registrations are cached per tenant and id for [`TTL`] like tenants. Secrets are read
//! from the store at every authentication (one indexed query), so a new secret works, a
//! revoked one stops and a rotated-out one ends with its grace at once on every replica.

use super::loading_cache::LoadingCache;
use super::scopes::DEFAULT_CLIENT_ID;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService};
use keygate_core::crypto::{constant_time_eq, sha256};
use keygate_core::store::{
    ClientAuthMethod, ClientSecretRecord, ClientType, GrantType, OAuthClient, Store,
};
use std::sync::Arc;
use std::time::Duration;

/// How long a loaded client is reused; spec changes reach every replica within this.
const TTL: Duration = Duration::from_secs(5);
/// Longest `client_id` looked up (the CRD caps names at 128).
const MAX_CLIENT_ID_BYTES: usize = 128;
/// Longest client secret looked at (generated ones are ~70 bytes).
const MAX_SECRET_BYTES: usize = 256;

/// A client of one tenant that keygate knows: its built-in first-party client, or an
/// OAuthClient. Only this module makes one, so holding one means the id was checked.
#[derive(Clone, Debug)]
pub struct RegisteredClient {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    FirstParty,
    Registered(Arc<OAuthClient>),
}

impl RegisteredClient {
    fn first_party() -> Self {
        Self {
            kind: Kind::FirstParty,
        }
    }

    /// The `client_id` tokens are issued to.
    pub fn client_id(&self) -> &str {
        match &self.kind {
            Kind::FirstParty => DEFAULT_CLIENT_ID,
            Kind::Registered(c) => &c.client_id,
        }
    }

    /// The OAuthClient's registration; `None` for the built-in first-party client.
    pub fn registration(&self) -> Option<&OAuthClient> {
        match &self.kind {
            Kind::FirstParty => None,
            Kind::Registered(c) => Some(c),
        }
    }

    /// Whether this is the tenant's built-in client (keygate's own pages and JSON sign-in).
    pub fn is_first_party(&self) -> bool {
        matches!(self.kind, Kind::FirstParty)
    }

    /// Whether the client may use `grant`. The first-party client signs people in through
    /// keygate's own endpoints and refreshes; it has no other grant.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        match &self.kind {
            Kind::FirstParty => grant == GrantType::RefreshToken,
            Kind::Registered(c) => c.allows_grant(grant),
        }
    }

    /// Refuses with `InvalidScope` a scope list (space-separated) with a scope outside the
    /// client's `allowedScopes`. The first-party client may ask for any scope; what a person
    /// is granted is further limited to standard scopes and permissions they hold.
    pub fn check_scopes(&self, asked: Option<&str>) -> Result<(), IdentityError> {
        let Kind::Registered(c) = &self.kind else {
            return Ok(());
        };
        if asked.is_some_and(|asked| !c.allows_scopes(asked.split_whitespace())) {
            return Err(IdentityError::InvalidScope);
        }
        Ok(())
    }
}

/// A client that proved who it is at the token endpoint (or, being public, named itself):
/// what [`IdentityService::authenticate_client`] answers, and what grants that need an
/// authenticated client take.
#[derive(Clone, Debug)]
pub struct AuthenticatedClient(RegisteredClient);

impl std::ops::Deref for AuthenticatedClient {
    type Target = RegisteredClient;

    fn deref(&self) -> &RegisteredClient {
        &self.0
    }
}

/// What a token request presented to authenticate its client (RFC 6749 §2.3), already
/// decoded by the route: HTTP Basic's user and password (form-urlencoded-decoded), and the
/// form's `client_id` and `client_secret`.
#[derive(Clone, Default)]
pub struct ClientCredentials {
    /// `Authorization: Basic` user and password, decoded.
    pub basic: Option<(String, String)>,
    /// The form's `client_id`.
    pub client_id: Option<String>,
    /// The form's `client_secret`.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("basic", &self.basic.as_ref().map(|(id, _)| id))
            .finish_non_exhaustive()
    }
}

/// Registered clients by tenant and id (`None`: no such client), for [`TTL`].
pub(super) struct ClientCache {
    entries: LoadingCache<Option<Arc<OAuthClient>>>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache").finish_non_exhaustive()
    }
}

impl Default for ClientCache {
    fn default() -> Self {
        Self {
            entries: LoadingCache::new(TTL, 10_000),
        }
    }
}

impl ClientCache {
    async fn get(
        &self,
        store: &dyn Store,
        t: &LiveTenant,
        client_id: &str,
    ) -> Result<Option<Arc<OAuthClient>>, IdentityError> {
        self.entries
            .get_through_outage(
                &format!("{}/{client_id}", t.row.id),
                || async {
                    Ok::<_, IdentityError>(
                        store.oauth_client(t.row.id, client_id).await?.map(Arc::new),
                    )
                },
                IdentityError::is_unavailable,
            )
            .await
    }
}

/// Whether `secret` is one of `secrets` usable now, compared as SHA-256 in constant time.
fn secret_matches(
    secrets: &[ClientSecretRecord],
    secret: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let presented = sha256(secret.as_bytes());
    // Every usable hash is compared, so the time taken does not tell which one matched.
    secrets
        .iter()
        .filter(|s| s.is_usable(now))
        .fold(false, |found, s| {
            constant_time_eq(&presented, &s.hash) | found
        })
}

impl IdentityService {
    /// The registered client `client_id` of `tenant`: the built-in `keygate` when absent or
    /// blank, an OAuthClient otherwise. An id naming nothing is `InvalidClient`.
    pub async fn client(
        &self,
        tenant: &str,
        client_id: Option<&str>,
    ) -> Result<RegisteredClient, IdentityError> {
        let t = self.tenant(tenant).await?;
        self.registered_client(&t, client_id).await
    }

    /// [`IdentityService::client`] for a tenant already loaded.
    pub(super) async fn registered_client(
        &self,
        t: &LiveTenant,
        client_id: Option<&str>,
    ) -> Result<RegisteredClient, IdentityError> {
        let Some(id) = client_id.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(RegisteredClient::first_party());
        };
        if id == DEFAULT_CLIENT_ID {
            return Ok(RegisteredClient::first_party());
        }
        if id.len() > MAX_CLIENT_ID_BYTES {
            return Err(IdentityError::InvalidClient);
        }
        match self
            .inner
            .clients
            .get(self.deps().store.as_ref(), t, id)
            .await?
        {
            Some(client) => Ok(RegisteredClient {
                kind: Kind::Registered(client),
            }),
            None => Err(IdentityError::InvalidClient),
        }
    }

    /// Authenticates the client of a token request (RFC 6749 §2.3): a confidential client by
    /// its secret in the way it registered (`client_secret_basic` or `client_secret_post`),
    /// a public client (and the first-party `keygate`) by its `client_id` alone, never with
    /// a secret. Anything else — an unknown client, a wrong or missing secret, a secret sent
    /// the other way, two ways at once, ids that disagree — is `InvalidClient` (401).
    pub async fn authenticate_client(
        &self,
        tenant: &str,
        presented: &ClientCredentials,
    ) -> Result<AuthenticatedClient, IdentityError> {
        let t = self.tenant(tenant).await?;
        self.authenticate_client_of(&t, presented).await
    }

    /// [`IdentityService::authenticate_client`] for a tenant already loaded.
    pub(super) async fn authenticate_client_of(
        &self,
        t: &LiveTenant,
        presented: &ClientCredentials,
    ) -> Result<AuthenticatedClient, IdentityError> {
        let form_id = presented.client_id.as_deref().filter(|c| !c.is_empty());
        let form_secret = presented.client_secret.as_deref().filter(|s| !s.is_empty());
        let (client_id, secret, method) = match (&presented.basic, form_secret) {
            (Some(_), Some(_)) => return Err(IdentityError::InvalidClient),
            (Some((id, secret)), None) => {
                if form_id.is_some_and(|f| f != id) {
                    return Err(IdentityError::InvalidClient);
                }
                (
                    id.as_str(),
                    Some(secret.as_str()),
                    ClientAuthMethod::ClientSecretBasic,
                )
            }
            (None, Some(secret)) => (
                form_id.ok_or(IdentityError::InvalidClient)?,
                Some(secret),
                ClientAuthMethod::ClientSecretPost,
            ),
            (None, None) => (
                form_id.ok_or(IdentityError::InvalidClient)?,
                None,
                ClientAuthMethod::None,
            ),
        };
        if secret.is_some_and(|s| s.len() > MAX_SECRET_BYTES) {
            return Err(IdentityError::InvalidClient);
        }
        let client = self.registered_client(t, Some(client_id)).await?;
        let Some(registration) = client.registration() else {
            // The first-party client has no secret to present.
            return match method {
                ClientAuthMethod::None => Ok(AuthenticatedClient(client)),
                _ => Err(IdentityError::InvalidClient),
            };
        };
        if registration.token_endpoint_auth_method != method {
            return Err(IdentityError::InvalidClient);
        }
        let Some(secret) = secret else {
            // `none`: only a public client registers it (the CRD refuses it otherwise).
            return match registration.client_type {
                ClientType::Public => Ok(AuthenticatedClient(client)),
                ClientType::Confidential => Err(IdentityError::InvalidClient),
            };
        };
        let secrets = self
            .deps()
            .store
            .client_secrets(t.row.id, registration.id)
            .await?;
        if secret_matches(&secrets, secret, self.now()) {
            Ok(AuthenticatedClient(client))
        } else {
            Err(IdentityError::InvalidClient)
        }
    }
}
