//! One forward-auth check, whatever the proxy's dialect: the HTTP endpoint, the gRPC
//! `Authorization/Check` service and `keygate explain` all call [`run`] with what their
//! proxy told them (the requirements text, the client's headers, the original request) and
//! turn its [`Verdict`] into their own answer. One `decide`, several adapters.
//!
//! Steps: read the requirements (a misconfiguration denies with 403 and is logged once),
//! find the tenant (the identity service's cache), check the client's address against the
//! tenant's `network` lists (only when it has any), take the credential, reuse a proven
//! identity from the cache (checked against the replica-local revocation set on every
//! request) or ask the [`Authenticator`], then [`decision::decide_traced`], and on success
//! the upstream JWT when the route asks for one. Each step can be told to a [`Trace`].

use super::cache::{Lookup, ProvenIdentity, Standing};
use super::decision::{self, Check, Refusal};
use super::denial::SignIn;
use super::reason::{DecisionId, Reason};
use super::request::{self, Credential, Inbound};
use super::requirements::{self, Requirements};
use super::{API_KEY_RECHECK, Denial, ForwardAuthState, SESSION_RECHECK};
use crate::AppState;
use crate::identity::{AuthError, CredentialKind, Identity, LiveTenant, UpstreamGrant};
use crate::return_url;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use keygate_core::crypto::sha256_parts;
use keygate_core::ephemeral::changed_notice;
use std::sync::Arc;

/// The outcome of one check.
#[derive(Debug)]
pub struct Verdict {
    /// This decision's id (`X-Keygate-Decision-Id`, the log).
    pub id: DecisionId,
    /// The tenant the requirements named, when it was found.
    pub tenant: Option<Arc<LiveTenant>>,
    /// The kind of credential presented (a [`super::metrics::CREDENTIALS`] label).
    pub credential: &'static str,
    /// Let through, or why not.
    pub result: Result<Allowed, Denial>,
}

impl Verdict {
    /// The stable reason word of the decision.
    pub fn reason(&self) -> Reason {
        match &self.result {
            Ok(_) => Reason::Allowed,
            Err(denial) => denial.reason(),
        }
    }
}

/// What a request that may pass carries upstream.
#[derive(Debug)]
pub struct Allowed {
    /// The identity with its rendered identity headers.
    pub proven: Arc<ProvenIdentity>,
    /// The upstream JWT, when the route asked for one (`jwt=1`).
    pub upstream_jwt: Option<Arc<str>>,
}

/// How a step of a check came out, as `keygate explain` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step held.
    Pass,
    /// The step decided a denial (or would have, had an earlier one not).
    Fail,
    /// The step did not apply (the route does not ask for it, the tenant has no lists).
    Skip,
}

/// One step of a check with its outcome and what it looked at (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// The step (`requirements`, `tenant`, `network`, `credential`, `identity`, or a
    /// requirement key such as `role`).
    pub step: String,
    /// How it came out.
    pub outcome: Outcome,
    /// What it looked at.
    pub detail: String,
}

/// Where a check tells its steps: nowhere on the hot path, a list for `keygate explain`.
/// The detail text is built only when the steps are kept.
#[derive(Debug, Default)]
pub struct Trace {
    steps: Option<Vec<Step>>,
}

impl Trace {
    /// A trace that keeps nothing (the live checks).
    pub fn off() -> Self {
        Self { steps: None }
    }

    /// A trace that keeps every step.
    pub fn on() -> Self {
        Self {
            steps: Some(Vec::new()),
        }
    }

    fn note(&mut self, step: &'static str, outcome: Outcome, detail: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.steps {
            steps.push(Step {
                step: step.to_owned(),
                outcome,
                detail: detail(),
            });
        }
    }

    /// The steps kept, in order.
    pub fn into_steps(self) -> Vec<Step> {
        self.steps.unwrap_or_default()
    }
}

/// What an adapter hands the check.
#[derive(Debug)]
pub struct Input<'a> {
    /// The requirements text (query-string syntax), wherever the dialect carries it.
    pub requirements: &'a str,
    /// The client's request headers (credentials are read from them).
    pub headers: &'a HeaderMap,
    /// The original request as the proxy described it.
    pub inbound: Inbound<'a>,
}

