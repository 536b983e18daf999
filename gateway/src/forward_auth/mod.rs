//! `/forward-auth`: the check ingress-nginx (`auth-url`), Traefik (`ForwardAuth`) and Envoy
//! (`ext_authz`, HTTP) make before every request to a protected app (DESIGN §5).
//!
//! Order of work: read the requirements (a misconfiguration denies with 403 and is logged
//! once), find the tenant (cached), take the credential, reuse a proven identity from the
//! cache (checked against the replica-local revocation set on every request) or ask the
//! [`resolver::CredentialResolver`], then [`decision::decide`]. Answers are 200 with identity
//! headers, 401 with `WWW-Authenticate` (or a 302 to sign in for browsers behind proxies that
//! relay redirects), 403 (with an RFC 9470 challenge when stronger sign-in would help), and
//! 503 only when a dependency is down. Bad input never yields a 5xx.

pub mod cache;
pub mod decision;
mod metrics;
pub mod redirect;
pub mod request;
pub mod requirements;
pub mod resolver;

use crate::AppState;
use crate::error::problem_response;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use cache::{ApiKeyUsage, Lookup, Proven, TenantCache, TenantView, UpstreamTokens, VerifiedCache};
use chrono::{DateTime, Utc};
use decision::{CredentialKind, Identity, Refusal};
use ipnet::IpNet;
use keygate_core::crypto::sha256_parts;
use keygate_core::ephemeral::Ephemeral;
use request::{Credential, Inbound};
use requirements::Requirements;
use resolver::{CredentialResolver, ResolveError};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Header Envoy adds to each check with the route's requirements (query-string syntax).
pub const REQUIREMENTS_HEADER: &str = "x-keygate-requirements";
/// Header carrying the short-lived upstream JWT when `jwt=1` is asked.
pub const UPSTREAM_JWT_HEADER: &str = "x-keygate-jwt";
/// How long a resolved API key is reused before the resolver is asked again (database-side
/// revocations without a pub/sub message take at most this long to bite).
const API_KEY_RECHECK: chrono::Duration = chrono::Duration::seconds(30);
/// How long a resolved session is reused before the resolver is asked again.
const SESSION_RECHECK: chrono::Duration = chrono::Duration::seconds(5);
/// Most distinct misconfigurations remembered for log-once.
const MISCONFIG_MEMORY: usize = 1024;

/// How the session cookie is named and flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieMode {
    /// `__Host-keygate_session`, Secure, HttpOnly, SameSite=Lax, Path=/: production.
    Host,
    /// `keygate_session` without Secure, for `keygate dev` on plain HTTP only.
    PlainHttpDev,
}

impl CookieMode {
    /// The session cookie's name.
    pub fn session_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_session",
            Self::PlainHttpDev => "keygate_session",
        }
    }

    /// The CSRF binding cookie's name.
    pub fn csrf_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_csrf",
            Self::PlainHttpDev => "keygate_csrf",
        }
    }

    /// Whether cookies carry `Secure`.
    pub fn secure(self) -> bool {
        self == Self::Host
    }
}

/// Everything forward-auth and the sign-in pages share: resolvers, caches, settings.
#[derive(Debug)]
pub struct Edge {
    /// Revocations (read locally on every check), CSRF tokens, rate windows.
    pub ephemeral: Arc<dyn Ephemeral>,
    /// Turns credentials into identities (the identity service).
    pub resolver: Arc<dyn CredentialResolver>,
    /// Sign-in, sign-up, reset and sign-out workflows behind the pages.
    pub flows: Arc<dyn crate::pages::AccountFlows>,
    /// Peers whose `X-Forwarded-*` / `X-Real-IP` headers are believed (`KEYGATE_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Cookie naming and flags.
    pub cookie_mode: CookieMode,
    verified: VerifiedCache,
    upstream_tokens: UpstreamTokens,
    tenants: TenantCache,
    usage: Arc<ApiKeyUsage>,
    misconfig_seen: Mutex<HashSet<String>>,
    parsed: std::sync::RwLock<std::collections::HashMap<String, Arc<Requirements>>>,
    templates: crate::pages::Templates,
}

impl Edge {
    /// An edge over `ephemeral` with nothing wired: every credential is refused (503)
    /// until [`Edge::with_resolver`] and [`Edge::with_flows`] connect the identity service.
    pub fn new(ephemeral: Arc<dyn Ephemeral>) -> Self {
        Self {
            ephemeral,
            resolver: Arc::new(resolver::Unwired),
            flows: Arc::new(crate::pages::UnwiredFlows),
            trusted_proxies: Vec::new(),
            cookie_mode: CookieMode::Host,
            verified: VerifiedCache::default(),
            upstream_tokens: UpstreamTokens::default(),
            tenants: TenantCache::default(),
            usage: Arc::default(),
            misconfig_seen: Mutex::default(),
            parsed: std::sync::RwLock::default(),
            templates: crate::pages::Templates::new(),
        }
    }

