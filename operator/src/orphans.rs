//! Resync's second half: rows whose resource no longer exists are cleaned up, matched by the
//! owner uid every row carries. This catches deletions the operator never saw (a manifest
//! removed from the folder, a finalizer removed by hand, an operator that was down).

use crate::effects::{Effects, KeysByOwner, all_api_keys};
use crate::{Context, ReconcileError, api_key, oauth_client, tenant};
use keygate_core::store::LIST_MAX;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// The owner uids of the resources that exist now, per kind.
#[derive(Clone, Debug, Default)]
pub struct LiveSet {
    /// Tenant resources.
    pub tenants: HashSet<String>,
    /// IdentityProvider resources.
    pub identity_providers: HashSet<String>,
    /// Role resources.
    pub roles: HashSet<String>,
    /// ApiKey resources.
    pub api_keys: HashSet<String>,
    /// OAuthClient resources.
    pub oauth_clients: HashSet<String>,
    /// The namespaces this view covers; rows of tenants elsewhere are left alone. `None`:
    /// every namespace.
    pub namespaces: Option<HashSet<String>>,
}

/// What a cleanup pass did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Tenants disabled (Retain) or erased (Delete).
    pub tenants: u64,
    /// Identity providers removed.
    pub identity_providers: u64,
    /// Roles removed.
    pub roles: u64,
    /// API keys revoked.
    pub api_keys: u64,
    /// OAuth clients removed (their sessions revoked).
    pub oauth_clients: u64,
}

/// Cleans every row whose owner is not in `live`. Only call it with a complete view of the
/// resources (a folder read without errors, a watch cache that has synced): an empty view
/// means "everything was deleted".
pub async fn clean(
    ctx: &Context,
    effects: &Effects,
    live: &LiveSet,
) -> Result<Cleaned, ReconcileError> {
    let mut cleaned = Cleaned::default();
    let now = ctx.clock.now();
    for stored in ctx.store.list_tenants().await? {
        if live
            .namespaces
            .as_ref()
            .is_some_and(|seen| !seen.contains(&stored.namespace))
        {
            // Not watched here: its resources are not in `live`, so they are not gone.
            continue;
        }
        if !live.tenants.contains(&stored.owner_uid) {
            if !stored.disabled {
                cleaned.tenants += 1;
            }
            let policy = stored.deletion_policy;
            tenant::retire(ctx, &stored, policy).await?;
            if policy == keygate_core::store::DeletionPolicy::Delete {
                continue;
            }
        }
        if stored.disabled || !live.tenants.contains(&stored.owner_uid) {
            // A retained tenant keeps its roles, providers and keys as they were.
            continue;
        }
        for role in ctx.store.list_roles(stored.id).await? {
            if !live.roles.contains(&role.owner_uid)
                && ctx.store.delete_role(stored.id, role.id).await?
            {
                tracing::info!(tenant = %stored.name, role = %role.name, "Role no longer declared: role removed");
                cleaned.roles += 1;
            }
        }
        for idp in ctx.store.list_idps(stored.id).await? {
            if !live.identity_providers.contains(&idp.owner_uid)
                && ctx.store.delete_idp(stored.id, idp.id).await?
            {
                tracing::info!(tenant = %stored.name, identity_provider = %idp.name, "IdentityProvider no longer declared: provider removed");
                cleaned.identity_providers += 1;
            }
        }
        for client in ctx.store.list_oauth_clients(stored.id).await? {
            if !live.oauth_clients.contains(&client.owner_uid) {
                oauth_client::remove(ctx, effects, &stored, &client).await?;
                cleaned.oauth_clients += 1;
            }
        }
        // Every key of the tenant, however many: one listing is capped.
        let keys = match &effects.cache {
            Some(cache) => cache.api_keys(ctx.store.as_ref(), stored.id).await?,
            None => {
                let mut by_owner = KeysByOwner::new();
                for k in all_api_keys(ctx.store.as_ref(), stored.id, LIST_MAX).await? {
                    by_owner.entry(k.owner_uid.clone()).or_default().push(k);
                }
                Arc::new(by_owner)
            }
        };
        let orphaned: BTreeSet<&String> = keys
            .iter()
            .filter(|(owner, rows)| {
                !live.api_keys.contains(*owner)
                    && rows
                        .iter()
                        .any(|k| k.revoked_at.is_none() && k.is_usable(now))
            })
            .map(|(owner, _)| owner)
            .collect();
        for owner in orphaned {
            cleaned.api_keys +=
                api_key::revoke_owner(ctx, effects, &stored.namespace, &stored.name, owner).await?;
        }
    }
    Ok(cleaned)
}
