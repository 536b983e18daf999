//! The boundary between forward-auth and the identity service: turning a presented
//! credential into an [`Identity`]. Forward-auth owns caching, revocation checks and the
//! decision; the identity service owns verification (JWT signatures and claims, API-key
//! hashes, session rows) and minting tokens.

use super::decision::Identity;
use async_trait::async_trait;
use keygate_core::store::Tenant;

/// Why a credential did not resolve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Not a valid credential of this tenant (bad signature, expired, unknown, revoked,
    /// another tenant's): a 401.
    #[error("invalid credential")]
    Invalid,
    /// A dependency is down; the caller cannot tell valid from invalid: a 503.
    #[error("identity resolution unavailable")]
    Unavailable,
}

/// Resolves credentials of one tenant into identities.
#[async_trait]
pub trait CredentialResolver: Send + Sync + std::fmt::Debug {
    /// A bearer access token (JWT) issued by `tenant`.
    async fn access_token(&self, tenant: &Tenant, token: &str) -> Result<Identity, ResolveError>;
    /// A raw API key `kg_<prefix>_<secret>` of `tenant`.
    async fn api_key(&self, tenant: &Tenant, key: &str) -> Result<Identity, ResolveError>;
    /// The session cookie's value.
    async fn session(&self, tenant: &Tenant, cookie_value: &str) -> Result<Identity, ResolveError>;
    /// A short-lived JWT describing `identity`, signed by `tenant`, for the upstream (`jwt=1`).
    async fn upstream_token(
        &self,
        tenant: &Tenant,
        identity: &Identity,
    ) -> Result<String, ResolveError>;
}

/// Stands in until the identity service is wired: resolves nothing and says so in the log,
/// so a misassembled gateway denies (503) instead of letting anyone through.
#[derive(Debug, Default)]
pub struct Unwired;

#[async_trait]
impl CredentialResolver for Unwired {
    async fn access_token(&self, _: &Tenant, _: &str) -> Result<Identity, ResolveError> {
        tracing::error!("forward-auth has no credential resolver wired; denying");
        Err(ResolveError::Unavailable)
    }
    async fn api_key(&self, _: &Tenant, _: &str) -> Result<Identity, ResolveError> {
        tracing::error!("forward-auth has no credential resolver wired; denying");
        Err(ResolveError::Unavailable)
    }
    async fn session(&self, _: &Tenant, _: &str) -> Result<Identity, ResolveError> {
        tracing::error!("forward-auth has no credential resolver wired; denying");
        Err(ResolveError::Unavailable)
    }
    async fn upstream_token(&self, _: &Tenant, _: &Identity) -> Result<String, ResolveError> {
        Err(ResolveError::Unavailable)
    }
}
