//! One entry point per event for any kind, so both sources dispatch the same way.

use crate::cluster::Cluster;
use crate::{Context, ReconcileError, api_key, identity_provider, role, tenant};
use keygate_crds::Resource;

/// Reconciles one resource of any kind; returns its status as JSON.
pub async fn apply(
    ctx: &Context,
    cluster: &Cluster,
    resource: &Resource,
    uid: &str,
) -> Result<serde_json::Value, ReconcileError> {
    let status = match resource {
        Resource::Tenant(t) => serde_json::to_value(tenant::reconcile(ctx, t, uid).await?),
        Resource::IdentityProvider(i) => {
            serde_json::to_value(identity_provider::reconcile(ctx, cluster, i, uid).await?)
        }
        Resource::Role(r) => serde_json::to_value(role::reconcile(ctx, cluster, r, uid).await?),
        Resource::ApiKey(k) => {
            serde_json::to_value(api_key::reconcile(ctx, cluster, k, uid).await?)
        }
    };
    status.map_err(|e| ReconcileError::Manifests(e.to_string()))
}

/// Removes or retires what a deleted resource owns.
pub async fn cleanup(
    ctx: &Context,
    cluster: &Cluster,
    resource: &Resource,
    uid: &str,
) -> Result<(), ReconcileError> {
    match resource {
        Resource::Tenant(t) => tenant::cleanup(ctx, t, uid).await,
        Resource::IdentityProvider(i) => identity_provider::cleanup(ctx, cluster, i, uid).await,
        Resource::Role(r) => role::cleanup(ctx, cluster, r, uid).await,
        Resource::ApiKey(k) => api_key::cleanup(ctx, cluster, k, uid).await,
    }
}
