//! Envoy's gRPC external authorization (`envoy.service.auth.v3.Authorization/Check`), the
//! form Envoy Gateway (`SecurityPolicy.extAuth.grpc`), Istio (`envoyExtAuthzGrpc`),
//! kgateway and Contour speak: a thin adapter over the same [`check::run`] and caches as
//! the HTTP endpoint, on a port of its own.
//!
//! - Requirements come from the route's `context_extensions` key `keygate` (the text the
//!   HTTP endpoint takes in its query), else from the header the operator configured (the
//!   proxy must set it, replacing any client-sent copy), else from the configured default of
//!   the request's host; none of them is a misconfiguration (403, logged).
//! - Allowed: `OkHttpResponse` with the identity headers (overwriting any the client sent)
//!   and every other client-sent `x-auth-request-*` / `x-keygate-*` header removed, so an
//!   upstream never sees a forged identity.
//! - Denied: `DeniedHttpResponse` carrying exactly the HTTP endpoint's answer (401 with
//!   `WWW-Authenticate`, 302 to sign in for browsers, 403 with the RFC 9470 challenge, the
//!   problem+json body, `X-Keygate-Reason`, `X-Keygate-Decision-Id`) and the gRPC status
//!   `UNAUTHENTICATED` or `PERMISSION_DENIED`.
//! - A dependency outage: status `UNAVAILABLE` with a 503 denial in the response, not a
//!   failed RPC, so Envoy denies whatever its `failure_mode_allow` says.
//! - A malformed request (no HTTP attributes, undecodable) is a 403 denial or a gRPC
//!   `INVALID_ARGUMENT` from the decoder, never `INTERNAL`.

use super::check::{self, Allowed, Trace, Verdict};
use super::denial;
use super::request::{self, Proxy};
use super::requirements::{Requirements, RequirementsError};
use crate::AppState;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::google::rpc;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// The `context_extensions` key that carries a route's requirements.
pub const CONTEXT_EXTENSION_KEY: &str = "keygate";
/// Largest denial body copied into a `DeniedHttpResponse` (ours are a few hundred bytes).
const MAX_BODY: usize = 16 * 1024;
/// gRPC status codes (google.rpc.Code) the answers carry.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// Where the gRPC service looks for requirements besides `context_extensions`, read from
/// the gateway's config and checked at start-up.
#[derive(Clone, Debug, Default)]
pub struct GrpcSettings {
    requirements_header: Option<HeaderName>,
    host_requirements: HashMap<String, String>,
}

/// A gRPC setting keygate cannot use: start-up stops with it.
#[derive(Debug, thiserror::Error)]
pub enum GrpcSettingsError {
    /// The requirements header is not a header name.
    #[error("`{0}` is not an HTTP header name")]
    HeaderName(String),
    /// A host's default requirements do not parse.
    #[error("the default requirements of host `{host}` are invalid: {error}")]
    HostRequirements {
        /// The host.
        host: String,
        /// Why.
        error: RequirementsError,
    },
}

impl GrpcSettings {
    /// Settings from the config: the optional requirements header and the per-host
    /// defaults (host, lower case, with `:port` when not the default, → requirements text).
    pub fn new(
        requirements_header: Option<&str>,
        host_requirements: &BTreeMap<String, String>,
    ) -> Result<Self, GrpcSettingsError> {
        let requirements_header = requirements_header
            .map(|h| {
                HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes())
                    .map_err(|_| GrpcSettingsError::HeaderName(h.to_owned()))
            })
            .transpose()?;
        let mut hosts = HashMap::new();
        for (host, text) in host_requirements {
            Requirements::parse(text).map_err(|error| GrpcSettingsError::HostRequirements {
                host: host.clone(),
                error,
            })?;
            hosts.insert(host.trim().to_ascii_lowercase(), text.clone());
        }
        Ok(Self {
            requirements_header,
            host_requirements: hosts,
        })
    }
}

/// The `Authorization` service over the gateway's state.
#[derive(Clone, Debug)]
pub struct ExtAuthz {
    state: Arc<AppState>,
    settings: Arc<GrpcSettings>,
}

impl ExtAuthz {
    /// The service over `state` (its caches and counters are the HTTP endpoint's).
    pub fn new(state: AppState, settings: GrpcSettings) -> Self {
        Self {
            state: Arc::new(state),
            settings: Arc::new(settings),
        }
    }

    /// The tonic service to add to a server.
    pub fn into_service(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }

