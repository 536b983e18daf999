//! What the proxy tells us about the original request, normalized across ingress-nginx
//! (`X-Original-*`), Traefik (`X-Forwarded-*`, only from trusted peers), Envoy (original
//! path appended to ours) and the Gateway API `ExternalAuth` filter (original path appended
//! to the filter's path prefix, original `Host` and method), plus the credential the client
//! presented.
//!
//! Nothing here fails: a header that is missing, repeated, not UTF-8 or absurd is treated as
//! absent (for facts about the request) or as an invalid credential (for credentials), so
//! bad input ends in a 401/403, never a 5xx.

use axum::http::{HeaderMap, Method, header};
use ipnet::IpNet;
use std::borrow::Cow;
use std::net::IpAddr;

/// Longest credential looked at; real JWTs and keys are far shorter.
const MAX_CREDENTIAL_LEN: usize = 8 * 1024;
/// Longest original URL kept.
const MAX_URL_LEN: usize = 8 * 1024;

/// Which proxy convention the request follows; it decides how a denial is phrased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    /// ingress-nginx `auth-url`: only 2xx/401/403 are understood, nginx does the redirect.
    Nginx,
    /// Traefik `ForwardAuth`: our answer goes to the client as it is.
    Traefik,
    /// Envoy `ext_authz` HTTP: our answer goes to the client as it is.
    Envoy,
    /// Envoy `ext_authz` gRPC (`envoy.service.auth.v3.Authorization/Check`): our answer, a
    /// `DeniedHttpResponse`, goes to the client as it is.
    EnvoyGrpc,
    /// The Gateway API `ExternalAuth` filter over HTTP (GEP-1494: Envoy Gateway, Cilium):
    /// our answer goes to the client as it is.
    GatewayApi,
    /// NGINX Gateway Fabric's `ExternalAuth` filter: nginx `auth_request`, so only 2xx, 401
    /// and 403 are understood; a browser is told where to sign in inside the 401.
    NginxGatewayFabric,
    /// Called directly (or by an unknown proxy): plain 401/403.
    Direct,
}

impl Proxy {
    /// Whether the proxy relays a 302 to the browser (nginx would turn it into a 500).
    pub fn relays_redirects(self) -> bool {
        matches!(
            self,
            Self::Traefik | Self::Envoy | Self::EnvoyGrpc | Self::GatewayApi
        )
    }

    /// Whether a 401 carries where to sign in (`sign_in_url` in the challenge): the proxy
    /// cannot relay a redirect, and has no sign-in URL of its own as ingress-nginx has.
    pub fn hints_sign_in(self) -> bool {
        self == Self::NginxGatewayFabric
    }

    /// The `proxy` label of the decisions counter.
    pub fn label(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Traefik => "traefik",
            Self::Envoy => "envoy",
            Self::EnvoyGrpc => "envoy_grpc",
            Self::GatewayApi => "gateway_api",
            Self::NginxGatewayFabric => "nginx_gateway_fabric",
            Self::Direct => "direct",
        }
    }
}

/// The original request as far as the proxy told us, borrowed from our request.
#[derive(Clone, Debug)]
pub struct Inbound<'a> {
    /// Proxy convention.
    pub proxy: Proxy,
    /// Method of the original request, when known.
    pub method: Option<Method>,
    /// A browser navigation (`Accept: text/html`), which may get a redirect to sign in.
    pub wants_html: bool,
    original: Original<'a>,
    client: ClientFacts<'a>,
}

/// What the client's address is worked out from, kept so it is worked out only when
/// needed (a tenant with network lists), not on every check.
#[derive(Clone)]
enum ClientFacts<'a> {
    /// An HTTP check: the peer and, from a trusted proxy, its forwarded headers.
    Http {
        peer: Option<IpAddr>,
        headers: &'a HeaderMap,
        trusted_proxies: &'a [IpNet],
    },
    /// Already known (a gRPC check: the address Envoy names, believed from trusted peers).
    Known(Option<IpAddr>),
}

impl std::fmt::Debug for ClientFacts<'_> {
    // The headers carry credentials: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { peer, .. } => f
                .debug_struct("ClientFacts")
                .field("peer", peer)
                .finish_non_exhaustive(),
            Self::Known(ip) => f.debug_tuple("Known").field(ip).finish(),
        }
    }
}

