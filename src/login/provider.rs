//! The tenant as `keygate login` sees it: its discovery document and keys (through
//! `openidconnect`, which checks that the document names the issuer asked for), the client
//! made from them, and the one check every ID token passes before it is cached or handed to
//! kubectl (signature by a key of the tenant's JWKS with an asymmetric algorithm, issuer,
//! audience, expiry, and the nonce where one was sent).

use super::{Args, LoginError};
use chrono::{DateTime, Utc};
use keygate_core::federation::{UpstreamHttp, check_issuer};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreIdToken, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
    CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, ProviderMetadata,
    RefreshToken, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};

/// Algorithms an ID token may be signed with: those a tenant can choose (RS256, ES256,
/// EdDSA). Never `none`, never HS*.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 3] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The device endpoint, which OpenID Connect Discovery itself does not define (RFC 8628 §4).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(super) struct DeviceEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}

type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The client as discovery leaves it: authorization and token endpoints known.
pub(super) type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A verified sign-in.
pub(super) struct SignedIn {
    /// The ID token as issued.
    pub id_token: String,
    /// Its `exp`.
    pub expires_at: DateTime<Utc>,
    /// The refresh token, if any.
    pub refresh_token: Option<String>,
}

/// The issuer and the client `keygate login` signs in as.
pub(super) struct Provider {
    /// The HTTP client every call goes through (no redirects, bounded time and size).
    pub http: UpstreamHttp,
    /// The client.
    pub client: OidcClient,
    /// The device endpoint, if the issuer has one.
    pub device_endpoint: Option<DeviceAuthorizationUrl>,
    /// The scopes to ask for.
    pub scopes: Vec<Scope>,
}

impl Provider {
    /// Reads the issuer's discovery document and keys.
    pub async fn discover(args: &Args) -> Result<Self, LoginError> {
        let issuer_error = |cause: String| LoginError::Issuer {
            issuer: args.issuer.clone(),
            cause,
        };
        // Plain http only to a loopback issuer (`keygate dev`).
        check_issuer(&args.issuer, true).map_err(|e| issuer_error(e.to_string()))?;
        let http = UpstreamHttp::new(None).map_err(|e| issuer_error(e.to_string()))?;
        let url = IssuerUrl::new(args.issuer.clone()).map_err(|e| issuer_error(e.to_string()))?;
        let metadata = Metadata::discover_async(url, &http)
            .await
            .map_err(|e| issuer_error(chain(&e)))?;
        let device_endpoint = metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(args.client_id.clone()),
            args.client_secret.clone().map(ClientSecret::new),
        );
        Ok(Self {
            http,
            client,
            device_endpoint,
            scopes: args
                .scope
                .split_whitespace()
                .filter(|s| *s != "openid")
                .map(|s| Scope::new(s.to_owned()))
                .collect(),
        })
    }

    /// Exchanges the refresh token for a new ID token (and the next refresh token).
    pub async fn refresh(&self, refresh_token: &str) -> Result<SignedIn, LoginError> {
        let token = RefreshToken::new(refresh_token.to_owned());
        let answer = self
            .client
            .exchange_refresh_token(&token)
            .map_err(|e| LoginError::SignIn(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::SignIn(chain(&e)))?;
        // No nonce: a refresh sends none, and OpenID Connect Core §12.2 wants none back.
        self.verified(&answer, |n: Option<&Nonce>| match n {
            None => Ok(()),
            Some(_) => Err("a refreshed ID token carries a nonce".to_owned()),
        })
    }

    /// The verified ID token of a token answer, with its refresh token.
    pub fn verified(
        &self,
        answer: &CoreTokenResponse,
        nonce: impl openidconnect::NonceVerifier,
    ) -> Result<SignedIn, LoginError> {
        let id_token: &CoreIdToken = answer.id_token().ok_or_else(|| {
            LoginError::SignIn(
                "the token answer holds no ID token: does the client allow the openid scope?"
                    .into(),
            )
        })?;
        let verifier = self
            .client
            .id_token_verifier()
            .set_allowed_algs(ALLOWED_ALGS);
        let claims = id_token
            .claims(&verifier, nonce)
            .map_err(|e| LoginError::SignIn(format!("the ID token is not valid: {}", chain(&e))))?;
        Ok(SignedIn {
            id_token: id_token.to_string(),
            expires_at: claims.expiration(),
            refresh_token: answer.refresh_token().map(|t| t.secret().clone()),
        })
    }
}

/// An error with its causes, so a message says "connection refused", not "request failed".
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