    /// The answer to one check. `peer` is the gRPC caller's address.
    pub async fn answer(&self, peer: Option<IpAddr>, request: &CheckRequest) -> CheckResponse {
        let state = &self.state;
        let Some(attributes) = request.attributes.as_ref() else {
            return self.malformed("the CheckRequest has no attributes").await;
        };
        let Some(http) = attributes.request.as_ref().and_then(|r| r.http.as_ref()) else {
            return self
                .malformed("the CheckRequest has no attributes.request.http")
                .await;
        };
        let headers = header_map(http);
        let requirements = self.requirements(&attributes.context_extensions, &headers, &http.host);
        let client_ip =
            if peer.is_some_and(|p| state.trusted_proxies.iter().any(|n| n.contains(&p))) {
                source_ip(attributes).or(peer)
            } else {
                peer
            };
        let method = Method::from_bytes(http.method.as_bytes()).ok();
        let inbound = request::envoy_grpc(
            &headers,
            method,
            &http.scheme,
            &http.host,
            &http.path,
            client_ip,
        );
        let input = check::Input {
            requirements,
            headers: &headers,
            inbound,
        };
        let verdict = check::run(state, &input, &mut Trace::off()).await;
        check::record(&state.forward_auth, Proxy::EnvoyGrpc, &verdict);
        grpc_answer(verdict, &headers).await
    }

    /// The requirements text of a check: `context_extensions`, the configured header, the
    /// host's default, or empty (a misconfiguration when parsed).
    fn requirements<'a>(
        &'a self,
        extensions: &'a HashMap<String, String>,
        headers: &'a HeaderMap,
        host: &str,
    ) -> &'a str {
        if let Some(r) = extensions.get(CONTEXT_EXTENSION_KEY) {
            return r;
        }
        if let Some(name) = &self.settings.requirements_header
            && let Some(v) = headers.get(name).and_then(|v| v.to_str().ok())
        {
            return v;
        }
        let hosts = &self.settings.host_requirements;
        if !hosts.is_empty() {
            let host = host.to_ascii_lowercase();
            if let Some(r) = hosts.get(&host) {
                return r;
            }
            if let Some((bare, _port)) = host.rsplit_once(':')
                && let Some(r) = hosts.get(bare)
            {
                return r;
            }
        }
        ""
    }

    /// A request the check cannot read: a 403 denial (the proxy's configuration is wrong),
    /// logged like any misconfiguration, counted, never an error status.
    async fn malformed(&self, what: &str) -> CheckResponse {
        let fa = &self.state.forward_auth;
        fa.misconfigured(
            "grpc",
            &RequirementsError::BadValue {
                key: "request",
                value: what.to_owned(),
            },
        );
        let verdict = Verdict {
            id: super::reason::DecisionId::next(),
            tenant: None,
            credential: "none",
            result: Err(super::Denial::Misconfigured),
        };
        check::record(fa, Proxy::EnvoyGrpc, &verdict);
        grpc_answer(verdict, &HeaderMap::new()).await
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let answer = self.answer(peer, request.get_ref()).await;
        Ok(tonic::Response::new(answer))
    }
}

/// The client's request headers as a map the HTTP code reads. Envoy sends them lower-cased
/// in `headers` (repeats joined), or in `header_map` when told to send raw values; pseudo
/// headers and what is not a header are left out.
fn header_map(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(http.headers.len());
    let mut add = |name: &str, value: &[u8]| {
        if name.starts_with(':') {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    };
    for (name, value) in &http.headers {
        add(name, value.as_bytes());
    }
    if http.headers.is_empty()
        && let Some(raw) = &http.header_map
    {
        for h in &raw.headers {
            let value = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value
            };
            add(&h.key, value);
        }
    }
    map
}

/// The downstream address Envoy names (`attributes.source`).
fn source_ip(
    attributes: &envoy_types::pb::envoy::service::auth::v3::AttributeContext,
) -> Option<IpAddr> {
    match attributes
        .source
        .as_ref()?
        .address
        .as_ref()?
        .address
        .as_ref()?
    {
        Address::SocketAddress(s) => s.address.parse().ok(),
        _ => None,
    }
}

fn status(code: i32, message: &str) -> Option<rpc::Status> {
    Some(rpc::Status {
        code,
        message: message.to_owned(),
        details: Vec::new(),
    })
}

