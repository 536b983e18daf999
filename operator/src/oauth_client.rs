//! OAuthClient reconciler: registers the client with its tenant (`metadata.name` is the
//! `client_id`) and, for a confidential client, keeps its secret the way an ApiKey keeps its
//! key — through the same code: generated (`kgcs_<prefix>_<secret>`), stored as a SHA-256
//! only, written to the owned Secret named by `secretName` and nowhere else, reissued when
//! that Secret loses it (the old secret revoked at once), rotated on `rotation.every` with
//! the previous secret accepted for `gracePeriod`. Deleting the OAuthClient removes the
//! client and revokes every session (and so refresh token) issued to it.

use crate::api_key::{
    Issue, SecretOwner, conflict_message, generate_tagged, owned_by_resource, owned_secret,
    why_issue_secret,
};
use crate::effects::{Effects, Event, EventKind};
use crate::status::{Lookup, Reason, ready, to_timestamp};
use crate::{Context, ReconcileError, tenant};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::keyring;
use keygate_core::store::{
    ClientAuthMethod, ClientLifetimes, ClientSecretRecord, ClientType, ConsentMode, GrantType,
    NewClientSecret, OAuthClientUpsert, StoreError, Tenant,
};
use keygate_crds::{OAuthClient, OAuthClientStatus};
use std::collections::BTreeMap;

