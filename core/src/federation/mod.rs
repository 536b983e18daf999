//! Upstream identity providers as both roles need them: the typed provider settings the
//! operator derives from an IdentityProvider spec and the gateway signs people in with, the
//! HTTP client upstream calls go through (the provider's CA bundle plus the platform trust
//! store, no redirects, bounded time and size), and OpenID Connect discovery (the operator
//! fetches it to say whether a provider is Ready, the gateway to sign in), and SAML IdP
//! metadata (the same two uses).

mod discovery;
mod http;
mod saml;
mod settings;

pub use discovery::{Discovered, discover};
pub use http::{HttpError, UpstreamHttp};
pub use saml::{IdpMetadata, load_metadata, parse_metadata};
pub use settings::{
    ClaimNames, Endpoints, GithubEndpoints, GithubProtocol, GoogleProtocol, Linking, OidcProtocol,
    Protocol, ProviderSettings, SamlMetadataSource, SamlProtocol, callback_path, check_issuer,
    check_url, saml_acs_path, saml_metadata_path,
};

/// Why an upstream provider cannot be used; shown in its status and in the gateway's logs.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The issuer or an endpoint is not a usable URL (or plain `http://` off loopback).
    #[error("{0}")]
    BadUrl(String),
    /// The CA bundle holds no usable PEM certificate.
    #[error("the CA bundle is not a PEM certificate list: {0}")]
    CaBundle(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The discovery document or the keys could not be fetched or read.
    #[error("cannot read the provider's discovery document or keys: {0}")]
    Discovery(String),
    /// The provider publishes no signing key.
    #[error("the provider's JWKS holds no key")]
    NoKeys,
    /// SAML metadata could not be fetched, or is not usable (the text says why).
    #[error("cannot use the IdP's SAML metadata: {0}")]
    Metadata(String),
}
