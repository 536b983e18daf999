//! Tenants as every part of the gateway sees them: the row plus its settings and issuer,
//! cached for a few seconds so token checks, forward-auth, the pages and discovery stay off
//! the database. This is the one tenant cache of the gateway.

use super::IdentityError;
use super::loading_cache::LoadingCache;
use keygate_core::store::{Store, Tenant};
use keygate_core::tenant_settings::TenantSettings;
use std::sync::Arc;
use std::time::Duration;

/// How long a loaded tenant is reused; spec changes reach every replica within this.
const TTL: Duration = Duration::from_secs(5);

/// Whether `name` is spelled as a tenant name can be: a DNS label (RFC 1123; the Tenant CRD
/// enforces it on `metadata.name`), at most 63 lower-case letters, digits or `-`, starting
/// and ending with a letter or digit. Anything else is no tenant, without a lookup.
pub fn is_tenant_name(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len())
        && b.first().is_some_and(inner)
        && b.last().is_some_and(inner)
        && b.iter().all(|c| inner(c) || *c == b'-')
}

/// A live (existing, not disabled) tenant with its policies.
#[derive(Debug)]
pub struct LiveTenant {
    /// The stored row.
    pub row: Tenant,
    /// The tenant's settings (policies, lifetimes, audience), as the store read them.
    pub settings: TenantSettings,
    /// `{public_url}/t/{name}`.
    pub issuer: String,
    /// `aud` of access tokens: the spec's audience, or the issuer.
    pub audience: Vec<String>,
}

impl LiveTenant {
    /// Builds the context of `row` (the store already refused settings it cannot use).
    pub fn new(row: Tenant, public_url: &str) -> Self {
        let settings = row.settings.clone();
        let issuer = format!("{public_url}/t/{}", row.name);
        let audience = if settings.tokens.audience.is_empty() {
            vec![issuer.clone()]
        } else {
            settings.tokens.audience.clone()
        };
        Self {
            row,
            settings,
            issuer,
            audience,
        }
    }

    /// The URL segment naming the tenant.
    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// Name shown to people: the row's display name (the operator stores the spec's), else
    /// the URL name.
    pub fn display_name(&self) -> &str {
        if self.row.display_name.is_empty() {
            &self.row.name
        } else {
            &self.row.display_name
        }
    }
}

/// Live tenants by name (`None`: absent or disabled); on expiry one caller per replica
/// reloads while the others use the previous answer.
#[derive(Debug)]
pub(crate) struct LiveTenants {
    entries: LoadingCache<Option<Arc<LiveTenant>>>,
}

impl Default for LiveTenants {
    fn default() -> Self {
        Self {
            entries: LoadingCache::new(TTL, 10_000),
        }
    }
}

impl LiveTenants {
    /// The live tenant called `name`.
    pub async fn get(
        &self,
        store: &dyn Store,
        public_url: &str,
        name: &str,
    ) -> Result<Arc<LiveTenant>, IdentityError> {
        if name.is_empty() || name.len() > 63 {
            return Err(IdentityError::TenantNotFound);
        }
        self.entries
            .get_through_outage(
                name,
                || async {
                    let row = store.tenant_by_name(name).await.map_err(|e| match e {
                        // Settings the store refuses to read are a misconfiguration of this
                        // tenant (forward-auth denies it as such), not an outage of the store.
                        e @ keygate_core::store::StoreError::InvalidTenantSettings { .. } => {
                            IdentityError::Internal(e.to_string())
                        }
                        e => IdentityError::from(e),
                    })?;
                    Ok::<_, IdentityError>(match row {
                        Some(row) if !row.disabled => {
                            Some(Arc::new(LiveTenant::new(row, public_url)))
                        }
                        _ => None,
                    })
                },
                IdentityError::is_unavailable,
            )
            .await?
            .ok_or(IdentityError::TenantNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::is_tenant_name;

    #[test]
    fn tenant_names_are_dns_labels() {
        for ok in ["acme", "a", "a-1", "0", &"a".repeat(63)] {
            assert!(is_tenant_name(ok), "{ok}");
        }
        for bad in [
            "",
            "\n",
            "..",
            "Acme",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_tenant_name(bad), "{bad:?}");
        }
    }
}
