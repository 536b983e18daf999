//! What a reconciler touches besides the store: Secrets (read for IdP credentials, written
//! for API keys), Events, and the gateway's revocation channel. Each source supplies its own
//! implementation (files for the directory source, the API server for Kubernetes), so the
//! reconcile functions never know where they run.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use keygate_core::ephemeral::Ephemeral;
use keygate_core::ids::TenantId;
use keygate_core::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why reading or writing a Secret failed (not "absent": that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A Secret file could not be read, parsed or written.
    #[error("secret file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The API server refused the request.
    #[error("kubernetes: {0}")]
    Kube(#[source] Box<kube::Error>),
}

/// Reads and writes Secrets in a resource's namespace.
#[async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The Secret `namespace/name`, or `None` if it does not exist.
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SecretError>;
    /// Creates or replaces a Secret the operator owns (its metadata carries name, namespace,
    /// labels and owner reference).
    async fn apply(&self, secret: &Secret) -> Result<(), SecretError>;
    /// Deletes a Secret the operator owns; absent is fine.
    async fn delete(&self, namespace: &str, name: &str) -> Result<(), SecretError>;
}

/// Severity of an [`Event`], as Kubernetes knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Something happened as intended.
    Normal,
    /// Something needs a person's attention.
    Warning,
}

/// A meaningful transition of a resource, told to whoever runs `kubectl describe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub kind: EventKind,
    /// Short CamelCase reason, e.g. `KeyRotated`.
    pub reason: &'static str,
    /// CamelCase action taken, e.g. `Rotate`.
    pub action: &'static str,
    /// One sentence for people; never a secret value.
    pub note: String,
}

/// Publishes [`Event`]s about a resource.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Publishes `event` about the object `regarding`; failures are logged, not fatal.
    async fn publish(&self, regarding: &ObjectReference, event: Event);
}

/// Events as log lines: the directory source has no API server to send them to.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogEvents;

#[async_trait]
impl EventSink for LogEvents {
    async fn publish(&self, regarding: &ObjectReference, event: Event) {
        let resource = format!(
            "{} {}/{}",
            regarding.kind.as_deref().unwrap_or_default(),
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        );
        match event.kind {
            EventKind::Normal => tracing::info!(%resource, reason = event.reason, "{}", event.note),
            EventKind::Warning => {
                tracing::warn!(%resource, reason = event.reason, "{}", event.note)
            }
        }
    }
}

/// Everything outside the store a reconcile acts on (Secrets, Events, the revocation
/// channel) plus the pass's read cache, bundled so signatures stay short. Each source
/// builds its own: files and log lines, or the API server.
#[derive(Clone, Debug)]
pub struct Effects {
    /// Where Secrets are read and written.
    pub secrets: Arc<dyn SecretSource>,
    /// Where Events go.
    pub events: Arc<dyn EventSink>,
    /// The gateway's revocation channel, so a revoked API key is refused on every replica
    /// at once instead of after the gateway's cache re-check; `None` when the operator runs
    /// without Redis (the gateway then learns it from the store).
    pub revocations: Option<Arc<dyn Ephemeral>>,
    /// What the current pass already read from the store (the directory source reconciles
    /// thousands of resources of a few tenants in one pass); `None` reads every time.
    pub cache: Option<Arc<PassCache>>,
}

/// Store reads shared by the reconciles of one pass: tenants by name, each tenant's roles
/// and each tenant's API keys. Only for reads that decide whether to write; the store
/// re-checks every write.
#[derive(Debug)]
pub struct PassCache {
    tenants: Mutex<HashMap<String, Option<keygate_core::store::Tenant>>>,
    roles: Mutex<HashMap<TenantId, Arc<HashMap<String, keygate_core::store::Role>>>>,
    /// Per tenant: all its API keys by owner uid.
    api_keys: Mutex<HashMap<TenantId, Arc<KeysByOwner>>>,
    /// Rows per query when a tenant's API keys are read.
    page_size: u32,
}

impl Default for PassCache {
    fn default() -> Self {
        Self::with_page_size(keygate_core::store::LIST_MAX)
    }
}

/// API-key rows by owner uid, each list newest first.
pub type KeysByOwner = HashMap<String, Vec<keygate_core::store::ApiKeyRecord>>;

/// Every API key of a tenant, read in keyset pages of `page_size` rows (a tenant may hold
/// more keys than one listing returns).
pub async fn all_api_keys(
    store: &dyn Store,
    tenant: TenantId,
    page_size: u32,
) -> Result<Vec<keygate_core::store::ApiKeyRecord>, StoreError> {
    let page_size = page_size.clamp(1, keygate_core::store::LIST_MAX);
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_api_keys_page(tenant, after, page_size).await?;
        let full = page.len() >= page_size as usize;
        after = page.last().map(|k| k.id);
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

impl PassCache {
    /// A cache that reads a tenant's API keys `page_size` rows at a time (tests use small
    /// pages to cover paging without thousands of rows).
    pub fn with_page_size(page_size: u32) -> Self {
        Self {
            tenants: Mutex::default(),
            roles: Mutex::default(),
            api_keys: Mutex::default(),
            page_size,
        }
    }

    /// The tenant named `name`, read once per pass.
    pub async fn tenant(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<Option<keygate_core::store::Tenant>, StoreError> {
        if let Some(found) = self
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(found.clone());
        }
        let found = store.tenant_by_name(name).await?;
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), found.clone());
        Ok(found)
    }

    /// Every API key of a tenant by owner uid, read once per pass (in pages).
    pub async fn api_keys(
        &self,
        store: &dyn Store,
        tenant: TenantId,
    ) -> Result<Arc<KeysByOwner>, StoreError> {
        if let Some(found) = self
            .api_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
        {
            return Ok(found.clone());
        }
        let mut by_owner = KeysByOwner::new();
        for row in all_api_keys(store, tenant, self.page_size).await? {
            by_owner.entry(row.owner_uid.clone()).or_default().push(row);
        }
        // Newest first, as `api_keys_of_owner` answers.
        for rows in by_owner.values_mut() {
            rows.sort_by_key(|k| std::cmp::Reverse((k.created_at, k.id)));
        }
        let by_owner = Arc::new(by_owner);
        self.api_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant, by_owner.clone());
        Ok(by_owner)
    }

    /// The keys one ApiKey resource issued, newest first, from the tenant's listing.
    pub async fn api_keys_of_owner(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        owner_uid: &str,
    ) -> Result<Vec<keygate_core::store::ApiKeyRecord>, StoreError> {
        Ok(self
            .api_keys(store, tenant)
            .await?
            .get(owner_uid)
            .cloned()
            .unwrap_or_default())
    }

    /// The tenant's roles by name, read once per pass (one query for all of them).
    pub async fn roles(
        &self,
        store: &dyn Store,
        tenant: TenantId,
    ) -> Result<Arc<HashMap<String, keygate_core::store::Role>>, StoreError> {
        if let Some(found) = self
            .roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
        {
            return Ok(found.clone());
        }
        let roles: HashMap<_, _> = store
            .list_roles(tenant)
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let roles = Arc::new(roles);
        self.roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant, roles.clone());
        Ok(roles)
    }
}