    /// Uses `resolver` for credentials.
    pub fn with_resolver(mut self, resolver: Arc<dyn CredentialResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Uses `flows` behind the sign-in pages.
    pub fn with_flows(mut self, flows: Arc<dyn crate::pages::AccountFlows>) -> Self {
        self.flows = flows;
        self
    }

    /// Believes forwarded headers from peers in `nets`.
    pub fn with_trusted_proxies(mut self, nets: Vec<IpNet>) -> Self {
        self.trusted_proxies = nets;
        self
    }

    /// Sets cookie naming and flags ([`CookieMode::PlainHttpDev`] for `keygate dev` only).
    pub fn with_cookie_mode(mut self, mode: CookieMode) -> Self {
        self.cookie_mode = mode;
        self
    }

    /// A fresh edge with the same ephemeral store, resolver and flows but other settings
    /// (start-up applies `KEYGATE_TRUSTED_PROXIES` and the dev cookie mode this way).
    pub fn with_same_wiring(&self, trusted_proxies: Vec<IpNet>, cookie_mode: CookieMode) -> Self {
        Self::new(self.ephemeral.clone())
            .with_resolver(self.resolver.clone())
            .with_flows(self.flows.clone())
            .with_trusted_proxies(trusted_proxies)
            .with_cookie_mode(cookie_mode)
    }

    /// The live tenant called `name`, cached briefly.
    pub async fn tenant(
        &self,
        state: &AppState,
        name: &str,
    ) -> Result<Option<Arc<TenantView>>, keygate_core::store::StoreError> {
        self.tenants.get(state.store.as_ref(), name).await
    }

    /// The page templates.
    pub(crate) fn templates(&self) -> &crate::pages::Templates {
        &self.templates
    }

    /// Writes pending API-key last-use times now (shutdown, tests).
    pub async fn flush_api_key_usage(&self, state: &AppState) -> usize {
        self.usage.flush(state.store.as_ref()).await
    }

    /// `raw` parsed, remembered per distinct text (auth URLs repeat on every request).
    fn requirements(
        &self,
        raw: &str,
    ) -> Result<Arc<Requirements>, requirements::RequirementsError> {
        if let Ok(parsed) = self.parsed.read()
            && let Some(r) = parsed.get(raw)
        {
            return Ok(r.clone());
        }
        let r = Arc::new(Requirements::parse(raw)?);
        if let Ok(mut parsed) = self.parsed.write() {
            if parsed.len() >= MISCONFIG_MEMORY {
                parsed.clear();
            }
            parsed.insert(raw.to_owned(), r.clone());
        }
        Ok(r)
    }

    /// Logs a misconfiguration once per distinct text, loudly.
    fn misconfigured(&self, raw: &str, error: &requirements::RequirementsError) {
        let first = self
            .misconfig_seen
            .lock()
            .map(|mut seen| {
                if seen.len() >= MISCONFIG_MEMORY {
                    seen.clear();
                }
                seen.insert(raw.to_owned())
            })
            .unwrap_or(true);
        if first {
            tracing::error!(
                requirements = %raw.chars().take(256).collect::<String>(),
                error = %error,
                "forward-auth is misconfigured: every request with these requirements is denied (403) until the proxy's auth URL is fixed"
            );
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

async fn check(state: State<Arc<AppState>>, request: Request) -> Response {
    let mut response = decide_request(state, request).await;
    // Denials carry problem+json bodies that Traefik and Envoy relay to clients. A 200 has
    // no body and goes to no client (proxies copy only the identity headers), so it is kept
    // to the headers that matter: each one is work for the proxy on every request.
    if !response.status().is_success() {
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    response
}

async fn decide_request(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let edge = &*state.edge;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let query = parts.uri.query().unwrap_or("");
    let envoy = parts
        .uri
        .path()
        .strip_prefix("/forward-auth")
        .is_some_and(|s| !s.is_empty());

    // nginx and Traefik: requirements in our query. Envoy: our path and query after
    // `/forward-auth` are the original's, and requirements come in the header Envoy adds (a
    // client-sent copy is replaced by Envoy).
    let (raw_requirements, envoy_suffix) = if envoy {
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
    } else {
        (query, None)
    };
    let inbound = request::inbound(
        &parts.headers,
        &parts.method,
        envoy_suffix,
        peer,
        &edge.trusted_proxies,
    );

    let requirements = match edge.requirements(raw_requirements) {
        Ok(r) => r,
        Err(e) => {
            edge.misconfigured(raw_requirements, &e);
            metrics::decision(inbound.proxy, "misconfigured");
            return misconfigured_response();
        }
    };
    let tenant = match edge.tenant(&state, &requirements.tenant).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            edge.misconfigured(
                raw_requirements,
                &requirements::RequirementsError::BadValue {
                    key: "tenant",
                    value: format!("{} (no such live tenant)", requirements.tenant),
                },
            );
            metrics::decision(inbound.proxy, "misconfigured");
            return misconfigured_response();
        }
        // Settings the store refuses are a misconfiguration, not an outage: deny, do not 503.
        Err(e @ keygate_core::store::StoreError::InvalidTenantSettings { .. }) => {
            tracing::warn!(error = %e, "forward-auth denies: the tenant's stored settings are unusable");
            metrics::decision(inbound.proxy, "misconfigured");
            return misconfigured_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "forward-auth cannot read tenants");
            metrics::decision(inbound.proxy, "unavailable");
            return unavailable();
        }
    };

    let now = state.clock.now();
    let Some(credential) = request::credential(&parts.headers, edge.cookie_mode.session_cookie())
    else {
        metrics::decision(inbound.proxy, "unauthenticated");
        return unauthenticated(&state, &tenant, &inbound, false);
    };
    let (key, proven) = match identify(edge, &tenant, &credential, now).await {
        Ok(found) => found,
        Err(ResolveError::Invalid) => {
            metrics::decision(inbound.proxy, "unauthenticated");
            return unauthenticated(&state, &tenant, &inbound, true);
        }
        Err(ResolveError::Unavailable) => {
            metrics::decision(inbound.proxy, "unavailable");
            return unavailable();
        }
    };
    let identity = &proven.identity;
    if let Some(key) = identity.api_key {
        edge.usage.record(&state.store, tenant.tenant.id, key, now);
    }
    match decision::decide(&requirements, inbound.method.as_ref(), identity, now) {
        Ok(()) => {
            metrics::decision(inbound.proxy, "allow");
            allowed(edge, &tenant, &proven, &requirements, &key, now).await
        }
        Err(refusal) => {
            let outcome = if matches!(refusal, Refusal::StepUp { .. }) {
                "step_up"
            } else {
                "forbidden"
            };
            metrics::decision(inbound.proxy, outcome);
            forbidden(&state, &tenant, &inbound, refusal)
        }
    }
}

/// The identity behind `credential` and the credential's cache key, from the cache when
/// proven before, checked against revocations either way.
async fn identify(
    edge: &Edge,
    tenant: &TenantView,
    credential: &Credential<'_>,
    now: DateTime<Utc>,
) -> Result<([u8; 32], Arc<Proven>), ResolveError> {
    let (tag, value) = match credential {
        Credential::AccessToken(v) => (b'j', v),
        Credential::ApiKey(v) => (b'k', v),
        Credential::Session(v) => (b's', v),
        Credential::Malformed => return Err(ResolveError::Invalid),
    };
    let key = sha256_parts(&[tenant.tenant.id.0.as_bytes(), &[tag], value.as_bytes()]);
    let revocations = edge.ephemeral.revocations();
    // Read before any check: a revocation landing during this request moves it on.
    let epoch = revocations.epoch();
    let revoked = |id: &Identity| id.revocation_ids.iter().any(|r| revocations.contains(r));

    match edge.verified.lookup(&key, now, epoch, revoked) {
        Lookup::Hit(id) => {
            metrics::lookup("cache");
            return Ok((key, id));
        }
        Lookup::Revoked => {
            metrics::lookup("cache");
            edge.upstream_tokens.remove(&key);
            return Err(ResolveError::Invalid);
        }
        Lookup::Miss => {}
    }
    let t = &tenant.tenant;
    metrics::lookup("resolver");
    let identity = match credential {
        Credential::AccessToken(v) => edge.resolver.access_token(t, v).await?,
        Credential::ApiKey(v) => edge.resolver.api_key(t, v).await?,
        Credential::Session(v) => edge.resolver.session(t, v).await?,
        Credential::Malformed => return Err(ResolveError::Invalid),
    };
    // Belt and braces: a resolver must never hand us another tenant's identity.
    if identity.tenant_id != t.id || identity.expires_at <= now || revoked(&identity) {
        return Err(ResolveError::Invalid);
    }
    let valid_until = match identity.kind {
        CredentialKind::AccessToken => identity.expires_at,
        CredentialKind::ApiKey => identity.expires_at.min(now + API_KEY_RECHECK),
        CredentialKind::Session => identity.expires_at.min(now + SESSION_RECHECK),
    };
    let proven = Arc::new(Proven::new(identity, &t.name));
    edge.verified
        .insert(key, proven.clone(), valid_until, now, epoch);
    Ok((key, proven))
}

fn set(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), v);
    }
}