fn header(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(envoy_types::ext_authz::v3::pb::HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: action.into(),
        keep_empty_value: false,
    }
}

/// Whether a request header names an identity only keygate may set.
fn identity_header(name: &str) -> bool {
    name.starts_with("x-auth-request-") || name.starts_with("x-keygate-")
}

/// The gRPC answer of a verdict; `client_headers` are the request's (to strip forgeries).
pub async fn grpc_answer(verdict: Verdict, client_headers: &HeaderMap) -> CheckResponse {
    match verdict.result {
        Ok(allowed) => CheckResponse {
            status: status(OK, ""),
            http_response: Some(HttpResponse::OkResponse(ok_response(
                &allowed,
                client_headers,
            ))),
            dynamic_metadata: None,
        },
        Err(denial) => {
            let code = match &denial {
                super::Denial::Unauthenticated { .. } => UNAUTHENTICATED,
                super::Denial::Unavailable => UNAVAILABLE,
                _ => PERMISSION_DENIED,
            };
            let reason = denial.reason();
            let response = denial::respond(denial, verdict.id);
            CheckResponse {
                status: status(code, reason.as_str()),
                http_response: Some(HttpResponse::DeniedResponse(
                    denied_response(response).await,
                )),
                dynamic_metadata: None,
            }
        }
    }
}

fn ok_response(allowed: &Allowed, client_headers: &HeaderMap) -> OkHttpResponse {
    let ours = allowed.proven.headers();
    let mut headers: Vec<HeaderValueOption> = ours
        .iter()
        .filter_map(|(name, value)| {
            Some(header(
                name.as_str(),
                value.to_str().ok()?,
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            ))
        })
        .collect();
    if let Some(jwt) = &allowed.upstream_jwt {
        headers.push(header(
            super::UPSTREAM_JWT_HEADER,
            jwt,
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ));
    }
    // Ours overwrite the client's copies; the client's others go (removing ours too could
    // drop them, depending on the order Envoy applies the two lists in).
    let set = |name: &str| {
        ours.iter().any(|(n, _)| n.as_str() == name)
            || (allowed.upstream_jwt.is_some() && name == super::UPSTREAM_JWT_HEADER)
    };
    let mut headers_to_remove: Vec<String> = client_headers
        .keys()
        .map(HeaderName::as_str)
        .filter(|n| identity_header(n) && !set(n))
        .map(str::to_owned)
        .collect();
    headers_to_remove.dedup();
    #[allow(deprecated)]
    OkHttpResponse {
        headers,
        headers_to_remove,
        dynamic_metadata: None,
        response_headers_to_add: Vec::new(),
        query_parameters_to_set: Vec::new(),
        query_parameters_to_remove: Vec::new(),
    }
}

/// The HTTP denial as Envoy sends it to the client: status, headers and body.
async fn denied_response(response: axum::response::Response) -> DeniedHttpResponse {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some(header(
                name.as_str(),
                value.to_str().ok()?,
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            ))
        })
        .collect();
    DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(parts.status.as_u16()),
        }),
        headers,
        body,
    }
}

/// Serves the `Authorization` service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: ExtAuthz,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(no_internal))
        .add_service(service.into_service())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// tonic answers a message it cannot decode with `INTERNAL`; keygate's own answers are
/// never an error status, so every `INTERNAL` is that, and says `INVALID_ARGUMENT` instead:
/// bad input is the caller's error, and a proxy must not read it as the server's.
fn no_internal(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").is_some_and(|v| v == "13") {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("the%20message%20is%20not%20a%20CheckRequest"),
        );
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_defaults_and_header_are_checked_at_start_up() {
        let mut hosts = BTreeMap::new();
        hosts.insert("App.Example.com".into(), "tenant=acme&role=reader".into());
        let s = GrpcSettings::new(Some("X-Keygate-Requirements"), &hosts).unwrap();
        assert_eq!(
            s.requirements_header.as_ref().map(HeaderName::as_str),
            Some("x-keygate-requirements")
        );
        assert!(s.host_requirements.contains_key("app.example.com"));
        hosts.insert("b.example.com".into(), "tenant=acme&rol=x".into());
        assert!(matches!(
            GrpcSettings::new(None, &hosts),
            Err(GrpcSettingsError::HostRequirements { .. })
        ));
        assert!(matches!(
            GrpcSettings::new(Some("bad header"), &BTreeMap::new()),
            Err(GrpcSettingsError::HeaderName(_))
        ));
    }
}
