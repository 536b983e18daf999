//! Tenant reconciler: upserts the tenant and its policies, keeps its signing keys rotating
//! (next key published before it signs; old key kept until its last token expired), one
//! chain per algorithm: the tenant's, and RS256 for ID tokens when the tenant's is another.

use crate::status::{Blocked, Lookup, Reason, ready};
use crate::{Context, ReconcileError};
use chrono::{DateTime, Duration, Utc};
use keygate_core::crypto::signing::{self, SigningAlgorithm};
use keygate_core::keyring;
use keygate_core::store::{DeletionPolicy, SigningKeyRecord, StoreError, TenantUpsert};
use keygate_crds::{Tenant, TenantStatus};

pub mod sealing;
pub mod settings;

/// How a tenant's signing keys rotate, from its settings (`signing`, `tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// The tenant's algorithm (access tokens); an active key of another algorithm is
    /// replaced, except the RS256 key kept for ID tokens ([`keyring::algorithms`]).
    pub algorithm: SigningAlgorithm,
    /// How long a key signs before the next one is due.
    pub rotate_every: Duration,
    /// How long the next key is published before it signs (`signing.publishLead`).
    pub publish_lead: Duration,
    /// How long a replaced key stays published: the access-token lifetime (its last token's
    /// life) plus the publish lead (clock skew and verifier caches).
    pub keep_after_retire: Duration,
}

impl RotationPolicy {
    /// The policy `settings` declare.
    pub fn of(settings: &keygate_core::tenant_settings::TenantSettings) -> Self {
        let duration = |d: std::time::Duration, fallback| Duration::from_std(d).unwrap_or(fallback);
        let publish_lead = duration(settings.signing.publish_lead, Duration::hours(1));
        Self {
            algorithm: settings.signing.algorithm,
            rotate_every: duration(settings.signing.rotate_every, Duration::days(30)),
            publish_lead,
            keep_after_retire: duration(settings.access_token_ttl(), Duration::hours(1))
                + publish_lead,
        }
    }
}

/// Reconciles one Tenant; returns the status to publish.
pub async fn reconcile(
    ctx: &Context,
    tenant: &Tenant,
    owner_uid: &str,
) -> Result<TenantStatus, ReconcileError> {
    let now = ctx.clock.now();
    let (name, namespace) = crate::object_key(&tenant.metadata)?;
    let generation = tenant.metadata.generation;
    let not_ready = |reason, message: String| TenantStatus {
        conditions: vec![ready(false, reason, message, generation, now)],
        observed_generation: generation,
        ..TenantStatus::default()
    };

    let settings = match judge(ctx, tenant) {
        Ok(settings) => settings,
        Err((reason, message)) => return Ok(not_ready(reason, message)),
    };
    let taken = || {
        not_ready(
            Reason::TenantNameTaken,
            format!(
                "tenant name `{name}` is already declared in another namespace; tenant names are cluster-wide URL segments, pick another"
            ),
        )
    };
    let existing = ctx.store.tenant_by_name(name).await?;
    if let Some(found) = &existing
        && found.owner_uid != owner_uid
    {
        // A tenant retained after its resource was deleted is taken back by a resource of
        // the same name in the same namespace (re-applying a Tenant deleted by mistake).
        if found.disabled && found.namespace == namespace {
            ctx.store.set_tenant_owner(found.id, owner_uid).await?;
            tracing::info!(
                tenant = name,
                namespace,
                "retained tenant adopted by a new Tenant resource"
            );
        } else {
            return Ok(taken());
        }
    }
    let rotation = RotationPolicy::of(&settings);
    let upsert = TenantUpsert {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        owner_uid: owner_uid.to_owned(),
        display_name: tenant.display_name().to_owned(),
        settings,
        deletion_policy: settings::deletion_policy(tenant.spec.deletion_policy),
        generation: generation.unwrap_or(0),
    };
    let stored = match ctx.store.upsert_tenant(&upsert).await {
        Ok(t) => t,
        Err(StoreError::Conflict { .. }) => return Ok(taken()),
        Err(e) => return Err(e.into()),
    };
    if stored.disabled {
        ctx.store.set_tenant_disabled(stored.id, false).await?;
    }

    if let Err(unreadable) = sealing::reseal_signing_keys(ctx, stored.id).await? {
        return Ok(not_ready(
            Reason::SigningKeyUnreadable,
            unreadable.to_string(),
        ));
    }
    if let Err(unreadable) = sealing::reseal_factor_secrets(ctx, stored.id).await? {
        return Ok(not_ready(Reason::FactorUnreadable, unreadable.to_string()));
    }
    let active = ensure_signing_keys(ctx, stored.id, &rotation, now).await?;

    let issuer = ctx.issuer(name);
    Ok(TenantStatus {
        jwks_url: Some(format!("{issuer}/jwks.json")),
        issuer_url: Some(issuer),
        active_key_id: Some(active),
        conditions: vec![ready(
            true,
            Reason::Reconciled,
            // Master-key rotation waits for this to name the new key (docs/operations.md).
            format!(
                "tenant is live; its signing keys and second-factor secrets are sealed under master key `{}`",
                ctx.master_keys.active_id()
            ),
            generation,
            now,
        )],
        observed_generation: generation,
    })
}

