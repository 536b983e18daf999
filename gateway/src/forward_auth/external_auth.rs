//! The Gateway API `ExternalAuth` HTTPRoute filter over HTTP (GEP-1494) as a forward-auth
//! dialect: `/external-auth/{dialect}/{requirements}/{original path}?{original query}`.
//!
//! The filter's only per-route setting that reaches the auth service is `http.path`, a
//! prefix put before the client's path: it cannot add a header (as Envoy's
//! `X-Keygate-Requirements`) and our query string is the client's. So the dialect and the
//! route's requirements ride in that prefix, as path segments:
//! `path: /external-auth/gateway-api/tenant=acme&role=orders-reader` (`&`, `=` and `,` are
//! valid in a Gateway API path value). The dialect segment says how a denial is phrased:
//!
//! - `gateway-api`: implementations that relay the answer to the client (Envoy Gateway,
//!   Cilium, Istio's `envoyExtAuthzHttp`): a browser gets a 302 to sign in;
//! - `nginx-gateway-fabric`: nginx `auth_request`, which passes only 2xx, 401 and 403: a
//!   browser gets a 401 whose challenge names the sign-in URL (`sign_in_url`).
//!
//! Everything after the requirements segment is the original path and query. The filter
//! sends only `Host`, the method, the path, `Content-Length` and `Authorization` unless
//! `allowedHeaders` lists more, so `Cookie` (browser sessions), `X-API-Key` and `Accept`
//! (to tell a browser) must be listed.
//!
//! The filter copies the answer's headers upstream, overwriting the client's copies of the
//! same name, but leaves a client's header alone where the answer has none. So an allowed
//! answer names every identity header, empty when it does not apply (no verified email, no
//! `jwt=1`): a client cannot slip its own `X-Auth-Request-Email` past the check.

use super::check::{self, Trace, Verdict};
use super::reason::DecisionId;
use super::request::{self, Proxy};
use super::requirements::RequirementsError;
use super::{Denial, http_answer};
use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;

/// The path every Gateway API dialect is served under.
pub const PATH_PREFIX: &str = "/external-auth/";

/// Every header an allowed answer may carry upstream: the ones of this identity are set, the
/// others sent empty so they overwrite a client's copies.
pub const IDENTITY_HEADERS: [&str; 7] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-email-verified",
    "x-auth-request-groups",
    "x-keygate-tenant",
    "x-keygate-subject",
    super::UPSTREAM_JWT_HEADER,
];

/// A Gateway API check's path, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct ExternalAuthPath<'a> {
    /// The dialect the route named.
    pub proxy: Proxy,
    /// The requirements segment, still percent-encoded (query-string syntax).
    pub requirements: &'a str,
    /// The original path and query, starting with exactly one `/`.
    pub original: String,
}

/// Why a path is not a Gateway API check: the route's `http.path` names no dialect we know.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownDialect<'a>(pub &'a str);

impl<'a> ExternalAuthPath<'a> {
    /// Splits `/external-auth/{dialect}/{requirements}{original}` (with the query).
    pub fn parse(path_and_query: &'a str) -> Result<Self, UnknownDialect<'a>> {
        let rest = path_and_query.strip_prefix(PATH_PREFIX).unwrap_or("");
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut segments = path.splitn(3, '/');
        let dialect = segments.next().unwrap_or("");
        let proxy = match dialect {
            "gateway-api" => Proxy::GatewayApi,
            "nginx-gateway-fabric" => Proxy::NginxGatewayFabric,
            other => return Err(UnknownDialect(other)),
        };
        let requirements = segments.next().unwrap_or("");
        // A prefix written with a trailing slash gives `//path`; the original had one.
        let mut original = format!("/{}", segments.next().unwrap_or("").trim_start_matches('/'));
        if let Some(query) = query {
            original.push('?');
            original.push_str(query);
        }
        Ok(Self {
            proxy,
            requirements,
            original,
        })
    }
}

/// `/external-auth/{*rest}`, any method: one check, answered in the route's dialect.
pub(super) async fn http_check(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("", |pq| pq.as_str());
    let path = match ExternalAuthPath::parse(path_and_query) {
        Ok(path) => path,
        Err(UnknownDialect(dialect)) => {
            // A typo in the route's `http.path`: denied (never a 404, which NGINX Gateway
            // Fabric would show as a 500) and logged once.
            state.forward_auth.misconfigured(
                "external-auth dialect",
                &RequirementsError::BadValue {
                    key: "dialect",
                    value: format!(
                        "{} (known: gateway-api, nginx-gateway-fabric)",
                        dialect.chars().take(64).collect::<String>()
                    ),
                },
            );
            let verdict = Verdict {
                id: DecisionId::next(),
                tenant: None,
                credential: "none",
                result: Err(Denial::Misconfigured),
            };
            check::record(&state.forward_auth, Proxy::Direct, &verdict);
            return http_answer(verdict);
        }
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let inbound = request::gateway_api(
        path.proxy,
        &parts.headers,
        &parts.method,
        &path.original,
        peer,
        &state.trusted_proxies,
    );
    let input = check::Input {
        requirements: path.requirements,
        headers: &parts.headers,
        inbound,
    };
    let verdict = check::run(&state, &input, &mut Trace::off()).await;
    check::record(&state.forward_auth, path.proxy, &verdict);
    let allowed = verdict.result.is_ok();
    let mut response = http_answer(verdict);
    if allowed {
        let headers = response.headers_mut();
        for name in IDENTITY_HEADERS {
            if !headers.contains_key(name) {
                headers.insert(HeaderName::from_static(name), HeaderValue::from_static(""));
            }
        }
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(p: &str) -> ExternalAuthPath<'_> {
        ExternalAuthPath::parse(p).unwrap()
    }

    #[test]
    fn the_prefix_names_dialect_and_requirements_and_the_rest_is_the_original_request() {
        let p = parse("/external-auth/gateway-api/tenant=acme&role=a,b/orders/1?x=2&y=/z");
        assert_eq!(p.proxy, Proxy::GatewayApi);
        assert_eq!(p.requirements, "tenant=acme&role=a,b");
        assert_eq!(p.original, "/orders/1?x=2&y=/z");

        let p = parse("/external-auth/nginx-gateway-fabric/tenant=acme");
        assert_eq!(p.proxy, Proxy::NginxGatewayFabric);
        assert_eq!(p.requirements, "tenant=acme");
        assert_eq!(p.original, "/");

        // The original's query is never read as requirements.
        let p = parse("/external-auth/gateway-api/tenant=acme?tenant=evil&role=x");
        assert_eq!(p.requirements, "tenant=acme");
        assert_eq!(p.original, "/?tenant=evil&role=x");
    }

    #[test]
    fn a_doubled_slash_from_a_prefix_with_a_trailing_slash_is_one() {
        assert_eq!(
            parse("/external-auth/gateway-api/tenant=acme//evil.example/x").original,
            "/evil.example/x"
        );
    }

    #[test]
    fn an_unknown_dialect_is_refused() {
        assert_eq!(
            ExternalAuthPath::parse("/external-auth/gateway/tenant=acme/x"),
            Err(UnknownDialect("gateway"))
        );
        assert_eq!(
            ExternalAuthPath::parse("/external-auth/"),
            Err(UnknownDialect(""))
        );
    }
}
