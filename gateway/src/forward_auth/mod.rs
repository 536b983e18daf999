//! Forward-auth: the check ingress-nginx (`auth-url`), Traefik (`ForwardAuth`), Envoy
//! (`ext_authz`, HTTP at `/forward-auth`, gRPC `Authorization/Check` on its own port: see
//! [`grpc`]) and the Gateway API `ExternalAuth` filter (HTTP at `/external-auth/…`, see
//! [`external_auth`]) make before every request to a protected app.
//!
//! Every dialect is a thin adapter over one check ([`check::run`], which ends in
//! [`decision::decide`]): the adapter reads what its proxy sent, the check decides, and the
//! adapter writes the [`check::Verdict`] in its proxy's terms. Answers are 200 with
//! identity headers, or a [`Denial`]: 401 with `WWW-Authenticate` (or a 302 to sign in for
//! browsers behind proxies that relay redirects), 403 (with an RFC 9470 challenge when
//! stronger sign-in would help), and 503 only when a dependency is down; every denial names
//! its [`reason::Reason`] and decision id. Bad input never yields a 5xx: ingress-nginx would
//! show the user a server error. `keygate explain` runs the same check with a trace
//! ([`explain`]).

pub mod cache;
pub mod check;
pub mod decision;
pub mod denial;
pub mod explain;
pub mod external_auth;
pub mod grpc;
mod metrics;
pub mod reason;
pub mod request;
pub mod requirements;

pub use denial::Denial;
pub use metrics::ForwardAuthMetrics;

use crate::AppState;
use crate::identity::Authenticator;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use cache::{MisconfigLogged, RequirementsCache, UpstreamTokens, VerifiedCache};
use check::{Allowed, Trace, Verdict};
use std::net::SocketAddr;
use std::sync::Arc;

/// Header Envoy adds to each check with the route's requirements (query-string syntax).
pub const REQUIREMENTS_HEADER: &str = "x-keygate-requirements";
/// Header carrying the short-lived upstream JWT when `jwt=1` is asked.
pub const UPSTREAM_JWT_HEADER: &str = "x-keygate-jwt";
/// How long a resolved API key is reused before the authenticator is asked again
/// (database-side revocations without a pub/sub message take at most this long to bite).
pub(crate) const API_KEY_RECHECK: chrono::Duration = chrono::Duration::seconds(30);
/// How long a resolved session is reused before the authenticator is asked again.
pub(crate) const SESSION_RECHECK: chrono::Duration = chrono::Duration::seconds(5);

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

/// `/forward-auth`, `/forward-auth/` and `/forward-auth/{*path}` (Envoy), and
/// `/external-auth/{*path}` (the Gateway API filter), any method.
///
/// The routes hold their own `Arc` of the state: axum clones a route's state on every
/// request, and one reference count is cheaper on the hot path than every field of
/// [`AppState`].
pub fn router<S: Clone + Send + Sync + 'static>(state: &AppState) -> Router<S> {
    Router::new()
        .route("/forward-auth", any(http_check))
        .route("/forward-auth/", any(http_check))
        .route("/forward-auth/{*path}", any(http_check))
        .route("/external-auth/{*path}", any(external_auth::http_check))
        .with_state(Arc::new(state.clone()))
        .merge(explain::router(state))
}

async fn http_check(State(state): State<Arc<AppState>>, request: Request) -> Response {
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
    let proxy = inbound.proxy;
    let input = check::Input {
        requirements: raw_requirements,
        headers: &parts.headers,
        inbound,
    };
    let verdict = check::run(&state, &input, &mut Trace::off()).await;
    check::record(&state.forward_auth, proxy, &verdict);
    http_answer(verdict)
}

/// The HTTP answer of a verdict: 200 with the identity headers (rendered when the identity
/// was proven), the upstream JWT when asked for, and `no-store`; or the denial with its
/// reason and decision id.
pub fn http_answer(verdict: Verdict) -> Response {
    match verdict.result {
        Ok(allowed) => allowed_response(&allowed),
        Err(denial) => denial::respond(denial, verdict.id),
    }
}

fn allowed_response(allowed: &Allowed) -> Response {
    let mut response = StatusCode::OK.into_response();
    // Room for every identity header at once: no regrowth of the map per answer.
    let headers = response.headers_mut();
    headers.reserve(10);
    for (name, value) in allowed.proven.headers() {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(jwt) = &allowed.upstream_jwt
        && let Ok(v) = HeaderValue::from_str(jwt)
    {
        headers.insert(HeaderName::from_static(UPSTREAM_JWT_HEADER), v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
