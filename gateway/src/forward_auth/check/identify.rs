//! Who a check is about: the tenant its requirements name and the identity behind the
//! presented credential, from the cache of proven identities when it was proven before
//! (checked against the replica-local revocation set on every request), else from the
//! [`Authenticator`](crate::identity::Authenticator).

use super::trace::{Outcome, Trace, described};
use crate::AppState;
use crate::forward_auth::cache::{Lookup, ProvenIdentity, Standing};
use crate::forward_auth::reason::Reason;
use crate::forward_auth::request::Credential;
use crate::forward_auth::requirements::{self, Requirements};
use crate::forward_auth::{API_KEY_RECHECK, Denial, SESSION_RECHECK};
use crate::identity::{AuthError, CredentialKind, Identity, LiveTenant};
use chrono::{DateTime, Utc};
use keygate_core::crypto::sha256_parts;
use keygate_core::ephemeral::{RevocationSet, changed_notice};
use std::sync::Arc;

/// The live tenant the requirements name; a missing one is a misconfiguration (logged once),
/// an unreadable store an outage.
pub(super) async fn tenant(
    state: &AppState,
    requirements: &Requirements,
    raw: &str,
) -> Result<Arc<LiveTenant>, Denial> {
    use crate::identity::IdentityError as E;
    match state.identity.tenant(&requirements.tenant).await {
        Ok(t) => Ok(t),
        Err(E::TenantNotFound | E::Internal(_)) => {
            state.forward_auth.misconfigured(
                raw,
                &requirements::RequirementsError::BadValue {
                    key: "tenant",
                    value: format!("{} (no such live tenant)", requirements.tenant),
                },
            );
            Err(Denial::Misconfigured)
        }
        Err(e) => {
            tracing::warn!(error = %e, "forward-auth cannot read tenants");
            Err(Denial::Unavailable)
        }
    }
}

/// The reason a presented credential was refused.
pub(super) fn refused(credential: &Credential<'_>, e: &AuthError) -> Reason {
    use AuthError as E;
    match (credential, e) {
        (_, E::Unavailable) => Reason::Unavailable,
        (Credential::Malformed, _) => Reason::CredentialMalformed,
        (Credential::AccessToken(_), E::Expired) => Reason::TokenExpired,
        (Credential::AccessToken(_), E::Revoked) => Reason::TokenRevoked,
        (Credential::AccessToken(_), E::Invalid) => Reason::TokenInvalid,
        (Credential::ApiKey(_), E::Expired) => Reason::ApiKeyExpired,
        (Credential::ApiKey(_), E::Revoked) => Reason::ApiKeyRevoked,
        (Credential::ApiKey(_), E::Invalid) => Reason::ApiKeyInvalid,
        (Credential::Session(_) | Credential::HostSession(_), E::Expired) => Reason::SessionExpired,
        (Credential::Session(_) | Credential::HostSession(_), E::Revoked) => Reason::SessionRevoked,
        (Credential::Session(_) | Credential::HostSession(_), E::Invalid) => Reason::SessionInvalid,
    }
}

