//! ApiKey reconciler: generates `kg_<prefix>_<secret>`, stores only the prefix and the
//! SHA-256 of the whole key, and writes the raw value into the Secret named by `secretName`
//! and nowhere else (not in status, Events or logs). Rotates on `rotation.every`, keeping the
//! previous key valid for `gracePeriod`; a lost Secret gets a new key and the old one is
//! revoked at once; changed grants are applied to the stored key in place (the Secret keeps
//! its value); a Secret of that name owned by someone else is never overwritten; deleting
//! the ApiKey revokes its keys at once.

use crate::effects::{Effects, Event, EventKind};
use crate::secrets::secret_value;
use crate::status::{Lookup, Reason, ready, to_timestamp};
use crate::{Context, ReconcileError, tenant};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keygate_core::crypto::{constant_time_eq, sha256};
use keygate_core::store::{ApiKeyGrants, ApiKeyRecord};
use keygate_crds::{ApiKey, ApiKeyStatus};

mod issue;
mod raw;
mod secret;

pub use raw::{API_KEY_TAG, Generated, RawKey, generate, generate_tagged, key_hash};

use secret::api_key_conflict;
pub(crate) use secret::conflict_message;
pub use secret::{SecretOwner, owned_by, owned_by_resource, owned_secret, secret_for};

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
/// How long a change notice is pushed: longer than any gateway reuses a proven key without
/// asking the store (30 s, `API_KEY_RECHECK` in gateway/src/forward_auth/mod.rs).
const CHANGE_NOTICE_TTL: std::time::Duration = std::time::Duration::from_secs(120);

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
pub(crate) enum Issue {
    /// No key yet.
    First,
    /// The Secret was deleted or altered: the old key is revoked at once.
    SecretLost,
    /// `rotation.every` has passed: the old key keeps working for `gracePeriod`.
    Rotation,
}

/// Reconciles one ApiKey; returns the status to publish (which never holds the key).
/// The steps: check the spec and its tenant, find the live key and what the Secret holds,
/// decide whether a key is issued, apply grants and issue, report.
pub async fn reconcile(
    ctx: &Context,
    effects: &Effects,
    key: &ApiKey,
    owner_uid: &str,
) -> Result<ApiKeyStatus, ReconcileError> {
    let now = ctx.clock.now();
    let (_, namespace) = crate::object_key(&key.metadata)?;
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
        match tenant::parent(ctx, effects, namespace, &key.spec.tenant_ref.name).await? {
            Lookup::Found(t) => t,
            Lookup::Blocked(why) => return Ok(failed(why.reason(), why.to_string())),
        };
    let grants = Grants::of_spec(key);
    let keys = keys_of_owner(ctx, effects, stored_tenant.id, owner_uid).await?;
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
        effects.secrets.get(namespace, secret_name).await?
    };
    let issue = if expired {
        None
    } else {
        why_issue(key, current.as_ref(), secret.as_ref(), now)
    };

    // A Secret of the same name that is not ours is never overwritten: nothing is written
    // until a person resolves the clash.
    if issue.is_some()
        && let Some(found) = &secret
        && !owned_by(found, key, owner_uid)
    {
        return Ok(failed(
            Reason::SecretConflict,
            api_key_conflict(namespace, secret_name, key, owner_uid),
        ));
    }

    let plan = Plan {
        key,
        owner_uid,
        stored_tenant: &stored_tenant,
        keys: &keys,
        grants: &grants,
        now,
    };
    let Some(current) = plan.carry_out(ctx, effects, current, issue).await? else {
        return Ok(failed(
            Reason::Expired,
            "spec.expiresAt has passed, so no key is issued; set a later expiresAt to get a new one".into(),
        ));
    };
    Ok(live_status(key, &current, expired, now))
}

/// The keys one ApiKey resource issued, newest first (from the pass's cache when there is
/// one).
async fn keys_of_owner(
    ctx: &Context,
    effects: &Effects,
    tenant: keygate_core::ids::TenantId,
    owner_uid: &str,
) -> Result<Vec<ApiKeyRecord>, ReconcileError> {
    Ok(match &effects.cache {
        Some(cache) => {
            cache
                .api_keys_of_owner(ctx.store.as_ref(), tenant, owner_uid)
                .await?
        }
        None => ctx.store.api_keys_of_owner(tenant, owner_uid).await?,
    })
}

/// Whether a new key is due, and why: none yet, the Secret no longer holds the current
/// one, or `rotation.every` has passed.
fn why_issue(
    key: &ApiKey,
    current: Option<&ApiKeyRecord>,
    secret: Option<&k8s_openapi::api::core::v1::Secret>,
    now: DateTime<Utc>,
) -> Option<Issue> {
    why_issue_secret(
        current.map(|r| (r.hash.as_slice(), r.created_at)),
        secret,
        SECRET_KEY,
        key.spec.rotation.as_ref(),
        now,
    )
}

/// The rule every generated secret follows (API keys, OAuth client secrets): a new value
/// is due when there is none (`current` is the live value's hash and issue time), when the
/// Secret's `secret_key` no longer holds it, or when `rotation.every` has passed since it
/// was issued.
pub(crate) fn why_issue_secret(
    current: Option<(&[u8], DateTime<Utc>)>,
    secret: Option<&k8s_openapi::api::core::v1::Secret>,
    secret_key: &str,
    rotation: Option<&keygate_crds::Rotation>,
    now: DateTime<Utc>,
) -> Option<Issue> {
    let Some((hash, issued_at)) = current else {
        return Some(Issue::First);
    };
    let holds_key = secret
        .and_then(|s| secret_value(s, secret_key))
        .is_some_and(|raw| constant_time_eq(&sha256(&raw), hash));
    if !holds_key {
        return Some(Issue::SecretLost);
    }
    let rotation_due = rotation.is_some_and(|r| {
        Duration::from_std(r.period()).is_ok_and(|every| issued_at + every <= now)
    });
    rotation_due.then_some(Issue::Rotation)
}