/// The settings a Tenant's spec asks for, or why it is refused before anything is written.
fn judge(
    ctx: &Context,
    tenant: &Tenant,
) -> Result<keygate_core::tenant_settings::TenantSettings, (Reason, String)> {
    keygate_crds::admit(&keygate_crds::Resource::Tenant(tenant.clone()))
        .map_err(|refused| (Reason::InvalidSpec, refused.to_string()))?;
    // What the schema cannot express (a zero lifetime, a reuse grace as long as the refresh
    // lifetime, a cookie domain outside the public host) is refused here.
    let settings = settings::settings_of(&tenant.spec, &ctx.public_url)
        .map_err(|invalid| (Reason::InvalidSpec, invalid.to_string()))?;
    Ok(settings)
}

/// Handles a deleted Tenant resource: applies its `deletionPolicy` to the tenant it owns.
/// A resource that never owned the name (TenantNameTaken) leaves everything alone.
pub async fn cleanup(
    ctx: &Context,
    tenant: &Tenant,
    owner_uid: &str,
) -> Result<(), ReconcileError> {
    let (name, _) = crate::object_key(&tenant.metadata)?;
    match ctx.store.tenant_by_name(name).await? {
        Some(stored) if stored.owner_uid == owner_uid => {
            retire(
                ctx,
                &stored,
                settings::deletion_policy(tenant.spec.deletion_policy),
            )
            .await
        }
        _ => Ok(()),
    }
}

/// Applies a deletion policy to a stored tenant: Retain disables it and keeps every row,
/// Delete erases it (all but its audit trail). Disabling an already disabled tenant writes
/// nothing, so resyncs stay quiet.
pub async fn retire(
    ctx: &Context,
    stored: &keygate_core::store::Tenant,
    policy: DeletionPolicy,
) -> Result<(), ReconcileError> {
    match policy {
        DeletionPolicy::Retain if stored.disabled => {}
        DeletionPolicy::Retain => {
            ctx.store.set_tenant_disabled(stored.id, true).await?;
            tracing::info!(tenant = %stored.name, namespace = %stored.namespace, "Tenant deleted: tenant disabled, data retained (deletionPolicy Retain)");
        }
        DeletionPolicy::Delete => {
            ctx.store.delete_tenant(stored.id).await?;
            tracing::info!(tenant = %stored.name, namespace = %stored.namespace, "Tenant deleted: tenant and its data erased (deletionPolicy Delete)");
        }
    }
    Ok(())
}

/// The tenant a child resource (IdentityProvider, Role, ApiKey) refers to: it must exist,
/// live in the child's namespace (references never cross namespaces) and be enabled;
/// otherwise [`Lookup::Blocked`] says why, for a `TenantNotFound` condition.
pub async fn parent(
    ctx: &Context,
    effects: &crate::Effects,
    namespace: &str,
    tenant_name: &str,
) -> Result<Lookup<keygate_core::store::Tenant>, ReconcileError> {
    let found = match &effects.cache {
        Some(cache) => cache.tenant(ctx.store.as_ref(), tenant_name).await?,
        None => ctx.store.tenant_by_name(tenant_name).await?,
    };
    let tenant = tenant_name.to_owned();
    Ok(match found {
        Some(t) if t.namespace != namespace => Lookup::Blocked(Blocked::TenantInOtherNamespace {
            tenant,
            declared: t.namespace,
            namespace: namespace.to_owned(),
        }),
        Some(t) if t.disabled => Lookup::Blocked(Blocked::TenantDeleted { tenant }),
        Some(t) => Lookup::Found(t),
        None => Lookup::Blocked(Blocked::TenantMissing {
            tenant,
            namespace: namespace.to_owned(),
        }),
    })
}

