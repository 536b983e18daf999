//! ApiKey reconciler: generates `kg_<prefix>_<secret>`, stores only the prefix and the
//! SHA-256 of the whole key, and writes the raw value into the Secret named by `secretName`
//! and nowhere else (not in status, Events or logs). Rotates on `rotation.every`, keeping the
//! previous key valid for `gracePeriod`; a lost Secret gets a new key and the old one is
//! revoked at once; changed grants are applied to the stored key in place (the Secret keeps
//! its value); a Secret of that name owned by someone else is never overwritten; deleting
//! the ApiKey revokes its keys at once.

use crate::cluster::{Cluster, Event, EventKind};
use crate::secrets::secret_value;
use crate::status::{Reason, ready, to_timestamp};
use crate::{Context, ReconcileError, tenant};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keygate_core::crypto::{constant_time_eq, random, sha256};
use keygate_core::store::{ApiKeyGrants, ApiKeyRecord, NewApiKey};
use keygate_crds::{ApiKey, ApiKeyStatus};

mod secret;

use secret::conflict_message;
pub use secret::{owned_by, secret_for};

/// The Secret data key holding the raw API key.
pub const SECRET_KEY: &str = "apiKey";
/// Label naming the ApiKey a Secret belongs to (so `kubectl get secret -l` finds them).
pub const LABEL_API_KEY: &str = "keygate.dev/api-key";
/// Label naming the tenant of the key.
pub const LABEL_TENANT: &str = "keygate.dev/tenant";
/// Standard label telling who manages the Secret.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGER: &str = "keygate-operator";
/// Annotation with the owning resource's uid (labels cannot hold every uid form).
pub const ANNOTATION_OWNER_UID: &str = "keygate.dev/owner-uid";
/// Length of the public prefix: 12 symbols of 32 are 60 bits, enough to stay unique.
const PREFIX_LEN: usize = 12;
/// How long a revocation is pushed to gateway replicas: far longer than their cache
/// re-check, after which the store's `revoked_at` answers.
pub const REVOCATION_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// A raw API key. Its `Debug` prints only the prefix, so a stray `{:?}` leaks nothing.
pub struct RawKey(String);

impl RawKey {
    /// The full value, for the Secret and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RawKey({}…)",
            self.0.get(..3 + PREFIX_LEN).unwrap_or("kg_")
        )
    }
}

/// A new key: the raw value and what the store keeps of it.
#[derive(Debug)]
pub struct Generated {
    /// `kg_<prefix>_<secret>`.
    pub raw: RawKey,
    /// The public lookup part.
    pub prefix: String,
    /// SHA-256 of the whole raw value.
    pub hash: [u8; 32],
}

/// Generates `kg_<prefix>_<secret>`: a 12-symbol prefix (no `_` in its alphabet, so the key
/// splits unambiguously) and 256 random bits.
pub fn generate() -> Result<Generated, ReconcileError> {
    let prefix = random::random_alphanumeric(PREFIX_LEN)?;
    let raw = format!("kg_{prefix}_{}", random::random_token()?);
    let hash = key_hash(&raw);
    Ok(Generated {
        raw: RawKey(raw),
        prefix,
        hash,
    })
}

/// What the store keeps of a raw key: SHA-256 of the whole `kg_…` string.
pub fn key_hash(raw: &str) -> [u8; 32] {
    sha256(raw.as_bytes())
}

/// What a key grants, normalized so equal specs compare equal.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Grants {
    roles: Vec<String>,
    permissions: Vec<String>,
    scopes: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut out = items.to_vec();
    out.sort();
    out.dedup();
    out
}

impl Grants {
    fn of_spec(key: &ApiKey) -> Self {
        Self {
            roles: sorted(&key.spec.roles),
            permissions: sorted(&key.spec.permissions),
            scopes: sorted(&key.spec.scopes),
            expires_at: key.spec.expires_at.as_ref().and_then(from_time),
        }
    }

    fn stored(&self) -> ApiKeyGrants {
        ApiKeyGrants {
            roles: self.roles.clone(),
            permissions: self.permissions.clone(),
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
        }
    }

    fn of_record(record: &ApiKeyRecord) -> Self {
        Self {
            roles: sorted(&record.roles),
            permissions: sorted(&record.permissions),
            scopes: sorted(&record.scopes),
            expires_at: record.expires_at,
        }
    }
}