/// What one reconcile of an ApiKey works from, once the spec and tenant are checked.
struct Plan<'a> {
    key: &'a ApiKey,
    owner_uid: &'a str,
    stored_tenant: &'a keygate_core::store::Tenant,
    keys: &'a [ApiKeyRecord],
    grants: &'a Grants,
    now: DateTime<Utc>,
}

impl Plan<'_> {
    /// Applies changed grants (or expiry) to the live keys in place, so their value and
    /// the Secret clients hold stay (not for a lost Secret, whose key is revoked); then
    /// issues a new key when `issue` says so. Returns the current key, if any.
    async fn carry_out(
        &self,
        ctx: &Context,
        effects: &Effects,
        current: Option<ApiKeyRecord>,
        issue: Option<Issue>,
    ) -> Result<Option<ApiKeyRecord>, ReconcileError> {
        let current = match (issue, current) {
            (Some(Issue::SecretLost), current) => current,
            (_, Some(record)) => Some(
                update_grants(
                    ctx,
                    effects,
                    self.key,
                    self.keys,
                    record,
                    self.grants,
                    self.now,
                )
                .await?,
            ),
            (_, None) => None,
        };
        let Some(why) = issue else {
            return Ok(current);
        };
        let issued = issue::issue_key(
            ctx,
            effects,
            self.key,
            self.owner_uid,
            self.stored_tenant,
            current.as_ref(),
            self.grants,
            why,
            self.now,
        )
        .await?;
        Ok(Some(issued))
    }
}

/// The status of an ApiKey with a current key: its prefix, when it was issued, when it
/// stops working (expiry or the end of its rotation grace) and where its Secret is.
fn live_status(
    key: &ApiKey,
    current: &ApiKeyRecord,
    expired: bool,
    now: DateTime<Utc>,
) -> ApiKeyStatus {
    let namespace = key.metadata.namespace.as_deref().unwrap_or("default");
    let secret_name = &key.spec.secret_name;
    let generation = key.metadata.generation;
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
    ApiKeyStatus {
        key_prefix: Some(current.prefix.clone()),
        issued_at: Some(Time(to_timestamp(current.created_at))),
        expires_at: expires_at.map(|at| Time(to_timestamp(at))),
        secret_name: Some(secret_name.clone()),
        conditions: vec![ready(ok, reason, message, generation, now)],
        observed_generation: generation,
    }
}

/// Applies the spec's grants to every live key of the resource (the current one and any
/// still in its rotation grace, so none keeps a permission that was taken away); returns
/// the current key as it now is.
async fn update_grants(
    ctx: &Context,
    effects: &Effects,
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
            push_change(effects, record).await;
            updated.push(format!("kg_{}_…", record.prefix));
        }
    }
    if updated.is_empty() {
        return Ok(current);
    }
    effects
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
    effects: &Effects,
    tenant: keygate_core::ids::TenantId,
    record: &ApiKeyRecord,
    now: DateTime<Utc>,
) -> Result<(), ReconcileError> {
    ctx.store.revoke_api_key(tenant, record.id, now).await?;
    push_revocation(effects, record).await;
    Ok(())
}

/// Tells gateway replicas a key is revoked; the store already says so, so a failure only
/// delays the refusal until the replicas' cache re-check.
async fn push_revocation(effects: &Effects, record: &ApiKeyRecord) {
    if let Some(revocations) = &effects.revocations
        && let Err(e) = revocations
            .revoke(&record.id.to_string(), REVOCATION_TTL)
            .await
    {
        tracing::warn!(api_key = %record.id, error = %e, "could not push the revocation to gateway replicas; they refuse the key after their next store check");
    }
}

/// Tells gateway replicas a key changed (rotated out, grants edited), so the proofs they
/// cached are made again from the store and its grace end or new grants apply at once; a
/// failure only delays that until their cache re-check.
async fn push_change(effects: &Effects, record: &ApiKeyRecord) {
    let notice = keygate_core::ephemeral::changed_notice(&record.id.to_string());
    if let Some(revocations) = &effects.revocations
        && let Err(e) = revocations.revoke(&notice, CHANGE_NOTICE_TTL).await
    {
        tracing::warn!(api_key = %record.id, error = %e, "could not tell gateway replicas the key changed; they apply the change after their cache re-check");
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
    effects: &Effects,
    key: &ApiKey,
    owner_uid: &str,
) -> Result<(), ReconcileError> {
    let namespace = key.metadata.namespace.as_deref().unwrap_or("default");
    revoke_owner(
        ctx,
        effects,
        namespace,
        &key.spec.tenant_ref.name,
        owner_uid,
    )
    .await?;
    effects
        .secrets
        .delete(namespace, &key.spec.secret_name)
        .await?;
    Ok(())
}

/// Revokes every key an ApiKey resource issued (store and revocation push); returns how many.
pub async fn revoke_owner(
    ctx: &Context,
    effects: &Effects,
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
        push_revocation(effects, record).await;
    }
    tracing::info!(
        tenant = tenant_name,
        namespace,
        keys = revoked,
        "ApiKey deleted: its keys are revoked"
    );
    Ok(revoked)
}
