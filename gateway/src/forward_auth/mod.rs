//! `/forward-auth`: the check ingress-nginx (`auth-url`), Traefik (`ForwardAuth`) and Envoy
//! (`ext_authz`, HTTP) make before every request to a protected app.
//!
//! A check goes in named steps (`authorize`): read the requirements (a misconfiguration
//! denies with 403 and is logged once), find the tenant (the identity service's cache), check
//! the client's address against the tenant's `network` lists (only when it has any), take
//! the credential, reuse a proven identity from the cache (checked against the replica-local
//! revocation set on every request) or ask the [`Authenticator`], then
//! [`decision::decide`]. Answers are 200 with identity headers, or a [`Denial`]: 401 with
//! `WWW-Authenticate` (or a 302 to sign in for browsers behind proxies that relay
//! redirects), 403 (with an RFC 9470 challenge when stronger sign-in would help), and 503
//! only when a dependency is down. Bad input never yields a 5xx: ingress-nginx would show
//! the user a server error.

pub mod cache;
pub mod decision;
pub mod denial;
mod metrics;
pub mod request;
pub mod requirements;

pub use denial::Denial;
pub use metrics::ForwardAuthMetrics;

use crate::AppState;
use crate::identity::{
    AuthError, Authenticator, CredentialKind, Identity, LiveTenant, UpstreamGrant,
};
use crate::return_url;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use cache::{
    Lookup, MisconfigLogged, ProvenIdentity, RequirementsCache, Standing, UpstreamTokens,
    VerifiedCache,
};
use chrono::{DateTime, Utc};
use decision::Refusal;
use keygate_core::crypto::sha256_parts;
use keygate_core::ephemeral::changed_notice;
use request::{Credential, Inbound};
use requirements::Requirements;
use std::net::SocketAddr;
use std::sync::Arc;

/// Header Envoy adds to each check with the route's requirements (query-string syntax).
pub const REQUIREMENTS_HEADER: &str = "x-keygate-requirements";
/// Header carrying the short-lived upstream JWT when `jwt=1` is asked.
pub const UPSTREAM_JWT_HEADER: &str = "x-keygate-jwt";
/// How long a resolved API key is reused before the authenticator is asked again
/// (database-side revocations without a pub/sub message take at most this long to bite).
const API_KEY_RECHECK: chrono::Duration = chrono::Duration::seconds(30);
/// How long a resolved session is reused before the authenticator is asked again.
const SESSION_RECHECK: chrono::Duration = chrono::Duration::seconds(5);

/// Forward-auth's own state: its caches, its counters and the authenticator it fills the
/// identity cache from (the identity service, or a test's stand-in).
#[derive(Debug)]
pub struct ForwardAuthState {
    authenticator: Arc<dyn Authenticator>,
    metrics: ForwardAuthMetrics,
    verified: VerifiedCache,
    upstream_tokens: UpstreamTokens,
    requirements: RequirementsCache,
}

impl ForwardAuthState {
    /// Empty caches over `authenticator`, counting into `metrics`.
    pub fn new(authenticator: Arc<dyn Authenticator>, metrics: ForwardAuthMetrics) -> Self {
        Self {
            authenticator,
            metrics,
            verified: VerifiedCache::default(),
            upstream_tokens: UpstreamTokens::default(),
            requirements: RequirementsCache::default(),
        }
    }

    /// Logs a misconfigured check (rate-limited) and counts the lines left out.
    fn misconfigured(&self, raw: &str, error: &requirements::RequirementsError) {
        if self
            .requirements
            .misconfigured(raw, error, std::time::Instant::now())
            == MisconfigLogged::Suppressed
        {
            self.metrics.misconfiguration_log_suppressed();
        }
    }
}

/// `/forward-auth`, `/forward-auth/` and `/forward-auth/{*path}` (Envoy), any method.
///
/// The routes hold their own `Arc` of the state: axum clones a route's state on every
/// request, and one reference count is cheaper on the hot path than every field of
/// [`AppState`].
pub fn router<S: Clone + Send + Sync + 'static>(state: &AppState) -> Router<S> {
    Router::new()
        .route("/forward-auth", any(check))
        .route("/forward-auth/", any(check))
        .route("/forward-auth/{*path}", any(check))
        .with_state(Arc::new(state.clone()))
}

