//! IdentityProvider reconciler: validates the spec, reads the client secret (or SAML SP key)
//! from the referenced Secret, and stores the provider with that secret sealed by the master
//! keys. A missing Secret is a `SecretNotFound` condition naming it, never a crash loop.

use crate::effects::Effects;
use crate::secrets::secret_value;
use crate::status::{Blocked, Lookup, Reason, ready};
use crate::{Context, ReconcileError, tenant};
use keygate_core::ids::IdpId;
use keygate_core::store::{IdpKind, IdpUpsert};
use keygate_crds::{IdentityProvider, IdentityProviderStatus, ProviderType, SecretKeyRef};

/// The associated data an IdP secret's ciphertext is bound to, so it cannot be moved to
/// another provider's row. The gateway opens it with the same context.
pub fn idp_secret_context(id: IdpId) -> String {
    format!("idp_secret:{id}")
}

/// Reconciles one IdentityProvider; returns the status to publish.
pub async fn reconcile(
    ctx: &Context,
    effects: &Effects,
    idp: &IdentityProvider,
    owner_uid: &str,
) -> Result<IdentityProviderStatus, ReconcileError> {
    let now = ctx.clock.now();
    let (name, namespace) = crate::object_key(&idp.metadata)?;
    let generation = idp.metadata.generation;
    let status = |ok: bool, reason, message: String| IdentityProviderStatus {
        conditions: vec![ready(ok, reason, message, generation, now)],
        observed_generation: generation,
    };

    if let Err(refused) =
        keygate_crds::admit(&keygate_crds::Resource::IdentityProvider(idp.clone()))
    {
        return Ok(status(false, Reason::InvalidSpec, refused.to_string()));
    }
    let stored_tenant =
        match tenant::parent(ctx, effects, namespace, &idp.spec.tenant_ref.name).await? {
            Lookup::Found(t) => t,
            Lookup::Blocked(why) => return Ok(status(false, why.reason(), why.to_string())),
        };
    let secret = match secret_ref(idp) {
        None => None,
        Some(reference) => match read_secret(effects, namespace, reference).await? {
            Lookup::Found(value) => Some(value),
            Lookup::Blocked(why) => return Ok(status(false, why.reason(), why.to_string())),
        },
    };
    let kind = match idp.spec.provider_type {
        ProviderType::Oidc => IdpKind::Oidc,
        ProviderType::Github => IdpKind::Github,
        ProviderType::Google => IdpKind::Google,
        ProviderType::Saml => IdpKind::Saml,
    };
    // The spec holds only references to secrets, never their values, so it is stored as is.
    let config = serde_json::to_value(&idp.spec).map_err(ReconcileError::Serialize)?;
    let existing = ctx.store.idp_by_name(stored_tenant.id, name).await?;
    let mut upsert = IdpUpsert {
        tenant_id: stored_tenant.id,
        name: name.to_owned(),
        owner_uid: owner_uid.to_owned(),
        kind,
        config,
        client_secret: None,
        generation: generation.unwrap_or(0),
    };
    let id = match &existing {
        Some(row) => row.id,
        // The ciphertext is bound to the row id, which the store assigns on first write.
        None => ctx.store.upsert_idp(&upsert).await?.id,
    };
    if let Some(plain) = &secret {
        let context = idp_secret_context(id);
        // Sealing is randomized: keep the stored ciphertext while it still opens to the
        // same value under the active master key, so a resync writes nothing.
        let reusable = existing
            .as_ref()
            .and_then(|row| row.client_secret.as_ref())
            .filter(|sealed| !ctx.master_keys.needs_reseal(sealed))
            .filter(|sealed| {
                ctx.master_keys
                    .open(sealed, &context)
                    .is_ok_and(|open| keygate_core::crypto::constant_time_eq(&open, plain))
            });
        upsert.client_secret = Some(match reusable {
            Some(sealed) => sealed.clone(),
            None => ctx.master_keys.seal(plain, &context)?,
        });
    }
    ctx.store.upsert_idp(&upsert).await?;
    // Stored and checked, but nothing signs people in through it yet: Ready would promise
    // a sign-in button that does not exist.
    Ok(status(
        false,
        Reason::NotSupported,
        "the provider and its secret are valid and stored, but this keygate version cannot sign people in through an upstream identity provider".into(),
    ))
}

/// The Secret key the provider needs, if its type has one.
pub fn secret_ref(idp: &IdentityProvider) -> Option<&SecretKeyRef> {
    match idp.spec.provider_type {
        ProviderType::Saml => idp
            .spec
            .saml
            .as_ref()
            .and_then(|s| s.sp_key_secret_ref.as_ref()),
        _ => idp.spec.client_secret_ref(),
    }
}

/// Reads one key of a Secret; [`Lookup::Blocked`] names what is missing.
async fn read_secret(
    effects: &Effects,
    namespace: &str,
    reference: &SecretKeyRef,
) -> Result<Lookup<Vec<u8>>, ReconcileError> {
    let (name, key) = (reference.name.clone(), reference.key.clone());
    let namespace = namespace.to_owned();
    let Some(secret) = effects.secrets.get(&namespace, &name).await? else {
        return Ok(Lookup::Blocked(Blocked::SecretMissing {
            namespace,
            name,
            key,
        }));
    };
    Ok(match secret_value(&secret, &reference.key) {
        Some(value) if !value.is_empty() => Lookup::Found(value),
        _ => Lookup::Blocked(Blocked::SecretKeyMissing {
            namespace,
            name,
            key,
        }),
    })
}

/// Handles a deleted IdentityProvider: removes the provider it owns (and its links).
pub async fn cleanup(
    ctx: &Context,
    effects: &Effects,
    idp: &IdentityProvider,
    owner_uid: &str,
) -> Result<(), ReconcileError> {
    let (name, namespace) = crate::object_key(&idp.metadata)?;
    let Lookup::Found(stored_tenant) =
        tenant::parent(ctx, effects, namespace, &idp.spec.tenant_ref.name).await?
    else {
        // A retained (disabled) tenant keeps its providers and the links users have to them.
        return Ok(());
    };
    if let Some(existing) = ctx.store.idp_by_name(stored_tenant.id, name).await?
        && existing.owner_uid == owner_uid
    {
        ctx.store.delete_idp(stored_tenant.id, existing.id).await?;
        tracing::info!(
            identity_provider = name,
            namespace,
            "IdentityProvider deleted: provider removed from the store"
        );
    }
    Ok(())
}
