//! The JWT forward-auth hands the app behind a route with `jwt=1` (`X-Keygate-Jwt`).
//!
//! It is not an access token: its header says `typ: keygate-upstream+jwt` (explicit typing,
//! RFC 8725 §3.11) and its `aud` is the protected host, so keygate's own verification
//! (`tokens::verify` accepts `at+jwt` only, for the tenant's audience) and every other app
//! refuse it. An app that logs it, or a compromised app, holds nothing it can replay
//! elsewhere. It names the sign-in session in `sid` and lives at most
//! [`UPSTREAM_TOKEN_TTL`]: an app checks it offline against the tenant's JWKS and cannot
//! learn of a sign-out, so its lifetime bounds how long an app may act on an ended session.
//! It carries what the app needs to know who is calling, not a grant to act elsewhere: no
//! `scope`, no `client_id`, and of the permissions only those the route demanded.

use super::authenticator::Identity;
use super::tokens;
use super::{IdentityError, IdentityService, LiveTenant};
use serde::Serialize;

/// The `typ` header of upstream tokens; apps check it, keygate refuses it as a credential.
pub const UPSTREAM_TOKEN_TYP: &str = "keygate-upstream+jwt";

/// Longest life of an upstream token: room for clock skew and a slow request, short enough
/// that a token kept past a sign-out is worthless within a minute (forward-auth stops
/// handing it out at once; see `forward_auth::cache::UpstreamTokens`).
pub const UPSTREAM_TOKEN_TTL: chrono::Duration = chrono::Duration::seconds(60);

/// What one protected route asks of the token it hands its upstream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamGrant {
    /// The token's `aud`: the protected host as the proxy reported it (`app.example.com`,
    /// with `:port` when not the scheme's default).
    pub audience: String,
    /// The permissions the route demanded (`perm=`), the only ones the token lists.
    pub permissions: Vec<String>,
}

/// The claims of an upstream token.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct UpstreamClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// The sign-in session (people only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub tenant: String,
    /// The verified address only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Every role, as `X-Auth-Request-Groups` already tells the app.
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

impl IdentityService {
    /// Signs the upstream token of `identity` for the route described by `grant`.
    pub(super) async fn mint_upstream_token(
        &self,
        tenant: &LiveTenant,
        identity: &Identity,
        grant: &UpstreamGrant,
    ) -> Result<String, IdentityError> {
        let now = self.now();
        let claims = UpstreamClaims {
            iss: tenant.issuer.clone(),
            sub: identity.subject.clone(),
            aud: grant.audience.clone(),
            exp: (now + UPSTREAM_TOKEN_TTL)
                .min(identity.expires_at)
                .timestamp(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: uuid::Uuid::now_v7().to_string(),
            sid: identity.session_id.map(|s| s.to_string()),
            tenant: tenant.row.name.clone(),
            email: identity.email.clone(),
            email_verified: identity.email_verified,
            roles: identity.roles.clone(),
            permissions: grant
                .permissions
                .iter()
                .filter(|p| identity.permissions.contains(p))
                .cloned()
                .collect(),
            amr: identity.amr.clone(),
            acr: identity.acr.clone(),
            auth_time: identity.auth_time.map(|t| t.timestamp()),
        };
        tokens::sign(&self.inner.signer, tenant, UPSTREAM_TOKEN_TYP, &claims).await
    }
}
