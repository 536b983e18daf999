//! The `{tenant}` segment of `/t/{tenant}/…` URLs, checked once for every route, page and
//! OIDC endpoint before a handler sees it: a tenant's name is a DNS label (the Tenant CRD
//! enforces it), so anything else — a decoded newline, `..`, upper case, 64 characters —
//! names no tenant and is answered 404 problem+json at once, never used in a lookup, a
//! header or a page. A leaf module: routes, pages and the OIDC endpoints share it.

use crate::error::ApiError;
use crate::identity::is_tenant_name;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

/// The tenant named in the path, known to be spelled as a tenant name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TenantName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotATenantName)?;
        params
            .iter()
            .find(|(k, _)| *k == "tenant")
            .map(|(_, v)| v)
            .filter(|v| is_tenant_name(v))
            .map(|v| Self(v.to_owned()))
            .ok_or(ApiError::NotATenantName)
    }
}
