//! OpenID Connect discovery: the provider's metadata and its signing keys, fetched together
//! (openidconnect's `discover_async` checks that the document names the issuer asked for).

use openidconnect::IssuerUrl;
use openidconnect::core::CoreProviderMetadata;

use super::{FederationError, UpstreamHttp, check_issuer};

/// A provider's discovery document with its JWKS.
#[derive(Clone, Debug)]
pub struct Discovered {
    /// The metadata, `jwks` filled in.
    pub metadata: CoreProviderMetadata,
}

/// Fetches the discovery document of `issuer` and its keys; refuses a provider without keys.
pub async fn discover(
    http: &UpstreamHttp,
    issuer: &str,
    allow_loopback_http: bool,
) -> Result<Discovered, FederationError> {
    check_issuer(issuer, allow_loopback_http)?;
    let issuer = IssuerUrl::new(issuer.to_owned())
        .map_err(|e| FederationError::BadUrl(format!("issuer `{issuer}`: {e}")))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| FederationError::Discovery(super::http::error_chain(&e)))?;
    if metadata.jwks().keys().is_empty() {
        return Err(FederationError::NoKeys);
    }
    Ok(Discovered { metadata })
}