fn from_time(t: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.0.as_millisecond())
}

/// Why a new key is issued; each has its own treatment of the previous key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Issue {
    /// No key yet.
    First,
    /// The Secret was deleted or altered: the old key is revoked at once.
    SecretLost,
    /// `rotation.every` has passed: the old key keeps working for `gracePeriod`.
    Rotation,
}

/// Reconciles one ApiKey; returns the status to publish (which never holds the key).
pub async fn reconcile(
    ctx: &Context,
    cluster: &Cluster,
    key: &ApiKey,
    owner_uid: &str,
) -> Result<ApiKeyStatus, ReconcileError> {
    let now = ctx.clock.now();
    key.metadata
        .name
        .as_ref()
        .ok_or(ReconcileError::MissingObjectKey(".metadata.name"))?;
    let namespace = key.metadata.namespace.as_deref().unwrap_or("default");
    let generation = key.metadata.generation;
    let failed = |reason, message: String| ApiKeyStatus {
        conditions: vec![ready(false, reason, message, generation, now)],
        observed_generation: generation,
        ..ApiKeyStatus::default()
    };

    if let Err(refused) = keygate_crds::admit(&keygate_crds::Resource::ApiKey(key.clone())) {
        return Ok(failed(Reason::InvalidSpec, refused.to_string()));
    }
    let stored_tenant =
        match tenant::parent(ctx, cluster, namespace, &key.spec.tenant_ref.name).await? {
            Ok(t) => t,
            Err(message) => return Ok(failed(Reason::TenantNotFound, message)),
        };
    let grants = Grants::of_spec(key);
    let keys = match &cluster.cache {
        Some(cache) => {
            cache
                .api_keys_of_owner(ctx.store.as_ref(), stored_tenant.id, owner_uid)
                .await?
        }
        None => {
            ctx.store
                .api_keys_of_owner(stored_tenant.id, owner_uid)
                .await?
        }
    };
    let current = keys
        .iter()
        .find(|k| k.revoked_at.is_none() && k.superseded_at.is_none())
        .cloned();
    let expired = grants.expires_at.is_some_and(|at| at <= now);
    let secret_name = &key.spec.secret_name;
    // Read before anything is written: the Secret may hold the key, or belong to someone else.
    let secret = if expired {
        None
    } else {
        cluster.secrets.get(namespace, secret_name).await?
    };

    let issue = match &current {
        _ if expired => None,
        None => Some(Issue::First),
        Some(record) => {
            let holds_key = secret
                .as_ref()
                .and_then(|s| secret_value(s, SECRET_KEY))
                .is_some_and(|raw| constant_time_eq(&sha256(&raw), &record.hash));
            if !holds_key {
                Some(Issue::SecretLost)
            } else if key.spec.rotation.as_ref().is_some_and(|r| {
                Duration::from_std(r.period()).is_ok_and(|every| record.created_at + every <= now)
            }) {
                Some(Issue::Rotation)
            } else {
                None
            }
        }
    };

    // A Secret of the same name that is not ours is never overwritten: nothing is written
    // until a person resolves the clash.
    if issue.is_some()
        && let Some(found) = &secret
        && !owned_by(found, key, owner_uid)
    {
        return Ok(failed(
            Reason::SecretConflict,
            conflict_message(namespace, secret_name),
        ));
    }

    // Changed grants (or expiry) are applied to the live keys in place: their value, and so
    // the Secret clients hold, stays. Not for a lost Secret, whose key is revoked below.
    let current = match (issue, current) {
        (Some(Issue::SecretLost), current) => current,
        (_, Some(record)) => {
            Some(update_grants(ctx, cluster, key, &keys, record, &grants, now).await?)
        }
        (_, None) => None,
    };

    let current = match issue {
        None => current,
        Some(why) => Some(
            issue_key(
                ctx,
                cluster,
                key,
                owner_uid,
                &stored_tenant,
                current.as_ref(),
                &grants,
                why,
                now,
            )
            .await?,
        ),
    };

    let Some(current) = current else {
        return Ok(failed(
            Reason::Expired,
            "spec.expiresAt has passed, so no key is issued; set a later expiresAt to get a new one".into(),
        ));
    };
    let rotation_end = key.spec.rotation.as_ref().and_then(|r| {
        let every = Duration::from_std(r.period()).ok()?;
        let grace = Duration::from_std(r.grace()).ok()?;
        Some(current.created_at + every + grace)
    });
    let expires_at = match (current.expires_at, rotation_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (ok, reason, message) = if expired {
        (
            false,
            Reason::Expired,
            "the key expired (spec.expiresAt has passed); set a later expiresAt to get a new one"
                .to_owned(),
        )
    } else {
        (
            true,
            Reason::Reconciled,
            format!(
                "key kg_{}_… is live; its value is in Secret {namespace}/{secret_name}",
                current.prefix
            ),
        )
    };
    Ok(ApiKeyStatus {
        key_prefix: Some(current.prefix.clone()),
        issued_at: Some(Time(to_timestamp(current.created_at))),
        expires_at: expires_at.map(|at| Time(to_timestamp(at))),
        secret_name: Some(secret_name.clone()),
        conditions: vec![ready(ok, reason, message, generation, now)],
        observed_generation: generation,
    })
}

/// Issues a new key: stores it, writes the Secret, then retires the previous key as `why`
/// demands and tells people through an Event.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
async fn issue_key(
    ctx: &Context,
    cluster: &Cluster,
    key: &ApiKey,
    owner_uid: &str,
    stored_tenant: &keygate_core::store::Tenant,
    previous: Option<&ApiKeyRecord>,
    grants: &Grants,
    why: Issue,
    now: DateTime<Utc>,
) -> Result<ApiKeyRecord, ReconcileError> {
    let name = key.metadata.name.as_deref().unwrap_or_default();
    let namespace = key.metadata.namespace.as_deref().unwrap_or("default");
    let generated = generate()?;
    let record = ctx
        .store
        .insert_api_key(&NewApiKey {
            tenant_id: stored_tenant.id,
            owner_uid: owner_uid.to_owned(),
            name: name.to_owned(),
            prefix: generated.prefix.clone(),
            hash: generated.hash.to_vec(),
            roles: grants.roles.clone(),
            permissions: grants.permissions.clone(),
            scopes: grants.scopes.clone(),
            expires_at: grants.expires_at,
        })
        .await?;
    // The row exists before the Secret: if writing the Secret fails, the next pass finds a
    // key without its Secret and issues again, revoking this one.
    cluster
        .secrets
        .apply(&secret_for(key, owner_uid, &stored_tenant.name, &generated))
        .await?;

    let secret = format!("{namespace}/{}", key.spec.secret_name);
    let event = match (why, previous) {
        (Issue::Rotation, Some(old)) => {
            let grace = key
                .spec
                .rotation
                .as_ref()
                .and_then(|r| Duration::from_std(r.grace()).ok())
                .unwrap_or_else(Duration::zero);
            ctx.store
                .supersede_api_key(stored_tenant.id, old.id, now, now + grace)
                .await?;
            Event {
                kind: EventKind::Normal,
                reason: "KeyRotated",
                action: "Rotate",
                note: format!(
                    "rotated: new key kg_{}_… written to Secret {secret}; the previous key kg_{}_… keeps working until {}",
                    record.prefix,
                    old.prefix,
                    (now + grace).to_rfc3339()
                ),
            }
        }
        (Issue::SecretLost, Some(old)) => {
            revoke(ctx, cluster, stored_tenant.id, old, now).await?;
            Event {
                kind: EventKind::Warning,
                reason: "SecretLost",
                action: "Reissue",
                note: format!(
                    "Secret {secret} was deleted or no longer holds the key: issued new key kg_{}_… and revoked kg_{}_…",
                    record.prefix, old.prefix
                ),
            }
        }
        _ => Event {
            kind: EventKind::Normal,
            reason: "KeyIssued",
            action: "Issue",
            note: format!("issued key kg_{}_… to Secret {secret}", record.prefix),
        },
    };
    cluster.events.publish(&object_ref(key), event).await;
    Ok(record)
}

/// Applies the spec's grants to every live key of the resource (the current one and any
/// still in its rotation grace, so none keeps a permission that was taken away); returns
/// the current key as it now is.
async fn update_grants(
    ctx: &Context,
    cluster: &Cluster,
    key: &ApiKey,
    keys: &[ApiKeyRecord],
    current: ApiKeyRecord,
    grants: &Grants,
    now: DateTime<Utc>,
) -> Result<ApiKeyRecord, ReconcileError> {
    let stale = keys.iter().filter(|k| {
        k.revoked_at.is_none()
            && (k.id == current.id || k.is_usable(now))
            && Grants::of_record(k) != *grants
    });
    let new = grants.stored();
    let mut updated = Vec::new();
    for record in stale {
        if ctx
            .store
            .update_api_key_grants(record.tenant_id, record.id, &new)
            .await?
        {
            updated.push(format!("kg_{}_…", record.prefix));
        }
    }
    if updated.is_empty() {
        return Ok(current);
    }
    cluster
        .events
        .publish(
            &object_ref(key),
            Event {
                kind: EventKind::Normal,
                reason: "KeyGrantsUpdated",
                action: "Update",
                note: format!(
                    "grants or expiry changed: updated {} in place; the Secret keeps its value",
                    updated.join(", ")
                ),
            },
        )
        .await;
    Ok(ApiKeyRecord {
        roles: new.roles,
        permissions: new.permissions,
        scopes: new.scopes,
        expires_at: new.expires_at,
        ..current
    })
}

/// Revokes one key in the store and pushes the revocation to every gateway replica.
async fn revoke(
    ctx: &Context,
    cluster: &Cluster,
    tenant: keygate_core::ids::TenantId,
    record: &ApiKeyRecord,
    now: DateTime<Utc>,
) -> Result<(), ReconcileError> {
    ctx.store.revoke_api_key(tenant, record.id, now).await?;
    push_revocation(cluster, record).await;
    Ok(())
}

/// Tells gateway replicas a key is revoked; the store already says so, so a failure only
/// delays the refusal until the replicas' cache re-check.
async fn push_revocation(cluster: &Cluster, record: &ApiKeyRecord) {
    if let Some(revocations) = &cluster.revocations
        && let Err(e) = revocations
            .revoke(&record.id.to_string(), REVOCATION_TTL)
            .await
    {
        tracing::warn!(api_key = %record.id, error = %e, "could not push the revocation to gateway replicas; they refuse the key after their next store check");
    }
}

/// A reference to the ApiKey for Events.
pub fn object_ref(key: &ApiKey) -> ObjectReference {
    ObjectReference {
        api_version: Some(keygate_crds::API_VERSION.to_owned()),
        kind: Some("ApiKey".to_owned()),
        name: key.metadata.name.clone(),
        namespace: key.metadata.namespace.clone(),
        uid: key.metadata.uid.clone(),
        resource_version: key.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Handles a deleted ApiKey: revokes every key it issued at once, and removes its Secret
/// (in Kubernetes the ownerReference does that too; absent is fine).
pub async fn cleanup(
    ctx: &Context,
    cluster: &Cluster,
    key: &ApiKey,
    owner_uid: &str,
) -> Result<(), ReconcileError> {
    let namespace = key.metadata.namespace.as_deref().unwrap_or("default");
    revoke_owner(
        ctx,
        cluster,
        namespace,
        &key.spec.tenant_ref.name,
        owner_uid,
    )
    .await?;
    cluster
        .secrets
        .delete(namespace, &key.spec.secret_name)
        .await?;
    Ok(())
}

/// Revokes every key an ApiKey resource issued (store and revocation push); returns how many.
pub async fn revoke_owner(
    ctx: &Context,
    cluster: &Cluster,
    namespace: &str,
    tenant_name: &str,
    owner_uid: &str,
) -> Result<u64, ReconcileError> {
    let Some(stored_tenant) = ctx
        .store
        .tenant_by_name(tenant_name)
        .await?
        .filter(|t| t.namespace == namespace)
    else {
        return Ok(0);
    };
    let now = ctx.clock.now();
    let live: Vec<ApiKeyRecord> = ctx
        .store
        .api_keys_of_owner(stored_tenant.id, owner_uid)
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    if live.is_empty() {
        return Ok(0);
    }
    let revoked = ctx
        .store
        .revoke_api_keys_of_owner(stored_tenant.id, owner_uid, now)
        .await?;
    for record in &live {
        push_revocation(cluster, record).await;
    }
    tracing::info!(
        tenant = tenant_name,
        namespace,
        keys = revoked,
        "ApiKey deleted: its keys are revoked"
    );
    Ok(revoked)
}
