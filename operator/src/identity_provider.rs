//! IdentityProvider reconciler: validates the spec, reads the client secret and the CA bundle
//! from the referenced Secrets, and stores the provider's settings
//! (`keygate_core::federation::ProviderSettings`, what the gateway signs people in with) with
//! the secret sealed by the master keys. Ready only once the gateway could sign people in:
//! for OpenID Connect and Google, once the discovery document and keys were fetched, for SAML
//! once the IdP metadata with a signing certificate was read, through the same client the
//! gateway uses. The status names what to register at the provider. A missing Secret is a
//! `SecretNotFound` condition naming it, never a crash loop.

use crate::effects::Effects;
use crate::secrets::secret_value;
use crate::status::{Blocked, Lookup, Reason, ready};
use crate::{Context, ReconcileError, tenant};
use keygate_core::federation::{
    ClaimNames, Endpoints, GithubProtocol, GoogleProtocol, Linking, OidcProtocol, Protocol,
    ProviderSettings, SamlMetadataSource, SamlProtocol, UpstreamHttp, callback_path, discover,
    load_metadata, saml_acs_path, saml_metadata_path,
};
use keygate_core::ids::IdpId;
use keygate_core::store::{IdpKind, IdpUpsert};
use keygate_crds::{
    IdentityProvider, IdentityProviderSpec, IdentityProviderStatus, ProviderType, SecretKeyRef,
};

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
    let tenant_name = &idp.spec.tenant_ref.name;
    let redirect_uri = format!("{}{}", ctx.public_url, callback_path(tenant_name, name));
    let saml = idp.spec.saml.as_ref();
    let acs_url = format!("{}{}", ctx.public_url, saml_acs_path(tenant_name, name));
    let status = |ok: bool, reason, message: String| IdentityProviderStatus {
        conditions: vec![ready(ok, reason, message, generation, now)],
        observed_generation: generation,
        redirect_uri: (idp.spec.provider_type != ProviderType::Saml).then(|| redirect_uri.clone()),
        sp_entity_id: saml.map(|s| s.entity_id.clone()),
        acs_url: saml.map(|_| acs_url.clone()),
        sp_metadata_url: saml.map(|_| {
            format!(
                "{}{}",
                ctx.public_url,
                saml_metadata_path(tenant_name, name)
            )
        }),
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
    let ca_bundle = match ca_bundle(effects, namespace, idp).await? {
        Ok(pem) => pem,
        Err((reason, why)) => return Ok(status(false, reason, why)),
    };
    let kind = match idp.spec.provider_type {
        ProviderType::Oidc => IdpKind::Oidc,
        ProviderType::Github => IdpKind::Github,
        ProviderType::Google => IdpKind::Google,
        ProviderType::Saml => IdpKind::Saml,
    };
    let Some(settings) = provider_settings(name, &idp.spec, ca_bundle) else {
        // The CRD's rules demand the block; a manifest that slipped past them is refused.
        let why = format!(
            "type {} needs its settings block",
            idp.spec.provider_type.as_str()
        );
        return Ok(status(false, Reason::InvalidSpec, why));
    };
    let config = serde_json::to_value(&settings).map_err(ReconcileError::Serialize)?;
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
        let stored = existing
            .as_ref()
            .and_then(|row| row.client_secret.as_deref());
        upsert.client_secret = Some(sealed_secret(ctx, stored, id, plain)?);
    }
    ctx.store.upsert_idp(&upsert).await?;
    let (ok, reason, message) = reachable(ctx, &settings).await;
    let message = match (ok, &settings.protocol) {
        (false, _) => message,
        (true, Protocol::Saml(p)) => format!(
            "{message}; register entity id {} with assertion consumer service {acs_url} at the IdP",
            p.entity_id
        ),
        (true, _) => format!("{message}; register {redirect_uri} as its redirect URI"),
    };
    Ok(status(ok, reason, message))
}

/// The PEM text of `caBundleSecretRef`, if the provider names one; a missing Secret or key,
/// or bytes that are not text, is the reason and message of a not-Ready status.
async fn ca_bundle(
    effects: &Effects,
    namespace: &str,
    idp: &IdentityProvider,
) -> Result<Result<Option<String>, (Reason, String)>, ReconcileError> {
    let Some(reference) = &idp.spec.ca_bundle_secret_ref else {
        return Ok(Ok(None));
    };
    Ok(match read_secret(effects, namespace, reference).await? {
        Lookup::Found(pem) => String::from_utf8(pem).map(Some).map_err(|_| {
            let why = format!(
                "caBundleSecretRef {}/{} key {} is not PEM text",
                namespace, reference.name, reference.key
            );
            (Reason::InvalidSpec, why)
        }),
        Lookup::Blocked(why) => Err((why.reason(), why.to_string())),
    })
}