/// The identity behind `credential` and the credential's cache key, from the cache when
/// proven before, checked against revocations either way.
pub(super) async fn identify(
    state: &AppState,
    tenant: &LiveTenant,
    credential: &Credential<'_>,
    now: DateTime<Utc>,
    trace: &mut Trace,
) -> Result<([u8; 32], Arc<ProvenIdentity>), AuthError> {
    let fa = &state.forward_auth;
    let (tag, value) = match credential {
        Credential::AccessToken(v) => (b'j', v),
        Credential::ApiKey(v) => (b'k', v),
        Credential::Session(v) => (b's', v),
        Credential::HostSession(v) => (b'h', v),
        Credential::Malformed => return Err(AuthError::Invalid),
    };
    let key = sha256_parts(&[tenant.row.id.0.as_bytes(), &[tag], value.as_bytes()]);
    let revocations = state.identity.revocations();
    // Read before any check: a revocation landing during this request moves it on.
    let epoch = revocations.epoch();
    let revoked = |id: &Identity| is_revoked(revocations, id);
    let standing = |id: &Identity| standing(revocations, id);

    match fa.verified.lookup(&key, now, epoch, standing) {
        Lookup::Hit(id) => {
            fa.metrics.lookup("cache");
            trace.note("identity", Outcome::Pass, || {
                described(&id.identity, "cache")
            });
            return Ok((key, id));
        }
        Lookup::Revoked => {
            fa.metrics.lookup("cache");
            fa.upstream_tokens.remove(&key);
            return Err(AuthError::Revoked);
        }
        Lookup::Miss => {}
    }
    fa.metrics.lookup("resolver");
    // A credential that no longer checks out (signed out, expired) takes the upstream tokens
    // minted for it along, even those minted by a cached proof before.
    let identity = match resolve(state, tenant, credential).await {
        Ok(identity) => identity,
        // The store (or Redis) cannot be asked: a credential proven before keeps working
        // until its own expiry, within the outage limit, unless it was revoked meanwhile.
        Err(AuthError::Unavailable) => match fa.verified.last_known(&key, now, standing) {
            Some(id) => {
                fa.metrics.lookup("outage");
                trace.note("identity", Outcome::Pass, || {
                    described(&id.identity, "cache, kept through an outage")
                });
                return Ok((key, id));
            }
            None => return Err(AuthError::Unavailable),
        },
        Err(e) => {
            fa.upstream_tokens.remove(&key);
            return Err(e);
        }
    };
    // Belt and braces: an authenticator must never hand us another tenant's identity.
    if identity.tenant_id != tenant.row.id {
        fa.upstream_tokens.remove(&key);
        return Err(AuthError::Invalid);
    }
    if identity.expires_at <= now || revoked(&identity) {
        fa.upstream_tokens.remove(&key);
        return Err(if revoked(&identity) {
            AuthError::Revoked
        } else {
            AuthError::Expired
        });
    }
    let valid_until = match identity.kind {
        CredentialKind::AccessToken => identity.expires_at,
        CredentialKind::ApiKey => identity.expires_at.min(now + API_KEY_RECHECK),
        CredentialKind::Session => identity.expires_at.min(now + SESSION_RECHECK),
    };
    trace.note("identity", Outcome::Pass, || {
        described(&identity, "resolver")
    });
    let proven = Arc::new(ProvenIdentity::new(identity, tenant.name()));
    fa.verified
        .insert(key, proven.clone(), valid_until, now, epoch);
    Ok((key, proven))
}

/// The identity service's answer for `credential` (a token verification, or a store lookup
/// for API keys and cookies).
async fn resolve(
    state: &AppState,
    tenant: &LiveTenant,
    credential: &Credential<'_>,
) -> Result<Identity, AuthError> {
    let authenticator = &state.forward_auth.authenticator;
    match credential {
        Credential::AccessToken(v) => authenticator.access_token(tenant, v).await,
        Credential::ApiKey(v) => authenticator.api_key(tenant, v).await,
        Credential::Session(v) => authenticator.session(tenant, v).await,
        Credential::HostSession(v) => authenticator.host_session(tenant, v).await,
        Credential::Malformed => Err(AuthError::Invalid),
    }
}

/// Whether one of the identity's revocation ids (its session, API key, person…) is revoked.
fn is_revoked(revocations: &RevocationSet, id: &Identity) -> bool {
    id.revocation_ids.iter().any(|r| revocations.contains(r))
}

/// Whether a cached proof still stands: a changed-notice for its key or session (grants
/// edited, a step-up raised the session) makes it stale without revoking it.
fn standing(revocations: &RevocationSet, id: &Identity) -> Standing {
    if is_revoked(revocations, id) {
        Standing::Revoked
    } else if id
        .api_key
        .map(|k| k.to_string())
        .into_iter()
        .chain(id.session_id.map(|s| s.to_string()))
        .any(|changed| revocations.contains(&changed_notice(&changed)))
    {
        Standing::Changed
    } else {
        Standing::Unchanged
    }
}