/// Makes sure the tenant has an active key of each algorithm it signs with
/// ([`keyring::algorithms`]: its own, and RS256 for ID tokens when its own is another),
/// schedules a chain's next key when its active key is due (or the chain has none yet),
/// retires replaced keys, and returns the kid that signs access tokens. Running it twice in
/// a row changes nothing the second time.
pub async fn ensure_signing_keys(
    ctx: &Context,
    tenant: keygate_core::ids::TenantId,
    policy: &RotationPolicy,
    now: DateTime<Utc>,
) -> Result<String, ReconcileError> {
    let wanted = keyring::algorithms(policy.algorithm);
    let mut keys = ctx.store.signing_keys(tenant).await?;
    // No key signs yet (a new tenant): its first keys sign at once, nobody can have cached
    // its JWKS. Otherwise a chain's new key is published a lead ahead, like any rotation.
    let first = keyring::active(&keys, policy.algorithm, now).is_none();
    for &algorithm in &wanted {
        let due = match keyring::active_of(&keys, algorithm, now) {
            Some(active) => active.activates_at + policy.rotate_every <= now,
            None => true,
        };
        if due && keyring::next_of(&keys, algorithm, now).is_none() {
            let activates_at = if first {
                now
            } else {
                now + policy.publish_lead
            };
            let record = new_key(ctx, tenant, algorithm, now, activates_at)?;
            ctx.store.insert_signing_key(&record).await?;
            keys.push(record);
        }
    }
    let Some(active) = keyring::active(&keys, policy.algorithm, now).cloned() else {
        return Err(ReconcileError::NoActiveSigningKey);
    };
    for (kid, replaced_at) in replaced(&keys, &wanted, policy.algorithm, now) {
        ctx.store
            .set_signing_key_retires_at(tenant, &kid, replaced_at + policy.keep_after_retire)
            .await?;
    }
    ctx.store.delete_retired_signing_keys(now).await?;
    Ok(active.kid)
}

/// The keys that stopped signing and are not yet retiring, with the moment they stopped: a
/// key superseded by a later-activated key of its own algorithm, then; a key of an algorithm
/// the tenant no longer signs with, once a key of the tenant's algorithm signs (at `now` at
/// the latest, since the tenant's algorithm may have an older key that took over at once).
fn replaced(
    keys: &[SigningKeyRecord],
    wanted: &[SigningAlgorithm],
    primary: SigningAlgorithm,
    now: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    let primary_signs = keyring::active_of(keys, primary, now).is_some();
    keys.iter()
        .filter(|key| key.retires_at.is_none())
        .filter_map(|key| {
            let kept = wanted.iter().any(|a| a.as_str() == key.algorithm);
            let successor = keys
                .iter()
                .filter(|k| k.algorithm == key.algorithm)
                .filter(|k| k.activates_at > key.activates_at && k.activates_at <= now)
                .map(|k| k.activates_at)
                .min();
            match successor {
                Some(at) => Some((key.kid.clone(), at)),
                None if !kept && primary_signs => Some((key.kid.clone(), now)),
                None => None,
            }
        })
        .collect()
}

fn new_key(
    ctx: &Context,
    tenant: keygate_core::ids::TenantId,
    algorithm: SigningAlgorithm,
    now: DateTime<Utc>,
    activates_at: DateTime<Utc>,
) -> Result<SigningKeyRecord, ReconcileError> {
    let generated = signing::generate(algorithm)?;
    let sealed = ctx.master_keys.seal(
        generated.private_pem.as_bytes(),
        &signing_key_context(&generated.kid),
    )?;
    Ok(SigningKeyRecord {
        public_jwk: serde_json::to_value(&generated.public_jwk)
            .map_err(ReconcileError::Serialize)?,
        kid: generated.kid,
        tenant_id: tenant,
        algorithm: algorithm.as_str().to_owned(),
        private_key: sealed,
        created_at: now,
        activates_at,
        retires_at: None,
    })
}

/// The associated data a signing key's ciphertext is bound to.
pub fn signing_key_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}
