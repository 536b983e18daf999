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
//!
//! The parts, by concern: `identify` finds the tenant and the identity behind the
//! credential, `answer` builds denials and the upstream JWT, `trace` tells the steps. This
//! module holds the order of the steps and the one door, [`run`].

mod answer;
mod identify;
mod trace;

pub use trace::{Outcome, Step, Trace};

use super::cache::ProvenIdentity;
use super::decision::{self, Check};
use super::reason::{DecisionId, Reason};
use super::request::{self, Credential, Inbound};
use super::requirements::Requirements;
use super::{Denial, ForwardAuthState};
use crate::AppState;
#[cfg(doc)]
use crate::identity::Authenticator;
use crate::identity::{AuthError, LiveTenant};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
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

/// The steps in order; `found` learns the tenant and the credential's kind as soon as they
/// are known (the log and the metrics name them even when a later step denies).
async fn authorize(
    state: &AppState,
    input: &Input<'_>,
    trace: &mut Trace,
    found: &mut Found,
) -> Result<Allowed, Denial> {
    let requirements = requirements(state, input.requirements, trace)?;
    let tenant = tenant(state, &requirements, input.requirements, trace).await?;
    found.tenant = Some(tenant.clone());
    network(&tenant, &input.inbound, trace)?;
    let now = state.clock.now();
    let credential = credential(state, &tenant, input, trace)?;
    found.credential = credential.label();
    let (key, proven) = match identify::identify(state, &tenant, &credential, now, trace).await {
        Ok(found) => found,
        Err(e) => {
            let reason = identify::refused(&credential, &e);
            trace.note("identity", Outcome::Fail, || reason.to_string());
            return Err(match e {
                AuthError::Unavailable => Denial::Unavailable,
                _ => answer::unauthenticated(state, &tenant, &input.inbound, reason),
            });
        }
    };
    if let Some(api_key) = proven.identity.api_key {
        state.identity.record_api_key_use(tenant.row.id, api_key);
    }
    evaluate(
        state,
        &tenant,
        &requirements,
        &input.inbound,
        &proven,
        now,
        trace,
    )?;
    let upstream_jwt = if requirements.upstream_jwt {
        let fa = &state.forward_auth;
        let grant = answer::upstream_grant(fa, &requirements, &input.inbound, input.requirements)?;
        Some(answer::upstream_token(state, &tenant, &proven, grant, &key, now).await?)
    } else {
        None
    };
    Ok(Allowed {
        proven,
        upstream_jwt,
    })
}

/// The route's requirements (parsed once per distinct text, then cached); unreadable ones
/// are a misconfiguration, logged once.
fn requirements(
    state: &AppState,
    raw: &str,
    trace: &mut Trace,
) -> Result<Arc<Requirements>, Denial> {
    let fa = &state.forward_auth;
    match fa.requirements.parse(raw) {
        Ok(r) => {
            trace.note("requirements", Outcome::Pass, || raw.to_owned());
            Ok(r)
        }
        Err(e) => {
            trace.note("requirements", Outcome::Fail, || e.to_string());
            fa.misconfigured(raw, &e);
            Err(Denial::Misconfigured)
        }
    }
}

/// The live tenant the requirements name, traced.
async fn tenant(
    state: &AppState,
    requirements: &Requirements,
    raw: &str,
    trace: &mut Trace,
) -> Result<Arc<LiveTenant>, Denial> {
    match identify::tenant(state, requirements, raw).await {
        Ok(tenant) => {
            trace.note("tenant", Outcome::Pass, || tenant.name().to_owned());
            Ok(tenant)
        }
        Err(denial) => {
            trace.note("tenant", Outcome::Fail, || {
                format!("{}: {}", requirements.tenant, denial.reason())
            });
            Err(denial)
        }
    }
}

/// The client's address against the tenant's network lists, before the credential is looked
/// at; the address is worked out only for a tenant with lists, so the common check does not
/// pay for it.
fn network(tenant: &LiveTenant, inbound: &Inbound<'_>, trace: &mut Trace) -> Result<(), Denial> {
    let network = &tenant.settings.network;
    if !network.is_restricted() {
        trace.note("network", Outcome::Skip, || {
            "the tenant has no network lists".into()
        });
        return Ok(());
    }
    let ip = inbound.client_ip();
    if !network.permits(ip) {
        trace.note("network", Outcome::Fail, || {
            format!("{} is outside the tenant's network lists", trace::shown(ip))
        });
        return Err(Denial::NetworkDenied);
    }
    trace.note("network", Outcome::Pass, || {
        format!("{} is inside the tenant's network lists", trace::shown(ip))
    });
    Ok(())
}

/// The credential the client presented (the tenant's session cookie by its name); none is
/// the denial that sends a browser to sign in.
fn credential<'a>(
    state: &AppState,
    tenant: &LiveTenant,
    input: &Input<'a>,
    trace: &mut Trace,
) -> Result<Credential<'a>, Denial> {
    let Some(credential) = request::credential(
        input.headers,
        state.session_cookie(tenant).name(),
        state.cookie_mode.host_session_cookie(),
    ) else {
        trace.note("credential", Outcome::Fail, || "none presented".into());
        return Err(answer::unauthenticated(
            state,
            tenant,
            &input.inbound,
            Reason::NoCredentials,
        ));
    };
    let outcome = if credential == Credential::Malformed {
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    trace.note("credential", outcome, || {
        format!("{credential:?}").replace("(***)", "")
    });
    Ok(credential)
}

/// The route's requirements against the proven identity ([`decision::decide_traced`]),
/// each requirement told to the trace.
fn evaluate(
    state: &AppState,
    tenant: &LiveTenant,
    requirements: &Requirements,
    inbound: &Inbound<'_>,
    proven: &ProvenIdentity,
    now: DateTime<Utc>,
    trace: &mut Trace,
) -> Result<(), Denial> {
    let identity = &proven.identity;
    decision::decide_traced(
        requirements,
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
                trace::requirement_detail(c.key, requirements, inbound, identity, now)
            });
        },
    )
    .map_err(|refusal| answer::forbidden(state, tenant, inbound, refusal))
}