/// One check; counts nothing and logs only misconfigurations (see [`record`]).
pub async fn run(state: &AppState, input: &Input<'_>, trace: &mut Trace) -> Verdict {
    let mut found = Found {
        tenant: None,
        credential: "none",
    };
    let result = authorize(state, input, trace, &mut found).await;
    Verdict {
        id: DecisionId::next(),
        tenant: found.tenant,
        credential: found.credential,
        result,
    }
}

/// What a check learnt on the way, whether or not it allowed.
struct Found {
    tenant: Option<Arc<LiveTenant>>,
    credential: &'static str,
}

/// Counts a live decision by proxy, outcome and reason, and logs it: denials at INFO with
/// their decision id and reason (the id the client got in `X-Keygate-Decision-Id`), allows
/// at DEBUG.
pub fn record(fa: &ForwardAuthState, proxy: request::Proxy, verdict: &Verdict) {
    let reason = verdict.reason();
    fa.metrics.reason(reason, verdict.credential);
    let tenant = verdict.tenant.as_ref().map_or("", |t| t.name());
    match &verdict.result {
        Ok(allowed) => {
            fa.metrics.decision(proxy, "allow");
            tracing::debug!(
                decision_id = %verdict.id,
                proxy = proxy.label(),
                tenant,
                subject = %allowed.proven.identity.subject,
                "forward-auth allowed"
            );
        }
        Err(denial) => {
            fa.metrics.decision(proxy, denial.outcome());
            tracing::info!(
                decision_id = %verdict.id,
                proxy = proxy.label(),
                tenant,
                reason = reason.as_str(),
                "forward-auth denied"
            );
        }
    }
}

async fn authorize(
    state: &AppState,
    input: &Input<'_>,
    trace: &mut Trace,
    found: &mut Found,
) -> Result<Allowed, Denial> {
    let fa = &state.forward_auth;
    let raw = input.requirements;
    let inbound = &input.inbound;
    let requirements = match fa.requirements.parse(raw) {
        Ok(r) => r,
        Err(e) => {
            trace.note("requirements", Outcome::Fail, || e.to_string());
            fa.misconfigured(raw, &e);
            return Err(Denial::Misconfigured);
        }
    };
    trace.note("requirements", Outcome::Pass, || raw.to_owned());
    let tenant = match tenant(state, &requirements, raw).await {
        Ok(t) => t,
        Err(denial) => {
            trace.note("tenant", Outcome::Fail, || {
                format!("{}: {}", requirements.tenant, denial.reason())
            });
            return Err(denial);
        }
    };
    trace.note("tenant", Outcome::Pass, || tenant.name().to_owned());
    found.tenant = Some(tenant.clone());
    // Before the credential is looked at; the address is worked out only for a tenant with
    // network lists, so the common check does not pay for it.
    let network = &tenant.settings.network;
    if network.is_restricted() {
        let ip = inbound.client_ip();
        if !network.permits(ip) {
            trace.note("network", Outcome::Fail, || {
                format!("{} is outside the tenant's network lists", shown(ip))
            });
            return Err(Denial::NetworkDenied);
        }
        trace.note("network", Outcome::Pass, || {
            format!("{} is inside the tenant's network lists", shown(ip))
        });
    } else {
        trace.note("network", Outcome::Skip, || {
            "the tenant has no network lists".into()
        });
    }
    let now = state.clock.now();
    let Some(credential) = request::credential(
        input.headers,
        state.session_cookie(&tenant).name(),
        state.cookie_mode.host_session_cookie(),
    ) else {
        trace.note("credential", Outcome::Fail, || "none presented".into());
        return Err(unauthenticated(
            state,
            &tenant,
            inbound,
            Reason::NoCredentials,
        ));
    };
    found.credential = credential.label();
    trace.note(
        "credential",
        if credential == Credential::Malformed {
            Outcome::Fail
        } else {
            Outcome::Pass
        },
        || format!("{credential:?}").replace("(***)", ""),
    );
    let (key, proven) = match identify(state, &tenant, &credential, now, trace).await {
        Ok(found) => found,
        Err(e) => {
            let reason = refused(&credential, &e);
            trace.note("identity", Outcome::Fail, || reason.to_string());
            return Err(match e {
                AuthError::Unavailable => Denial::Unavailable,
                _ => unauthenticated(state, &tenant, inbound, reason),
            });
        }
    };
    if let Some(api_key) = proven.identity.api_key {
        state.identity.record_api_key_use(tenant.row.id, api_key);
    }
    let identity = &proven.identity;
    decision::decide_traced(
        &requirements,
        inbound.method.as_ref(),
        identity,
        now,
        &mut |c: Check| {
            let outcome = match (c.asked, c.met) {
                (false, _) => Outcome::Skip,
                (true, true) => Outcome::Pass,
                (true, false) => Outcome::Fail,
            };
            trace.note(c.key, outcome, || {
                requirement_detail(c.key, &requirements, inbound, identity, now)
            });
        },
    )
    .map_err(|refusal| forbidden(state, &tenant, inbound, refusal))?;
    let grant = requirements
        .upstream_jwt
        .then(|| upstream_grant(fa, &requirements, inbound, raw))
        .transpose()?;
    let upstream_jwt = match grant {
        Some(grant) => Some(upstream_token(state, &tenant, &proven, grant, &key, now).await?),
        None => None,
    };
    Ok(Allowed {
        proven,
        upstream_jwt,
    })
}

