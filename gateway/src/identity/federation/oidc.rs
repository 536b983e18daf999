//! OpenID Connect (generic and Google) with the `openidconnect` crate: the authorization
//! request (code flow, PKCE S256, `state`, `nonce`), the code exchange, ID-token validation
//! (signature by a key from the provider's JWKS with an algorithm from [`ALLOWED_ALGS`],
//! issuer, audience, expiry by keygate's clock, nonce, and for a fresh sign-in `auth_time`),
//! the userinfo call, and the mapping of claims to a [`FederatedIdentity`].

use super::providers::LiveProvider;
use super::{FederatedIdentity, FederationRefusal};
use crate::identity::IdentityError;
use chrono::{DateTime, Utc};
use keygate_core::clock::Clock;
use keygate_core::federation::{ClaimNames, Protocol};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Signature algorithms an upstream ID token may use: asymmetric ones only. `none` never;
/// HS* never, as they would make the client secret a signing key.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// How far a provider's `auth_time` may lie before the start of a sign-in that asked for a
/// fresh login: clock skew between keygate and the provider (NTP keeps servers well within
/// a second), and `auth_time`'s whole seconds. Any more would let a provider that did not
/// authenticate the person again pass with a sign-in made just before the step-up.
const AUTH_TIME_SKEW: chrono::Duration = chrono::Duration::seconds(5);

/// Every claim besides the standard ones, for claim mappings that name other claims.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct OtherClaims {
    #[serde(flatten)]
    rest: Map<String, Value>,
}
impl AdditionalClaims for OtherClaims {}

type Fields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type OidcClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn invalid(why: impl std::fmt::Display) -> IdentityError {
    IdentityError::Federation(FederationRefusal::InvalidAnswer(why.to_string()))
}

fn unreachable(why: impl std::fmt::Display) -> IdentityError {
    IdentityError::Federation(FederationRefusal::Unreachable(why.to_string()))
}

/// The client for `live` with its keys as last fetched, redirecting to `redirect`.
fn client(live: &LiveProvider, redirect: &str) -> Result<OidcClient, IdentityError> {
    let discovered = live
        .discovered()
        .ok_or_else(|| IdentityError::Internal("OpenID provider without discovery".into()))?;
    let redirect = RedirectUrl::new(redirect.to_owned())
        .map_err(|e| IdentityError::Internal(format!("redirect URI: {e}")))?;
    Ok(OidcClient::from_provider_metadata(
        discovered.metadata,
        ClientId::new(live.settings.client_id().to_owned()),
        live.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

/// What an authorization request is made of.
pub(super) struct Authorize<'a> {
    pub redirect: &'a str,
    pub state: String,
    pub nonce: String,
    pub pkce: PkceCodeChallenge,
    /// Ask the provider to authenticate the person again (`prompt=login`, `max_age=0`).
    pub fresh: bool,
}

/// The provider's authorization URL for one sign-in.
pub(super) fn authorize_url(
    live: &LiveProvider,
    a: Authorize<'_>,
) -> Result<String, IdentityError> {
    let client = client(live, a.redirect)?;
    let (state, nonce) = (a.state, a.nonce);
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .set_pkce_challenge(a.pkce);
    match &live.settings.protocol {
        Protocol::Oidc(o) => {
            for s in o.scopes.iter().filter(|s| s.as_str() != "openid") {
                request = request.add_scope(Scope::new(s.clone()));
            }
        }
        Protocol::Google(g) => {
            request = request
                .add_scope(Scope::new("email".into()))
                .add_scope(Scope::new("profile".into()));
            if let Some(hd) = &g.hosted_domain {
                // Google preselects the domain's accounts; the `hd` claim is still checked.
                request = request.add_extra_param("hd", hd.clone());
            }
        }
        Protocol::Github(_) | Protocol::Saml(_) => {
            return Err(IdentityError::Internal("not OpenID Connect".into()));
        }
    }
    if a.fresh {
        request = request
            .add_prompt(CoreAuthPrompt::Login)
            .set_max_age(std::time::Duration::ZERO);
    }
    let (url, _, _) = request.url();
    Ok(url.to_string())
}

/// What finishing a sign-in needs besides the provider.
pub(super) struct Finish<'a> {
    pub provider: &'a str,
    pub redirect: &'a str,
    pub code: String,
    pub pkce_verifier: String,
    pub nonce: String,
    /// When a sign-in that asked for a fresh login started.
    pub fresh_since: Option<DateTime<Utc>>,
    pub clock: Arc<dyn Clock>,
}

/// Exchanges the code, validates the ID token, reads userinfo and maps the claims.
pub(super) async fn identity(
    live: &LiveProvider,
    f: Finish<'_>,
) -> Result<FederatedIdentity, IdentityError> {
    let client = client(live, f.redirect)?;
    let tokens: Tokens = client
        .exchange_code(AuthorizationCode::new(f.code))
        .map_err(|e| IdentityError::Internal(format!("token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(f.pkce_verifier))
        .request_async(&live.http)
        .await
        .map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => {
                IdentityError::Federation(FederationRefusal::ProviderError {
                    error: super::oauth_error_code(r.error()),
                    description: r.error_description().cloned(),
                })
            }
            other => unreachable(super::chain(&other)),
        })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| invalid("the token answer holds no ID token"))?;
    let nonce = Nonce::new(f.nonce);
    let verified = {
        let first = verify(&client, id_token, &nonce, &f.clock);
        match first {
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) if live.refetch_keys().await => {
                // The provider rotated its keys: check again with the ones just fetched.
                let client = self::client(live, f.redirect)?;
                verify(&client, id_token, &nonce, &f.clock)
            }
            other => other,
        }
    };
    let (subject, auth_time, mut claims) = verified.map_err(|e| invalid(super::chain(&e)))?;
    if let Some(since) = f.fresh_since {
        let fresh = auth_time.is_some_and(|at| at + AUTH_TIME_SKEW >= since);
        if !fresh {
            return Err(invalid(
                "a fresh login was asked for, and the ID token's auth_time is older or missing",
            ));
        }
    }
    if let Protocol::Google(g) = &live.settings.protocol
        && let Some(hd) = &g.hosted_domain
    {
        // From the signed ID token only, as Google advises: the `hd` parameter alone is a
        // hint the person can edit.
        let domain = claims.get("hd").and_then(Value::as_str);
        if !domain.is_some_and(|d| d.eq_ignore_ascii_case(hd)) {
            return Err(IdentityError::Federation(
                FederationRefusal::HostedDomainNotAllowed,
            ));
        }
    }
    if let Ok(request) = client.user_info(
        tokens.access_token().clone(),
        Some(openidconnect::SubjectIdentifier::new(subject.clone())),
    ) {
        let info: UserInfoClaims<OtherClaims, CoreGenderClaim> = request
            .request_async(&live.http)
            .await
            .map_err(|e| invalid(format!("userinfo: {}", super::chain(&e))))?;
        // The signed ID token wins; userinfo fills in what it left out.
        if let Ok(Value::Object(more)) = serde_json::to_value(&info) {
            for (k, v) in more {
                claims.entry(k).or_insert(v);
            }
        }
    }
    let names = match &live.settings.protocol {
        Protocol::Oidc(o) => o.claims.clone(),
        _ => ClaimNames::default(),
    };
    Ok(mapped(f.provider, subject, auth_time, &claims, &names))
}

