//! Issuing an ApiKey's key: the stored row first, then the Secret, then retiring the
//! previous key as the reason for issuing demands, announced by an Event.

use super::{Grants, Issue, generate, object_ref, push_change, revoke, secret_for};
use crate::effects::{Effects, Event, EventKind};
use crate::{Context, ReconcileError};
use chrono::{DateTime, Duration, Utc};
use keygate_core::store::{ApiKeyRecord, NewApiKey};
use keygate_crds::ApiKey;

/// Issues a new key: stores it, writes the Secret, then retires the previous key as `why`
/// demands and tells people through an Event.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
pub(super) async fn issue_key(
    ctx: &Context,
    effects: &Effects,
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
    effects
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
            push_change(effects, old).await;
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
            revoke(ctx, effects, stored_tenant.id, old, now).await?;
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
    effects.events.publish(&object_ref(key), event).await;
    Ok(record)
}
