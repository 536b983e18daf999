//! What a check hands back besides yes or no: the [`Denial`] of a request without a usable
//! credential (with where a browser signs in) or with unmet requirements (with where it
//! steps up), and the upstream JWT of an allowed one.

use crate::AppState;
use crate::forward_auth::cache::ProvenIdentity;
use crate::forward_auth::decision::Refusal;
use crate::forward_auth::denial::SignIn;
use crate::forward_auth::reason::Reason;
use crate::forward_auth::request::Inbound;
use crate::forward_auth::requirements::{self, Requirements};
use crate::forward_auth::{Denial, ForwardAuthState};
use crate::identity::{LiveTenant, UpstreamGrant};
use crate::return_url;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// What the upstream token of this check is for: the protected host (its audience) and
/// the permissions the route demanded. Without a host (a direct call, Traefik from an
/// untrusted peer) no token can be addressed: a misconfiguration, denied and logged.
pub(super) fn upstream_grant(
    fa: &ForwardAuthState,
    requirements: &Requirements,
    inbound: &Inbound<'_>,
    raw_requirements: &str,
) -> Result<UpstreamGrant, Denial> {
    let Some(audience) = inbound.host() else {
        fa.misconfigured(
            raw_requirements,
            &requirements::RequirementsError::BadValue {
                key: "jwt",
                value: "1 (the proxy sent no original host to address the token to)".into(),
            },
        );
        return Err(Denial::Misconfigured);
    };
    Ok(UpstreamGrant {
        audience,
        permissions: requirements.permissions.iter().cloned().collect(),
    })
}

/// The upstream JWT for `grant`: reused for 30 s per credential and route, else minted.
/// The route asked for a token it cannot get: deny rather than pass a request the upstream
/// will treat as anonymous.
pub(super) async fn upstream_token(
    state: &AppState,
    tenant: &LiveTenant,
    proven: &ProvenIdentity,
    grant: UpstreamGrant,
    key: &[u8; 32],
    now: DateTime<Utc>,
) -> Result<Arc<str>, Denial> {
    let fa = &state.forward_auth;
    if let Some(jwt) = fa.upstream_tokens.get(key, &grant, now) {
        return Ok(jwt);
    }
    let jwt: Arc<str> = fa
        .authenticator
        .upstream_token(tenant, &proven.identity, &grant)
        .await
        .map_err(|_| Denial::Unavailable)?
        .into();
    fa.upstream_tokens.insert(*key, grant, jwt.clone(), now);
    Ok(jwt)
}

/// The allowed return URL of the original request, if the proxy told us one.
fn return_url(state: &AppState, tenant: &LiveTenant, inbound: &Inbound) -> Option<String> {
    inbound.url().and_then(|u| {
        return_url::safe_return_url(
            &u,
            &tenant.settings.redirects.allowed_origins,
            &state.public_url,
        )
    })
}

/// Whether a denial should be a redirect: a browser behind a proxy that relays them.
fn redirects(inbound: &Inbound) -> bool {
    inbound.wants_html && inbound.proxy.relays_redirects()
}

/// The denial of a request without a usable credential. A browser is sent to sign in: on
/// a host the tenant's session cookie never reaches (another host than the gateway's, not
/// under its `sessions.cookieDomain`) through that host's handoff path first (which sets
/// the nonce cookie the handoff code will be bound to).
pub(super) fn unauthenticated(
    state: &AppState,
    tenant: &LiveTenant,
    inbound: &Inbound,
    reason: Reason,
) -> Denial {
    if inbound
        .url()
        .and_then(|u| url::Url::parse(&u).ok())
        .is_some_and(|u| u.path() == return_url::HANDOFF_PATH)
    {
        // The proxy checked the handoff path instead of routing it to the gateway: sending
        // the browser to it again would loop.
        state.forward_auth.misconfigured(
            return_url::HANDOFF_PATH,
            &requirements::RequirementsError::BadValue {
                key: "route",
                value: format!(
                    "{} must be routed to the gateway, not checked",
                    return_url::HANDOFF_PATH
                ),
            },
        );
        return Denial::Misconfigured;
    }
    let how: Option<fn(String) -> SignIn> = if redirects(inbound) {
        Some(SignIn::Redirect)
    } else if inbound.proxy.hints_sign_in() {
        Some(SignIn::Hint)
    } else {
        None
    };
    let sign_in = how.map(|how| {
        let rd = return_url(state, tenant, inbound);
        let url = match rd.as_deref() {
            Some(rd)
                if return_url::needs_handoff(
                    rd,
                    &state.public_url,
                    tenant.settings.sessions.cookie_domain.as_deref(),
                ) =>
            {
                return_url::handoff_start_url(rd, tenant.name())
            }
            _ => None,
        }
        .unwrap_or_else(|| return_url::signin_url(&state.public_url, tenant.name(), rd.as_deref()));
        how(url)
    });
    Denial::Unauthenticated {
        realm: tenant.name().to_owned(),
        display_name: tenant.display_name().to_owned(),
        reason,
        sign_in,
    }
}

/// The denial of a request whose identity does not meet the route's requirements; a
/// browser that could step up is sent to do so.
pub(super) fn forbidden(
    state: &AppState,
    tenant: &LiveTenant,
    inbound: &Inbound,
    refusal: Refusal,
) -> Denial {
    let step_up = match &refusal {
        Refusal::StepUp {
            acr_values,
            max_age,
            ..
        } if redirects(inbound) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(rd) = return_url(state, tenant, inbound) {
                q.append_pair("rd", &rd);
            }
            if !acr_values.is_empty() {
                q.append_pair("acr_values", &acr_values.join(" "));
            }
            if let Some(m) = max_age {
                q.append_pair("max_age", &m.to_string());
            }
            Some(format!(
                "{}/t/{}/step-up?{}",
                state.public_url,
                tenant.name(),
                q.finish()
            ))
        }
        _ => None,
    };
    Denial::Forbidden {
        realm: tenant.name().to_owned(),
        refusal,
        step_up,
    }
}
