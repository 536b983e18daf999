//! Live providers: a provider row's settings with its client secret opened, its HTTP client
//! (CA bundle included) and, for OpenID Connect, its discovery document and keys, for SAML
//! its IdP metadata. Kept per
//! provider while the row is unchanged and for at most [`MAX_AGE`], so a rotated key set or
//! a moved endpoint is picked up; keys are refetched early when a token names an unknown
//! `kid`, at most once per [`JWKS_REFETCH_GAP`].

use super::{Federation, FederationRefusal};
use crate::identity::tenants::LiveTenant;
use crate::identity::{IdentityError, IdentityService};
use chrono::{DateTime, Utc};
use keygate_core::federation::{
    Discovered, IdpMetadata, Protocol, ProviderSettings, UpstreamHttp, discover, load_metadata,
};
use keygate_core::ids::IdpId;
use keygate_core::store::IdentityProvider;
use openidconnect::core::CoreJsonWebKeySet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a provider's discovery document and keys are used before they are read again.
const MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Shortest time between two key refetches for unknown `kid`s: a stream of tokens with
/// made-up key ids cannot turn the gateway into a load generator against the provider.
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(60);

/// The providers this replica has loaded, by row id.
#[derive(Debug, Default)]
pub(crate) struct Providers {
    options: Federation,
    live: Mutex<HashMap<IdpId, Arc<LiveProvider>>>,
}

/// One provider ready to sign people in.
pub(super) struct LiveProvider {
    /// The row's last change, to notice a new spec or secret.
    updated_at: DateTime<Utc>,
    loaded: Instant,
    /// Its settings.
    pub settings: ProviderSettings,
    /// The OAuth client secret.
    pub client_secret: Option<String>,
    /// The client for its endpoints.
    pub http: UpstreamHttp,
    /// Discovery document and keys (OpenID Connect and Google).
    discovered: Option<Mutex<(Discovered, Option<Instant>)>>,
    /// The IdP's metadata (SAML), fetched again with the rest after [`MAX_AGE`].
    pub saml: Option<IdpMetadata>,
}

impl std::fmt::Debug for LiveProvider {
    /// Leaves the client secret out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LiveProvider {
    /// The discovery document with the keys as last fetched.
    pub fn discovered(&self) -> Option<Discovered> {
        let d = self.discovered.as_ref()?;
        d.lock().ok().map(|g| g.0.clone())
    }

    /// Fetches the keys again unless that happened within [`JWKS_REFETCH_GAP`]; whether new
    /// keys were fetched.
    pub async fn refetch_keys(&self) -> bool {
        let Some(cell) = &self.discovered else {
            return false;
        };
        let uri = {
            let Ok(mut g) = cell.lock() else { return false };
            if g.1.is_some_and(|at| at.elapsed() < JWKS_REFETCH_GAP) {
                return false;
            }
            g.1 = Some(Instant::now());
            g.0.metadata.jwks_uri().clone()
        };
        match CoreJsonWebKeySet::fetch_async(&uri, &self.http).await {
            Ok(keys) => {
                if let Ok(mut g) = cell.lock() {
                    g.0.metadata = g.0.metadata.clone().set_jwks(keys);
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "refetching an identity provider's keys failed");
                false
            }
        }
    }
}

impl Providers {
    /// Providers reached as `options` says.
    pub fn new(options: Federation) -> Self {
        Self {
            options,
            live: Mutex::default(),
        }
    }

    /// How Google, GitHub and loopback issuers are reached.
    pub fn options(&self) -> &Federation {
        &self.options
    }

    fn cached(&self, row: &IdentityProvider) -> Option<Arc<LiveProvider>> {
        let map = self.live.lock().ok()?;
        map.get(&row.id)
            .filter(|p| p.updated_at == row.updated_at && p.loaded.elapsed() < MAX_AGE)
            .cloned()
    }

    fn keep(&self, id: IdpId, provider: Arc<LiveProvider>) {
        if let Ok(mut map) = self.live.lock() {
            if map.len() > 10_000 {
                map.retain(|_, p| p.loaded.elapsed() < MAX_AGE);
            }
            map.insert(id, provider);
        }
    }
}

impl IdentityService {
    /// The provider `name` of `t`, loaded (discovery and keys fetched) or from this
    /// replica's cache.
    pub(super) async fn live_provider(
        &self,
        t: &LiveTenant,
        name: &str,
    ) -> Result<(IdentityProvider, Arc<LiveProvider>), IdentityError> {
        let (row, settings) = self.provider_row(t, name).await?;
        let providers = &self.inner.providers;
        if let Some(live) = providers.cached(&row) {
            return Ok((row, live));
        }
        let unusable = |why: String| {
            tracing::warn!(provider = %row.name, tenant = %t.row.name, why, "identity provider unusable");
            IdentityError::Federation(FederationRefusal::ProviderUnusable)
        };
        let client_secret = match &row.client_secret {
            None => None,
            Some(sealed) => {
                let context = format!("idp_secret:{}", row.id);
                let open = self
                    .deps()
                    .master_keys
                    .open(sealed, &context)
                    .map_err(|e| unusable(format!("client secret: {e}")))?;
                Some(
                    String::from_utf8(open.to_vec())
                        .map_err(|_| unusable("client secret is not UTF-8".into()))?,
                )
            }
        };
        let http = UpstreamHttp::new(settings.ca_bundle.as_deref())
            .map_err(|e| unusable(e.to_string()))?;
        let options = providers.options();
        let discovered = match settings.issuer(&options.endpoints) {
            None => None,
            Some(issuer) => {
                let found = discover(&http, issuer, options.allow_loopback_http)
                    .await
                    .map_err(|e| {
                        IdentityError::Federation(FederationRefusal::Unreachable(e.to_string()))
                    })?;
                Some(Mutex::new((found, None)))
            }
        };
        let saml = match &settings.protocol {
            Protocol::Saml(p) => Some(
                load_metadata(&http, &p.metadata, options.allow_loopback_http)
                    .await
                    .map_err(|e| {
                        IdentityError::Federation(FederationRefusal::Unreachable(e.to_string()))
                    })?,
            ),
            _ => None,
        };
        let live = Arc::new(LiveProvider {
            updated_at: row.updated_at,
            loaded: Instant::now(),
            settings,
            client_secret,
            http,
            discovered,
            saml,
        });
        providers.keep(row.id, live.clone());
        Ok((row, live))
    }
}