async fn allowed(
    edge: &Edge,
    tenant: &TenantView,
    proven: &Proven,
    req: &Requirements,
    key: &[u8; 32],
    now: DateTime<Utc>,
) -> Response {
    let mut response = StatusCode::OK.into_response();
    // Room for every identity header at once: no regrowth of the map per answer.
    let headers = response.headers_mut();
    headers.reserve(10);
    for (name, value) in proven.headers() {
        headers.insert(name.clone(), value.clone());
    }
    if req.upstream_jwt {
        let minted = match edge.upstream_tokens.get(key, now) {
            Some(jwt) => Ok(jwt),
            None => edge
                .resolver
                .upstream_token(&tenant.tenant, &proven.identity)
                .await
                .map(|jwt| {
                    let jwt: Arc<str> = Arc::from(jwt);
                    edge.upstream_tokens.insert(*key, jwt.clone(), now);
                    jwt
                }),
        };
        match minted {
            Ok(jwt) => set(&mut response, UPSTREAM_JWT_HEADER, &jwt),
            // The route asked for a token it cannot get: deny rather than pass a request
            // the upstream will treat as anonymous.
            Err(_) => return unavailable(),
        }
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

fn unauthenticated(
    state: &AppState,
    tenant: &TenantView,
    inbound: &Inbound,
    presented: bool,
) -> Response {
    let name = &tenant.tenant.name;
    if inbound.wants_html && inbound.proxy.relays_redirects() {
        let rd = inbound.url().and_then(|u| {
            redirect::safe_return_url(
                &u,
                &tenant.spec.redirects.allowed_origins,
                &state.public_url,
            )
        });
        let location = redirect::signin_url(&state.public_url, name, rd.as_deref());
        return see_other(&location, StatusCode::FOUND);
    }
    let mut challenge = format!("Bearer realm=\"{}\"", quote(name));
    if presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let mut response = problem_response(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Authentication required",
        Some(format!(
            "Sign in to {} or present a valid token or API key",
            tenant.display_name()
        )),
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_other(location: &str, status: StatusCode) -> Response {
    let mut response = status.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn forbidden(
    state: &AppState,
    tenant: &TenantView,
    inbound: &Inbound,
    refusal: Refusal,
) -> Response {
    let name = &tenant.tenant.name;
    let (detail, challenge) = match &refusal {
        Refusal::Method => ("This method is not allowed on this route".to_owned(), None),
        Refusal::Insufficient(what) => (format!("Missing {what}"), None),
        Refusal::StepUp {
            acr_values,
            max_age,
        } => {
            let mut c = format!(
                "Bearer realm=\"{}\", error=\"insufficient_user_authentication\", error_description=\"A stronger or more recent authentication is required\"",
                quote(name)
            );
            if !acr_values.is_empty() {
                c.push_str(&format!(
                    ", acr_values=\"{}\"",
                    quote(&acr_values.join(" "))
                ));
            }
            if let Some(m) = max_age {
                c.push_str(&format!(", max_age={m}"));
            }
            (
                "Sign in again with a stronger or more recent method".to_owned(),
                Some(c),
            )
        }
    };
    if let Refusal::StepUp {
        acr_values,
        max_age,
    } = &refusal
        && inbound.wants_html
        && inbound.proxy.relays_redirects()
    {
        let mut location = format!("{}/t/{name}/step-up?", state.public_url);
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(rd) = inbound.url().and_then(|u| {
            redirect::safe_return_url(
                &u,
                &tenant.spec.redirects.allowed_origins,
                &state.public_url,
            )
        }) {
            q.append_pair("rd", &rd);
        }
        if !acr_values.is_empty() {
            q.append_pair("acr_values", &acr_values.join(" "));
        }
        if let Some(m) = max_age {
            q.append_pair("max_age", &m.to_string());
        }
        location.push_str(&q.finish());
        return see_other(&location, StatusCode::FOUND);
    }
    let mut response = problem_response(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Forbidden",
        Some(detail),
    );
    if let Some(c) = challenge
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn misconfigured_response() -> Response {
    problem_response(
        StatusCode::FORBIDDEN,
        "forward_auth_misconfigured",
        "Forward-auth is misconfigured",
        Some("The proxy's auth URL has requirements keygate cannot read; the gateway log names the problem".into()),
    )
}

fn unavailable() -> Response {
    problem_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Service unavailable",
        None,
    )
}