/// Label naming the OAuthClient a Secret belongs to.
pub const LABEL_OAUTH_CLIENT: &str = "keygate.dev/oauth-client";
/// The Secret data key holding the client id (so an application mounts one Secret).
pub const SECRET_KEY_CLIENT_ID: &str = "clientId";
/// The Secret data key holding the raw client secret.
pub const SECRET_KEY_CLIENT_SECRET: &str = "clientSecret";
/// The tag of client secrets: `kgcs_<prefix>_<secret>`, never mistaken for an API key.
pub const SECRET_TAG: &str = "kgcs";
/// How long a revoked session is pushed to gateway replicas: past the longest idle window
/// they cache a session for; after it the store's `revoked_at` answers.
const SESSION_REVOCATION_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Reconciles one OAuthClient; returns the status to publish (which never holds a secret).
pub async fn reconcile(
    ctx: &Context,
    effects: &Effects,
    client: &OAuthClient,
    owner_uid: &str,
) -> Result<OAuthClientStatus, ReconcileError> {
    let now = ctx.clock.now();
    let (name, namespace) = crate::object_key(&client.metadata)?;
    let generation = client.metadata.generation;
    let failed = |reason, message: String| OAuthClientStatus {
        conditions: vec![ready(false, reason, message, generation, now)],
        observed_generation: generation,
        ..OAuthClientStatus::default()
    };

    if let Err(refused) = keygate_crds::admit(&keygate_crds::Resource::OAuthClient(client.clone()))
    {
        return Ok(failed(Reason::InvalidSpec, refused.to_string()));
    }
    let stored_tenant =
        match tenant::parent(ctx, effects, namespace, &client.spec.tenant_ref.name).await? {
            Lookup::Found(t) => t,
            Lookup::Blocked(why) => return Ok(failed(why.reason(), why.to_string())),
        };
    if let Some(why) = unavailable_algorithm(client, &stored_tenant) {
        return Ok(failed(Reason::SigningAlgorithmUnavailable, why));
    }
    let owner = secret_owner(client, owner_uid);

    // Read the Secret before anything is written: one that is not ours is never
    // overwritten, and nothing is stored until a person resolves the clash.
    let secret = match &client.spec.secret_name {
        Some(secret_name) => {
            let found = effects.secrets.get(namespace, secret_name).await?;
            if let Some(found) = &found
                && !owned_by_resource(found, owner)
            {
                return Ok(failed(
                    Reason::SecretConflict,
                    conflict_message(namespace, secret_name, owner),
                ));
            }
            found
        }
        None => None,
    };

    let declared = declared(client, name, stored_tenant.id, owner_uid, generation);
    let stored = match ctx.store.upsert_oauth_client(&declared).await {
        Ok(stored) => stored,
        Err(StoreError::Conflict { .. }) => {
            return Ok(failed(
                Reason::ClientIdTaken,
                format!(
                    "client id `{name}` of tenant `{}` is held by another OAuthClient resource (a deleted one whose cleanup has not run yet); nothing was changed",
                    stored_tenant.name
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };

    let secrets = ctx
        .store
        .client_secrets(stored_tenant.id, stored.id)
        .await?;
    let live = secrets
        .iter()
        .find(|s| s.revoked_at.is_none() && s.superseded_at.is_none())
        .cloned();
    let current = match (&client.spec.secret_name, declared.client_type) {
        (Some(secret_name), ClientType::Confidential) => {
            let issue = why_issue_secret(
                live.as_ref().map(|s| (s.hash.as_slice(), s.created_at)),
                secret.as_ref(),
                SECRET_KEY_CLIENT_SECRET,
                client.spec.rotation.as_ref(),
                now,
            );
            let plan = SecretPlan {
                client,
                owner,
                tenant: &stored_tenant,
                secret_name,
                client_row: stored.id,
                now,
            };
            match issue {
                Some(why) => Some(plan.issue(ctx, effects, live.as_ref(), why).await?),
                None => live,
            }
        }
        // A public client has no secret: any left from when it was confidential stop now.
        _ => {
            for s in secrets.iter().filter(|s| s.revoked_at.is_none()) {
                ctx.store
                    .revoke_client_secret(stored_tenant.id, s.id, now)
                    .await?;
            }
            None
        }
    };

    Ok(live_status(
        client,
        (name, namespace),
        &stored_tenant.name,
        current.as_ref(),
        now,
    ))
}

/// The status of a registered client: its id, and where its current secret is.
fn live_status(
    client: &OAuthClient,
    (name, namespace): (&str, &str),
    tenant_name: &str,
    current: Option<&ClientSecretRecord>,
    now: DateTime<Utc>,
) -> OAuthClientStatus {
    let generation = client.metadata.generation;
    OAuthClientStatus {
        client_id: Some(name.to_owned()),
        secret_name: current.and(client.spec.secret_name.clone()),
        secret_prefix: current.map(|s| format!("{SECRET_TAG}_{}", s.prefix)),
        secret_issued_at: current.map(|s| Time(to_timestamp(s.created_at))),
        conditions: vec![ready(
            true,
            Reason::Reconciled,
            match &client.spec.secret_name {
                Some(secret_name) => format!(
                    "client `{name}` is registered with tenant `{tenant_name}`; its id and secret are in Secret {namespace}/{secret_name}"
                ),
                None => format!("public client `{name}` is registered with tenant `{tenant_name}`"),
            },
            generation,
            now,
        )],
        observed_generation: generation,
    }
}

/// The store's form of an OAuthClient spec (defaults applied: the auth method follows the type).
fn declared(
    client: &OAuthClient,
    name: &str,
    tenant: keygate_core::ids::TenantId,
    owner_uid: &str,
    generation: Option<i64>,
) -> OAuthClientUpsert {
    let spec = &client.spec;
    let client_type = match spec.client_type {
        keygate_crds::ClientType::Public => ClientType::Public,
        keygate_crds::ClientType::Confidential => ClientType::Confidential,
    };
    let token_endpoint_auth_method = match (spec.token_endpoint_auth_method, client_type) {
        (Some(keygate_crds::TokenEndpointAuthMethod::ClientSecretPost), _) => {
            ClientAuthMethod::ClientSecretPost
        }
        (Some(keygate_crds::TokenEndpointAuthMethod::ClientSecretBasic), _) => {
            ClientAuthMethod::ClientSecretBasic
        }
        (Some(keygate_crds::TokenEndpointAuthMethod::None), _) | (None, ClientType::Public) => {
            ClientAuthMethod::None
        }
        (None, ClientType::Confidential) => ClientAuthMethod::ClientSecretBasic,
    };
    let grant_types = spec
        .grant_types
        .iter()
        .map(|g| match g {
            keygate_crds::GrantType::AuthorizationCode => GrantType::AuthorizationCode,
            keygate_crds::GrantType::RefreshToken => GrantType::RefreshToken,
            keygate_crds::GrantType::ClientCredentials => GrantType::ClientCredentials,
            keygate_crds::GrantType::DeviceCode => GrantType::DeviceCode,
        })
        .collect();
    let lifetimes = spec
        .lifetimes
        .as_ref()
        .map_or_else(ClientLifetimes::default, |l| ClientLifetimes {
            access_token: l.access_token.as_ref().map(|d| d.get()),
            id_token: l.id_token.as_ref().map(|d| d.get()),
            refresh_token: l.refresh_token.as_ref().map(|d| d.get()),
        });
    OAuthClientUpsert {
        tenant_id: tenant,
        owner_uid: owner_uid.to_owned(),
        client_id: name.to_owned(),
        display_name: spec.display_name.clone().unwrap_or_else(|| name.to_owned()),
        client_type,
        token_endpoint_auth_method,
        redirect_uris: spec.redirect_uris.clone(),
        post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
        grant_types,
        allowed_scopes: spec.allowed_scopes.clone(),
        audience: spec.audience.clone(),
        consent: match spec.consent {
            keygate_crds::Consent::Implicit => ConsentMode::Implicit,
            keygate_crds::Consent::Required => ConsentMode::Required,
        },
        lifetimes,
        id_token_signed_response_alg: spec.id_token_signed_response_alg.map(signing_algorithm),
        generation: generation.unwrap_or(0),
    }
}

/// keygate's name of an algorithm a resource names.
fn signing_algorithm(alg: keygate_crds::SigningAlgorithm) -> SigningAlgorithm {
    match alg {
        keygate_crds::SigningAlgorithm::RS256 => SigningAlgorithm::RS256,
        keygate_crds::SigningAlgorithm::ES256 => SigningAlgorithm::ES256,
        keygate_crds::SigningAlgorithm::EdDSA => SigningAlgorithm::EdDSA,
    }
}

/// Why the client's `idTokenSignedResponseAlg` cannot be served by `tenant`'s keys (it
/// keeps keys of its own algorithm and of RS256 only), if it cannot.
fn unavailable_algorithm(client: &OAuthClient, tenant: &Tenant) -> Option<String> {
    let asked = signing_algorithm(client.spec.id_token_signed_response_alg?);
    let primary = tenant.settings.signing.algorithm;
    let kept = keyring::algorithms(primary);
    (!kept.contains(&asked)).then(|| {
        format!(
            "idTokenSignedResponseAlg {} is not available: tenant `{}` signs with {} and keeps keys of {} only; choose one of those (or leave it unset for {}), or change the tenant's signing.algorithm; nothing was changed",
            asked.as_str(),
            tenant.name,
            primary.as_str(),
            kept.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" and "),
            primary.as_str(),
        )
    })
}

fn secret_owner<'a>(client: &'a OAuthClient, owner_uid: &'a str) -> SecretOwner<'a> {
    SecretOwner {
        kind: "OAuthClient",
        label: LABEL_OAUTH_CLIENT,
        metadata: &client.metadata,
        owner_uid,
    }
}

/// What issuing a confidential client's secret works from.
struct SecretPlan<'a> {
    client: &'a OAuthClient,
    owner: SecretOwner<'a>,
    tenant: &'a Tenant,
    secret_name: &'a str,
    client_row: keygate_core::ids::OAuthClientId,
    now: DateTime<Utc>,
}

impl SecretPlan<'_> {
    /// Issues a new secret: stores its hash, writes the Secret, then retires the previous
    /// secret as `why` demands (grace for a rotation, at once for a lost Secret) and tells
    /// people through an Event.
    async fn issue(
        &self,
        ctx: &Context,
        effects: &Effects,
        previous: Option<&ClientSecretRecord>,
        why: Issue,
    ) -> Result<ClientSecretRecord, ReconcileError> {
        let name = self.client.metadata.name.as_deref().unwrap_or_default();
        let namespace = self
            .client
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default");
        let generated = generate_tagged(SECRET_TAG)?;
        let record = ctx
            .store
            .insert_client_secret(&NewClientSecret {
                tenant_id: self.tenant.id,
                oauth_client_id: self.client_row,
                prefix: generated.prefix.clone(),
                hash: generated.hash.to_vec(),
            })
            .await?;
        // The row exists before the Secret: if writing the Secret fails, the next pass finds
        // a secret the Secret does not hold and issues again, revoking this one.
        let data = BTreeMap::from([
            (
                SECRET_KEY_CLIENT_ID.to_owned(),
                ByteString(name.as_bytes().to_vec()),
            ),
            (
                SECRET_KEY_CLIENT_SECRET.to_owned(),
                ByteString(generated.raw.expose().as_bytes().to_vec()),
            ),
        ]);
        effects
            .secrets
            .apply(&owned_secret(
                self.owner,
                &self.tenant.name,
                self.secret_name,
                data,
            ))
            .await?;

        let secret = format!("{namespace}/{}", self.secret_name);
        let new = format!("{SECRET_TAG}_{}_…", record.prefix);
        let now = self.now;
        let event = match (why, previous) {
            (Issue::Rotation, Some(old)) => {
                let grace = self
                    .client
                    .spec
                    .rotation
                    .as_ref()
                    .and_then(|r| Duration::from_std(r.grace()).ok())
                    .unwrap_or_else(Duration::zero);
                ctx.store
                    .supersede_client_secret(self.tenant.id, old.id, now, now + grace)
                    .await?;
                Event {
                    kind: EventKind::Normal,
                    reason: "SecretRotated",
                    action: "Rotate",
                    note: format!(
                        "rotated: new client secret {new} written to Secret {secret}; the previous one {SECRET_TAG}_{}_… is accepted until {}",
                        old.prefix,
                        (now + grace).to_rfc3339()
                    ),
                }
            }
            (Issue::SecretLost, Some(old)) => {
                ctx.store
                    .revoke_client_secret(self.tenant.id, old.id, now)
                    .await?;
                Event {
                    kind: EventKind::Warning,
                    reason: "SecretLost",
                    action: "Reissue",
                    note: format!(
                        "Secret {secret} was deleted or no longer holds the client secret: issued {new} and revoked {SECRET_TAG}_{}_…",
                        old.prefix
                    ),
                }
            }
            _ => Event {
                kind: EventKind::Normal,
                reason: "SecretIssued",
                action: "Issue",
                note: format!("issued client secret {new} to Secret {secret}"),
            },
        };
        effects
            .events
            .publish(&object_ref(self.client), event)
            .await;
        Ok(record)
    }
}

/// A reference to the OAuthClient for Events.
pub fn object_ref(client: &OAuthClient) -> ObjectReference {
    ObjectReference {
        api_version: Some(keygate_crds::API_VERSION.to_owned()),
        kind: Some("OAuthClient".to_owned()),
        name: client.metadata.name.clone(),
        namespace: client.metadata.namespace.clone(),
        uid: client.metadata.uid.clone(),
        resource_version: client.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Handles a deleted OAuthClient: removes the client (its secrets with it), revokes every
/// session issued to it, and removes its Secret if it is ours (in Kubernetes the
/// ownerReference does that too; absent is fine).
pub async fn cleanup(
    ctx: &Context,
    effects: &Effects,
    client: &OAuthClient,
    owner_uid: &str,
) -> Result<(), ReconcileError> {
    let (name, namespace) = crate::object_key(&client.metadata)?;
    if let Some(stored_tenant) = ctx
        .store
        .tenant_by_name(&client.spec.tenant_ref.name)
        .await?
        .filter(|t| t.namespace == namespace)
        && let Some(stored) = ctx.store.oauth_client(stored_tenant.id, name).await?
        && stored.owner_uid == owner_uid
    {
        remove(ctx, effects, &stored_tenant, &stored).await?;
    }
    if let Some(secret_name) = &client.spec.secret_name
        && let Some(found) = effects.secrets.get(namespace, secret_name).await?
        && owned_by_resource(&found, secret_owner(client, owner_uid))
    {
        effects.secrets.delete(namespace, secret_name).await?;
    }
    Ok(())
}

/// Removes a client whose resource is gone: every session issued to it is revoked (in the
/// store and on every gateway replica), then the client and its secrets are deleted.
/// Returns how many sessions were revoked.
pub async fn remove(
    ctx: &Context,
    effects: &Effects,
    stored_tenant: &Tenant,
    stored: &keygate_core::store::OAuthClient,
) -> Result<usize, ReconcileError> {
    let now = ctx.clock.now();
    // Sessions first: were the client deleted first and this failed, the next pass would
    // no longer find the client whose sessions are still open.
    let revoked = ctx
        .store
        .revoke_client_sessions(stored_tenant.id, &stored.client_id, now)
        .await?;
    if let Some(revocations) = &effects.revocations {
        for session in &revoked {
            if let Err(e) = revocations
                .revoke(&session.to_string(), SESSION_REVOCATION_TTL)
                .await
            {
                tracing::warn!(session = %session, error = %e, "could not push a session revocation to gateway replicas; they refuse it after their next store check");
            }
        }
    }
    ctx.store
        .delete_oauth_client(stored_tenant.id, stored.id)
        .await?;
    tracing::info!(
        tenant = %stored_tenant.name,
        client_id = %stored.client_id,
        sessions = revoked.len(),
        "OAuthClient deleted: client removed and its sessions revoked"
    );
    Ok(revoked.len())
}

/// Whether an owned Secret file belongs to an OAuthClient (so the ApiKey sweep leaves it).
pub fn is_client_secret(secret: &k8s_openapi::api::core::v1::Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LABEL_OAUTH_CLIENT))
}