/// What the proxy said of the original URL. Only denials use the URL (as a return target),
/// so it is put together and parsed then, not on every request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Original<'a> {
    Unknown,
    /// ingress-nginx's `X-Original-URL`, as sent.
    Sent(&'a str),
    /// Traefik's forwarded host and URI, or Envoy's `Host` and appended path.
    Parts {
        scheme: &'a str,
        host: &'a str,
        path_and_query: &'a str,
    },
}

impl Inbound<'_> {
    /// The client's address, by the gateway's one rule ([`crate::client_addr`]): the peer,
    /// or the right-most untrusted `X-Forwarded-For` hop from a trusted proxy.
    pub fn client_ip(&self) -> Option<IpAddr> {
        match &self.client {
            ClientFacts::Http {
                peer,
                headers,
                trusted_proxies,
            } => crate::client_addr::client_addr(*peer, headers, trusted_proxies),
            ClientFacts::Known(ip) => *ip,
        }
    }

    /// URL of the original request, when known; validate before use (`safe_return_url`).
    pub fn url(&self) -> Option<Cow<'_, str>> {
        match self.original {
            Original::Unknown => None,
            Original::Sent(url) => (url.len() <= MAX_URL_LEN).then_some(Cow::Borrowed(url)),
            Original::Parts {
                scheme,
                host,
                path_and_query,
            } => absolute(scheme, host, path_and_query).map(Cow::Owned),
        }
    }

    /// The host of the original request as the URL parser normalizes it (lower case,
    /// punycode), with `:port` when not the scheme's default: the audience of the upstream
    /// token (`jwt=1`). `None` when the proxy did not say, or not of an http(s) URL.
    pub fn host(&self) -> Option<String> {
        let url = url::Url::parse(&self.url()?).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = url.host_str()?;
        Some(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        })
    }
}

/// A credential as presented, borrowed from the request's headers (no copy on the hot
/// path); the value is secret and never logged.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <JWT>`.
    AccessToken(Cow<'a, str>),
    /// `Authorization: Bearer kg_…` or `X-API-Key: kg_…`.
    ApiKey(Cow<'a, str>),
    /// The session cookie's value.
    Session(Cow<'a, str>),
    /// An app host's cookie from the handoff (a child of a session).
    HostSession(Cow<'a, str>),
    /// Something was presented but is unusable (repeated, not UTF-8, too long, wrong scheme).
    Malformed,
}

impl Credential<'_> {
    /// The kind of credential as a metric label (one of [`super::metrics::CREDENTIALS`]).
    pub fn label(&self) -> &'static str {
        match self {
            Self::AccessToken(_) => "access_token",
            Self::ApiKey(_) => "api_key",
            Self::Session(_) => "session",
            Self::HostSession(_) => "host_session",
            Self::Malformed => "malformed",
        }
    }
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AccessToken(_) => "AccessToken(***)",
            Self::ApiKey(_) => "ApiKey(***)",
            Self::Session(_) => "Session(***)",
            Self::HostSession(_) => "HostSession(***)",
            Self::Malformed => "Malformed",
        })
    }
}

/// The single value of `name`, if present exactly once and valid visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::trim).filter(|v| !v.is_empty())
}

fn trusted(peer: Option<IpAddr>, trusted_proxies: &[IpNet]) -> bool {
    peer.is_some_and(|ip| trusted_proxies.iter().any(|net| net.contains(&ip)))
}

