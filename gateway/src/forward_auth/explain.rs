//! `POST /t/{tenant}/forward-auth/explain`: runs one forward-auth check against the live
//! gateway (its tenants, keys, sessions, caches and revocation set) with every step traced,
//! for `keygate explain` and for people debugging a denial. Admins only (`keygate:admin`,
//! by access token or API key of the tenant). The check is the one the proxies get
//! ([`check::run`]), evaluated as Envoy's gRPC check would put the request; the reason and
//! the step outcomes are the same for every dialect, only the form of the answer differs
//! (ingress-nginx answers a browser 401 where Envoy and Traefik redirect).
//!
//! Explaining is not a live decision: it is not counted in the decision metrics, and it is
//! logged at INFO as an explanation with its own decision id.

use super::check::{self, Step, Trace};
use super::request;
use crate::AppState;
use crate::error::ApiError;
use crate::identity::IdentityError;
use crate::json_body::ApiJson;
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// What to explain: a route's requirements and the request it would see.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The route's requirements without `tenant=` (the path names the tenant), e.g.
    /// `role=orders-reader&mfa=1`.
    #[serde(default)]
    pub requirements: String,
    /// A bearer credential: an access token or an API key (`kg_…`).
    #[serde(default)]
    pub token: Option<String>,
    /// The value of the tenant's session cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The original request's method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// The original request's URL (where a browser would be sent back to).
    #[serde(default)]
    pub url: Option<String>,
    /// A browser navigation (`Accept: text/html`): denied with a redirect to sign in.
    #[serde(default)]
    pub browser: bool,
    /// The client's address, checked against the tenant's network lists.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = "ip", example = "203.0.113.9")]
    pub client_ip: Option<IpAddr>,
}

/// What the check decided and how.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// This evaluation's decision id.
    pub decision_id: String,
    /// Whether the request would pass.
    pub allowed: bool,
    /// The stable reason word (`allowed`, `missing_role`, …).
    pub reason: String,
    /// The HTTP status the client would get (200, 302, 401, 403, 503).
    pub status: u16,
    /// The answer's headers (identity headers when allowed; the challenge or the sign-in
    /// location when not). An upstream JWT is shown as `(set)`.
    pub headers: BTreeMap<String, String>,
    /// Every step and its outcome, in order.
    pub steps: Vec<Step>,
}

/// The explain route.
pub fn router<S: Clone + Send + Sync + 'static>(state: &AppState) -> Router<S> {
    Router::new()
        .route("/t/{tenant}/forward-auth/explain", post(explain))
        .with_state(Arc::new(state.clone()))
}

/// Runs one forward-auth check of the tenant against the live gateway with every step
/// traced (`keygate explain`). Admins only.
#[utoipa::path(post, path = "/t/{tenant}/forward-auth/explain", tag = "forward-auth", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")), security(("bearer" = [])), request_body = ExplainRequest,
    responses((status = 200, description = "The decision the proxies would get, with each step (also when the request would be denied)", body = Explanation),
        (status = 403, description = "forbidden (the caller is not an admin of the tenant: keygate:admin)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body, invalid_request (a token, cookie or method that cannot be sent in an HTTP header)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn explain(
    State(state): State<Arc<AppState>>,
    TenantName(tenant): TenantName,
    headers: HeaderMap,
    // Read after the caller is known to be an admin: a stranger learns nothing from the body.
    body: Result<ApiJson<ExplainRequest>, ApiError>,
) -> Result<Json<Explanation>, ApiError> {
    admin(&state, &tenant, &headers).await?;
    let ApiJson(body) = body?;
    let live = state.identity.tenant(&tenant).await?;
    let mut facts = HeaderMap::new();
    let bad = |what: &str| {
        ApiError::Identity(IdentityError::InvalidRequest(format!(
            "{what} cannot be sent in a header"
        )))
    };
    if let Some(token) = &body.token {
        let v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| bad("token"))?;
        facts.insert(header::AUTHORIZATION, v);
    }
    if let Some(cookie) = &body.cookie {
        let name = state.session_cookie(&live).name().to_owned();
        let v = HeaderValue::from_str(&format!("{name}={cookie}")).map_err(|_| bad("cookie"))?;
        facts.insert(header::COOKIE, v);
    }
    if body.browser {
        facts.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
    }
    let method = match body.method.as_deref() {
        None => Some(Method::GET),
        Some(m) => {
            Some(Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| bad("method"))?)
        }
    };
    let url = body.url.as_deref().and_then(|u| url::Url::parse(u).ok());
    let (scheme, host, path) = url.as_ref().map_or_else(
        || (String::new(), String::new(), String::new()),
        |u| {
            let host = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => String::new(),
            };
            let path = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            };
            (u.scheme().to_owned(), host, path)
        },
    );
    let requirements = if body.requirements.is_empty() {
        format!("tenant={tenant}")
    } else {
        format!("tenant={tenant}&{}", body.requirements)
    };
    let input = check::Input {
        requirements: &requirements,
        headers: &facts,
        inbound: request::envoy_grpc(&facts, method, &scheme, &host, &path, body.client_ip),
    };
    let mut trace = Trace::on();
    let verdict = check::run(&state, &input, &mut trace).await;
    let (id, reason) = (verdict.id.to_string(), verdict.reason());
    let allowed = verdict.result.is_ok();
    tracing::info!(decision_id = %id, tenant, reason = reason.as_str(), "forward-auth check explained");
    let answer = super::http_answer(verdict);
    let headers = answer
        .headers()
        .iter()
        .filter(|(name, _)| *name != header::CONTENT_TYPE)
        .map(|(name, value)| {
            let shown = if name.as_str() == super::UPSTREAM_JWT_HEADER {
                "(set)".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect();
    Ok(Json(Explanation {
        decision_id: id,
        allowed,
        reason: reason.as_str().to_owned(),
        status: answer.status().as_u16(),
        headers,
        steps: trace.into_steps(),
    }))
}

/// The caller must be an admin of `tenant` (`keygate:admin`), by access token or API key.
async fn admin(state: &AppState, tenant: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(IdentityError::InvalidToken)?;
    let principal = if bearer.starts_with("kg_") {
        state.identity.resolve_from_api_key(tenant, bearer).await?
    } else {
        state
            .identity
            .resolve_from_access_token(tenant, bearer)
            .await?
    };
    if !principal.is_admin() {
        return Err(IdentityError::Forbidden.into());
    }
    Ok(())
}