/// The verified ID token's subject, `auth_time` and all its claims.
#[allow(clippy::type_complexity)]
fn verify(
    client: &OidcClient,
    id_token: &openidconnect::IdToken<
        OtherClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    nonce: &Nonce,
    clock: &Arc<dyn Clock>,
) -> Result<
    (String, Option<DateTime<Utc>>, Map<String, Value>),
    openidconnect::ClaimsVerificationError,
> {
    let clock = clock.clone();
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(ALLOWED_ALGS)
        .set_time_fn(move || clock.now());
    let claims = id_token.claims(&verifier, nonce)?;
    let all = match serde_json::to_value(claims) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Ok((claims.subject().to_string(), claims.auth_time(), all))
}

/// The identity the claims describe under the provider's claim names. An email from another
/// claim than `email` is never taken as verified: `email_verified` speaks of `email` only.
fn mapped(
    provider: &str,
    subject: String,
    auth_time: Option<DateTime<Utc>>,
    claims: &Map<String, Value>,
    names: &ClaimNames,
) -> FederatedIdentity {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
    };
    let email_verified = names.email == "email"
        && claims.get("email_verified").and_then(Value::as_bool) == Some(true);
    let groups = match claims.get(&names.groups) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    FederatedIdentity {
        provider: provider.to_owned(),
        subject,
        email: text(&names.email),
        email_verified,
        name: text(&names.name),
        groups,
        auth_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn claims_map_by_the_providers_names_and_only_email_is_ever_verified() {
        let c = claims(json!({
            "email": "ada@example.com", "email_verified": true, "mail": "other@example.com",
            "name": "Ada", "roles": ["eng", 7, "ops"], "groups": "one"
        }));
        let default = mapped("p", "s".into(), None, &c, &ClaimNames::default());
        assert_eq!(default.email.as_deref(), Some("ada@example.com"));
        assert!(default.email_verified);
        assert_eq!(default.groups, vec!["one".to_owned()]);
        let custom = ClaimNames {
            email: "mail".into(),
            name: "name".into(),
            groups: "roles".into(),
        };
        let m = mapped("p", "s".into(), None, &c, &custom);
        assert_eq!(m.email.as_deref(), Some("other@example.com"));
        assert!(!m.email_verified, "email_verified speaks of `email` only");
        assert_eq!(m.groups, vec!["eng".to_owned(), "ops".to_owned()]);
    }
}