/// Normalizes the proxy's description of the original request.
///
/// `envoy_suffix` is the part of our path after `/forward-auth` (Envoy's appended original
/// path) with our own query string; `peer` is the TCP peer.
pub fn inbound<'a>(
    headers: &'a HeaderMap,
    own_method: &Method,
    envoy_suffix: Option<&'a str>,
    peer: Option<IpAddr>,
    trusted_proxies: &'a [IpNet],
) -> Inbound<'a> {
    let wants_html =
        single(headers, header::ACCEPT.as_str()).is_some_and(|a| a.contains("text/html"));
    let from_trusted = trusted(peer, trusted_proxies);
    let client = ClientFacts::Http {
        peer,
        headers,
        trusted_proxies,
    };

    if let Some(suffix) = envoy_suffix {
        let scheme = single(headers, "x-forwarded-proto")
            .filter(|p| *p == "https")
            .unwrap_or("http");
        let original = single(headers, header::HOST.as_str()).map_or(Original::Unknown, |host| {
            Original::Parts {
                scheme,
                host,
                path_and_query: suffix,
            }
        });
        return Inbound {
            proxy: Proxy::Envoy,
            method: Some(own_method.clone()),
            client,
            wants_html,
            original,
        };
    }
    if let Some(original) = single(headers, "x-original-url") {
        // Kept as sent: nginx never relays our redirects, so the URL is only ever used
        // through `crate::return_url::safe_return_url`, which validates it.
        let method = single(headers, "x-original-method")
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        return Inbound {
            proxy: Proxy::Nginx,
            method,
            client,
            wants_html,
            original: Original::Sent(original),
        };
    }
    let traefik_headers =
        headers.contains_key("x-forwarded-uri") || headers.contains_key("x-forwarded-method");
    if traefik_headers && from_trusted {
        let method = single(headers, "x-forwarded-method")
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let scheme = single(headers, "x-forwarded-proto")
            .filter(|p| matches!(*p, "http" | "https"))
            .unwrap_or("http");
        let original = match (
            single(headers, "x-forwarded-host"),
            single(headers, "x-forwarded-uri"),
        ) {
            (Some(host), Some(path_and_query)) => Original::Parts {
                scheme,
                host,
                path_and_query,
            },
            _ => Original::Unknown,
        };
        return Inbound {
            proxy: Proxy::Traefik,
            method,
            client,
            wants_html,
            original,
        };
    }
    Inbound {
        // Untrusted X-Forwarded-* are ignored: without knowing the original method, a
        // method requirement fails closed.
        proxy: if traefik_headers {
            Proxy::Traefik
        } else {
            Proxy::Direct
        },
        method: if traefik_headers {
            None
        } else {
            Some(own_method.clone())
        },
        client,
        wants_html,
        original: Original::Unknown,
    }
}

/// The original request of a Gateway API `ExternalAuth` check (`proxy` is
/// [`Proxy::GatewayApi`] or [`Proxy::NginxGatewayFabric`]): the filter sends the original
/// `Host`, method and path (`original`, after the filter's path prefix, with the query), and
/// other headers only when its `allowedHeaders` lists them. The scheme is
/// `X-Forwarded-Proto` when listed and `https` otherwise: a Gateway serving browsers serves
/// HTTPS, and the return URL is checked against the tenant's allowed origins anyway.
pub fn gateway_api<'a>(
    proxy: Proxy,
    headers: &'a HeaderMap,
    own_method: &Method,
    original: &'a str,
    peer: Option<IpAddr>,
    trusted_proxies: &'a [IpNet],
) -> Inbound<'a> {
    let wants_html =
        single(headers, header::ACCEPT.as_str()).is_some_and(|a| a.contains("text/html"));
    let scheme = single(headers, "x-forwarded-proto")
        .filter(|p| *p == "http")
        .unwrap_or("https");
    let original =
        single(headers, header::HOST.as_str()).map_or(Original::Unknown, |host| Original::Parts {
            scheme,
            host,
            path_and_query: original,
        });
    Inbound {
        proxy,
        method: Some(own_method.clone()),
        wants_html,
        original,
        client: ClientFacts::Http {
            peer,
            headers,
            trusted_proxies,
        },
    }
}

/// The original request of an Envoy gRPC check, from its `attributes.request.http`:
/// `headers` (the client's, rebuilt as a map), the method, scheme, host (`:authority`) and
/// path with query, and the client's address as the caller decided to believe it.
pub fn envoy_grpc<'a>(
    headers: &'a HeaderMap,
    method: Option<Method>,
    scheme: &'a str,
    host: &'a str,
    path_and_query: &'a str,
    client_ip: Option<IpAddr>,
) -> Inbound<'a> {
    let wants_html =
        single(headers, header::ACCEPT.as_str()).is_some_and(|a| a.contains("text/html"));
    let scheme = if scheme == "https" { "https" } else { "http" };
    let original = if host.is_empty() || path_and_query.is_empty() {
        Original::Unknown
    } else {
        Original::Parts {
            scheme,
            host,
            path_and_query,
        }
    };
    Inbound {
        proxy: Proxy::EnvoyGrpc,
        method,
        wants_html,
        original,
        client: ClientFacts::Known(client_ip),
    }
}