/// `a,b,c`, or `none`.
fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(",")
    }
}

fn shown(ip: Option<std::net::IpAddr>) -> String {
    ip.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
}

/// What a requirement check compared, for `keygate explain`.
fn requirement_detail(
    key: &str,
    req: &Requirements,
    inbound: &Inbound<'_>,
    id: &Identity,
    now: DateTime<Utc>,
) -> String {
    match key {
        "method" => format!(
            "asked {}; the request's is {}",
            list(req.methods.iter().map(axum::http::Method::as_str)),
            inbound.method.as_ref().map_or("unknown", |m| m.as_str())
        ),
        "role" => format!(
            "any of {}; held {}",
            list(req.any_role.iter().map(String::as_str)),
            list(id.roles.iter().map(String::as_str))
        ),
        "perm" => format!(
            "all of {}; held {}",
            list(req.permissions.iter().map(String::as_str)),
            list(id.permissions.iter().map(String::as_str))
        ),
        "scope" => format!(
            "all of {}; granted {}",
            list(req.scopes.iter().map(String::as_str)),
            list(id.scopes.iter().map(String::as_str))
        ),
        "mfa" => format!("amr {}", list(id.amr.iter().map(String::as_str))),
        "acr" => format!(
            "any of {}; reached {}",
            list(req.acr_values.iter().map(String::as_str)),
            id.acr.as_deref().unwrap_or("none")
        ),
        "max_age" => match id.auth_time {
            Some(t) => format!(
                "at most {} s; authenticated {} s ago",
                req.max_age.unwrap_or_default(),
                now.signed_duration_since(t).num_seconds()
            ),
            None => format!(
                "at most {} s; no authentication time",
                req.max_age.unwrap_or_default()
            ),
        },
        _ => String::new(),
    }
}

/// The reason a presented credential was refused.
fn refused(credential: &Credential<'_>, e: &AuthError) -> Reason {
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
    let identity = match credential {
        Credential::AccessToken(v) => fa.authenticator.access_token(tenant, v).await,
        Credential::ApiKey(v) => fa.authenticator.api_key(tenant, v).await,
        Credential::Session(v) => fa.authenticator.session(tenant, v).await,
        Credential::HostSession(v) => fa.authenticator.host_session(tenant, v).await,
        Credential::Malformed => return Err(AuthError::Invalid),
    }
    .inspect_err(|_| fa.upstream_tokens.remove(&key))?;
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

fn described(id: &Identity, source: &str) -> String {
    format!(
        "{} ({:?}, from the {source}); roles {}; amr {}; acr {}",
        id.subject,
        id.kind,
        list(id.roles.iter().map(String::as_str)),
        list(id.amr.iter().map(String::as_str)),
        id.acr.as_deref().unwrap_or("none"),
    )
}

/// The upstream JWT for `grant`: reused for 30 s per credential and route, else minted.
/// The route asked for a token it cannot get: deny rather than pass a request the upstream
/// will treat as anonymous.
async fn upstream_token(
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
fn unauthenticated(
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

fn forbidden(state: &AppState, tenant: &LiveTenant, inbound: &Inbound, refusal: Refusal) -> Denial {
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
