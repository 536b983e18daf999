//! Extractors of the identity routes: the JSON body ([`ApiJson`], shared with forward-auth's
//! explain route), the request facts workflows record ([`Meta`], shared with the pages), and
//! the authenticated [`Principal`].

use crate::AppState;
use crate::client_addr::{client_addr, peer};
use crate::error::ApiError;
use crate::identity::{IdentityError, LiveTenant, Principal};
pub use crate::json_body::ApiJson;
pub use crate::meta::Meta;
use crate::tenant_path::TenantName;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The caller, authenticated by `Authorization: Bearer` (an access token or an API key),
/// `X-API-Key`, or the session cookie, for the tenant named in the path, from a network the
/// tenant's `network` lists admit (else 403 `network_denied`).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let TenantName(tenant) = TenantName::from_request_parts(parts, state).await?;
        let identity = &state.identity;
        // A token is used only from where it could be obtained: the tenant's network lists
        // hold for its API as for sign-in, refresh and forward-auth. (An unreadable tenant is
        // answered by the resolution below.)
        let live = identity.tenant(&tenant).await.ok();
        if let Some(network) = live.as_ref().map(|t| &t.settings.network)
            && network.is_restricted()
            && !network.permits(client_addr(
                peer(&parts.extensions),
                &parts.headers,
                &state.trusted_proxies,
            ))
        {
            return Err(IdentityError::NetworkDenied.into());
        }
        let bearer = header_str(&parts.headers, header::AUTHORIZATION.as_str())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let principal = if let Some(token) = bearer {
            if token.starts_with("kg_") {
                identity.resolve_from_api_key(&tenant, token).await
            } else {
                identity.resolve_from_access_token(&tenant, token).await
            }
        } else if let Some(key) = header_str(&parts.headers, "x-api-key") {
            identity.resolve_from_api_key(&tenant, key).await
        } else if let Some(cookie) = session_cookie(&parts.headers, state, live.as_deref(), &tenant)
        {
            // A cookie rides along with cross-site requests; state-changing calls made with it
            // must come from our own origin (CSRF), as browsers say in `Origin`.
            if !parts.method.is_safe() && !same_origin(&parts.headers, &state.public_url) {
                return Err(IdentityError::Forbidden.into());
            }
            identity.resolve_from_session_cookie(&tenant, &cookie).await
        } else {
            Err(IdentityError::InvalidToken)
        };
        Ok(Self(principal?))
    }
}

/// The value of `tenant`'s session cookie (its name depends on the tenant's cookie domain;
/// for a tenant that cannot be read, the host-only name, and the resolution reports why).
fn session_cookie(
    headers: &HeaderMap,
    state: &AppState,
    live: Option<&LiveTenant>,
    tenant: &str,
) -> Option<String> {
    let session_cookie = match live {
        Some(live) => state.session_cookie(live),
        None => state.cookie_mode.session(tenant, None, &state.public_url),
    };
    let name = session_cookie.name();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether `Origin` names the gateway's own public origin.
fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = header_str(headers, header::ORIGIN.as_str()) else {
        return false;
    };
    let own = public_url.split('/').take(3).collect::<Vec<_>>().join("/");
    origin.eq_ignore_ascii_case(&own)
}