/// `scheme://host` + `path_and_query` if it parses as an http(s) URL with that host.
fn absolute(scheme: &str, host: &str, path_and_query: &str) -> Option<String> {
    if !path_and_query.starts_with('/')
        || path_and_query.starts_with("//")
        || host.contains(['/', '\\', '@'])
    {
        return None;
    }
    let candidate = format!("{scheme}://{host}{path_and_query}");
    if candidate.len() > MAX_URL_LEN {
        return None;
    }
    let url = url::Url::parse(&candidate).ok()?;
    url.host().is_some().then(|| url.to_string())
}

/// The credential presented: `Authorization` first, then `X-API-Key`, then the cookie.
pub fn credential<'a>(
    headers: &'a HeaderMap,
    cookie_name: &str,
    host_cookie_name: &str,
) -> Option<Credential<'a>> {
    let authz = headers.get_all(header::AUTHORIZATION);
    let mut iter = authz.iter();
    if let Some(first) = iter.next() {
        if iter.next().is_some() {
            return Some(Credential::Malformed);
        }
        let Ok(value) = first.to_str() else {
            return Some(Credential::Malformed);
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return Some(Credential::Malformed);
        };
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer")
            || token.is_empty()
            || token.len() > MAX_CREDENTIAL_LEN
        {
            return Some(Credential::Malformed);
        }
        return Some(if token.starts_with("kg_") {
            Credential::ApiKey(Cow::Borrowed(token))
        } else {
            Credential::AccessToken(Cow::Borrowed(token))
        });
    }
    if headers.contains_key("x-api-key") {
        return Some(match single(headers, "x-api-key") {
            Some(k) if k.starts_with("kg_") && k.len() <= MAX_CREDENTIAL_LEN => {
                Credential::ApiKey(Cow::Borrowed(k))
            }
            _ => Credential::Malformed,
        });
    }
    if !headers.contains_key(header::COOKIE) {
        return None;
    }
    one_cookie(headers, cookie_name)
        .map(|c| c.map_or(Credential::Malformed, Credential::Session))
        .or_else(|| {
            one_cookie(headers, host_cookie_name)
                .map(|c| c.map_or(Credential::Malformed, Credential::HostSession))
        })
}