/// The provider's client secret sealed to its row `id`. Sealing is randomized: the stored
/// ciphertext is kept while it still opens to the same value under the active master key,
/// so a resync writes nothing.
fn sealed_secret(
    ctx: &Context,
    stored: Option<&[u8]>,
    id: IdpId,
    plain: &[u8],
) -> Result<Vec<u8>, ReconcileError> {
    let context = idp_secret_context(id);
    let reusable = stored
        .filter(|sealed| !ctx.master_keys.needs_reseal(sealed))
        .filter(|sealed| {
            ctx.master_keys
                .open(sealed, &context)
                .is_ok_and(|open| keygate_core::crypto::constant_time_eq(&open, plain))
        });
    Ok(match reusable {
        Some(sealed) => sealed.to_vec(),
        None => ctx.master_keys.seal(plain, &context)?,
    })
}

/// Whether the gateway could sign people in through the provider now: the same HTTP client
/// (platform trust store plus the CA bundle) fetches its discovery document and keys, or its
/// SAML metadata (which must name a signing certificate).
async fn reachable(ctx: &Context, settings: &ProviderSettings) -> (bool, Reason, String) {
    let http = match UpstreamHttp::new(settings.ca_bundle.as_deref()) {
        Ok(http) => http,
        Err(e) => return (false, Reason::InvalidSpec, e.to_string()),
    };
    if let Protocol::Saml(p) = &settings.protocol {
        return match load_metadata(&http, &p.metadata, ctx.allow_loopback_http).await {
            Ok(m) => (
                true,
                Reason::Reconciled,
                format!(
                    "IdP metadata of {} read ({} signing certificate(s)); people can sign in",
                    m.entity_id, m.signing_certs
                ),
            ),
            Err(e) => (false, Reason::ProviderUnreachable, e.to_string()),
        };
    }
    let endpoints = Endpoints::default();
    let Some(issuer) = settings.issuer(&endpoints) else {
        // GitHub publishes no discovery document: its endpoints are fixed.
        return (
            true,
            Reason::Reconciled,
            "people can sign in through GitHub".into(),
        );
    };
    match discover(&http, issuer, ctx.allow_loopback_http).await {
        Ok(_) => (
            true,
            Reason::Reconciled,
            format!("discovery document and keys of {issuer} fetched; people can sign in"),
        ),
        Err(e) => (false, Reason::ProviderUnreachable, format!("{issuer}: {e}")),
    }
}

/// The settings the gateway signs people in with, from the spec; `None` when the block its
/// type needs is missing.
pub fn provider_settings(
    name: &str,
    spec: &IdentityProviderSpec,
    ca_bundle: Option<String>,
) -> Option<ProviderSettings> {
    let protocol = match spec.provider_type {
        ProviderType::Oidc => {
            let o = spec.oidc.as_ref()?;
            Protocol::Oidc(OidcProtocol {
                issuer: o.issuer.trim_end_matches('/').to_owned(),
                client_id: o.client_id.clone(),
                scopes: o.scopes.clone(),
                claims: ClaimNames {
                    email: o.claim_mappings.email.clone(),
                    name: o.claim_mappings.name.clone(),
                    groups: o.claim_mappings.groups.clone(),
                },
            })
        }
        ProviderType::Google => {
            let g = spec.google.as_ref()?;
            Protocol::Google(GoogleProtocol {
                client_id: g.client_id.clone(),
                hosted_domain: g.hosted_domain.clone(),
            })
        }
        ProviderType::Github => {
            let g = spec.github.as_ref()?;
            Protocol::Github(GithubProtocol {
                client_id: g.client_id.clone(),
                allowed_organizations: g.allowed_organizations.clone(),
            })
        }
        ProviderType::Saml => {
            let s = spec.saml.as_ref()?;
            let metadata = match (&s.metadata.inline, &s.metadata.url) {
                (Some(xml), _) => SamlMetadataSource::Inline(xml.clone()),
                (None, Some(url)) => SamlMetadataSource::Url(url.clone()),
                (None, None) => return None,
            };
            Protocol::Saml(SamlProtocol {
                metadata,
                entity_id: s.entity_id.clone(),
                attributes: ClaimNames {
                    email: s.attribute_mapping.email.clone(),
                    name: s.attribute_mapping.name.clone(),
                    groups: s.attribute_mapping.groups.clone(),
                },
            })
        }
    };
    let display_name = spec
        .display_name
        .clone()
        .unwrap_or_else(|| match spec.provider_type {
            ProviderType::Github => "Sign in with GitHub".to_owned(),
            ProviderType::Google => "Sign in with Google".to_owned(),
            _ => format!("Sign in with {name}"),
        });
    Some(ProviderSettings {
        display_name,
        protocol,
        allowed_email_domains: spec
            .allowed_email_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        linking: match spec.linking {
            keygate_crds::Linking::None => Linking::None,
            keygate_crds::Linking::VerifiedEmail => Linking::VerifiedEmail,
        },
        ca_bundle,
    })
}

/// The Secret key the provider needs, if its type has one (SAML needs none: keygate sends
/// unsigned AuthnRequests).
pub fn secret_ref(idp: &IdentityProvider) -> Option<&SecretKeyRef> {
    idp.spec.client_secret_ref()
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
