//! Tenants as the identity service sees them: the row plus its settings and issuer,
//! cached for a few seconds so token checks stay off the database.

use super::IdentityError;
use crate::loading_cache::LoadingCache;
use keygate_core::store::{Store, Tenant};
use keygate_core::tenant_settings::TenantSettings;
use std::sync::Arc;
use std::time::Duration;

/// How long a loaded tenant is reused; spec changes reach every replica within this.
const TTL: Duration = Duration::from_secs(5);

/// A live tenant with its policies.
#[derive(Debug)]
pub(crate) struct TenantCtx {
    /// The stored row.
    pub row: Tenant,
    /// The tenant's settings (policies, lifetimes, audience), as the store read them.
    pub spec: TenantSettings,
    /// `{public_url}/t/{name}`.
    pub issuer: String,
    /// `aud` of access tokens: the spec's audience, or the issuer.
    pub audience: Vec<String>,
}

impl TenantCtx {
    /// Builds the context of `row` (the store already refused settings it cannot use).
    pub fn new(row: Tenant, public_url: &str) -> Self {
        let spec = row.settings.clone();
        let issuer = format!("{public_url}/t/{}", row.name);
        let audience = if spec.tokens.audience.is_empty() {
            vec![issuer.clone()]
        } else {
            spec.tokens.audience.clone()
        };
        Self {
            row,
            spec,
            issuer,
            audience,
        }
    }
}

/// Cache of live tenants by name (`None`: absent or disabled); on expiry one caller per
/// replica reloads while the others use the previous answer.
#[derive(Debug)]
pub(crate) struct TenantCache {
    entries: LoadingCache<Option<Arc<TenantCtx>>>,
}

impl Default for TenantCache {
    fn default() -> Self {
        Self {
            entries: LoadingCache::new(TTL, 10_000),
        }
    }
}

impl TenantCache {
    /// The live tenant called `name`.
    pub async fn get(
        &self,
        store: &dyn Store,
        public_url: &str,
        name: &str,
    ) -> Result<Arc<TenantCtx>, IdentityError> {
        if name.is_empty() || name.len() > 63 {
            return Err(IdentityError::TenantNotFound);
        }
        self.entries
            .get(name, || async {
                Ok::<_, IdentityError>(match store.tenant_by_name(name).await? {
                    Some(row) if !row.disabled => Some(Arc::new(TenantCtx::new(row, public_url))),
                    _ => None,
                })
            })
            .await?
            .ok_or(IdentityError::TenantNotFound)
    }

    /// The context of a row the caller already holds (forward-auth passes rows).
    pub async fn for_row(
        &self,
        store: &dyn Store,
        public_url: &str,
        row: &Tenant,
    ) -> Result<Arc<TenantCtx>, IdentityError> {
        let ctx = self.get(store, public_url, &row.name).await?;
        if ctx.row.id != row.id {
            return Err(IdentityError::TenantNotFound);
        }
        Ok(ctx)
    }
}