/// The value of the cookie `name`: `None` when absent, `Some(None)` when unusable (repeated,
/// empty, too long).
fn one_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<Option<Cow<'a, str>>> {
    // Not a jar: a jar keeps one cookie per name, and a repeated session cookie (cookie
    // tossing from a sibling subdomain) must be refused, not silently picked.
    let mut matching = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == name);
    let first = matching.next()?;
    if matching.next().is_some()
        || first.value().is_empty()
        || first.value().len() > MAX_CREDENTIAL_LEN
    {
        return Some(None);
    }
    // Parsed without decoding, so the raw value is the value, borrowed from the header.
    Some(Some(first.value_raw().map_or_else(
        || Cow::Owned(first.value().to_owned()),
        Cow::Borrowed,
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::client_addr::tests::headers;

    #[test]
    fn the_original_host_is_normalized_for_the_upstream_audience() {
        let host = |pairs: &[(&str, &str)], envoy: Option<&str>| {
            inbound(&headers(pairs), &Method::GET, envoy, None, &[]).host()
        };
        let nginx = |url: &str| host(&[("x-original-url", url)], None);
        assert_eq!(
            nginx("https://App.Example.com/x").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            nginx("https://app.example.com:443/x").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            nginx("http://app.example.com:8080/").as_deref(),
            Some("app.example.com:8080")
        );
        assert_eq!(nginx("ftp://app.example.com/"), None);
        assert_eq!(nginx("::::not a url"), None);
        assert_eq!(
            host(&[("host", "b.example.com")], Some("/orders")).as_deref(),
            Some("b.example.com")
        );
        assert_eq!(host(&[], None), None, "a direct call names no host");
    }

    #[test]
    fn nginx_headers_are_read() {
        let h = headers(&[
            ("x-original-url", "https://app.example.com/orders?id=1"),
            ("x-original-method", "POST"),
            ("accept", "text/html,application/xhtml+xml"),
        ]);
        let i = inbound(&h, &Method::GET, None, None, &[]);
        assert_eq!(i.proxy, Proxy::Nginx);
        assert_eq!(i.method, Some(Method::POST));
        assert_eq!(
            i.url().as_deref(),
            Some("https://app.example.com/orders?id=1")
        );
        assert!(i.wants_html);
        let garbage = headers(&[("x-original-url", "::::not a url")]);
        let garbage = inbound(&garbage, &Method::GET, None, None, &[]);
        assert_eq!(
            garbage
                .url()
                .as_deref()
                .and_then(|u| crate::return_url::safe_return_url(u, &[], "https://a.example")),
            None
        );
    }

    #[test]
    fn traefik_headers_count_only_from_trusted_peers() {
        let h = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/x?y=1"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
        ]);
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let t = inbound(
            &h,
            &Method::GET,
            None,
            Some("10.1.2.3".parse().unwrap()),
            &nets,
        );
        assert_eq!(t.proxy, Proxy::Traefik);
        assert_eq!(t.method, Some(Method::DELETE));
        assert_eq!(t.url().as_deref(), Some("https://app.example.com/x?y=1"));
        assert_eq!(t.client_ip(), Some("203.0.113.9".parse().unwrap()));
        let u = inbound(
            &h,
            &Method::GET,
            None,
            Some("192.0.2.1".parse().unwrap()),
            &nets,
        );
        assert_eq!(
            (u.method.clone(), u.url(), u.client_ip()),
            (None, None, Some("192.0.2.1".parse().unwrap()))
        );
    }

    #[test]
    fn the_client_address_follows_the_gateways_one_rule() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[
            ("x-original-url", "https://app.example.com/"),
            ("x-real-ip", "198.51.100.7"),
            ("x-forwarded-for", "198.51.100.8, 203.0.113.9"),
        ]);
        // An untrusted client chooses nothing, by either header.
        let direct = inbound(
            &h,
            &Method::GET,
            None,
            Some("192.0.2.1".parse().unwrap()),
            &nets,
        );
        assert_eq!(direct.client_ip(), Some("192.0.2.1".parse().unwrap()));
        // From a trusted proxy: the right-most hop, not the client-written left-most one,
        // and not X-Real-IP when X-Forwarded-For names the client.
        let proxied = inbound(
            &h,
            &Method::GET,
            None,
            Some("10.1.2.3".parse().unwrap()),
            &nets,
        );
        assert_eq!(proxied.client_ip(), Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn envoy_suffix_is_the_original_path() {
        let h = headers(&[("host", "app.example.com")]);
        let e = inbound(&h, &Method::PUT, Some("/orders/1?x=2"), None, &[]);
        assert_eq!(e.proxy, Proxy::Envoy);
        assert_eq!(
            e.url().as_deref(),
            Some("http://app.example.com/orders/1?x=2")
        );
        assert_eq!(e.method, Some(Method::PUT));
    }

    #[test]
    fn credentials_in_order_and_repeats_are_malformed() {
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer kg_a_b")]), "s", "h"),
            Some(Credential::ApiKey("kg_a_b".into()))
        );
        assert_eq!(
            credential(&headers(&[("authorization", "bearer e.y.j")]), "s", "h"),
            Some(Credential::AccessToken("e.y.j".into()))
        );
        assert_eq!(
            credential(&headers(&[("authorization", "Basic abc")]), "s", "h"),
            Some(Credential::Malformed)
        );
        assert_eq!(
            credential(
                &headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
                "s",
                "h"
            ),
            Some(Credential::Malformed)
        );
        assert_eq!(
            credential(&headers(&[("x-api-key", "kg_x_y")]), "s", "h"),
            Some(Credential::ApiKey("kg_x_y".into()))
        );
        assert_eq!(
            credential(&headers(&[("cookie", "a=1; s=abc")]), "s", "h"),
            Some(Credential::Session("abc".into()))
        );
        assert_eq!(
            credential(&headers(&[("cookie", "s=abc; s=def")]), "s", "h"),
            Some(Credential::Malformed)
        );
        // An app host's cookie counts when the session cookie is absent; the session
        // cookie wins when both are sent (app and gateway on one host).
        assert_eq!(
            credential(&headers(&[("cookie", "h=xyz")]), "s", "h"),
            Some(Credential::HostSession("xyz".into()))
        );
        assert_eq!(
            credential(&headers(&[("cookie", "h=xyz; s=abc")]), "s", "h"),
            Some(Credential::Session("abc".into()))
        );
        assert_eq!(
            credential(&headers(&[("cookie", "h=x; h=y")]), "s", "h"),
            Some(Credential::Malformed)
        );
        assert_eq!(
            credential(&headers(&[("cookie", "other=1")]), "s", "h"),
            None
        );
        assert_eq!(credential(&HeaderMap::new(), "s", "h"), None);
    }
}