async fn check(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let (raw_requirements, envoy_suffix) = requirements_text(&parts);
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let inbound = request::inbound(
        &parts.headers,
        &parts.method,
        envoy_suffix,
        peer,
        &state.trusted_proxies,
    );
    let metrics = &state.forward_auth.metrics;
    match authorize(&state, &parts, &inbound, raw_requirements).await {
        Ok(response) => {
            metrics.decision(inbound.proxy, "allow");
            response
        }
        Err(denial) => {
            metrics.decision(inbound.proxy, denial.outcome());
            denial.into_response()
        }
    }
}

/// The requirements text and, for Envoy, the original path and query. nginx and Traefik put
/// requirements in our query. Envoy appends the original path and query to `/forward-auth`
/// and sends requirements in the header it adds (a client-sent copy is replaced by Envoy).
fn requirements_text(parts: &Parts) -> (&str, Option<&str>) {
    let envoy = parts
        .uri
        .path()
        .strip_prefix("/forward-auth")
        .is_some_and(|s| !s.is_empty());
    if !envoy {
        return (parts.uri.query().unwrap_or(""), None);
    }
    let raw = parts
        .headers
        .get(REQUIREMENTS_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let original = parts
        .uri
        .path_and_query()
        .and_then(|pq| pq.as_str().strip_prefix("/forward-auth"));
    (raw, original)
}

/// One check, step by step: requirements, tenant, credential, identity, decision, answer.
async fn authorize(
    state: &AppState,
    parts: &Parts,
    inbound: &Inbound<'_>,
    raw_requirements: &str,
) -> Result<Response, Denial> {
    let fa = &state.forward_auth;
    let requirements = fa.requirements.parse(raw_requirements).map_err(|e| {
        fa.misconfigured(raw_requirements, &e);
        Denial::Misconfigured
    })?;
    let tenant = tenant(state, &requirements, raw_requirements).await?;
    // Before the credential is looked at; the address is worked out only for a tenant with
    // network lists, so the common check does not pay for it.
    let network = &tenant.settings.network;
    if network.is_restricted() && !network.permits(inbound.client_ip()) {
        return Err(Denial::NetworkDenied);
    }
    let now = state.clock.now();
    let credential = request::credential(
        &parts.headers,
        state.session_cookie(&tenant).name(),
        state.cookie_mode.host_session_cookie(),
    )
    .ok_or_else(|| unauthenticated(state, &tenant, inbound, false))?;
    let (key, proven) = identify(state, &tenant, &credential, now)
        .await
        .map_err(|e| match e {
            AuthError::Invalid => unauthenticated(state, &tenant, inbound, true),
            AuthError::Unavailable => Denial::Unavailable,
        })?;
    if let Some(api_key) = proven.identity.api_key {
        state.identity.record_api_key_use(tenant.row.id, api_key);
    }
    decision::decide(
        &requirements,
        inbound.method.as_ref(),
        &proven.identity,
        now,
    )
    .map_err(|refusal| forbidden(state, &tenant, inbound, refusal))?;
    let grant = requirements
        .upstream_jwt
        .then(|| upstream_grant(fa, &requirements, inbound, raw_requirements))
        .transpose()?;
    allowed(state, &tenant, &proven, grant, &key, now).await
}

/// What the upstream token of this check is for: the protected host (its audience) and
/// the permissions the route demanded. Without a host (a direct call, Traefik from an
/// untrusted peer) no token can be addressed: a misconfiguration, denied and logged.
fn upstream_grant(
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

/// The live tenant the requirements name; a missing one is a misconfiguration (logged once),
/// an unreadable store an outage.
async fn tenant(
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

/// The identity behind `credential` and the credential's cache key, from the cache when
/// proven before, checked against revocations either way.
async fn identify(
    state: &AppState,
    tenant: &LiveTenant,
    credential: &Credential<'_>,
    now: DateTime<Utc>,
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
    let revoked = |id: &Identity| id.revocation_ids.iter().any(|r| revocations.contains(r));
    // A changed-notice for the key or the session (grants edited, a step-up raised the
    // session) makes the cached proof stale.
    let standing = |id: &Identity| {
        if revoked(id) {
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
    };

    match fa.verified.lookup(&key, now, epoch, standing) {
        Lookup::Hit(id) => {
            fa.metrics.lookup("cache");
            return Ok((key, id));
        }
        Lookup::Revoked => {
            fa.metrics.lookup("cache");
            fa.upstream_tokens.remove(&key);
            return Err(AuthError::Invalid);
        }
        Lookup::Miss => {}
    }
    fa.metrics.lookup("resolver");
    // A credential that no longer checks out (signed out, expired) takes the upstream tokens
    // minted for it along, even those minted by a cached proof before.
    let identity = match credential {
        Credential::AccessToken(v) => fa.authenticator.access_token(tenant, v).await,
        Credential::ApiKey(v) => fa.authenticator.api_key(tenant, v).await,
        Credential::Session(v) => fa.authenticator.session(tenant, v).await,
        Credential::HostSession(v) => fa.authenticator.host_session(tenant, v).await,
        Credential::Malformed => return Err(AuthError::Invalid),
    }
    .inspect_err(|_| fa.upstream_tokens.remove(&key))?;
    // Belt and braces: an authenticator must never hand us another tenant's identity.
    if identity.tenant_id != tenant.row.id || identity.expires_at <= now || revoked(&identity) {
        fa.upstream_tokens.remove(&key);
        return Err(AuthError::Invalid);
    }
    let valid_until = match identity.kind {
        CredentialKind::AccessToken => identity.expires_at,
        CredentialKind::ApiKey => identity.expires_at.min(now + API_KEY_RECHECK),
        CredentialKind::Session => identity.expires_at.min(now + SESSION_RECHECK),
    };
    let proven = Arc::new(ProvenIdentity::new(identity, tenant.name()));
    fa.verified
        .insert(key, proven.clone(), valid_until, now, epoch);
    Ok((key, proven))
}

/// The 200 answer: the identity headers rendered when the identity was proven, the upstream
/// JWT when the route asks for one (`grant`), and `no-store`.
async fn allowed(
    state: &AppState,
    tenant: &LiveTenant,
    proven: &ProvenIdentity,
    grant: Option<UpstreamGrant>,
    key: &[u8; 32],
    now: DateTime<Utc>,
) -> Result<Response, Denial> {
    let fa = &state.forward_auth;
    let mut response = StatusCode::OK.into_response();
    // Room for every identity header at once: no regrowth of the map per answer.
    let headers = response.headers_mut();
    headers.reserve(10);
    for (name, value) in proven.headers() {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(grant) = grant {
        let jwt = match fa.upstream_tokens.get(key, &grant, now) {
            Some(jwt) => jwt,
            // The route asked for a token it cannot get: deny rather than pass a request
            // the upstream will treat as anonymous.
            None => {
                let jwt: Arc<str> = fa
                    .authenticator
                    .upstream_token(tenant, &proven.identity, &grant)
                    .await
                    .map_err(|_| Denial::Unavailable)?
                    .into();
                fa.upstream_tokens.insert(*key, grant, jwt.clone(), now);
                jwt
            }
        };
        if let Ok(v) = HeaderValue::from_str(&jwt) {
            headers.insert(HeaderName::from_static(UPSTREAM_JWT_HEADER), v);
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
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
fn unauthenticated(
    state: &AppState,
    tenant: &LiveTenant,
    inbound: &Inbound,
    presented: bool,
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
    let sign_in = redirects(inbound).then(|| {
        let rd = return_url(state, tenant, inbound);
        match rd.as_deref() {
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
        .unwrap_or_else(|| return_url::signin_url(&state.public_url, tenant.name(), rd.as_deref()))
    });
    Denial::Unauthenticated {
        realm: tenant.name().to_owned(),
        display_name: tenant.display_name().to_owned(),
        presented,
        sign_in,
    }
}

fn forbidden(state: &AppState, tenant: &LiveTenant, inbound: &Inbound, refusal: Refusal) -> Denial {
    let step_up = match &refusal {
        Refusal::StepUp {
            acr_values,
            max_age,
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
